"""The cyclic garbage collector, paused while lpusim computes.

A compile allocates 10^5 to 10^6 small objects that all stay alive until it ends, and the
collector would rescan them again and again (a 70B serving study takes 40% longer with it
running). So the library's compute entry points (a step, `api.run`, `api.serve`,
`api.compare`) pause it and leave it as they found it; the CLI and the sweep's worker
processes pause it for a whole command, and the `lpusim` command (`cli.entry`) leaves it
paused for the end of its process. It assumes what a compile makes holds no reference
cycles per item (tests/test_state.py checks it), so nothing piles up meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block (or the decorated call), then as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
