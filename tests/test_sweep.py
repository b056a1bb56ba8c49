"""Sweeps: identical results for any worker count or executor, resume after a kill, reports."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpusim.errors import ConfigError
from lpusim.sweep import load_sweep, read_results, run_sweep

DATA = Path(__file__).parent / "data"
SWEEP = DATA / "sweep-200.yaml"


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "r.jsonl"
    run_sweep(load_sweep(SWEEP), out, workers=1)
    return out


def test_sweep_has_200_points_in_grid_order(serial):
    rows = read_results(serial)
    assert len(rows) == 200
    assert [r["point"] for r in rows] == list(range(200))
    assert not any("error" in r for r in rows)
    # acceptance is the slowest-varying axis, hop latency the fastest
    assert rows[0]["overrides"] == {"speculation.acceptance": 0.5, "speculation.gamma": 1,
                                    "system.links.local_hop_latency_ps": "100ns"}


def test_two_workers_give_identical_bytes(serial, tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(load_sweep(SWEEP), out, workers=2)
    assert out.read_bytes() == serial.read_bytes()


def test_dask_local_cluster_gives_identical_bytes(serial, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        out = tmp_path / "r.jsonl"
        run_sweep(load_sweep(SWEEP), out, executor=client.get_executor())
    assert out.read_bytes() == serial.read_bytes()


def test_killed_sweep_resumes_without_loss_or_duplicates(serial, tmp_path):
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "lpusim.cli", "sweep", str(SWEEP), "-o", str(out),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 70:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes()
    lines = partial.split(b"\n")
    assert 0 < len(lines) - 1 < 200, "the kill should land mid-sweep"
    for raw in lines[:-1]:
        json.loads(raw)                    # only whole lines
    ids = [json.loads(raw)["id"] for raw in lines[:-1]]
    assert len(ids) == len(set(ids))
    subprocess.run(cmd, check=True, capture_output=True)
    assert out.read_bytes() == serial.read_bytes()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_report_from_sweep(serial, tmp_path):
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "report", str(serial), "-o",
                        str(tmp_path / "rep")], capture_output=True, text=True, check=True)
    assert "report.html" in r.stderr
    rep = tmp_path / "rep"
    for name in ("speedup_vs_acceptance", "tokens_vs_gamma", "latency_breakdown", "heatmap"):
        assert (rep / f"{name}.png").stat().st_size > 1000
        assert (rep / f"{name}.svg").read_text().startswith("<?xml")
    series = json.loads((rep / "series.json").read_text())
    sva = series["speedup_vs_acceptance"]
    assert set(sva) == {"1", "2", "3", "4", "6"}
    assert sva["4"]["acceptance"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert all(a < b for a, b in zip(sva["4"]["speedup"], sva["4"]["speedup"][1:], strict=False))
    assert series["heatmap"]["x"] == ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8",
                                      "0.85", "0.9", "0.95"]
    page = (rep / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "Scenario and assumptions" in page


def test_bad_sweep_value_points_at_the_grid_entry(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"kind: sweep\nversion: 1\nbase: {DATA / 'small-specdec.yaml'}\ngrid:\n"
                   "  speculation.gamma: [2, 300]\n  chips: [8]\n  batch: []\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(bad)
    msgs = [str(i) for i in e.value.issues]
    assert msgs == [f"{bad}:7:10: grid.batch: expected a non-empty list of values"]


def test_bad_sweep_value_checked_against_scenario(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"kind: sweep\nversion: 1\nbase: {DATA / 'small-specdec.yaml'}\ngrid:\n"
                   "  speculation.gamma: [2, 300]\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(bad)
    assert [str(i) for i in e.value.issues] == [
        f"{bad}:5:26: grid.speculation.gamma[1]: 300: 300 is above the maximum 256"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lpusim.cli", *args], capture_output=True,
                          text=True)


@pytest.mark.parametrize("content,message", [
    (b"", "{f}: no results: the file is empty"),
    (b'{"point": 0, "id": "a", "overrides": {}, "error": "x"}\nnot json\n'
     b'{"point": 1, "id": "b", "overrides": {}, "error": "y"}\n',
     "{f}:2: not a JSON object line (is this an lpusim results file?)"),
    (b'{"id": "a", "overrides": {}}\n',
     "{f}:1: point: missing required field 'point' (not an lpusim sweep result line)"),
    (b'[1, 2]\n', "{f}:1: line: expected a JSON object, got a list (not an lpusim sweep "
                  "result line)"),
    (b"\x00\x01binary\n", "{f}:1: not a JSON object line (is this an lpusim results file?)"),
])
def test_report_rejects_bad_results_files(tmp_path, content, message):
    f = tmp_path / "r.jsonl"
    f.write_bytes(content)
    out = tmp_path / "rep"
    r = _cli("report", str(f), "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "lpusim: error: " + message.format(f=f)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("text,message", [
    ("kind: scenario\nversion: 1\n", "{f}:1:7: kind: expected 'kind: sweep', got 'scenario'"),
    ("kind: sweep\nversion: 1\nbase: nope\ngrid: {chips: [8]}\n",
     "{f}:3:7: base: no scenario named 'nope'"),
    ("kind: sweep\nversion: 1\nbase: llama-3.1-70b-groqrack-576\ngrid: {chips: 8}\n",
     "{f}:4:15: grid.chips: expected a non-empty list of values"),
    ("kind: sweep\nversion: 1\nbase: llama-3.1-70b-groqrack-576\ngrid: {chips: [8, 8]}\n",
     "{f}:4:15: grid.chips: values repeat"),
    ("kind: sweep\nversion: 1\nbase: llama-3.1-70b-groqrack-576\ngird: {chips: [8]}\n",
     "{f}:4:1: gird: unknown key; did you mean 'grid'? (valid keys: base, grid, kind, name, "
     "version)"),
])
def test_sweep_rejects_bad_files(tmp_path, text, message):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    out = tmp_path / "r.jsonl"
    r = _cli("sweep", str(f), "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert message.format(f=f) in r.stderr.splitlines()[0]
    assert not out.exists()


def test_killed_report_leaves_no_corrupt_file(serial, tmp_path):
    out = tmp_path / "rep"
    proc = subprocess.Popen([sys.executable, "-m", "lpusim.cli", "report", str(serial), "-o",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(out.glob("*.png"))):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for p in out.iterdir():
        if p.name.endswith(".tmp"):
            continue                     # a temp file is never a result
        data = p.read_bytes()
        if p.suffix == ".png":
            assert data.startswith(b"\x89PNG") and data.rstrip().endswith(b"\xaeB`\x82")
        elif p.suffix == ".svg":
            assert data.rstrip().endswith(b"</svg>")
        elif p.suffix == ".html":
            assert data.rstrip().endswith(b"</html>")
        elif p.suffix == ".json":
            json.loads(data)


def test_speedup_plot_has_one_line_per_strategy(tmp_path):
    from lpusim.report.plots import speedup_vs_acceptance

    def row(strategy, a, speedup):
        return {"overrides": {"speculation.strategy": strategy, "speculation.acceptance": a},
                "speedup": speedup,
                "speculation": {"strategy": strategy, "gamma": 3, "gamma_search": "auto",
                                "acceptance": {"kind": "constant", "a": a}}}

    rows = [row(s, a, sp) for s, base in (("draft", 1.0), ("async", 2.0))
            for a, sp in ((0.8, base), (0.9, base + 1))]
    out = speedup_vs_acceptance(rows, tmp_path)
    assert out is not None
    assert out["series"] == {"async, gamma=auto": {"acceptance": [0.8, 0.9], "speedup": [2.0, 3.0]},
                             "draft, gamma=auto": {"acceptance": [0.8, 0.9], "speedup": [1.0, 2.0]}}


@pytest.mark.parametrize("path", sorted(Path("workloads/sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_sweeps_load(path):
    # every point's overrides make a valid scenario (bad grids fail here, not mid-sweep)
    from lpusim import api
    spec = load_sweep(str(path))
    points = list(spec.points())
    assert len(points) == spec.size > 1
    for _i, overrides in points[:: max(1, len(points) // 8)]:
        api.load_scenario(spec.base, overrides)


# ------------------------------------------------- resumed sweeps cannot mix stale rows

def _stale_setup(tmp_path):
    (tmp_path / "m.yaml").write_text((Path(__file__).parent.parent /
                                      "workloads/llama-3.2-3b.yaml").read_text())
    base = (DATA / "small-specdec.yaml").read_text().replace("model: llama-3.2-3b",
                                                             "model: ./m.yaml")
    (tmp_path / "base.yaml").write_text(base)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("kind: sweep\nversion: 1\nbase: base.yaml\ngrid:\n"
                     "  speculation.gamma: [2, 4]\n")
    return sweep


def _result_fields(rows):
    return [{k: v for k, v in r.items() if k != "basis"} for r in rows]


@pytest.mark.parametrize("edit", ["scenario", "model file", "code"])
def test_rerun_after_an_edit_recomputes_instead_of_keeping_old_rows(edit, tmp_path,
                                                                    monkeypatch):
    from lpusim import caches
    from lpusim.sweep import stale_rows
    sweep = _stale_setup(tmp_path)
    out = tmp_path / "r.jsonl"
    first = run_sweep(load_sweep(sweep), out)
    assert stale_rows(load_sweep(sweep), out) == 0
    before = out.read_bytes()
    assert run_sweep(load_sweep(sweep), out) == first and out.read_bytes() == before
    if edit == "scenario":
        f = tmp_path / "base.yaml"
        f.write_text(f.read_text().replace("context: 1024", "context: 4096"))
    elif edit == "model file":
        f = tmp_path / "m.yaml"
        f.write_text(f.read_text().replace("layers: 28", "layers: 14"))
    else:
        monkeypatch.setattr(caches, "code_fingerprint", lambda: "another lpusim")
    assert stale_rows(load_sweep(sweep), out) == 2
    again = run_sweep(load_sweep(sweep), out)
    fresh = run_sweep(load_sweep(sweep), tmp_path / "fresh.jsonl")
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()
    assert again == fresh and len(again) == 2
    assert again[0]["basis"] != first[0]["basis"]
    if edit != "code":          # the edit changes the answer, so old rows would have been wrong
        assert _result_fields(again) != _result_fields(first)


def test_rows_without_a_basis_are_recomputed(tmp_path):
    sweep = _stale_setup(tmp_path)
    out = tmp_path / "r.jsonl"
    rows = run_sweep(load_sweep(sweep), out)
    old = [{k: v for k, v in r.items() if k != "basis"} | {"tokens_per_second": 1.0}
           for r in rows]
    out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in old))
    assert run_sweep(load_sweep(sweep), out) == rows


def test_cli_says_it_recomputes_stale_rows(tmp_path, capsys):
    from lpusim import cli
    sweep = _stale_setup(tmp_path)
    out = tmp_path / "r.jsonl"
    assert cli.main(["sweep", str(sweep), "-o", str(out)]) == 0
    assert "recomputing" not in capsys.readouterr().err
    f = tmp_path / "base.yaml"
    f.write_text(f.read_text().replace("context: 1024", "context: 2048"))
    assert cli.main(["sweep", str(sweep), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"{out}: 2 rows were computed from another base scenario or lpusim version; "
            "recomputing them\n") in err
    assert len(read_results(out)) == 2
