"""Determinism: the same scenario gives byte-identical `lpusim run --format json` output and the
same program hash in separate processes, whatever PYTHONHASHSEED is; randomness (the Monte
Carlo of speculation) comes only from the scenario's explicit `seed`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lpusim import api, caches, cli

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "default": [],                                                     # 70B on 576 chips
    "specdec": ["tests/data/small-specdec.yaml"],                      # with Monte Carlo
    "async": ["tests/data/small-specdec.yaml", "--strategy", "async"],  # renewal Monte Carlo
    "heads": ["--model", "llama-3.2-1b", "--system", "groqnode-8", "--heads", "3",
              "--acceptance", "eagle1-llama2-70b-mtbench", "--gamma", "3"],
}
HASH_SEEDS = ["0", "1", "4242"]


def _spawn(argv: list[str], hash_seed: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    env.pop("LPUSIM_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "lpusim.cli", "run", *argv, "--format",
                             "json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def outputs() -> dict[tuple[str, str], bytes]:
    """stdout of every scenario under every hash seed, each in its own process."""
    procs = {(name, seed): _spawn(argv, seed) for name, argv in SCENARIOS.items()
             for seed in HASH_SEEDS}
    out = {}
    for key, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr.decode()
        out[key] = stdout
    return out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_identical_bytes_across_processes_and_hash_seeds(outputs, name):
    first = outputs[(name, HASH_SEEDS[0])]
    assert first.strip().startswith(b"{")
    for seed in HASH_SEEDS[1:]:
        assert outputs[(name, seed)] == first, f"{name}: output differs with PYTHONHASHSEED={seed}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_program_hash_matches_in_process(outputs, name):
    """The hash printed by another process is the one this process computes from scratch."""
    data = json.loads(outputs[(name, HASH_SEEDS[0])])
    assert len(data["program_hash"]) == 64
    # the scenario exactly as `lpusim run ARGV` builds it (flags such as --heads included)
    args = cli.build_parser().parse_args(["run", *SCENARIOS[name]])
    sc = cli._scenario(args)
    caches.clear()
    assert api.run(sc).program_hash == data["program_hash"]


def test_in_process_runs_are_identical():
    sc = api.load_scenario("tests/data/small-specdec.yaml")
    caches.clear()
    a = json.dumps(api.run(sc).to_dict(), sort_keys=True)
    caches.clear()
    b = json.dumps(api.run(sc).to_dict(), sort_keys=True)
    assert a == b


def test_seed_is_explicit_and_only_moves_the_monte_carlo(outputs):
    """The seed is part of the result; another seed changes the sampled figures only."""
    base = json.loads(outputs[("specdec", HASH_SEEDS[0])])
    assert base["speculation"]["seed"] == 0
    other = api.run(api.load_scenario("tests/data/small-specdec.yaml", {"seed": 7})).to_dict()
    assert other["speculation"]["seed"] == 7
    assert other["program_hash"] == base["program_hash"]
    for k in ("tokens_per_second", "baseline_tokens_per_second", "step_latency_cycles"):
        assert other[k] == base[k]
    assert other["speculation"]["expected_tokens_per_pass"] == \
        base["speculation"]["expected_tokens_per_pass"]
    assert other["speculation"]["tokens_per_pass_histogram"] != \
        base["speculation"]["tokens_per_pass_histogram"]
