"""The README's Python example, run as a user would run it from the checkout: it must work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs(tmp_path: Path) -> None:
    code = python_block("Python API")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={"VSEARCH_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
                                 "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"13 videos found: 12 indexed \(\d+ clips\), 0 unchanged, 1 failed", lines[0]), lines
    hits = [line for line in lines if "  (" in line]
    assert hits and all("moving left" in h for h in hits)
    assert any(line.startswith("12 videos,") for line in lines)
    assert any(line.startswith("not indexed:") for line in lines)
    assert re.match(r"\('[a-z ]+', 0\.\d+\)", lines[-1])
