"""Acceptance models for speculative decoding.

A pass drafts ``gamma`` tokens, the target verifies them, and the longest accepted prefix is
committed plus one bonus token from the target, so a pass commits ``L + 1`` tokens where the
accepted-prefix length ``L`` is in ``[0, gamma]``. An acceptance model gives the law of ``L``.

Every model here is described by its survival function ``S_i = P(L >= i)`` (the first ``i``
drafted tokens are all accepted), from which the effective per-position conditionals
``a_i = S_i / S_(i-1)`` and ``E = 1 + sum_i S_i`` follow. Assumptions:

* Passes are independent: nothing carries over from one pass to the next (except that a trace
  is replayed in order).
* Acceptance of token ``i`` does not depend on how many tokens were drafted after it, so a trace
  recorded at draft length ``G`` also answers every ``gamma <= G`` via ``min(L, gamma)``.
* A mixture draws its component once per pass; there is no stickiness across passes.

Bad models, acceptance strings and trace files raise `AcceptanceError` (a ValueError; trace
problems name the trace's file:line and field).
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import operator
import re
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpusim.errors import AcceptanceError

__all__ = [
    "AcceptanceModel",
    "ConstantAcceptance",
    "PositionalAcceptance",
    "MixtureAcceptance",
    "TraceAcceptance",
    "load_trace",
    "parse_acceptance",
    "PRESETS",
    "MeasuredTreeAcceptance",
    "PRESET_SOURCES",
    "TRACE_SUFFIXES",
]

TRACE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
_WEIGHT_TOLERANCE = 1e-6
# Draft lengths beyond this are not a speculation setting but hostile input: the survival
# arrays (and a trace's histogram) are this long, so the bound keeps memory and time bounded.
MAX_GAMMA = 4096
_GAMMA_NAMES = ("gamma", "max_gamma", "drafted", "trace drafted")
MAX_TRACE_BYTES = 64 * 1024 * 1024
_MAX_INT_DIGITS = 18


def check_number(value: Any, name: str, high: float | None = None) -> float:
    """``value`` as a float, finite, >= 0 and (if given) <= high; else an AcceptanceError
    naming ``name``."""
    kind = "a number in [0, 1]" if high == 1.0 else "a number"
    rule = "finite and in [0, 1]" if high == 1.0 else "finite and >= 0"
    if isinstance(value, bool):
        raise AcceptanceError(f"{name} must be {kind}, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AcceptanceError(f"{name} must be {kind}, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (high is not None and v > high):
        raise AcceptanceError(f"{name} must be {rule}, got {value!r}")
    return v


def _check_prob(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite probability."""
    return check_number(value, name, 1.0)


def _check_count(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise AcceptanceError(f"{name} must be an integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise AcceptanceError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise AcceptanceError(f"{name} must be >= {minimum}, got {n}")
    if name in _GAMMA_NAMES and n > MAX_GAMMA:
        raise AcceptanceError(f"{name} must be <= {MAX_GAMMA}, got {n}")
    return n


class AcceptanceModel(ABC):
    """Law of the accepted-prefix length of one speculative pass.

    Subclasses give the survival function; the rest is derived from it.
    """

    @abstractmethod
    def survival(self, gamma: int) -> np.ndarray:
        """``S_i = P(first i drafted tokens accepted)`` for ``i = 1..gamma`` (length gamma)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description of the model."""

    def max_gamma(self) -> int | None:
        """Largest draft length the model can answer (None: unbounded)."""
        return None

    def position_probs(self, gamma: int) -> np.ndarray:
        """Effective ``a_i = P(token i accepted | tokens 1..i-1 accepted)``, length gamma.

        A position that can never be reached (``S_(i-1) = 0``) gets 0.
        """
        s = self.survival(gamma)
        prev = np.concatenate(([1.0], s[:-1]))
        out = np.zeros(len(s))
        np.divide(s, prev, out=out, where=prev > 0)
        return np.clip(out, 0.0, 1.0)

    def prefix_length_pmf(self, gamma: int) -> np.ndarray:
        """``P(L = k)`` for ``k = 0..gamma`` (length gamma + 1)."""
        s = np.concatenate(([1.0], self.survival(gamma), [0.0]))
        return np.clip(s[:-1] - s[1:], 0.0, None)

    def expected_tokens(self, gamma: int) -> float:
        """``E = 1 + sum_{i=1..gamma} S_i``: tokens committed per pass, bonus included."""
        return 1.0 + math.fsum(self.survival(gamma).tolist())

    def sample_accepted(self, gamma: int, n_passes: int, rng: np.random.Generator) -> np.ndarray:
        """Accepted-prefix length of ``n_passes`` independent passes (int64, in [0, gamma])."""
        gamma = _check_count(gamma, "gamma")
        n_passes = _check_count(n_passes, "n_passes")
        s = self.survival(gamma)
        # Inverse transform with one uniform per pass: L >= i iff u < S_i (S is non-increasing).
        u = rng.random(n_passes)
        return np.searchsorted(-s, -u, side="left").astype(np.int64)


def chain_expected_tokens(a: float, gamma: int) -> float:
    """``1 + sum_{i=1..gamma} a^i`` for a checked probability `a` and count `gamma`: the
    constant model's expected tokens, with the products `survival` makes (a cumulative product
    is sequential) and without numpy's per-call cost (a break-even bisection calls this ~30
    times a run)."""
    p, terms = 1.0, []
    for _ in range(gamma):
        p *= a
        terms.append(p)
    return 1.0 + math.fsum(terms)


@dataclass(frozen=True)
class ConstantAcceptance(AcceptanceModel):
    """Every drafted token is accepted independently with probability ``a`` (Leviathan et al.)."""

    a: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _check_prob(self.a, "acceptance probability a"))

    def survival(self, gamma: int) -> np.ndarray:
        gamma = _check_count(gamma, "gamma")
        return np.cumprod(np.full(gamma, self.a))

    def position_probs(self, gamma: int) -> np.ndarray:
        return np.full(_check_count(gamma, "gamma"), self.a)

    def expected_tokens(self, gamma: int) -> float:
        return chain_expected_tokens(self.a, _check_count(gamma, "gamma"))

    def describe(self) -> dict[str, Any]:
        return {"kind": "constant", "a": self.a}


@dataclass(frozen=True)
class MeasuredTreeAcceptance(AcceptanceModel):
    """A published measurement of tree drafting: `tau` tokens committed per pass (bonus
    included) with a draft tree of `nodes` candidate tokens over `depth` levels, verified in
    one pass. The prefix law is the constant chain acceptance that commits `tau` at gamma =
    `depth`; the tree sets the verification width (`nodes` + 1 positions)."""

    tau: float
    depth: int
    nodes: int

    def __post_init__(self) -> None:
        if not 1.0 <= self.tau <= self.depth + 1:
            raise AcceptanceError(f"tau {self.tau:g} is outside [1, depth + 1 = {self.depth + 1}]")
        if self.nodes < self.depth:
            raise AcceptanceError(f"a tree of depth {self.depth} has at least {self.depth} nodes")

    @property
    def chain_a(self) -> float:
        """a with sum_{i=0..depth} a^i = tau (bisection; tau = depth + 1 gives a = 1)."""
        lo, hi = 0.0, 1.0
        for _ in range(200):
            mid = (lo + hi) / 2
            e = sum(mid ** i for i in range(self.depth + 1))
            lo, hi = (mid, hi) if e < self.tau else (lo, mid)
        return (lo + hi) / 2

    def max_gamma(self) -> int | None:
        return self.depth

    def survival(self, gamma: int) -> np.ndarray:
        gamma = _check_count(gamma, "gamma")
        return np.cumprod(np.full(gamma, self.chain_a))

    def describe(self) -> dict[str, Any]:
        return {"kind": "measured_tree", "tau": self.tau, "depth": self.depth,
                "nodes": self.nodes, "chain_a": self.chain_a}


@dataclass(frozen=True)
class PositionalAcceptance(AcceptanceModel):
    """Token ``i`` is accepted with ``probs[i-1]`` given its prefix was; the last value repeats."""

    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        probs = tuple(self.probs)
        if not probs:
            raise AcceptanceError("positional acceptance needs at least one probability")
        checked = tuple(_check_prob(p, f"acceptance probability probs[{i}]")
                        for i, p in enumerate(probs))
        object.__setattr__(self, "probs", checked)

    def position_probs(self, gamma: int) -> np.ndarray:
        gamma = _check_count(gamma, "gamma")
        p = np.asarray(self.probs[:gamma], dtype=float)
        if gamma > len(p):
            p = np.concatenate((p, np.full(gamma - len(p), self.probs[-1])))
        return p

    def survival(self, gamma: int) -> np.ndarray:
        return np.cumprod(self.position_probs(gamma))

    def describe(self) -> dict[str, Any]:
        return {"kind": "positional", "probs": list(self.probs)}


@dataclass(frozen=True)
class MixtureAcceptance(AcceptanceModel):
    """Each pass draws one component (weight, model) and uses it for the whole pass.

    Weights must sum to 1 (within 1e-6); they are renormalised exactly.
    """

    components: tuple[tuple[float, AcceptanceModel], ...]

    def __post_init__(self) -> None:
        comps = tuple(self.components)
        if not comps:
            raise AcceptanceError("mixture acceptance needs at least one component")
        weights: list[float] = []
        models: list[AcceptanceModel] = []
        for i, comp in enumerate(comps):
            try:
                w, m = comp
            except (TypeError, ValueError):
                raise AcceptanceError(
                    f"mixture component {i} must be a (weight, model) pair, got {comp!r}"
                ) from None
            if not isinstance(m, AcceptanceModel):
                raise AcceptanceError(f"mixture component {i} model must be an AcceptanceModel, "
                                      f"got {type(m).__name__}")
            weights.append(_check_prob(w, f"mixture weight {i}"))
            models.append(m)
        total = math.fsum(weights)
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            raise AcceptanceError(f"mixture weights must sum to 1, got {total!r}")
        norm = tuple((w / total, m) for w, m in zip(weights, models, strict=True))
        object.__setattr__(self, "components", norm)

    def max_gamma(self) -> int | None:
        bounds = [b for _, m in self.components if (b := m.max_gamma()) is not None]
        return min(bounds) if bounds else None

    def survival(self, gamma: int) -> np.ndarray:
        gamma = _check_count(gamma, "gamma")
        out = np.zeros(gamma)
        for w, m in self.components:
            out += w * m.survival(gamma)
        return np.clip(out, 0.0, 1.0)

    def expected_tokens(self, gamma: int) -> float:
        return math.fsum(w * m.expected_tokens(gamma) for w, m in self.components)

    def sample_accepted(self, gamma: int, n_passes: int, rng: np.random.Generator) -> np.ndarray:
        gamma = _check_count(gamma, "gamma")
        n_passes = _check_count(n_passes, "n_passes")
        weights = np.array([w for w, _ in self.components])
        which = rng.choice(len(weights), size=n_passes, p=weights / weights.sum())
        out = np.zeros(n_passes, dtype=np.int64)
        for j, (_, m) in enumerate(self.components):
            idx = np.flatnonzero(which == j)
            if idx.size:
                out[idx] = m.sample_accepted(gamma, idx.size, rng)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "mixture",
            "components": [{"weight": w, "model": m.describe()} for w, m in self.components],
        }


@dataclass(frozen=True)
class TraceAcceptance(AcceptanceModel):
    """Replay of recorded accepted-prefix lengths observed at draft length ``drafted``.

    For ``gamma <= drafted`` a recorded pass accepts ``min(L, gamma)``; longer drafts were never
    observed, so they raise AcceptanceError. Sampling replays the trace cyclically from a random
    offset drawn from the generator.
    """

    prefix_lengths: tuple[int, ...] = field(repr=False)
    drafted: int
    source: str = ""
    _lengths: np.ndarray = field(init=False, repr=False, compare=False)
    _counts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        drafted = _check_count(self.drafted, "trace drafted", minimum=1)
        lengths = tuple(_check_count(v, f"trace prefix_lengths[{i}]")
                        for i, v in enumerate(self.prefix_lengths))
        if not lengths:
            raise AcceptanceError("trace acceptance needs at least one recorded pass")
        for i, v in enumerate(lengths):
            if v > drafted:
                raise AcceptanceError(f"trace prefix_lengths[{i}] = {v} is outside [0, {drafted}]")
        object.__setattr__(self, "drafted", drafted)
        object.__setattr__(self, "prefix_lengths", lengths)
        arr = np.asarray(lengths, dtype=np.int64)
        object.__setattr__(self, "_lengths", arr)
        object.__setattr__(self, "_counts", np.bincount(arr, minlength=drafted + 1))

    @property
    def n_passes(self) -> int:
        return len(self.prefix_lengths)

    def max_gamma(self) -> int | None:
        return self.drafted

    def _check_gamma(self, gamma: int) -> int:
        gamma = _check_count(gamma, "gamma")
        if gamma > self.drafted:
            where = f" ({self.source})" if self.source else ""
            raise AcceptanceError(
                f"gamma = {gamma} exceeds the draft length {self.drafted} the trace{where} was "
                f"recorded at; a trace can only answer gamma <= {self.drafted}"
            )
        return gamma

    def survival(self, gamma: int) -> np.ndarray:
        gamma = self._check_gamma(gamma)
        tail = np.cumsum(self._counts[::-1])[::-1]  # tail[i] = #passes with L >= i
        return tail[1:gamma + 1] / self.n_passes

    def expected_tokens(self, gamma: int) -> float:
        gamma = self._check_gamma(gamma)
        k = np.arange(self.drafted + 1)
        accepted = int(np.dot(np.minimum(k, gamma), self._counts))
        return (accepted + self.n_passes) / self.n_passes

    def sample_accepted(self, gamma: int, n_passes: int, rng: np.random.Generator) -> np.ndarray:
        gamma = self._check_gamma(gamma)
        n_passes = _check_count(n_passes, "n_passes")
        offset = int(rng.integers(self.n_passes))
        idx = (offset + np.arange(n_passes)) % self.n_passes
        return np.minimum(self._lengths[idx], gamma)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "trace",
            "source": self.source,
            "drafted": self.drafted,
            "passes": self.n_passes,
            "mean_accepted": float(self._lengths.mean()),
        }


# ----------------------------------------------------------------------------- trace files

_INT_RE = re.compile(r"^[+-]?\d+$")
_BITS_RE = re.compile(r"^[01]+$")


def _leading_ones(bits: list[bool]) -> int:
    n = 0
    for b in bits:
        if not b:
            break
        n += 1
    return n


def _parse_int_field(raw: str, where: str, name: str) -> int:
    text = raw.strip()
    if not text:
        raise AcceptanceError(f"{where}: {name}: missing value")
    if not _INT_RE.match(text):
        shown = text if len(text) <= 40 else text[:30] + "..."
        raise AcceptanceError(f"{where}: {name}: {shown!r} is not an integer")
    if len(text.lstrip("+-")) > _MAX_INT_DIGITS:
        digits = len(text.lstrip("+-"))
        raise AcceptanceError(f"{where}: {name}: {digits}-digit number is too large")
    return int(text)


def _check_pass(where: str, accepted: int, drafted: int) -> None:
    if drafted < 1:
        raise AcceptanceError(f"{where}: drafted: {drafted} must be >= 1")
    if drafted > MAX_GAMMA:
        raise AcceptanceError(f"{where}: drafted: {drafted} is above the limit {MAX_GAMMA}")
    if not 0 <= accepted <= drafted:
        raise AcceptanceError(f"{where}: accepted: {accepted} is outside [0, {drafted}]")


def _csv_cell(header: list[str] | None, row: list[str], where: str, name: str) -> str:
    assert header is not None
    i = header.index(name)
    if i >= len(row) or not row[i].strip():
        raise AcceptanceError(f"{where}: {name}: missing value")
    return row[i].strip()


def _csv_rows(path: str, text: str) -> Any:
    """(line, row) of a CSV text; a malformed row (e.g. an over-long field) is an
    AcceptanceError."""
    reader = csv.reader(text.splitlines())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise AcceptanceError(f"{path}:{reader.line_num}: row: malformed CSV ({exc})"
                                  ) from None
        yield reader.line_num, row


def _read_csv(path: str, text: str, drafted: int | None) -> list[tuple[int, int]]:
    header: list[str] | None = None
    header_line = 1
    passes: list[tuple[int, int]] = []
    for line, row in _csv_rows(path, text):
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            header_line = line
            has_acc, has_tok = "accepted" in header, "accepted_tokens" in header
            if has_acc == has_tok:
                why = "not both" if has_acc else f"found: {', '.join(header)}"
                raise AcceptanceError(f"{path}:{line}: header: needs a column 'accepted' or "
                                      f"'accepted_tokens' ({why})")
            if has_acc and "drafted" not in header and drafted is None:
                raise AcceptanceError(f"{path}:{line}: drafted: a column 'accepted' also needs a "
                                      f"column 'drafted'")
            continue
        where = f"{path}:{line}"

        if "accepted_tokens" in header:
            bits = _csv_cell(header, row, where, "accepted_tokens")
            if not _BITS_RE.match(bits):
                shown = bits if len(bits) <= 40 else bits[:30] + "..."
                raise AcceptanceError(f"{where}: accepted_tokens: {shown!r} is not a string of 0/1 "
                                      f"digits")
            if len(bits) > MAX_GAMMA:
                raise AcceptanceError(f"{where}: accepted_tokens: {len(bits)} drafted tokens is "
                                      f"above the limit {MAX_GAMMA}")
            passes.append((_leading_ones([b == "1" for b in bits]), len(bits)))
        else:
            acc = _parse_int_field(_csv_cell(header, row, where, "accepted"), where, "accepted")
            if "drafted" in header:
                raw = _csv_cell(header, row, where, "drafted")
                g = _parse_int_field(raw, where, "drafted")
            else:
                assert drafted is not None
                g = drafted
            _check_pass(where, acc, g)
            passes.append((acc, g))
    if header is None:
        raise AcceptanceError(f"{path}:1: trace: file is empty")
    if not passes:
        raise AcceptanceError(f"{path}:{header_line}: trace: no passes after the header")
    return passes


def _short_json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:30] + "..."


def _json_int(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AcceptanceError(f"{where}: {name}: {_short_json(value)} is not an integer")
    if abs(value) > 10**_MAX_INT_DIGITS:
        raise AcceptanceError(f"{where}: {name}: number is too large")
    return value


def _read_jsonl(path: str, text: str, drafted: int | None) -> list[tuple[int, int]]:
    if not text.strip():
        raise AcceptanceError(f"{path}:1: trace: file is empty")
    passes: list[tuple[int, int]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AcceptanceError(f"{where}: line: invalid JSON ({exc.msg})") from None
        except (ValueError, RecursionError):  # e.g. an integer of thousands of digits
            raise AcceptanceError(f"{where}: line: invalid JSON (a number or nesting too large)"
                             ) from None
        if not isinstance(obj, dict):
            raise AcceptanceError(f"{where}: line: expected a JSON object, got {_short_json(obj)}")
        if ("accepted" in obj) == ("tokens" in obj):
            raise AcceptanceError(f"{where}: accepted: expected key 'accepted' (with 'drafted') or "
                                  f"'tokens', exactly one of them")
        if "tokens" in obj:
            toks = obj["tokens"]
            if not isinstance(toks, list) or not toks:
                raise AcceptanceError(f"{where}: tokens: expected a non-empty list of true/false, "
                                      f"got {_short_json(toks)}")
            if len(toks) > MAX_GAMMA:
                raise AcceptanceError(f"{where}: tokens: {len(toks)} drafted tokens is above the "
                                      f"limit {MAX_GAMMA}")
            for i, t in enumerate(toks):
                if not isinstance(t, bool):
                    raise AcceptanceError(f"{where}: tokens: element {i} is {_short_json(t)} "
                                          f"(expected true or false)")
            passes.append((_leading_ones(toks), len(toks)))
            continue
        acc = _json_int(obj["accepted"], where, "accepted")
        if "drafted" in obj:
            g = _json_int(obj["drafted"], where, "drafted")
        elif drafted is not None:
            g = drafted
        else:
            raise AcceptanceError(f"{where}: drafted: missing key 'drafted'")
        _check_pass(where, acc, g)
        passes.append((acc, g))
    return passes


def load_trace(path: str | Path, drafted: int | None = None) -> TraceAcceptance:
    """Read a recorded accept/reject trace (CSV or JSONL) into a TraceAcceptance.

    CSV: a header row, then one pass per row, with either a column ``accepted`` (prefix length;
    with a column ``drafted`` or the ``drafted`` argument) or a column ``accepted_tokens`` (a
    string of 0/1 per drafted token; prefix length = leading 1s, draft length = its length).
    JSONL: one object per line, ``{"accepted": L, "drafted": G}`` or ``{"tokens": [true, ...]}``.
    ``.jsonl``/``.ndjson``/``.json`` files are JSONL, ``.csv`` files CSV; otherwise a file
    whose first non-blank character is ``{`` is JSONL.

    If passes were drafted at different lengths, the trace's draft length is the smallest (the
    longest draft every recorded pass can answer) and longer prefixes are clipped to it.
    Errors are ``AcceptanceError("path:line: field: ...")``.
    """
    name = str(path)
    if drafted is not None:
        drafted = _check_count(drafted, "drafted", minimum=1)
    try:
        st = Path(path).stat()
        if not stat.S_ISREG(st.st_mode):    # a FIFO blocks, /dev/zero never ends
            raise AcceptanceError(f"{name}:1: trace: not a regular file")
        if st.st_size > MAX_TRACE_BYTES:
            raise AcceptanceError(f"{name}:1: trace: file is {st.st_size} bytes; the limit is "
                                  f"{MAX_TRACE_BYTES}")
        with open(path, "rb") as f:
            raw = f.read(MAX_TRACE_BYTES + 1)
        if len(raw) > MAX_TRACE_BYTES:
            raise AcceptanceError(f"{name}:1: trace: file is over {MAX_TRACE_BYTES} bytes, "
                                  "the limit")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AcceptanceError(f"{name}:1: trace: cannot read file ({reason})") from None
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise AcceptanceError(f"{name}:{line}: trace: binary data, not a CSV or JSONL text file")
    try:
        text = raw.decode("utf-8-sig")      # a byte-order mark (spreadsheet exports) is fine
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise AcceptanceError(f"{name}:{line}: trace: not UTF-8 text (byte {exc.start})") from None
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        is_json = True
    elif suffix == ".csv":
        is_json = False
    else:
        is_json = text.lstrip().startswith("{")
    passes = (_read_jsonl if is_json else _read_csv)(name, text, drafted)
    if not passes:
        raise AcceptanceError(f"{name}:1: trace: no passes recorded")
    shortest = min(g for _, g in passes)
    # min(L, shortest) answers every gamma <= shortest exactly like L does
    return TraceAcceptance(
        prefix_lengths=tuple(min(acc, shortest) for acc, _ in passes),
        drafted=shortest,
        source=name,
    )


# ----------------------------------------------------------------------------- presets

def _mix(*parts: tuple[float, float]) -> MixtureAcceptance:
    return MixtureAcceptance(tuple((w, ConstantAcceptance(a)) for w, a in parts))


_LEVIATHAN = ("Leviathan, Kalman, Matias, ICML 2023 (arXiv 2211.17192): illustrative "
              "constant acceptance a={a} used in their speedup analysis (Table 1); "
              "not a measurement of a particular drafter")
_CHEN = ("derived, not measured: constant a that reproduces the {end} end ({s}x) of the "
         "1.92-2.46x reported by Chen et al. (arXiv 2302.01318, Chinchilla 70B + 4B draft, "
         "K=4, c~0.13) under S = E/(K*c + 1) with no overheads, so a lower bound on a")

_EAGLE_TREE = ("verified tree of 60 draft tokens, depth 6 (EAGLE-2/EAGLE-3 reference "
               "implementation defaults: total_token=60, top_k=10, depth 5-7; SafeAILab/EAGLE)")

_PRESET_TABLE: tuple[tuple[str, AcceptanceModel, str], ...] = (
    ("eagle-llama2-70b-mtbench", MeasuredTreeAcceptance(3.81, 5, 25),
     "EAGLE (static tree), LLaMA2-Chat 70B, MT-bench, T=0: tau 3.81 (EAGLE-2 paper, Table 2, "
     "arXiv 2406.16858); tree of 25 draft tokens, depth 5 (assumption: EAGLE-1's static tree)"),
    ("eagle2-llama2-70b-mtbench", MeasuredTreeAcceptance(4.48, 6, 60),
     "EAGLE-2 (dynamic tree), LLaMA2-Chat 70B, MT-bench, T=0: tau 4.48 (EAGLE-2 paper, "
     "Table 2, arXiv 2406.16858); " + _EAGLE_TREE),
    ("eagle2-llama3-70b-mtbench", MeasuredTreeAcceptance(4.16, 6, 60),
     "EAGLE-2, LLaMA3-Instruct 70B, MT-bench, T=0: tau 4.16 (EAGLE-2 paper, Table 2); "
     + _EAGLE_TREE),
    ("eagle2-llama3.3-70b-mtbench", MeasuredTreeAcceptance(3.67, 6, 60),
     "EAGLE-2, Llama 3.3 70B Instruct, MT-bench, T=0: tau 3.67 (EAGLE-3 paper, Table 1, "
     "arXiv 2503.01840); " + _EAGLE_TREE),
    ("eagle3-llama3.3-70b-mtbench", MeasuredTreeAcceptance(5.63, 7, 60),
     "EAGLE-3, Llama 3.3 70B Instruct, MT-bench, T=0: tau 5.63 (EAGLE-3 paper, Table 1, "
     "arXiv 2503.01840); verified tree of 60 draft tokens, depth 7 (reference defaults)"),
    ("eagle3-llama3.3-70b-t1", MeasuredTreeAcceptance(5.45, 7, 60),
     "EAGLE-3, Llama 3.3 70B Instruct, MT-bench, T=1: tau 5.45 (EAGLE-3 paper, Table 1); "
     "verified tree of 60 draft tokens, depth 7 (reference defaults)"),
    ("medusa-vicuna13b", MeasuredTreeAcceptance(2.59, 4, 63),
     "Medusa heads, Vicuna 13B, MT-bench: tau 2.59 (EAGLE-3 paper's comparison, arXiv "
     "2503.01840); Medusa's default sparse tree of 63 candidates over 4 heads (arXiv "
     "2401.10774); no 70B-class Medusa tau is published"),
    ("drafter-1b-chat", ConstantAcceptance(0.71),
     "a separate ~1B drafter on chat traffic: 71% average per-token acceptance (Llama 3.2 1B "
     "drafting for Llama 3.1 8B, short prompts; low confidence); chat-traffic drafters "
     "measure 0.6-0.8"),
    ("eagle1-llama2-70b-mtbench", PositionalAcceptance((0.75, 0.69, 0.65, 0.64, 0.64)),
     "EAGLE-1 (arXiv 2401.15077), Llama-2-Chat 70B, MT-bench, T=0: measured per-position "
     "acceptance 0.75, 0.69, 0.65, 0.64, 0.64 (last value reused beyond position 5)"),
    ("bursty-mix", _mix((0.5, 0.95), (0.5, 0.55)),
     "illustration (not a measurement): 50/50 mix of easy (a=0.95) and hard (a=0.55) "
     "passes, mean 0.75; gamma=7 gives 4.47 tokens vs 3.60 for flat 0.75"),
    ("flat-0.75", ConstantAcceptance(0.75),
     "illustration: constant a=0.75, same mean as bursty-mix (gamma=7 gives 3.60 tokens)"),
    ("leviathan-0.6", ConstantAcceptance(0.6), _LEVIATHAN.format(a=0.6)),
    ("leviathan-0.7", ConstantAcceptance(0.7), _LEVIATHAN.format(a=0.7)),
    ("leviathan-0.8", ConstantAcceptance(0.8), _LEVIATHAN.format(a=0.8)
     + "; with c=0.02 the optimum is gamma=11, ~3.8x"),
    ("leviathan-0.9", ConstantAcceptance(0.9), _LEVIATHAN.format(a=0.9)
     + "; with c=0.02 the optimum is gamma=19, ~6.4x"),
    ("chen-chinchilla-k4-low-derived", ConstantAcceptance(0.727),
     _CHEN.format(end="low", s=1.92)),
    ("chen-chinchilla-k4-high-derived", ConstantAcceptance(0.854),
     _CHEN.format(end="high", s=2.46)),
)

PRESETS: dict[str, AcceptanceModel] = {name: model for name, model, _ in _PRESET_TABLE}
PRESET_SOURCES: dict[str, str] = {name: src for name, _, src in _PRESET_TABLE}


# ----------------------------------------------------------------------------- parsing

def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _unknown_preset(name: str) -> AcceptanceError:
    key = name.lower()
    near = [p for p in PRESETS if key in p]
    near += [p for p in difflib.get_close_matches(key, list(PRESETS), n=3, cutoff=0.5)
             if p not in near]
    near = near[:3]
    hint = f"nearest presets: {', '.join(near)}" if near else f"presets: {', '.join(PRESETS)}"
    return AcceptanceError(f"unknown acceptance preset {name!r} (and no such trace file); {hint}")


def _parse_component(text: str) -> AcceptanceModel:
    value = _as_float(text)
    if value is not None:
        return ConstantAcceptance(value)
    if text.lower() in PRESETS:
        return PRESETS[text.lower()]
    raise _unknown_preset(text)


def parse_acceptance(value: str | float, base_dir: str | Path | None = None) -> AcceptanceModel:
    """Turn a CLI/config value into an acceptance model.

    Accepted forms: a number ``0.8`` (constant); a preset name; a comma list ``0.9,0.8,0.7``
    (positional); ``mix:0.5@0.95,0.5@0.55`` (mixture of weight@probability-or-preset);
    otherwise a trace file path, relative to ``base_dir`` when given.
    """
    if isinstance(value, AcceptanceModel):
        return value
    if isinstance(value, bool):
        raise AcceptanceError(f"acceptance must be a probability, preset, list, mix or path, "
                              f"got {value!r}")
    if isinstance(value, (int, float)):
        return ConstantAcceptance(value)
    text = str(value).strip()
    if not text:
        raise AcceptanceError("acceptance is empty")
    number = _as_float(text)
    if number is not None:
        return ConstantAcceptance(number)
    if text.lower() in PRESETS:
        return PRESETS[text.lower()]
    if text.lower().startswith("mix:"):
        comps: list[tuple[float, AcceptanceModel]] = []
        for part in text[4:].split(","):
            w_text, sep, m_text = part.strip().partition("@")
            weight = _as_float(w_text.strip())
            if not sep or weight is None or not m_text.strip():
                raise AcceptanceError(f"bad mixture part {part.strip()!r} in {text!r}: expected "
                                      f"weight@probability, e.g. 0.5@0.95")
            comps.append((weight, _parse_component(m_text.strip())))
        return MixtureAcceptance(tuple(comps))
    if "," in text:
        probs: list[float] = []
        for part in text.split(","):
            p = _as_float(part.strip())
            if p is None:
                raise AcceptanceError(f"bad acceptance list {text!r}: {part.strip()!r} is not a "
                                      f"number")
            probs.append(p)
        return PositionalAcceptance(tuple(probs))
    path = Path(text)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if path.is_file():
        return load_trace(path)
    if path.exists():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise AcceptanceError(f"acceptance trace {path} is {what}")
    looks_like_path = ("/" in text or "\\" in text
                       or Path(text).suffix.lower() in TRACE_SUFFIXES)
    if looks_like_path:
        raise AcceptanceError(f"acceptance trace file not found: {path}")
    raise _unknown_preset(text)
