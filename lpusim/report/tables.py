"""Tables people read: the `table` format of `run`, `plan` and `compare`.

Rendered from the plain result dicts (never from a fixed list of fields): a headline first,
then sections; every field the sections do not place is still shown under "Other", so a field
added to a result appears without a change here. Values get human units chosen from the field
name (bytes as kB/MB/GB, times in us or ms, fractions as percentages), nested lists become small
sub-tables or summaries, and every line fits in `WIDTH` columns. JSON and CSV output do not
come from here: they stay complete and exact. No strategy is named here: a speculation section
is headed by its result's strategy and worded from `lpusim.strategy_traits`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from lpusim import strategy_traits

WIDTH = 100
LABEL = 30
BAR = 30
FITTED_CAVEAT = 0.25


# ------------------------------------------------------------------ values with human units


def human_bytes(n: float) -> str:
    """205659200 -> '205.7 MB' (decimal units, as SRAM sizes are published)."""
    n = float(n)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            x = n / scale
            return f"{x:,.2f} {unit}" if abs(x) < 10 else f"{x:,.1f} {unit}" \
                if abs(x) < 1000 else f"{x:,.0f} {unit}"
    return f"{n:,.0f} B"


def human_rate(n: float) -> str:
    """Bytes per second: 14550000000 -> '14.55 GB/s'."""
    return human_bytes(n) + "/s"


def human_us(us: float) -> str:
    """Microseconds: 0.698 us, 186.8 us, 4,705 us, 12.34 ms, 2.5 s."""
    us = float(us)
    if abs(us) >= 1e6:
        return f"{us / 1e6:,.4g} s"
    if abs(us) >= 1e4:
        return f"{us / 1e3:,.4g} ms"
    if abs(us) >= 1000:
        return f"{us:,.0f} us"
    return f"{us:.4g} us"


def human_number(v: float) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


def fmt(key: str, v: Any) -> str:
    """A value in the unit its field name says (`*_bytes`, `*_us`, `*_ns`, `*_per_second`,
    utilisations and probabilities as percentages)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return summarise_list(v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(k, x)}" for k, x in v.items()) or "-"
    if not isinstance(v, int | float):
        return str(v)
    k = key.rsplit(".", 1)[-1].lower()
    path = key.lower()
    if k.endswith("_ratio") and not k.endswith("cost_ratio"):
        return f"{v:,.3g}x"
    if "bytes_per_s" in k:
        return human_rate(v)
    if "bytes" in k or ("bytes" in path and isinstance(v, int)):
        return human_bytes(v)
    if k.endswith("_us") or path.startswith("breakdown_us."):
        return human_us(v)
    if k.endswith("_ns"):
        return f"{human_number(v)} ns"
    if k.endswith("_ps"):
        return human_us(v / 1e6)
    if k.endswith("_cycles"):
        return f"{human_number(v)} cycles"
    if "tokens_per_second" in k or k.endswith("_tokens_per_s"):
        return f"{human_number(v)} tokens/s"
    if k.endswith("_hz"):
        return f"{v / 1e6:,.4g} MHz"
    if ("utilisation" in path or k.endswith(("_share", "probability", "_fraction"))) \
            and 0 <= v <= 1:
        return percent(v)
    if k in ("speedup",) or k.endswith(("_ratio", "speedup")):
        return f"{v:,.3g}x"
    return human_number(v)


def percent(v: float) -> str:
    if v == 0:
        return "0%"
    if v < 1e-4:
        return "<0.01%"
    return f"{100 * v:.3g}%"


def summarise_list(v: list[Any]) -> str:
    """A short list in full, a long one as its length and range."""
    if not v:
        return "none"
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
        text = " ".join(human_number(x) for x in v)
        if len(text) <= WIDTH - LABEL - 4:
            return text
        return f"{len(v)} values, {human_number(min(v))} to {human_number(max(v))}"
    if all(isinstance(x, dict) for x in v):
        return f"{len(v)} entries"
    text = ", ".join(str(x) for x in v)
    return text if len(text) <= WIDTH - LABEL - 4 else f"{len(v)} values"


UNIT_SUFFIXES = ("_bytes_per_s", "_us", "_ns", "_ps", "_bytes", "_cycles")


SHORT = {"tokens_per_second": "tokens/s", "expected_tokens_per_pass": "E[tokens/pass]",
         "baseline_tokens_per_second": "tokens/s without speculation",
         "tokens_per_second_ratio": "tokens/s vs #1", "token_latency_us_ratio": "latency vs #1",
         "chips_ratio": "chips vs #1"}


def label(key: str) -> str:
    """A field name for people: underscores to spaces, the unit suffix dropped (the value
    carries its unit)."""
    if key in SHORT:
        return SHORT[key]
    for suffix in UNIT_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    return key.replace("_", " ")


def _fit(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ------------------------------------------------------------------ building blocks


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        self.lines.append(_fit(text.rstrip()))

    def section(self, title: str) -> None:
        if self.lines:
            self.lines.append("")
        self.line(title)

    def kv(self, name: str, value: str, indent: int = 2) -> None:
        pad = LABEL - indent
        head = f"{' ' * indent}{name:<{pad}} "
        room = WIDTH - len(head)
        while len(value) > room:             # wrap long values under the value column
            cut = max(value.rfind(" ", 0, room), value.rfind("+", 0, room))
            cut = cut if cut > room // 2 else room
            self.lines.append(head + value[:cut])
            head, value = " " * len(head), value[cut:].lstrip()
        self.lines.append((head + value).rstrip())

    def table(self, header: list[str], rows: list[list[str]], indent: int = 2,
              right: Iterable[int] = ()) -> None:
        right = set(right)
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(header)]
        # shrink the widest columns until the table fits
        while indent + sum(widths) + 2 * (len(widths) - 1) > WIDTH and max(widths) > 8:
            widths[widths.index(max(widths))] -= 1

        def cell(i: int, text: str) -> str:
            text = text if len(text) <= widths[i] else text[: widths[i] - 1] + "~"
            return text.rjust(widths[i]) if i in right else text.ljust(widths[i])
        self.line(" " * indent + "  ".join(cell(i, h) for i, h in enumerate(header)))
        for r in rows:
            self.line(" " * indent + "  ".join(cell(i, c) for i, c in enumerate(r)))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def bar(share: float, width: int = BAR) -> str:
    share = min(max(share, 0.0), 1.0)
    n = round(share * width)
    return "#" * n if n or share <= 0 else "|"


def _breakdown(o: _Out, breakdown: dict[str, Any], what: str, extra: str = "") -> None:
    vals = {k: v for k, v in breakdown.items() if isinstance(v, int | float)}
    total = sum(vals.values())
    o.section(f"Where the time goes ({what}: {human_us(total)}{extra})")
    if total <= 0:
        o.line("  (no time recorded)")
        return
    w = max((len(label(k)) for k in vals), default=0)
    for k, v in vals.items():
        o.line(f"  {label(k):<{w}}  {human_us(v):>10}  {100 * v / total:5.1f}%  "
               f"{bar(v / total)}")


def _generic(o: _Out, data: dict[str, Any], prefix: str = "", indent: int = 2) -> None:
    """Every field of `data`, nested dicts indented, lists of records as sub-tables."""
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not all(isinstance(x, int | float) for x in v.values()):
            o.line(f"{' ' * indent}{label(k)}")
            _generic(o, v, key + ".", indent + 2)
        elif isinstance(v, dict) and len(fmt(key, v)) > WIDTH - LABEL - 2:
            o.line(f"{' ' * indent}{label(k)}")
            for kk, x in v.items():
                o.kv(label(kk), fmt(f"{key}.{kk}", x), indent + 2)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            o.line(f"{' ' * indent}{label(k)} ({len(v)} entries)")
            records(o, v, key, indent + 2)
        else:
            o.kv(label(k), fmt(key, v), indent)


def records(o: _Out, rows: list[dict[str, Any]], key: str = "", indent: int = 2,
            mark: dict[str, Any] | None = None, max_rows: int = 24) -> None:
    """A list of flat records as a small table (a long list: every nth row and the marked)."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    keep = list(range(len(rows)))
    if len(rows) > max_rows:
        step = math.ceil(len(rows) / max_rows)
        keep = sorted({*range(0, len(rows), step), len(rows) - 1,
                       *(i for i, r in enumerate(rows)
                         if mark and all(r.get(a) == b for a, b in mark.items()))})
    body = []
    for i in keep:
        r = rows[i]
        cells = [fmt(f"{key}.{c}", r.get(c)) for c in cols]
        if mark is not None:
            cells.append("<- chosen" if all(r.get(a) == b for a, b in mark.items()) else "")
        body.append(cells)
    header = [label(c) for c in cols] + ([""] if mark is not None else [])
    for j in range(len(cols)):                  # a unit all cells share goes to the header
        units = {c[j].rsplit(" ", 1)[1] if " " in c[j] else None for c in body}
        if len(units) == 1 and None not in units:
            unit = units.pop()
            for c in body:
                c[j] = c[j].rsplit(" ", 1)[0]
            if unit is not None and not header[j].endswith(unit):
                header[j] = f"{header[j]} ({unit})"
    o.table(header, body, indent, right=range(len(cols)))
    if len(keep) < len(rows):
        o.line(f"{' ' * indent}({len(rows) - len(keep)} of {len(rows)} rows not shown; "
               f"--format json has them all)")


def _take(d: dict[str, Any], used: set[str], *keys: str) -> list[tuple[str, Any]]:
    out = []
    for k in keys:
        if k in d:
            used.add(k)
            out.append((k, d[k]))
    return out


# ------------------------------------------------------------------ run


def _acceptance_text(a: Any) -> str:
    if not isinstance(a, dict):
        return fmt("acceptance", a)
    kind = a.get("kind", "?")
    rest = {k: v for k, v in a.items() if k != "kind"}
    if kind == "constant" and "a" in rest:
        return f"constant {human_number(rest['a'])} per drafted token (i.i.d.)"
    parts = [f"{k} {fmt(k, v)}" for k, v in rest.items() if not isinstance(v, dict | list)]
    return f"{kind}" + (f" ({', '.join(parts)})" if parts else "")


def run_table(d: dict[str, Any]) -> str:
    """The `run` result as a headline and sections."""
    o = _Out()
    used: set[str] = set()
    spec = d.get("speculation") or None
    chips = d.get("chips")
    total = spec.get("total_chips") if spec else None
    chips_text = f"{chips:,}" if isinstance(chips, int) else str(chips)
    if isinstance(total, int) and isinstance(chips, int) and total != chips:
        chips_text = f"{chips:,} + {total - chips:,} drafter"
    o.line(f"{d.get('model', '?')} on {chips_text} {d.get('chip', '')} chips "
           f"({d.get('system', '')})")
    head = [f"{human_number(d.get('tokens_per_second', float('nan')))} tokens/s per user",
            f"{human_us(d.get('token_latency_us', float('nan')))} per token"]
    if spec:
        head.append(f"{d.get('speedup', 1):.2f}x speedup over "
                    f"{human_number(d.get('baseline_tokens_per_second', float('nan')))} "
                    f"tokens/s without")
    o.line("  " + ", ".join(head))
    o.kv("scenario", str(d.get("scenario", "?")))
    used |= {"scenario", "model", "chip", "system", "tokens_per_second", "token_latency_us"}
    share = d.get("fitted_share")
    if isinstance(share, int | float) and share > FITTED_CAVEAT:
        names = ", ".join(d.get("fitted_constants") or {}) or "fitted constants"
        o.line(f"  caveat: {share:.0%} of the step time rests on constants fitted to "
               f"published figures ({names}); see docs/validation.md")
    used.add("fitted_share")

    o.section("Deployment")
    dep = d.get("deployment")
    if isinstance(dep, dict):
        used.add("deployment")
        for k, v in dep.items():
            o.kv(label(k), fmt(f"deployment.{k}", v))
    for k, v in _take(d, used, "chips", "tensor_parallel", "stages", "batch", "context",
                      "context_window", "fidelity"):
        if isinstance(dep, dict) and (k in dep or {"tensor_parallel": "tp"}.get(k) in dep):
            continue                          # shown by the deployment above
        o.kv(label(k), fmt(k, v))

    bd = d.get("breakdown_us")
    if isinstance(bd, dict):
        used.add("breakdown_us")
        cyc = d.get("step_latency_cycles")
        used |= {"step_latency_us", "step_latency_cycles"}
        _breakdown(o, bd, "critical path of one target decode step",
                   f" = {human_number(cyc)} cycles" if isinstance(cyc, int) else "")
        if spec and isinstance(spec.get("expected_tokens_per_pass"), int | float):
            o.line(f"  with speculation: {human_number(spec['expected_tokens_per_pass'])} "
                   f"tokens per pass (draft + verify), "
                   f"{human_us(d.get('token_latency_us', float('nan')))} per token")

    if "sram_bytes_per_chip_max" in d:
        o.section("SRAM per chip")
        used |= {"sram_bytes_per_chip_max", "sram_capacity_bytes_per_chip"}
        cap = d.get("sram_capacity_bytes_per_chip")
        mx = d["sram_bytes_per_chip_max"]
        pct = f" ({100 * mx / cap:.0f}%)" if isinstance(cap, int | float) and cap else ""
        o.kv("used (fullest chip)", f"{human_bytes(mx)} of {human_bytes(cap or 0)} usable{pct}")
        cats = d.get("sram_bytes_by_category")
        if isinstance(cats, dict):
            used.add("sram_bytes_by_category")
            for k, v in cats.items():
                o.kv(f"  {label(k)}", fmt("x_bytes", v))

    util = d.get("unit_utilisation")
    if isinstance(util, dict) or "link_utilisation" in d:
        o.section("Utilisation (busy fraction of the step)")
        parts = [f"{k} {fmt('utilisation', v)}" for k, v in (util or {}).items()]
        if "link_utilisation" in d:
            parts.append(f"links {fmt('utilisation', d['link_utilisation'])}")
        used |= {"unit_utilisation", "link_utilisation"}
        o.kv("chip units and links", ", ".join(parts))

    if spec:
        used |= {"speculation", "baseline_tokens_per_second", "speedup"}
        _speculation(o, spec, d)
    else:
        used.add("speculation")

    serving = _take(d, used, "throughput_tokens_per_second", "system_tokens_per_second",
                    "interleaved_steps", "interleaved_limit")
    if serving:
        o.section("Serving")
        for k, v in serving:
            if k == "system_tokens_per_second":
                o.kv("system tokens/s", f"{fmt(k, v)} (many users, interleaved steps; "
                                        f"excludes speculation)")
            elif k == "throughput_tokens_per_second":
                o.kv("throughput", f"{fmt(k, v)} (tokens/s per user x batch)")
            else:
                o.kv(label(k), fmt(k, v))

    a = d.get("assumptions")
    if isinstance(a, dict) and a:
        used.add("assumptions")
        o.section("Assumptions (unpublished constants)")
        for k, v in a.items():
            o.kv(label(k), fmt(f"assumptions.{k}", v))

    rest = {k: v for k, v in d.items() if k not in used}
    if rest:
        o.section("Other")
        _generic(o, rest)
    return o.text()


def _speculation(o: _Out, s: dict[str, Any], d: dict[str, Any]) -> None:
    used: set[str] = set()
    strategy = s.get("strategy", "?")
    o.section(f"Speculation ({strategy})")
    used.add("strategy")
    if s.get("draft_model"):
        chips = s.get("draft_chips")
        o.kv("drafter", f"{s['draft_model']}" + (f" on {chips} chips" if chips else "")
             + (", pipelined" if s.get("pipelined") else ""))
    if s.get("heads"):
        # worded by the strategy's own description (lpusim.strategy_traits) when it is known
        t = strategy_traits.TRAITS.get(strategy)
        what = t.description if t is not None and t.target_heads else "heads on the target"
        o.kv("heads", f"{s['heads']} {what}"
             + (f", tree width {s['tree_width']}" if s.get("tree_width") else ""))
    used |= {"draft_model", "draft_chips", "pipelined", "heads", "tree_width"}
    if "acceptance" in s:
        used.add("acceptance")
        o.kv("acceptance", _acceptance_text(s["acceptance"]))
    if "gamma" in s:
        used |= {"gamma", "gamma_search", "verify_width"}
        o.kv("gamma", f"{s['gamma']} drafted tokens per pass"
             + (f" ({s['gamma_search']})" if s.get("gamma_search") else "")
             + (f", verify width {s['verify_width']}" if s.get("verify_width") else ""))
    if "expected_tokens_per_pass" in s:
        used |= {"expected_tokens_per_pass", "monte_carlo_mean_tokens_per_pass"}
        mc = s.get("monte_carlo_mean_tokens_per_pass")
        o.kv("tokens per pass", f"{human_number(s['expected_tokens_per_pass'])} closed form"
             + (f", {human_number(mc)} Monte Carlo" if mc is not None else ""))
    if "tokens_per_second" in s:
        used |= {"tokens_per_second", "monte_carlo_tokens_per_second", "monte_carlo_passes",
                 "seed"}
        mc = s.get("monte_carlo_tokens_per_second")
        o.kv("tokens/s per user", f"{human_number(s['tokens_per_second'])} closed form"
             + (f", {human_number(mc)} Monte Carlo" if mc is not None else "")
             + (f" ({human_number(s['monte_carlo_passes'])} passes, seed {s.get('seed')})"
                if "monte_carlo_passes" in s else ""))
    if "p50_token_latency_us" in s or "p99_token_latency_us" in s:
        used |= {"p50_token_latency_us", "p99_token_latency_us"}
        o.kv("token latency", f"p50 {fmt('x_us', s.get('p50_token_latency_us'))}, "
             f"p99 {fmt('x_us', s.get('p99_token_latency_us'))} (Monte Carlo)")
    steps = [(k, s[k]) for k in ("draft_step_us", "verify_step_us", "baseline_step_us",
                                 "overhead_us") if k in s]
    if steps:
        used |= {k for k, _ in steps}
        o.kv("steps", ", ".join(f"{label(k.removesuffix('_step_us').removesuffix('_us'))} "
                                f"{human_us(v)}" for k, v in steps))
    for k in ("cost_ratio", "verify_cost_ratio", "break_even_acceptance", "total_chips",
              "head_start_us", "head_start_probability"):
        if k in s:
            used.add(k)
            o.kv(label(k), fmt(k, s[k]))
    hist = s.get("tokens_per_pass_histogram")
    if isinstance(hist, list) and hist:
        used.add("tokens_per_pass_histogram")
        tot = sum(x for x in hist if isinstance(x, int | float)) or 1
        o.line("  tokens committed per pass (Monte Carlo histogram)")
        rows = [[str(i + 1), human_number(c), f"{100 * c / tot:.1f}%", bar(c / tot, 40)]
                for i, c in enumerate(hist) if isinstance(c, int | float)]
        o.table(["tokens", "passes", "share", ""], rows, 4, right=(0, 1, 2))
    curve = s.get("gamma_curve")
    if isinstance(curve, list) and curve and all(isinstance(c, dict) for c in curve):
        used.add("gamma_curve")
        o.line(f"  gamma curve ({len(curve)} points)")
        records(o, curve, "speculation.gamma_curve", 4, mark={"gamma": s.get("gamma")})
    rest = {k: v for k, v in s.items() if k not in used}
    if rest:
        _generic(o, rest)


# ------------------------------------------------------------------ plan


def plan_table(d: dict[str, Any]) -> str:
    o = _Out()
    used = {"model", "chip", "min_chips", "stages", "tensor_parallel"}
    o.line(f"{d.get('model', '?')} on {d.get('chip', '?')}: at least "
           f"{human_number(d.get('min_chips', 0))} chips")
    o.line(f"  {d.get('stages', '?')} pipeline stages x tensor parallel "
           f"{d.get('tensor_parallel', '?')}")
    if "recommended_chips" in d:
        used |= {"recommended_chips", "recommended_nodes", "recommended_racks"}
        o.line(f"  recommended: {human_number(d['recommended_chips'])} chips = "
               f"{d.get('recommended_nodes', '?')} nodes in {d.get('recommended_racks', '?')} "
               f"racks")
    o.section("Model and workload")
    for k, v in _take(d, used, "weight_bytes", "weights_dtype", "context", "batch"):
        o.kv({"weight_bytes": "weights (all chips)"}.get(k, label(k)), fmt(k, v))
    o.section("SRAM per chip")
    mx, cap = d.get("sram_bytes_per_chip_max"), d.get("usable_sram_bytes_per_chip")
    used |= {"sram_bytes_per_chip_max", "usable_sram_bytes_per_chip"}
    if isinstance(mx, int | float) and isinstance(cap, int | float) and cap:
        o.kv("fullest chip", f"{human_bytes(mx)} of {human_bytes(cap)} usable "
                             f"({100 * mx / cap:.0f}%)")
    stages = d.get("sram_per_stage")
    if isinstance(stages, list) and stages and all(isinstance(s, dict) for s in stages):
        used.add("sram_per_stage")
        _stage_groups(o, stages)
    rest = {k: v for k, v in d.items() if k not in used}
    if rest:
        o.section("Other")
        _generic(o, rest)
    return o.text()


def _stage_groups(o: _Out, stages: list[dict[str, Any]]) -> None:
    """Consecutive stages with the same SRAM use as one row."""
    cols = [c for c in dict.fromkeys(k for s in stages for k in s) if c not in ("stage",
                                                                                "blocks")]
    groups: list[list[dict[str, Any]]] = []
    for s in stages:
        if groups and all(groups[-1][0].get(c) == s.get(c) for c in cols):
            groups[-1].append(s)
        else:
            groups.append([s])
    o.line(f"  per stage ({len(stages)} stages; equal neighbours grouped)")
    rows = []
    for g in groups:
        a, b = g[0], g[-1]
        st = str(a.get("stage")) if len(g) == 1 else f"{a.get('stage')}-{b.get('stage')}"
        blocks = str(a.get("blocks", ""))
        if len(g) > 1:
            first = str(a.get("blocks", "")).split("..")[0]
            last = str(b.get("blocks", "")).split("..")[-1]
            blocks = f"{first}..{last}"
        rows.append([st, blocks, *(fmt(f"sram.{c}_bytes", a.get(c)) for c in cols)])
    o.table(["stages", "blocks", *(label(c) for c in cols)], rows, 4,
            right=range(2, 2 + len(cols)))


# ------------------------------------------------------------------ compare


def compare_table(rows: list[dict[str, Any]]) -> str:
    """Scenarios side by side: a headline per scenario, then metrics with one column each."""
    o = _Out()
    for i, r in enumerate(rows, 1):
        ratio = r.get("tokens_per_second_ratio")
        o.line(f"#{i} {r.get('scenario', '?')}: {r.get('model', '?')} on "
               f"{human_number(r.get('chips', 0))} {r.get('chip', '')} chips")
        o.line(f"   {fmt('tokens_per_second', r.get('tokens_per_second'))} per user"
               + (f" ({ratio:.2f}x #1)" if isinstance(ratio, int | float) and i > 1 else "")
               + f", {human_us(r.get('token_latency_us', float('nan')))} per token"
               + (f", {r['speedup']:.2f}x speedup" if isinstance(r.get("speedup"), int | float)
                  and r.get("gamma") is not None else ""))
    flat: list[dict[str, Any]] = []
    for r in rows:
        f: dict[str, Any] = {}
        for k, v in r.items():
            if isinstance(v, dict):
                f.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                f[k] = v
        flat.append(f)
    keys = list(dict.fromkeys(k for f in flat for k in f))
    breakdown = [k for k in keys if k.startswith("breakdown_us.")]
    metrics = [k for k in keys if k not in breakdown and k not in ("scenario",)]
    _transposed(o, "Metrics", flat, metrics)
    if breakdown:
        _transposed(o, "Where the time goes (one target decode step)", flat, breakdown,
                    strip="breakdown_us.")
    return o.text()


def _transposed(o: _Out, title: str, flat: list[dict[str, Any]], keys: list[str],
                strip: str = "") -> None:
    col = 16
    per = max(1, (WIDTH - LABEL) // (col + 2))
    for start in range(0, len(flat), per):
        chunk = list(range(start, min(len(flat), start + per)))
        o.section(title + (f" (scenarios #{chunk[0] + 1}-#{chunk[-1] + 1})"
                           if len(flat) > per else ""))
        header = [""] + [f"#{i + 1}" for i in chunk]
        body = [[label(k.removeprefix(strip))] + [fmt(k, flat[i].get(k)) for i in chunk]
                for k in keys]
        o.table(header, body, 2, right=range(1, len(header)))
