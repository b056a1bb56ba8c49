"""Checks of a loaded scenario that need the speculation layer, run when the scenario is loaded
(`lpusim.runner.load_scenario`, `lpusim validate`, every sweep value), not when it first runs.

The config layer validates each field on its own (types, ranges, units) but cannot read an
acceptance string: presets, per-position lists, mixtures and trace files are parsed here, by
`parse_acceptance`. A problem becomes an Issue at the field's file:line:column
(`speculation.acceptance`), with the trace file's own file:line in the message when the trace
is at fault. Relative trace paths are relative to the scenario's file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpusim.config.load import SpecCheck
from lpusim.config.specs import ScenarioSpec
from lpusim.config.yamlio import Document
from lpusim.errors import AcceptanceError, Issue

__all__ = ["SCENARIO_CHECKS", "check_acceptance"]


def check_acceptance(spec: Any, doc: Document) -> list[Issue]:
    """The scenario's acceptance parses (a number in range, a preset, a list, a mixture, or a
    readable, well-formed trace file)."""
    if not isinstance(spec, ScenarioSpec) or spec.speculation is None:
        return []
    acc = spec.speculation.acceptance
    if isinstance(acc, int | float) and not isinstance(acc, bool):
        return []                           # range checked by SpeculationSpec.check
    from lpusim.speculative.acceptance import parse_acceptance  # numpy: only when needed
    try:
        parse_acceptance(acc, base_dir=Path(doc.file).parent)
    except AcceptanceError as e:
        return [doc.issue(("speculation", "acceptance"), str(e))]
    return []


SCENARIO_CHECKS: tuple[SpecCheck, ...] = (check_acceptance,)
