"""The GPU rows of `validate-published`: predicted against published GPU figures.

The rows live in `lpusim/data/published_gpu.yaml`, in the format of the published-figures file
(`lpusim.published`): each names the shipped scenario that models it and the settings (model,
system, chips, window, context) put on it. Each is run without change: the `fit` row is the
training point of `lpusim.gpu.calibrate` (its error shows the fit held), the `prediction` rows
were never fitted to. Figures are tokens/s per user (with speculation when the scenario
speculates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpusim.published import PublishedRow, load_published
from lpusim.runner import load_scenario, run_scenario

PUBLISHED_GPU = Path(__file__).resolve().parent.parent / "data" / "published_gpu.yaml"


def gpu_published(path: Path = PUBLISHED_GPU) -> tuple[PublishedRow, ...]:
    """The published GPU rows, validated like the published-figures file."""
    return load_published(path)


def gpu_rows(path: Path = PUBLISHED_GPU) -> list[dict[str, Any]]:
    """Predicted vs published for every GPU row (keys: figure, predicted, published,
    error_percent, source, use)."""
    out = []
    for row in gpu_published(path):
        res = run_scenario(load_scenario(row.scenario, row.overrides()))
        p = res.tokens_per_second
        out.append({"figure": f"{row.figure} (tokens/s)", "predicted": p,
                    "published": row.value, "error_percent": 100 * (p - row.value) / row.value,
                    "source": row.source, "use": row.use})
    return out
