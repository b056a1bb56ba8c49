"""Plots of results (matplotlib, imported lazily; no display or backend needed).

Every plot function takes plain records (dicts as produced by `RunResult.to_dict()` or the
sweep's JSON lines), writes PNG and SVG files, and returns the data series it drew, so tests
and the HTML report can check what was plotted without reading pixels.

Figures are built with the object API (`matplotlib.figure.Figure`), never pyplot, and styled
inside `matplotlib.rc_context`: a caller's backend, open figures and rcParams (a notebook's
style) are left exactly as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from lpusim.atomic import write_atomic

BREAKDOWN_ORDER = ("compute_mxm", "compute_vxm", "data_movement", "link_serialisation",
                   "link_latency", "synchronisation", "pipeline_fill", "collective_latency",
                   "layer_barrier", "stage_deskew", "idle")


STYLE: dict[str, Any] = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "lpusim", "font.size": 10}
F = TypeVar("F", bound=Callable[..., Any])


def _styled(fn: F) -> F:
    """Run a plot function (figure creation through saving) inside rc_context(STYLE)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        import matplotlib
        with matplotlib.rc_context(cast(Any, STYLE)):   # its keys are typed as literals
            return fn(*args, **kw)
    return wrapper  # type: ignore[return-value]


class _Figures:
    """The two pyplot calls the plots use, on the object API (no global figure registry)."""

    @staticmethod
    def subplots(*grid: int, figsize: tuple[float, float], **kw: Any) -> tuple[Any, Any]:
        """pyplot.subplots(nrows, ncols, figsize=..., squeeze=...) on a bare Figure."""
        from matplotlib.figure import Figure
        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*grid, **kw)

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to release: the figure was never registered with pyplot."""


def _plt() -> _Figures:
    return _Figures()


def _save(fig: Any, outdir: Path, name: str) -> list[str]:
    import io
    files = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        meta = {"Software": None} if ext == "png" else {"Date": None}
        fig.savefig(buf, format=ext, bbox_inches="tight", metadata=meta)
        write_atomic(outdir / f"{name}.{ext}", buf.getvalue())
        files.append(f"{name}.{ext}")
    _plt().close(fig)
    return files


@_styled
def tornado(rows: list[dict[str, Any]], outdir: Path) -> dict[str, Any]:
    """Sensitivity of tokens/s to each parameter at its low and high value."""
    plt = _plt()
    rows = sorted(rows, key=lambda r: r["swing_percent"])
    base = rows[0]["baseline_tokens_per_second"] if rows else 0.0
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    for i, r in enumerate(rows):
        lo, hi = r["tokens_per_second_low"] - base, r["tokens_per_second_high"] - base
        ax.barh(i, lo, color="#4C72B0", label=f"x{r['scale_low']:g}" if i == 0 else None)
        ax.barh(i, hi, color="#DD8452", label=f"x{r['scale_high']:g}" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [r["parameter"] for r in rows])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"change in tokens/s per user (baseline {base:.0f} tokens/s)")
    ax.set_title("Sensitivity of the default scenario to uncertain parameters")
    ax.legend(title="parameter scaled", loc="lower right")
    files = _save(fig, outdir, "tornado")
    return {"name": "tornado", "files": files,
            "series": {r["parameter"]: [r["tokens_per_second_low"],
                                        r["tokens_per_second_high"]] for r in rows}}


@_styled
def gamma_curve(result: dict[str, Any], outdir: Path, name: str = "tokens_vs_gamma"
                ) -> dict[str, Any]:
    """Tokens/s against gamma for one speculative result, optimum marked."""
    plt = _plt()
    spec = result["speculation"]
    curve = spec["gamma_curve"]
    g = [c["gamma"] for c in curve]
    t = [c["tokens_per_second"] for c in curve]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(g, t, marker="o", ms=3, label=f"{spec['strategy']} (acceptance "
                                          f"{_acc_label(spec['acceptance'])})")
    ax.axhline(result["baseline_tokens_per_second"], color="gray", ls="--",
               label="no speculation")
    ax.plot([spec["gamma"]], [spec["tokens_per_second"]], marker="*", ms=14, color="C3",
            ls="none", label=f"optimum: gamma={spec['gamma']}")
    ax.set_xlabel("gamma (drafted tokens per pass)")
    ax.set_ylabel("tokens/s per user")
    ax.set_title(f"{result['model']} on {result['chips']} chips: tokens/s vs gamma")
    ax.legend()
    files = _save(fig, outdir, name)
    return {"name": name, "files": files, "series": {"gamma": g, "tokens_per_second": t,
                                                     "optimum": spec["gamma"]}}


def _acc_label(acc: dict[str, Any]) -> str:
    if acc.get("kind") == "constant":
        return f"{acc['a']:g}"
    return str(acc.get("name") or acc.get("kind"))


@_styled
def speedup_vs_acceptance(rows: list[dict[str, Any]], outdir: Path) -> dict[str, Any] | None:
    """Speedup against constant acceptance, one line per gamma (and per strategy when several
    were swept); other swept axes are held at the values of the first point."""
    lines = ("speculation.acceptance", "speculation.gamma", "speculation.strategy")
    held = {k: v for k, v in (rows[0].get("overrides") or {}).items()
            if k not in lines} if rows else {}
    strategies = {(r.get("speculation") or {}).get("strategy") for r in rows} - {None}
    pts: dict[Any, list[tuple[float, float]]] = {}
    for r in rows:
        if any(r.get("overrides", {}).get(k) != v for k, v in held.items()):
            continue
        s = r.get("speculation")
        if not s or s["acceptance"].get("kind") != "constant":
            continue
        key: Any = s["gamma"] if s.get("gamma_search") == "fixed" else "auto"
        if len(strategies) > 1:
            key = f"{s['strategy']}, gamma={key}"
        pts.setdefault(key, []).append((s["acceptance"]["a"], r["speedup"]))
    pts = {k: sorted(v) for k, v in pts.items() if len({a for a, _ in v}) > 1}
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    series = {}
    for k in sorted(pts, key=lambda x: (isinstance(x, str), x)):
        a = [p[0] for p in pts[k]]
        sp = [p[1] for p in pts[k]]
        ax.plot(a, sp, marker="o", ms=3, label=k if len(strategies) > 1 else f"gamma={k}")
        series[str(k)] = {"acceptance": a, "speedup": sp}
    ax.axhline(1, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("acceptance probability per drafted token")
    ax.set_ylabel("speedup over no speculation (x)")
    ax.set_title("Speedup vs acceptance" + (
        " (" + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in held.items()) + ")"
        if held else ""), fontsize=10)
    ax.legend()
    return {"name": "speedup_vs_acceptance", "files": _save(fig, outdir, "speedup_vs_acceptance"),
            "series": series}


@_styled
def tokens_vs_chips(rows: list[dict[str, Any]], outdir: Path) -> dict[str, Any] | None:
    by: dict[int, tuple[list[float], list[float]]] = {}
    for r in rows:
        base, spec = by.setdefault(r["chips"], ([], []))
        base.append(r["baseline_tokens_per_second"])
        if r.get("speculation"):
            spec.append(r["tokens_per_second"])
    if len(by) < 2:
        return None
    chips = sorted(by)
    base = [max(by[c][0]) for c in chips]
    best: list[float | None] = [max(by[c][1]) if by[c][1] else None for c in chips]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(chips, base, marker="o", label="no speculation")
    if any(s is not None for s in best):
        ax.plot([c for c, s in zip(chips, best, strict=True) if s is not None],
                [s for s in best if s is not None], marker="s", label="with speculation (best)")
    ax.set_xlabel("chips (target model)")
    ax.set_ylabel("tokens/s per user")
    ax.set_title("Tokens/s vs chip count")
    ax.legend()
    return {"name": "tokens_vs_chips", "files": _save(fig, outdir, "tokens_vs_chips"),
            "series": {"chips": chips, "baseline": base, "speculative": best}}


@_styled
def breakdown_bars(rows: list[dict[str, Any]], labels: list[str], outdir: Path,
                   name: str = "latency_breakdown",
                   per_token_us: list[float | None] | None = None) -> dict[str, Any]:
    """The critical path of one decode step of the target model without speculation, by
    category (stacked bars, whatever categories `breakdown_us` has); `per_token_us` marks
    the time per token with speculation (a pass commits several tokens), where known."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.5, 0.6 * len(rows) + 3), 4.5))
    bottom = [0.0] * len(rows)
    series: dict[str, Any] = {}
    keys = list(dict.fromkeys([*(k for k in BREAKDOWN_ORDER
                                 if any(k in r["breakdown_us"] for r in rows)),
                               *(k for r in rows for k in r["breakdown_us"])]))
    import matplotlib
    colours = matplotlib.colormaps["tab20"]    # distinct colours: LPU and GPU categories
    for i, k in enumerate(keys):
        vals = [float(r["breakdown_us"].get(k, 0.0)) for r in rows]
        if not any(vals):
            continue
        ax.bar(range(len(rows)), vals, bottom=bottom, label=k.replace("_", " "),
               color=colours(i % 20))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        series[k] = vals
    marks = [(i, v) for i, v in enumerate(per_token_us or []) if v is not None]
    if marks:
        ax.plot([i for i, _ in marks], [v for _, v in marks], ls="none", marker="_", ms=28,
                mew=2.5, color="black", label="per token with speculation\n(best point)")
        series["per_token_with_speculation_us"] = list(per_token_us or [])
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    ax.set_ylabel("time (us)")
    ax.set_title("Where the time goes: one target decode step without speculation "
                 "(critical path)", fontsize=10)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return {"name": name, "files": _save(fig, outdir, name), "series": series,
            "labels": labels}


MAX_FACETS = 6


@_styled
def heatmap(rows: list[dict[str, Any]], x: str, y: str, outdir: Path,
            metric: str = "tokens_per_second") -> dict[str, Any]:
    """A metric over two swept axes (values as given in the sweep's overrides). Other swept
    axes are not hidden: one panel per combination of their values (up to MAX_FACETS);
    beyond that each cell shows the best point over them, and the title says so."""
    xs = sorted({_key(r["overrides"][x]) for r in rows}, key=_sortkey)
    ys = sorted({_key(r["overrides"][y]) for r in rows}, key=_sortkey)
    others = list(dict.fromkeys(k for r in rows for k in r["overrides"] if k not in (x, y)))

    def combo(r: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(_key(r["overrides"].get(k)) for k in others)
    combos = sorted({combo(r) for r in rows}, key=lambda c: [_sortkey(v) for v in c])
    facets = combos if len(combos) <= MAX_FACETS else [None]
    grids = []
    for f in facets:
        grid = [[float("nan")] * len(xs) for _ in ys]
        for r in rows:
            if f is not None and combo(r) != f:
                continue
            i, j = ys.index(_key(r["overrides"][y])), xs.index(_key(r["overrides"][x]))
            v = float(r[metric])
            grid[i][j] = v if grid[i][j] != grid[i][j] else max(v, grid[i][j])
        grids.append(grid)
    plt = _plt()
    ncols = min(3, len(facets))
    nrows = -(-len(facets) // ncols)
    fig, axs = plt.subplots(nrows, ncols, squeeze=False,
                            figsize=(ncols * (0.8 * len(xs) + 2.5), nrows * (0.45 * len(ys) + 2)))
    finite = [v for g in grids for row in g for v in row if v == v]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    im = None
    for n, (f, grid) in enumerate(zip(facets, grids, strict=True)):
        ax = axs[n // ncols][n % ncols]
        ax.grid(False)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
        ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, ha="right")
        ax.set_yticks(range(len(ys)), [str(v) for v in ys])
        ax.set_xlabel(x)
        if n % ncols == 0:
            ax.set_ylabel(y)
        if f is not None and others:
            ax.set_title(", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, f,
                                                                            strict=True)),
                         fontsize=8)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if grid[i][j] == grid[i][j]:
                    ax.text(j, i, f"{grid[i][j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white")
    for n in range(len(facets), nrows * ncols):
        axs[n // ncols][n % ncols].axis("off")
    if im is not None:
        fig.colorbar(im, ax=axs, label=metric.replace("_", " ").replace("per second", "/s"))
    if not others:
        how = ""
    elif facets[0] is not None:
        how = f"; one panel per {', '.join(others)}"
    else:
        how = f"; each cell the best over {', '.join(others)} ({len(combos)} combinations)"
    fig.suptitle(f"{metric.replace('_', ' ')} over {x} and {y}{how}", fontsize=9, y=1.04)
    return {"name": "heatmap", "files": _save(fig, outdir, "heatmap"),
            "series": {"x": [str(v) for v in xs], "y": [str(v) for v in ys], "z": grids[0],
                       "panels": [{"fixed": dict(zip(others, map(str, f), strict=True))
                                   if f is not None else None, "z": g}
                                  for f, g in zip(facets, grids, strict=True)],
                       "reduced_over": others if facets[0] is None else []},
            "reduction": how.removeprefix("; ")}


def _key(v: Any) -> Any:
    return v if isinstance(v, int | float | str) else str(v)


def _sortkey(v: Any) -> tuple[int, Any]:
    if isinstance(v, int | float):
        return (0, v)
    from lpusim.units import UnitError, parse_quantity
    for kind in ("size", "time", "bandwidth", "frequency"):
        try:
            return (0, parse_quantity(v, kind))
        except UnitError:
            continue
    return (1, str(v))


def serving_frontier(result: dict[str, Any], outdir: Path) -> dict[str, Any]:
    """Per-user against system tokens/s at each load, one line per strategy (a
    `ServeResult.to_dict()`), with the user count at each point."""
    plt = _plt()
    lines = {"none": result["frontier"], **result.get("speculation", {})}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    series: dict[str, list[list[float]]] = {}
    for name, pts in lines.items():
        if not pts:
            continue
        xs = [p["system_tokens_per_second"] for p in pts]
        ys = [p["tokens_per_second_per_user"] for p in pts]
        label = "no speculation" if name == "none" else name
        ax.plot(xs, ys, marker="o", label=label)
        for p, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(str(p["users"]), (x, y), textcoords="offset points", xytext=(3, 4),
                        fontsize=7)
        series[name] = [xs, ys]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("system tokens/s (all users)")
    ax.set_ylabel("tokens/s per user")
    ax.set_title(f"Serving {result['model']} on {result['chips']} chips "
                 f"(labels: users; {'paged' if result['paged_kv'] else 'window'} KV)")
    ax.legend()
    files = _save(fig, outdir, "serving_frontier")
    return {"name": "serving_frontier", "files": files, "series": series}
