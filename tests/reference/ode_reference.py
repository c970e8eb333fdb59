"""Writes ode_steps.json: diffusers' EDMEulerScheduler and FlowMatchEulerDiscreteScheduler,
stepped on fixed network outputs, for tests/test_formulations.py to compare against.

    pip install diffusers torch && python tests/reference/ode_reference.py

(diffusers 0.42.1; the test reads the stored file and needs neither package.)
"""

import json
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import EDMEulerScheduler, FlowMatchEulerDiscreteScheduler

STEPS, SIZE = 10, 16


def trajectory(scheduler, start: np.ndarray, outputs: np.ndarray) -> dict:
    x = torch.tensor(start, dtype=torch.float64)
    samples, inputs, noise_labels = [start.tolist()], [], []
    for i, t in enumerate(scheduler.timesteps):
        if isinstance(scheduler, EDMEulerScheduler):
            sigma = scheduler.sigmas[i]
            inputs.append(scheduler.precondition_inputs(x, sigma).tolist())
            noise_labels.append(float(scheduler.precondition_noise(sigma)))
        out = torch.tensor(outputs[i], dtype=torch.float64)
        x = scheduler.step(out, t, x).prev_sample
        samples.append(x.tolist())
    return {
        "sigmas": scheduler.sigmas.double().tolist(),
        "timesteps": scheduler.timesteps.double().tolist(),
        "outputs": outputs.tolist(),
        "samples": samples,
        "scaled_inputs": inputs,
        "noise_labels": noise_labels,
    }


def main() -> None:
    rng = np.random.default_rng(0)
    edm = EDMEulerScheduler()
    edm.set_timesteps(STEPS)
    edm_start = 80.0 * rng.standard_normal(SIZE)
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    flow.set_timesteps(STEPS)
    flow_start = rng.standard_normal(SIZE)
    record = {
        "diffusers": diffusers.__version__,
        "edm_euler": trajectory(edm, edm_start, rng.standard_normal((STEPS, SIZE))),
        "flow_euler_shift3": trajectory(flow, flow_start, rng.standard_normal((STEPS, SIZE))),
    }
    out = Path(__file__).with_name("ode_steps.json")
    out.write_text(json.dumps(record))
    print("written", out)


if __name__ == "__main__":
    main()
