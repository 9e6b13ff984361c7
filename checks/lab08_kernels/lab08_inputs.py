"""Inputs for the Lab 08 checks: weights in the lab's int8 and int4 formats, activations, the float64
reference with the tolerances the checks allow, the naive dequantize-then-matmul paths that the
memory and speed checks measure, and the deterministic edge cases of the hidden checks.

Given check tooling, run in the checking process: it builds inputs, states tolerances and is the
trusted baseline the checks measure; it never calls the learner's code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
I8, U8 = torch.int8, torch.uint8
SCALE_EPS = torch.finfo(torch.float32).tiny
FLOAT32_UNIT = 2.0**-24

UNIT_ROUNDOFF = {F32: 2.0**-24, F16: 2.0**-11, BF16: 2.0**-8}
"""Half the spacing of a dtype's normal numbers, relative: the largest error of one rounding to it."""

HALF_SUBNORMAL = {F32: 2.0**-150, F16: 2.0**-25, BF16: 2.0**-134}
"""Half a dtype's smallest subnormal: the absolute error of one rounding below its normal range
(float16's starts at 6.1e-5, so a tiny output or weight in float16 is off by up to 3e-8)."""


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def activations(gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype = F32, size: float = 1.0) -> torch.Tensor:
    """Gaussian activations ``(..., K)`` whose tokens differ in magnitude (a factor of about e^±0.5)."""
    spread = torch.exp(0.5 * torch.randn(*shape[:-1], 1, generator=gen))
    return (torch.randn(*shape, generator=gen) * spread * size).to(dtype)


def int8_weight(gen: torch.Generator, n: int, k: int, scale_dtype: torch.dtype = F32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(qweight int8 (N, K), scale (N,))``: codes over the whole int8 range (-128 included), and
    positive scales around 0.01 that differ by up to 30× between rows."""
    qweight = torch.randint(-128, 128, (n, k), generator=gen, dtype=I8)
    scale = (0.01 * torch.exp(1.7 * (torch.rand(n, generator=gen) - 0.5))).to(scale_dtype)
    return qweight, scale


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """The lab's int4 layout, ``uint8 (N, K)`` codes 0..15 -> ``uint8 (N, K // 2)``: element ``2j`` in
    the low nibble of byte ``j``, element ``2j + 1`` in the high nibble."""
    return (codes[:, 0::2] + codes[:, 1::2] * 16).to(U8)


def int4_weight(gen: torch.Generator, n: int, k: int, group_size: int, scale_dtype: torch.dtype = F32) -> tuple[torch.Tensor, ...]:
    """``(codes uint8 (N, K), packed, scale (N, G), zero_point uint8 (N, G))`` with ``G = K // group_size``:
    every code 0..15, zero points 0..15 (often mid-range, as asymmetric quantization gives them)."""
    codes = torch.randint(0, 16, (n, k), generator=gen, dtype=U8)
    groups = k // group_size
    zero_point = torch.clamp(torch.round(7.5 + 3.0 * torch.randn(n, groups, generator=gen)), 0, 15).to(U8)
    scale = (0.02 * torch.exp(1.7 * (torch.rand(n, groups, generator=gen) - 0.5))).to(scale_dtype)
    return codes, pack_nibbles(codes), scale, zero_point


def dequantize_int8(qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``qweight × scale`` per output row, float64 ``(N, K)`` (exact)."""
    return qweight.double() * scale.double().unsqueeze(1)


def dequantize_int4(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(code - zero_point) × scale`` per group, float64 ``(N, K)`` (exact)."""
    return (codes.double() - zero_point.double().repeat_interleave(group_size, 1)) * scale.double().repeat_interleave(group_size, 1)


def reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weightᵀ`` in float64, ``(..., N)``: the float reference every linear is held to."""
    return x.double() @ weight.double().t()


def weight_only_bound(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The largest ``|y - x @ Wᵀ|`` allowed per output of a weight-only linear, float64 ``(..., N)``.

    With ``u`` the unit roundoff of ``x``'s dtype, ``η`` half its smallest subnormal, ``R = x @ Wᵀ``
    and ``S = |x| @ |W|ᵀ``: ``3(u·|R| + η)`` for up to three roundings to ``x``'s dtype (the sums,
    the scale, their product, as in gpt-fast's order), ``u·S + η·Σ|x|`` for the weight dequantized
    in ``x``'s dtype, and ``(K + 2)·2^-24·S`` for float32 accumulation of ``K`` products.
    """
    u, eta, k = UNIT_ROUNDOFF[x.dtype], HALF_SUBNORMAL[x.dtype], weight.shape[1]
    exact = reference(x, weight)
    magnitude = x.double().abs() @ weight.double().abs().t()
    return 3 * (u * exact.abs() + eta) + (u + (k + 2) * FLOAT32_UNIT) * magnitude + eta * x.double().abs().sum(dim=-1, keepdim=True)


def w8a8_bound(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The largest ``|y - x @ Wᵀ|`` allowed per output of W8A8 with the given (already quantized)
    weight, float64 ``(..., N)``.

    Each activation code is off by at most half its token's step ``x_scale = amax / 127``, so the
    sums are off by at most ``x_scale / 2 × Σ_k |W[n, k]|`` (times ``1 + 2^-16`` for the float32
    step). The rescale rounds three times in float32 and the output once in ``x``'s dtype:
    ``(u + 2^-21)`` of the result's magnitude, plus half the dtype's smallest subnormal.
    """
    x64 = x.double()
    step = (x.float().abs().amax(dim=-1, keepdim=True) / 127).clamp(min=SCALE_EPS).double()  # (..., 1)
    quantization = step / 2 * weight.double().abs().sum(dim=1) * (1 + 2.0**-16)  # (..., N)
    exact = x64 @ weight.double().t()
    return quantization + (UNIT_ROUNDOFF[x.dtype] + 2.0**-21) * (exact.abs() + quantization) + HALF_SUBNORMAL[x.dtype]


# --- the naive dequantize-then-matmul paths (trusted baselines) ------------------------------


def naive_int8_linear(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Dequantize the whole int8 weight in ``x``'s dtype, then ``F.linear``: the path a fused kernel replaces."""
    weight = qweight.to(x.dtype) * scale.to(x.dtype).unsqueeze(1)  # (N, K): a full-precision copy
    return F.linear(x, weight)


def naive_int4_linear(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int) -> torch.Tensor:
    """Unpack and dequantize the whole int4 weight in ``x``'s dtype, then ``F.linear``."""
    n, k = packed.shape[0], 2 * packed.shape[1]
    codes = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(n, k // group_size, group_size)  # uint8 (N, G, g)
    weight = (codes.to(x.dtype) - zero_point.to(x.dtype).unsqueeze(-1)) * scale.to(x.dtype).unsqueeze(-1)  # (N, G, g): a full-precision copy
    return F.linear(x, weight.reshape(n, k))


# --- deterministic edge cases of the hidden checks --------------------------------------------


def edge_activations() -> list[tuple[str, torch.Tensor]]:
    """``(K = 16)``-wide activations every hidden check runs before its random ones: ties of the
    per-token quantizer, zero and constant tokens, one huge value, tiny values, negative zeros,
    half precision, 1-D and 3-D shapes."""
    gen = torch_generator(808)
    ties = torch.tensor([[127.0, -63.5, 0.5, 1.5, 2.5, -0.5, 3.5, -126.5, 4.0, 0.0, 5.5, -6.5, 7.0, 8.5, 9.5, 10.0]])
    zero_and_constant = torch.zeros(3, 16)
    zero_and_constant[1] = -2.25
    zero_and_constant[2, 5] = 3.0
    huge = activations(gen, (4, 16))
    huge[2, 7] = 3.0e4
    negative_zero = torch.tensor([[-0.0, 1.0] * 8, [0.0, -0.0] * 8])
    return [
        ("ties at .5 of the int8 step", ties),
        ("an all-zero token, a constant token and a one-hot token", zero_and_constant),
        ("a single huge activation", huge),
        ("tiny activations (1e-30)", activations(gen, (3, 16)) * 1e-30),
        ("negative zeros", negative_zero),
        ("float16 activations", activations(gen, (5, 16), F16)),
        ("bfloat16 activations", activations(gen, (5, 16), BF16)),
        ("1-D activations (one token)", activations(gen, (16,))),
        ("3-D activations (batch 2, 3 tokens)", activations(gen, (2, 3, 16))),
    ]
