"""Fuzzing the inputs: random and mutated configs, acceptance strings, trace files, quantities.

The property is the same everywhere: bad input gives the typed error the library documents
(`ConfigError`, `CapacityError`; `ValueError`/`UnitError` from the low-level parsers) with
one-line messages, good input gives a valid result; never another exception, never a hang.
Example counts are bounded and the search is derandomised so CI is deterministic and quick.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lpusim import api, cli
from lpusim.config import load
from lpusim.config.specs import ScenarioSpec
from lpusim.errors import CapacityError, ConfigError
from lpusim.speculative.acceptance import AcceptanceModel, load_trace, parse_acceptance
from lpusim.units import (
    BANDWIDTH_UNITS,
    FREQ_UNITS,
    SIZE_UNITS,
    TIME_UNITS_PS,
    UnitError,
    parse_quantity,
)

ROOT = Path(__file__).resolve().parent.parent
BASES = sorted([*ROOT.glob("chip_configs/*.yaml"), *ROOT.glob("workloads/*.yaml"),
                *ROOT.glob("workloads/scenarios/*.yaml"), ROOT / "tests/data/small-specdec.yaml"])
TEXTS = {p.name: p.read_text() for p in BASES}

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

UNITS = sorted({*SIZE_UNITS, *FREQ_UNITS, *BANDWIDTH_UNITS, *TIME_UNITS_PS, "MBps", "mb", "Hz/s",
                "", " ", "GHz ", "B/ s"})
numbers = st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(
    ["0", "-0", "1e400", "1e-400", "1e999999999", "nan", "inf", ".5", "1.", "2.5e3", "1" * 70]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr))
quantities = st.builds(lambda n, u: f"{n}{u}", numbers, st.sampled_from(UNITS))
values = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 8, 16, 2**31, 10**30, 10**400, 0.5, -0.5, 1.5, math.nan,
                     math.inf, -math.inf, True, False, None, "", "auto", "abc", "rmsnorm",
                     "int8", "fp16", "groqchip1", "groqnode-8", "llama-3.2-1b", [], {}, [1, 2],
                     {"a": 1}, "x" * 300]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    quantities,
)


# plausible values by key, so that a good share of mutants are valid and get simulated
PLAUSIBLE = {
    "model": ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-2-7b"],
    "draft_model": ["llama-3.2-1b", "llama-3.2-3b"],
    "system": ["groqnode-8", "groqrack-576"], "chips": [8, 16, 24, 64],
    "tensor_parallel": [1, 2, 4, 8, 16], "batch": [1, 2, 4], "context": [128, 1024, 8192],
    "fidelity": ["fast", "full"], "gamma": [1, 3, "auto"], "max_gamma": [4, 8],
    "draft_chips": [8, "auto"], "monte_carlo_passes": [200, 1000], "strategy": ["draft"],
    "acceptance": [0.0, 0.5, 0.99, 1.0, "bursty-mix", "0.9,0.8"],
    "weights": ["int4", "int8", "fp16"], "kv": ["int8", "fp16"],
}


def plausible(key: Any, old: Any) -> list[Any]:
    """Values a user might really write for `key` (given its current value)."""
    if key in PLAUSIBLE:
        return PLAUSIBLE[key]
    if isinstance(old, int) and not isinstance(old, bool):
        return [old + 1, max(old - 1, 0), old * 2, max(old // 2, 1)]
    if isinstance(old, float):
        return [old * 0.5, min(old * 1.5, 1.0)]
    if isinstance(old, str) and old[:1].isdigit():
        num = "".join(ch for ch in old if ch.isdigit() or ch == ".")
        unit = old[len(num):]
        return [f"{float(num) * f:g}{unit}" for f in (0.5, 2, 10)]
    return [old]


def leaves(d: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value (mappings and lists included) in a YAML document."""
    out = [path] if path else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += leaves(v, (*path, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += leaves(v, (*path, i))
    return out


def _parent(d: Any, path: tuple) -> Any:
    for p in path[:-1]:
        d = d[p]
    return d


@st.composite
def mutated_config(draw: st.DrawFn) -> str:
    """A shipped spec with one to three mutations of its keys, values, types or text."""
    name = draw(st.sampled_from(sorted(TEXTS)))
    data = yaml.safe_load(TEXTS[name])
    if data.get("kind") == "scenario" and draw(st.booleans()):
        # shrink to a size that simulates in a fraction of a second, then mutate
        data["model"] = draw(st.sampled_from(PLAUSIBLE["model"]))
        data["chips"] = draw(st.sampled_from([8, 16]))
        data.pop("tensor_parallel", None)
        if isinstance(data.get("speculation"), dict):
            data["speculation"]["monte_carlo_passes"] = 1000
    hostile = draw(st.booleans())       # half the mutants only get values a user might write
    ops = ["set", "set", "set", "delete", "rename", "add", "wrap"] if hostile else ["plausible"]
    for _ in range(draw(st.integers(1, 3))):
        paths = leaves(data)
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        op = draw(st.sampled_from(ops))
        if op == "plausible":
            parent[key] = draw(st.sampled_from(plausible(key, parent[key])))
        elif op == "set":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from([key + "s", key[:-1] or "x", key.upper(), "",
                                         "kind", "version"]))] = parent.pop(key)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if hostile and draw(st.booleans()) and text:
        # a text-level edit: cut, insert a character, or duplicate a line
        i = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["cut", "insert", "dup"]))
        if edit == "cut":
            text = text[:i] + text[i + draw(st.integers(1, 40)):]
        elif edit == "insert":
            text = text[:i] + draw(st.sampled_from(list(":[]{}&*!|>#-'\"\t\x00\x07\\%@`"))) \
                + text[i:]
        else:
            lines = text.splitlines(keepends=True)
            j = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:j + 1] + lines[j:])
    return text


def random_value(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                  st.dictionaries(st.text(max_size=8), c,
                                                                  max_size=4)), max_leaves=12)


@st.composite
def random_config(draw: st.DrawFn) -> str:
    """A document from scratch: a kind and version, then random keys and values."""
    data: dict[str, Any] = {"kind": draw(st.sampled_from(["chip", "system", "model",
                                                         "scenario", "sweep", 1])),
                            "version": draw(st.sampled_from([1, 1, 2, "1"]))}
    keys = st.sampled_from(["name", "layers", "chip", "model", "system", "topology", "mem",
                            "links", "chips", "batch", "speculation", "acceptance", "clock_hz",
                            "hidden_size", "heads", "kv_heads"]) | st.text(max_size=8)
    data |= draw(st.dictionaries(keys, random_value(values), max_size=8))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def check_config_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            spec = load(path)
        except ConfigError as e:
            assert e.issues
            for issue in e.issues:
                line = str(issue)
                assert line and "\n" not in line and len(line) < 2000
            # the CLI says the same, one line each, exit code 2
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(["validate", str(path)]) == 2
            assert all(ln.startswith("lpusim: error: ") for ln in err.getvalue().splitlines())
            return
        # valid: its description is plain data; a scenario small enough to simulate in a fuzz
        # loop is also run (mutated_config shrinks half the scenarios to such a size)
        assert isinstance(api.describe(path), dict)
        if isinstance(spec, ScenarioSpec) and _small(spec):
            check_scenario(spec)


def _small(sc: ScenarioSpec) -> bool:
    spec = sc.speculation
    return sc.chips_used <= 64 and (spec is None or spec.monte_carlo_passes <= 20_000)


def check_scenario(sc: ScenarioSpec) -> None:
    """Run a valid, small scenario: a result with finite positive figures, or a typed error."""
    assert _small(sc), "too slow to simulate in a fuzz loop; filter with _small first"
    try:
        r = api.run(sc)
    except (ConfigError, CapacityError) as e:
        assert str(e)
        return
    assert math.isfinite(r.tokens_per_second) and r.tokens_per_second > 0
    assert math.isfinite(r.token_latency_us) and r.token_latency_us > 0
    assert r.chips == sc.chips_used and r.step_latency_cycles > 0


@settings(FUZZ, max_examples=90)
@given(text=mutated_config())
def test_mutated_configs(text):
    check_config_text(text)


@settings(FUZZ, max_examples=30)
@given(text=random_config())
def test_random_configs(text):
    check_config_text(text)


@settings(FUZZ, max_examples=30)
@given(sets=st.lists(st.tuples(
    st.sampled_from(["chips", "batch", "context", "tensor_parallel", "seed", "fidelity",
                     "speculation.gamma", "speculation.acceptance", "speculation.draft_chips",
                     "speculation.max_gamma", "speculation.monte_carlo_passes",
                     "system.links.global_hop_latency_ps", "system.chip.clock_hz",
                     "model.layers", "precision.weights", "nope", "speculation.nope"]),
    values), min_size=1, max_size=3))
def test_random_overrides(sets):
    """Random dotted overrides (what --set and sweeps do) of a small scenario."""
    ov = dict(sets)
    if "speculation.monte_carlo_passes" in ov and ov["speculation.monte_carlo_passes"] != 1000:
        ov.pop("speculation.monte_carlo_passes")
    try:
        sc = api.load_scenario(ROOT / "tests/data/small-specdec.yaml", ov)
    except ConfigError as e:
        assert all("\n" not in str(i) for i in e.issues)
        return
    assume(_small(sc))                      # valid, but too slow to simulate here: not a pass
    check_scenario(sc)


@settings(FUZZ, max_examples=300)
@given(text=st.one_of(quantities, st.text(max_size=20)),
       kind=st.sampled_from(["size", "frequency", "bandwidth", "time"]))
def test_quantities(text, kind):
    try:
        v = parse_quantity(text, kind)
    except UnitError as e:
        assert "\n" not in str(e) and len(str(e)) < 300
    else:
        assert isinstance(v, int) and v > 0


@settings(FUZZ, max_examples=300)
@given(text=st.one_of(
    st.text(max_size=30),
    st.lists(numbers, min_size=1, max_size=5).map(",".join),
    st.lists(st.tuples(numbers, numbers), min_size=1, max_size=4).map(
        lambda ps: "mix:" + ",".join(f"{w}@{a}" for w, a in ps)),
    st.sampled_from(["leviathan-0.8", "bursty-mix", "mix:", "mix:1@", ",", "0.8,", "1e999"])))
def test_acceptance_strings(text):
    try:
        m = parse_acceptance(text)
    except ValueError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(m, AcceptanceModel)
    g = min(4, m.max_gamma() or 4)
    assert 1.0 <= m.expected_tokens(g) <= g + 1 + 1e-9


csv_cells = st.one_of(st.integers(-3, 12).map(str), st.sampled_from(["", "x", "1.5", "0b1",
                                                                    "1" * 30, "1101", "2"]))


@st.composite
def trace_text(draw: st.DrawFn) -> tuple[str, str]:
    if draw(st.booleans()):
        header = draw(st.sampled_from(["accepted,drafted", "accepted_tokens", "drafted,accepted",
                                       "accepted", "x,y", ""]))
        rows = draw(st.lists(st.lists(csv_cells, min_size=1, max_size=3).map(",".join),
                             max_size=6))
        return ".csv", "\n".join([header, *rows]) + "\n"
    objs = draw(st.lists(st.one_of(
        st.builds(lambda a, g: f'{{"accepted": {a}, "drafted": {g}}}', csv_cells, csv_cells),
        st.lists(st.sampled_from(["true", "false", "1", "null"]), max_size=5).map(
            lambda t: '{"tokens": [' + ", ".join(t) + "]}"),
        st.text(max_size=15)), max_size=6))
    return ".jsonl", "\n".join(objs) + "\n"


@settings(FUZZ, max_examples=150)
@given(case=trace_text())
def test_trace_files(case):
    suffix, text = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"trace{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            t = load_trace(path)
        except ValueError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(str(path))
            return
    assert t.drafted >= 1 and t.n_passes >= 1
    assert 1.0 <= t.expected_tokens(t.drafted) <= t.drafted + 1
