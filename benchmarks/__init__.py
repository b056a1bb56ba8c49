"""lpusim benchmark suite: how fast the simulator is, measured, with targets (issue 9).

Run `python -m benchmarks` from the repository root (`--quick` for a subset under a minute,
`--json FILE` to save the results). Every case runs in a fresh Python process, one after the
other, and reports its wall time (time.perf_counter) and the peak resident memory of its
largest process (resource.getrusage). The cases:

- `lpusim run` end to end from a new process (interpreter start and imports included);
- one decode step of Llama 3.1 8B / 70B / 405B on their systems, compiled and simulated at fast
  and full fidelity, and the same with speculative decoding (gamma auto);
- fast fidelity once a step of the same shape has been compiled (the in-memory step cache);
- a 1,000-point sweep mixing hardware axes with speculation axes on two workers.

The report adds the full-fidelity simulator's rate in simulated events per second and how cost
scales from 8B to 70B to 405B (per layer x chip and per simulated item). See
docs/performance.md for the numbers measured on the reference two-core machine.
"""
