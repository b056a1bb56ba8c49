"""Every notebook executes cleanly (through the public API only) and prints the answers the
API gives in this process: each code cell shows something, and key lines of each notebook
are recomputed here and must appear verbatim in its output."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _expected_lines(name: str) -> list[str] | None:
    """Lines the notebook must print, computed here with the same API calls (None: a notebook
    not listed here, which must then check its own answers with asserts)."""
    from lpusim import api
    chip = api.load_chip("groqchip1")
    if name.startswith("01"):
        base = api.run(api.load_scenario())
        return [f"baseline: {base.tokens_per_second:.0f} tokens/s per user, "
                f"{base.step_latency_us:.0f} us per token on {base.chips} chips in "
                f"{base.stages} stages"]
    if name.startswith("02"):
        base = api.run(api.load_scenario()).tokens_per_second
        p = api.plan(api.load_model("llama-3.1-70b"), api.load_chip("groq3-lp30"))
        return [f"baseline {base:.0f} tokens/s", f"LP30 needs {p['min_chips']} chips for "
                "Llama 3.1 70B"]
    if name.startswith("03"):
        model = api.load_model("llama-3.1-70b")
        return [f"context {ctx:6d}: {api.plan(model, chip, context=ctx)['min_chips']} chips"
                for ctx in (2048, 8192, 32768, 131072)]
    if name.startswith("04"):
        out = []
        for preset in ("flat-0.75", "bursty-mix"):
            acc = api.acceptance(preset)
            g, s = api.textbook_optimum(acc, 0.02, max_gamma=32)
            out.append(f"{preset:28s} E(gamma=7) = {acc.expected_tokens(7):.2f}   "
                       f"best gamma {g:2d}: {s:.2f}x")
        return out
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_and_prints_the_api_answers(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    silent = [i for i, c in enumerate(cells) if not c.get("outputs")]
    assert not silent, f"code cells {silent} show nothing"
    printed = "".join(o.get("text", "") for c in cells for o in c.get("outputs", [])
                      if o.get("output_type") == "stream" and o.get("name") == "stdout")
    expected = _expected_lines(path.name)
    if expected is None:
        asserts = sum("assert " in "".join(c.source) for c in cells)
        assert asserts, (f"{path.name} checks nothing: list lines it must print in "
                         "_expected_lines or give it asserts")
        return
    lines = set(printed.splitlines())
    missing = [ln for ln in expected if ln not in lines]
    assert not missing, f"{path.name} does not print: {missing}"


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 4


def test_notebooks_are_what_the_generator_writes(tmp_path):
    import subprocess
    import sys
    src = Path(__file__).parent.parent / "notebooks"
    subprocess.run([sys.executable, str(src / "build.py"), str(tmp_path)], check=True)
    made = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert made == [p.name for p in NOTEBOOKS]
    for name in made:
        assert (tmp_path / name).read_text() == (src / name).read_text(), name
