"""Reading YAML with positions, strictly.

PyYAML's `safe_load` forgets where values were and silently keeps the last of two duplicate keys.
Here a document is composed into nodes (which carry line and column), checked, and converted to
plain Python values together with a map from each dotted path to its position. Duplicate keys,
aliases (the billion-laughs bomb), deep nesting and oversized files are errors.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lpusim.errors import ConfigError, Issue

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32

Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """('links', 'hop_latency') -> 'links.hop_latency'; list indices as [i]."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


@dataclass
class Document:
    """A YAML mapping with the position of every key and value."""

    file: str
    data: dict[str, Any]
    value_pos: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_pos: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    overridden: set[Path_] = field(default_factory=set)

    def issue(self, path: Path_, message: str, *, at_key: bool = False) -> Issue:
        """An Issue at the position of `path` (or of its nearest ancestor that has one).

        A value set by an override (`--set`, a CLI flag, a sweep axis) has no place in the
        file: the issue names the file and field only, and says the value was overridden.
        """
        p = tuple(path)
        if self._overridden(p):
            return Issue(self.file, None, None, dotted(path), f"{message} (overridden)")
        table = self.key_pos if at_key else self.value_pos
        while p and p not in table and p not in self.value_pos:
            p = p[:-1]
        pos = table.get(p) or self.value_pos.get(p)
        if not p or pos is None:
            # a top-level key absent from the file (a default or a missing key): no place
            return Issue(self.file, None, None, dotted(path), message)
        return Issue(self.file, pos[0], pos[1], dotted(path), message)


    def _overridden(self, p: Path_) -> bool:
        """Was the value at `p` set (or its key created) by an override?"""
        if any(p[:i] in self.overridden for i in range(1, len(p) + 1)):
            return True
        created = p not in self.key_pos and p not in self.value_pos
        return created and any(o[:len(p)] == p for o in self.overridden)


def _issue(file: str, mark: Any, message: str, field_: str = "") -> Issue:
    if mark is None:
        return Issue(file, None, None, field_, message)
    return Issue(file, mark.line + 1, mark.column + 1, field_, message)


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file, turning every OS problem into a one-line ConfigError."""
    p = Path(path)
    name = str(path)
    if p.is_dir():
        raise ConfigError(Issue(name, None, None, "", "is a directory, not a file"))
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(Issue(name, None, None, "", "no such file")) from None
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise ConfigError(Issue(name, None, None, "", f"cannot read: {why}")) from None
    if not stat.S_ISREG(st.st_mode):
        # a FIFO would block forever, /dev/zero would never end
        raise ConfigError(Issue(name, None, None, "", "not a regular file"))
    if st.st_size > MAX_FILE_BYTES:
        raise ConfigError(Issue(name, None, None, "",
                                f"file is {st.st_size} bytes; the limit is {MAX_FILE_BYTES}"))
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(Issue(name, None, None, "", f"cannot read: {e.strerror}")) from None
    if len(raw) > MAX_FILE_BYTES:    # grew since stat
        raise ConfigError(Issue(name, None, None, "",
                                f"file is over {MAX_FILE_BYTES} bytes, the limit"))
    if b"\x00" in raw:
        raise ConfigError(Issue(name, None, None, "", "binary data, not a YAML text file"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(Issue(name, None, None, "",
                                f"not UTF-8 text (byte {e.start})")) from None


def load_document(path: str | os.PathLike[str], text: str | None = None) -> Document:
    """Load one YAML mapping from `path` (or from `text`, naming it `path`)."""
    name = str(path)
    if text is None:
        text = read_text(path)
    if not text.strip():
        raise ConfigError(Issue(name, None, None, "", "empty file; expected a YAML mapping"))
    _check_size(name, text)
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        if problem.startswith("but ") and e.context:
            problem = f"{e.context.strip()}, {problem}"
        raise ConfigError(_issue(name, mark, f"YAML syntax error: {problem}")) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        what = (f"character #x{e.character:04x}" if isinstance(e.character, int)
                else f"byte {e.character!r}")
        raise ConfigError(Issue(name, line, col, "", f"YAML syntax error: unacceptable {what} "
                                                     f"({e.reason})")) from None
    except yaml.YAMLError as e:
        raise ConfigError(Issue(name, None, None, "", f"YAML error: {e}")) from None
    except RecursionError:
        raise ConfigError(Issue(name, None, None, "", "nesting too deep")) from None
    if node is None:
        raise ConfigError(Issue(name, None, None, "", "empty document; expected a mapping"))
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(_issue(name, node.start_mark,
                                 "expected a YAML mapping at the top level"))
    doc = Document(name, {})
    issues: list[Issue] = []
    seen: set[int] = set()
    doc.data = _convert(node, (), doc, issues, seen, 0)
    if issues:
        raise ConfigError(issues)
    return doc


def _convert(node: Any, path: Path_, doc: Document, issues: list[Issue], seen: set[int],
             depth: int) -> Any:
    if depth > MAX_DEPTH:
        issues.append(_issue(doc.file, node.start_mark,
                             f"nesting deeper than {MAX_DEPTH} levels", dotted(path)))
        return None
    if id(node) in seen:
        line, col = doc.key_pos.get(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        issues.append(Issue(doc.file, line, col, dotted(path),
                            "YAML aliases/anchors are not supported"))
        return None
    seen.add(id(node))
    doc.value_pos[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                issues.append(_issue(doc.file, k.start_mark, "keys must be plain names",
                                     dotted(path)))
                continue
            key = k.value
            if k.tag == "tag:yaml.org,2002:merge":
                issues.append(_issue(doc.file, k.start_mark,
                                     "YAML merge keys (<<) are not supported", dotted(path)))
                continue
            sub = (*path, key)
            if key in out:
                first = doc.key_pos[sub]
                issues.append(_issue(doc.file, k.start_mark,
                                     f"duplicate key {key!r} (first defined at line {first[0]})",
                                     dotted(sub)))
                continue
            doc.key_pos[sub] = (k.start_mark.line + 1, k.start_mark.column + 1)
            out[key] = _convert(v, sub, doc, issues, seen, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, (*path, i), doc, issues, seen, depth + 1)
                for i, v in enumerate(node.value)]
    try:
        return _SCALARS.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        issues.append(_issue(doc.file, node.start_mark, f"bad value: {e}", dotted(path)))
        return None
    except ValueError as e:
        digits = sum(ch.isdigit() for ch in str(node.value))
        message = (f"number with {digits} digits is too large" if "digits" in str(e)
                   else f"bad value: {e}")
        issues.append(_issue(doc.file, node.start_mark, message, dotted(path)))
        return None
    finally:
        # the loader memoises every node it constructed, which would keep every document's
        # nodes alive for ever (an unbounded cache); a scalar needs no memo
        _SCALARS.constructed_objects.clear()
        _SCALARS.recursive_objects.clear()


_SCALARS = yaml.SafeLoader("")
# libyaml parses ~10x faster than pure Python; its error messages differ, so a document it
# rejects is parsed again by the pure-Python loader, whose messages (and marks) are reported
_FAST = getattr(yaml, "CSafeLoader", None)
MAX_NODES = 20_000      # a spec has a few hundred at most; bounds time on a hostile 4 MiB file
STOP_DEPTH = 4 * MAX_DEPTH      # a walk that reaches it has found a node too deep, and stops


def _compose(text: str) -> Any:
    if _FAST is not None:
        try:
            return yaml.compose(text, Loader=_FAST)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _check_size(name: str, text: str) -> None:
    """Walk the YAML events once, before building anything: stop at MAX_NODES, and report
    nodes nested deeper than MAX_DEPTH with their position and path. The composer recurses
    once per level, so deep nesting must be caught here, not by it. Some libyaml builds
    refuse deep nesting themselves (PyYAML 6.0.4's, past 1,000 levels, before any event);
    the pure-Python parser (iterative) then walks it, but only down to STOP_DEPTH: its time
    grows with the square of the depth (7 s at 5,000 levels), and what is already too deep
    there is reported."""
    if _FAST is not None:
        try:
            _walk(name, text, _FAST)
            return
        except yaml.YAMLError:
            pass
    try:
        _walk(name, text, yaml.SafeLoader)
    except yaml.YAMLError:
        return          # a syntax error: reported by the composer, with its position


def _walk(name: str, text: str, loader: Any) -> None:
    n = 0
    stack: list[list[Any]] = []      # per open container: [kind, key or index, expecting key]
    issues: list[Issue] = []
    skip = 0

    def after_value() -> None:
        if stack:
            if stack[-1][0] == "map":
                stack[-1][2] = True
            else:
                stack[-1][1] += 1

    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    for ev in yaml.parse(text, Loader=loader):
        n += 1
        if n > MAX_NODES:
            raise ConfigError(Issue(name, None, None, "",
                                    f"more than {MAX_NODES} YAML nodes; not a spec"))
        if skip:
            skip += isinstance(ev, starts) - isinstance(ev, ends)
            if not skip:
                after_value()
            elif len(stack) + skip > STOP_DEPTH:
                break           # the issues found so far are raised below
            continue
        if isinstance(ev, ends):
            stack.pop()
            after_value()
            continue
        if not isinstance(ev, (*starts, yaml.ScalarEvent, yaml.AliasEvent)):
            continue
        if stack and stack[-1][0] == "map" and stack[-1][2]:
            if not isinstance(ev, yaml.ScalarEvent):
                return          # a complex key: the composer reports it
            stack[-1][1], stack[-1][2] = ev.value, False
            continue
        if len(stack) > MAX_DEPTH:
            path = tuple(e[1] for e in stack)
            issues.append(_issue(name, ev.start_mark,
                                 f"nesting deeper than {MAX_DEPTH} levels", dotted(path)))
            if isinstance(ev, starts):
                skip = 1
            else:
                after_value()
            continue
        if isinstance(ev, yaml.MappingStartEvent):
            stack.append(["map", None, True])
        elif isinstance(ev, yaml.SequenceStartEvent):
            stack.append(["seq", 0, None])
        else:
            after_value()
    if issues:
        raise ConfigError(issues)


def parse_scalar(text: str) -> Any:
    """A command-line value read as a YAML scalar (`2` int, `1.5` float, `30Gbps` string)."""
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, str | int | float | bool) else text
