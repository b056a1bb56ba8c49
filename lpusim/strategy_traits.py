"""The speculation strategies' names and the facts about each that layers below speculation
need: the one list of strategy names.

Models nothing and computes nothing: it is a table. The scenario schema (`config`) takes its
`speculation.strategy` choices from it, the deployment policies (`deploy`, `gpu.deploy`) ask
whether a strategy has a drafter, the report words its lines with a strategy's description,
and the CLI, serving and calibration list the strategies from it. The strategies themselves
(how a pass is timed) are `lpusim.speculative.registry.Strategy` objects, one per row, each
built on its row's `StrategyTraits`; the registry checks at import that the two agree.

A leaf module (no lpusim imports), so that every layer may read it. Its order is the order
of CLI choices and error messages. `lpusim.speculative.registry.register` adds a row for a
strategy registered at run time (a plugin or a test), so no layer keeps a copy of the names:
read `TRAITS` (or `names()`) when they are needed, not at import.
"""

from __future__ import annotations

from collections.abc import KeysView
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class StrategyTraits:
    """What a layer below speculation may know about a strategy without running it."""

    name: str                      # as written in a scenario (`speculation.strategy`)
    description: str               # one line: the CLI's help, the schema's doc, the report
    label: str                     # a short noun phrase for a row's title ("draft then verify")
    needs_drafter: bool            # a separate draft model (`speculation.draft_model`) drafts
    drafter_own_chips: bool = False   # the drafter cannot share a GPU server's GPUs
    target_heads: bool = False     # the target verifies with its speculative heads compiled in


TRAITS: dict[str, StrategyTraits] = {t.name: t for t in (
    StrategyTraits(name="draft", description="draft gamma, then verify",
                   label="draft then verify", needs_drafter=True),
    # the drafter never waits for the target, so it cannot take turns with it on one GPU
    StrategyTraits(name="async", description="draft without waiting, verify windows of gamma "
                                             "as they are drafted",
                   label="asynchronous speculation", needs_drafter=True,
                   drafter_own_chips=True),
    StrategyTraits(name="heads", description="Medusa-style heads on the target",
                   label="Medusa-style heads", needs_drafter=False, target_heads=True),
)}
SHIPPED = frozenset(TRAITS)        # the rows above; `register` may add others at run time


def names() -> KeysView[str]:
    """The strategy names, in order: a live view (a strategy registered later is in it)."""
    return TRAITS.keys()


def described() -> str:
    """Every strategy and its description on one line ('draft: ...; async: ...')."""
    return "; ".join(f"{t.name}: {t.description}" for t in TRAITS.values())


def needs_drafter(name: str) -> bool:
    """Whether strategy `name` drafts with a separate model (False for an unknown name)."""
    t = TRAITS.get(name)
    return t is not None and t.needs_drafter


def target_heads(name: str) -> bool:
    """Whether strategy `name` verifies on the target with its speculative heads compiled in."""
    t = TRAITS.get(name)
    return t is not None and t.target_heads
