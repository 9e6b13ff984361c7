"""Lab 10's reference against figures worked by hand from the published Llama-3-8B and Qwen2.5-7B
configurations (the arithmetic is written out here, independently of the reference)."""

from __future__ import annotations

import pytest

from infralens.loader import LabCode
from infralens.models import preset

from conftest import REPO


@pytest.fixture(scope="module")
def qp():
    return LabCode(REPO / "solutions", "lab10_quantization_plan", "solutions").quantization_plan


def _llama3_linear_rows_and_elements():
    # Llama-3-8B per layer, [out, in]: q 4096×4096, k and v 1024×4096, o 4096×4096, gate and up 14336×4096, down 4096×14336.
    shapes = [(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096), (14336, 4096), (14336, 4096), (4096, 14336)]
    rows = sum(out for out, _ in shapes)  # 43,008 output channels
    elements = sum(out * in_ for out, in_ in shapes)  # 218,103,808 weights
    return rows, elements


def test_llama3_8b_weight_savings_by_hand(qp):
    rows, elements = _llama3_linear_rows_and_elements()
    assert (rows, elements) == (43_008, 218_103_808)
    layers = 32
    bf16 = 2 * elements * layers  # 13,958,643,712 bytes
    int8_per_channel = elements * layers + 2 * rows * layers  # codes + one fp16 scale per output row
    int4_group128 = elements * layers // 2 + 2 * (elements // 128) * layers  # half-byte codes + fp16 scale per 128
    model, workload = preset("llama-3-8b"), qp.Workload(1, 1)
    assert qp.saved_memory(qp.QuantizationPlan(qp.Target.WEIGHTS, 8), model, workload) == bf16 - int8_per_channel == 6_976_569_344
    assert qp.saved_memory(qp.QuantizationPlan(qp.Target.WEIGHTS, 4, 128), model, workload) == bf16 - int4_group128 == 10_359_930_880
    # int4 + fp16 scale per 128 weights is 4 + 16/128 = 4.125 bits per weight.
    assert int4_group128 * 8 / (elements * layers) == 4.125


def test_llama3_8b_kv_cache_savings_by_hand(qp):
    layers, kv_heads, head_dim, batch, tokens = 32, 8, 128, 8, 8192
    vectors = 2 * layers * batch * tokens * kv_heads  # K and V head vectors held: 33,554,432
    bf16 = vectors * head_dim * 2  # 8,589,934,592 bytes: 131,072 bytes per token × 65,536 tokens
    assert bf16 == 8 * 2**30
    int8_per_vector = vectors * (head_dim + 2)  # int8 codes + one fp16 scale per vector
    fp8_per_tensor = vectors * head_dim + 2 * layers * 2  # one fp16 scale per layer for K and one for V
    model, workload = preset("llama-3-8b"), qp.Workload(batch, tokens)
    assert qp.saved_memory(qp.QuantizationPlan(qp.Target.KV_CACHE, 8), model, workload) == bf16 - int8_per_vector == 4_227_858_432
    fp8 = qp.QuantizationPlan(qp.Target.KV_CACHE, 8, qp.PER_TENSOR, number_format="fp8")
    assert qp.saved_memory(fp8, model, workload) == bf16 - fp8_per_tensor == 4_294_967_168
    # Weight-only plans leave this 8 GiB cache untouched: the saving above is all there is for KV.


def test_qwen25_7b_figures_by_hand(qp):
    # Qwen2.5-7B: 28 layers, hidden 3584, 28 heads / 4 KV heads × 128, intermediate 18944.
    shapes = [(3584, 3584), (512, 3584), (512, 3584), (3584, 3584), (18944, 3584), (18944, 3584), (3584, 18944)]
    rows, elements = sum(o for o, _ in shapes), sum(o * i for o, i in shapes)
    model = preset("qwen2.5-7b")
    expected_weights = 28 * (2 * elements - elements - 2 * rows)
    assert qp.saved_memory(qp.QuantizationPlan(qp.Target.WEIGHTS, 8), model, qp.Workload(1, 1)) == expected_weights == 6_522_507_264
    vectors = 2 * 28 * 4 * 32768 * 4  # K and V × layers × batch × tokens × KV heads
    per_vector = 128 * 2 - (128 // 2 + (128 // 32) * (2 + 1))  # bf16 − (int4 codes + 4 groups × (fp16 scale + int8 zero point))
    plan = qp.QuantizationPlan(qp.Target.KV_CACHE, 4, 32, zero_point_bits=8)
    assert qp.saved_memory(plan, model, qp.Workload(4, 32768)) == vectors * per_vector == 5_284_823_040


def test_describe_reports_gib_not_gb(qp):
    line = qp.describe(qp.QuantizationPlan(qp.Target.KV_CACHE, 8), preset("llama-3-8b"), qp.Workload(8, 8192))
    assert "saves 3.94 GiB" in line  # 4,227,858,432 / 2**30 = 3.9375; in GB it would read 4.23


def test_gemma2_9b_kv_saving_follows_its_alternating_windows_by_hand(qp):
    # Gemma-2-9B: 42 layers, 8 KV heads × 256; even layers slide with a 4096-token window.
    sliding_layers, full_layers, kv_heads, head_dim, tokens, window = 21, 21, 8, 256, 8192, 4096
    per_vector = head_dim * 2 - (head_dim + 2)  # bf16 − (int8 codes + one fp16 scale) = 254 bytes
    vectors = 2 * kv_heads * (full_layers * tokens + sliding_layers * window)  # K and V
    plan = qp.QuantizationPlan(qp.Target.KV_CACHE, 8)
    assert qp.saved_memory(plan, preset("gemma-2-9b"), qp.Workload(1, tokens)) == vectors * per_vector == 1_048_707_072


@pytest.mark.parametrize(
    "fields",
    [{"bits": True}, {"bits": 8.0}, {"group_size": True}, {"group_size": 64.0}, {"scale_bits": 24}, {"scale_bits": 64}, {"scale_bits": 16.0},
     {"zero_point_bits": False}, {"zero_point_bits": 8.0}, {"zero_point_bits": 24}],
)
def test_plan_widths_are_ints_from_their_tuples(qp, fields):
    # 8.0 == 8 and False == 0, so membership in SUPPORTED_* alone would let these through.
    with pytest.raises(ValueError, match=str(next(iter(fields.values())))):
        qp.QuantizationPlan(qp.Target.WEIGHTS, **{"bits": 8, **fields})


@pytest.mark.parametrize(("rows", "row_length"), [(True, 8), (0, 8), (2.0, 8), (2, False), (2, 0), (2, 8.0)])
def test_quantized_bytes_counts_are_positive_ints(qp, rows, row_length):
    with pytest.raises(ValueError, match="rows|row_length"):
        qp.quantized_bytes(qp.QuantizationPlan(qp.Target.WEIGHTS, 8), rows, row_length)


def test_byte_counts_are_ints_for_every_width(qp):
    for scale_bits in (8, 16, 32):
        for zero_point_bits in (0, 8, 16, 32):
            plan = qp.QuantizationPlan(qp.Target.WEIGHTS, 2, 4, scale_bits, zero_point_bits)
            # 3 rows × ceil(12 × 2 / 8) code bytes + 9 groups × whole bytes per scale and zero point
            assert qp.quantized_bytes(plan, 3, 12) == 9 + 9 * (scale_bits + zero_point_bits) // 8
            assert type(qp.quantized_bytes(plan, 3, 12)) is int
