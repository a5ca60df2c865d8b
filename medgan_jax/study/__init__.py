"""The augmentation study: the grid of runs, its statistics, tables, plots and verdicts."""
