"""The Lab 06 reference solution against independent oracles.

Never the reference against itself. The oracles: NumPy float32 loops over KIVI's formulas, one
group at a time (``np.round`` rounds half to even, as ``torch.round``); Python integers for the
packed-code layout; PyTorch's own ``float8_e4m3fn`` and ``float8_e5m2`` dtypes, enumerated bit
pattern by bit pattern, for the FP8 ranges and round-to-nearest; float64 NumPy attention for the
score error; hand-worked byte counts of Llama-3-8B (32 layers, 8 KV heads, head_dim 128) and the
bf16 KV formula of /work/shared/REFERENCE.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from infralens.loader import LabCode

REPO = Path(__file__).resolve().parent.parent
kq = LabCode(REPO / "solutions", "lab06_kv_quant", "solutions").kv_quant
E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_groups(x: np.ndarray, bits: int, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KIVI's asymmetric quantizer along the last axis of a 2-D float32 array, one group at a time."""
    q_max = np.float32(2**bits - 1)
    rows, length = x.shape
    codes = np.zeros((rows, length), dtype=np.uint8)
    scale = np.zeros((rows, length // group_size), dtype=np.float32)
    zero = np.zeros_like(scale)
    for r in range(rows):
        for g in range(length // group_size):
            group = x[r, g * group_size : (g + 1) * group_size]
            low, high = group.min(), group.max()
            step = max(np.float32(high - low) / q_max, np.finfo(np.float32).tiny)
            codes[r, g * group_size : (g + 1) * group_size] = np.clip(np.round((group - low) / np.float32(step)), 0, q_max)
            scale[r, g], zero[r, g] = step, low
    return codes, scale, zero


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_values_matches_a_numpy_loop_per_group(bits):
    v = (torch.randn(37, 64, generator=_gen(bits)) * torch.exp(torch.randn(37, 1, generator=_gen(9)))).float()
    codes, scale, zero = kq.quantize_values(v, bits, 16)
    np_codes, np_scale, np_zero = _numpy_groups(v.numpy(), bits, 16)
    np.testing.assert_array_equal(codes.numpy(), np_codes)
    np.testing.assert_array_equal(scale.numpy(), np_scale)
    np.testing.assert_array_equal(zero.numpy(), np_zero)


def test_quantize_keys_is_the_numpy_loop_over_each_channel():
    k = torch.randn(2, 64, 24, generator=_gen(3))
    k[..., 5] = 40.0 + torch.randn(2, 64, generator=_gen(4))  # an outlier channel
    codes, scale, zero = kq.quantize_keys(k, 2, 32)
    for b in range(2):
        np_codes, np_scale, np_zero = _numpy_groups(k[b].T.contiguous().numpy(), 2, 32)  # channels as rows: groups over tokens
        np.testing.assert_array_equal(codes[b].T.numpy(), np_codes)
        np.testing.assert_array_equal(scale[b].T.numpy(), np_scale)
        np.testing.assert_array_equal(zero[b].T.numpy(), np_zero)
    assert float(scale[..., 5].max()) < 2 * float(scale[..., :5].max()), "the outlier channel's step stays in its own channel"


def test_ties_go_to_the_even_code_and_the_group_ends_come_back_exactly():
    x = torch.tensor([0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0])  # ratios 0.5, 1.5 | 0.5, 1.25: ties to even
    codes, scale, zero = kq.quantize_groups(x, 2, 4)
    assert codes.tolist() == [0, 0, 2, 3, 0, 0, 1, 3]
    back = kq.dequantize_groups(codes, scale, zero)
    assert back[[0, 3, 4, 7]].tolist() == [0.0, 3.0, -2.0, 4.0]


def test_pack_codes_matches_python_integer_packing():
    rng = np.random.default_rng(6)
    for bits in (2, 4, 8):
        codes = rng.integers(0, 2**bits, size=(3, 13))
        packed = kq.pack_codes(torch.tensor(codes, dtype=torch.uint8), bits)
        per_byte = 8 // bits
        expected = [[sum(int(row[j]) << (bits * (j % per_byte)) for j in range(b * per_byte, min((b + 1) * per_byte, 13))) for b in range(math.ceil(13 / per_byte))]
                    for row in codes]
        assert packed.tolist() == expected
        assert kq.unpack_codes(packed, bits, 13).tolist() == codes.tolist()


def _fp8_values(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of ``dtype``, from its 256 bit patterns, as float64, ascending and unique."""
    patterns = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).double()
    return torch.unique(patterns[torch.isfinite(patterns)])


@pytest.mark.parametrize("dtype", [E4M3, E5M2])
def test_fp8_ranges_are_torchs(dtype):
    values = _fp8_values(dtype)
    assert kq.FP8_MAX[dtype] == float(values.max()) == torch.finfo(dtype).max
    assert torch.finfo(torch.float8_e4m3fnuz).max == 240.0  # the AMD variant the mutants confuse it with


def test_torchs_cpu_cast_is_what_the_quantize_fp8_docstring_says():
    # Why quantize_fp8 clamps: on CPU, PyTorch 2.13 saturates e4m3fn (no Inf in that format) but sends e5m2 overflow to Inf.
    assert torch.tensor([1e5]).to(E4M3).float().item() == 448.0
    assert torch.tensor([1e5]).to(E5M2).float().item() == math.inf
    assert kq.quantize_fp8(torch.tensor([1e5]), 1.0, E5M2).float().item() == 57344.0


@pytest.mark.parametrize("dtype", [E4M3, E5M2])
def test_quantize_fp8_rounds_to_the_nearest_representable_value_and_saturates(dtype):
    grid = _fp8_values(dtype)
    limit = float(grid.max())
    x = torch.cat([torch.randn(4000, generator=_gen(8)) * limit / 3, torch.tensor([limit * 1.5, -limit * 7, 0.0])])
    result = kq.quantize_fp8(x, 1.0, dtype).double()
    clamped = x.double().clamp(-limit, limit)
    distance = (grid.unsqueeze(0) - clamped.unsqueeze(1)).abs()  # (n, grid)
    best = distance.min(dim=1).values
    assert torch.equal((result - clamped).abs(), best), "every value is a nearest representable value"
    assert result[-3:].tolist() == [limit, -limit, 0.0], "saturation at ±max, zero stays zero"
    # Every representable value survives unchanged: the grid is the dtype's.
    assert torch.equal(kq.quantize_fp8(grid.float(), 1.0, dtype).double(), grid)


def test_fp8_scale_maps_amax_onto_448():
    x = torch.tensor([[-896.0, 3.0], [0.5, 100.0]])
    scale = kq.fp8_scale(x)
    assert scale == 2.0
    assert kq.quantize_fp8(x, scale).double().abs().max().item() == 448.0
    assert kq.fp8_scale(x, E5M2) == 896 / 57344


def _numpy_score_error(q: np.ndarray, k: np.ndarray, k_hat: np.ndarray) -> float:
    def probs(keys: np.ndarray) -> np.ndarray:
        scores = q @ np.swapaxes(keys, -1, -2) / math.sqrt(q.shape[-1])
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return weights / weights.sum(axis=-1, keepdims=True)

    return float(np.mean(0.5 * np.abs(probs(k) - probs(k_hat)).sum(axis=-1)))


def test_attention_score_error_matches_float64_numpy():
    q = torch.randn(2, 3, 5, 32, generator=_gen(11))
    k = torch.randn(2, 3, 40, 32, generator=_gen(12))
    k_hat = k + 0.2 * torch.randn(k.shape, generator=_gen(13))
    expected = _numpy_score_error(q.double().numpy(), k.double().numpy(), k_hat.double().numpy())
    # float32 scores (|q·k| / sqrt(32) below about 10) and softmax: a few 2^-20 of probability mass.
    assert abs(kq.attention_score_error(q, k, k_hat) - expected) <= 2.0**-16
    assert abs(kq.attention_score_error(torch.tensor([[2.0, 0, 0, 0]]), torch.zeros(2, 4), torch.tensor([[2 * math.log(3), 0, 0, 0], [0.0, 0, 0, 0]])) - 0.4) <= 2.0**-20


def test_llama3_8b_bytes_by_hand():
    # bf16: 2 (K, V) × 32 layers × 8 heads × 128 × 2 bytes × 8192 tokens = 1 GiB (REFERENCE.md's formula).
    assert 2 * 32 * 8 * 128 * 2 * 8192 == 2**30
    # 2 bits, groups of 32, residual 128: 8064 tokens quantized. Per layer and head: codes 2 × 8064 × 32 bytes,
    # key scales and zero points 2 × 252 × 128 × 4, value ones 2 × 8064 × 4 × 4, residual 2 × 128 × 128 × 2.
    per_head = 2 * 8064 * 32 + 2 * 252 * 128 * 4 + 2 * 8064 * 4 * 4 + 2 * 128 * 128 * 2
    assert per_head == 1_097_728
    assert kq.quantized_kv_bytes(32, 8, 128, 8192) == 32 * 8 * per_head == 281_018_368
    # Below the residual window nothing is quantized: the bf16 cache exactly.
    assert kq.quantized_kv_bytes(32, 8, 128, 100) == 2 * 32 * 8 * 128 * 2 * 100


def test_cache_stores_what_the_byte_formula_counts_and_prefill_equals_appends():
    k = torch.randn(1, 8, 200, 128, generator=_gen(14))
    v = torch.randn(1, 8, 200, 128, generator=_gen(15))
    whole = kq.QuantizedKVCache(batch=1, num_kv_heads=8, head_dim=128)
    keys, values = whole.prefill(k, v)
    assert (whole.tokens, whole.quantized_tokens, whole.nbytes) == (200, 64, 622_592)
    assert whole.nbytes == kq.quantized_kv_bytes(1, 8, 128, 200)
    stepped = kq.QuantizedKVCache(batch=1, num_kv_heads=8, head_dim=128)
    stepped.prefill(k[:, :, :1], v[:, :, :1])
    for t in range(1, 200):
        step_keys, step_values = stepped.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
    assert torch.equal(step_keys, keys) and torch.equal(step_values, values)
    # The quantized tokens are the NumPy loop's, dequantized in float32, then bf16.
    stored = k[:, :, :64].to(torch.bfloat16).float()
    for head in range(8):
        np_codes, np_scale, np_zero = _numpy_groups(stored[0, head].T.contiguous().numpy(), 2, 32)
        back = np_codes.astype(np.float32) * np.repeat(np_scale, 32, axis=1) + np.repeat(np_zero, 32, axis=1)
        assert torch.equal(keys[0, head, :64], torch.from_numpy(back.T.copy()).to(torch.bfloat16))
    assert torch.equal(keys[:, :, 64:], k[:, :, 64:].to(torch.bfloat16))
