"""Writes dpm_solver_diffusers.npz: DPM-Solver++ trajectories from diffusers, for
tests/test_sampling.py to check ddpm's `dpm_solver` plan and compiled step against.

Run in an environment with torch and diffusers (not a dependency of ddpm):
    pip install torch diffusers "numpy<2"
    python tests/reference/dpm_solver_diffusers.py
Written with diffusers 0.42.1 and torch 2.13.0 (CPU).

The network is closed-form, so the test can rebuild it exactly: it predicts x0 directly
(prediction_type "sample"), x0(x, t) = 0.9 tanh(x) + 0.05 sin(t / 100), which keeps
diffusers' float32 arithmetic away from the cancellation in x0 = (x - sigma eps) / alpha
near t = T and so isolates the solver's own coefficients. The betas are diffusers'
"squaredcos_cap_v2" at T = 1000, stored as the betas of diffusers' float32 alpha_bar.
"""

from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler

T = 1000
CASES = {"order2_steps10": (2, 10), "order2_steps20": (2, 20), "order1_steps10": (1, 10)}


def x0_model(x: torch.Tensor, t: int) -> torch.Tensor:
    return 0.9 * torch.tanh(x) + 0.05 * np.sin(t / 100)


def trajectory(order: int, steps: int, x_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        beta_schedule="squaredcos_cap_v2",
        algorithm_type="dpmsolver++",
        solver_order=order,
        prediction_type="sample",
        thresholding=False,
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    scheduler.set_timesteps(steps)
    x = torch.from_numpy(x_T).double()
    xs = []
    for t in scheduler.timesteps:
        x = scheduler.step(x0_model(x, int(t)), t, x).prev_sample.double()
        xs.append(x.numpy())
    return scheduler.timesteps.numpy(), np.stack(xs)


def main() -> None:
    x_T = np.random.default_rng(0).standard_normal((2, 1, 4, 4))
    # diffusers keeps alpha_bar as a float32 cumprod; these betas reproduce it exactly.
    ab = DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    ab = ab.alphas_cumprod.double().numpy()
    out = {"betas": 1.0 - ab / np.append(1.0, ab[:-1]), "x_T": x_T}
    for name, (order, steps) in CASES.items():
        out[f"{name}_timesteps"], out[f"{name}_x"] = trajectory(order, steps, x_T)
    path = Path(__file__).with_suffix(".npz")
    np.savez(path, diffusers_version=diffusers.__version__, **out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
