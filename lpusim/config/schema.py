"""A small declarative schema for spec dataclasses.

Each spec is a frozen dataclass whose fields carry `spec_field(...)` metadata: the value kind
(int, float, probability, str, bool, enum, size, frequency, bandwidth, time, power, or a nested
spec), bounds and a default. `build` walks a `Document`, converts and checks every field, and
collects every problem (unknown keys with the nearest valid key, missing keys, wrong types,
out-of-range values) before raising one `ConfigError`. Cross-field rules live in each spec's
`check` method.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
import typing
from collections.abc import Collection, Mapping
from dataclasses import MISSING
from typing import Any, TypeVar

from lpusim import caches
from lpusim.config.yamlio import Document, Path_
from lpusim.errors import Issue, short_repr
from lpusim.units import UnitError, parse_quantity

T = TypeVar("T")
QUANTITIES = ("size", "frequency", "bandwidth", "time", "power")


def spec_field(kind: str, default: Any = MISSING, *, min: float | None = None,
               max: float | None = None, choices: Collection[str] | None = None,
               doc: str = "") -> Any:
    """Declare a spec field. `min`/`max` bound the converted value (base units); an enum's
    `choices` are read at each conversion, so a live view of a registry may be given."""
    meta = {"kind": kind, "min": min, "max": max, "choices": choices, "doc": doc}
    if default is MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict | tuple) and not isinstance(default, tuple):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested_field(default_factory: Any = MISSING, *, optional: bool = False) -> Any:
    """Declare a nested spec (a sub-mapping)."""
    meta = {"kind": "nested", "optional": optional}
    if optional:
        return dataclasses.field(default=None, metadata=meta)
    if default_factory is MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default_factory=default_factory, metadata=meta)


@caches.memoise("nested_spec_types", maxsize=1024)   # per spec class and field: few
def _nested_type(cls: type, name: str) -> type:
    hint = typing.get_type_hints(cls)[name]
    for arg in typing.get_args(hint) or (hint,):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    raise TypeError(f"{cls.__name__}.{name} is not a nested spec")


Resolver = Any  # (spec type, reference string, doc, path, issues) -> spec or None


def build(cls: type[T], doc: Document, path: Path_, data: Any, issues: list[Issue],
          resolver: Resolver = None, skip: tuple[str, ...] = ()) -> T | None:
    """Convert `data` (a mapping at `path` in `doc`) to `cls`, appending problems to `issues`.

    A nested spec given as a string is a reference, passed to `resolver` to load.
    """
    if not isinstance(data, dict):
        issues.append(doc.issue(path, f"expected a mapping, got {_type_name(data)}"))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata}  # type: ignore[arg-type]
    n_before = len(issues)
    for key in data:
        if key in skip or key in fields:
            continue
        close = difflib.get_close_matches(str(key)[:100], list(fields), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        valid = ", ".join(sorted(fields))
        issues.append(doc.issue((*path, key), f"unknown key{hint} (valid keys: {valid})",
                                at_key=True))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        meta = f.metadata
        sub = (*path, name)
        if name not in data or (data[name] is None and meta["kind"] == "nested"
                                and meta.get("optional")):
            if f.default is MISSING and f.default_factory is MISSING:
                issues.append(doc.issue(path, f"missing required key '{name}'"))
                issues[-1] = dataclasses.replace(issues[-1], field=_dot(sub))
            continue
        raw = data[name]
        if meta["kind"] == "nested":
            sub_cls = _nested_type(cls, name)
            if isinstance(raw, str) and resolver is not None:
                v = resolver(sub_cls, raw, doc, sub, issues)
            else:
                v = build(sub_cls, doc, sub, raw, issues, resolver)
        else:
            v = convert(raw, meta, doc, sub, issues)
        if v is not None:
            values[name] = v
    if len(issues) > n_before:
        return None
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        for rel, message in check():
            issues.append(doc.issue((*path, *rel), message))
        if len(issues) > n_before:
            return None
    return obj


def _dot(path: Path_) -> str:
    from lpusim.config.yamlio import dotted
    return dotted(path)


def _type_name(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, datetime.datetime):
        return "a timestamp"
    if isinstance(v, datetime.date):
        return "a date"
    if isinstance(v, bytes | bytearray):
        return "binary data (!!binary)"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


PLAIN = (str, int, float, bool, type(None))


def plain_value_issue(value: Any, depth: int = 0) -> str | None:
    """The one check of what a YAML parser can produce beyond plain data: a date, timestamp,
    binary value or set (YAML tags PyYAML's safe loader turns into Python objects) is not a
    value of any spec field, cannot be written to JSON results, and is refused here with what
    it is; None when `value` (and everything inside it) is a string, number, boolean, null,
    list or mapping with string keys."""
    if isinstance(value, PLAIN):
        return None
    if isinstance(value, list) and depth < 64:
        for v in value:
            bad = plain_value_issue(v, depth + 1)
            if bad:
                return bad
        return None
    if isinstance(value, dict) and depth < 64:
        for k, v in value.items():
            if not isinstance(k, str):
                return f"a key {short_repr(k)} is {_type_name(k)}, not a name"
            bad = plain_value_issue(v, depth + 1)
            if bad:
                return bad
        return None
    if isinstance(value, datetime.date):
        return (f"{_type_name(value)} ({value.isoformat()}) is not a value lpusim reads; "
                f"quote it to make it a string")
    if isinstance(value, bytes | bytearray):
        return f"binary data (!!binary, {len(value)} bytes) is not a value lpusim reads"
    return f"{_type_name(value)} {short_repr(value)} is not a value lpusim reads"


def _shown(v: Any) -> str:
    """'a string 'x'' for error messages; null is just 'nothing (null)'."""
    return _type_name(v) if v is None else f"{_type_name(v)} {short_repr(v)}"


def convert(raw: Any, meta: Mapping[str, Any], doc: Document, path: Path_,
            issues: list[Issue]) -> Any:
    """Convert one scalar value according to its field metadata; None on error."""
    kind = meta["kind"]
    bad = plain_value_issue(raw)
    err = _Bad(bad) if bad else _convert_value(raw, kind, meta)
    if isinstance(err, _Bad):
        issues.append(doc.issue(path, err.message))
        return None
    return err


class _Bad:
    def __init__(self, message: str):
        self.message = message


def _bounds(v: float, meta: Mapping[str, Any], shown: str) -> _Bad | None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and v < lo:
        return _Bad(f"{shown} is below the minimum {lo:g}")
    if hi is not None and v > hi:
        return _Bad(f"{shown} is above the maximum {hi:g}")
    return None


def _convert_value(raw: Any, kind: str, meta: Mapping[str, Any]) -> Any:
    if kind == "duration":     # a time that may be zero (a mechanism that is absent)
        if raw == 0 or (isinstance(raw, str) and re.fullmatch(r"0+(\.0*)?\s*[a-z]*", raw.strip())):
            return 0
        kind = "time"
    if kind in QUANTITIES:
        try:
            v = parse_quantity(raw, kind)
        except UnitError as e:
            return _Bad(str(e))
        return _bounds(v, meta, short_repr(raw)) or v
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            else:
                return _Bad(f"expected an integer, got {_shown(raw)}")
        return _bounds(raw, meta, short_repr(raw)) or raw
    if kind in ("float", "probability"):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return _Bad(f"expected a number, got {_shown(raw)}")
        x = float(raw)
        if not math.isfinite(x):
            return _Bad(f"{short_repr(raw)} is not a finite number")
        if kind == "probability" and not 0.0 <= x <= 1.0:
            return _Bad(f"{x:g} is outside [0, 1]")
        return _bounds(x, meta, f"{x:g}") or x
    if kind == "bool":
        if not isinstance(raw, bool):
            return _Bad(f"expected true or false, got {_shown(raw)}")
        return raw
    if kind == "str":
        if not isinstance(raw, str) or not raw.strip():
            return _Bad(f"expected a non-empty string, got {_shown(raw)}")
        return raw
    if kind == "enum":
        choices = meta["choices"]
        if not isinstance(raw, str) or raw not in choices:
            close = difflib.get_close_matches(str(raw)[:100], choices, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return _Bad(f"{short_repr(raw)} is not one of {', '.join(choices)}{hint}")
        return raw
    if kind == "int_or_auto":
        if raw == "auto":
            return "auto"
        return _convert_value(raw, "int", meta)
    if kind == "scalar_or_str":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            return _Bad(f"expected a number or a string, got {_type_name(raw)}")
        return raw
    raise AssertionError(f"unknown field kind {kind}")
