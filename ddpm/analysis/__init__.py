"""Stage 8, analysis of sweeps: run records, seed intervals and tests, compare.png."""
