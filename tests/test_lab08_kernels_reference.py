"""The Lab 08 reference solution against independent oracles.

Never the reference against itself. The oracles: PyTorch's own CPU kernels for the same layers
(``torch._weight_int8pack_mm`` on shapes it handles, ``torch._weight_int4pack_mm_for_cpu`` with
tinygemm's ``(code - 8) × scale + zero`` form of our zero points); NumPy float32 arithmetic with
``np.round`` (half to even) and Python integer sums for W8A8; hand-worked figures from the
docstrings; Llama-3-8B's published sizes (hidden 4096, intermediate 14336); and for byte counts,
the ``nbytes`` of tensors stored in each format and the allocations of the naive path measured by
``infralens.allocations``. The checks' own tooling (the naive paths, the tolerances) is held to
float64 here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infralens.allocations import record_allocations
from infralens.loader import LabCode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "checks" / "lab08_kernels"))
import lab08_inputs as inputs  # noqa: E402

kernels = LabCode(REPO / "solutions", "lab08_kernels", "solutions").kernels
BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32
T = torch.tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor) -> None:
    error = (actual.double() - expected.double()).abs()
    assert bool((error <= bound).all()), f"max error {float(error.max()):.3g}, bound at that element {float(bound.flatten()[error.argmax()]):.3g}"


def test_docstring_examples_are_hand_worked():
    assert kernels.pack_int4(T([[3, 12, 0, 15]], dtype=torch.uint8)).tolist() == [[195, 240]]
    y = kernels.int8_weight_only_linear(T([[2.0, 1.0, 0.5]]), T([[1, -2, 127], [0, 64, -127]], dtype=torch.int8), T([0.5, 0.25]))
    assert y.tolist() == [[31.75, 0.125]]
    y = kernels.int4_weight_only_linear(T([[1.0, 2.0, 3.0, 4.0]]), T([[195, 240]], dtype=torch.uint8), T([[0.5, 0.25]]), T([[4, 8]], dtype=torch.uint8), 2)
    assert y.tolist() == [[8.5]]  # W = [-0.5, 4, -2, 1.75]
    y = kernels.int8_dynamic_linear(T([[127.0, -62.5, 0.25]]), T([[1, 2, 3], [-127, 0, 127]], dtype=torch.int8), T([0.5, 2.0]))
    assert y.tolist() == [[1.5, -32258.0]]  # codes [127, -62, 0], acc [3, -16129]


def test_llama3_8b_up_projection_bytes_by_hand():
    k, n = 4096, 14336  # Llama-3-8B hidden_size and intermediate_size
    fields = lambda t: (t.weight_bytes, t.activation_bytes, t.materialized_bytes)  # noqa: E731
    assert fields(kernels.linear_traffic(1, k, n, "dense")) == (k * n * 2, (k + n) * 2, 0)
    assert fields(kernels.linear_traffic(1, k, n, "int8")) == (k * n + n * 2, (k + n) * 2, 0)
    naive = kernels.linear_traffic(1, k, n, "int8", fused=False)
    assert fields(naive) == (k * n + n * 2, (k + n) * 2, k * n * 2) and naive.total_bytes == 293_666_816
    assert fields(kernels.linear_traffic(1, k, n, "int4")) == (k * n // 2 + n * (k // 128) * 3, (k + n) * 2, 0)
    assert kernels.linear_traffic(1, k, n, "int4").weight_bytes * 8 / (k * n) == 4.1875  # bits per weight with bf16 scales and uint8 zero points


@pytest.mark.parametrize("dtype", [BF16, F16, F32])
def test_int8_weight_only_matches_pytorchs_cpu_kernel(dtype):
    x = torch.randn(5, 256, generator=_gen(1)).to(dtype)
    qweight, scale = inputs.int8_weight(_gen(2), 64, 256, dtype)
    kernel = torch._weight_int8pack_mm(x, qweight, scale)  # float32 sums × scale, one rounding; K = 256 is a shape it handles
    ours = kernels.int8_weight_only_linear(x, qweight, scale)
    assert ours.dtype == kernel.dtype == dtype
    # Both round float32 sums once to dtype: at most one unit of dtype apart, plus float32 accumulation order.
    magnitude = x.double().abs() @ inputs.dequantize_int8(qweight, scale).abs().t()
    _within(ours, kernel, 2 * inputs.UNIT_ROUNDOFF[dtype] * kernel.double().abs() + 2 * 258 * 2.0**-24 * magnitude)


@pytest.mark.parametrize("dtype", [BF16, F16, F32])
def test_int4_weight_only_matches_tinygemm_on_cpu(dtype):
    n, k, g = 48, 256, 64
    codes = torch.randint(0, 16, (n, k), generator=_gen(3), dtype=torch.uint8)
    zero = torch.randint(0, 16, (n, k // g), generator=_gen(4), dtype=torch.uint8)
    scale = 2.0 ** torch.randint(-8, -2, (n, k // g), generator=_gen(5)).float()  # powers of two: tinygemm's zero (8 - zp) × scale is exact
    x = torch.randn(5, k, generator=_gen(6)).to(dtype)
    scales_and_zeros = torch.stack((scale.t(), ((8 - zero.float()) * scale).t()), dim=-1).contiguous().to(dtype)  # (K/g, N, 2)
    tinygemm = torch._weight_int4pack_mm_for_cpu(x, torch._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1), g, scales_and_zeros)
    ours = kernels.int4_weight_only_linear(x, inputs.pack_nibbles(codes), scale.to(dtype), zero, g)
    magnitude = x.double().abs() @ inputs.dequantize_int4(codes, scale, zero, g).abs().t()
    _within(ours, tinygemm, 2 * inputs.UNIT_ROUNDOFF[dtype] * (tinygemm.double().abs() + magnitude) + 2 * 258 * 2.0**-24 * magnitude)


def _numpy_w8a8(x: np.ndarray, qweight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """W8A8 in NumPy float32 and Python integers, the docstring's steps one by one."""
    x_scale = np.maximum(np.abs(x).max(axis=1, keepdims=True) / np.float32(127), np.finfo(np.float32).tiny).astype(np.float32)
    codes = np.clip(np.round(x / x_scale), -127, 127).astype(np.int64)
    acc = np.array([[int(sum(int(a) * int(b) for a, b in zip(row, col))) for col in qweight.astype(np.int64)] for row in codes])
    return (acc.astype(np.float32) * x_scale * scale.astype(np.float32)).astype(np.float32)


@pytest.mark.parametrize("seed", [7, 8])
def test_int8_dynamic_matches_numpy_and_python_integers(seed):
    x = torch.randn(6, 40, generator=_gen(seed)) * torch.exp(torch.randn(6, 1, generator=_gen(seed + 1)))
    x[0] = 0.0  # an all-zero token: the SCALE_EPS floor, outputs exactly 0
    x[1, :4] = T([127.0, -62.5, 0.5, 1.5]) / 127 * x[1].abs().max().item()
    qweight, scale = inputs.int8_weight(_gen(seed + 2), 9, 40)
    expected = _numpy_w8a8(x.numpy(), qweight.numpy(), scale.numpy())
    np.testing.assert_array_equal(kernels.int8_dynamic_linear(x, qweight, scale).numpy(), expected)


def test_int8_dynamic_sums_are_exact_past_float32():
    x = torch.full((2, 4096), 127.0)
    qweight = torch.full((3, 4096), 127, dtype=torch.int8)
    qweight[:, 0] = 3  # sum = 127 × (127 × 4095 + 3) = 66,048,636: a multiple of 4, float32's spacing there, so exactly a float32
    y = kernels.int8_dynamic_linear(x, qweight, torch.ones(3))
    assert y.tolist() == [[66_048_636.0] * 3] * 2


def test_int_mm_applies_follows_the_documented_rules():
    a, b = torch.zeros(1, 8, dtype=torch.int8), torch.zeros(16, 8, dtype=torch.int8)
    assert kernels.int_mm_applies(a, b)  # CPU: any 2-D int8 shapes
    assert not kernels.int_mm_applies(a.flatten(), b)
    assert torch.equal(torch._int_mm(torch.ones(3, 5, dtype=torch.int8), torch.ones(5, 2, dtype=torch.int8)), torch.full((3, 2), 5, dtype=torch.int32))


@pytest.mark.parametrize(("weight_format", "dtype"), [("int8", BF16), ("int8", F16), ("int4", F32), ("int4", BF16), ("dense", BF16)])
def test_linear_traffic_counts_stored_tensors_and_the_measured_copy(weight_format, dtype):
    m, k, n, g = 4, 64, 40, 16
    x = torch.randn(m, k, generator=_gen(9)).to(dtype)
    if weight_format == "int8":
        qweight, scale = inputs.int8_weight(_gen(10), n, k, dtype)
        stored, naive = (qweight, scale), lambda: inputs.naive_int8_linear(x, qweight, scale)
    elif weight_format == "int4":
        _codes, packed, scale, zero = inputs.int4_weight(_gen(10), n, k, g, dtype)
        stored, naive = (packed, scale, zero), lambda: inputs.naive_int4_linear(x, packed, scale, zero, g)
    else:
        weight = torch.randn(n, k).to(dtype)
        stored, naive = (weight,), lambda: F.linear(x, weight)
    y, allocations = record_allocations(naive)
    traffic = kernels.linear_traffic(m, k, n, weight_format, dtype, g, fused=False)
    assert traffic.weight_bytes == sum(t.nbytes for t in stored)
    assert traffic.activation_bytes == x.nbytes + y.nbytes
    copy = n * k * x.element_size()
    assert traffic.materialized_bytes == (0 if weight_format == "dense" else copy)
    assert allocations.largest.nbytes == (y.nbytes if weight_format == "dense" else copy)
    assert kernels.linear_traffic(m, k, n, weight_format, dtype, g, fused=True).materialized_bytes == 0


def test_the_checks_naive_paths_and_tolerances_hold_in_float64():
    gen = _gen(11)
    for dtype in (F32, F16, BF16):
        x = inputs.activations(gen, (3, 5, 64), dtype)
        qweight, scale = inputs.int8_weight(gen, 24, 64, dtype)
        weight = inputs.dequantize_int8(qweight, scale)
        _within(inputs.naive_int8_linear(x, qweight, scale), inputs.reference(x, weight), inputs.weight_only_bound(x, weight))
        codes, packed, scale4, zero = inputs.int4_weight(gen, 24, 64, 16, dtype)
        weight4 = inputs.dequantize_int4(codes, scale4, zero, 16)
        _within(inputs.naive_int4_linear(x, packed, scale4, zero, 16), inputs.reference(x, weight4), inputs.weight_only_bound(x, weight4))
    assert inputs.pack_nibbles(T([[3, 12, 0, 15]], dtype=torch.uint8)).tolist() == [[195, 240]]


def test_validation_never_reads_the_data():
    """NaN passes through: a kernel validates shapes and dtypes only."""
    x = T([[float("nan"), 1.0, 2.0]])
    y = kernels.int8_weight_only_linear(x, torch.ones(2, 3, dtype=torch.int8), torch.ones(2))
    assert y.shape == (1, 2) and bool(torch.isnan(y).all())
