"""The package's layout holds: tools are shells over the library, and every list that
names the config groups, the metrics or the run folder's files reads one declaration."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ddpm"
ROOT = PACKAGE.parent
# Top-level modules that are not tools: the package, its front door, the tools' helpers.
NOT_TOOLS = {"__init__", "api", "cli"}
STAGES = ["config", "diffusion", "nn", "data", "training", "sampling", "evaluation", "analysis"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tools() -> set[str]:
    top = {f"ddpm.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in NOT_TOOLS}
    return top | {"ddpm.cli", "ddpm.data.__main__"}


def library_modules() -> list[Path]:
    """Every module under the stage subpackages and runtime/ (bench/ is a tool)."""
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if p.parent != PACKAGE and "bench" not in p.parts and p.name != "__main__.py"
    )


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_top_level_is_the_tools_and_the_stages():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert subpackages == sorted([*STAGES, "runtime", "bench"])
    for tool in tools() - {"ddpm.cli", "ddpm.data.__main__"}:
        source = (ROOT / (tool.replace(".", "/") + ".py")).read_text()
        assert '__name__ == "__main__"' in source, f"{tool} is not a command-line tool"


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: module_name(p))
def test_no_library_module_imports_a_tool(path):
    bad = {name for name in imported(path) if name in tools() or name == "ddpm.api"}
    assert not bad, f"{module_name(path)} imports {sorted(bad)}"


def test_one_declaration_of_the_groups():
    """conf/ has a folder per group, the sweep records and the HParams table follow GROUPS,
    and the README's group table lists every group."""
    from ddpm.analysis.sweep import OPTION_GROUPS
    from ddpm.config.groups import CONF_DIR, GROUPS, HPARAM_KEYS, resolve
    from tests.conftest import compose_config

    folders = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert folders - {"runtime", "experiment", "hparams_search", "hydra"} == set(GROUPS)
    assert tuple(GROUPS) == OPTION_GROUPS
    run = resolve(compose_config())
    for key in HPARAM_KEYS:
        run.value(key)  # each names a key of the resolved config
    readme = (ROOT / "README.md").read_text()
    for group in [*GROUPS, "runtime", "experiment"]:
        assert f"| `{group}` |" in readme, f"README's group table lacks {group}"


def test_one_declaration_of_the_metrics_and_sampler_overrides():
    from ddpm.analysis.plots import TAGS
    from ddpm.diffusion.samplers import SAMPLERS
    from ddpm.evaluation.metrics import METRICS
    from ddpm.sampling.options import SAMPLER_OVERRIDES

    assert {tag.split("/")[1] for tag in TAGS} - {"loss"} == {
        m.name for m in METRICS.values() if m.needs
    }
    keys = set(SAMPLERS.shared_keys())
    for name in SAMPLERS.names():
        keys |= set(SAMPLERS.own_keys(name))
    assert set(SAMPLER_OVERRIDES) <= keys


def test_the_run_folders_file_names_live_in_one_module():
    names = ('"summary.json"', '"budget.json"', '"metrics.json"', '"samples.png"', '"FAILED"')
    names += ('"checkpoints"', '".hydra"')
    for path in PACKAGE.rglob("*.py"):
        if path.name == "run_folder.py" or "bench" in path.parts:
            continue
        text = path.read_text()
        assert not [n for n in names if n in text], f"{path} names a run file itself"
