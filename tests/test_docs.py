"""The documentation: the pages build with no warning, their generated command output is what the
code prints now, the README's links lead somewhere, and the Python API page's example runs as a
user would run it from the checkout."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REFRESH = "refresh the generated output with: cog -r docs/*.md"


def fenced_block(path: Path, language: str) -> str:
    """The first ```language block of a Markdown file."""
    return re.search(rf"```{language}\n(.*?)```", path.read_text(), re.S).group(1)


def test_the_python_api_example_runs(tmp_path: Path) -> None:
    code = fenced_block(DOCS / "python-api.md", "python")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={"VSEARCH_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
                                 "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"13 videos found: 12 indexed \(\d+ windows\), 0 unchanged, 1 failed", lines[0]), lines
    hits = [line for line in lines if "  (" in line]
    assert hits and all("moving left" in h for h in hits)
    assert any(line.startswith("12 videos,") for line in lines)
    assert any(line.startswith("not indexed:") for line in lines)
    assert re.match(r"\('[a-z ]+', 0\.\d+\)", lines[-1])


def test_the_readme_python_taste_is_part_of_the_tested_example() -> None:
    """The README shows a few lines of the Python API page's example, which the test above runs."""
    taste = [line for line in fenced_block(REPO / "README.md", "python").splitlines() if line.strip()]
    example = fenced_block(DOCS / "python-api.md", "python").splitlines()
    missing = [line for line in taste if line not in example]
    assert taste and not missing, f"README lines not in docs/python-api.md's example: {missing}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]', or the test extra)")
def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    """Strict: a broken link or anchor, an absolute link or a page left out of nav fails (mkdocs.yml)."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").exists()


def generated_pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if "<!-- [[[cog" in p.read_text())


@pytest.mark.skipif(importlib.util.find_spec("cogapp") is None,
                    reason="cogapp is not installed (pip install -e '.[docs]', or the test extra)")
def test_generated_output_is_current() -> None:
    """cog reruns every [[[cog ]]] block (each command's --help...) and fails where a page differs."""
    pages = generated_pages()
    assert DOCS / "commands.md" in pages
    result = subprocess.run([sys.executable, "-m", "cogapp", "--check", "--diff", "--check-fail-msg", REFRESH,
                             *(str(p.relative_to(REPO)) for p in pages)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_has_its_help_on_the_commands_page() -> None:
    import typer

    from vsearch.cli.main import load_app

    commands = set(typer.main.get_command(load_app()).commands)
    page = (DOCS / "commands.md").read_text()
    shown = set(re.findall(r'\[\[\[cog cli_help\("([a-z-]+)"\) \]\]\]', page))
    assert commands == shown, f"no --help block for {sorted(commands - shown)}; no such command: {sorted(shown - commands)}"
    assert "[[[cog cli_help() ]]]" in page  # `vsearch --help` itself


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading (mkdocs checks the pages' own links with its own)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_lead_to_files_that_exist() -> None:
    """Relative links and pictures of README.md, as GitHub resolves them: the file, and the heading."""
    text = (REPO / "README.md").read_text()
    links = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(relative) >= 10, links
    broken = []
    for link in relative:
        target, _, anchor = link.partition("#")
        path = (REPO / target).resolve() if target else REPO / "README.md"
        if not path.is_file() or not path.is_relative_to(REPO):
            broken.append(link)
        elif anchor and path.suffix == ".md":
            headings = re.findall(r"(?m)^#{1,6} (.+)$", path.read_text())
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(link)
    assert not broken, f"README links to nothing: {broken}"


def test_readme_links_every_page() -> None:
    text = (REPO / "README.md").read_text()
    unlinked = [p.name for p in DOCS.glob("*.md") if f"(docs/{p.name})" not in text and p.name != "index.md"]
    assert not unlinked, f"pages the README's Documentation list does not link: {unlinked}"
