"""The tables people read (issue 19): `run`, `plan` and `compare` lead with a headline, fit in
100 columns, show every field (generically, so renamed or added fields still appear), in human
units; JSON and CSV stay complete and exact."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from lpusim import api, cli
from lpusim.report import tables

ROOT = Path(__file__).resolve().parent.parent
SMALL = str(ROOT / "tests/data/small-specdec.yaml")


@pytest.fixture(scope="module")
def small() -> dict:
    return api.run(SMALL).to_dict()


def _main(argv, capsys):
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert (rc, err) == (0, "")
    return out


def _fits(text: str) -> None:
    long = [ln for ln in text.splitlines() if len(ln) > tables.WIDTH]
    assert not long, long


def test_run_table_headline_sections_and_width(small, capsys):
    out = _main(["run", SMALL], capsys)
    _fits(out)
    lines = out.splitlines()
    assert lines[0].startswith("Llama 3.2 3B on 16 + 8 drafter GroqChip1 chips")
    tps = f"{small['tokens_per_second']:,.0f} tokens/s per user"
    assert lines[1].startswith(f"  {tps}, ") and "speedup" in lines[1]
    for title in ("Deployment", "Where the time goes", "SRAM per chip", "Speculation (draft)",
                  "Serving", "Assumptions"):
        assert any(ln.startswith(title) for ln in lines), title
    # one bar per breakdown category, with its share
    for k in small["breakdown_us"]:
        assert any(ln.startswith(f"  {k.replace('_', ' ')} ") and "%" in ln for ln in lines), k
    # human units, no raw byte counts; the gamma curve as a sub-table, not JSON
    assert "205.7 MB of 226.5 MB usable" in out
    assert str(small["sram_bytes_per_chip_max"]) not in out
    assert '{"gamma"' not in out and "<- chosen" in out
    assert "excludes speculation" in out
    assert lines[2].split() == ["scenario", "small-specdec"]


def test_run_table_renders_fields_it_does_not_know(small):
    d = copy.deepcopy(small)
    d["breakdown_us"] = {"matmul_tiles": 50.0, "all_reduce_hops": 30.0, "stage_deskew": 20.0}
    d["deployment"] = {"chips_installed": 576, "chips_active": 16, "tp": 8, "stages": 2,
                       "ep": 1, "policy": "fewest chips", "reason": "fits in 2 stages"}
    d["fitted_share"] = 0.4
    d["brand_new_metric_us"] = 12.5
    text = tables.run_table(d)
    _fits(text)
    for k in d["breakdown_us"]:
        assert any(ln.startswith(f"  {k.replace('_', ' ')} ") and "#" in ln
                   for ln in text.splitlines()), k
    assert "50.0%" in text
    for k in d["deployment"]:
        assert k.replace("_", " ") in text
    assert "fewest chips" in text
    assert "caveat: 40% of the step time rests on constants fitted" in text
    assert "brand new metric" in text and "12.5 us" in text
    d["fitted_share"] = 0.1
    assert "caveat" not in tables.run_table(d)


def test_plan_table_summarises_stages(capsys):
    out = _main(["plan", "--model", "llama-3.1-70b"], capsys)
    _fits(out)
    lines = out.splitlines()
    assert lines[0].startswith("Llama 3.1 70B on GroqChip1: at least ")
    data = api.plan(api.load_model("llama-3.1-70b"), api.load_chip("groqchip1"))
    assert len(lines) < 30 < len(data["sram_per_stage"])       # grouped, not 40 rows
    groups = [ln.split()[0] for ln in lines if re.match(r"\s+\d+-\d+\s", ln)]
    a, b = (int(x) for x in groups[0].split("-"))
    assert b - a + 1 > len(data["sram_per_stage"]) // 2       # the equal middle stages


def test_plan_counts_medusa_heads():
    chip = api.load_chip("groqchip1")
    plain = api.plan(api.load_model("llama-3.1-70b"), chip)
    medusa = api.plan(api.load_model("llama-3.1-70b-medusa"), chip)
    model = api.load_model("llama-3.1-70b-medusa")
    heads = model.speculative_heads
    # at least each head's hidden x hidden layers at 8 bits
    assert medusa["weight_bytes"] - plain["weight_bytes"] >= \
        heads.count * heads.layers_per_head * model.hidden_size ** 2


def test_compare_table_fits(capsys):
    out = _main(["compare", SMALL, SMALL, SMALL, SMALL, SMALL], capsys)
    _fits(out)
    assert out.startswith("#1 small-specdec: Llama 3.2 3B on 16 GroqChip1 chips\n")
    assert "#5" in out and "Where the time goes" in out


def test_json_and_csv_are_unchanged(small, capsys):
    out = _main(["run", SMALL, "--format", "json"], capsys)
    assert out == json.dumps(small, indent=2, default=str) + "\n"
    csv_out = _main(["run", SMALL, "--format", "csv"], capsys)
    header, row = csv_out.splitlines()
    assert header.split(",") == list(cli._flatten(small))


@pytest.mark.parametrize("value,text", [(663355648, "663.4 MB"), (2050, "2.05 kB"),
                                        (226492416, "226.5 MB"), (12, "12 B"),
                                        (70822174720, "70.8 GB")])
def test_human_bytes(value, text):
    assert tables.human_bytes(value) == text


@pytest.mark.parametrize("value,text", [(0.6978, "0.6978 us"), (186.79, "186.8 us"),
                                        (4704.65, "4,705 us"), (12345.0, "12.35 ms")])
def test_human_us(value, text):
    assert tables.human_us(value) == text
