"""Acceptance models, trace files, presets and value parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpusim.speculative import (
    PRESET_SOURCES,
    PRESETS,
    AcceptanceModel,
    ConstantAcceptance,
    MixtureAcceptance,
    PositionalAcceptance,
    TraceAcceptance,
    load_trace,
    parse_acceptance,
)

# ----------------------------------------------------------------------------- models


def test_constant_model() -> None:
    m = ConstantAcceptance(0.9)
    assert m.position_probs(3).tolist() == [0.9, 0.9, 0.9]
    assert m.expected_tokens(4) == pytest.approx(4.0951)
    assert m.describe() == {"kind": "constant", "a": 0.9}


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(1, 64))
def test_constant_expected_tokens_is_the_survival_sum_bit_for_bit(a: float, gamma: int) -> None:
    # the constant model's own loop must give exactly the general definition 1 + sum S_i
    m = ConstantAcceptance(a)
    assert m.expected_tokens(gamma) == AcceptanceModel.expected_tokens(m, gamma)


def test_positional_expected_tokens_hand_computed() -> None:
    m = PositionalAcceptance((0.75, 0.69, 0.65, 0.64, 0.64))
    # S = .75, .5175, .336375, .21528, .1377792
    assert m.expected_tokens(5) == pytest.approx(2.9569342, abs=1e-12)
    assert m.expected_tokens(2) == pytest.approx(1 + 0.75 + 0.5175, abs=1e-12)
    # beyond the vector the last value (0.64) is reused
    assert m.position_probs(7).tolist() == [0.75, 0.69, 0.65, 0.64, 0.64, 0.64, 0.64]
    s6 = 0.1377792 * 0.64
    assert m.expected_tokens(7) == pytest.approx(2.9569342 + s6 + s6 * 0.64, abs=1e-12)


def test_mixture_effective_conditionals() -> None:
    m = MixtureAcceptance(((0.5, ConstantAcceptance(1.0)), (0.5, ConstantAcceptance(0.0))))
    # position 1: 0.5; afterwards only the always-accept component survives
    assert m.position_probs(3).tolist() == [0.5, 1.0, 1.0]
    assert m.expected_tokens(3) == pytest.approx(0.5 * 4 + 0.5 * 1)
    # an unreachable position gets 0
    assert ConstantAcceptance(0.0).position_probs(2).tolist() == [0.0, 0.0]
    assert MixtureAcceptance(((1.0, ConstantAcceptance(0.0)),)).position_probs(2).tolist() == [
        0.0,
        0.0,
    ]


def test_mixture_expected_is_weighted_sum() -> None:
    a, b = PositionalAcceptance((0.9, 0.5)), ConstantAcceptance(0.3)
    m = MixtureAcceptance(((0.25, a), (0.75, b)))
    for g in range(0, 9):
        want = 0.25 * a.expected_tokens(g) + 0.75 * b.expected_tokens(g)
        assert m.expected_tokens(g) == pytest.approx(want)
        assert 1 + m.position_probs(g).cumprod().sum() == pytest.approx(want)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(2, 32))
def test_mixture_beats_constant_with_same_mean(p: float, q: float, gamma: int) -> None:
    mix = MixtureAcceptance(((0.5, ConstantAcceptance(p)), (0.5, ConstantAcceptance(q))))
    flat = ConstantAcceptance((p + q) / 2)
    assert mix.expected_tokens(gamma) >= flat.expected_tokens(gamma) - 1e-12
    if abs(p - q) > 1e-3:  # sum a^i is strongly convex for gamma >= 2: gap >= (p-q)^2/4
        assert mix.expected_tokens(gamma) > flat.expected_tokens(gamma)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), st.integers(0, 10),
       st.integers(0, 2**32 - 1))
def test_sample_in_range(probs: list[float], gamma: int, seed: int) -> None:
    m = PositionalAcceptance(tuple(probs))
    out = m.sample_accepted(gamma, 200, np.random.default_rng(seed))
    assert out.dtype.kind == "i"
    assert out.shape == (200,)
    assert (out >= 0).all() and (out <= gamma).all()


def test_sampling_matches_distribution() -> None:
    m = PositionalAcceptance((0.9, 0.5, 0.2))
    out = m.sample_accepted(3, 200_000, np.random.default_rng(5))
    freq = np.bincount(out, minlength=4) / out.size
    assert np.allclose(freq, m.prefix_length_pmf(3), atol=0.005)
    assert m.prefix_length_pmf(3).sum() == pytest.approx(1.0)


def test_sampling_is_seeded() -> None:
    m = PRESETS["bursty-mix"]
    a = m.sample_accepted(7, 1000, np.random.default_rng(42))
    b = m.sample_accepted(7, 1000, np.random.default_rng(42))
    assert (a == b).all()


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf")])
def test_probabilities_validated(bad: float) -> None:
    with pytest.raises(ValueError, match=f"acceptance probability a must be finite and in "
                                         rf"\[0, 1\], got {bad!r}"):
        ConstantAcceptance(bad)
    with pytest.raises(ValueError, match=r"probs\[1\] must be finite"):
        PositionalAcceptance((0.5, bad))


def test_mixture_validation() -> None:
    with pytest.raises(ValueError, match="mixture weights must sum to 1, got 0.9"):
        MixtureAcceptance(((0.5, ConstantAcceptance(0.9)), (0.4, ConstantAcceptance(0.5))))
    with pytest.raises(ValueError, match="must be an AcceptanceModel"):
        MixtureAcceptance(((1.0, 0.5),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one component"):
        MixtureAcceptance(())


def test_gamma_validated() -> None:
    with pytest.raises(ValueError, match="gamma must be >= 0, got -1"):
        ConstantAcceptance(0.5).expected_tokens(-1)
    with pytest.raises(ValueError, match="gamma must be an integer, got 2.5"):
        ConstantAcceptance(0.5).expected_tokens(2.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- traces


def test_trace_model() -> None:
    t = TraceAcceptance((0, 2, 4, 4, 1), drafted=4)
    assert t.expected_tokens(4) == (0 + 2 + 4 + 4 + 1 + 5) / 5
    assert t.expected_tokens(2) == (0 + 2 + 2 + 2 + 1 + 5) / 5
    assert t.survival(4).tolist() == [0.8, 0.6, 0.4, 0.4]
    assert t.expected_tokens(3) == pytest.approx(1 + t.position_probs(3).cumprod().sum())
    with pytest.raises(ValueError, match="gamma = 5 exceeds the draft length 4 the trace was "
                                         "recorded at; a trace can only answer gamma <= 4"):
        t.expected_tokens(5)


def test_trace_replays_cyclically() -> None:
    t = TraceAcceptance((0, 1, 2, 3), drafted=3)
    out = t.sample_accepted(3, 10, np.random.default_rng(0)).tolist()
    start = out[0]
    assert out == [(start + i) % 4 for i in range(10)]
    assert t.sample_accepted(2, 4, np.random.default_rng(0)).max() == 2


def test_trace_constructor_validation() -> None:
    with pytest.raises(ValueError, match=r"trace prefix_lengths\[1\] = 5 is outside \[0, 4\]"):
        TraceAcceptance((1, 5), drafted=4)
    with pytest.raises(ValueError, match="at least one recorded pass"):
        TraceAcceptance((), drafted=4)


def test_load_csv_prefix_lengths(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("accepted,drafted\n3,4\n0,4\n4,4\n\n2,5\n")
    t = load_trace(p)
    assert t.prefix_lengths == (3, 0, 4, 2)
    p.write_text("accepted,drafted\n3,4\n5,5\n")
    assert load_trace(p).prefix_lengths == (3, 4)
    assert t.drafted == 4  # the shortest recorded draft
    assert t.expected_tokens(4) == (3 + 0 + 4 + 2 + 4) / 4
    assert t.describe()["source"] == str(p)
    json.dumps(t.describe())


def test_load_csv_prefix_lengths_with_default_drafted(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("step,accepted\n1,3\n2,0\n")
    assert load_trace(p, drafted=5).drafted == 5


def test_load_csv_token_strings(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("pass,accepted_tokens\n1,1101\n2,0111\n3,1111\n")
    t = load_trace(p)
    assert t.prefix_lengths == (2, 0, 4)
    assert t.drafted == 4


def test_load_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"accepted": 2, "drafted": 3}\n\n{"tokens": [true, true, false, true]}\n'
                 '{"tokens": [false]}\n')
    t = load_trace(p)
    assert t.drafted == 1  # the shortest draft; longer prefixes are clipped to it
    assert t.prefix_lengths == (1, 1, 0)
    assert t.expected_tokens(1) == (1 + 1 + 0 + 3) / 3
    p.write_text('{"accepted": 2, "drafted": 3}\n{"tokens": [true, true, false, true]}\n')
    t = load_trace(p)
    assert (t.drafted, t.prefix_lengths) == (3, (2, 2))


def test_load_sniffs_format_without_suffix(tmp_path: Path) -> None:
    p = tmp_path / "trace.log"
    p.write_text('{"accepted": 1, "drafted": 2}\n')
    assert load_trace(p).prefix_lengths == (1,)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.csv", "", "{p}:1: trace: file is empty"),
        ("e.jsonl", "\n  \n", "{p}:1: trace: file is empty"),
        ("h.csv", "accepted,drafted\n", "{p}:1: trace: no passes after the header"),
        ("c.csv", "foo,bar\n1,2\n",
         "{p}:1: header: needs a column 'accepted' or 'accepted_tokens' (found: foo, bar)"),
        ("d.csv", "accepted\n1\n",
         "{p}:1: drafted: a column 'accepted' also needs a column 'drafted'"),
        ("r.csv", "accepted,drafted\n1,4\n5,4\n", "{p}:3: accepted: 5 is outside [0, 4]"),
        ("n.csv", "accepted,drafted\n-1,4\n", "{p}:2: accepted: -1 is outside [0, 4]"),
        ("f.csv", "accepted,drafted\n1.5,4\n", "{p}:2: accepted: '1.5' is not an integer"),
        ("m.csv", "accepted,drafted\n1,4\n,4\n", "{p}:3: accepted: missing value"),
        ("g.csv", "accepted,drafted\n0,0\n", "{p}:2: drafted: 0 must be >= 1"),
        ("b.csv", "accepted_tokens\n1121\n",
         "{p}:2: accepted_tokens: '1121' is not a string of 0/1 digits"),
        ("j.jsonl", '{"accepted": 1, "drafted": 2}\n{"accepted": 1\n',
         "{p}:2: line: invalid JSON (Expecting ',' delimiter)"),
        ("k.jsonl", "[1, 2]\n", "{p}:1: line: expected a JSON object, got [1, 2]"),
        ("l.jsonl", '{"accepted": 2.0, "drafted": 3}\n',
         "{p}:1: accepted: 2.0 is not an integer"),
        ("o.jsonl", '{"accepted": 4, "drafted": 3}\n', "{p}:1: accepted: 4 is outside [0, 3]"),
        ("q.jsonl", '{"accepted": 1}\n', "{p}:1: drafted: missing key 'drafted'"),
        ("s.jsonl", '{"tokens": [true, 1]}\n',
         "{p}:1: tokens: element 1 is 1 (expected true or false)"),
        ("u.jsonl", '{"tokens": []}\n',
         "{p}:1: tokens: expected a non-empty list of true/false, got []"),
        ("v.jsonl", '{"x": 1}\n',
         "{p}:1: accepted: expected key 'accepted' (with 'drafted') or 'tokens', "
         "exactly one of them"),
    ],
)
def test_bad_trace_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ValueError) as exc:
        load_trace(p)
    assert str(exc.value) == message.format(p=p)


def test_missing_trace_file(tmp_path: Path) -> None:
    p = tmp_path / "missing.csv"
    with pytest.raises(ValueError) as exc:
        load_trace(p)
    assert str(exc.value) == f"{p}:1: trace: cannot read file (No such file or directory)"


# ----------------------------------------------------------------------------- presets


def test_presets_have_sources_and_describe() -> None:
    assert set(PRESETS) == set(PRESET_SOURCES)
    for name, model in PRESETS.items():
        assert isinstance(model, AcceptanceModel)
        assert PRESET_SOURCES[name]
        json.dumps(model.describe())
    assert PRESETS["eagle1-llama2-70b-mtbench"] == PositionalAcceptance(
        (0.75, 0.69, 0.65, 0.64, 0.64))
    for name in PRESETS:
        if name.endswith("-derived"):
            assert PRESET_SOURCES[name].startswith("derived")


@pytest.mark.parametrize(("name", "speedup"), [
    ("chen-chinchilla-k4-low-derived", 1.92), ("chen-chinchilla-k4-high-derived", 2.46)])
def test_chen_derivation(name: str, speedup: float) -> None:
    assert round(PRESETS[name].expected_tokens(4) / (4 * 0.13 + 1), 2) == speedup


# ----------------------------------------------------------------------------- parsing


def test_parse_forms(tmp_path: Path) -> None:
    assert parse_acceptance("0.8") == ConstantAcceptance(0.8)
    assert parse_acceptance(0.8) == ConstantAcceptance(0.8)
    assert parse_acceptance(" 0.9,0.8,0.7 ") == PositionalAcceptance((0.9, 0.8, 0.7))
    assert parse_acceptance("leviathan-0.9") is PRESETS["leviathan-0.9"]
    mix = parse_acceptance("mix:0.5@0.95,0.5@0.55")
    assert isinstance(mix, MixtureAcceptance)
    assert round(mix.expected_tokens(7), 2) == 4.47
    nested = parse_acceptance("mix:0.5@eagle1-llama2-70b-mtbench,0.5@0.9")
    assert isinstance(nested, MixtureAcceptance)
    (tmp_path / "tr.csv").write_text("accepted,drafted\n1,2\n")
    t = parse_acceptance("tr.csv", base_dir=tmp_path)
    assert isinstance(t, TraceAcceptance) and t.prefix_lengths == (1,)


def test_parse_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as exc:
        parse_acceptance("eagle1-llama2-70b-mtbnech")
    assert str(exc.value) == (
        "unknown acceptance preset 'eagle1-llama2-70b-mtbnech' (and no such trace file); "
        "nearest presets: eagle1-llama2-70b-mtbench, eagle-llama2-70b-mtbench, "
        "eagle2-llama2-70b-mtbench")
    with pytest.raises(ValueError, match="nearest presets: leviathan-0.8, leviathan-0.9"):
        parse_acceptance("leviathan-0.85")
    with pytest.raises(ValueError, match="must be finite and in"):
        parse_acceptance("1.2")
    with pytest.raises(ValueError, match="bad acceptance list '0.9,x': 'x' is not a number"):
        parse_acceptance("0.9,x")
    with pytest.raises(ValueError, match="bad mixture part '0.5' in 'mix:0.5,0.5@0.9'"):
        parse_acceptance("mix:0.5,0.5@0.9")
    with pytest.raises(ValueError, match="mixture weights must sum to 1"):
        parse_acceptance("mix:0.5@0.9,0.2@0.5")
    with pytest.raises(ValueError, match="acceptance trace file not found: "):
        parse_acceptance("nope.csv", base_dir=tmp_path)
