"""Typed errors where the CLI needs them: checks made when a scenario is loaded keep their
file:line:column, and fast fidelity falls back to the full program on a typed exception."""

from pathlib import Path

import pytest

from lpusim import api, cli
from lpusim.compiler import compile_pipeline, compile_program
from lpusim.errors import CompileError, ConfigError, NoStageTemplate
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.sim import metrics_full, metrics_pipeline

ROOT = Path(__file__).resolve().parent.parent
H = "tests/hostile"


def test_validate_fails_a_scenario_whose_trace_is_missing(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc = cli.main(["validate", f"{H}/scenario_acceptance_missing_trace.yaml",
                   "chip_configs/groqchip1.yaml"])
    out, err = capsys.readouterr()
    assert (rc, out) == (2, "chip_configs/groqchip1.yaml: ok\n")
    assert err == (f"lpusim: error: {H}/scenario_acceptance_missing_trace.yaml:14:15: "
                   f"speculation.acceptance: acceptance trace file not found: "
                   f"{H}/traces/none.csv\n")


def test_validate_reports_the_trace_file_line_too(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc = cli.main(["validate", f"{H}/scenario_acceptance_bad_trace.yaml"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == (f"lpusim: error: {H}/scenario_acceptance_bad_trace.yaml:14:15: "
                   f"speculation.acceptance: {H}/trace_out_of_range.csv:3: accepted: 9 is "
                   "outside [0, 4]\n")


def test_validate_passes_every_shipped_scenario(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workloads").rglob("*.yaml")
                   if "sweeps" not in p.parts)
    assert cli.main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(files)


def test_overridden_acceptance_is_named_as_overridden(tmp_path):
    with pytest.raises(ConfigError) as e:
        api.load_scenario("llama-3.1-70b-specdec",
                          {"speculation.acceptance": str(tmp_path / "none.csv")})
    (issue,) = e.value.issues
    assert issue.line is None and issue.field == "speculation.acceptance"
    assert issue.message.endswith("none.csv (overridden)")


def test_sweep_rejects_a_missing_trace_before_running(tmp_path):
    from lpusim.sweep import load_sweep
    f = tmp_path / "s.yaml"
    f.write_text("kind: sweep\nversion: 1\nbase: llama-3.1-70b-specdec\ngrid:\n"
                 "  speculation.acceptance: [0.8, traces/none.csv]\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(f)
    (issue,) = e.value.issues
    assert (issue.line, issue.column, issue.field) == (5, 33, "grid.speculation.acceptance[1]")
    assert "acceptance trace file not found" in issue.message


def _two_node_group() -> tuple:
    sc = api.load_scenario("llama-3.1-405b-groqrack-2304",
                           {"model": "llama-3.2-1b", "chips": 32, "context": 1024})
    g = build_decode_graph(sc.model, GraphParams(context=1024))
    return sc, g


def test_a_group_spanning_nodes_has_exact_templates():
    """TP 16 spans two nodes: the stage output lands on its chips at different cycles, and the
    next stage's template starts each hand-off piece by its chip's lag."""
    sc, g = _two_node_group()
    pp = compile_pipeline(g, sc.system, chips=32, tp=16)
    assert any("|group:" in k for k in pp.stages)
    fast = metrics_pipeline(pp)
    full = metrics_full(compile_program(g, sc.system, chips=32, tp=16))
    assert fast.latency_cycles == full.latency_cycles
    assert fast.breakdown_cycles == full.breakdown_cycles


def test_step_falls_back_to_the_full_program_on_the_typed_exception(monkeypatch):
    import lpusim.step as step_mod

    def no_template(*_a, **_k):
        raise NoStageTemplate(3, "layer#abc")

    monkeypatch.setattr(step_mod, "compile_pipeline", no_template)
    sc, _g = _two_node_group()
    fast = step_mod._step(sc.model, sc.system, chips=32, tp=16, positions=1, batch=1,
                          context=1024, precision=sc.precision, with_heads=False,
                          fidelity="fast", context_window=None)
    assert fast.extra["fast_fallback"] == "full"
    assert isinstance(NoStageTemplate(3, "k"), CompileError)
    g = build_decode_graph(sc.model, GraphParams(context=1024))
    full = metrics_full(compile_program(g, sc.system, chips=32, tp=16))
    assert fast.latency_cycles == full.latency_cycles


def test_input_checks_raise_typed_errors_not_bare_value_errors():
    """Graph, compiler (topology) and speculation code report bad input with lpusim errors, so
    the CLI can tell bad input (exit 2) from a bug (exit 1)."""
    import re
    bad = []
    for area in ("graph", "compiler", "speculative"):
        for f in sorted((ROOT / "lpusim" / area).rglob("*.py")):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if re.search(r"raise (ValueError|TypeError|KeyError)\(", line):
                    bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad
