"""Results computed ahead in forked children (lpusim.parallel): a child's result is the
parent's, a failed child leaves the work to the parent, children not needed are stopped, and a
speculative run (its search's widths computed ahead) gives the same answer, to the byte, with
any number of processes."""

import json
import os
import subprocess
import sys
import time

import pytest

from lpusim import api, parallel
from lpusim.speculative.search import best_candidate

forks = pytest.mark.skipif(not parallel.can_fork(), reason="children are forked on Linux only")


@pytest.fixture
def two_jobs():
    was = parallel.set_jobs(2)
    yield
    parallel.set_jobs(was)


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True                 # reaped: no zombie left behind
    return False


@forks
def test_a_child_returns_its_result_and_a_failed_one_nothing():
    ok = parallel.Forked(lambda: (os.getpid(), [1, 2, 3]))
    pid = ok._pid
    got = ok.result()
    assert got is not None and got[0][1] == [1, 2, 3] and got[0][0] != os.getpid()
    assert _gone(pid)
    assert parallel.Forked(lambda: None).result() == (None,)    # None is a result

    def boom():
        raise ValueError("in the child")
    assert parallel.Forked(boom).result() is None
    assert parallel.Forked(lambda: lambda: 1).result() is None  # not picklable


@forks
def test_a_child_prints_nothing_and_forks_no_children(capfd, two_jobs):
    def loud():
        print("from the child")
        print("warning from the child", file=sys.stderr)
        return parallel.jobs()
    assert parallel.Forked(loud).result() == (1,)
    out, err = capfd.readouterr()
    assert "child" not in out + err


@forks
def test_children_of_one_user_leave_no_cpu_to_another(two_jobs):
    """At most jobs() processes compute, however many users start children: with one child
    busy and two processes allowed, another user's Ahead computes everything here, and forks
    again once that child is done; a child sees none of its parent's other children."""
    busy = parallel.Forked(lambda: time.sleep(60))
    assert parallel.busy_children() == 1 and parallel.free_cpus() == 0
    forked = []
    real = parallel.Forked.__init__

    def counting(self, fn):
        forked.append(fn)
        real(self, fn)

    try:
        parallel.Forked.__init__ = counting
        inner = parallel.Forked(lambda: (parallel.busy_children(), parallel.free_cpus()))
        assert inner.result() == ((0, 0),)
        forked.clear()
        with parallel.Ahead(lambda k: (time.sleep(0.02), k * k)[1]) as ahead:
            assert list(ahead.each([1, 2, 3])) == [1, 4, 9]
        assert forked == []
        busy.cancel()
        assert parallel.busy_children() == 0 and parallel.free_cpus() == 1
        with parallel.Ahead(lambda k: (time.sleep(0.02), k * k)[1]) as ahead:
            assert list(ahead.each([1, 2, 3])) == [1, 4, 9]
        assert len(forked) >= 1
    finally:
        parallel.Forked.__init__ = real
        busy.cancel()
    assert parallel.busy_children() == 0


@forks
def test_fork_gives_a_child_only_when_a_cpu_is_free_and_a_process_can_be_had(monkeypatch):
    """`parallel.fork` (405B's signing child, validate-published's check rows): None with one
    process, with every CPU busy, or when no process can be had; else the child."""
    was = parallel.set_jobs(1)
    try:
        assert parallel.fork(lambda: 1) is None
        parallel.set_jobs(2)
        busy = parallel.fork(lambda: time.sleep(60))
        assert busy is not None
        assert parallel.fork(lambda: 2) is None     # the one free CPU is busy
        busy.cancel()
        child = parallel.fork(lambda: 2)
        assert child is not None and child.result() == (2,)

        def no_process():
            raise OSError("Resource temporarily unavailable")
        monkeypatch.setattr(os, "fork", no_process)
        assert parallel.fork(lambda: 3) is None
    finally:
        parallel.set_jobs(was)


@forks
def test_a_cancelled_child_is_stopped_and_reaped():
    slow = parallel.Forked(lambda: time.sleep(60))
    pid = slow._pid
    t0 = time.perf_counter()
    slow.cancel()
    assert time.perf_counter() - t0 < 5 and _gone(pid)
    assert slow.result() is None
    slow.cancel()                   # twice is harmless


@forks
def test_a_caller_interrupted_while_waiting_stops_the_child():
    import signal

    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted
    slow = parallel.Forked(lambda: time.sleep(60))
    pid = slow._pid
    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    t0 = time.perf_counter()
    try:
        with pytest.raises(Interrupted):
            slow.result()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.perf_counter() - t0 < 10 and _gone(pid)


@forks
def test_ahead_computes_the_next_keys_in_children(two_jobs):
    me = os.getpid()

    def square(k):
        time.sleep(2 * parallel.WORTH_A_CHILD_S)    # long enough to be worth a child
        return k * k, os.getpid()
    with parallel.Ahead(square) as ahead:
        ahead.ahead([3, 5, 7])      # 3 is computed here; one child (2 jobs) for 5
        assert list(ahead._pending) == [5]
        assert ahead.get(3) == (9, me)
        v, pid = ahead.get(5)
        assert v == 25 and pid != me
        ahead.ahead([7, 9])
        ahead.ahead([11, 13])       # 9 is no longer wanted: its child is stopped
        assert list(ahead._pending) == [13]
        assert ahead.get(7) == (49, me)
    assert not ahead._pending       # the rest stopped at the end


@forks
def test_ahead_starts_no_child_for_a_key_the_caller_has(two_jobs):
    def slow(k):
        time.sleep(0 if k in (3, 5) else 2 * parallel.WORTH_A_CHILD_S)
        return k
    with parallel.Ahead(slow, known=lambda k: k in (3, 5)) as ahead:
        ahead.ahead([3, 5, 7])
        assert list(ahead._pending) == [7]
        # a key the caller had comes at once, and says nothing of the keys it has not
        assert ahead.get(3) == 3 and list(ahead._pending) == [7]
        assert ahead.get(7) == 7


@forks
def test_the_caller_keeps_what_a_child_computed(two_jobs):
    kept = {}

    def slow(k):
        time.sleep(2 * parallel.WORTH_A_CHILD_S)
        return k * k, os.getpid()
    with parallel.Ahead(slow, known=lambda k: k in kept,
                        keep=lambda k, v: kept.setdefault(k, v)) as ahead:
        ahead.ahead([3, 5])
        assert ahead.get(3)[0] == 9 and not kept       # computed here: the caller's own
        v = ahead.get(5)
        assert v[0] == 25 and v[1] != os.getpid() and kept == {5: v}
        ahead.ahead([7, 5, 9])                          # 5 is known now: no child for it
        assert list(ahead._pending) == [9]


@forks
def test_a_search_keeps_the_steps_its_children_computed(two_jobs):
    """The widths a speculative search computed in children are this process's steps
    afterwards: a second search (another acceptance) over them forks no child for them and
    compiles none of them again."""
    from lpusim import caches
    sc = api.load_scenario("llama-3.1-70b-specdec", {"model": "llama-3.1-8b", "chips": 48})
    caches.clear()
    forked = []
    real = parallel.Forked.__init__

    def counting(self, fn):
        forked.append(fn)
        real(self, fn)
    first = api.run(sc)
    widths = [p["verify_width"] for p in first.speculation["gamma_curve"]]
    steps = caches.info()["step"][0]
    assert steps >= len(widths) + 1                     # baseline, drafter and every width
    import unittest.mock as mock
    with mock.patch.object(parallel.Forked, "__init__", counting):
        again = api.run(api.load_scenario(
            "llama-3.1-70b-specdec", {"model": "llama-3.1-8b", "chips": 48,
                                      "speculation.acceptance": 0.9001}))
    seen = {p["verify_width"] for p in again.speculation["gamma_curve"]}
    # a chain of gamma drafted tokens is verified at width gamma + 1: no child for a width
    # the first search had, and none compiled again here
    assert {f.args[0] + 1 for f in forked}.isdisjoint(widths)
    assert caches.info()["step"][0] == steps + len(seen - set(widths))


def test_a_step_is_known_once_computed():
    from lpusim import caches
    from lpusim.deploy import resolve
    from lpusim.runner import baseline_step
    from lpusim.step import step_known
    sc, _ = resolve(api.load_scenario("llama-3.1-70b-groqrack-576", {"model": "llama-3.2-1b",
                                                                     "chips": 16}))
    caches.clear()
    inputs = dict(chips=sc.chips_used, tp=sc.tp, positions=3, batch=sc.batch,
                  context=sc.context, precision=sc.precision, fidelity=sc.fidelity,
                  context_window=sc.context_window)
    assert not step_known(sc.model, sc.system, **inputs)
    baseline_step(sc, positions=3)
    assert step_known(sc.model, sc.system, **inputs)
    assert not step_known(sc.model, sc.system, **{**inputs, "positions": 4})


@forks
def test_ahead_stops_forking_when_keys_come_quicker_than_children(two_jobs):
    with parallel.Ahead(lambda k: k) as ahead:
        ahead.ahead([1, 2, 3])
        assert list(ahead._pending) == [2]
        assert ahead.get(1) == 1                    # computed here at once: no more children
        assert not ahead._pending
        ahead.ahead([2, 3, 4])
        assert not ahead._pending and ahead.get(2) == 2


@forks
def test_ahead_uses_a_cpu_the_caller_leaves_idle(two_jobs):
    def slow(k):
        time.sleep(0.3 if k == 2 else 2 * parallel.WORTH_A_CHILD_S)
        return k
    with parallel.Ahead(slow) as ahead:
        ahead.ahead([1, 2, 3])
        assert list(ahead._pending) == [2]          # one worker: one child
        ahead.ahead([2, 3, 4])      # the caller will wait for 2: a second child, for 3
        assert list(ahead._pending) == [2, 3]
        assert ahead.get(2) == 2 and ahead.get(3) == 3
        ahead.ahead([4, 5])
        deadline = time.time() + 30
        while not ahead._pending[5].done():         # a finished child holds no CPU
            assert time.time() < deadline
            time.sleep(0.01)
        ahead.ahead([4, 5, 6])
        assert list(ahead._pending) == [5, 6]
        assert ahead.get(5) == 5


@forks
def test_each_gives_every_key_in_order_the_later_ones_from_children(two_jobs):
    def slow(k):
        time.sleep(2 * parallel.WORTH_A_CHILD_S)
        return k, os.getpid()
    with parallel.Ahead(slow) as ahead:
        got = list(ahead.each([1, 2, 3]))
    assert [v for v, _pid in got] == [1, 2, 3] and got[0][1] == os.getpid()
    assert any(pid != os.getpid() for _v, pid in got[1:])
    assert not ahead._pending


@forks
def test_keys_unlike_in_cost_keep_forking_after_a_quick_one(two_jobs):
    with parallel.Ahead(lambda k: k, alike=False) as ahead:
        ahead.ahead([1, 2, 3])
        assert ahead.get(1) == 1                    # quick, yet it says nothing of 2 and 3
        assert list(ahead._pending) == [2]
        ahead.ahead([2, 3])
        assert ahead.get(2) == 2 and ahead.get(3) == 3


@forks
def test_run_many_runs_scenarios_ahead_and_gives_what_one_process_gives(two_jobs):
    from lpusim import caches
    refs = [("llama-3.1-70b-groqrack-576", {"model": "llama-3.2-1b", "chips": 16}),
            ("llama-3.1-70b-h100x8", {}),
            ("llama-3.1-70b-specdec", {"model": "llama-3.1-8b", "chips": 48})]
    scs = [api.load_scenario(r, ov) for r, ov in refs]
    caches.clear()
    two = [json.dumps(r.to_dict(), sort_keys=True) for r in api.run_many(scs)]
    parallel.set_jobs(1)
    caches.clear()
    one = [json.dumps(api.run(sc).to_dict(), sort_keys=True) for sc in scs]
    assert two == one


def test_with_one_job_nothing_is_forked():
    assert parallel.jobs() == 1     # the library's default
    me = os.getpid()
    with parallel.Ahead(lambda k: (k, os.getpid())) as ahead:
        ahead.ahead([1, 2, 3])
        assert not ahead._pending
        assert ahead.get(2) == (2, me)


def test_set_jobs_refuses_less_than_one():
    with pytest.raises(ValueError):
        parallel.set_jobs(0)
    assert parallel.jobs() == 1


def test_the_search_says_what_it_may_evaluate_next_best_bound_first():
    # a step growing with the width: the bound (the step below) is loose, so the search
    # evaluates several candidates and prunes the rest
    steps = {g: 100 + 10 * g for g in range(1, 9)}

    def value(g, s):
        return min(g, 4) / s

    def bound(g, below):
        return min(g, 4) / (below if below is not None else 100)

    log = []

    def evaluate(g):
        log.append(("evaluate", g))
        return steps[g]

    def ahead(gs):
        log.append(("ahead", list(gs)))

    plain = best_candidate(range(1, 9), steps.__getitem__, value, bound)
    told = best_candidate(range(1, 9), evaluate, value, bound, ahead)
    assert told == plain and 1 < len(plain.evaluated) < 8
    assert len(log) == 2 * len(plain.evaluated)
    done = set()
    for (what, gs), (what2, g) in zip(log[::2], log[1::2], strict=True):
        assert what == "ahead" and what2 == "evaluate"
        assert gs[0] == g and not done & set(gs) and len(set(gs)) == len(gs)
        # best bound first, the smallest on ties, as the search picks
        below = [max((h for h in done if h < x), default=None) for x in gs]
        b = [bound(x, steps[h] if h is not None else None)
             for x, h in zip(gs, below, strict=True)]
        ranked = [(-v, x) for v, x in zip(b, gs, strict=True)]
        assert ranked == sorted(ranked)
        done.add(g)


@forks
@pytest.mark.parametrize("strategy", ["draft", "async"])
def test_a_speculative_run_is_the_same_with_two_processes(strategy, two_jobs):
    ov = {"model": "llama-3.1-8b", "chips": 48, "speculation.strategy": strategy}
    sc = api.load_scenario("llama-3.1-70b-specdec", ov)
    from lpusim import caches
    caches.clear()
    two = json.dumps(api.run(sc).to_dict(), sort_keys=True)
    parallel.set_jobs(1)
    caches.clear()
    one = json.dumps(api.run(sc).to_dict(), sort_keys=True)
    assert two == one


@forks
def test_a_serving_study_is_the_same_with_two_processes_and_keeps_its_prefill_steps(two_jobs):
    """A serving study's prefill chunks are compiled ahead in children: the study is the
    same, to the byte, and the chunk steps are this process's afterwards."""
    from lpusim import caches
    from lpusim.serve import ServeOptions, _resolved, _Steps, parse_contexts, prefill
    from lpusim.serve import serve as serve_
    from lpusim.step import step_known
    sc = api.load_scenario("llama-3.1-70b-specdec", {"model": "llama-3.1-8b", "chips": 48})
    opts = ServeOptions(ttft_prompts=(300,), strategies=(), max_batch=2)
    caches.clear()
    two = json.dumps(serve_(sc, opts).to_dict(), sort_keys=True, default=str)
    parallel.set_jobs(1)
    caches.clear()
    one = json.dumps(serve_(sc, opts).to_dict(), sort_keys=True, default=str)
    assert two == one
    parallel.set_jobs(2)
    caches.clear()
    placed, _ = _resolved(sc, "none")
    steps = _Steps(placed, parse_contexts(opts.contexts, placed.window), opts)
    fill = prefill(steps, 300)
    chunks = [c for c, _l, _i in fill.chunks]
    assert chunks[:3] == [1, 2, 4] and chunks[-1] == 300
    assert all(step_known(**steps.inputs(placed.model, placed.chips_used, placed.tp,
                                         positions=c, context=300 - c)) for c in chunks)


@forks
def test_a_serving_study_plans_its_next_batches_in_children_alike(two_jobs, monkeypatch):
    """The batches of a serving study are independent: the next ones are planned in children
    (their searches then compile every width in one process), and the study is the same, to
    the byte, as in one process, also where a batch does not fit."""
    from lpusim import caches
    from lpusim.serve import ServeOptions
    from lpusim.serve import serve as serve_
    sc = api.load_scenario("llama-3.1-70b-specdec", {"model": "llama-3.1-8b", "chips": 48})
    opts = ServeOptions(ttft_prompts=(), strategies=("draft",), max_batch=8)
    planned = []
    real = parallel.Forked.__init__

    def counting(self, fn):
        if "plans" in getattr(getattr(fn, "func", None), "__qualname__", ""):
            planned.append(fn.args[0])
        real(self, fn)

    monkeypatch.setattr(parallel.Forked, "__init__", counting)
    caches.clear()
    two = json.dumps(serve_(sc, opts).to_dict(), sort_keys=True, default=str)
    assert planned and set(planned) <= {2, 4, 8}
    parallel.set_jobs(1)
    caches.clear()
    one = json.dumps(serve_(sc, opts).to_dict(), sort_keys=True, default=str)
    assert two == one
    # batch 8 does not fit: it fails in its child too, and is planned here to raise
    stop = json.loads(one)["limits"]["draft"]
    assert stop["largest_batch"] == 4 and stop["next_batch_error"].startswith("batch 8: ")


@forks
def test_node_spanning_groups_are_signed_ahead_in_a_child_alike(two_jobs, monkeypatch):
    """With two processes the later stages' node-spanning groups are signed in a child while
    the earlier stages compile: the program is the same, to the hash, the child's signatures
    are kept with the link graph, and a second compile forks nothing for them."""
    from lpusim import caches
    from lpusim.compiler import compile_pipeline
    from lpusim.compiler.topology import build_link_graph
    from lpusim.config import load
    from lpusim.graph import GraphParams, build_decode_graph
    from tests.helpers import system
    s = system("groqrack-2304")
    g = build_decode_graph(load("workloads/llama-3.1-8b.yaml"), GraphParams(context=2048))
    forked = []
    real = parallel.Forked.__init__

    def counting(self, fn):
        forked.append(fn)
        real(self, fn)
    monkeypatch.setattr(parallel.Forked, "__init__", counting)
    caches.clear()
    two = compile_pipeline(g, s, chips=480, tp=16)
    assert len(forked) == 1
    links = build_link_graph(s, 480)
    assert sum(1 for k in links.derived if k[0] == "group") >= 30
    compile_pipeline(g, s, chips=480, tp=16)
    assert len(forked) == 1                         # all signed: no child the second time
    parallel.set_jobs(1)
    caches.clear()
    one = compile_pipeline(g, s, chips=480, tp=16)
    assert len(forked) == 1 and one.content_hash() == two.content_hash()


@forks
@pytest.mark.parametrize("jobs", [1, 2])
def test_prefill_stops_at_the_first_chunk_that_does_not_fit(jobs, two_jobs):
    """A chunk too wide for SRAM ends the prefill chunks, in one process and two (where it
    fails in its child too and is compiled here to raise), and the bound names it."""
    from lpusim import caches
    from lpusim.serve import ServeOptions, _resolved, _Steps, parse_contexts, prefill
    parallel.set_jobs(jobs)
    caches.clear()
    sc = api.load_scenario("llama-3.1-70b-groqrack-576", {"model": "llama-3.2-1b", "chips": 8,
                                                          "context_window": 8192})
    placed, _ = _resolved(sc, "none")
    opts = ServeOptions()
    fill = prefill(_Steps(placed, parse_contexts(opts.contexts, placed.window), opts), 8000)
    assert [c for c, _l, _i in fill.chunks] == [1 << k for k in range(11)]
    assert fill.bound.startswith("sram: a chunk of 2048 positions does not fit (")


@forks
def test_the_cli_computes_with_lpusim_jobs(tmp_path):
    def run(jobs):
        env = {**os.environ, "LPUSIM_JOBS": jobs}
        return subprocess.run([sys.executable, "-m", "lpusim.cli", "run",
                               "llama-3.1-70b-specdec", "--model", "llama-3.1-8b",
                               "--chips", "48", "--format", "json"],
                              capture_output=True, text=True, env=env, check=True).stdout
    assert run("2") == run("1")


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", "٣"])
def test_a_bad_lpusim_jobs_is_refused(bad, monkeypatch):
    from lpusim.cli import _jobs_from_environment
    from lpusim.errors import ConfigError
    monkeypatch.setenv("LPUSIM_JOBS", bad)
    with pytest.raises(ConfigError) as e:
        _jobs_from_environment()
    assert str(e.value.issues[0]) == (f"environment: LPUSIM_JOBS: expected a whole number of "
                                      f"processes of at least 1, got {bad!r}")
    monkeypatch.setenv("LPUSIM_JOBS", " 3 ")
    assert _jobs_from_environment() == 3
    monkeypatch.setenv("LPUSIM_JOBS", "")
    assert _jobs_from_environment() == parallel.usable_cpus()


def test_a_bad_lpusim_jobs_is_one_line_and_exit_2():
    env = {**os.environ, "LPUSIM_JOBS": "two"}
    p = subprocess.run([sys.executable, "-m", "lpusim.cli", "run"], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "lpusim: error: environment: LPUSIM_JOBS: expected a whole number of processes of "
        "at least 1, got 'two'"]


def test_sweep_workers_compute_alone(two_jobs):
    import gc

    from lpusim import sweep
    was_gc = gc.isenabled()
    try:
        sweep._worker_init()
        assert parallel.jobs() == 1
    finally:
        if was_gc:
            gc.enable()
