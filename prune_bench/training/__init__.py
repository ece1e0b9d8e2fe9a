"""Training the small default model that ships with prune-bench."""
