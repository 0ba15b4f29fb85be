"""The ml_collections configs of the experiments: search, train."""
