"""The Lab 03 reference solution against independent oracles.

Never the reference against itself. The oracles: PyTorch's own observers
(``torch.ao.quantization``) for the float32 scales and the affine range that includes 0; NumPy for
float16 rounding (``np.nextafter``) and half-to-even rounding (``np.round``); Python integers for
the nibble layout; PyTorch's quantized tensors (``torch.quantize_per_channel``) where they are
exact; the closed-form SQNR of a uniform quantizer; gpt-fast's ``WeightOnlyInt8Linear`` forward;
and the published bits-per-weight figures of int4 with groups of 128.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from infralens.loader import LabCode

REPO = Path(__file__).resolve().parent.parent
wq = LabCode(REPO / "solutions", "lab03_weight_quant", "solutions").weight_quant


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _round_up_f16(values: np.ndarray) -> np.ndarray:
    """float32 -> the smallest float16 not below it, by NumPy's own float16 and nextafter."""
    nearest = values.astype(np.float16)
    below = nearest.astype(np.float32) < values
    return np.where(below, np.nextafter(nearest, np.float16(np.inf)), nearest)


def _observer_scale(w: torch.Tensor, bits: int, symmetric: bool, per_channel: bool) -> torch.Tensor:
    """PyTorch's own observer's float32 scale for the lab's ranges: symmetric ±(2^(b-1) - 1), affine 0..2^b - 1."""
    if symmetric:
        quant_min, quant_max, dtype = -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1, torch.qint8
        qscheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    else:
        quant_min, quant_max, dtype = 0, 2**bits - 1, torch.quint8
        qscheme = torch.per_channel_affine if per_channel else torch.per_tensor_affine
    if per_channel:
        observer = PerChannelMinMaxObserver(ch_axis=0, dtype=dtype, qscheme=qscheme, quant_min=quant_min, quant_max=quant_max)
    else:
        observer = MinMaxObserver(dtype=dtype, qscheme=qscheme, quant_min=quant_min, quant_max=quant_max)
    observer(w)
    scale, _ = observer.calculate_qparams()
    return scale.reshape(-1, 1).float()


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_scales_are_the_observer_scales_rounded_up_to_float16(bits, symmetric, per_channel):
    w = torch.randn(48, 80, generator=_gen(bits)) * torch.exp(torch.randn(48, 1, generator=_gen(bits + 1)))
    expected = _round_up_f16(_observer_scale(w, bits, symmetric, per_channel).numpy())
    scale, zero_point = wq.choose_qparams(w, bits, None if per_channel else wq.PER_TENSOR, symmetric)
    assert scale.dtype == torch.float16
    np.testing.assert_array_equal(scale.numpy(), expected)
    assert (zero_point is None) == symmetric


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_asymmetric_zero_points_and_codes_match_numpy(bits):
    quant_max = 2**bits - 1
    w = torch.randn(32, 64, generator=_gen(7)) + torch.randn(32, 1, generator=_gen(8))  # rows shifted off 0
    w[3] = w[3].abs()  # a row entirely >= 0
    w[5] = -w[5].abs()  # a row entirely <= 0
    qw = wq.quantize_weight(w, bits, 16, symmetric=False)
    x = w.numpy().astype(np.float32).reshape(32, 4, 16)
    min_neg, max_pos = np.minimum(x.min(-1), 0), np.maximum(x.max(-1), 0)
    scale = _round_up_f16((max_pos - min_neg) / np.float32(quant_max)).astype(np.float32)
    zero_point = np.clip(0 - np.round(min_neg / scale), 0, quant_max)
    codes = np.clip(np.round(x / scale[..., None]) + zero_point[..., None], 0, quant_max).reshape(32, 64)
    np.testing.assert_array_equal(qw.scale.float().numpy(), scale)
    np.testing.assert_array_equal(qw.zero_point.float().numpy(), zero_point)
    np.testing.assert_array_equal(qw.qdata.numpy(), codes.astype(np.uint8))
    # 0.0 is exactly representable: the zero point's code dequantizes to exactly 0.
    assert np.all((zero_point - zero_point) * scale == 0)


def test_codes_match_pytorch_quantized_tensors_on_power_of_two_scales():
    # With power-of-two scales, torch.quantize_per_channel's multiply-by-reciprocal is exact, so its
    # codes are an independent oracle, ties included (every value below is a multiple of half a step).
    steps = 2.0 ** torch.randint(-8, 2, (16, 1), generator=_gen(3)).float()  # (16, 1)
    halves = torch.randint(-254, 255, (16, 40), generator=_gen(4)).float()
    halves[:, 0] = 254  # amax = 127 steps, so the per-channel scale is exactly the step
    w = halves * steps / 2
    qw = wq.quantize_weight(w, 8)
    assert torch.equal(qw.scale.float(), steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation is deprecated, not wrong
        oracle = torch.quantize_per_channel(w, steps.flatten().double(), torch.zeros(16, dtype=torch.long), 0, torch.qint8).int_repr()
    assert torch.equal(qw.qdata, oracle)


def test_ties_round_half_to_even_like_python():
    values = [k + 0.5 for k in range(-10, 10)]
    w = torch.tensor([values + [127.0]])  # scale 1.0 exactly: amax 127 / 127
    qw = wq.quantize_weight(w, 8)
    assert qw.scale.float().item() == 1.0
    assert qw.qdata[0, :-1].tolist() == [round(v) for v in values]  # Python's round() is half to even


@pytest.mark.parametrize("signed", [True, False])
def test_pack_int4_matches_python_integers(signed):
    codes = torch.randint(-8, 8, (6, 34), generator=_gen(5)).to(torch.int8) if signed else torch.randint(0, 16, (6, 34), generator=_gen(5)).to(torch.uint8)
    rows = codes.tolist()
    expected = [[(row[2 * j] & 0xF) | ((row[2 * j + 1] & 0xF) << 4) for j in range(17)] for row in rows]
    packed = wq.pack_int4(codes)
    assert packed.tolist() == expected
    assert torch.equal(wq.unpack_int4(packed, signed=signed), codes)


@pytest.mark.parametrize(
    ("bits", "group_size", "symmetric", "scale_dtype", "expected_bits"),
    [
        (4, 128, True, torch.float16, 4.125),  # AWQ/GPTQ int4 g128 with fp16 scales
        (4, 128, False, torch.float16, 4.25),  # + fp16 zero points
        (4, 64, True, torch.float16, 4.25),
        (8, None, True, torch.float16, 8 + 16 / 4096),  # gpt-fast int8 weight-only: one scale per output row
    ],
)
def test_bits_per_weight_of_published_layouts(bits, group_size, symmetric, scale_dtype, expected_bits):
    # Bits per weight depend on the row length and the layout, not the row count: 64 rows of 4096,
    # and the whole 4096 × 4096 matrix where its byte count is checked too.
    whole = (bits, group_size, symmetric) == (4, 128, True)
    w = torch.randn(4096 if whole else 64, 4096, generator=_gen(9))
    qw = wq.quantize_weight(w, bits, group_size, symmetric, scale_dtype)
    assert qw.bits_per_weight == expected_bits
    if whole:
        assert qw.nbytes == 8_650_752  # the same figure as Lab 10's quantized_bytes docstring: 4096 × 2048 + 4096 × 32 × 2


@pytest.mark.parametrize(("bits", "expected_db"), [(8, 20 * math.log10(254)), (4, 20 * math.log10(14))])
def test_sqnr_of_a_uniform_signal_matches_the_closed_form(bits, expected_db):
    # Uniform on [-A, A] with step A / quant_max: noise power step² / 12, signal power A² / 3,
    # so SQNR = 10·log10(4 · quant_max²) = 20·log10(2 · quant_max): 48.10 dB at int8, 22.92 dB at int4.
    w = torch.rand(1000, 1000, generator=_gen(10), dtype=torch.float64).float() * 2 - 1
    w[0, 0] = 1.0
    error = wq.quant_error(w, wq.dequantize_weight(wq.quantize_weight(w, bits, wq.PER_TENSOR, scale_dtype=torch.float32)))
    assert abs(error.sqnr_db - expected_db) < 0.05
    step = 1.0 / (2 ** (bits - 1) - 1)
    assert abs(error.mse - step**2 / 12) < 0.01 * step**2 / 12
    # Half a step, plus float32 rounding of values near 1.0 (2^-24 each, under 2^-14 of an int8 step).
    assert error.max_abs <= step * (0.5 + 2.0**-14)


def test_quant_error_hand_worked():
    error = wq.quant_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 3.0]))
    assert (error.mse, error.max_abs) == (0.5, 1.0)
    assert error.sqnr_db == pytest.approx(10 * math.log10(25.0), abs=1e-12)


def test_quantized_linear_matches_gpt_fast_weight_only_int8():
    # gpt-fast's WeightOnlyInt8Linear.forward: F.linear(x, int8_weight.to(x.dtype)) * scales.
    w = torch.randn(96, 128, generator=_gen(11)) * 0.02
    qw = wq.quantize_weight(w, 8)
    layer = wq.QuantizedLinear(qw)
    x = torch.randn(4, 7, 128, generator=_gen(12))
    gpt_fast = F.linear(x, qw.qdata.float()) * qw.scale.float().flatten()
    reference64 = x.double() @ (qw.qdata.double() * qw.scale.double()).T
    bound = 128 * 2.0**-23 * (x.abs().double() @ (qw.qdata.double().abs() * qw.scale.double()).T)
    assert torch.all((layer(x).double() - reference64).abs() <= bound)
    assert torch.all((gpt_fast.double() - reference64).abs() <= bound)


def test_quantized_linear_state_dict_is_the_ledger_int4():
    w = torch.randn(64, 256, generator=_gen(13))
    layer = wq.QuantizedLinear(wq.quantize_weight(w, 4, 32, symmetric=False))
    state = layer.state_dict()
    assert {k: (tuple(v.shape), v.dtype) for k, v in state.items()} == {
        "qdata": ((64, 128), torch.uint8),
        "scale": ((64, 8), torch.float16),
        "zero_point": ((64, 8), torch.float16),
    }
    assert sum(v.numel() * v.element_size() for v in state.values()) == 64 * 128 + 2 * 64 * 8 * 2


def test_quantize_divides_like_numpy_float32_division():
    # NumPy's float32 division is the oracle; multiplying by the float32 reciprocal gives other codes next to ties.
    scale = np.float16(0.1).astype(np.float32)
    w = np.array([[0.9497680068016052, 1.44964599609375, -1.44964599609375, 127 * float(scale)]], dtype=np.float32)
    divided = np.round(w / scale)
    assert divided.tolist() == [[9, 14, -14, 127]]
    assert np.round(w * (np.float32(1) / scale)).tolist() == [[10, 15, -15, 127]]
    codes = wq.quantize(torch.from_numpy(w), torch.tensor([[0.1]], dtype=torch.float16), None, 8)
    assert codes.dtype == torch.int8 and codes.tolist() == divided.astype(int).tolist()


def test_zero_point_uses_the_stored_float16_scale():
    # NumPy: the float32 scale 1.75 / 255 rounded up to float16, then -round(-1.5 / stored).
    stored = _round_up_f16(np.array([np.float32(1.75) / np.float32(255)], dtype=np.float32)).astype(np.float32)
    assert stored.tolist() == [0.006866455078125]
    assert -np.round(np.float32(-1.5) / stored).item() == 218
    assert -np.round(np.float32(-1.5) / (np.float32(1.75) / np.float32(255))) == 219  # the float32 scale's zero point
    scale, zero_point = wq.choose_qparams(torch.tensor([[-1.5, 0.25, 0.0, -0.75]]), 8, None, symmetric=False)
    assert scale.float().tolist() == [[0.006866455078125]] and zero_point.tolist() == [[218.0]] and zero_point.dtype == torch.float16


@pytest.mark.parametrize(("shape", "expected"), [((3, 5), 3 * 3 + 3 * 2), ((1, 1), 1 + 2), ((2, 7), 2 * 4 + 2 * 2)])
def test_int4_nbytes_of_odd_rows_is_what_pack_int4_stores_per_row(shape, expected):
    # Each row packed on its own, padded with one zero code: the bytes pack_int4 really produces.
    codes = torch.randint(-7, 8, shape, generator=_gen(14)).to(torch.int8)
    padded = torch.cat((codes, torch.zeros(shape[0], shape[1] % 2, dtype=torch.int8)), dim=1)
    scale = torch.ones(shape[0], 1, dtype=torch.float16)
    qw = wq.QuantizedWeight(codes, scale, None, 4, None)
    assert type(qw.nbytes) is int and qw.nbytes == expected
    assert qw.nbytes == wq.pack_int4(padded).numel() + scale.numel() * 2


def test_quant_error_is_float64_arithmetic():
    # Python floats (float64) on the float32 inputs are the oracle; float32 arithmetic is visibly off.
    w, w_hat = torch.tensor([0.1, -0.7, 0.3, 1.9, -2.3]), torch.tensor([0.125, -0.6875, 0.25, 1.875, -2.3125])
    x, y = [float(v) for v in w], [float(v) for v in w_hat]
    errors = [a - b for a, b in zip(x, y)]
    expected_sqnr = 10 * math.log10(sum(a * a for a in x) / sum(e * e for e in errors))
    error = wq.quant_error(w, w_hat)
    assert all(type(v) is float for v in (error.mse, error.max_abs, error.sqnr_db))
    assert error.mse == pytest.approx(sum(e * e for e in errors) / 5, rel=1e-14)
    assert error.sqnr_db == pytest.approx(expected_sqnr, rel=1e-14)
    err32 = w - w_hat
    sqnr32 = 10 * torch.log10((w * w).sum() / (err32 * err32).sum()).item()
    assert abs(sqnr32 - expected_sqnr) > 1e-12 * expected_sqnr  # the public check's tolerance tells float32 apart
