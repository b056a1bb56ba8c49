import compileall
import gc
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A test worker holds a few 10^5 long-lived objects (compiled steps, schedules and link graphs
# in lpusim's caches), and with the default thresholds the cyclic collector rescans all of
# them in a full collection 30-50 times per worker: about 5 s of a worker's 50. Considering a
# full collection every 100 young collections instead of every 10 halves that. lpusim's own
# entry points pause the collector while they compute either way; the tests of how lpusim
# leaves the collector set its state themselves.
gc.set_threshold(700, 10, 100)

# The suite spreads its tests over the CPUs (pytest-xdist): a CLI command run by a test (in
# this process or a new one) computes alone, unless the test sets LPUSIM_JOBS itself
# (tests/test_parallel.py runs the forked searches)
os.environ.setdefault("LPUSIM_JOBS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile this checkout's lpusim once, as pip does for a package it installs: the
    suite starts lpusim in a hundred or so processes (the CLI, sweep workers, notebook
    kernels), and where the environment forbids writing bytecode on import
    (PYTHONDONTWRITEBYTECODE, as on this project's machines) each would compile every module
    again (about 0.05 s a process)."""
    compileall.compile_dir(ROOT / "lpusim", quiet=1)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
