"""The repository describes itself: nothing refers to paths outside it, and the architecture
document names files that exist."""

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = ("../" + "shared", "/work/" + "shared")     # spelled apart so this file passes
SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".venv", ".venv-ci", ".pytest_cache",
             ".ruff_cache", ".mypy_cache", ".hypothesis"}


def repo_files() -> list[Path]:
    """The files of the repository: git's list when available, else a walk of the tree."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file()
                and not SKIP_DIRS & set(p.relative_to(ROOT).parts)]


def test_nothing_refers_to_paths_outside_the_repository():
    files = repo_files()
    assert len(files) > 50
    bad = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue                                  # binary test inputs
        for n, line in enumerate(text.splitlines(), 1):
            if any(o in line for o in OUTSIDE):
                bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert not bad, "refer to files inside the repository (docs/...):\n" + "\n".join(bad)


def test_docs_exist():
    for name in ("architecture.md", "references.md"):
        assert (ROOT / "docs" / name).stat().st_size > 2000


# named on purpose although absent from a checkout: inside the wheel, or an example location
NOT_IN_CHECKOUT = {"lpusim/chip_configs/", "lpusim/workloads/", "lpusim/gpu/"}


def test_architecture_names_files_that_exist():
    text = (ROOT / "docs/architecture.md").read_text()
    paths = set(re.findall(r"`((?:lpusim|tests|docs|chip_configs|workloads)/[\w./-]+?)`", text))
    paths |= {m.split(":")[0] for m in re.findall(r"`(lpusim/[\w/]+\.py)[:`]", text)}
    assert len(paths) > 20
    missing = sorted(p for p in paths - NOT_IN_CHECKOUT if "NAME" not in p and "*" not in p
                     and not (ROOT / p.split(":")[0].rstrip("/")).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_readme_points_at_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme and "docs/references.md" in readme
    # the two set-up commands, verbatim (CI runs exactly these)
    assert "pip install -e . && lpusim run" in readme
    assert "pip install -e '.[dev]' && pytest" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "pip install -e . && lpusim run" in ci and "pip install -e '.[dev]' && pytest" in ci


def test_performance_page_is_generated_from_its_json():
    """docs/performance.md is `python -m benchmarks.doc docs/performance.json`: every number on
    it comes from a measurement, none is typed in."""
    import sys
    sys.path.insert(0, str(ROOT))
    from benchmarks.doc import render
    data = json.loads((ROOT / "docs/performance.json").read_text())
    assert (ROOT / "docs/performance.md").read_text() == render(data)
    assert {c["name"] for c in data["cases"]} >= {"cli_run_cold", "step_70b_full", "sweep_1000"}
