"""The one reader of sweep results files (JSON lines), typed.

Each line is one JSON object: a sweep point (`point`, `id`, `overrides`) with either an
`error` or the `RunResult` fields a report uses. `read_results` checks every field the report
and plots read, so a file of another shape is refused as `file:line: field: message` (a
ConfigError, exit code 2) before anything is drawn, never a KeyError deep in a plot. A torn last
line (no newline after it: a killed writer) is dropped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from lpusim.errors import ConfigError, Issue, short_repr

# field -> type: "int", "num", "str", "dict", "list", "bool", ("opt", T), or a nested schema
Schema = dict[str, Any]

ACCEPTANCE: Schema = {"kind": "str"}
CURVE_POINT: Schema = {"gamma": "int", "tokens_per_second": "num"}
SPECULATION: Schema = {
    "strategy": "str", "gamma": "int", "tokens_per_second": "num",
    "expected_tokens_per_pass": "num", "acceptance": ACCEPTANCE,
    "gamma_curve": ("list", CURVE_POINT), "gamma_search": ("opt", "str"),
}
POINT: Schema = {"point": "int", "id": "str", "overrides": "dict"}
RESULT: Schema = {
    "scenario": "str", "model": "str", "chip": "str", "system": "str", "chips": "int",
    "batch": "int", "context": "int", "fidelity": "str", "tokens_per_second": "num",
    "baseline_tokens_per_second": "num", "speedup": "num", "step_latency_us": "num",
    "program_hash": "str", "breakdown_us": ("map", "num"), "assumptions": ("opt", "dict"),
    "speculation": ("opt", SPECULATION),
}
MAX_RESULTS_BYTES = 1 << 30


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _check(value: Any, kind: Any, field: str) -> tuple[str, str] | None:
    """(field, message) of the first problem of `value` against `kind`, or None."""
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return field, f"expected an object, got {_type_name(value)}"
        for k, sub in kind.items():
            f = f"{field}.{k}" if field else k
            if k not in value:
                if isinstance(sub, tuple) and sub[0] == "opt":
                    continue
                return f, f"missing required field '{k}'"
            bad = _check(value[k], sub, f)
            if bad:
                return bad
        return None
    if isinstance(kind, tuple):
        tag, sub = kind
        if tag == "opt":
            return None if value is None else _check(value, sub, field)
        if tag == "list":
            if not isinstance(value, list):
                return field, f"expected a list, got {_type_name(value)}"
            for i, v in enumerate(value):
                bad = _check(v, sub, f"{field}[{i}]")
                if bad:
                    return bad
            return None
        if tag == "map":
            if not isinstance(value, dict):
                return field, f"expected an object, got {_type_name(value)}"
            for k, v in value.items():
                bad = _check(v, sub, f"{field}.{k}")
                if bad:
                    return bad
            return None
        raise AssertionError(tag)
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "num": lambda v: isinstance(v, int | float) and not isinstance(v, bool)
          and math.isfinite(v),
          "str": lambda v: isinstance(v, str),
          "dict": lambda v: isinstance(v, dict),
          "list": lambda v: isinstance(v, list),
          "bool": lambda v: isinstance(v, bool)}[kind](value)
    if ok:
        return None
    want = {"int": "an integer", "num": "a finite number", "str": "a string",
            "dict": "an object", "list": "a list", "bool": "true or false"}[kind]
    return field, f"expected {want}, got {_type_name(value)} {short_repr(value, 40)}"



def check_row(row: Any) -> tuple[str, str] | None:
    """(field, message) of the first problem of one results line, or None."""
    if not isinstance(row, dict):
        return "", f"expected a JSON object, got {_type_name(row)}"
    bad = _check(row, POINT, "")
    if bad:
        return bad
    if "error" in row:
        return _check(row["error"], "str", "error")
    bad = _check(row, RESULT, "")
    if bad:
        return bad
    spec = row.get("speculation")
    if spec and spec["acceptance"]["kind"] == "constant":
        return _check(spec["acceptance"].get("a"), "num", "speculation.acceptance.a")
    return None


def read_results(path: str | os.PathLike[str], *, missing_ok: bool = True
                 ) -> list[dict[str, Any]]:
    """The checked rows of a results file ([] if it does not exist and `missing_ok`)."""
    p = Path(path)
    name = str(path)
    if p.is_dir():
        raise ConfigError(Issue(name, None, None, "", "is a directory, not a results file"))
    if not p.exists():
        if missing_ok:
            return []
        raise ConfigError(Issue(name, None, None, "", "no such file"))
    if not p.is_file():
        raise ConfigError(Issue(name, None, None, "", "not a regular file"))
    if p.stat().st_size > MAX_RESULTS_BYTES:
        raise ConfigError(Issue(name, None, None, "", f"file is over {MAX_RESULTS_BYTES} "
                                                      f"bytes, the limit"))
    data = p.read_bytes()
    lines = data.split(b"\n")
    rows = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        torn = n == len(lines)          # no newline after it: an interrupted append
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
            if torn:
                continue
            raise ConfigError(Issue(name, n, None, "", "not a JSON object line (is this "
                                                       "an lpusim results file?)")) from None
        bad = check_row(row)
        if bad:
            if torn:
                continue
            field, message = bad
            raise ConfigError(Issue(name, n, None, field or "line",
                                    f"{message} (not an lpusim sweep result line)"))
        rows.append(row)
    return rows
