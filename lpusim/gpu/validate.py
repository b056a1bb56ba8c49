"""The GPU rows of `validate-published`: predicted against published GPU figures.

The rows live in `lpusim/data/published_gpu.yaml` (one per figure, with the shipped scenario
that models it). Each is run without change: the `fit` row is the training point of
`lpusim.gpu.calibrate` (its error shows the fit held), the `prediction` rows were never fitted.
A row in milliseconds is compared with the predicted inter-token latency, a row in tokens/s
with the predicted tokens/s per user (with speculation when the scenario speculates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpusim.config.yamlio import load_document
from lpusim.errors import ConfigError, Issue
from lpusim.runner import RunResult, load_scenario, run_scenario

PUBLISHED_GPU = Path(__file__).resolve().parent.parent / "data" / "published_gpu.yaml"
UNITS = ("ms", "tokens/s")


def published_rows(path: Path = PUBLISHED_GPU) -> list[dict[str, Any]]:
    """The rows of the published GPU figures file, checked for the keys this module uses."""
    doc = load_document(path)
    rows = doc.data.get("rows")
    if not isinstance(rows, list):
        raise ConfigError(Issue(str(path), None, None, "rows", "expected a list of rows"))
    for i, r in enumerate(rows):
        missing = [k for k in ("id", "figure", "value", "unit", "source", "use", "scenario")
                   if not isinstance(r, dict) or k not in r]
        if missing:
            raise ConfigError(doc.issue(("rows", i), f"missing {', '.join(missing)}"))
        if r["unit"] not in UNITS:
            raise ConfigError(doc.issue(("rows", i, "unit"),
                                        f"unit {r['unit']!r} is not one of {', '.join(UNITS)}"))
    return rows


def predicted(result: RunResult, unit: str) -> float:
    """The figure a result predicts in `unit`: inter-token latency (ms) or tokens/s per user."""
    return result.token_latency_us / 1000 if unit == "ms" else result.tokens_per_second


def gpu_rows(path: Path = PUBLISHED_GPU) -> list[dict[str, Any]]:
    """Predicted vs published for every GPU row (keys: figure, predicted, published,
    error_percent, source, use)."""
    out = []
    for r in published_rows(path):
        res = run_scenario(load_scenario(r["scenario"]))
        p, v = predicted(res, r["unit"]), float(r["value"])
        out.append({"figure": f"{r['figure']} ({r['unit']})", "predicted": p, "published": v,
                    "error_percent": 100 * (p - v) / v, "source": r["source"],
                    "use": r["use"]})
    return out
