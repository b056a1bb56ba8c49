import glob
import subprocess
import sys

import pytest

from lpusim.config import load, load_scenario
from lpusim.config.yamlio import load_document
from lpusim.errors import ConfigError

SHIPPED = sorted(glob.glob("chip_configs/*.yaml") + glob.glob("workloads/*.yaml")
                 + glob.glob("workloads/scenarios/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_config_validates(path):
    load(path)


def test_groqchip1_derived_from_structure():
    chip = load("chip_configs/groqchip1.yaml")
    # 4 planes x 320 x 320 MACs x 2 ops x 0.9 GHz
    assert chip.peak_int8_ops_per_s == 4 * 320 * 320 * 2 * 900_000_000 == 737_280 * 10**9
    assert chip.sram_bytes == 88 * 2.5 * 2**20 == 230_686_720     # 220 MiB = 230.7 MB
    assert chip.vector_bytes == 320
    assert chip.peak_fp16_flops_per_s * 4 == chip.peak_int8_ops_per_s


def test_system_sizes():
    s = load("chip_configs/groqrack-576.yaml")
    assert (s.chips, s.nodes) == (576, 72)
    assert s.chip.name == "GroqChip1"


def test_duplicate_keys_are_errors():
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_document("x.yaml", "a: 1\nb: 2\na: 3\n")


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load("tests/broken/scenario_many_errors.yaml")
    assert len(e.value.issues) == 3


def test_overrides_are_validated_like_file_values():
    sc = load_scenario("workloads/scenarios/llama-3.1-70b-groqrack-576.yaml",
                       {"system.links.global_hop_latency_ps": "1us", "batch": 2})
    assert sc.system.links.global_hop_latency_ps == 1_000_000
    assert sc.batch == 2
    with pytest.raises(ConfigError, match="has no unit"):
        load_scenario("workloads/scenarios/llama-3.1-70b-groqrack-576.yaml",
                      {"system.links.global_hop_latency_ps": 5})


def test_deep_nesting_is_bounded():
    with pytest.raises(ConfigError, match="nesting"):
        load_document("x.yaml", "a: " + "[" * 200 + "]" * 200)


def test_directory_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)


def test_cli_validate_exit_code_and_one_line_per_error():
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "validate",
                        "tests/broken/scenario_many_errors.yaml", "chip_configs/groqchip1.yaml"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("lpusim: error: tests/broken/scenario_many_errors.yaml:8:1: "
                               "fidelty: unknown key; did you mean 'fidelity'?")
    assert "Traceback" not in r.stderr
