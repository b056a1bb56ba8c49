import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpusim.units import UnitError, cycles_to_us, parse_quantity, ps_to_cycles


@pytest.mark.parametrize("text,kind,expected", [
    ("230MB", "size", 230_000_000),
    ("220MiB", "size", 220 * 2**20),
    ("2.5MiB", "size", 2_621_440),
    ("1kB", "size", 1000),
    ("1KiB", "size", 1024),
    ("320B", "size", 320),
    ("900MHz", "frequency", 900_000_000),
    ("1.25GHz", "frequency", 1_250_000_000),
    ("30Gbps", "bandwidth", 3_750_000_000),       # bits: / 8
    ("14.6GB/s", "bandwidth", 14_600_000_000),    # bytes
    ("1GiB/s", "bandwidth", 2**30),
    ("0.6us", "time", 600_000),                   # picoseconds
    ("250ns", "time", 250_000),
    ("3 us", "time", 3_000_000),
    ("300W", "power", 300),                       # watts
    ("1.2kW", "power", 1200),
    ("2MW", "power", 2_000_000),
])
def test_parse_known_values(text, kind, expected):
    assert parse_quantity(text, kind) == expected


def test_mb_is_not_mib():
    assert parse_quantity("230MB", "size") != parse_quantity("230MiB", "size")
    assert parse_quantity("220MiB", "size") == 230_686_720   # the GroqChip1 SRAM, 230.7 MB


def test_gbps_is_not_gb_per_s():
    assert parse_quantity("8Gbps", "bandwidth") * 8 == parse_quantity("8GB/s", "bandwidth")


@pytest.mark.parametrize("value,kind,message", [
    ("230 MBps", "size", "unknown unit 'MBps' in '230 MBps'; expected a size like 230MB or 220MiB"),
    (900, "frequency", "900 has no unit; expected a frequency like 900MHz"),
    ("900", "frequency", "'900' has no unit; expected a frequency like 900MHz"),
    ("-1MB", "size", "'-1MB' must be positive"),
    ("0GHz", "frequency", "'0GHz' must be positive"),
    ("abc", "time", "cannot read 'abc'; expected a time like 0.6us or 250ns"),
    ("30Gbps", "size", "unknown unit 'Gbps' in '30Gbps'; expected a size like 230MB or 220MiB "
                       "('Gbps' is a bandwidth unit)"),
    ("0.5B", "size", "'0.5B' is not a whole number of bytes"),
    ("nanMB", "size", "cannot read 'nanMB'; expected a size like 230MB or 220MiB"),
    (True, "size", "expected a size like 230MB or 220MiB, got bool"),
    (300, "power", "300 has no unit; expected a power like 300W or 1.2kW"),
    ("300MB", "power", "unknown unit 'MB' in '300MB'; expected a power like 300W or 1.2kW "
                       "('MB' is a size unit)"),
])
def test_bad_units(value, kind, message):
    with pytest.raises(UnitError) as e:
        parse_quantity(value, kind)
    assert str(e.value) == message


@given(st.integers(min_value=1, max_value=10**12))
def test_bytes_round_trip(n):
    assert parse_quantity(f"{n}B", "size") == n
    assert parse_quantity(f"{n}KiB", "size") == n * 1024


def test_time_conversions():
    assert ps_to_cycles(600_000, 900_000_000) == 540
    assert ps_to_cycles(1, 900_000_000) == 1          # never shorter than asked
    assert cycles_to_us(900, 900_000_000) == pytest.approx(1.0)
