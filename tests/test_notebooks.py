"""Every notebook executes cleanly (through the public API only)."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def test_notebooks_exist():
    assert NOTEBOOKS


def test_notebooks_are_what_the_generator_writes(tmp_path):
    import subprocess
    import sys
    src = Path(__file__).parent.parent / "notebooks"
    subprocess.run([sys.executable, str(src / "build.py"), str(tmp_path)], check=True)
    made = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert made == [p.name for p in NOTEBOOKS]
    for name in made:
        assert (tmp_path / name).read_text() == (src / name).read_text(), name
