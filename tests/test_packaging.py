"""What users install: one `vsearch` package, nothing importing the checkout's folder names.

pytest puts the repository root on sys.path, so a leftover `from indexer ...` would pass every
other test here and fail for users; these tests look at the installed modules and the wheel.
CI also runs them from a copy of tests/ outside the checkout against the installed wheel
(VSEARCH_WHEEL names it there).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import vsearch.bench
import vsearch.cli
import vsearch.data
import vsearch.indexer
import vsearch.search
import vsearch.web

BARE = {"indexer", "search", "cli", "bench", "data", "web"}
SUBPACKAGES = [vsearch.indexer, vsearch.search, vsearch.cli, vsearch.bench, vsearch.data, vsearch.web]
CHECKOUT = Path(__file__).resolve().parents[1]


def _python_files() -> list[Path]:
    files = [p for pkg in SUBPACKAGES for p in Path(pkg.__file__).parent.rglob("*.py")]
    return files + sorted(Path(__file__).parent.glob("*.py"))


def _bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in BARE]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in BARE:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # module paths written as strings, e.g. "indexer.decode:read_windows"
            head = node.value.split(":")[0]
            if ":" in node.value and head.split(".")[0] in BARE and head.replace(".", "").isidentifier():
                found.append(f"string {node.value!r}")
    return found


def test_nothing_imports_a_bare_folder_name() -> None:
    offenders = {str(p): bad for p in _python_files() if (bad := _bare_imports(p))}
    assert offenders == {}


def test_a_local_module_named_like_ours_does_not_shadow_vsearch(tmp_path: Path) -> None:
    for name in ("search", "indexer", "cli"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the local file was imported')\n")
    code = "import vsearch.search.keyword, vsearch.video.decode, vsearch.cli.main; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_run_time_data_ships_inside_the_package() -> None:
    assert "abseiling" in vsearch.data.path("kinetics400.txt").read_text()
    assert (vsearch.data.path("motion-model") / "config.json").is_file()
    # from an installed wheel, the files come from site-packages, not from a checkout's data/
    if os.environ.get("VSEARCH_WHEEL"):
        assert "site-packages" in vsearch.data.path("kinetics400.txt").parts


def _wheel(tmp_path: Path) -> Path:
    given = os.environ.get("VSEARCH_WHEEL")
    if given:
        return Path(given)
    if not (CHECKOUT / "pyproject.toml").exists():
        pytest.skip("no checkout to build a wheel from, and VSEARCH_WHEEL is not set")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(CHECKOUT)], check=True, capture_output=True)
    return next(tmp_path.glob("vsearch-*.whl"))


def test_the_wheel_installs_only_the_vsearch_package(tmp_path: Path) -> None:
    names = zipfile.ZipFile(_wheel(tmp_path)).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"vsearch"}
    assert "vsearch/data/kinetics400.txt" in names
    assert "vsearch/data/motion-model/model.safetensors" in names
    assert {"vsearch/web/templates/search.html", "vsearch/web/static/app.js"} <= set(names)
    assert not any(n.startswith("vsearch/tests/") or "/samples/" in n for n in names)
