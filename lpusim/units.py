"""Unit strings to exact integers.

Quantities in YAML are strings with units: sizes (`230MB`, `220MiB`), frequencies (`900MHz`),
bandwidths (`30Gbps` bits, `14.6GB/s` bytes), times (`0.6us`) and powers (`300W`, `1.2kW`).
Decimal prefixes are powers of 1000, binary prefixes (KiB, MiB, ...) powers of 1024: MB is not
MiB. Results are integers in the model's base units: bytes, hertz, bytes per second,
picoseconds, watts. A value that is not a whole number of base units is rounded to the nearest
one (sizes must be exact).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RE = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z/]*)\s*$")

_DEC = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}

SIZE_UNITS = {f"{p}B": m for p, m in _DEC.items()} | {f"{p}B": m for p, m in _BIN.items()}
SIZE_UNITS["kB"] = 10**3
FREQ_UNITS = {"Hz": 1, "kHz": 10**3, "MHz": 10**6, "GHz": 10**9}
# bandwidth in bytes per second; bit rates are divided by 8
BANDWIDTH_UNITS: dict[str, Fraction] = {}
for _p, _m in _DEC.items():
    if _p == "K":
        continue
    BANDWIDTH_UNITS[f"{_p}bps"] = Fraction(_m, 8)
    BANDWIDTH_UNITS[f"{_p}B/s"] = Fraction(_m)
for _p, _m in _BIN.items():
    BANDWIDTH_UNITS[f"{_p}B/s"] = Fraction(_m)
TIME_UNITS_PS = {"ps": 1, "ns": 10**3, "us": 10**6, "ms": 10**9, "s": 10**12}
POWER_UNITS_W = {"W": 1, "kW": 10**3, "MW": 10**6}

_KINDS: dict[str, tuple[Mapping[str, int | Fraction], str, str]] = {
    "size": (SIZE_UNITS, "bytes", "a size like 230MB or 220MiB"),
    "frequency": (FREQ_UNITS, "Hz", "a frequency like 900MHz"),
    "bandwidth": (BANDWIDTH_UNITS, "B/s", "a bandwidth like 30Gbps or 14.6GB/s"),
    "time": (TIME_UNITS_PS, "ps", "a time like 0.6us or 250ns"),
    "power": (POWER_UNITS_W, "W", "a power like 300W or 1.2kW"),
}


class UnitError(ValueError):
    """A quantity string that cannot be read as the expected kind."""


def parse_quantity(value: object, kind: str) -> int:
    """Parse `value` (a unit string) as `kind` and return an integer in base units.

    kind is one of size (bytes), frequency (Hz), bandwidth (bytes/s), time (picoseconds),
    power (watts).
    Raises UnitError with a message that says what was expected.
    """
    units, _base, example = _KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise UnitError(f"{value!r} has no unit; expected {example}")
        raise UnitError(f"expected {example}, got {type(value).__name__}")
    m = _RE.match(value)
    if not m:
        raise UnitError(f"cannot read {value!r}; expected {example}")
    number, unit = m.group(1), m.group(2)
    if unit == "":
        raise UnitError(f"{value!r} has no unit; expected {example}")
    if unit not in units:
        hint = _unit_hint(unit, kind)
        raise UnitError(f"unknown unit {unit!r} in {value!r}; expected {example}{hint}")
    # bound the magnitude before exact arithmetic: Fraction('1e999999999') would build a
    # billion-digit integer (a hang), and huge values overflow float()
    if number.startswith("-") or _is_zero(number):
        raise UnitError(f"{value!r} must be positive")
    magnitude = _magnitude(number)
    if len(number) > MAX_DIGITS or magnitude > MAX_MAGNITUDE:
        raise UnitError(f"{value!r} is too large")
    if magnitude < -MAX_MAGNITUDE:
        raise UnitError(f"{value!r} rounds to zero {_base}")
    q = Fraction(number) * units[unit]
    if not math.isfinite(float(q)):
        raise UnitError(f"{value!r} is not finite")
    if q <= 0:
        raise UnitError(f"{value!r} must be positive")
    if kind == "size" and q.denominator != 1:
        raise UnitError(f"{value!r} is not a whole number of bytes")
    result = round(q)
    if result <= 0:
        raise UnitError(f"{value!r} rounds to zero {_base}")
    return int(result)


MAX_DIGITS = 60       # characters in the number of a quantity
MAX_MAGNITUDE = 40    # |decimal exponent|: far beyond any real quantity, small enough to be exact


def _magnitude(number: str) -> int:
    """Decimal exponent of the leading significant digit of a number string (0 for zero)."""
    mant, _, exp = number.lstrip("+-").lower().partition("e")
    whole, _, frac = mant.partition(".")
    e = int(exp) if exp and len(exp.lstrip("+-")) <= 12 else (10**12 if exp else 0)
    if exp.startswith("-") and e == 10**12:
        e = -e
    whole = whole.lstrip("0")
    if whole:
        return len(whole) - 1 + e
    stripped = frac.lstrip("0")
    if not stripped:
        return 0
    return -(len(frac) - len(stripped)) - 1 + e


def _is_zero(number: str) -> bool:
    mant = number.lstrip("+-").lower().partition("e")[0]
    return not mant.replace(".", "").strip("0")


def _unit_hint(unit: str, kind: str) -> str:
    for other, (units, _b, _e) in _KINDS.items():
        if other != kind and unit in units:
            return f" ({unit!r} is a {other} unit)"
    return ""


def format_bytes(n: int | float) -> str:
    """Human-readable decimal size, e.g. 230.7 MB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{int(n)} B"


def ps_to_cycles(ps: int, clock_hz: int) -> int:
    """Picoseconds to whole clock cycles, rounded up (a latency is never shorter)."""
    return -(-ps * clock_hz // 10**12)


def cycles_to_us(cycles: float, clock_hz: int) -> float:
    """Cycles to microseconds."""
    return cycles * 1e6 / clock_hz
