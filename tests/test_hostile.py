# ruff: noqa: E501  (expected messages are kept verbatim, one per line)
"""Hostile input through the CLI: every case gives exit code 2, exactly its expected one-line
messages on stderr (file:line:column where there is one, and the field), nothing on stdout, no
traceback, and no output file left behind.

Most cases run `lpusim.cli.main` in-process (fast); `test_real_process` runs a sample through
`python -m lpusim.cli` to check the real exit code and that no traceback reaches stderr. Each
file of tests/hostile/ is used by at least one case. Placeholders in expected messages: {h} the
corpus directory, {root} the repository, {out} an output path that must not exist afterwards,
{models}/{systems}/{chips} the shipped names and {commands} the CLI commands (so that adding a
workload or a command does not break this corpus).
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lpusim import cli
from lpusim.config import shipped
from lpusim.errors import AcceptanceError, GraphError, InputError, TopologyError

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).parent / "hostile"
H = "tests/hostile"

LAUGHS = [f"{{h}}/billion_laughs.yaml:{4 + i // 9}:7: lol{2 + i // 9}[{i % 9}]: YAML aliases/anchors "
          f"are not supported" for i in range(cli.MAX_ISSUES_SHOWN)] + ["... and 52 more problems"]

# (case id, argv, expected stderr lines without the 'lpusim: error: ' prefix)
CASES = [
    ('billion_laughs.yaml', ['validate', '{h}/billion_laughs.yaml'],
     LAUGHS),
    ('binary_garbage.yaml', ['validate', '{h}/binary_garbage.yaml'],
     ['{h}/binary_garbage.yaml: binary data, not a YAML text file']),
    ('binary_no_nul.yaml', ['validate', '{h}/binary_no_nul.yaml'],
     ['{h}/binary_no_nul.yaml: not UTF-8 text (byte 0)']),
    ('chip_bandwidth_as_size.yaml', ['validate', '{h}/chip_bandwidth_as_size.yaml'],
     ["{h}/chip_bandwidth_as_size.yaml:10:25: mem.slice_capacity_bytes: unknown unit 'Gbps' in '30Gbps'; expected a size like 230MB or 220MiB ('Gbps' is a bandwidth unit)"]),
    ('chip_clock_list.yaml', ['validate', '{h}/chip_clock_list.yaml'],
     ['{h}/chip_clock_list.yaml:4:11: clock_hz: expected a frequency like 900MHz, got list']),
    ('chip_exponent_bomb.yaml', ['validate', '{h}/chip_exponent_bomb.yaml'],
     ["{h}/chip_exponent_bomb.yaml:4:11: clock_hz: '1e999999999Hz' is too large"]),
    ('chip_exponent_overflow.yaml', ['validate', '{h}/chip_exponent_overflow.yaml'],
     ["{h}/chip_exponent_overflow.yaml:4:11: clock_hz: '1e400MHz' is too large"]),
    ('chip_fractional_bytes.yaml', ['validate', '{h}/chip_fractional_bytes.yaml'],
     ["{h}/chip_fractional_bytes.yaml:11:19: mem.reserved_bytes: '1.5B' is not a whole number of bytes"]),
    ('chip_huge_int.yaml', ['validate', '{h}/chip_huge_int.yaml'],
     ['{h}/chip_huge_int.yaml:18:11: mxm.planes: an integer of 401 digits is above the maximum 1024']),
    ('chip_inf_efficiency.yaml', ['validate', '{h}/chip_inf_efficiency.yaml'],
     ['{h}/chip_inf_efficiency.yaml:38:15: c2c.efficiency: inf is not a finite number']),
    ('chip_int_too_many_digits.yaml', ['validate', '{h}/chip_int_too_many_digits.yaml'],
     ['{h}/chip_int_too_many_digits.yaml:18:11: mxm.planes: number with 5001 digits is too large']),
    ('chip_lowercase_unit.yaml', ['validate', '{h}/chip_lowercase_unit.yaml'],
     ["{h}/chip_lowercase_unit.yaml:10:25: mem.slice_capacity_bytes: unknown unit 'mib' in '2.5mib'; expected a size like 230MB or 220MiB"]),
    ('chip_nan_clock.yaml', ['validate', '{h}/chip_nan_clock.yaml'],
     ["{h}/chip_nan_clock.yaml:4:11: clock_hz: cannot read 'nanMHz'; expected a frequency like 900MHz"]),
    ('chip_nan_int.yaml', ['validate', '{h}/chip_nan_int.yaml'],
     ['{h}/chip_nan_int.yaml:18:11: mxm.planes: expected an integer, got a number nan']),
    ('chip_negative_size.yaml', ['plan', '--model', 'llama-3.2-1b', '--chip', '{h}/chip_negative_size.yaml'],
     ["{h}/chip_negative_size.yaml:10:25: mem.slice_capacity_bytes: '-2.5MiB' must be positive"]),
    ('chip_section_scalar.yaml', ['validate', '{h}/chip_section_scalar.yaml'],
     ['{h}/chip_section_scalar.yaml:8:6: mem: expected a mapping, got an integer']),
    ('chip_size_no_unit.yaml', ['validate', '{h}/chip_size_no_unit.yaml'],
     ['{h}/chip_size_no_unit.yaml:10:25: mem.slice_capacity_bytes: 2621440 has no unit; expected a size like 230MB or 220MiB']),
    ('chip_sram_1e30.yaml', ['plan', '--model', 'llama-3.2-1b', '--chip', '{h}/chip_sram_1e30.yaml'],
     ["{h}/chip_sram_1e30.yaml:10:25: mem.slice_capacity_bytes: '1e30B' is above the maximum 1.09951e+12"]),
    ('chip_time_as_frequency.yaml', ['validate', '{h}/chip_time_as_frequency.yaml'],
     ["{h}/chip_time_as_frequency.yaml:4:11: clock_hz: unknown unit 'ns' in '1ns'; expected a frequency like 900MHz ('ns' is a time unit)"]),
    ('chip_zero_clock.yaml', ['describe', '{h}/chip_zero_clock.yaml'],
     ["{h}/chip_zero_clock.yaml:4:11: clock_hz: '0MHz' must be positive"]),
    ('comment_only.yaml', ['validate', '{h}/comment_only.yaml'],
     ['{h}/comment_only.yaml: empty document; expected a mapping']),
    ('control_char.yaml', ['validate', '{h}/control_char.yaml'],
     ['{h}/control_char.yaml:3:14: YAML syntax error: unacceptable character #x0007 (special characters are not allowed)']),
    ('deep_block_nesting.yaml', ['validate', '{h}/deep_block_nesting.yaml'],
     ['{h}/deep_block_nesting.yaml:36:67: k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15.k16.k17.k18.k19.k20.k21.k22.k23.k24.k25.k26.k27.k28.k29.k30.k31.k32: nesting deeper than 32 levels']),
    ('deep_nesting.yaml', ['validate', '{h}/deep_nesting.yaml'],
     ['{h}/deep_nesting.yaml:3:39: name[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nesting deeper than 32 levels']),
    ('deeper_nesting.yaml', ['validate', '{h}/deeper_nesting.yaml'],
     ['{h}/deeper_nesting.yaml:3:39: name[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nesting deeper than 32 levels']),
    ('too_many_nodes.yaml', ['validate', '{h}/too_many_nodes.yaml'],
     ['{h}/too_many_nodes.yaml: more than 20000 YAML nodes; not a spec']),
    ('escape_in_key.yaml', ['validate', '{h}/escape_in_key.yaml'],
     ['{h}/escape_in_key.yaml:12:1: evil\\x1b[31mkey: unknown key (valid keys: activation, attention_pattern, attn_logit_softcap, experts, experts_per_token, ffn_size, final_logit_softcap, head_dim, heads, hidden_size, kv_heads, layers, max_context, name, norm, post_norms, qkv_bias, rope_theta, scale_embeddings, sliding_window, source, speculative_heads, tied_embeddings, vocab_size)']),
    ('key_not_scalar.yaml', ['validate', '{h}/key_not_scalar.yaml'],
     ['{h}/key_not_scalar.yaml:12:3: keys must be plain names']),
    ('kind_number.yaml', ['describe', '{h}/kind_number.yaml'],
     ['{h}/kind_number.yaml:1:7: kind: unknown kind 5']),
    ('latin1.yaml', ['validate', '{h}/latin1.yaml'],
     ['{h}/latin1.yaml: not UTF-8 text (byte 32)']),
    ('long_key.yaml', ['validate', '{h}/long_key.yaml'],
     ['{h}/long_key.yaml:12:1: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk... (1000 characters): unknown key (valid keys: activation, attention_pattern, attn_logit_softcap, experts, experts_per_token, ffn_size, final_logit_softcap, head_dim, heads, hidden_size, kv_heads, layers, max_context, name, norm, post_norms, qkv_bias, rope_theta, scale_embeddings, sliding_window, source, speculative_heads, tied_embeddings, vocab_size)']),
    ('long_value.yaml', ['validate', '{h}/long_value.yaml'],
     ["{h}/long_value.yaml:4:9: layers: expected an integer, got a string 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxx' (5002 characters)"]),
    ('merge_key.yaml', ['validate', '{h}/merge_key.yaml'],
     ['{h}/merge_key.yaml:4:1: YAML merge keys (<<) are not supported']),
    ('missing_kind.yaml', ['validate', '{h}/missing_kind.yaml'],
     ["{h}/missing_kind.yaml: kind: missing required key 'kind' (one of chip, system, model, scenario, gpu, gpu_system)"]),
    ('missing_version.yaml', ['validate', '{h}/missing_version.yaml'],
     ["{h}/missing_version.yaml: version: missing required key 'version' (current: 1)"]),
    ('model_billion_layers.yaml', ['validate', '{h}/model_billion_layers.yaml'],
     ['{h}/model_billion_layers.yaml:4:9: layers: 1000000000 is above the maximum 10000']),
    ('model_hidden_yes.yaml', ['validate', '{h}/model_hidden_yes.yaml'],
     ['{h}/model_hidden_yes.yaml:5:14: hidden_size: expected an integer, got a boolean True']),
    ('model_huge_vocab.yaml', ['plan', '--model', '{h}/model_huge_vocab.yaml'],
     ['{h}/model_huge_vocab.yaml:10:13: vocab_size: 1000000000000 is above the maximum 1e+08']),
    ('model_key_typo.yaml', ['describe', '{h}/model_key_typo.yaml'],
     ["{h}/model_key_typo.yaml:4:1: layer: unknown key; did you mean 'layers'? (valid keys: activation, attention_pattern, attn_logit_softcap, experts, experts_per_token, ffn_size, final_logit_softcap, head_dim, heads, hidden_size, kv_heads, layers, max_context, name, norm, post_norms, qkv_bias, rope_theta, scale_embeddings, sliding_window, source, speculative_heads, tied_embeddings, vocab_size)", "{h}/model_key_typo.yaml: layers: missing required key 'layers'"]),
    ('model_layers_float.yaml', ['plan', '--model', '{h}/model_layers_float.yaml'],
     ['{h}/model_layers_float.yaml:4:9: layers: expected an integer, got a number 16.5']),
    ('model_layers_string.yaml', ['validate', '{h}/model_layers_string.yaml'],
     ["{h}/model_layers_string.yaml:4:9: layers: expected an integer, got a string '16'"]),
    ('model_missing_layers.yaml', ['validate', '{h}/model_missing_layers.yaml'],
     ["{h}/model_missing_layers.yaml: layers: missing required key 'layers'"]),
    ('model_name_list.yaml', ['validate', '{h}/model_name_list.yaml'],
     ["{h}/model_name_list.yaml:3:7: name: expected a non-empty string, got a list ['a', 'b']"]),
    ('model_name_null.yaml', ['validate', '{h}/model_name_null.yaml'],
     ['{h}/model_name_null.yaml:3:6: name: expected a non-empty string, got nothing (null)']),
    ('model_zero_heads.yaml', ['plan', '--model', '{h}/model_zero_heads.yaml'],
     ['{h}/model_zero_heads.yaml:7:8: heads: 0 is below the minimum 1']),
    ('multi_document.yaml', ['validate', '{h}/multi_document.yaml'],
     ['{h}/multi_document.yaml:12:1: YAML syntax error: expected a single document in the stream, but found another document']),
    ('scalar_document.yaml', ['validate', '{h}/scalar_document.yaml'],
     ['{h}/scalar_document.yaml:1:1: expected a YAML mapping at the top level']),
    ('scenario_acceptance_above_one.yaml', ['run', '{h}/scenario_acceptance_above_one.yaml', '-o', '{out}'],
     ['{h}/scenario_acceptance_above_one.yaml:14:15: speculation.acceptance: 1.5 is outside [0, 1]']),
    ('scenario_acceptance_bad_trace.yaml', ['run', '{h}/scenario_acceptance_bad_trace.yaml'],
     ['{h}/scenario_acceptance_bad_trace.yaml:14:15: speculation.acceptance: {h}/trace_out_of_range.csv:3: accepted: 9 is outside [0, 4]']),
    ('scenario_acceptance_bool.yaml', ['run', '{h}/scenario_acceptance_bool.yaml'],
     ['{h}/scenario_acceptance_bool.yaml:14:15: speculation.acceptance: expected a number or a string, got a boolean']),
    ('scenario_acceptance_missing_trace.yaml', ['run', '{h}/scenario_acceptance_missing_trace.yaml'],
     ['{h}/scenario_acceptance_missing_trace.yaml:14:15: speculation.acceptance: acceptance trace file not found: {h}/traces/none.csv']),
    ('scenario_acceptance_nan.yaml', ['run', '{h}/scenario_acceptance_nan.yaml'],
     ['{h}/scenario_acceptance_nan.yaml:14:15: speculation.acceptance: nan is outside [0, 1]']),
    ('scenario_acceptance_negative.yaml', ['run', '{h}/scenario_acceptance_negative.yaml'],
     ['{h}/scenario_acceptance_negative.yaml:14:15: speculation.acceptance: -0.1 is outside [0, 1]']),
    ('scenario_acceptance_unknown.yaml', ['run', '{h}/scenario_acceptance_unknown.yaml', '-o', '{out}'],
     ["{h}/scenario_acceptance_unknown.yaml:14:15: speculation.acceptance: unknown acceptance preset 'leviathan-0.85' (and no such trace file); nearest presets: leviathan-0.8, leviathan-0.9, leviathan-0.7"]),
    ('scenario_batch_zero.yaml', ['trace', '{h}/scenario_batch_zero.yaml', '-o', '{out}/step.json'],
     ['{h}/scenario_batch_zero.yaml:6:8: batch: 0 is below the minimum 1']),
    ('scenario_context_too_long.yaml', ['run', '{h}/scenario_context_too_long.yaml', '-o', '{out}'],
     ["{h}/scenario_context_too_long.yaml:7:10: context: context 100000000 exceeds the model's max_context 131072"]),
    ('scenario_does_not_fit.yaml', ['trace', '{h}/scenario_does_not_fit.yaml', '-o', '{out}/step.json'],
     ['Llama 3.1 70B has no feasible split of 8 chips; 336 chips at tp 8 (42 stages) would fit']),
    ('scenario_draft_does_not_fit.yaml', ['run', '{h}/scenario_draft_does_not_fit.yaml', '-o', '{out}'],
     ['chip 0 (stage 0, embed..head) needs 70,721.9 MB of SRAM but has 226.5 MB usable: over by 70,495.4 MB (weights 70,553.7 MB); a single block does not fit in one chip at tensor parallelism 1']),
    ('scenario_missing_model.yaml', ['run', '{h}/scenario_missing_model.yaml'],
     ["{h}/scenario_missing_model.yaml: model: missing required key 'model'"]),
    ('scenario_model_directory.yaml', ['run', '{h}/scenario_model_directory.yaml'],
     ["{h}/scenario_model_directory.yaml:4:8: model: no model named '../hostile' (shipped: {models})"]),
    ('scenario_model_is_system.yaml', ['run', '{h}/scenario_model_is_system.yaml'],
     ["{h}/scenario_model_is_system.yaml:4:8: model: no model named 'groqnode-8' (shipped: {models})"]),
    ('scenario_precision_string.yaml', ['run', '{h}/scenario_precision_string.yaml'],
     ['{h}/scenario_precision_string.yaml:8:12: precision: expected a mapping, got a string']),
    ('scenario_self_reference.yaml', ['run', '{h}/scenario_self_reference.yaml'],
     ['{h}/scenario_self_reference.yaml:1:7: kind: expected a model spec, this file is a scenario']),
    ('scenario_speculation_list.yaml', ['run', '{h}/scenario_speculation_list.yaml'],
     ['{h}/scenario_speculation_list.yaml:8:14: speculation: expected a mapping, got a list']),
    ('scenario_speculation_unknown.yaml', ['run', '{h}/scenario_speculation_unknown.yaml'],
     ["{h}/scenario_speculation_unknown.yaml:12:3: speculation.gama: unknown key; did you mean 'gamma'? (valid keys: acceptance, curve, draft_chips, draft_model, gamma, heads, max_gamma, monte_carlo_passes, pipelined, strategy, tree_width)"]),
    ('scenario_tp_spans_nodes.yaml', ['run', '{h}/scenario_tp_spans_nodes.yaml', '-o', '{out}'],
     ['{h}/scenario_tp_spans_nodes.yaml:9:18: tensor_parallel: tensor parallelism 12 beyond a node must span whole nodes of 8 chips']),
    ('scenario_tp_uneven.yaml', ['trace', '{h}/scenario_tp_uneven.yaml', '-o', '{out}/step.json'],
     ["{h}/scenario_tp_uneven.yaml:8:18: tensor_parallel: tensor parallelism 3 must divide a node's 8 chips"]),
    ('scenario_zero_chips.yaml', ['trace', '{h}/scenario_zero_chips.yaml', '-o', '{out}/step.json'],
     ['{h}/scenario_zero_chips.yaml:8:8: chips: 0 is below the minimum 1']),
    ('syntax_bad_indent.yaml', ['validate', '{h}/syntax_bad_indent.yaml'],
     ['{h}/syntax_bad_indent.yaml:7:24: YAML syntax error: mapping values are not allowed here']),
    ('syntax_mapping_in_scalar.yaml', ['validate', '{h}/syntax_mapping_in_scalar.yaml'],
     ['{h}/syntax_mapping_in_scalar.yaml:3:12: YAML syntax error: mapping values are not allowed here']),
    ('syntax_tab_indent.yaml', ['validate', '{h}/syntax_tab_indent.yaml'],
     ["{h}/syntax_tab_indent.yaml:6:1: YAML syntax error: found character '\\t' that cannot start any token"]),
    ('syntax_unclosed_bracket.yaml', ['validate', '{h}/syntax_unclosed_bracket.yaml'],
     ["{h}/syntax_unclosed_bracket.yaml:5:12: YAML syntax error: expected ',' or ']', but got ':'"]),
    ('syntax_unclosed_quote.yaml', ['validate', '{h}/syntax_unclosed_quote.yaml'],
     ['{h}/syntax_unclosed_quote.yaml:12:1: YAML syntax error: found unexpected end of stream']),
    ('system_bandwidth_as_time.yaml', ['validate', '{h}/system_bandwidth_as_time.yaml'],
     ["{h}/system_bandwidth_as_time.yaml:13:26: links.global_hop_latency_ps: unknown unit 'GB/s' in '14.6GB/s'; expected a time like 0.6us or 250ns ('GB/s' is a bandwidth unit)"]),
    ('system_billion_racks.yaml', ['describe', '{h}/system_billion_racks.yaml'],
     ['{h}/system_billion_racks.yaml:8:10: topology.racks: 1000000000 is above the maximum 100000']),
    ('system_latency_rounds_to_zero.yaml', ['validate', '{h}/system_latency_rounds_to_zero.yaml'],
     ["{h}/system_latency_rounds_to_zero.yaml:12:25: links.local_hop_latency_ps: '0.1ps' rounds to zero ps"]),
    ('system_missing_chip.yaml', ['validate', '{h}/system_missing_chip.yaml'],
     ["{h}/system_missing_chip.yaml: chip: missing required key 'chip'"]),
    ('system_nested_unknown.yaml', ['validate', '{h}/system_nested_unknown.yaml'],
     ["{h}/system_nested_unknown.yaml:12:3: links.local_hop_latncy_ps: unknown key; did you mean 'local_hop_latency_ps'? (valid keys: bandwidth_bytes_per_s, global_hop_latency_ps, local_hop_latency_ps)", "{h}/system_nested_unknown.yaml:12:3: links.local_hop_latency_ps: missing required key 'local_hop_latency_ps'"]),
    ('system_too_many_chips.yaml', ['validate', '{h}/system_too_many_chips.yaml'],
     ["{h}/system_too_many_chips.yaml:10:26: topology.global_links_per_chip: 1003 links per chip exceed the chip's 16", '{h}/system_too_many_chips.yaml:6:19: topology.chips_per_node: 999001 chip-to-chip links is beyond any system (lpusim models at most 500000)']),
    ('system_too_many_links.yaml', ['describe', '{h}/system_too_many_links.yaml'],
     ['{h}/system_too_many_links.yaml:42:19: topology.chips_per_node: 999001 chip-to-chip links is beyond any system (lpusim models at most 500000)']),
    ('system_zero_chips_per_node.yaml', ['validate', '{h}/system_zero_chips_per_node.yaml'],
     ['{h}/system_zero_chips_per_node.yaml:6:19: topology.chips_per_node: 0 is below the minimum 1']),
    ('trace_bad_bits.csv', ['speculate', '--acceptance', '{h}/trace_bad_bits.csv', '--cost-ratio', '0.02'],
     ["command line: --acceptance: {h}/trace_bad_bits.csv:3: accepted_tokens: '11x1' is not a string of 0/1 digits"]),
    ('trace_bad_header.csv', ['speculate', '--acceptance', '{h}/trace_bad_header.csv', '--cost-ratio', '0.02'],
     ["command line: --acceptance: {h}/trace_bad_header.csv:1: header: needs a column 'accepted' or 'accepted_tokens' (found: passes, length)"]),
    ('trace_bad_header.csv#run', ['run', 'tests/data/small-specdec.yaml', '--acceptance', '{h}/trace_bad_header.csv'],
     ["command line: --acceptance: {h}/trace_bad_header.csv:1: header: needs a column 'accepted' or 'accepted_tokens' (found: passes, length)"]),
    ('trace_binary.jsonl', ['speculate', '--acceptance', '{h}/trace_binary.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_binary.jsonl:1: trace: binary data, not a CSV or JSONL text file']),
    ('trace_drafted_zero.jsonl', ['speculate', '--acceptance', '{h}/trace_drafted_zero.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_drafted_zero.jsonl:1: drafted: 0 must be >= 1']),
    ('trace_empty.csv', ['speculate', '--acceptance', '{h}/trace_empty.csv', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_empty.csv:1: trace: file is empty']),
    ('trace_empty.jsonl', ['speculate', '--acceptance', '{h}/trace_empty.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_empty.jsonl:1: trace: file is empty']),
    ('trace_empty.jsonl#run', ['run', 'tests/data/small-specdec.yaml', '--acceptance', '{h}/trace_empty.jsonl'],
     ['command line: --acceptance: {h}/trace_empty.jsonl:1: trace: file is empty']),
    ('trace_garbage.csv', ['speculate', '--acceptance', '{h}/trace_garbage.csv', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_garbage.csv:1: trace: not UTF-8 text (byte 0)']),
    ('trace_garbage.csv#run', ['run', 'tests/data/small-specdec.yaml', '--acceptance', '{h}/trace_garbage.csv'],
     ['command line: --acceptance: {h}/trace_garbage.csv:1: trace: not UTF-8 text (byte 0)']),
    ('trace_header_only.csv', ['speculate', '--acceptance', '{h}/trace_header_only.csv', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_header_only.csv:1: trace: no passes after the header']),
    ('trace_huge_drafted.jsonl', ['speculate', '--acceptance', '{h}/trace_huge_drafted.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_huge_drafted.jsonl:1: drafted: 1000000000000 is above the limit 4096']),
    ('trace_huge_drafted.jsonl#run', ['run', 'tests/data/small-specdec.yaml', '--acceptance', '{h}/trace_huge_drafted.jsonl'],
     ['command line: --acceptance: {h}/trace_huge_drafted.jsonl:1: drafted: 1000000000000 is above the limit 4096']),
    ('trace_huge_int.jsonl', ['speculate', '--acceptance', '{h}/trace_huge_int.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_huge_int.jsonl:1: line: invalid JSON (a number or nesting too large)']),
    ('trace_invalid.jsonl', ['speculate', '--acceptance', '{h}/trace_invalid.jsonl', '--cost-ratio', '0.02'],
     ["command line: --acceptance: {h}/trace_invalid.jsonl:2: line: invalid JSON (Expecting ',' delimiter)"]),
    ('trace_nan.jsonl', ['speculate', '--acceptance', '{h}/trace_nan.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_nan.jsonl:1: accepted: NaN is not an integer']),
    ('trace_negative.csv', ['speculate', '--acceptance', '{h}/trace_negative.csv', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_negative.csv:2: accepted: -1 is outside [0, 4]']),
    ('trace_not_int.csv', ['speculate', '--acceptance', '{h}/trace_not_int.csv', '--cost-ratio', '0.02'],
     ["command line: --acceptance: {h}/trace_not_int.csv:2: accepted: '2.5' is not an integer"]),
    ('trace_not_object.jsonl', ['speculate', '--acceptance', '{h}/trace_not_object.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_not_object.jsonl:1: line: expected a JSON object, got [2, 4]']),
    ('trace_out_of_range.csv', ['speculate', '--acceptance', '{h}/trace_out_of_range.csv', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_out_of_range.csv:3: accepted: 9 is outside [0, 4]']),
    ('trace_out_of_range.csv#run', ['run', 'tests/data/small-specdec.yaml', '--acceptance', '{h}/trace_out_of_range.csv'],
     ['command line: --acceptance: {h}/trace_out_of_range.csv:3: accepted: 9 is outside [0, 4]']),
    ('trace_out_of_range.jsonl', ['speculate', '--acceptance', '{h}/trace_out_of_range.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_out_of_range.jsonl:2: accepted: 5 is outside [0, 4]']),
    ('trace_tokens_not_bool.jsonl', ['speculate', '--acceptance', '{h}/trace_tokens_not_bool.jsonl', '--cost-ratio', '0.02'],
     ['command line: --acceptance: {h}/trace_tokens_not_bool.jsonl:1: tokens: element 1 is 1 (expected true or false)']),
    ('utf16.yaml', ['validate', '{h}/utf16.yaml'],
     ['{h}/utf16.yaml: binary data, not a YAML text file']),
    ('version_bool.yaml', ['validate', '{h}/version_bool.yaml'],
     ['{h}/version_bool.yaml:2:10: version: unsupported version True (this lpusim reads version 1)']),
    ('version_string.yaml', ['validate', '{h}/version_string.yaml'],
     ["{h}/version_string.yaml:2:10: version: unsupported version '1' (this lpusim reads version 1)"]),
    ('whitespace_only.yaml', ['validate', '{h}/whitespace_only.yaml'],
     ['{h}/whitespace_only.yaml: empty file; expected a YAML mapping']),
    ('zero_bytes.yaml', ['validate', '{h}/zero_bytes.yaml'],
     ['{h}/zero_bytes.yaml: empty file; expected a YAML mapping']),
    ('flag_chips_zero', ['run', '--chips', '0'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: chips: 0 is below the minimum 1 (overridden)']),
    ('flag_chips_not_int', ['run', '--chips', 'x'],
     ["command line: --chips: invalid int value: 'x' (see 'lpusim run --help')"]),
    ('flag_chips_huge', ['run', '--chips', '100000000000000000000'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: chips: 100000000000000000000 is above the maximum 1e+06 (overridden)']),
    ('flag_context_negative', ['run', '--context', '-1'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: context: -1 is below the minimum 1 (overridden)']),
    ('flag_context_window_zero', ['run', '--context-window', '0'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: context_window: 0 is below the minimum 1 (overridden)']),
    ('flag_context_beyond_window', ['run', '--context', '4096', '--context-window', '2048'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: context: context 4096 exceeds the context_window 2048 (overridden)']),
    ('flag_batch_zero', ['trace', '--batch', '0', '-o', '{out}/step.json'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: batch: 0 is below the minimum 1 (overridden)']),
    ('flag_gamma_not_int', ['run', '--draft', 'llama-3.2-1b', '--gamma', 'x'],
     ["command line: --gamma: expected a whole number or 'auto', got 'x'"]),
    ('flag_gamma_zero', ['run', 'tests/data/small-specdec.yaml', '--gamma', '0'],
     ['tests/data/small-specdec.yaml: speculation.gamma: 0 is below the minimum 1 (overridden)']),
    ('flag_pipeline_stages_zero', ['speculate', '--acceptance', '0.9', '--cost-ratio', '0.02',
                                   '--pipeline-stages', '0'],
     ['command line: --pipeline-stages: must be between 1 and 1000000, got 0']),
    ('flag_async_without_drafter', ['run', '--strategy', 'async'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: speculation.draft_model: strategy 'async' needs a draft_model"]),
    ('flag_heads_zero', ['run', '--heads', '0'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: speculation.heads: 0 is below the minimum 1 (overridden)']),
    ('flag_set_unknown_key', ['run', '--set', 'badkey=1'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: badkey: unknown key (valid keys: batch, chips, context, context_window, expert_parallel, fidelity, model, name, precision, seed, speculation, system, tensor_parallel) (overridden)']),
    ('flag_set_unknown_nested_key', ['run', '--set', 'precision.weight=int4'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: precision.weight: unknown key; did you mean 'weights'? (valid keys: activations, kv, logits, weights) (overridden)"]),
    ('flag_set_no_equals', ['run', '--set', 'chips'],
     ["command line: --set: expected KEY=VALUE, got 'chips'"]),
    ('flag_set_empty_key', ['run', '--set', '=1'],
     ["command line: --set: '' is not a dotted field name (e.g. system.chip.clock_hz)"]),
    ('flag_set_bad_key', ['run', '--set', 'a..b=1'],
     ["command line: --set: 'a..b' is not a dotted field name (e.g. system.chip.clock_hz)"]),
    ('flag_set_bad_value', ['run', '--set', 'chips=[1'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: chips: expected an integer, got a string '[1' (overridden)"]),
    ('flag_set_not_a_section', ['run', '--set', 'name.x=1'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: name.x: cannot override: 'name' is not a section"]),
    ('flag_set_bad_unit', ['run', '--set', 'system.links.global_hop_latency_ps=0.3'],
     ['{root}/chip_configs/groqrack-576.yaml: links.global_hop_latency_ps: 0.3 has no unit; expected a time like 0.6us or 250ns (overridden)']),
    ('flag_set_negative_unit', ['run', '--set', 'system.chip.clock_hz=-1GHz'],
     ["{root}/chip_configs/groqchip1.yaml: clock_hz: '-1GHz' must be positive (overridden)"]),
    ('flag_tp_cannot_place', ['run', '--model', 'llama-3.2-1b', '--system', 'groqnode-8', '--set', 'tensor_parallel=3'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: tensor_parallel: tensor parallelism 3 must divide a node's 8 chips (overridden)"]),
    ('flag_does_not_fit', ['run', '--model', 'llama-3.1-70b', '--system', 'groqnode-8', '--chips', '8', '-o', '{out}'],
     ['Llama 3.1 70B has no feasible split of 8 chips; 440 chips at tp 8 (55 stages) would fit']),
    ('flag_unknown_model', ['run', '--model', 'llama-3.1-8bb'],
     ["command line: --model: no model file or name 'llama-3.1-8bb'; did you mean 'llama-3.1-8b'? (shipped: {models})"]),
    ('flag_unknown_system_file', ['run', '--system', '{h}/nonexistent.yaml'],
     ["command line: --system: no system file or name '{h}/nonexistent.yaml' (shipped: {systems})"]),
    ('flag_format', ['run', '--format', 'xml'],
     ["command line: --format: invalid choice: 'xml' (choose from 'table', 'json', 'csv') (see 'lpusim run --help')"]),
    ('flag_unknown_option', ['run', '--bogus'],
     ["command line: unrecognized arguments: --bogus (see 'lpusim --help')"]),
    ('flag_no_command', [],
     ["command line: the following arguments are required: COMMAND (see 'lpusim --help')"]),
    ('flag_unknown_command', ['simulate'],
     ["command line: COMMAND: invalid choice: 'simulate' (choose from {commands}) "
      "(see 'lpusim --help')"]),
    ('flag_acceptance_above_one_run', ['run', '--draft', 'llama-3.2-1b', '--acceptance', '1.5'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: speculation.acceptance: 1.5 is outside [0, 1] (overridden)']),
    ('flag_acceptance_nan_run', ['run', '--draft', 'llama-3.2-1b', '--acceptance', 'nan'],
     ['{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: speculation.acceptance: nan is outside [0, 1] (overridden)']),
    ('flag_acceptance_unknown_preset', ['run', '--draft', 'llama-3.2-1b', '--acceptance', 'leviathan'],
     ["command line: --acceptance: unknown acceptance preset 'leviathan' (and no such trace file); nearest presets: leviathan-0.6, leviathan-0.7, leviathan-0.8"]),
    ('flag_acceptance_missing_file', ['run', 'tests/data/small-specdec.yaml', '--acceptance', '{h}/none.csv'],
     ['command line: --acceptance: acceptance trace file not found: {h}/none.csv']),
    ('flag_acceptance_directory', ['speculate', '--acceptance', '{h}', '--cost-ratio', '0.02'],
     ['command line: --acceptance: acceptance trace {h} is a directory']),
    ('flag_acceptance_above_one', ['speculate', '--acceptance', '1.5', '--cost-ratio', '0.02'],
     ['command line: --acceptance: acceptance probability a must be finite and in [0, 1], got 1.5']),
    ('flag_acceptance_negative_list', ['speculate', '--acceptance', '0.9,-0.1', '--cost-ratio', '0.02'],
     ['command line: --acceptance: acceptance probability probs[1] must be finite and in [0, 1], got -0.1']),
    ('flag_acceptance_bad_mix', ['speculate', '--acceptance', 'mix:0.5@0.9,0.6@0.5', '--cost-ratio', '0.02'],
     ['command line: --acceptance: mixture weights must sum to 1, got 1.1']),
    ('flag_speculate_gamma_not_int', ['speculate', '--acceptance', '0.8', '--cost-ratio', '0.02', '--gamma', 'x'],
     ["command line: --gamma: expected a whole number, got 'x'"]),
    ('flag_speculate_gamma_huge', ['speculate', '--acceptance', '0.8', '--cost-ratio', '0.02', '--gamma', '100000000000'],
     ['command line: --gamma: gamma must be <= 4096, got 100000000000']),
    ('flag_speculate_max_gamma_huge', ['speculate', '--acceptance', '0.8', '--cost-ratio', '0.02', '--max-gamma', '1000000000'],
     ['max_gamma must be <= 4096, got 1000000000']),
    ('flag_cost_ratio_nan', ['speculate', '--acceptance', '0.8', '--cost-ratio', 'nan'],
     ['command line: --cost-ratio: must be a finite number >= 0, got nan']),
    ('flag_cost_ratio_negative', ['speculate', '--acceptance', '0.8', '--cost-ratio', '-1'],
     ['command line: --cost-ratio: must be a finite number >= 0, got -1.0']),
    ('flag_cost_ratio_not_number', ['speculate', '--acceptance', '0.8', '--cost-ratio', 'cheap'],
     ["command line: --cost-ratio: invalid float value: 'cheap' (see 'lpusim speculate --help')"]),
    ('flag_run_tp_zero', ['run', '--tp', '0'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: tensor_parallel: 0 is below the minimum 1 (overridden)"]),
    ('flag_run_tp_not_dividing_a_node', ['run', '--tp', '3'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: tensor_parallel: tensor parallelism 3 must divide a node's 8 chips (overridden)"]),
    ('flag_run_tp_too_small', ['run', '--tp', '2'],
     ['Llama 3.1 70B: one placement block does not fit a chip at tensor parallelism 2']),
    ('flag_plan_tp_zero', ['plan', '--model', 'llama-3.2-1b', '--tp', '0'],
     ['command line: --tp: must be at least 1, got 0']),
    ('flag_plan_tp_huge', ['plan', '--model', 'llama-3.2-1b', '--tp', '100000'],
     ['command line: --tp: must be at most 4096, got 100000']),
    ('flag_plan_context_huge', ['plan', '--model', 'llama-3.2-1b', '--context', '1000000000'],
     ['command line: --context: must be at most 100000000, got 1000000000']),
    ('flag_plan_does_not_fit', ['plan', '--model', 'llama-3.1-405b', '--tp', '1'],
     ["one block of Llama 3.1 405B does not fit in a chip's 226492416 usable bytes at tensor parallelism 1"]),
    ('flag_plan_unknown_model', ['plan', '--model', 'llama-4'],
     ["command line: --model: no model file or name 'llama-4'; did you mean 'llama-3-8b'? (shipped: {models})"]),
    ('flag_plan_model_is_chip', ['plan', '--model', 'chip_configs/groqchip1.yaml'],
     ['chip_configs/groqchip1.yaml:6:7: kind: expected a model spec, this file is a chip']),
    ('flag_trace_chip_range', ['trace', '--chip-range', '5:2', '-o', '{out}/step.json'],
     ["command line: --chip-range: empty range '5:2'"]),
    ('flag_trace_chip_range_garbage', ['trace', '--chip-range', 'a:b', '-o', '{out}/step.json'],
     ["command line: --chip-range: expected A:B with whole numbers, got 'a:b'"]),
    ('flag_output_under_file', ['run', '-o', '{h}/zero_bytes.yaml/out'],
     ["command line: --output: '{h}/zero_bytes.yaml/out' cannot be created: {root}/{h}/zero_bytes.yaml is not a directory"]),
    ('flag_output_is_directory', ['trace', '-o', '{h}'],
     ["command line: --output: '{h}' is a directory, not a file"]),
    ('flag_output_is_file', ['run', '-o', '{h}/zero_bytes.yaml'],
     ["command line: --output: '{h}/zero_bytes.yaml' exists and is not a directory"]),
    ('path_directory', ['validate', '{h}'],
     ['{h}: is a directory, not a file']),
    ('path_missing', ['validate', '{h}/nonexistent.yaml'],
     ['{h}/nonexistent.yaml: no such file']),
    ('path_under_file', ['describe', '{h}/zero_bytes.yaml/chip.yaml'],
     ['{h}/zero_bytes.yaml/chip.yaml: cannot read: Not a directory']),
    ('validate_many', ['validate', '{h}/model_zero_heads.yaml', '{h}/chip_zero_clock.yaml'],
     ['{h}/model_zero_heads.yaml:7:8: heads: 0 is below the minimum 1', "{h}/chip_zero_clock.yaml:4:11: clock_hz: '0MHz' must be positive"]),
    # issue 19's second corpus, by class. Values YAML can express:
    ('sweep_version_bool.yaml', ['validate', '{h}/sweep_version_bool.yaml'],
     ['{h}/sweep_version_bool.yaml:2:10: version: unsupported version True (this lpusim reads version 1)']),
    ('sweep_grid_date.yaml', ['sweep', '{h}/sweep_grid_date.yaml', '-o', '{out}/r.jsonl'],
     ['{h}/sweep_grid_date.yaml:6:10: grid.name[0]: a date (2024-01-01) is not a value lpusim reads; quote it to make it a string']),
    ('sweep_grid_binary.yaml', ['sweep', '{h}/sweep_grid_binary.yaml', '-o', '{out}/r.jsonl'],
     ['{h}/sweep_grid_binary.yaml:6:33: grid.speculation.acceptance[1]: binary data (!!binary, 5 bytes) is not a value lpusim reads']),
    ('sweep_grid_kind.yaml', ['validate', '{h}/sweep_grid_kind.yaml'],
     ["{h}/sweep_grid_kind.yaml:6:10: grid.kind[0]: 'chip': cannot override 'kind': it says what the file is, it is not a setting",
      "{h}/sweep_grid_kind.yaml:6:16: grid.kind[1]: 'model': cannot override 'kind': it says what the file is, it is not a setting"]),
    ('flag_set_version', ['run', '--set', 'version=99'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: version: cannot override 'version': it says what the file is, it is not a setting"]),
    ('flag_set_kind', ['run', '--set', 'kind=chip', '-o', '{out}'],
     ["{root}/workloads/scenarios/llama-3.1-70b-groqrack-576.yaml: kind: cannot override 'kind': it says what the file is, it is not a setting"]),
    ('flag_set_nested_kind', ['run', '--set', 'system.kind=model'],
     ["{root}/chip_configs/groqrack-576.yaml: system.kind: cannot override 'kind': it says what the file is, it is not a setting"]),
    ('flag_calibrate_unknown_hypothesis', ['calibrate', '--hypothesis', 'collective+windw', '-o', '{out}'],
     ["command line: --hypothesis: unknown hypothesis 'collective+windw'; expected one of collective+window, collective, collective+window+spares, barrier+window, collective+barrier+window, collective+feed+window, collective+deskew+window, deskew-catch-all"]),
    ('flag_empty_scenario', ['run', '', '-o', '{out}'],
     ['command line: SCENARIO: is empty; give a file or a shipped name (or leave it out for the default)']),
    ('flag_empty_scenario_compare', ['compare', 'tests/data/small-specdec.yaml', ' '],
     ['command line: SCENARIO: is empty; give a file or a shipped name (or leave it out for the default)']),
    ('flag_empty_scenario_trace', ['trace', '', '-o', '{out}/t.json'],
     ['command line: SCENARIO: is empty; give a file or a shipped name (or leave it out for the default)']),
    ('flag_empty_file_validate', ['validate', ''],
     ['command line: FILE: is empty; give a file or a shipped name (or leave it out for the default)']),
    # errors at the right place
    ('sweep_base_invalid.yaml', ['sweep', '{h}/sweep_base_invalid.yaml', '-o', '{out}/r.jsonl'],
     ['{h}/sweep_base_invalid_scenario.yaml:6:8: batch: 0 is below the minimum 1']),
    ('sweep_base_invalid_scenario.yaml', ['validate', '{h}/sweep_base_invalid_scenario.yaml'],
     ['{h}/sweep_base_invalid_scenario.yaml:6:8: batch: 0 is below the minimum 1']),
    ('scenario_acceptance_list_above_one.yaml', ['validate', '{h}/scenario_acceptance_list_above_one.yaml'],
     ["{h}/scenario_acceptance_list_above_one.yaml:14:15: speculation.acceptance: position 3: acceptance 1.2 is outside [0, 1] in '0.9,0.8,1.2'"]),
    ('scenario_acceptance_mix_above_one.yaml', ['run', '{h}/scenario_acceptance_mix_above_one.yaml', '-o', '{out}'],
     ["{h}/scenario_acceptance_mix_above_one.yaml:14:15: speculation.acceptance: mixture part 2: acceptance 1.5 is outside [0, 1] in 'mix:0.5@0.9,0.5@1.5'"]),
    # physics that validates
    ('chip_link_bandwidth_zero.yaml', ['validate', '{h}/chip_link_bandwidth_zero.yaml'],
     ['{h}/chip_link_bandwidth_zero.yaml:46:26: c2c.lane_rate_bytes_per_s: 1 lanes x 1 B/s x efficiency 0.5 rounds to a link bandwidth of 0 B/s']),
    ('flag_link_bandwidth_zero', ['run', '--model', 'llama-3.2-1b', '--system', 'groqnode-8', '--set', 'system.chip.c2c.lanes_per_link=1',
                                  '--set', 'system.chip.c2c.lane_rate_bytes_per_s=1B/s', '--set', 'system.chip.c2c.efficiency=0.5'],
     ['{root}/chip_configs/groqchip1.yaml: c2c.lane_rate_bytes_per_s: 1 lanes x 1 B/s x efficiency 0.5 rounds to a link bandwidth of 0 B/s (overridden)']),
    ('system_node_1000_chips.yaml', ['validate', '{h}/system_node_1000_chips.yaml'],
     ["{h}/system_node_1000_chips.yaml:10:26: topology.global_links_per_chip: 999 links per chip exceed the chip's 16"]),
    # resources
    ('flag_workers_huge', ['sweep', 'tests/data/sweep-200.yaml', '-o', '{out}/r.jsonl', '--workers', '1000000'],
     [f'command line: --workers: must be between 1 and {cli.MAX_WORKERS} (4 x the {os.cpu_count() or 1} cores), got 1000000']),
    ('flag_workers_zero', ['sweep', 'tests/data/sweep-200.yaml', '-o', '{out}/r.jsonl', '--workers', '0'],
     [f'command line: --workers: must be between 1 and {cli.MAX_WORKERS} (4 x the {os.cpu_count() or 1} cores), got 0']),
    # files of the wrong schema: one typed reader of results files
    ('results_missing_fields.jsonl', ['report', '{h}/results_missing_fields.jsonl', '-o', '{out}'],
     ["{h}/results_missing_fields.jsonl:1: scenario: missing required field 'scenario' (not an lpusim sweep result line)"]),
    ('results_wrong_type.jsonl', ['report', '{h}/results_wrong_type.jsonl', '-o', '{out}'],
     ["{h}/results_wrong_type.jsonl:2: chips: expected an integer, got a string '8' (not an lpusim sweep result line)"]),
    ('results_other_shape.jsonl', ['report', '{h}/results_other_shape.jsonl', '-o', '{out}'],
     ["{h}/results_other_shape.jsonl:1: point: missing required field 'point' (not an lpusim sweep result line)"]),
    ('results_not_object.jsonl', ['report', '{h}/results_not_object.jsonl', '-o', '{out}'],
     ['{h}/results_not_object.jsonl:1: line: expected a JSON object, got a list (not an lpusim sweep result line)']),
    ('results_not_json', ['report', '{h}/model_zero_heads.yaml', '-o', '{out}'],
     ['{h}/model_zero_heads.yaml:1: not a JSON object line (is this an lpusim results file?)']),
    # outputs
    ('flag_sweep_output_other_kind', ['sweep', 'tests/data/sweep-200.yaml', '-o', '{h}/results_other_shape.jsonl'],
     ["command line: --output: '{h}/results_other_shape.jsonl' exists and is not an lpusim results file; refusing to append to it",
      "{h}/results_other_shape.jsonl:1: point: missing required field 'point' (not an lpusim sweep result line)"]),
    ('flag_output_name_too_long', ['trace', '-o', '{out}/' + 'n' * 300 + '.json'],
     ["command line: --output: '{out}/" + 'n' * 300 + ".json' has a name of 305 bytes; the file system allows 255"]),
]


def _commands() -> str:
    sub = next(a for a in cli.build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    return ", ".join(repr(c) for c in sub.choices)


def _fill(text: str, out: Path) -> str:
    subs = {"{h}": H, "{root}": str(ROOT), "{out}": str(out), "{commands}": _commands()}
    subs |= {"{" + k + "s}": ", ".join(sorted(shipped(k))) for k in ("model", "system", "chip")}
    for k, v in subs.items():
        text = text.replace(k, v)
    return text


def test_corpus_is_complete():
    used = {a.split("/", 1)[1] for _, argv, _ in CASES for a in argv if a.startswith("{h}/")}
    used = {u.split("/")[0] for u in used}
    files = {p.name for p in HOSTILE.iterdir()}
    assert files <= used, f"files without a case: {sorted(files - used)}"
    assert len(files) >= 60
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    rc, stdout, stderr = run_main([_fill(a, out) for a in argv], capsys)
    assert stderr.splitlines() == [f"lpusim: error: {_fill(m, out)}" for m in expected]
    assert rc == 2
    assert stdout == ""
    assert not out.exists(), "an output was left behind"


# a sample through a real process: exit status, nothing but the expected lines on stderr
SAMPLE = ["syntax_unclosed_bracket.yaml", "binary_garbage.yaml", "chip_exponent_bomb.yaml",
          "deeper_nesting.yaml", "flag_chips_not_int", "trace_huge_drafted.jsonl#run",
          "scenario_does_not_fit.yaml", "flag_speculate_max_gamma_huge"]


@pytest.mark.parametrize("case", SAMPLE)
def test_real_process(case, tmp_path):
    _, argv, expected = next(c for c in CASES if c[0] == case)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "lpusim.cli", *(_fill(a, out) for a in argv)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "LPUSIM_DEBUG": ""})
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"lpusim: error: {_fill(m, out)}" for m in expected]
    assert p.stdout == ""
    assert not out.exists()


# inputs made at test time: too big to keep in git, or not plain files


def test_huge_file(tmp_path, capsys):
    big = tmp_path / "huge.yaml"
    big.write_text("kind: model\nversion: 1\n" + "# padding\n" * 500_000)   # ~5 MB
    rc, out, err = run_main(["validate", str(big)], capsys)
    size = big.stat().st_size
    assert err == f"lpusim: error: {big}: file is {size} bytes; the limit is 4194304\n"
    assert rc == 2 and out == ""


@pytest.mark.parametrize("body", ["k{i}: {i}\n", "- {i}\n", "[{i}], "])
def test_largest_allowed_file_is_quick(body, tmp_path, capsys):
    """Just under the size limit and full of values: refused after a bounded amount of work."""
    import time
    f = tmp_path / "big.yaml"
    parts, size, i = ["kind: model\nversion: 1\nx:\n" if body[0] == "-" else
                      "kind: model\nversion: 1\n" if body[0] == "k" else "x: ["], 0, 0
    while size < 4 * 1024 * 1024 - 100:
        parts.append(body.format(i=i))
        size += len(parts[-1])
        i += 1
    f.write_text("".join(parts) + ("]\n" if body[0] == "[" else ""))
    t = time.perf_counter()
    rc, out, err = run_main(["validate", str(f)], capsys)
    assert time.perf_counter() - t < 10
    assert err == f"lpusim: error: {f}: more than 20000 YAML nodes; not a spec\n"
    assert rc == 2 and out == ""


@pytest.mark.parametrize("libyaml", [True, False])
def test_a_file_nested_very_deep_is_refused_quickly(libyaml, tmp_path, capsys, monkeypatch):
    """However deep the nesting, the walk stops soon after the first node too deep: the
    pure-Python parser (which runs where libyaml is absent, or refuses deep nesting, as PyYAML
    6.0.4's does) takes time quadratic in the depth it reaches."""
    import time

    from lpusim.config import yamlio
    if not libyaml:
        monkeypatch.setattr(yamlio, "_FAST", None)
    f = tmp_path / "deep.yaml"
    depth = 1_000_000 if libyaml else 20_000    # before the stop, 20,000 levels took minutes
    f.write_text("kind: model\nversion: 1\nname: " + "[" * depth + "1" + "]" * depth + "\n")
    t = time.perf_counter()
    rc, out, err = run_main(["validate", str(f)], capsys)
    assert time.perf_counter() - t < 10
    path = "name" + "[0]" * yamlio.MAX_DEPTH
    assert err == (f"lpusim: error: {f}:3:{7 + yamlio.MAX_DEPTH}: {path}: nesting deeper "
                   f"than {yamlio.MAX_DEPTH} levels\n")
    assert rc == 2 and out == ""


def test_huge_acceptance_trace(tmp_path, capsys):
    from lpusim.speculative.acceptance import MAX_TRACE_BYTES
    big = tmp_path / "huge.csv"
    with open(big, "wb") as f:
        f.truncate(MAX_TRACE_BYTES + 1)                 # sparse: no disk, no time
    rc, out, err = run_main(["speculate", "--acceptance", str(big), "--cost-ratio", "0.1"],
                            capsys)
    assert err == (f"lpusim: error: command line: --acceptance: {big}:1: trace: file is "
                   f"{MAX_TRACE_BYTES + 1} bytes; the limit is {MAX_TRACE_BYTES}\n")
    assert rc == 2 and out == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_file(tmp_path, capsys):
    f = tmp_path / "secret.yaml"
    f.write_text("kind: model\n")
    f.chmod(0)
    rc, out, err = run_main(["validate", str(f)], capsys)
    assert err == f"lpusim: error: {f}: cannot read: Permission denied\n"
    assert rc == 2


def test_unreadable_file_as_root_still_clean(tmp_path, capsys):
    """chmod 000 (root reads it regardless): the content decides, never a traceback."""
    f = tmp_path / "secret.yaml"
    f.write_text("kind: model\nversion: 1\n")
    f.chmod(0)
    rc, _, err = run_main(["validate", str(f)], capsys)
    assert rc == 2
    assert err.startswith(f"lpusim: error: {f}")
    assert all(ln.startswith("lpusim: error: ") for ln in err.splitlines())


@pytest.mark.parametrize("make", ["fifo", "dev_zero"])
def test_not_a_regular_file(make, tmp_path):
    """A FIFO would block forever and /dev/zero never ends: rejected before reading."""
    if make == "fifo":
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
        if not path.exists() or not stat.S_ISCHR(path.stat().st_mode):
            pytest.skip("no /dev/zero")
    for argv in (["validate", str(path)],
                 ["speculate", "--acceptance", str(path), "--cost-ratio", "0.1"]):
        p = subprocess.run([sys.executable, "-m", "lpusim.cli", *argv], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2
        assert len(p.stderr.splitlines()) == 1
        assert "not a regular file" in p.stderr


# errors that are not bad input


def test_internal_error_is_short_and_nonzero(monkeypatch, capsys):
    def boom(args):
        raise TypeError("boom")
    monkeypatch.setitem(cli.COMMANDS, "validate", boom)
    monkeypatch.delenv("LPUSIM_DEBUG", raising=False)
    rc, out, err = run_main(["validate", "x.yaml"], capsys)
    assert rc == 1
    assert err == ("lpusim: internal error: TypeError: boom (a bug in lpusim; LPUSIM_DEBUG=1 "
                   "shows the traceback)\n")
    monkeypatch.setenv("LPUSIM_DEBUG", "1")
    with pytest.raises(TypeError, match="boom"):
        cli.main(["validate", "x.yaml"])


@pytest.mark.parametrize("exc,expected", [
    (PermissionError(13, "Permission denied", "/results/x.json"),
     "/results/x.json: Permission denied"),
    (AcceptanceError("gamma must be <= 4096, got 5000"), "gamma must be <= 4096, got 5000"),
    (GraphError("positions and batch must be >= 1"), "positions and batch must be >= 1"),
    (TopologyError("no route from chips [0] to [9]"), "no route from chips [0] to [9]"),
    (InputError("two\nlines"), "two\\nlines"),
    (RecursionError("maximum recursion depth exceeded"), "input nested too deeply"),
    (MemoryError(), "out of memory (input too large?)"),
])
def test_bad_input_exits_2(exc, expected, monkeypatch, capsys):
    def fail(args):
        raise exc
    monkeypatch.setitem(cli.COMMANDS, "validate", fail)
    monkeypatch.delenv("LPUSIM_DEBUG", raising=False)
    rc, out, err = run_main(["validate", "x.yaml"], capsys)
    assert (rc, out, err) == (2, "", f"lpusim: error: {expected}\n")


@pytest.mark.parametrize("exc,expected", [
    (ValueError("gamma must be <= 4096, got 5000"), "ValueError: gamma must be <= 4096, got 5000"),
    (ValueError("two\nlines"), "ValueError: two\\nlines"),
    (OverflowError("int too large to convert to float"),
     "OverflowError: int too large to convert to float"),
    (KeyError("weights"), "KeyError: 'weights'"),
])
def test_internal_value_error_exits_1(exc, expected, monkeypatch, capsys):
    """A bare ValueError is no longer taken for bad input: the library raises typed errors
    (lpusim.errors.InputError and its kinds) for that, so anything else is a bug."""
    def fail(args):
        raise exc
    monkeypatch.setitem(cli.COMMANDS, "validate", fail)
    monkeypatch.delenv("LPUSIM_DEBUG", raising=False)
    rc, out, err = run_main(["validate", "x.yaml"], capsys)
    assert (rc, out) == (1, "")
    assert err == (f"lpusim: internal error: {expected} (a bug in lpusim; LPUSIM_DEBUG=1 "
                   "shows the traceback)\n")
    monkeypatch.setenv("LPUSIM_DEBUG", "1")
    with pytest.raises(type(exc)):
        cli.main(["validate", "x.yaml"])


def test_library_input_errors_are_typed():
    """Graph, topology and acceptance code raise lpusim errors (exit 2), not bare ValueError."""
    from lpusim import api
    from lpusim.compiler.topology import build_link_graph
    from lpusim.graph import GraphParams, build_decode_graph
    from lpusim.speculative import parse_acceptance
    with pytest.raises(GraphError):
        build_decode_graph(api.load_model("llama-3.2-1b"), GraphParams(positions=0))
    with pytest.raises(AcceptanceError, match="trace file not found"):
        parse_acceptance("no/such/trace.csv")
    with pytest.raises(AcceptanceError, match=r"probs\[1\] must be finite and in \[0, 1\]"):
        parse_acceptance("0.9,1.5")
    g = build_link_graph(api.load_system("groqnode-8"), 4)
    with pytest.raises(TopologyError, match="no route"):
        g.route([0], [7])
    for e in (GraphError, TopologyError, AcceptanceError):
        assert issubclass(e, InputError) and e.exit_code == 2
# issue 19: inputs that are right and must be accepted


def test_trace_with_byte_order_mark(tmp_path, capsys):
    """Spreadsheets write a UTF-8 byte-order mark before the header; the header is right."""
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_text("accepted,drafted\n2,4\n3,4\n4,4\n")
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    outs = []
    for f in (plain, bom):
        rc, out, err = run_main(["speculate", "--acceptance", str(f), "--cost-ratio", "0.1",
                                 "--format", "json"], capsys)
        assert (rc, err) == (0, "")
        outs.append(out.replace(str(f), "TRACE"))
    assert outs[0] == outs[1]


def test_validate_reports_the_files_that_passed(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, out, err = run_main(["validate", f"{H}/model_zero_heads.yaml",
                             "chip_configs/groqchip1.yaml", "llama-3.2-1b"], capsys)
    assert rc == 2
    assert out == "chip_configs/groqchip1.yaml: ok\nllama-3.2-1b: ok\n"
    assert err == f"lpusim: error: {H}/model_zero_heads.yaml:7:8: heads: 0 is below the minimum 1\n"


def test_validate_accepts_every_shipped_file(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    files = sorted(str(p.relative_to(ROOT)) for pat in ("chip_configs/*.yaml", "workloads/*.yaml",
                                                        "workloads/*/*.yaml")
                   for p in ROOT.glob(pat))
    assert any("sweeps/" in f for f in files)
    rc, out, err = run_main(["validate", *files], capsys)
    assert (rc, err) == (0, "")
    assert out.splitlines() == [f"{f}: ok" for f in files]


@pytest.mark.parametrize("name", ["llama-3.2-1b", "groqnode-8", "groqchip1",
                                  "llama-3.1-70b-specdec"])
def test_describe_accepts_shipped_names(name, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, out, err = run_main(["describe", name, "--format", "json"], capsys)
    assert (rc, err) == (0, "")
    import json
    assert json.loads(out)["kind"] in ("model", "system", "chip", "scenario")
