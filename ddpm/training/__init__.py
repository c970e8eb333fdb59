"""Stage 5, training: the composition root (build), one run (fit), the loop and its
callbacks, the compiled train step, checkpoints, time budgets and the LR schedule."""
