"""Every broken config in tests/broken/ gives exactly its expected messages (file:line:col)."""

from pathlib import Path

import pytest

from lpusim.config import load
from lpusim.errors import ConfigError

BROKEN = Path(__file__).parent / "broken"

CASES = [
    ('binary.yaml', ['{f}: binary data, not a YAML text file']),
    ('chip_absurd_sram.yaml', ["{f}:17:25: mem.slice_capacity_bytes: '1000000000000000000000000000000B' is above the maximum 1.09951e+12"]),
    ('chip_bad_kind.yaml', ["{f}:6:7: kind: unknown kind 'chp'; did you mean 'chip'?"]),
    ('chip_bad_version.yaml', ['{f}:7:10: version: unsupported version 7 (this lpusim reads version 1)']),
    ('chip_duplicate_key.yaml', ["{f}:9:1: name: duplicate key 'name' (first defined at line 8)"]),
    ('chip_efficiency_range.yaml', ['{f}:47:15: c2c.efficiency: 1.5 is above the maximum 1']),
    ('chip_missing_key.yaml', ["{f}:27:3: mxm.install_cycles: missing required key 'install_cycles'"]),
    ('chip_nan.yaml', ['{f}:47:15: c2c.efficiency: nan is not a finite number']),
    ('chip_negative.yaml', ['{f}:27:11: mxm.planes: -4 is below the minimum 1']),
    ('chip_no_unit.yaml', ['{f}:10:11: clock_hz: 900 has no unit; expected a frequency like 900MHz']),
    ('chip_size_as_bandwidth.yaml', ["{f}:17:25: mem.slice_capacity_bytes: unknown unit 'MBps' in '230 MBps'; expected a size like 230MB or 220MiB"]),
    ('chip_syntax.yaml', ["{f}:13:3: YAML syntax error: expected ',' or ']', but got '<scalar>'"]),
    ('chip_tile_mismatch.yaml', ['{f}:28:9: mxm.rows: MXM tile 256x320 must match the 320 lanes of a vector']),
    ('chip_unit_typo.yaml', ["{f}:10:11: clock_hz: unknown unit 'MHzz' in '900MHzz'; expected a frequency like 900MHz"]),
    ('chip_unknown_key.yaml', ["{f}:16:3: mem.slicse: unknown key; did you mean 'slices'? (valid keys: read_latency_cycles, reserved_bytes, slice_capacity_bytes, slices, vectors_per_slice_per_cycle)", "{f}:16:3: mem.slices: missing required key 'slices'"]),
    ('chip_wrong_type.yaml', ["{f}:12:15: vector.superlanes: expected an integer, got a string 'twenty'"]),
    ('empty.yaml', ['{f}: empty file; expected a YAML mapping']),
    ('model_bad_norm.yaml', ["{f}:16:7: norm: 'rmsnrom' is not one of rmsnorm, layernorm; did you mean 'rmsnorm'?"]),
    ('model_attention_pattern.yaml', ["{f}:19:20: attention_pattern: 'LGX': unknown layer kind 'X'; expected a string of G (global) and L (local, sliding window), like 'LG'"]),
    ('model_bool_type.yaml', ['{f}:14:18: tied_embeddings: expected true or false, got an integer 0']),
    ('model_experts.yaml', ['{f}:19:20: experts_per_token: 3 experts per token exceed the 2 experts']),
    ('model_kv_heads.yaml', ['{f}:10:11: kv_heads: 5 KV heads do not divide 32 query heads']),
    ('model_layers_huge.yaml', ['{f}:6:9: layers: 1000000000 is above the maximum 10000']),
    ('model_softcap_negative.yaml', ['{f}:18:21: attn_logit_softcap: -50 is below the minimum 0.001']),
    ('model_window_missing.yaml', ["{f}:18:20: attention_pattern: 'LG' has local layers (L) but the model has no sliding_window"]),
    ('scenario_alias_bomb.yaml', ['{f}:3:4: b[0]: YAML aliases/anchors are not supported', '{f}:3:4: b[1]: YAML aliases/anchors are not supported', '{f}:3:4: b[2]: YAML aliases/anchors are not supported', '{f}:4:4: c[0]: YAML aliases/anchors are not supported', '{f}:4:4: c[1]: YAML aliases/anchors are not supported', '{f}:4:4: c[2]: YAML aliases/anchors are not supported']),
    ('scenario_chips.yaml', ["{f}:8:8: chips: 12 chips exceed the system's 8", '{f}:8:8: chips: 12 chips are not a whole number of tensor-parallel groups of 8']),
    ('scenario_context.yaml', ["{f}:7:10: context: context 200000 exceeds the model's max_context 131072"]),
    ('scenario_draft_missing.yaml', ["{f}:9:3: speculation.draft_model: strategy 'draft' needs a draft_model"]),
    ('scenario_dtype.yaml', ["{f}:9:12: precision.weights: 'int7' is not one of int4, int8, fp8, fp16, bf16, fp32; did you mean 'int8'?"]),
    ('scenario_gamma.yaml', ['{f}:11:10: speculation.gamma: gamma 40 exceeds max_gamma 32']),
    ('scenario_many_errors.yaml', ["{f}:8:1: fidelty: unknown key; did you mean 'fidelity'? (valid keys: batch, chips, context, context_window, expert_parallel, fidelity, model, name, precision, seed, speculation, system, tensor_parallel)", '{f}:6:8: batch: 0 is below the minimum 1', '{f}:7:10: context: -5 is below the minimum 1']),
    ('scenario_unknown_model.yaml', ["{f}:4:8: model: no model named 'llama-3.1-8bb'; did you mean 'llama-3.1-8b'? (shipped: gemma-2-27b, gemma-2-9b, gemma-7b, llama-2-70b, llama-2-7b, llama-3-70b, llama-3-8b, llama-3.1-405b, llama-3.1-70b, llama-3.1-70b-medusa, llama-3.1-8b, llama-3.2-1b, llama-3.2-3b, llama-3.3-70b, mistral-7b, mixtral-8x22b, mixtral-8x7b, qwen-2.5-32b, qwen-2.5-72b, qwen-2.5-7b)"]),
    ('system_bad_latency.yaml', ['{f}:14:26: links.global_hop_latency_ps: 0.6 has no unit; expected a time like 0.6us or 250ns']),
    ('system_links_short.yaml', ['{f}:10:25: topology.local_links_per_chip: 5 local links cannot fully connect 8 chips in a node (need 7)']),
    ('system_unknown_chip.yaml', ["{f}:5:7: chip: no chip named 'groqchip9'; did you mean 'groqchip1'? (shipped: groq3-lp30, groqchip1)"]),
    ('system_zero_racks.yaml', ['{f}:9:10: topology.racks: 0 is below the minimum 1']),
    ('top_level_list.yaml', ['{f}:1:1: expected a YAML mapping at the top level']),
]


def test_corpus_is_complete():
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(n for n, _ in CASES)
    assert len(CASES) >= 20


@pytest.mark.parametrize("name,expected", CASES, ids=[c[0] for c in CASES])
def test_broken_config_message(name, expected):
    path = f"tests/broken/{name}"
    with pytest.raises(ConfigError) as e:
        load(path)
    assert [str(i) for i in e.value.issues] == [m.format(f=path) for m in expected]
