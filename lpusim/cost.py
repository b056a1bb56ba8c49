"""Energy and money per token: system power, joules per token, dollars per million tokens.

Pure arithmetic on a system's optional `power:` and `cost:` sections (`PowerSpec`,
`CostSpec`); no simulation. What is modelled:

- **Power.** A deployment of `chips_active` chips draws `chip_watts` per chip plus
  `host_watts_per_node` for every node it occupies (ceil(chips / chips_per_node): a partly used
  node still runs its host), all times the facility's `cooling_overhead` (PUE). Power is taken
  as constant at load: it does not fall at low load (assumption: a statically scheduled chip
  clocks the same program whether its slots carry users or not), so an idle slot costs the
  same energy as a busy one and J/token falls as load rises.
- **Energy per token** is system power over system tokens/s.
- **Cost per token.** Either a chip-hour price (`chip_hour_usd`, all-in: hosts, power and
  facility included) times the chips, or capex (chips and hosts) amortised linearly over
  `amortisation_years` of round-the-clock service plus the electricity of the facility power
  at `electricity_usd_per_kwh`. Dollars per hour over tokens per hour, per million tokens.
  Not included: financing, staff, networking beyond the hosts, spare nodes not in
  `chips_active`, and idle hours (the system is assumed to serve at this load all the time).

Power is in watts, money in US dollars, time in seconds or hours as named.
"""

from __future__ import annotations

import math

from lpusim.config.specs import CostSpec, GpuSystemSpec, PowerSpec, SystemSpec
from lpusim.errors import ConfigError, InputError, Issue

AnySystem = SystemSpec | GpuSystemSpec      # both backends' systems carry power and cost

HOURS_PER_YEAR = 365.25 * 24      # calendar arithmetic, not a modelling assumption
SECONDS_PER_HOUR = 3600


def _power(system: AnySystem) -> PowerSpec:
    if system.power is None:
        raise ConfigError(Issue(system.name, None, None, "power",
                                "the system has no power section (chip_watts, "
                                "host_watts_per_node)"))
    return system.power


def _cost(system: AnySystem) -> CostSpec:
    if system.cost is None:
        raise ConfigError(Issue(system.name, None, None, "cost",
                                "the system has no cost section (chip_capex_usd, ...)"))
    return system.cost


def nodes_occupied(system: AnySystem, chips_active: int) -> int:
    """Nodes (hosts) that `chips_active` chips occupy: partly used nodes count whole."""
    if chips_active < 1:
        raise InputError(f"chips_active must be at least 1, got {chips_active}")
    return math.ceil(chips_active / system.topology.chips_per_node)


def system_power_watts(system: AnySystem, chips_active: int) -> float:
    """Facility power of a deployment of `chips_active` chips of `system`, in watts:
    (chips x chip_watts + nodes x host_watts_per_node) x cooling_overhead."""
    p = _power(system)
    it = chips_active * p.chip_watts + nodes_occupied(system, chips_active) * \
        p.host_watts_per_node
    return it * p.cooling_overhead


def joules_per_token(power_w: float, tokens_per_s: float) -> float:
    """Energy per token: watts over tokens per second (J/token)."""
    if not tokens_per_s > 0:
        raise InputError(f"tokens_per_s must be positive, got {tokens_per_s}")
    return power_w / tokens_per_s


def usd_per_hour(system: AnySystem, chips_active: int) -> float:
    """What running `chips_active` chips of `system` for one hour costs, in US dollars: the
    chip-hour price if the system has one, else amortised capex plus electricity."""
    c = _cost(system)
    if c.chip_hour_usd is not None:
        return chips_active * c.chip_hour_usd
    capex = chips_active * c.chip_capex_usd + nodes_occupied(system, chips_active) * \
        c.host_capex_usd_per_node
    energy_kwh = system_power_watts(system, chips_active) / 1000.0   # per hour
    return capex / (c.amortisation_years * HOURS_PER_YEAR) + energy_kwh * \
        c.electricity_usd_per_kwh


def usd_per_million_tokens(system: AnySystem, chips_active: int, tokens_per_s: float
                           ) -> float:
    """Dollars per million tokens when `chips_active` chips produce `tokens_per_s` tokens/s
    (of the whole system) around the clock."""
    if not tokens_per_s > 0:
        raise InputError(f"tokens_per_s must be positive, got {tokens_per_s}")
    return usd_per_hour(system, chips_active) / (tokens_per_s * SECONDS_PER_HOUR) * 1e6
