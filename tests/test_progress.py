"""Progress of long commands (issue 19): tqdm on stderr when stderr is a terminal, nothing
otherwise (pipes, logs, the API)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sweep_file(tmp_path: Path) -> Path:
    sw = tmp_path / "s.yaml"
    sw.write_text(f"kind: sweep\nversion: 1\nname: s\nbase: {ROOT}/tests/data/small-specdec.yaml"
                  "\ngrid:\n  speculation.gamma: [1, 2, 3]\n")
    return sw


def test_progress_on_a_terminal(tmp_path):
    master, slave = pty.openpty()
    # a terminal of 100 columns (a fresh pty has 0, and tqdm draws nothing in 0 columns)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "lpusim.cli", "sweep", str(_sweep_file(tmp_path)),
                          "-o", str(tmp_path / "r.jsonl"), "--workers", "1"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:                 # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0
    text = seen.decode(errors="replace")
    assert "sweep:" in text and "point" in text and "3/3" in text     # tqdm's bar


def test_silent_when_not_a_terminal(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lpusim.cli", "sweep", str(_sweep_file(tmp_path)),
                        "-o", str(tmp_path / "r.jsonl"), "--workers", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert p.stderr == f"{tmp_path / 'r.jsonl'}: 3 points (0 infeasible)\n"


def test_library_is_silent(capsys):
    from lpusim import progress
    assert not progress.enabled()
    assert list(progress.iterate(range(3), "x")) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")
