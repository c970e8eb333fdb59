"""`make bench`: MindSpore against its PyTorch twin, on the same U-Nets, in one run.

    python -m ddpm.bench [--cases seed,seed_resnet,quick] [--steps 10] [--builtin]
                         [--precision float32] [--no-compile] [--pairs 20] [--out bench.json]

PyTorch runs twice: eager, and under torch.compile (inductor; forward and backward
compiled, the optimiser eager), whose first step includes its compilation.
Each (framework, case) runs in a fresh process, so peak RSS is that case's own. Figures:
train-step median (after warm-up), first step (graph compile included), the sampling
forward at batch 64, 64 samples with DDIM-50 and with DDPM over all T steps, peak RSS,
GFLOP/s from PyTorch's flop counter, and that as a fraction of the machine's fp32 peak.
The table prints MindSpore/PyTorch ratios (< 1 means MindSpore is faster).

The fp32 peak comes from an FMA throughput loop in the kernel library (independent chains
in registers on every thread: cores x FMA units x vector width x 2 x clock), which no
kernel can beat; a 2048^2 matmul's rate prints beside it for reference, since a GEMM
library may fall well short of the peak on some CPUs.

The train step is also timed step-paired: one process per framework stays up, and they
take `--pairs` rounds of turns, one train step each (the order rotating), so all are timed
in the same seconds. This machine's speed drifts over the minutes between the main runs, by
up to about 20%; a drift that slow weighs on both steps of a pair alike. The table adds
each framework's median over the pairs, and the median and quartiles of the per-pair
ratios print below it.

MindSpore runs with ddpm's settings (ddpm.nn.kernels, the oneDNN ISA cap, the config's
runtime section: kernel_pool, kernel_spin, kernel_pause); PyTorch and the peak run without
the variables `import ddpm` sets, with PyTorch's own OpenMP defaults (its loops slowed down
about 1.8x under a passive wait). `--builtin` adds
MindSpore with its built-in ops only (DDPM_CPU_KERNELS=0), for the kernels' share;
`--precision P` adds MindSpore with runtime.conv_precision=P (the case's is the config's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ddpm  # sets the oneDNN ISA cap and libgomp's wait policy before MindSpore loads

# isort: split
import numpy as np

CASES = {
    "seed": ["experiment=seed_tutorial"],
    "seed_resnet": ["experiment=seed_tutorial", "block=resnet", "block.groups=2"],
    "quick": ["experiment=quick_ddpm"],  # the twin implements DDPM; the network is the default's
}
SAMPLE_N = 64
PAIR_PAUSE_S = 0.1


def case_config(case: str) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ddpm.config.groups import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=CASES[case])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- workers (one framework, one case, one process) ------------------------------------
def mindspore_worker(
    cfg: dict[str, Any], steps: int, ddpm_steps: int | None, serve: bool = False
) -> dict[str, float]:
    import mindspore as ms
    from mindspore import Tensor
    from mindspore import dtype as mstype
    from omegaconf import OmegaConf

    from ddpm.config.groups import default_section, resolve
    from ddpm.data.build import dataset_classes
    from ddpm.diffusion.samplers import SAMPLERS, make_plan
    from ddpm.nn import kernels
    from ddpm.nn.build import denoiser
    from ddpm.runtime.device import configure_runtime
    from ddpm.sampling.reverse_step import ReverseStep, p_sample_loop
    from ddpm.training.build import build_optimizer
    from ddpm.training.step import DenoisingLoss, TrainStep

    run = resolve(OmegaConf.create(cfg))
    configure_runtime(run.runtime, mode="graph")  # the case's runtime section, compiled
    ms.set_seed(0)
    c, size = cfg["dataset"]["channels"], cfg["dataset"]["image_size"]
    batch = cfg["trainer"]["batch_size"]
    classes = dataset_classes(run["dataset"], run["conditioning"])
    diffusion, net = denoiser(run, classes)
    loss = DenoisingLoss(net, diffusion, run["loss"](), np.ones(diffusion.num_timesteps))
    optimizer, _ = build_optimizer(run.trainer, net, 1000)
    step = TrainStep(loss, optimizer, 1.0)
    rng = np.random.default_rng(0)
    x = Tensor(rng.uniform(-1, 1, (batch, c, size, size)).astype(np.float32))
    t = Tensor(rng.integers(0, diffusion.num_timesteps, batch).astype(np.int32))
    noise = Tensor(rng.standard_normal((batch, c, size, size)).astype(np.float32))
    y = Tensor(np.zeros(batch, np.int32))  # class labels: the unconditional network ignores them
    decay = Tensor(0.999, mstype.float32)
    run_step = lambda: step(x, t, noise, y, decay)[0].asnumpy()  # noqa: E731
    first = median_time(run_step, 1)
    run_step()
    if serve:
        return serve_steps(run_step)
    train = median_time(run_step, steps)
    reverse = ReverseStep(denoiser(run, classes)[1], diffusion.objective, True)
    xs = Tensor(rng.standard_normal((SAMPLE_N, c, size, size)).astype(np.float32))
    ts = Tensor(np.full(SAMPLE_N, 10, np.int32))
    coefs = Tensor(np.array([0.5, 0.8, 0.3, 0.9, 0.2, 0.1, 1.0], np.float32))
    ys = Tensor(np.zeros(SAMPLE_N, np.int32))
    fwd = lambda: reverse(xs, ts, ys, coefs, xs, xs)[0].asnumpy()  # noqa: E731
    fwd()
    forward = median_time(fwd, max(3, steps // 2))

    def sample_time(name: str, **params) -> float:
        plan = make_plan(SAMPLERS.resolve(default_section("sampler", name, **params)), diffusion)
        shape = (SAMPLE_N, c, size, size)
        return median_time(lambda: p_sample_loop(reverse, plan, shape, seed=0), 1)

    result = figures(train, first, forward, sample_time, diffusion.num_timesteps, ddpm_steps)
    return {**result, "fused_kernels": kernels.active()}


def figures(
    train: float,
    first: float,
    forward: float,
    sample_time,
    num_timesteps: int,
    ddpm_steps: int | None,
) -> dict[str, float]:
    """The figures both workers report; sample_time(name, **params) times one sampler."""
    return {
        "train_step_s": train,
        "first_step_s": first,
        "forward_64_s": forward,
        "ddim50_s": sample_time("ddim", steps=50),
        "ddpm_T_s": ddpm_time(sample_time, num_timesteps, ddpm_steps),
        "peak_rss_mb": peak_rss_mb(),
        "timesteps": num_timesteps,
    }


def ddpm_time(sample_time, num_timesteps: int, cap: int | None) -> float:
    """DDPM over all T steps; with a cap, DDIM(eta=1) over `cap` steps scaled to T."""
    if cap is None or cap >= num_timesteps:
        return sample_time("ddpm")
    return sample_time("ddim", steps=cap, eta=1.0) * num_timesteps / cap


def torch_worker(
    cfg: dict[str, Any],
    steps: int,
    ddpm_steps: int | None,
    threads: int = 2,
    serve: bool = False,
    compiled: bool = False,
) -> dict[str, float]:
    """PyTorch eager, or with `compiled` the same network under torch.compile (inductor):
    forward and backward compiled, clipping, Adam and the EMA eager."""
    import torch
    from omegaconf import OmegaConf
    from torch.utils.flop_counter import FlopCounterMode

    from ddpm.bench.torch_twin import TrainStep, UNet
    from ddpm.config.groups import resolve
    from ddpm.data.build import dataset_classes
    from ddpm.nn.build import build_diffusion

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    c, size, batch = (
        cfg["dataset"]["channels"],
        cfg["dataset"]["image_size"],
        cfg["trainer"]["batch_size"],
    )
    run = resolve(OmegaConf.create(cfg))
    diffusion = build_diffusion(run["schedule"], run["objective"])
    classes = dataset_classes(run["dataset"], run["conditioning"]) or []
    net = UNet(cfg["model"], cfg["block"], cfg["attention"], c, len(classes))
    x = torch.rand(batch, c, size, size) * 2 - 1
    t = torch.randint(0, diffusion.num_timesteps, (batch,))
    noise = torch.randn_like(x)
    if compiled:
        net = torch.compile(net)  # its parameters are the eager module's
    step = TrainStep(net, diffusion.sqrt_alphas_cumprod, diffusion.sqrt_one_minus_alphas_cumprod)
    first = median_time(lambda: step(x, t, noise), 1)  # compiles, when compiled
    train_flops = float("nan")
    if not compiled:  # the flop counter traces eager ops
        with FlopCounterMode(display=False) as counter:
            step(x, t, noise)
        train_flops = counter.get_total_flops()
    if serve:
        return serve_steps(lambda: step(x, t, noise))
    train = median_time(lambda: step(x, t, noise), steps)
    xs, ts = torch.randn(SAMPLE_N, c, size, size), torch.full((SAMPLE_N,), 10)
    with torch.no_grad():
        forward_flops = float("nan")
        if compiled:
            net(xs, ts)  # compiles the inference graph
        else:
            with FlopCounterMode(display=False) as counter:
                net(xs, ts)
            forward_flops = counter.get_total_flops()
        forward = median_time(lambda: net(xs, ts), max(3, steps // 2))

    @torch.no_grad()
    def sample_time(name: str, steps: int | None = None, **_: Any) -> float:
        n = diffusion.num_timesteps if name == "ddpm" else steps
        start = time.perf_counter()
        x = xs
        for _ in range(n):  # one network call plus the same elementwise update per step
            x = 0.3 * net(x, ts).clamp(-1, 1) + 0.9 * x + 0.1 * torch.randn_like(x)
        return time.perf_counter() - start

    result = figures(train, first, forward, sample_time, diffusion.num_timesteps, ddpm_steps)
    return {**result, "train_gflop": train_flops / 1e9, "forward_64_gflop": forward_flops / 1e9}


def fma_peak_gflops(seconds: float = 0.5, repeats: int = 3) -> tuple[float, str]:
    """The machine's fp32 peak: independent FMA chains in registers on every OpenMP thread
    (FmaPeakGflops in the kernel library), best of `repeats` runs of about `seconds`."""
    import ctypes

    from ddpm.nn.kernels.build import library

    path = library()
    if path is None:
        return float("nan"), "unavailable (no compiled kernel library)"
    fn = ctypes.CDLL(str(path)).FmaPeakGflops
    fn.restype = ctypes.c_double
    out = [ctypes.c_int(), ctypes.c_int(), ctypes.c_float()]
    fn.argtypes = [ctypes.c_int64, *(ctypes.POINTER(type(o)) for o in out)]
    probe = 10**6
    iterations = max(probe, int(probe * seconds / (probe * 2 * 12 / 50e9)))  # ~50 GFLOP/s guess
    rates = [fn(iterations, *map(ctypes.byref, out)) for _ in range(repeats)]
    width, threads = out[0].value, out[1].value
    return max(rates), f"FMA loop, {threads} threads x {width} floats, 12 chains each"


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> tuple[float, str]:
    """Best fp32 matmul rate of the machine: PyTorch if installed, else numpy."""
    try:
        import torch

        torch.set_num_threads(2)
        a, b = torch.randn(n, n), torch.randn(n, n)
        fn, name = (lambda: a @ b), "torch"
    except ImportError:
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        fn, name = (lambda: a @ a), "numpy"
    fn()
    return 2 * n**3 / median_time(fn, repeats) / 1e9, name


# ---- the parent: run workers, print and save -------------------------------------------
WORKERS = ("mindspore", "builtin", "precision", "torch", "torch_compile", "peak")


def worker_process(
    worker: str, case: str, args: argparse.Namespace, *flags: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one worker process."""
    cmd = [sys.executable, "-m", "ddpm.bench", "--worker", worker, "--cases", case]
    cmd += ["--steps", str(args.steps), "--torch-threads", str(args.torch_threads)]
    cmd += ["--ddpm-steps", str(args.ddpm_steps)] if args.ddpm_steps else []
    cmd += ["--precision", args.precision] if args.precision else []
    env = dict(os.environ)
    if worker in ("torch", "torch_compile", "peak"):  # PyTorch keeps its own defaults
        for name in ddpm.ENV_SET_HERE:
            env.pop(name, None)
        env["DDPM_ENV_DEFAULTS"] = "0"  # the worker's own `import ddpm` sets nothing
    if worker == "builtin":
        env["DDPM_CPU_KERNELS"] = "0"
    return [*cmd, *flags], env


def run_worker(worker: str, case: str, args: argparse.Namespace) -> dict | None:
    cmd, env = worker_process(worker, case, args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  {worker}/{case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


ROWS = [
    ("train_step_s", "train step (s)"),
    ("train_paired_s", "train step, step-paired with the other framework (s)"),
    ("first_step_s", "first step (s)"),
    ("forward_64_s", "sampling forward, batch 64 (s)"),
    ("ddim50_s", "64 samples, DDIM 50 (s)"),
    ("ddpm_T_s", "64 samples, DDPM T (s)"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("train_gflops", "train GFLOP/s"),
    ("train_peak_frac", "train / fp32 peak"),
]


NAMES = {
    "mindspore": "MindSpore",
    "builtin": "MindSpore built-in ops",
    "torch": "PyTorch eager",
    "torch_compile": "PyTorch compiled",
}
MINDSPORE, PYTORCH = ("mindspore", "builtin", "precision"), ("torch", "torch_compile")


class StepServer:
    """A worker process that runs one train step per request (`--serve`), for pairing."""

    def __init__(self, worker: str, case: str, args: argparse.Namespace) -> None:
        cmd, env = worker_process(worker, case, args, "--serve")
        self.name = f"{worker}/{case}"
        # A file, not a pipe: MindSpore's warnings would fill a pipe. close() closes it.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log
        )
        self.reply()  # built, compiled and warmed up

    def reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.log.seek(0)
        raise RuntimeError(f"{self.name} stopped:\n{self.log.read()[-2000:]}")

    def step(self) -> float:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return self.reply()["step_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def add_paired_train(
    results: dict[str, dict | None], case: str, args: argparse.Namespace
) -> dict[str, list[float]]:
    """Train steps of MindSpore and each PyTorch mode taken in turns, `args.pairs` each, in
    live processes (the order rotates every round); returns, per PyTorch mode, each round's
    MindSpore / PyTorch ratio."""
    names = [w for w in ("torch", "torch_compile", "mindspore") if results.get(w)]
    servers: dict[str, StepServer] = {}
    times: dict[str, list[float]] = {w: [] for w in names}
    try:
        for w in names:
            servers[w] = StepServer(w, case, args)
        for i in range(args.pairs):
            turn = i % len(names)
            for w in names[turn:] + names[:turn]:
                time.sleep(PAIR_PAUSE_S)  # let the other processes' OpenMP threads go idle
                times[w].append(servers[w].step())
    except RuntimeError as err:
        print(f"  step-paired timing failed: {err}", file=sys.stderr)
        return {}
    finally:
        for server in servers.values():
            server.close()
    for w in names:
        results[w]["train_pairs_s"] = times[w]
        results[w]["train_paired_s"] = statistics.median(times[w])
    ms_times = times.get("mindspore", [])
    return {
        w: [m / t for m, t in zip(ms_times, times[w], strict=True)]
        for w in names
        if w != "mindspore" and ms_times
    }


def serve_steps(run_step) -> dict[str, Any]:
    """The `--serve` loop: time one train step per `step` line on stdin, until it closes."""
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        run_step()
        print(json.dumps({"step_s": time.perf_counter() - start}), flush=True)
    return {}


def add_rates(result: dict | None, flops: dict | None, peak: float) -> None:
    if flops and result:
        result["train_gflops"] = flops["train_gflop"] / result["train_step_s"]
        result["forward_gflops"] = flops["forward_64_gflop"] / result["forward_64_s"]
        result["train_peak_frac"] = result["train_gflops"] / peak


def print_table(case: str, results: dict[str, dict | None], names: dict[str, str]) -> None:
    """One row per figure: each framework's value, then each MindSpore run / PyTorch."""
    cols = [w for w in names if w in results]
    ratios = [(w, ref) for ref in PYTORCH if ref in results for w in MINDSPORE if w in results]
    head = [names[w] for w in cols] + [f"{names[w]} / {names[ref]}" for w, ref in ratios]
    print(f"\n## {case}\n\n| figure | {' | '.join(head)} |\n|---|{'---|' * len(head)}")
    for key, label in ROWS:
        values = {w: (results[w] or {}).get(key) for w in cols}
        cells = ["-" if values[w] is None else f"{values[w]:.3g}" for w in cols]
        cells += [ratio(values[w], values[ref]) for w, ref in ratios]
        print(f"| {label} | {' | '.join(cells)} |")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b and a == a and b == b else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", default="seed,seed_resnet", help=f"comma list of {list(CASES)}")
    p.add_argument("--steps", type=int, default=10, help="timed train steps per case")
    p.add_argument("--ddpm-steps", type=int, help="time DDPM on this many steps, scaled to T")
    p.add_argument("--torch-threads", type=int, default=2, help="PyTorch intra-op threads")
    p.add_argument(
        "--builtin", action="store_true", help="also time MindSpore without ddpm.nn.kernels"
    )
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        help="also time MindSpore with this runtime.conv_precision",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time PyTorch under torch.compile (its first step compiles, ~1 min)",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=20,
        help="train steps per framework taken in turns with the other (0: none)",
    )
    p.add_argument("--out", type=Path, default=Path("bench_results/bench.json"))
    p.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cases = args.cases.split(",")
    if args.worker:
        print(json.dumps(worker(args.worker, cases[0], args)))
        return 0
    failed = {"gflops": float("nan"), "source": "failed", "matmul_gflops": float("nan")}
    peak = run_worker("peak", cases[0], args) or failed
    print(f"fp32 peak ({peak['source']}): {peak['gflops']:.0f} GFLOP/s, the bound for rates")
    print(f"fp32 matmul 2048^2 ({peak['matmul_source']}): {peak['matmul_gflops']:.0f} GFLOP/s")
    print(f"PyTorch intra-op threads: {args.torch_threads}")
    report: dict[str, Any] = {
        "fp32_peak_gflops": peak["gflops"],
        "fp32_peak_method": peak["source"],
        "matmul_gflops": peak["matmul_gflops"],
        "torch_threads": args.torch_threads,
        "cases": {},
    }
    runs = ["torch", *(["torch_compile"] if args.compile else []), "mindspore"]
    runs += ["builtin"] if args.builtin else []
    runs += ["precision"] if args.precision else []
    names = dict(NAMES, precision=f"MindSpore, {args.precision} products")
    for case in cases:
        results = {w: run_worker(w, case, args) for w in runs}
        paired = add_paired_train(results, case, args) if args.pairs else {}
        for result in results.values():
            add_rates(result, results["torch"], peak["gflops"])
        report["cases"][case] = results
        print_table(case, results, names)
        for ref, ratios in paired.items():
            q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            print(
                f"\ntrain step, MindSpore / {NAMES[ref]} per round ({len(ratios)} rounds): "
                f"median {median:.2f}, quartiles {q1:.2f}-{q3:.2f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {args.out}")
    return 0


def worker(name: str, case: str, args: argparse.Namespace) -> dict[str, Any]:
    """The body of one worker process."""
    if name == "peak":
        gflops, source = fma_peak_gflops()
        matmul, matmul_source = matmul_peak_gflops()
        return {
            "gflops": gflops,
            "source": source,
            "matmul_gflops": matmul,
            "matmul_source": matmul_source,
        }
    cfg = case_config(case)
    if name == "precision":
        cfg["runtime"]["conv_precision"] = args.precision
    if name in ("torch", "torch_compile"):
        compiled = name == "torch_compile"
        return torch_worker(
            cfg, args.steps, args.ddpm_steps, args.torch_threads, args.serve, compiled
        )
    return mindspore_worker(cfg, args.steps, args.ddpm_steps, args.serve)


if __name__ == "__main__":
    sys.exit(main())
