"""Loading specs from YAML files, resolving references between them.

A scenario names its model and system (and a system its chip) either by a path or by a short
name. Lookup order:

1. an explicit path: a reference with a directory part or a `.yaml`/`.yml` suffix is a path,
   relative to the referring file (or, given on the command line or to the API, to the working
   directory), and nothing else;
2. a short name, looked up in `$LPUSIM_DATA/chip_configs/` and `$LPUSIM_DATA/workloads/` when
   that variable is set (read at lookup, see `data_dirs`);
3. the shipped specs: `lpusim/chip_configs/` and `lpusim/workloads/` inside the installed
   package (read with importlib.resources; the build maps the repository's top-level
   `chip_configs/` and `workloads/` there, see setup.py), or those top-level directories
   themselves when lpusim runs from a source checkout.

The working directory never shadows a shipped name: a bare name that is also a file in the
working directory (or beside the referring file) is read as that file only when no shipped spec
has the name. Overrides (dotted paths, as used by sweeps) are applied to the raw documents before
validation, so an overridden value is checked exactly like one written in the file.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from lpusim.caches import BoundedCache, memoise
from lpusim.config.gpu_specs import GpuSpec
from lpusim.config.schema import build
from lpusim.config.specs import ChipSpec, GpuSystemSpec, ModelSpec, ScenarioSpec, SystemSpec
from lpusim.config.yamlio import Document, load_document
from lpusim.errors import ConfigError, Issue, short_repr

SPEC_VERSION = 1
KINDS: dict[str, type] = {"chip": ChipSpec, "system": SystemSpec, "model": ModelSpec,
                          "scenario": ScenarioSpec, "gpu": GpuSpec, "gpu_system": GpuSystemSpec}
_KIND_OF = {v: k for k, v in KINDS.items()}
# where a spec of one kind is asked for, these kinds are accepted: a scenario's system (and
# `--system`) may be an LPU system or a GPU server
ACCEPTS: dict[str, tuple[str, ...]] = {"system": ("system", "gpu_system")}
SEARCH_DIRS = {
    "chip": ("chip_configs",),
    "system": ("chip_configs",),
    "model": ("workloads",),
    "scenario": ("workloads/scenarios", "workloads"),
    "gpu": ("chip_configs",),
    "gpu_system": ("chip_configs",),
}
MAX_REF_DEPTH = 8
DATA_ENV = "LPUSIM_DATA"
_PATH_SUFFIXES = (".yaml", ".yml")


@memoise("packaged_data", maxsize=1)
def packaged_data() -> Path:
    """The directory holding the shipped `chip_configs/` and `workloads/`: inside the installed
    package (a wheel), or the repository root when lpusim runs from a checkout (editable
    install or PYTHONPATH), where those directories live at the top level."""
    pkg = resources.files("lpusim")
    if pkg.joinpath("chip_configs").is_dir():
        return Path(str(pkg))
    return Path(str(pkg)).parent


def data_dirs() -> list[Path]:
    """Where short names are looked up, first match wins: $LPUSIM_DATA, then the shipped data.
    The working directory is not one of them."""
    dirs = []
    extra = os.environ.get(DATA_ENV)
    if extra:
        dirs.append(Path(extra))
    dirs.append(packaged_data())
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def shipped(kind: str) -> dict[str, Path]:
    """Short names of the shipped configs of one kind (by the `kind:` line of each file).

    Listed once per state of the directories searched (their modification times change when
    a file is added, removed or renamed, as editors do on save); a file whose `kind:` line is
    edited in place is caught when it is found (`find` re-reads the kind of its hit)."""
    dirs = _search_dirs(kind)
    key = (kind, _dir_state(dirs))
    hit = _SHIPPED.get(key)
    if hit is None:
        hit = _list_shipped(kind, dirs)
        _SHIPPED.put(key, hit)
    return dict(hit)


def _search_dirs(kind: str | None = None) -> list[Path]:
    """The directories short names of `kind` (of every kind: None) are looked up in."""
    bases = tuple(data_dirs())
    hit = _SEARCH.get((kind, bases))
    if hit is None:         # a load asks several times; paths are costly to build
        subs = (SEARCH_DIRS[kind] if kind
                else sorted({s for v in SEARCH_DIRS.values() for s in v}))
        hit = tuple(base / sub for base in bases for sub in subs)
        _SEARCH.put((kind, bases), hit)
    return list(hit)


_SEARCH: BoundedCache[tuple[Path, ...]] = BoundedCache("search_dirs", maxsize=64)


def _dir_state(dirs: list[Path]) -> tuple[tuple[str, int], ...]:
    """Each directory with its modification time (-1: missing): adding, removing or renaming
    a file inside changes it."""
    out = []
    for d in dirs:
        name = str(d)
        try:
            out.append((name, os.stat(name).st_mtime_ns))
        except OSError:
            out.append((name, -1))
    return tuple(out)


def _list_shipped(kind: str, dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.yaml")):
            if p.stem not in found and _peek_kind(p) in ACCEPTS.get(kind, (kind,)):
                found[p.stem] = p
    return found


_SHIPPED: BoundedCache[dict[str, Path]] = BoundedCache("shipped_names", maxsize=64)
_KINDS: BoundedCache[tuple[str | None]] = BoundedCache("file_kinds", maxsize=4096)


def _peek_kind(p: Path) -> str | None:
    """The `kind:` of a YAML file, read once per content version (path, mtime, size): every
    short-name lookup lists a directory's kinds, and a sweep makes thousands of lookups."""
    try:
        st = p.stat()
    except OSError:
        return None
    key = (str(p), st.st_mtime_ns, st.st_size)
    hit = _KINDS.get(key)
    if hit is None:
        hit = (_read_kind(p),)
        _KINDS.put(key, hit)
    return hit[0]


def _read_kind(p: Path) -> str | None:
    try:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.startswith("kind:"):
                    return line.split(":", 1)[1].split("#")[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return None


def is_path_like(ref: str) -> bool:
    """Whether a reference is written as a path (a directory part or a YAML suffix) rather
    than a short name."""
    return ("/" in ref or "\\" in ref or os.sep in ref
            or ref.lower().endswith(_PATH_SUFFIXES))


def find(kind: str, ref: str, relative_to: Path | None = None) -> Path | None:
    """Resolve a reference (see the module docstring for the order). `relative_to` is the
    directory of the referring file; without it (command line, API) paths are relative to the
    working directory."""
    as_file = (relative_to / ref) if relative_to is not None else Path(ref)
    if is_path_like(ref):
        return as_file if as_file.is_file() else None
    hit = shipped(kind).get(ref)
    if hit is not None and _peek_kind(hit) not in ACCEPTS.get(kind, (kind,)):
        hit = _list_shipped(kind, _search_dirs(kind)).get(ref)
    if hit is not None:
        return hit
    return as_file if as_file.is_file() else None


def _header(doc: Document, expect: str | None) -> str:
    issues = []
    kind = doc.data.get("kind")
    if kind is None:
        issues.append(doc.issue((), f"missing required key 'kind' (one of {', '.join(KINDS)})"))
        issues[-1] = Issue(issues[-1].file, issues[-1].line, issues[-1].column, "kind",
                           issues[-1].message)
    elif not isinstance(kind, str) or kind not in KINDS:
        close = difflib.get_close_matches(str(kind)[:100], list(KINDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        issues.append(doc.issue(("kind",), f"unknown kind {short_repr(kind)}{hint}"))
    elif expect is not None and kind not in ACCEPTS.get(expect, (expect,)):
        issues.append(doc.issue(("kind",), f"expected a {expect} spec, this file is a {kind}"))
    version = doc.data.get("version")
    if version is None:
        issues.append(Issue(doc.file, None, None, "version",
                            f"missing required key 'version' (current: {SPEC_VERSION})"))
    elif version != SPEC_VERSION or isinstance(version, bool):
        issues.append(doc.issue(("version",), f"unsupported version {short_repr(version)} "
                                              f"(this lpusim reads version {SPEC_VERSION})"))
    if issues:
        raise ConfigError(issues)
    return str(kind)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], file: str) -> None:
    """Set dotted keys in place. A missing intermediate section is created (validation then
    rejects it if the spec has no such section); a value in the way is an error."""
    for dotted_key, value in overrides.items():
        parts = dotted_key.split(".")
        cur: Any = data
        for i, part in enumerate(parts[:-1]):
            if part not in cur or cur[part] is None:
                cur[part] = {}
            if not isinstance(cur[part], dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(Issue(file, None, None, dotted_key,
                                        f"cannot override: '{where}' is not a section here"))
            cur = cur[part]
        cur[parts[-1]] = value


_DOCS: BoundedCache[Document] = BoundedCache("documents", maxsize=512)


def _cached_document(path: Path) -> Document:
    """Parse a file once per content version (path, mtime, size); sweeps load the same
    scenario thousands of times. Callers get their own Document: overrides replace its data
    with a deep copy and add to its own `overridden` set, never touching the cached one."""
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_document(path)          # let the reader report the problem
    doc = _DOCS.get(key)
    if doc is None:
        doc = load_document(path)
        _DOCS.put(key, doc)
    return dataclasses.replace(doc, file=str(path), overridden=set(doc.overridden))


SpecCheck = Callable[[Any, Document], list[Issue]]
"""A check made after a spec is built, by a layer above config (e.g. that a scenario's
acceptance trace exists, lpusim.speculative.checks): given the spec and its Document, it
returns the problems, placed with `Document.issue` (file:line:column of the field)."""


def _file_state(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


# specs built from referenced files, by the overrides that reach them, with the (path, state)
# of every file read for them: a sweep loads the same model, system and chip for every point.
# A hit is used only if none of those files changed and the directories names are looked up in
# did not either.
_BUILT: BoundedCache[tuple[Any, tuple[tuple[str, Any], ...]]] = BoundedCache("built_specs",
                                                                            256)


class _Loader:
    def __init__(self, overrides: dict[str, Any] | None, checks: Sequence[SpecCheck] = ()):
        self.overrides = dict(overrides or {})
        self.checks = tuple(checks)
        self.depth = 0
        self._read: list[tuple[str, Any]] = []      # (path, state) of every file read
        self._dirs: tuple[tuple[str, int], ...] | None = None

    def load_doc(self, path: Path, expect: str | None, prefix: str) -> Any:
        mine = sorted((k[len(prefix):], v) for k, v in self.overrides.items()
                      if k.startswith(prefix))
        if mine and not prefix:
            # the loaded document itself (a sweep point): its overrides are new each time
            return self.build_doc(self._document(path), expect, prefix)
        if self._dirs is None:
            self._dirs = _dir_state(_search_dirs())
        # a referenced spec is kept with the overrides that reach it (a sweep's points share
        # a few values of each hardware override)
        key = (str(path), expect, self.checks, self._dirs, repr(mine))
        hit = _BUILT.get(key)
        if hit is not None and all(_file_state(p) == st for p, st in hit[1]):
            self._read.extend(hit[1])       # an enclosing entry depends on them too
            return hit[0]
        mark = len(self._read)
        spec = self.build_doc(self._document(path), expect, prefix)
        _BUILT.put(key, (spec, tuple(self._read[mark:])))
        return spec

    def _document(self, path: Path) -> Document:
        self._read.append((str(path), _file_state(path)))
        return _cached_document(path)

    def build_doc(self, doc: Document, expect: str | None, prefix: str) -> Any:
        path = Path(doc.file)
        kind = _header(doc, expect)
        mine = {k[len(prefix):]: v for k, v in self.overrides.items() if k.startswith(prefix)}
        # references are resolved with their own prefix; keep only this document's keys
        if mine:
            doc.data = copy.deepcopy(doc.data)
            own = {}
            refs = {f.name for f in dataclasses.fields(KINDS[kind])
                    if f.metadata.get("kind") == "nested"}
            for k, v in mine.items():
                head = k.split(".")[0]
                if head in ("kind", "version"):     # the file's header, not a setting
                    raise ConfigError(Issue(doc.file, None, None, prefix + k,
                                            f"cannot override '{head}': it says what the file "
                                            f"is, it is not a setting"))
                ref_is_str = isinstance(doc.data.get(head), str) and "." in k
                if ref_is_str and head not in refs:     # e.g. name.x: would vanish silently
                    raise ConfigError(Issue(doc.file, None, None, k,
                                            f"cannot override: '{head}' is not a section"))
                if not ref_is_str:
                    own[k] = v
            apply_overrides(doc.data, own, doc.file)
            doc.overridden |= {tuple(k.split(".")) for k in own}
        issues: list[Issue] = []

        def resolver(cls: type, ref: str, d: Document, p: tuple, iss: list[Issue]) -> Any:
            return self.resolve(cls, ref, d, p, iss, prefix)

        spec = build(KINDS[kind], doc, (), doc.data, issues, resolver,
                     skip=("kind", "version"))
        if issues or spec is None:
            raise ConfigError(issues)
        if kind == "scenario":
            spec = dataclasses.replace(spec, file=str(path))
        for check in self.checks:
            issues.extend(check(spec, doc))
        if issues:
            raise ConfigError(issues)
        return spec

    def resolve(self, cls: type, ref: str, doc: Document, path: tuple, issues: list[Issue],
                prefix: str) -> Any:
        kind = _KIND_OF.get(cls)
        if kind is None:
            issues.append(doc.issue(path, "expected a mapping, got a string"))
            return None
        target = find(kind, ref, Path(doc.file).parent)
        if target is None:
            names = sorted(shipped(kind))
            close = difflib.get_close_matches(ref, names, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            issues.append(doc.issue(path, f"no {kind} named {ref!r}{hint} "
                                          f"(shipped: {', '.join(names) or 'none'})"))
            return None
        if self.depth >= MAX_REF_DEPTH:
            issues.append(doc.issue(path, "references nested too deeply (a cycle?)"))
            return None
        self.depth += 1
        try:
            sub_prefix = prefix + ".".join(str(p) for p in path) + "."
            return self.load_doc(target, kind, sub_prefix)
        except ConfigError as e:
            issues.extend(e.issues)
            return None
        finally:
            self.depth -= 1


def load(path: str | os.PathLike[str], expect: str | None = None,
         overrides: dict[str, Any] | None = None, checks: Sequence[SpecCheck] = ()) -> Any:
    """Load any spec file; `expect` names the kind required, `overrides` sets dotted keys,
    `checks` run on every spec built (the file's and those it references)."""
    return _Loader(overrides, checks).load_doc(Path(path), expect, "")


def load_chip(path: str | os.PathLike[str]) -> ChipSpec:
    return load(path, "chip")


def load_system(path: str | os.PathLike[str]) -> SystemSpec:
    return load(path, "system")


def load_model(path: str | os.PathLike[str]) -> ModelSpec:
    return load(path, "model")


def load_scenario(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None,
                  checks: Sequence[SpecCheck] = ()) -> ScenarioSpec:
    return load(path, "scenario", overrides, checks)


def resolve_ref(kind: str, ref: str) -> Path:
    """A CLI-given name or path of a spec of `kind`, or a ConfigError listing the choices."""
    p = find(kind, ref)
    if p is None:
        names = sorted(shipped(kind))
        close = difflib.get_close_matches(ref, names, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(Issue(ref, None, None, "",
                                f"no {kind} file or name {ref!r}{hint} "
                                f"(shipped: {', '.join(names) or 'none'})"))
    return p
