"""Names and defaults that tell the truth (issue 19): an overridden run is not named after the
scenario it started from, and `--draft`/`--heads` without `--acceptance` use the documented
default (the shipped speculative scenario's), never a silent 0.8."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from lpusim import cli
from lpusim.config.load import find
from lpusim.config.yamlio import load_document

ROOT = Path(__file__).resolve().parent.parent


def _json(argv, capsys):
    capsys.readouterr()
    assert cli.main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_overridden_run_gets_a_derived_name(capsys):
    d = _json(["run", "--model", "llama-3.2-1b", "--system", "groqnode-8"], capsys)
    # the default scenario's 128k window does not fit one node: the deployment policy moves
    # the run to the smallest shipped system that holds it, and the name says so
    assert d["scenario"] == "llama-3.2-1b-groqnode-8@groqrack-576"
    d = _json(["run", "--model", "llama-3.2-1b", "--system", "groqnode-8", "--batch", "2",
               "--context-window", "8192"], capsys)
    assert d["scenario"] == "llama-3.2-1b-groqnode-8+batch=2+context_window=8192"
    d = _json(["run", str(ROOT / "tests/data/small-specdec.yaml"), "--gamma", "2"], capsys)
    assert d["scenario"] == "small-specdec+gamma=2"
    d = _json(["run", str(ROOT / "tests/data/small-specdec.yaml")], capsys)
    assert d["scenario"] == "small-specdec"                  # not overridden: its own name
    d = _json(["run", "--model", "llama-3.2-1b", "--system", "groqnode-8", "--set",
               "name=mine", "--context-window", "8192"], capsys)
    assert d["scenario"] == "mine"


def test_trace_carries_the_derived_name(tmp_path, capsys):
    out = tmp_path / "t.json.gz"
    assert cli.main(["trace", "--model", "llama-3.2-1b", "--system", "groqnode-8",
                     "-o", str(out)]) == 0
    text = gzip.decompress(out.read_bytes()).decode()
    assert "llama-3.2-1b-groqnode-8" in text
    assert "llama-3.1-70b-groqrack-576" not in text


def test_draft_without_acceptance_uses_the_documented_default(capsys):
    shipped = load_document(find("scenario", cli.DEFAULT_ACCEPTANCE_SCENARIO)).data
    a = shipped["speculation"]["acceptance"]
    assert a != 0.8                   # the schema's fallback, which used to be used silently
    d = _json(["run", "--model", "llama-3.2-3b", "--system", "groqrack-576", "--chips", "16",
               "--context", "1024", "--context-window", "1024", "--draft", "llama-3.2-1b",
               "--gamma", "2"], capsys)
    assert d["speculation"]["acceptance"] == {"kind": "constant", "a": a}
    assert d["scenario"].endswith(f"+acceptance={a}")
    # a scenario with its own acceptance keeps it
    d = _json(["run", str(ROOT / "tests/data/small-specdec.yaml"), "--gamma", "2"], capsys)
    assert d["speculation"]["acceptance"] == {"kind": "constant", "a": 0.8}
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert cli.DEFAULT_ACCEPTANCE_SCENARIO in help_text and str(a) in help_text


def test_the_help_names_every_environment_variable_lpusim_reads():
    # every LPUSIM_* variable read anywhere in lpusim/ is listed, with what it does, at the
    # end of `lpusim --help`
    import re
    read = set()
    for path in (ROOT / "lpusim").rglob("*.py"):
        read |= set(re.findall(r"\"(LPUSIM_[A-Z_]+)\"", path.read_text()))
    assert {"LPUSIM_CACHE_DIR", "LPUSIM_JOBS", "LPUSIM_DATA", "LPUSIM_DEBUG"} <= read
    shown = cli.build_parser().format_help().split("environment variables:")[1]
    assert {v for v in read if re.search(rf"^  {v}=", shown, re.M)} == read
