"""Cost and energy arithmetic (lpusim.cost) on hand-computed cases."""

import dataclasses
from pathlib import Path

import pytest

from lpusim.config import load, load_scenario
from lpusim.config.specs import CostSpec, PowerSpec
from lpusim.cost import (
    HOURS_PER_YEAR,
    joules_per_token,
    nodes_occupied,
    system_power_watts,
    usd_per_hour,
    usd_per_million_tokens,
)
from lpusim.errors import ConfigError
from tests.helpers import system


def _sys(**cost):
    s = system("groqnode-8")          # 8 chips per node
    power = PowerSpec(chip_watts=300, host_watts_per_node=800, cooling_overhead=1.5)
    basis = dict(chip_capex_usd=10_000.0, host_capex_usd_per_node=20_000.0,
                 amortisation_years=2.0, electricity_usd_per_kwh=0.1) | cost
    return dataclasses.replace(s, power=power, cost=CostSpec(**basis))


def test_power_counts_partly_used_nodes_whole():
    s = _sys()
    assert nodes_occupied(s, 8) == 1 and nodes_occupied(s, 9) == 2
    # 8 chips: (8 x 300 + 1 x 800) x 1.5 = 4,800 W
    assert system_power_watts(s, 8) == pytest.approx(4800.0)
    # 9 chips: (9 x 300 + 2 x 800) x 1.5 = 6,450 W
    assert system_power_watts(s, 9) == pytest.approx(6450.0)


def test_joules_per_token():
    assert joules_per_token(4800.0, 1200.0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        joules_per_token(1.0, 0.0)


def test_capex_and_electricity_per_million_tokens():
    s = _sys()
    # capex 8 x 10k + 20k = 100k over 2 years; power 4.8 kW at $0.1/kWh = $0.48/h
    hourly = 100_000 / (2 * HOURS_PER_YEAR) + 0.48
    assert HOURS_PER_YEAR == 8766
    assert usd_per_hour(s, 8) == pytest.approx(hourly)
    # at 1,000 tokens/s: 3.6 M tokens per hour
    assert usd_per_million_tokens(s, 8, 1000.0) == pytest.approx(hourly / 3.6)
    assert usd_per_million_tokens(s, 8, 1000.0) == pytest.approx(1.71774, abs=1e-5)


def test_chip_hour_price_replaces_capex_and_power():
    s = _sys(chip_hour_usd=2.0)
    # 8 chips x $2/h = $16/h; 3.6 M tokens per hour at 1,000 tokens/s
    assert usd_per_million_tokens(s, 8, 1000.0) == pytest.approx(16 / 3.6)
    s = dataclasses.replace(s, power=None)          # power is not needed then
    assert usd_per_hour(s, 8) == pytest.approx(16.0)


def test_missing_sections_are_config_errors():
    s = dataclasses.replace(system("groqnode-8"), power=None, cost=None)
    with pytest.raises(ConfigError, match="no power section"):
        system_power_watts(s, 8)
    with pytest.raises(ConfigError, match="no cost section"):
        usd_per_hour(s, 8)


def test_shipped_systems_have_sourced_power_and_cost():
    for name in ("groqrack-576", "groqnode-8", "groqrack-2304"):
        s = load(f"chip_configs/{name}.yaml")
        assert s.power is not None and s.cost is not None
        assert s.power.chip_watts == 300
    text = Path("chip_configs/groqrack-576.yaml").read_text()
    tail = text[text.index("\npower:"):]
    for line in tail.splitlines()[1:]:
        if line.strip() and not line.strip().startswith("#") and ":" in line \
                and not line.rstrip().endswith(":") and not line.startswith("cost:"):
            assert "#" in line, line                   # every value says where it is from


def test_power_section_units_and_errors():
    sc = load_scenario("workloads/scenarios/llama-3.1-70b-groqrack-576.yaml",
                       {"system.power.chip_watts": "0.5kW"})
    assert sc.system.power.chip_watts == 500
    with pytest.raises(ConfigError, match="has no unit"):
        load_scenario("workloads/scenarios/llama-3.1-70b-groqrack-576.yaml",
                      {"system.power.chip_watts": 300})
    with pytest.raises(ConfigError, match="below the minimum"):
        load_scenario("workloads/scenarios/llama-3.1-70b-groqrack-576.yaml",
                      {"system.power.cooling_overhead": 0.9})
