"""Entry point: `python -m benchmarks [--quick] [--json FILE] [--case NAME ...]`."""

from benchmarks.runner import main

raise SystemExit(main())
