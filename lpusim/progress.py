"""Progress of long commands on stderr, through tqdm, only when the CLI asks for it.

Library code marks its long loops with `bar(total, desc)`; nothing is shown unless the CLI
called `enable()` for a stderr that is a terminal, so the API, notebooks, pipes, logs and tests
stay silent. tqdm is the one module that draws anything (imported here only).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

_ENABLED = False


def enable(on: bool | None = None) -> None:
    """Show progress from now on: when `on`, or (None) when stderr is a terminal."""
    global _ENABLED
    _ENABLED = sys.stderr.isatty() if on is None else on


def enabled() -> bool:
    return _ENABLED


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass


@contextlib.contextmanager
def bar(total: int | None, desc: str, unit: str = "it") -> Iterator[Any]:
    """A progress bar (an object with `update(n)`), or a silent stand-in."""
    if not _ENABLED:
        yield _Silent()
        return
    from tqdm import tqdm
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
              dynamic_ncols=True) as t:
        yield t


def iterate(items: Any, desc: str, unit: str = "it", total: int | None = None) -> Iterator[Any]:
    """`items`, with a progress bar while they are consumed (silent unless enabled)."""
    if not _ENABLED:
        yield from items
        return
    from tqdm import tqdm
    n = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    with tqdm(items, total=n, desc=desc, unit=unit, file=sys.stderr, leave=False,
              dynamic_ncols=True) as t:
        yield from t
