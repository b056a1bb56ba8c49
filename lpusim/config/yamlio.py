"""Reading YAML with positions, strictly.

PyYAML's `safe_load` forgets where values were and silently keeps the last of two duplicate keys.
Here a document is composed into nodes (which carry line and column), checked, and converted to
plain Python values together with a map from each dotted path to its position. Duplicate keys,
aliases (the billion-laughs bomb), deep nesting and oversized files are errors.
"""

from __future__ import annotations

import os
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

    def issue(self, path: Path_, message: str, *, at_key: bool = False) -> Issue:
        """An Issue at the position of `path` (or of its nearest ancestor that has one)."""
        table = self.key_pos if at_key else self.value_pos
        p = tuple(path)
        while p and p not in table and p not in self.value_pos:
            p = p[:-1]
        pos = table.get(p) or self.value_pos.get(p) or (1, 1)
        return Issue(self.file, pos[0], pos[1], dotted(path), message)


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
        size = p.stat().st_size
    except FileNotFoundError:
        raise ConfigError(Issue(name, None, None, "", "no such file")) from None
    except OSError as e:
        raise ConfigError(Issue(name, None, None, "", f"cannot read: {e.strerror}")) from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(Issue(name, None, None, "",
                                f"file is {size} bytes; the limit is {MAX_FILE_BYTES}"))
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(Issue(name, None, None, "", f"cannot read: {e.strerror}")) from None
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
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError(_issue(name, mark, f"YAML syntax error: {problem}")) from None
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
        issues.append(_issue(doc.file, node.start_mark, f"bad value: {e}", dotted(path)))
        return None


_SCALARS = yaml.SafeLoader("")


def parse_scalar(text: str) -> Any:
    """A command-line value read as a YAML scalar (`2` int, `1.5` float, `30Gbps` string)."""
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, str | int | float | bool) else text
