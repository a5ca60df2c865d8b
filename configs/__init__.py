"""ml_collections configs; `configs.data` holds the dataset presets every job shares."""
