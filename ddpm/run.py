"""Train one configuration: `python -m ddpm.run schedule=cosine block=resnet`.

Hydra composes conf/; ddpm.training.fit resolves, builds and fits the run. This shell
maps the failures a user can fix to one line and an exit code, and lets a sweep go on.
"""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from pathlib import Path

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ddpm.config.errors import EXPECTED, Interrupted, NonFiniteLoss
from ddpm.config.groups import DDPM_RECIPE, asks_for_ddpm, check_overrides
from ddpm.config.run_folder import RunFolder
from ddpm.evaluation.metrics import METRICS
from ddpm.runtime import hydra_callbacks  # noqa: F401  (registers the run_name resolver)
from ddpm.training.fit import fit_run

log = logging.getLogger("ddpm")

# Exit codes: 2 bad config/data/checkpoint, 3 non-finite loss, 128 + signal when interrupted.
EXIT_CODES = {**dict.fromkeys(EXPECTED, 2), NonFiniteLoss: 3}
# conf/hydra/launcher/*.yaml set our defaults on the launcher plugins' schemas of the same
# name; Hydra validates them against those schemas and warns that this is deprecated.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema")


def exit_code(err: BaseException) -> int | None:
    """The exit code of an expected failure (subclasses included); None for a bug."""
    return next((code for kind, code in EXIT_CODES.items() if isinstance(err, kind)), None)


def fail(err: BaseException, run_dir: Path, multirun: bool) -> float:
    """Report a failed run. A sweep goes on (its callback sums up); a single run exits."""
    if isinstance(err, Interrupted):
        where = err.path.parent.parent if err.path else run_dir  # rank 0 wrote the checkpoint
        log.warning("interrupted: %s. Resume with trainer.resume=%s", err, where)
        sys.exit(128 + err.signum)  # also stops a sweep: the user asked to stop
    code = exit_code(err)
    message = str(err) if code else "".join(traceback.format_exception(err))
    log.error("%s", message)
    if multirun:
        run_dir.mkdir(parents=True, exist_ok=True)
        RunFolder(run_dir).failed.write_text(f"{type(err).__name__}: {err}\n")
        return float("nan")
    print(f"error: {err}", file=sys.stderr)
    sys.exit(code or 1)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    RunFolder(run_dir).failed.unlink(missing_ok=True)  # a re-run of a failed sweep job
    try:
        check_overrides(cfg, list(hydra_cfg.overrides.task))
        _, metrics = fit_run(cfg, run_dir)
        return metrics[METRICS[cfg.sweep_metric].name]
    except Exception as err:  # noqa: BLE001 (every failure is reported; see fail())
        return fail(err, run_dir, hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    if asks_for_ddpm([a for a in sys.argv[1:] if not a.startswith("-")]):
        sys.argv.append(DDPM_RECIPE)
    main()
