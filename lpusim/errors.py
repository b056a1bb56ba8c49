"""Typed errors of lpusim.

The library raises these; only the CLI turns them into one-line messages and exit codes.
Every error that comes from a file carries the place (file:line:column) and the dotted field.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


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


class CompileError(LpusimError):
    """A compiler pass failed; names the pass."""

    def __init__(self, pass_name: str, message: str):
        self.pass_name = pass_name
        super().__init__(f"compile pass '{pass_name}': {message}")


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
