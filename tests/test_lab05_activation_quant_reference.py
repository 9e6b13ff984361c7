"""The Lab 05 reference solution against independent oracles.

Never the reference against itself. The oracles: NumPy for float32 division, half-to-even
rounding and ``numpy.percentile``'s linear interpolation; Python integers and ``torch._int_mm``
(where PyTorch's CPU kernel is right) for the int32 sums; SmoothQuant's published scale formula
(``smooth.py``) and its exact identity ``(X / s)·(W · s)ᵀ = X·Wᵀ`` evaluated in float64; the
mixed-precision decomposition of LLM.int8() in float64; hand-worked figures from the docstrings;
and Llama-3-8B's published sizes (hidden 4096, intermediate 14336) for activation bytes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from infralens.loader import LabCode

REPO = Path(__file__).resolve().parent.parent
aq = LabCode(REPO / "solutions", "lab05_activation_quant", "solutions").activation_quant


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_per_token(x: np.ndarray, quant_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric quantization in NumPy float32: amax / quant_max, np.round (half to even)."""
    scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True) / np.float32(quant_max), np.finfo(np.float32).tiny).astype(np.float32)
    return np.clip(np.round(x / scale), -quant_max, quant_max).astype(np.int8), scale


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_per_token_codes_and_scales_match_numpy(bits):
    x = torch.randn(6, 9, 37, generator=_gen(bits)) * torch.exp(torch.randn(6, 9, 1, generator=_gen(bits + 1)))
    x[0, 0] = 0.0
    codes, scale = aq.quantize_per_token(x, bits)
    expected_codes, expected_scale = _numpy_per_token(x.numpy(), 2 ** (bits - 1) - 1)
    np.testing.assert_array_equal(scale.numpy(), expected_scale)
    np.testing.assert_array_equal(codes.numpy(), expected_codes)
    assert codes.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (6, 9, 1)


def test_docstring_examples_are_hand_worked():
    codes, scale = aq.quantize_per_token(torch.tensor([[-63.5, 0.25, 0.75, 1.25], [0.0, 0.0, 0.0, 0.0], [3.0, -1.5, 0.0, 127.0]]))
    assert scale.flatten().tolist() == [0.5, 2.0**-126, 1.0]
    assert codes.tolist() == [[-127, 0, 2, 2], [0, 0, 0, 0], [3, -2, 0, 127]]
    batches = [torch.tensor([1.0, -2.0]), torch.tensor([[0.5, 4.0], [-3.0, 0.0]])]
    assert aq.calibrate_scale(batches) == float(np.float32(4) / np.float32(127))
    assert aq.calibrate_scale(batches, "percentile", 50) == float(np.float32(1.5) / np.float32(127))
    codes, fraction = aq.quantize_static(torch.tensor([0.25, -1.0, 63.6, 64.0, -200.0]), 0.5)
    assert codes.tolist() == [0, -2, 127, 127, -127] and fraction == 0.4
    assert aq.int8_matmul(torch.tensor([[1, -2, 3]], dtype=torch.int8), torch.tensor([[4, 5, 6], [127, 127, 127]], dtype=torch.int8)).tolist() == [[12, 254]]
    assert aq.w8a8_linear(torch.tensor([[127.0, -63.5]]), torch.tensor([[127.0, 0.0], [0.0, -0.5]])).tolist() == [[16129.0, 32.0]]
    assert aq.smooth_scales(torch.tensor([[1.0, -16.0], [-4.0, 2.0]]), torch.tensor([[1.0, 0.25], [-4.0, 0.5]])).tolist() == [1.0, float(np.float32(4 * np.sqrt(2)))]
    y, outliers = aq.llm_int8_linear(torch.tensor([[1.0, 6.0, -0.5], [0.5, 0.25, 2.0]]), torch.tensor([[1.0, 2.0, 0.0]]))
    assert outliers.tolist() == [1] and outliers.dtype == torch.int64
    # Regular part by hand: x codes [127, -64] (scale 1/127) and [32, 127] (scale 2/127), weight codes [127, 0] (scale 1/127).
    regular = [127 * 127 / 127 / 127, 32 * 127 * 2 / 127 / 127]
    np.testing.assert_allclose(y.flatten().numpy(), [12.0 + regular[0], 0.5 + regular[1]], rtol=2**-22)


@pytest.mark.parametrize("percentile", [50, 90, 99.0, 99.9, 99.99, 100, 12.5, 1e-3])
def test_percentile_calibration_matches_numpy_percentile(percentile):
    batches = [torch.randn(17, 31, generator=_gen(1)) * 3, torch.randn(5, 31, generator=_gen(2)), torch.randn(1000, generator=_gen(3))]
    values = np.concatenate([np.abs(b.numpy()).ravel() for b in batches]).astype(np.float64)
    amax = np.float32(np.percentile(values, percentile))  # NumPy's default: linear interpolation
    expected = float(amax / np.float32(127))
    got = aq.calibrate_scale(batches, "percentile", percentile)
    assert type(got) is float
    assert abs(got - expected) <= 2.0**-23 * expected, (got, expected)  # the two interpolations may differ in the last float64 bits


def test_static_quantization_saturates_and_counts_like_numpy():
    x = torch.randn(40, 64, generator=_gen(4)) * 2
    scale = float(np.float32(3.0) / np.float32(127))  # calibrated for |x| <= 3: about 13% of N(0, 4) lies beyond
    codes, fraction = aq.quantize_static(x, scale)
    ratio = x.numpy() / np.float32(scale)
    rounded = np.round(ratio)
    np.testing.assert_array_equal(codes.numpy(), np.clip(rounded, -127, 127).astype(np.int8))
    assert fraction == np.count_nonzero(np.abs(rounded) > 127) / x.numel()
    assert 0.10 < fraction < 0.16


def test_int8_sums_match_python_integers_and_int_mm():
    gen = _gen(5)
    for m, k, n in itertools.product([1, 3, 17], [1, 2, 16, 37], [1, 5, 8]):
        a = torch.randint(-127, 128, (m, k), generator=gen).to(torch.int8)
        b = torch.randint(-127, 128, (n, k), generator=gen).to(torch.int8)
        expected = [[sum(x * y for x, y in zip(row, col)) for col in b.tolist()] for row in a.tolist()]
        got = aq.int8_matmul(a, b)
        assert got.dtype == torch.int32 and got.tolist() == expected, (m, k, n)
        if k > 1:  # where int_mm_applies on CPU, torch._int_mm itself is an oracle
            assert torch.equal(got, torch._int_mm(a.contiguous(), b.t().contiguous()))


def test_int8_sums_reach_the_int32_limit_exactly():
    k = aq.INT32_SAFE_K
    a = torch.full((2, k), 127, dtype=torch.int8)
    b = torch.full((3, k), -127, dtype=torch.int8)
    b[1] = 127
    got = aq.int8_matmul(a, b)
    assert got.tolist() == [[-(127**2) * k, 127**2 * k, -(127**2) * k]] * 2
    assert 127**2 * k <= 2**31 - 1 < 127**2 * (k + 1)


def test_w8a8_matches_integer_arithmetic_in_numpy():
    x = torch.randn(3, 11, 48, generator=_gen(6))
    w = torch.randn(20, 48, generator=_gen(7)) * 0.05
    qx, sx = _numpy_per_token(x.numpy().reshape(-1, 48), 127)
    qw, sw = _numpy_per_token(w.numpy(), 127)
    acc = qx.astype(np.int64) @ qw.astype(np.int64).T
    expected = (acc.astype(np.float64) * sx.astype(np.float64) * sw.astype(np.float64).T).reshape(3, 11, 20)
    np.testing.assert_allclose(aq.w8a8_linear(x, w).numpy(), expected, rtol=2.0**-22)


def test_smooth_scales_follow_smoothquants_formula():
    # smooth.py: weight_scales = max over rows of |W|, clamped at 1e-5; scales = (act^a / weight^(1-a)).clamp(min=1e-5).
    x = torch.randn(64, 96, generator=_gen(8))
    x[:, [3, 40]] *= 50
    x[:, 7] = 0.0
    w = torch.randn(80, 96, generator=_gen(9)) * 0.02
    w[:, 11] = 0.0
    act = np.abs(x.numpy().astype(np.float64)).max(axis=0)
    weight = np.maximum(np.abs(w.numpy().astype(np.float64)).max(axis=0), 1e-5)
    for alpha in (0.5, 0.75, 0.0, 1.0):
        expected = np.maximum(act**alpha / weight ** (1 - alpha), 1e-5)
        np.testing.assert_allclose(aq.smooth_scales(x, w, alpha).numpy(), expected, rtol=2.0**-20)


def test_smoothing_is_an_identity_before_quantization():
    x = torch.randn(2, 30, 96, generator=_gen(10))
    x[..., [5, 60]] *= 80
    w = torch.randn(40, 96, generator=_gen(11)) * 0.02
    s = aq.smooth_scales(x, w)
    x_s, w_s = aq.apply_smoothing(x, w, s)
    exact = x.double() @ w.double().t()
    smoothed = x_s.double() @ w_s.double().t()
    bound = 2.0**-22 * (x.double().abs() @ w.double().abs().t())
    assert bool(((smoothed - exact).abs() <= bound).all())
    # alpha = 0.5 equalizes the two ranges channel by channel.
    np.testing.assert_allclose(x_s.abs().amax(dim=(0, 1)).numpy(), w_s.abs().amax(dim=0).numpy(), rtol=2.0**-20)


def test_llm_int8_decomposition_matches_float64():
    x = torch.randn(50, 64, generator=_gen(12))
    x[:, [2, 33]] *= 30
    x[7, 50] = -6.0  # exactly at the threshold: an outlier column
    w = torch.randn(24, 64, generator=_gen(13)) * 0.05
    y, outliers = aq.llm_int8_linear(x, w)
    mask = (x.abs() >= 6.0).any(dim=0)
    assert outliers.tolist() == torch.nonzero(mask).flatten().tolist() and {2, 33, 50} <= set(outliers.tolist())
    xr, wr = x[:, ~mask].numpy(), w[:, ~mask].numpy()
    qx, sx = _numpy_per_token(xr, 127)
    qw, sw = _numpy_per_token(wr, 127)
    regular = (qx.astype(np.int64) @ qw.astype(np.int64).T) * sx.astype(np.float64) * sw.astype(np.float64).T
    dense = x[:, mask].double().numpy() @ w[:, mask].double().numpy().T
    # float32 rounding of the dense part and the rescale: far below one int8 step (1/254 of a token's amax).
    assert np.all(np.abs(y.numpy() - (regular + dense)) <= 2.0**-18 * (np.abs(x.numpy()) @ np.abs(w.numpy()).T))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((8, 4096, 4096, "bf16"), 256 * 2**20),  # Llama-3-8B hidden state, 8 × 4096 tokens: 256 MiB
        ((8, 4096, 14336, "bf16"), 896 * 2**20),  # its MLP intermediate: 3.5× that
        ((8, 4096, 4096, "int8-per-token"), 128 * 2**20 + 128 * 2**10),  # codes + 32,768 float32 scales
        ((8, 4096, 4096, "int8-per-tensor"), 128 * 2**20 + 4),
        ((1, 1, 4096, "fp32"), 16384),
    ],
)
def test_activation_bytes_of_llama_3_8b(args, expected):
    got = aq.activation_nbytes(*args)
    assert type(got) is int and got == expected
