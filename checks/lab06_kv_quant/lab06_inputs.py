"""Inputs for the Lab 06 checks: keys with LLM-like outlier channels, values, queries, deterministic
edge cases, the packed-code layout as the starter documents it, and the bounds the checks hold
the learner to.

Given check tooling: it builds inputs, states tolerances and reads stored data back; it computes
no exercise's answer.
"""

from __future__ import annotations

import math

import torch

F16, BF16 = torch.float16, torch.bfloat16
E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
SCALE_EPS = torch.finfo(torch.float32).tiny

OUTLIER_CHANNELS = (3, 11, 40)
"""head_dim channels that carry the outliers of :func:`outlier_keys` (a head_dim of 48 or more)."""

RECIPROCAL_GROUP = [0.0, 0.10000000149011612, 0.9666667580604553, 1.0]
"""A 4-bit group with min 0 and max 1, so scale = float32(1 / 15). ``x / scale`` is
``[0, 1.5, 14.500001, 15]`` (codes 0, 2, 15, 15); ``x * (1 / scale)`` is ``[0, 1.4999999, 14.5,
15]`` (codes 0, 1, 14, 15): multiplying by the reciprocal crosses both ties."""
RECIPROCAL_CODES = [0, 2, 15, 15]

STEP_SLACK = 2.0**-14
"""Float32 slack on the half-step bound, in steps: ``(x - zero_point) / scale`` is within
``2^-24 × 255`` of its exact value, far below 2^-14 of a step."""

VALUE_SLACK = 2.0**-22
"""Relative float32 slack of a dequantized value: ``codes × scale + zero_point`` rounds twice
(2^-24 each) on magnitudes up to ``|zero_point| + quant_max × scale``."""

FP8_HALF_ULP = {E4M3: 2.0**-4, E5M2: 2.0**-3}
"""Half the spacing of normal FP8 values, relative: 3 mantissa bits (e4m3fn), 2 (e5m2)."""
FP8_HALF_SUBNORMAL = {E4M3: 2.0**-10, E5M2: 2.0**-17}
"""Half the smallest subnormal, the absolute bound below the normal range (before the scale)."""


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def outlier_keys(gen: torch.Generator, shape: tuple[int, ...] = (2, 2, 64, 64), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Keys ``(..., tokens, head_dim)`` as LLMs have them: a Gaussian bulk with a per-channel
    offset, and the channels ``OUTLIER_CHANNELS`` 10-30× larger with a fixed sign in every
    token (KIVI's and KVQuant's observation on pre- and post-RoPE keys)."""
    *lead, tokens, head_dim = shape
    offset = 0.5 * torch.randn(*lead, 1, head_dim, generator=gen)  # channels differ in centre
    k = torch.randn(*shape, generator=gen) + offset
    channels = [c for c in OUTLIER_CHANNELS if c < head_dim]
    if channels:
        size = torch.tensor([10.0, 20.0, 30.0][: len(channels)])
        spread = 1.0 + 0.2 * torch.randn(*lead, tokens, len(channels), generator=gen)
        k[..., channels] = size * spread
    return k.to(dtype)


def plain_values(gen: torch.Generator, shape: tuple[int, ...] = (2, 2, 64, 64), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values ``(..., tokens, head_dim)``: Gaussian, tokens of different magnitude, no outlier channel."""
    size = torch.exp(0.3 * torch.randn(*shape[:-1], 1, generator=gen))
    return (torch.randn(*shape, generator=gen) * size).to(dtype)


def queries(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Queries ``(..., queries, head_dim)`` whose dot products with :func:`outlier_keys` give
    peaked but not one-hot attention (the outlier channels get small query weights)."""
    q = torch.randn(*shape, generator=gen)
    channels = [c for c in OUTLIER_CHANNELS if c < shape[-1]]
    q[..., channels] *= 0.1
    return q


def read_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """The first ``n`` codes of ``packed (..., bytes)`` as the starter's ``pack_codes`` lays them out
    (element ``j`` in byte ``j // (8 // bits)`` at bit ``(j % (8 // bits)) × bits``), int64."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte) * bits
    lanes = (packed.to(torch.int64).unsqueeze(-1) >> shifts) & (2**bits - 1)
    return lanes.reshape(*packed.shape[:-1], -1)[..., :n]


def expand(groups: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """A per-group tensor repeated over each group's ``size`` elements along ``axis``, float64."""
    return groups.double().repeat_interleave(size, dim=axis)


def reconstruct(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> torch.Tensor:
    """``codes × scale + zero_point`` in float64 (exact for uint8 codes and float32 parameters)."""
    size = codes.shape[axis] // scale.shape[axis]
    return codes.double() * expand(scale, size, axis) + expand(zero_point, size, axis)


def half_step_bound(scale: torch.Tensor, zero_point: torch.Tensor, size: int, axis: int, bits: int) -> torch.Tensor:
    """The largest ``|dequantized - x|`` allowed per element: half its group's step plus
    :data:`STEP_SLACK` of a step, plus :data:`VALUE_SLACK` of the magnitudes involved."""
    step = expand(scale, size, axis)
    return step * (0.5 + STEP_SLACK) + VALUE_SLACK * (expand(zero_point, size, axis).abs() + (2**bits - 1) * step)


def attention_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``softmax(q @ k^T / sqrt(head_dim))`` in float64: the distribution the checks measure errors of."""
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1)


def edge_tensors() -> list[tuple[str, torch.Tensor]]:
    """The deterministic ``(tokens, head_dim)``-shaped inputs every hidden check runs before its
    random ones, so that a verdict never depends on the seed: ties, values next to a tie,
    all-zero and constant rows and columns, a single huge outlier, negative zeros, half precision
    and outlier channels. Every one has 8 tokens and a head_dim of 8 or more (a multiple of 4)."""
    gen = torch_generator(606)
    ties = torch.tensor([[0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0]] * 4 + [[1.0, 1.5, 2.0, 4.0, 3.0, -1.5, 0.0, 1.5]] * 4)
    reciprocal = torch.tensor([[RECIPROCAL_GROUP[t % 4]] * 4 for t in range(8)])  # (8, 4): each channel's 4 tokens next to the ties
    reciprocal = torch.cat([torch.tensor([RECIPROCAL_GROUP] * 8), reciprocal], dim=1)  # and each token's first 4 channels too
    zero_constant = torch.zeros(8, 8)
    zero_constant[:, 4:] = -7.25
    zero_constant[4:] = 0.3
    huge = torch.randn(8, 12, generator=gen)
    huge[5, 2] = 3.0e4
    negative_zero = torch.tensor([[-0.0, 0.5, -0.0, 0.0] * 2] * 8)
    return [
        ("ties at .5", ties),
        ("next to a tie (scale 1/15 at 4 bits)", reciprocal),
        ("all-zero and constant groups", zero_constant),
        ("a single huge outlier", huge),
        ("negative zeros", negative_zero),
        ("float16 keys with outlier channels", outlier_keys(gen, (8, 48), F16)),
        ("bfloat16 keys with outlier channels", outlier_keys(gen, (8, 48), BF16)),
        ("tiny values", torch.randn(8, 16, generator=gen) * 1e-30),
        ("4-D (batch, heads, tokens, head_dim)", outlier_keys(gen, (2, 3, 8, 64))),
    ]
