"""Published figures as data: the rows of `lpusim/data/published.yaml`.

Each row names a deployment (model, system, chips or the deployment policy, context window,
tokens in the cache), the published figure with its unit, date, source and confidence, and
its role: `fit` rows are the only figures any constant may be fitted to; `prediction` rows are
what the model is checked against. The reader validates every field with the spec schema, so a
bad row fails with `file:line:column: rows[i].field: message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lpusim.config.schema import build, spec_field
from lpusim.config.specs import BIG
from lpusim.config.yamlio import load_document
from lpusim.errors import ConfigError, Issue


@dataclass(frozen=True, kw_only=True)
class PublishedRow:
    id: str = spec_field("str")
    figure: str = spec_field("str")
    model: str = spec_field("str", doc="shipped model name")
    system: str = spec_field("str", doc="shipped system name")
    chips: int | None = spec_field("int", None, min=1, max=BIG,
                                   doc="chips used; absent: the deployment policy decides")
    context_window: int = spec_field("int", min=1, max=10**8)
    context: int = spec_field("int", min=1, max=10**8)
    scenario: str = spec_field("str", "llama-3.1-70b-groqrack-576",
                               doc="the shipped scenario the row's settings override")
    acceptance: float | None = spec_field("probability", None)
    date: str = spec_field("str")
    value: float = spec_field("float", min=0.0)
    unit: str = spec_field("enum", choices=("tokens/s",))
    source: str = spec_field("str")
    confidence: str = spec_field("enum", choices=("H", "M", "L"))
    use: str = spec_field("enum", choices=("fit", "prediction"))

    def overrides(self) -> dict[str, object]:
        """Scenario overrides that put the row's deployment on its base scenario."""
        ov: dict[str, object] = {"model": self.model, "system": self.system,
                                 "context_window": self.context_window,
                                 "context": self.context}
        if self.chips is not None:
            ov["chips"] = self.chips
        if self.acceptance is not None:
            ov["speculation.acceptance"] = self.acceptance
        return ov


def default_path() -> Path:
    return Path(str(resources.files("lpusim") / "data" / "published.yaml"))


def load_published(path: str | Path | None = None) -> tuple[PublishedRow, ...]:
    """Every row of a published-figures file (default: the shipped one), validated."""
    where = Path(path) if path is not None else default_path()
    doc = load_document(where)
    issues: list[Issue] = []
    if doc.data.get("kind") != "published":
        issues.append(doc.issue(("kind",), "expected kind 'published'"))
    if doc.data.get("version") != 1:
        issues.append(doc.issue(("version",), "expected version 1"))
    rows_raw = doc.data.get("rows")
    if not isinstance(rows_raw, list) or not rows_raw:
        issues.append(doc.issue(("rows",), "expected a non-empty list of rows"))
        raise ConfigError(issues)
    for key in doc.data:
        if key not in ("kind", "version", "rows"):
            issues.append(doc.issue((key,), "unknown key", at_key=True))
    rows = []
    seen: set[str] = set()
    for i, raw in enumerate(rows_raw):
        row = build(PublishedRow, doc, ("rows", i), raw, issues)
        if row is None:
            continue
        if row.id in seen:
            issues.append(doc.issue(("rows", i, "id"), f"duplicate id {row.id!r}"))
        seen.add(row.id)
        rows.append(row)
    if issues:
        raise ConfigError(issues)
    return tuple(rows)
