"""No hidden shared state and no process-wide side effects from the library: results are the
caller's own, every cache is bounded and cleared in one place (lpusim.caches), gc and
matplotlib are left as found, and the on-disk step cache survives corrupt entries."""

import ast
import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lpusim import api, caches, cli
from lpusim import step as step_mod
from lpusim.config import yamlio

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "lpusim"
SMALL = str(ROOT / "tests/data/small-specdec.yaml")


def test_mutating_a_result_cannot_change_a_later_one():
    sc = api.load_scenario(SMALL)
    first = api.run(sc)
    expected = json.dumps(first.to_dict(), sort_keys=True)
    first.sram_bytes_by_category["weights"] = 0
    first.breakdown_us.clear()
    first.unit_utilisation["mxm"] = -1.0
    first.assumptions["mutated"] = True
    assert first.speculation is not None
    first.speculation.clear()
    again = api.run(api.load_scenario(SMALL))
    assert json.dumps(again.to_dict(), sort_keys=True) == expected


def test_step_metrics_are_the_callers_copy():
    sc = api.load_scenario(SMALL)
    a = api.baseline_step(sc)
    a.sram_bytes_by_category["weights"] = 0
    a.breakdown_cycles.clear()
    a.unit_busy_cycles.clear()
    a.extra["x"] = 1
    b = api.baseline_step(sc)
    assert b.sram_bytes_by_category["weights"] > 0 and b.breakdown_cycles
    assert b.unit_busy_cycles and "x" not in b.extra


def test_a_context_the_window_holds_reuses_the_step_compiled_for_the_window():
    """A step compiled for its KV window does not depend on a context the window holds: a
    what-if on such a context answers from the step already computed (one cache entry, the
    same metrics), one beyond it compiles its own."""
    from lpusim.step import step_known, step_metrics
    sc = api.load_scenario(SMALL, {"context_window": 4096})
    assert sc.system.compiler.attention_span == "window"
    inputs = dict(chips=sc.chips_used, tp=sc.tp, context=1000, context_window=4096)
    first = step_metrics(sc.model, sc.system, **inputs)
    for ctx in (1, 3000, 4095):
        assert step_known(sc.model, sc.system, **{**inputs, "context": ctx})
        assert step_metrics(sc.model, sc.system, **{**inputs, "context": ctx}) == first
    assert not step_known(sc.model, sc.system, **{**inputs, "context": 4096})
    assert not step_known(sc.model, sc.system, **{**inputs, "positions": 2, "context": 4095})


def test_every_cache_is_registered_bounded_and_cleared():
    api.run(api.load_scenario(SMALL))
    info = caches.info()
    assert set(info) >= {"step", "link_graph", "placement_graph", "documents",
                         "code_fingerprint"}
    assert all(bound >= 1 for _n, bound in info.values())
    assert info["step"][0] > 0 and info["documents"][0] > 0
    caches.clear()
    assert all(n == 0 for n, _b in caches.info().values())


# module-level containers that are filled once at import (tables, not caches)
IMPORT_TIME_TABLES = {"lpusim/units.py:BANDWIDTH_UNITS",
                      # the speculation strategies, registered by strategies.py (a registry)
                      "lpusim/speculative/registry.py:STRATEGIES",
                      # the forked children not yet reaped: the processes themselves, not a
                      # cache (empty again once each is collected or cancelled)
                      "lpusim/parallel.py:_LIVE"}


def _empty_container(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Dict):
        return not value.keys
    if isinstance(value, ast.List | ast.Set):
        return not value.elts
    return isinstance(value, ast.Call) and getattr(value.func, "id", "") in (
        "dict", "list", "set", "OrderedDict", "defaultdict") and not value.args


def test_no_cache_outside_lpusim_caches():
    """functools caches and module-level mutable containers live in lpusim/caches.py only."""
    import re
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        rel = str(f.relative_to(ROOT))
        if rel == "lpusim/caches.py":
            continue
        text = f.read_text()
        for m in re.finditer(r"lru_cache|functools\.cache\b|@cache\b", text):
            bad.append(f"{rel}: {m.group()}")
        for node in ast.parse(text).body:         # module level only
            if isinstance(node, ast.Assign | ast.AnnAssign) and _empty_container(node.value):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                name = f"{rel}:{getattr(target, 'id', '?')}"
                if name not in IMPORT_TIME_TABLES:
                    bad.append(f"{name} (line {node.lineno}): an empty module-level container "
                               "(a cache? use lpusim.caches)")
    assert not bad


@contextlib.contextmanager
def _scratch_cache(name: str, maxsize: int, **kw: Any) -> Iterator[caches.BoundedCache[Any]]:
    """A BoundedCache for one test, unregistered after it."""
    try:
        yield caches.BoundedCache(name, maxsize, **kw)
    finally:
        del caches._REGISTRY[name]


def test_bounded_cache_keeps_the_most_recent():
    with _scratch_cache("test-bounded", 2) as c:
        c.put("a", 1)
        c.put("b", 2)
        assert c.get("a") == 1                  # a is now the most recent
        c.put("c", 3)
        assert (c.get("a"), c.get("b"), c.get("c"), len(c)) == (1, None, 3, 2)


def test_a_weighted_cache_keeps_its_weight_bound():
    with _scratch_cache("test-weighted", 10, weigh=len, max_weight=5) as c:
        c.put("a", "xx")
        c.put("b", "yyy")
        assert (len(c), c.weight) == (2, 5)
        c.put("c", "z")                          # 6 > 5: the least recent goes
        assert (c.get("a"), c.get("b"), c.get("c"), c.weight) == (None, "yyy", "z", 4)
        c.put("d", "w" * 9)                      # heavier than the bound: kept alone
        assert (len(c), c.weight, c.get("d")) == (1, 9, "w" * 9)
        caches.clear()
        assert (len(c), c.weight) == (0, 0)


def test_storing_a_key_again_replaces_its_weight_and_makes_it_the_most_recent():
    with _scratch_cache("test-again", 3, weigh=len, max_weight=6) as c:
        c.put("a", "xx")
        c.put("b", "yy")
        c.put("a", "x")                          # weight 3, order b, a
        assert (len(c), c.weight, c.values()) == (2, 3, ["yy", "x"])
        c.put("c", "zzzz")                       # 7 > 6: b, now the least recent, goes
        assert (c.get("b"), c.values(), c.weight) == (None, ["x", "zzzz"], 5)


def test_derived_values_live_with_their_object():
    import gc
    import weakref

    class Thing:
        def __init__(self) -> None:
            self.derived: dict = {}

    a, b = Thing(), Thing()
    made = []

    def make(v: int) -> int:
        made.append(v)
        return v

    assert caches.derived(a, "k", lambda: make(10)) == 10
    assert caches.derived(a, "k", lambda: make(11)) == 10      # same object: kept
    assert caches.derived(b, "k", lambda: make(12)) == 12      # another object: made
    assert made == [10, 12]
    gone = weakref.ref(a)
    del a
    gc.collect()
    assert gone() is None                  # nothing but the object itself held its values


def test_yaml_scalar_loader_keeps_no_memo(tmp_path):
    for i in range(20):
        f = tmp_path / f"m{i}.yaml"
        f.write_text((ROOT / "workloads/llama-3.2-1b.yaml").read_text())
        yamlio.load_document(f)
    assert not yamlio._SCALARS.constructed_objects
    assert not yamlio._SCALARS.recursive_objects


_SIDE_EFFECTS = r"""
import gc, json, sys, tempfile
import matplotlib
matplotlib.use("svg")
matplotlib.rcParams["font.size"] = 17.0
matplotlib.rcParams["axes.grid"] = False
before = {k: repr(v) for k, v in matplotlib.rcParams.items() if k != "backend"}
from lpusim import api
out = {}
for enabled in (True, False):
    gc.enable() if enabled else gc.disable()
    sc = api.load_scenario(sys.argv[1], {"fidelity": "full"})
    r = api.run(sc)
    with tempfile.TemporaryDirectory() as d:
        api.plot_gamma_curve(r, d)
        api.plot_breakdown([r, r], d, labels=["a", "b"])
    out[str(enabled)] = gc.isenabled()
after = {k: repr(v) for k, v in matplotlib.rcParams.items() if k != "backend"}
out["rc_changed"] = sorted(k for k in before if before[k] != after[k])
out["backend"] = matplotlib.get_backend()
out["pyplot"] = "matplotlib.pyplot" in sys.modules
print(json.dumps(out))
"""


def test_gc_and_matplotlib_are_left_as_found():
    proc = subprocess.run([sys.executable, "-c", _SIDE_EFFECTS, SMALL], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out == {"True": True, "False": False, "rc_changed": [], "backend": "svg",
                   "pyplot": False}


@pytest.mark.parametrize("enabled", [True, False])
def test_a_run_computes_with_the_collector_paused_and_leaves_it_as_found(enabled,
                                                                          monkeypatch):
    import gc
    seen = []
    real = step_mod._step

    def probe(**kw):
        seen.append(gc.isenabled())
        return real(**kw)
    monkeypatch.setattr(step_mod, "_step", probe)
    caches.clear()
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        api.run(SMALL)
        assert gc.isenabled() == enabled
        step_mod.step_metrics(api.load_model("llama-3.2-1b"), api.load_system("groqnode-8"),
                              chips=8, tp=8, positions=3)       # a step called directly
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
    assert seen and not any(seen)


@pytest.mark.parametrize("enabled", [True, False])
def test_cli_restores_gc_and_the_disk_cache(enabled, tmp_path, monkeypatch, capsys):
    import gc
    seen = {}

    def probe(args):
        seen["gc"], seen["disk"] = gc.isenabled(), caches.disk_dir()
        return 0
    monkeypatch.setitem(cli.COMMANDS, "validate", probe)
    monkeypatch.setenv("LPUSIM_CACHE_DIR", str(tmp_path))
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert cli.main(["validate", "x.yaml"]) == 0
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
    assert seen == {"gc": False, "disk": tmp_path}
    assert caches.disk_dir() is None


def test_the_command_entry_point_leaves_the_collector_paused_for_the_process_end(
        monkeypatch):
    # `lpusim` (cli.entry) is main for a process that ends with it: re-enabling the collector
    # would only rescan what the command made before the process exits
    import gc
    monkeypatch.setitem(cli.COMMANDS, "validate", lambda args: 3)
    monkeypatch.setattr(sys, "argv", ["lpusim", "validate", "x.yaml"])

    def leave(code):                # the process end itself is tested in a process of its own
        raise SystemExit(code)
    monkeypatch.setattr(cli, "leave", leave)
    was = gc.isenabled()
    try:
        gc.enable()
        with pytest.raises(SystemExit) as e:
            cli.entry()
        assert e.value.code == 3 and not gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.parametrize("error, code", [("OSError(28, 'No space left on device')", 2),
                                         ("BrokenPipeError(32, 'Broken pipe')", 0)])
def test_output_lost_at_the_process_end_is_an_error_unless_its_reader_is_gone(error, code):
    prog = f"""
import sys
from lpusim import cli
class Full:
    def write(self, text): return len(text)
    def flush(self): raise {error}
sys.stdout = Full()
cli.leave(0)
"""
    p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == code, p.stderr
    assert p.stderr == ("lpusim: error: No space left on device\n" if code else "")


@pytest.mark.parametrize("thread", [False, True])
def test_the_command_ends_its_process_with_exit_handlers_run_and_output_flushed(thread):
    # cli.leave skips the interpreter's teardown of every object, not the exit handlers or
    # buffered output; a non-daemon thread still running gets Python's own shutdown
    code = f"""
import atexit, sys, threading, time
from lpusim import cli
atexit.register(lambda: print("exit handler ran"))
if {thread}:
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
sys.stdout.write("buffered " * 20000)
cli.leave(7)
print("never")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 7, p.stderr
    assert p.stdout.startswith("buffered " * 20000) and "exit handler ran" in p.stdout
    assert "never" not in p.stdout and ("thread done" in p.stdout) == thread


# ----------------------------------------------------------------- the on-disk step cache

@pytest.fixture
def disk(tmp_path):
    caches.clear()
    caches.set_disk_dir(tmp_path)
    yield tmp_path
    caches.set_disk_dir(None)
    caches.clear()


def _step():
    return api.baseline_step(api.load_scenario(SMALL))


def _entries(d: Path) -> list[Path]:
    return sorted((d / "steps").rglob("*.json"))


def test_disk_cache_round_trip(disk, monkeypatch):
    first = _step()
    (entry,) = _entries(disk)
    assert json.loads(entry.read_text()) == dataclasses.asdict(first)
    caches.clear()                                       # a new process, as far as memory goes

    def no_compile(**kw):
        raise AssertionError("recompiled although the step is on disk")
    monkeypatch.setattr(step_mod, "_step", no_compile)
    assert _step() == first


def test_disk_cache_is_invalidated_by_a_code_change(disk, monkeypatch):
    first = _step()
    caches.clear()
    monkeypatch.setattr(caches, "code_fingerprint", lambda: "another version of lpusim")
    calls = []
    real = step_mod._step
    monkeypatch.setattr(step_mod, "_step", lambda **kw: calls.append(1) or real(**kw))
    assert _step() == first
    assert calls == [1] and len(_entries(disk)) == 2


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[1, 2]", b'{"latency_cycles": 1}',
                                     b"\xff\xfe binary", "STEP_WITH_WRONG_TYPES"])
def test_corrupt_disk_entry_is_recomputed_and_replaced(disk, garbage):
    first = _step()
    (entry,) = _entries(disk)
    if garbage == "STEP_WITH_WRONG_TYPES":
        d = json.loads(entry.read_text())
        d["latency_cycles"] = "12"
        garbage = json.dumps(d).encode()
    entry.write_bytes(garbage)
    caches.clear()
    assert _step() == first
    assert json.loads(entry.read_text()) == dataclasses.asdict(first)


def test_every_step_field_type_is_checked_on_load():
    """A new StepMetrics field of a type _well_formed does not know would make every disk
    entry look corrupt (the cache would silently never hit)."""
    assert step_mod._well_formed(_step())


def test_built_specs_follow_edits_of_every_file_they_read(tmp_path):
    """The loader keeps specs built from files no override reaches; editing any file they
    were read from (here the chip a system names, two references deep) rebuilds them."""
    root = Path(__file__).resolve().parent.parent
    for sub, name in (("chip_configs", "groqchip1"), ("chip_configs", "groqnode-8"),
                      ("workloads", "llama-3.2-1b")):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / f"{name}.yaml").write_text(
            (root / sub / f"{name}.yaml").read_text())
    sc = tmp_path / "sc.yaml"
    sc.write_text("kind: scenario\nversion: 1\nname: t\nmodel: workloads/llama-3.2-1b.yaml\n"
                  "system: chip_configs/groqnode-8.yaml\n")
    system_file = (tmp_path / "chip_configs" / "groqnode-8.yaml").read_text()
    assert "chip: groqchip1" in system_file
    (tmp_path / "chip_configs" / "groqnode-8.yaml").write_text(
        system_file.replace("chip: groqchip1", "chip: groqchip1.yaml"))
    first = api.load_scenario(str(sc))
    assert api.load_scenario(str(sc)) is not None
    chip = tmp_path / "chip_configs" / "groqchip1.yaml"
    text = chip.read_text()
    assert "clock_hz: 900MHz" in text
    chip.write_text(text.replace("clock_hz: 900MHz", "clock_hz: 1.1GHz"))
    again = api.load_scenario(str(sc))
    assert first.system.chip.clock_hz == 900_000_000
    assert again.system.chip.clock_hz == 1_100_000_000


@pytest.mark.parametrize("ref", ["llama-3.1-70b-specdec", "llama-3.1-70b-h100x8"])
def test_run_result_to_dict_is_asdict_and_shares_nothing(ref):
    r = api.run(api.load_scenario(ref))
    d = r.to_dict()
    assert d == dataclasses.asdict(r)
    first = next(iter(d["breakdown_us"]))
    d["breakdown_us"][first] = -1.0
    if d.get("speculation"):
        d["speculation"]["gamma"] = -1
    again = r.to_dict()
    assert again["breakdown_us"][first] != -1.0
    assert not again.get("speculation") or again["speculation"]["gamma"] != -1
