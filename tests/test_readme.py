"""The README's "From Python" section runs as written, in a fresh interpreter."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_section(title: str) -> str:
    section = README.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_from_python_section_runs(tmp_path, feature_cache):
    code = python_section("From Python")
    checks = """
assert images.shape == (16, 28, 28, 1) and images.dtype.name == "uint8" and labels is None
assert run.step == 4 and again.step == 4 and (run.path / "samples.png").is_file()
assert metrics["fd"] > 0 and 0 <= metrics["recall"] <= 1
print("README OK", run.path)
"""
    env = {**os.environ, "DDPM_CACHE": str(feature_cache)}
    proc = subprocess.run(
        [sys.executable, "-c", code + checks],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "README OK outputs/" in proc.stdout
