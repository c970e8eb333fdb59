"""Stage 6, sampling: the compiled reverse step and its loop, a saved run's weights, and
what a caller may override."""
