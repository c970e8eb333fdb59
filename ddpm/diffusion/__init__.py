"""Stage 2, the diffusion math: schedules, q(x_t | x_0), objectives, losses, samplers,
the likelihood bound and class labels. Plain numpy float64, cast to float32 at the edge."""
