"""Parameter sweeps: a grid of dotted-path overrides on a base scenario, run in parallel.

A sweep file (`kind: sweep`) names a base scenario and a grid (dotted path -> list of values;
the points are the Cartesian product, in file order). Every value is checked up front exactly
as if it were written in the scenario, with errors pointing at the grid entry. Points run
through any `concurrent.futures.Executor` (a process pool by default, a Dask cluster if asked),
one batch per hardware point, so that points differing only in speculation settings reuse the
compiled steps of one worker. Each finished point is appended to the results file as one whole
JSON line (one write on an O_APPEND descriptor, flushed), so an interrupted sweep
keeps its finished points; re-running skips points already present. A point is present when a
row has its id (a hash of the point's overrides) and the sweep's current `basis`: a hash of the
resolved base scenario (the scenario with its model, system and chip files, and the bytes of
an acceptance trace it names) and of lpusim's source code. Rows computed from an edited base
scenario, chip or model file, or by another version of lpusim, are stale: they are recomputed
and dropped from the file, never mixed with current ones. When every point is done the file
is rewritten, atomically, in grid order, so the same sweep gives the same bytes whatever the
number of workers.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpusim import caches, parallel
from lpusim.atomic import write_atomic
from lpusim.config.load import find, load_scenario
from lpusim.config.schema import plain_value_issue
from lpusim.config.yamlio import Document, load_document
from lpusim.errors import CapacityError, ConfigError, Issue, LpusimError, short_repr

MAX_POINTS = 1_000_000


@dataclass(frozen=True)
class SweepSpec:
    name: str
    base: Path
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    file: str

    @property
    def size(self) -> int:
        n = 1
        for _k, vals in self.axes:
            n *= len(vals)
        return n

    def points(self) -> Iterator[tuple[int, dict[str, Any]]]:
        keys = [k for k, _v in self.axes]
        for i, combo in enumerate(itertools.product(*(v for _k, v in self.axes))):
            yield i, dict(zip(keys, combo, strict=True))


def point_id(overrides: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:16]


def sweep_basis(spec: SweepSpec) -> str:
    """What every row of this sweep was computed from: a hash of the resolved base scenario
    (all its fields, the referenced model/system/chip specs included, and the bytes of an
    acceptance trace file it names) and of lpusim's source code (lpusim.caches)."""
    from lpusim.runner import load_scenario
    sc = load_scenario(spec.base)
    resolved = dataclasses.asdict(sc)
    resolved.pop("file", None)              # where the file is does not change a result
    h = hashlib.sha256(caches.code_fingerprint().encode() + b"\0")
    h.update(json.dumps(resolved, sort_keys=True, default=repr).encode())
    acc = sc.speculation.acceptance if sc.speculation else None
    if isinstance(acc, str):
        trace = Path(acc) if Path(acc).is_absolute() else Path(sc.file).parent / acc
        if trace.is_file():
            h.update(b"\0trace\0" + trace.read_bytes())
    return h.hexdigest()[:16]


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and check a sweep file; every grid value is validated against the base scenario."""
    doc = load_document(path)
    issues: list[Issue] = []
    allowed = {"kind", "version", "name", "base", "grid"}
    for k in doc.data:
        if k not in allowed:
            import difflib
            close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            issues.append(doc.issue((k,), f"unknown key{hint} (valid keys: "
                                           f"{', '.join(sorted(allowed))})", at_key=True))
    if doc.data.get("kind") != "sweep":
        issues.append(doc.issue(("kind",), f"expected 'kind: sweep', got "
                                           f"{doc.data.get('kind')!r}"))
    version = doc.data.get("version")
    if version is None:
        issues.append(Issue(doc.file, None, None, "version",
                            "missing required key 'version' (current: 1)"))
    elif isinstance(version, bool) or not isinstance(version, int) or version != 1:
        issues.append(doc.issue(("version",), f"unsupported version {short_repr(version)} "
                                              f"(this lpusim reads version 1)"))
    name = doc.data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        issues.append(doc.issue(("name",), "expected a non-empty string"))
    base_ref = doc.data.get("base")
    base = None
    if not isinstance(base_ref, str):
        issues.append(doc.issue(("base",), "expected the base scenario (a name or a path)"))
    else:
        base = find("scenario", base_ref, Path(path).parent)
        if base is None:
            issues.append(doc.issue(("base",), f"no scenario named {base_ref!r}"))
    grid = doc.data.get("grid")
    axes: list[tuple[str, tuple[Any, ...]]] = []
    if not isinstance(grid, dict) or not grid:
        issues.append(doc.issue(("grid",), "expected a mapping of dotted paths to value lists"))
    else:
        for key, vals in grid.items():
            if not isinstance(vals, list) or not vals:
                issues.append(doc.issue(("grid", key), "expected a non-empty list of values"))
                continue
            odd = [(j, plain_value_issue(v)) for j, v in enumerate(vals)]
            odd = [(j, m) for j, m in odd if m]
            for j, m in odd:
                issues.append(doc.issue(("grid", key, j), str(m)))
            if odd:
                continue
            if len({json.dumps(v, sort_keys=True) for v in vals}) != len(vals):
                issues.append(doc.issue(("grid", key), "values repeat"))
            axes.append((str(key), tuple(vals)))
    if base is not None:
        try:
            load_scenario(base)         # a bad base is its own error, at its own position,
        except ConfigError as e:        # not one false error per grid value
            issues.extend(e.issues)
    if issues:
        raise ConfigError(issues)
    assert base is not None
    spec = SweepSpec(name, base, tuple(axes), str(path))
    if spec.size > MAX_POINTS:
        raise ConfigError(doc.issue(("grid",), f"{spec.size} points exceed the limit of "
                                               f"{MAX_POINTS}"))
    _check_values(spec, doc)
    return spec


def _check_values(spec: SweepSpec, doc: Document) -> None:
    """Load the base once per grid value so that bad values fail before anything runs."""
    from lpusim.runner import load_scenario
    issues: list[Issue] = []
    for key, vals in spec.axes:
        for j, v in enumerate(vals):
            try:
                load_scenario(spec.base, {key: v})
            except ConfigError as e:
                for i in e.issues:
                    msg = i.message.removesuffix(" (overridden)")
                    issues.append(doc.issue(("grid", key, j), f"{v!r}: {msg}"))
    if issues:
        raise ConfigError(issues)


def _hardware_key(ov: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in ov.items() if not k.startswith("speculation.")},
                      sort_keys=True)


def _worker_init() -> None:
    """Entry point of a sweep worker process (ours, so process-wide settings are ours to
    make): pause the cyclic garbage collector, as the CLI does (see lpusim.collector), and
    compute alone (the sweep already spreads its points over the CPUs; lpusim.parallel)."""
    gc.disable()
    parallel.set_jobs(1)


def run_batch(base: str, batch: list[tuple[int, dict[str, Any]]],
              cache_dir: str | None = None) -> list[dict[str, Any]]:
    """Run sweep points in this process (a worker); infeasible points become error lines.
    `cache_dir` is the on-disk step cache to use (passed explicitly: a worker on another
    machine or a spawned process does not share the caller's settings)."""
    from lpusim.runner import load_scenario, run_scenario
    caches.set_disk_dir(cache_dir)
    out = []
    for index, ov in batch:
        line: dict[str, Any] = {"point": index, "id": point_id(ov), "overrides": ov}
        try:
            line.update(run_scenario(load_scenario(base, ov)).to_dict())
        except (ConfigError, CapacityError) as e:
            line["error"] = str(e).splitlines()[0]
        except LpusimError as e:
            line["error"] = f"{type(e).__name__}: {e}"
        out.append(line)
    return out


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The checked rows of a results file (see `lpusim.results`); [] if there is none."""
    from lpusim.results import read_results as read
    return read(path)


def _append(fd: int, row: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(row, sort_keys=True) + "\n").encode())


def stale_rows(spec: SweepSpec, output: str | os.PathLike[str]) -> int:
    """How many rows of `output` were computed from another basis (see the module docstring)
    and will be recomputed by `run_sweep`."""
    basis = sweep_basis(spec)
    return sum(1 for r in read_results(output) if r.get("basis") != basis)


def run_sweep(spec: SweepSpec, output: str | os.PathLike[str], *, workers: int = 1,
              executor: Executor | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every point not yet in `output` with the current basis; return all rows (each
    carrying its `basis`) in grid order."""
    basis = sweep_basis(spec)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {r["id"] for r in read_results(out)}   # refuses a file of another kind, unchanged
    foreign = done - {point_id(ov) for _i, ov in spec.points()}
    if foreign:             # the final rewrite keeps this sweep's points only: refuse first
        raise ConfigError(Issue(str(out), None, None, "",
                                f"holds {len(foreign)} points of another sweep (or another "
                                f"grid); give a new results file, or delete this one"))
    if out.exists() and out.stat().st_size:
        raw = out.read_bytes()
        if not raw.endswith(b"\n"):          # drop a torn last line before appending
            keep = raw[: raw.rfind(b"\n") + 1]
            write_atomic(out, keep)
    done = {r["id"] for r in read_results(out) if r.get("basis") == basis}
    todo = [(i, ov) for i, ov in spec.points() if point_id(ov) not in done]
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, ov in todo:
        groups.setdefault(_hardware_key(ov), []).append((i, ov))
    # one batch per hardware point, so one worker compiles its steps once; split the groups
    # only when there are fewer of them than workers
    split = max(1, -(-max(1, workers) // max(1, len(groups))))
    batches = []
    for g in groups.values():
        size = -(-len(g) // split)
        batches += [g[k:k + size] for k in range(0, len(g), size)]
    total, finished = spec.size, spec.size - len(todo)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    own = None
    try:
        if batches:
            if executor is None and workers > 1:
                own = executor = ProcessPoolExecutor(max_workers=workers,
                                                     initializer=_worker_init)
            disk = caches.disk_dir()
            cache_dir = str(disk) if disk is not None else None
            if executor is None:
                for b in batches:
                    for row in run_batch(str(spec.base), b, cache_dir):
                        _append(fd, {**row, "basis": basis})
                        finished += 1
                    if progress:
                        progress(finished, total)
            else:
                futs = [executor.submit(run_batch, str(spec.base), b, cache_dir)
                        for b in batches]
                for f in as_completed(futs):
                    for row in f.result():
                        _append(fd, {**row, "basis": basis})
                        finished += 1
                    if progress:
                        progress(finished, total)
    finally:
        os.close(fd)
        if own is not None:
            own.shutdown(cancel_futures=True)
    rows = {r["id"]: r for r in read_results(out) if r.get("basis") == basis}
    ordered = [rows[point_id(ov)] for _i, ov in spec.points() if point_id(ov) in rows]
    for k, r in enumerate(ordered):
        r["point"] = k
    write_atomic(out, "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))
    return ordered


def dask_executor(address: str) -> Executor:
    """An Executor on a Dask distributed cluster (`pip install lpusim[dask]`)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(Issue("command line", None, None, "--scheduler",
                                "Dask is not installed; pip install 'lpusim[dask]'")) from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise ConfigError(Issue("command line", None, None, "--scheduler",
                                f"cannot reach a Dask scheduler at {address!r}: {e}")) from None
    return client.get_executor()
