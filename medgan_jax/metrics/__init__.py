"""Pure metric functions on arrays, each tested against an independent reference."""
