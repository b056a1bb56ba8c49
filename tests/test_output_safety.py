"""Output safety: every file lpusim writes goes through `lpusim.atomic.write_atomic` (a
temporary file in the same directory, fsync, rename), so a crash or a kill leaves the old file
or the complete new one, never a truncated file.

Decision on leftovers: a SIGKILL between creating the temporary file and renaming it can leave
`.NAME.PID.XXXXXXXX.tmp` (hidden, next to NAME). It is never mistaken for output, and the next
write of NAME deletes the leftovers of writers that are no longer running (see atomic.py).
The one exception to write-then-rename is the sweep results file, which is append-only: each
row is one whole line written by a single `os.write` to an O_APPEND descriptor.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lpusim.atomic import remove_stale_temporaries, write_atomic

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "lpusim"
ALLOWED = {"atomic.py"}                       # the one module that writes files itself


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every call in `tree` that can write a file other than via atomic."""
    buffers: set[str] = set()
    for node in ast.walk(tree):               # names bound to in-memory buffers
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            f = node.value.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("BytesIO", "StringIO"):
                buffers |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.withitem) and isinstance(node.context_expr, ast.Call):
            f = node.context_expr.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("BytesIO", "StringIO") and isinstance(node.optional_vars, ast.Name):
                buffers.add(node.optional_vars.id)
    out = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                       key=lambda n: (n.lineno, n.col_offset)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
            else ""
        if name == "open" and owner in ("", "gzip", "io", "codecs", "bz2", "lzma"):
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), ast.Constant("r"))
            text = mode.value if isinstance(mode, ast.Constant) else "?"
            if not isinstance(text, str) or set(text) & set("wax+?"):
                out.append((node.lineno, f"{owner + '.' if owner else ''}open(mode={text!r})"))
        elif name == "open" and owner == "os":
            out.append((node.lineno, "os.open"))
        elif name in ("write_text", "write_bytes", "mkstemp", "NamedTemporaryFile",
                      "copyfile", "copy", "copy2", "move", "rename", "replace", "dump", "save",
                      "savez"):
            if name == "replace" and owner == "":
                continue
            if name == "replace" and owner != "os":
                continue                      # str.replace, dataclasses.replace
            if name == "copy" and owner not in ("shutil",):
                continue
            if name == "dump" and owner not in ("json", "pickle", "yaml"):
                continue
            if name == "dump" and len(node.args) < 2:
                continue
            out.append((node.lineno, f"{owner + '.' if owner else ''}{name}"))
        elif name == "savefig":
            target = node.args[0] if node.args else None
            if not (isinstance(target, ast.Name) and target.id in buffers):
                out.append((node.lineno, "savefig to a path"))
    return out


def test_every_write_goes_through_write_atomic():
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG))
        if rel in ALLOWED:
            continue
        hits = _writes(ast.parse(path.read_text(), str(path)))
        if hits:
            found[rel] = hits
    # the sweep's results file: append-only whole lines, O_APPEND (documented above)
    sweep = found.pop("sweep.py", [])
    assert all(what == "os.open" for _, what in sweep), sweep
    if sweep:
        text = (PKG / "sweep.py").read_text()
        assert "O_APPEND" in text and "os.write(fd, (json.dumps(" in text
    # a forked child's stdout and stderr, sent to the null device (lpusim.parallel)
    child = found.pop("parallel.py", [])
    assert sorted(what for _, what in child) == ["open(mode='w')", "os.open"], child
    text = (PKG / "parallel.py").read_text()
    assert text.count("os.devnull") == 2 and "def _child_setup" in text
    assert found == {}, f"files written without write_atomic: {found}"


def test_the_scan_catches_direct_writes():
    src = ("import json, os\n"
           "from pathlib import Path\n"
           "def f(p, fig, d):\n"
           "    open(p, 'w').write('x')\n"
           "    Path(p).write_text('x')\n"
           "    os.open(p, os.O_WRONLY)\n"
           "    json.dump(d, open(p, 'a'))\n"
           "    fig.savefig('plot.png')\n"
           "    open(p).read()\n")
    assert [w for _, w in _writes(ast.parse(src))] == [
        "open(mode='w')", "write_text", "os.open", "json.dump", "open(mode='a')",
        "savefig to a path"]


def test_write_atomic_leaves_no_temporary(tmp_path):
    write_atomic(tmp_path / "a.json", "{}\n")
    write_atomic(tmp_path / "a.json", '{"b": 1}\n')
    assert sorted(os.listdir(tmp_path)) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == '{"b": 1}\n'
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.json.{dead_pid}.abcd1234.tmp"
    live = tmp_path / f".out.json.{os.getpid()}.efgh5678.tmp"     # a writer still running
    other = tmp_path / f".other.json.{dead_pid}.abcd1234.tmp"      # another file's
    for p in (stale, live, other):
        p.write_text("partial")
    write_atomic(tmp_path / "out.json", "{}\n")
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "other.json") == [other]


def _kill_mid_write(argv: list[str], out: Path, deadline_s: float = 60.0) -> bool:
    """Start `lpusim argv`, SIGKILL it as soon as its temporary file for `out` appears.
    Returns whether the kill happened during the write (else the run completed)."""
    prefix = f".{out.name}."
    proc = subprocess.Popen([sys.executable, "-m", "lpusim.cli", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = False
    end = time.monotonic() + deadline_s
    try:
        while proc.poll() is None and time.monotonic() < end:
            if any(n.startswith(prefix) and n.endswith(".tmp") for n in os.listdir(out.parent)):
                os.kill(proc.pid, signal.SIGKILL)
                caught = True
                break
            # a short nap, not a spin: the writer (and the other test worker) need the CPU,
            # and a write of the trace (megabytes, then fsync) lasts many naps
            time.sleep(0.0002)
    finally:
        if proc.poll() is None and not caught:
            proc.kill()
        proc.wait()
    return caught and proc.returncode == -signal.SIGKILL


def _check_dir(d: Path, name: str, before: bytes | None) -> list[str]:
    """The output is absent, the old file, or a complete trace; nothing else but temporaries
    of the killed writer. Returns the leftover temporaries."""
    names = sorted(os.listdir(d))
    temps = [n for n in names if n.startswith(f".{name}.") and n.endswith(".tmp")]
    assert set(names) - set(temps) <= {name}, names
    path = d / name
    if path.exists():
        raw = path.read_bytes()
        if before is not None and raw == before:
            return temps
        data = json.loads(raw)                       # complete, or this raises
        assert data["traceEvents"]
    else:
        assert before is None, "the old file vanished"
    return temps


def test_sigkill_during_trace_write(tmp_path):
    out = tmp_path / "step.json"
    argv = ["trace", "-o", str(out)]
    caught = 0
    for _ in range(3):                              # no previous file
        caught += _kill_mid_write(argv, out)
        temps = _check_dir(tmp_path, out.name, None)
        if out.exists():
            out.unlink()
        for t in temps:
            (tmp_path / t).unlink()
        if caught:
            break
    assert caught, "never caught the writer mid-write"
    # a complete previous file survives a killed rewrite byte for byte
    subprocess.run([sys.executable, "-m", "lpusim.cli", *argv], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    before = out.read_bytes()
    json.loads(before)
    killed = _kill_mid_write(argv, out)
    temps = _check_dir(tmp_path, out.name, before)
    if killed:
        assert out.read_bytes() == before
    # the next write cleans the killed writer's leftover
    write_atomic(out, before)
    assert sorted(os.listdir(tmp_path)) == [out.name], temps


# issue 19: output paths are checked once, before any work, by looking only; a run leaves all
# of its outputs or none


def _cli(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lpusim.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_fifo_output_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    for argv in (["sweep", "tests/data/sweep-200.yaml", "-o", str(fifo)],
                 ["trace", "tests/data/small-specdec.yaml", "-o", str(fifo)],
                 ["run", "tests/data/small-specdec.yaml", "-o", str(fifo)]):
        p = _cli(argv, timeout=30)               # a blocking open would time out here
        assert p.returncode == 2, p.stderr
        assert "is a FIFO" in p.stderr and len(p.stderr.splitlines()) == 1
    assert stat_is_fifo(fifo)
    p = _cli(["report", str(fifo), "-o", str(tmp_path / "rep")], timeout=30)   # as input
    assert (p.returncode, p.stderr) == (2, f"lpusim: error: {fifo}: not a regular file\n")
    assert not (tmp_path / "rep").exists()


def stat_is_fifo(p: Path) -> bool:
    import stat
    return stat.S_ISFIFO(os.stat(p).st_mode)


def test_sweep_never_modifies_a_file_it_refuses(tmp_path):
    """A results path holding another kind of file (here without a final newline, which
    the sweep used to 'repair' by truncating before the check) is left byte for byte."""
    other = tmp_path / "notes.jsonl"
    other.write_bytes(b'{"my": "data"}\nimportant, no final newline')
    before = other.read_bytes()
    p = _cli(["sweep", "tests/data/sweep-200.yaml", "-o", str(other)])
    assert p.returncode == 2
    assert "is not an lpusim results file" in p.stderr
    assert other.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["notes.jsonl"]


def test_longest_legal_name_is_written(tmp_path):
    """A name of legal length must not fail after the work because the temporary file's
    name (NAME plus about 20 characters) would be too long."""
    from lpusim.atomic import name_max
    name = "t" * (name_max(tmp_path) - 5) + ".json"
    p = _cli(["trace", "tests/data/small-specdec.yaml", "-o", str(tmp_path / name)])
    assert p.returncode == 0, p.stderr
    assert os.listdir(tmp_path) == [name]
    assert json.loads((tmp_path / name).read_text())["traceEvents"]


def test_long_name_temporaries_are_found_and_cleaned(tmp_path):
    from lpusim.atomic import _temp_prefix, name_max
    dest = tmp_path / ("é" * ((name_max(tmp_path) - 5) // 2) + ".json")
    prefix = _temp_prefix(dest)
    assert len(os.fsencode(prefix)) + len("4194304.abcdefgh.tmp") <= name_max(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f"{prefix}{int(dead.stdout)}.abcd1234.tmp"
    stale.write_text("partial")
    write_atomic(dest, "{}\n")
    assert sorted(os.listdir(tmp_path)) == [dest.name]


def test_failed_run_leaves_no_outputs(tmp_path, monkeypatch, capsys):
    """The result is written, then the plot fails: neither file stays (all or none)."""
    from lpusim import api, cli

    def broken_plot(*a, **k):
        raise ValueError("plot failed")
    monkeypatch.setattr(api, "plot_gamma_curve", broken_plot)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "a" / "run"
    # a bare ValueError from inside lpusim is a bug (exit 1), not bad input (issue 18)
    assert cli.main(["run", "tests/data/small-specdec.yaml", "-o", str(out)]) == 1
    assert "plot failed" in capsys.readouterr().err
    assert not (tmp_path / "a").exists(), "a directory or file of the failed run was left"


def test_one_unwritable_output_of_a_pair_writes_neither(tmp_path, capsys, monkeypatch):
    from lpusim import cli
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    (out / "scenario.json").mkdir(parents=True)    # the second file cannot take its place
    assert cli.main(["run", "tests/data/small-specdec.yaml", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "scenario.json" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(out)) == ["scenario.json"]       # no result.json, no plots


def test_report_of_a_bad_file_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A results file whose last complete line is of another shape: no plots without the
    page, nothing at all."""
    from lpusim import cli
    monkeypatch.chdir(ROOT)
    res = tmp_path / "r.jsonl"
    sw = tmp_path / "s.yaml"
    sw.write_text(f"kind: sweep\nversion: 1\nname: s\nbase: {ROOT}/tests/data/small-specdec.yaml"
                  f"\ngrid:\n  speculation.gamma: [1, 2, 3]\n")
    assert cli.main(["sweep", str(sw), "-o", str(res), "--workers", "1"]) == 0
    lines = res.read_text().splitlines()[:3]
    res.write_text("\n".join([*lines, '{"point": 9, "id": "x", "overrides": {}, '
                              '"tokens_per_second": "fast"}']) + "\n")
    capsys.readouterr()
    out = tmp_path / "report"
    assert cli.main(["report", str(res), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lpusim: error: {res}:4: ") and len(err.splitlines()) == 1
    assert not out.exists()


def test_sweep_refuses_the_results_of_another_sweep(tmp_path, capsys, monkeypatch):
    """Resuming into another sweep's results would drop that sweep's rows on the final
    rewrite: refused before any work, the file left as it was."""
    from lpusim import cli
    monkeypatch.chdir(ROOT)
    res = tmp_path / "r.jsonl"
    for grid, rc in (("[1, 2]", 0), ("[1, 3]", 2)):
        sw = tmp_path / "s.yaml"
        sw.write_text(f"kind: sweep\nversion: 1\nname: s\nbase: {ROOT}/tests/data/small-specdec"
                      f".yaml\ngrid:\n  speculation.gamma: {grid}\n")
        before = res.read_bytes() if res.exists() else None
        assert cli.main(["sweep", str(sw), "-o", str(res), "--workers", "1"]) == rc
    err = capsys.readouterr().err
    assert err.endswith(f"lpusim: error: {res}: holds 1 points of another sweep (or another "
                        f"grid); give a new results file, or delete this one\n")
    assert res.read_bytes() == before
