"""Typed errors of lpusim.

The library raises these; only the CLI turns them into one-line messages and exit codes.
Every error that comes from a file carries the place (file:line:column) and the dotted field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_FIELD_CHARS = 160
MAX_MESSAGE_CHARS = 600
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def short_repr(value: Any, limit: int = 60) -> str:
    """repr(value), shortened to about `limit` characters (hostile input can be megabytes)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**limit:
        return f"an integer of {len(str(abs(value)))} digits" if abs(value) < 10**4000 \
            else "an integer of thousands of digits"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 20]}...{text[-10:]} ({len(text)} characters)"


def one_line(text: str, limit: int) -> str:
    """Text made safe for a one-line terminal message: control characters (newlines, escape
    sequences) shown as escapes, and at most `limit` characters."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    if len(text) > limit:
        text = text[:limit - 25] + f"... ({len(text)} characters)"
    return text


class LpusimError(Exception):
    """Base of every error lpusim raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Issue:
    """One problem found in an input: where it is and what is wrong."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        where = one_line(where, MAX_MESSAGE_CHARS)
        field = f" {one_line(self.field, MAX_FIELD_CHARS)}:" if self.field else ""
        return f"{where}:{field} {one_line(self.message, MAX_MESSAGE_CHARS)}"


class ConfigError(LpusimError):
    """Bad user input: one or more issues, all reported at once."""

    exit_code = 2

    def __init__(self, issues: list[Issue] | Issue | str):
        if isinstance(issues, str):
            issues = [Issue("<input>", None, None, "", issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class CapacityError(LpusimError):
    """A model does not fit in the chips' SRAM (or cannot be placed on them)."""

    exit_code = 2

    def __init__(self, message: str, *, chip: int | None = None, overflow_bytes: int = 0,
                 min_chips: int | None = None):
        self.chip = chip
        self.overflow_bytes = overflow_bytes
        self.min_chips = min_chips
        super().__init__(message)


class InputError(LpusimError, ValueError):
    """A bad argument given to a library function (not read from a file): the caller's
    mistake, so exit code 2. Also a ValueError, which is what callers caught before."""

    exit_code = 2


class GraphError(InputError):
    """Decode-graph parameters that describe no valid step (a width or context below 1)."""


class TopologyError(InputError):
    """A system whose links do not connect the chips a transfer needs (no route)."""


class AcceptanceError(InputError):
    """An acceptance model, acceptance string or acceptance trace file that cannot be used.
    Messages of trace-file problems start with the trace's file:line."""


class CompileError(LpusimError):
    """A compiler pass failed; names the pass."""

    def __init__(self, pass_name: str, message: str):
        self.pass_name = pass_name
        super().__init__(f"compile pass '{pass_name}': {message}")


class NoStageTemplate(CompileError):
    """Fast fidelity cannot represent this step exactly (a stage template with work that
    outlasts the stage's output, which composing templates would drop): simulate the full
    program instead. `lpusim.step` catches it and falls back to fidelity 'full'."""

    def __init__(self, stage: int, key: str):
        self.stage = stage
        self.key = key
        super().__init__("schedule", f"stage {stage} ({key}) has work after its output "
                                     "reaches its chips; use fidelity 'full'")


class ScheduleViolation(LpusimError):
    """The static schedule does not hold: on a deterministic machine, a compiler bug."""

    def __init__(self, chip: int, unit: str, cycle: int, instruction: str, reason: str):
        self.chip = chip
        self.unit = unit
        self.cycle = cycle
        self.instruction = instruction
        self.reason = reason
        # args hold the fields, so copies made by simpy (type(e)(*e.args)) are identical
        super().__init__(chip, unit, cycle, instruction, reason)

    def __str__(self) -> str:
        return (f"schedule violation on chip {self.chip}, unit {self.unit}, cycle {self.cycle}, "
                f"instruction {self.instruction}: {self.reason}")
