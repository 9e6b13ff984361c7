"""Lab 09's reference against independent oracles: datasheet figures, hand-worked arithmetic, published speeds.

Every expected figure here is written out from its sources (NVIDIA datasheets, model configs,
published benchmark tables in ../shared/REFERENCE.md) with exact integer or ``Fraction``
arithmetic, never computed by the reference itself.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import pytest

from infralens.loader import LabCode
from infralens.models import ModelConfig, preset

REPO = Path(__file__).resolve().parents[1]
REL = 1e-12  # float division of exact integers: ~1e-16 relative; 1e-12 is still exact for every figure below


@pytest.fixture(scope="module")
def rf():
    return LabCode(REPO / "solutions", "lab09_decode_roofline", "solutions").roofline


def close(actual, expected) -> bool:
    return math.isclose(actual, float(expected), rel_tol=REL)


def test_units_are_decimal_for_bytes_per_second_and_binary_only_for_gib(rf):
    assert (rf.GB, rf.TB, rf.GiB, rf.TERA) == (1_000_000_000, 1_000_000_000_000, 1_073_741_824, 1_000_000_000_000)


# NVIDIA datasheets, dense (sparsity halved): A100 80GB SXM "2,039 GB/s", BF16 "312 TFLOPS", INT8
# "624 TOPS", no FP8; H100 SXM "3.35TB/s", BF16 "1,979 teraFLOPS" sparse = 989 dense, FP8 and INT8
# "3,958" sparse = 1,979 dense; H200 "4.8TB/s" with the H100's tensor cores.
DATASHEETS = {
    "a100-80gb": (2_039_000_000_000, 312_000_000_000_000, None, 624_000_000_000_000),
    "h100-sxm": (3_350_000_000_000, 989_000_000_000_000, 1_979_000_000_000_000, 1_979_000_000_000_000),
    "h200": (4_800_000_000_000, 989_000_000_000_000, 1_979_000_000_000_000, 1_979_000_000_000_000),
}


@pytest.mark.parametrize("name", sorted(DATASHEETS))
def test_gpu_table_matches_the_datasheets(rf, name):
    bandwidth, bf16, fp8, int8 = DATASHEETS[name]
    spec = rf.GPUS[name]
    assert close(spec.hbm_bytes_per_s, bandwidth) and close(spec.bf16_flops, bf16) and close(spec.int8_ops, int8)
    assert spec.fp8_flops is None if fp8 is None else close(spec.fp8_flops, fp8)
    assert close(rf.peak_flops(name, "bf16"), bf16) and close(rf.peak_flops(name, "int8"), int8)
    if fp8 is None:
        with pytest.raises(ValueError, match="fp8"):
            rf.peak_flops(name, "fp8")
    else:
        assert close(rf.peak_flops(name, "fp8"), fp8)


@pytest.mark.parametrize(
    ("name", "per_token"),
    [
        ("llama-3-8b", 2 * 32 * 8 * 128 * 2),  # 131,072 = 128 KiB: GQA, 8 KV heads
        ("llama-2-7b", 2 * 32 * 32 * 128 * 2),  # 524,288 = 512 KiB: MHA, 4x Llama-3-8B's
        ("mistral-7b-v0.1", 2 * 32 * 8 * 128 * 2),  # 131,072
        ("qwen2.5-7b", 2 * 28 * 4 * 128 * 2),  # 57,344
        ("phi-3-mini-4k", 2 * 32 * 32 * 96 * 2),  # 393,216
        ("gpt2", 2 * 12 * 12 * 64 * 2),  # 36,864
    ],
)
def test_given_kv_bytes_per_token_by_hand(rf, name, per_token):
    assert rf.kv_bytes_per_token(preset(name)) == per_token
    assert rf.kv_bytes_per_token(preset(name), 1) == per_token // 2


@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v3"])
def test_models_the_bound_does_not_model_are_refused(rf, name):
    model = preset(name)
    with pytest.raises(ValueError, match=model.model_type):
        rf.step_bound(model, "h200", 1, 128)


def test_worked_check_llama3_8b_bf16_batch1_h200(rf):
    # 8,030,261,248 parameters × 2 bytes = 16,060,522,496 bytes = 16.06 GB, read once per step.
    weight_bytes = 8_030_261_248 * 2
    assert weight_bytes == 16_060_522_496
    floor = Fraction(16_060_522_496, 4_800_000_000_000)  # seconds, 4.8 TB/s = 4.8e12 bytes/s
    assert round(float(floor) * 1e3, 2) == 3.35  # "≈ 16.06 GB / 4.8 TB/s ≈ 3.35 ms"
    bound = rf.step_bound(preset("llama-3-8b"), "h200", 1, 0)
    assert bound.weight_bytes == 16_060_522_496 and bound.kv_bytes == 0
    assert close(bound.memory_s, floor) and close(bound.step_s, floor) and bound.bound == "memory"
    assert close(bound.compute_s, Fraction(16_060_522_496, 989 * 10**12))  # 0.0162 ms: 206× shorter
    assert close(bound.tokens_per_s, 1 / floor) and round(bound.tokens_per_s, 1) == 298.9


def test_batch_8_at_8k_tokens_by_hand(rf):
    # KV: 8 sequences × 8192 tokens × 131,072 bytes = 8,589,934,592 bytes = exactly 8 GiB (8.59 GB).
    bound = rf.step_bound(preset("llama-3-8b"), "h200", 8, 8192)
    assert bound.kv_bytes == 8_589_934_592 == 8 * 2**30
    step = Fraction(16_060_522_496 + 8_589_934_592, 4_800_000_000_000)  # 5.1355 ms
    assert close(bound.step_s, step)
    assert close(bound.tokens_per_s, 8 / step)  # 1,557.8 tokens/s across the batch
    # FLOPs: 8 × 16,060,522,496 + 4 × 32 × 32 × 128 × 8192 × 8 = 128,484,179,968 + 34,359,738,368.
    assert bound.flops == 162_843_918_336


def test_compute_bound_example_by_hand(rf):
    # Batch 512 × 128 tokens: FLOPs 512 × 16,060,522,496 = 8,222,987,517,952, attention
    # 4 × 32 × 32 × 128 × 128 × 512 = 34,359,738,368; total 8,257,347,256,320 → 8.349 ms at 989 TFLOP/s.
    # Bytes 16,060,522,496 + 512 × 128 × 131,072 = 24,650,457,088 → 5.136 ms at 4.8 TB/s.
    bound = rf.step_bound(preset("llama-3-8b"), "h200", 512, 128)
    assert bound.flops == 8_257_347_256_320
    assert close(bound.compute_s, Fraction(8_257_347_256_320, 989 * 10**12))
    assert close(bound.memory_s, Fraction(24_650_457_088, 4_800_000_000_000))
    assert bound.bound == "compute" and close(bound.step_s, bound.compute_s)


def test_the_ridge_of_an_h200_is_at_batch_206_for_bf16_weights(rf):
    # With nothing cached, a step does 2 FLOPs per weight per sequence and reads 2 bytes per weight:
    # B FLOPs per byte. The H200's ridge is 989e12 / 4.8e12 = 206.04 FLOPs per byte.
    llama = preset("llama-3-8b")
    assert rf.step_bound(llama, "h200", 206, 0).bound == "memory"
    assert rf.step_bound(llama, "h200", 207, 0).bound == "compute"


def test_crossover_by_hand(rf):
    # 16,060,522,496 = 131,072 × 122,532 + 8,192, so the crossover is 122,532 + 8,192/131,072 = 122,532.0625.
    assert 131_072 * 122_532 + 8_192 == 16_060_522_496
    assert rf.kv_crossover_tokens(preset("llama-3-8b")) == 122_532.0625
    assert rf.kv_crossover_tokens(preset("llama-3-8b"), 0.5) == 122_532.0625 / 4  # 30,633.015625
    # Qwen2.5-7B: 15,231,233,024 / 57,344 = 265,611.625 (57,344 × 265,611 = 15,231,197,184; remainder 35,840).
    assert 57_344 * 265_611 + 35_840 == 15_231_233_024
    assert rf.kv_crossover_tokens(preset("qwen2.5-7b")) == 265_611.625


def test_weight_only_int4_helps_a_lot_at_batch_1_and_little_at_64_x_32k(rf):
    qwen = preset("qwen2.5-7b")
    bf16_weights, int4_weights = 7_615_616_512 * 2, 7_615_616_512 // 2  # 15,231,233,024 and 3,807,808,256
    kv_short, kv_long = 1 * 1024 * 57_344, 64 * 32_768 * 57_344  # 58,720,256 and 120,259,084,288
    short = Fraction(bf16_weights + kv_short, int4_weights + kv_short)  # 3.954×
    long = Fraction(bf16_weights + kv_long, int4_weights + kv_long)  # 1.092×
    assert close(rf.quantization_speedup(qwen, "h200", 1, 1024, 0.5, 2), short) and short > Fraction(39, 10)
    assert close(rf.quantization_speedup(qwen, "h200", 64, 32768, 0.5, 2), long) and long < Fraction(11, 10)
    fp8_kv_long = Fraction(bf16_weights + kv_long, bf16_weights + kv_long // 2)  # 1.798×
    assert close(rf.quantization_speedup(qwen, "h200", 64, 32768, 2, 1), fp8_kv_long)


def test_sliding_window_caps_the_bytes_by_hand(rf):
    # Mistral-7B-v0.1: sliding_window 4096 on every layer, so 32k tokens read 4096 × 131,072 bytes.
    read = rf.step_bytes(preset("mistral-7b-v0.1"), 1, 32768)
    assert (read.weights, read.kv_cache) == (7_241_732_096 * 2, 4096 * 131_072)


QWEN2_WINDOW_CONFIG = {  # Qwen2.5-7B's config.json with its sliding window switched on from layer 14
    "model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
    "intermediate_size": 18944, "vocab_size": 152064, "max_position_embeddings": 131072, "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False, "sliding_window": 4096, "use_sliding_window": True, "max_window_layers": 14,
}


def test_the_window_applies_layer_by_layer_as_in_lab_02(rf):
    # transformers' Qwen2: layers below max_window_layers attend to everything, the rest to the last 4096 tokens.
    # At 32,768 tokens, 14 layers hold 32,768 and 14 hold 4096; one token on one layer is 2 × 4 × 128 × 2 = 2048 bytes.
    model = dataclasses.replace(ModelConfig.from_hf_config(QWEN2_WINDOW_CONFIG, name="qwen2-window"), published_parameters=7_615_616_512)
    read = rf.step_bytes(model, 1, 32768)
    assert read.kv_cache == (14 * 32_768 + 14 * 4096) * 2048 == 1_056_964_608  # 4.5× the 234,881,024 of a window on every layer
    assert rf.step_flops(model, 1, 32768) == 2 * 7_615_616_512 + 4 * 28 * 128 * (14 * 32_768 + 14 * 4096)
    # Gemma-2-9B at 8192 tokens: 21 full layers hold 8192, 21 sliding ones 4096; 2 × 8 × 256 × 2 = 8192 bytes per token-layer.
    # The same figure as Lab 02's worked example, 2,113,929,216 bytes.
    assert rf.step_bytes(preset("gemma-2-9b"), 1, 8192).kv_cache == (21 * 8192 + 21 * 4096) * 8192 == 2_113_929_216


def test_a_step_on_the_ridge_is_memory_bound(rf):
    # 2 layers, 2 heads of 128 (MHA), 2,902,523,904 parameters, batch 207 × 64 tokens, bf16, H200:
    # bytes 2 × 2,902,523,904 + 207 × 64 × 2 × 2 × 2 × 128 × 2 = 5,832,179,712 → 5,832,179,712 / 4.8e12 s;
    # FLOPs 2 × 2,902,523,904 × 207 + 4 × 2 × 128 × (2 × 64) × 207 = 1,201,672,028,160 → / 989e12 s: the same 1.21503744 ms.
    assert Fraction(5_832_179_712, 4_800_000_000_000) == Fraction(1_201_672_028_160, 989 * 10**12) == Fraction(121_503_744, 10**11)
    model = ModelConfig("ridge", "llama", 2, 256, 2, 2, 128, 512, 100, published_parameters=2_902_523_904)
    bound = rf.step_bound(model, "h200", 207, 64)
    assert (bound.weight_bytes + bound.kv_bytes, bound.flops) == (5_832_179_712, 1_201_672_028_160)
    assert bound.memory_s == bound.compute_s == 121_503_744 / 10**11 and bound.bound == "memory"


# Published batch-1 decode speeds (REFERENCE.md): gpt-fast on an A100 (Llama-2-7B) and torchao on
# an H100 (Llama-3.1-8B, same parameter total as Llama-3-8B). Bytes per weight include the stored
# scales: int8 weight-only ≈ 1, gpt-fast int4 g32 with a bf16 scale and zero point per 32 weights
# 0.5 + 4/32, torchao int4wo-64 0.5 + 4/64.
MEASURED = [
    ("llama-2-7b", "a100-80gb", 2, 104.9),
    ("llama-2-7b", "a100-80gb", 1, 155.6),
    ("llama-2-7b", "a100-80gb", 0.5 + 4 / 32, 196.8),
    ("llama-3-8b", "h100-sxm", 2, 126.9),
    ("llama-3-8b", "h100-sxm", 1, 198.9),
    ("llama-3-8b", "h100-sxm", 0.5 + 4 / 64, 241.4),
]


@pytest.mark.parametrize(("name", "gpu", "bytes_per_weight", "measured"), MEASURED)
def test_no_published_measurement_beats_the_bound(rf, name, gpu, bytes_per_weight, measured):
    bound = rf.step_bound(preset(name), gpu, 1, 0, bytes_per_weight)
    ceiling = Fraction(DATASHEETS[gpu][0]) / (preset(name).published_parameters * Fraction(bytes_per_weight))
    assert close(bound.tokens_per_s, ceiling)
    assert measured < bound.tokens_per_s
    if bytes_per_weight == 2:  # bf16 kernels are mature: the bound is tight, within 2× of what was measured
        assert measured > bound.tokens_per_s / 2


def test_published_speedups_stay_below_the_bound_speedup(rf):
    # gpt-fast: int8 1.48× and int4 g32 1.88× over bf16; the bound allows 2× and 3.2×.
    llama2 = preset("llama-2-7b")
    assert 155.6 / 104.9 < rf.quantization_speedup(llama2, "a100-80gb", 1, 0, 1) == 2
    assert 196.8 / 104.9 < rf.quantization_speedup(llama2, "a100-80gb", 1, 0, 0.5 + 4 / 32) == pytest.approx(3.2, rel=REL)
