"""The notebooks are committed executed (outputs and plots show on a code host), are what
notebooks/build.py writes, and execute again to the same printed results; each draws at least
one plot and asserts something about what it shows (an assertion that fails is an error
output, so a wrong number fails here, not only a crash)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(SRC.glob("*.ipynb"))


def _code(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(c):
    return c["source"] if isinstance(c["source"], str) else "".join(c["source"])


def _text(outputs):
    """What a cell printed (streams and text results, however the kernel chunked them), not
    images, whose bytes depend on the matplotlib build."""
    out = []
    for o in outputs:
        if o.get("output_type") == "stream":
            out.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
        elif o.get("output_type") == "execute_result":
            t = o.get("data", {}).get("text/plain", "")
            out.append("".join(t) if isinstance(t, list) else t)
    return "".join(out)


def _images(nb):
    return sum(1 for c in _code(nb) for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_executed_with_a_plot_and_an_assertion(path):
    nb = json.loads(path.read_text())
    code = _code(nb)
    assert all(c["execution_count"] is not None for c in code), "not executed"
    assert all(o.get("output_type") != "error" for c in code for o in c["outputs"])
    assert _images(nb) >= 1, "no plot among the outputs"
    assert any("\nassert " in "\n" + _source(c) for c in code), "asserts nothing"


def test_notebooks_are_what_the_generator_writes(tmp_path):
    subprocess.run([sys.executable, str(SRC / "build.py"), str(tmp_path), "--no-execute"],
                   check=True)
    made = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert made == [p.name for p in NOTEBOOKS]
    for name in made:
        fresh = json.loads((tmp_path / name).read_text())
        committed = json.loads((SRC / name).read_text())
        assert [(c["cell_type"], c["id"], _source(c)) for c in fresh["cells"]] == \
            [(c["cell_type"], c["id"], _source(c)) for c in committed["cells"]], name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_to_the_committed_results(path, monkeypatch):
    # the kernel imports this checkout's lpusim, whatever else is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(SRC.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    committed = [_text(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]
    # the kernel is stopped at once when the notebook is done (it has nothing to save)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    fresh = [_text(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]
    assert fresh == committed, "the committed outputs are stale: run notebooks/build.py"
    assert sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})) >= 1
