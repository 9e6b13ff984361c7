"""Inputs for the Lab 03 checks: deterministic edge cases, then random weights with awkward
shapes, dtypes and outliers.

Given check tooling: it builds inputs, states tolerances and expands a stored scale to the weight's
shape (the docstrings' ``(q - zero_point) × scale``); it computes no answer of the lab.
"""

from __future__ import annotations

import random

import torch

WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SCALE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

STEP_SLACK = 2.0**-14
"""Float32 slack on the half-step error bound, as a fraction of one step (one scale).

float32 rounds ``w / scale`` (a value of at most 255 steps, so off by < 255 × 2^-24 < 2^-16 of
a step, which can move a rounding decision by that much) and ``(q - zero_point) × scale``
(again < 2^-16 of a step). 2^-14 of a step covers both with room to spare, and is still far
below any real mistake (a wrong scale or rounding mode is off by a sizeable fraction of a step).
"""


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_weight(gen: torch.Generator, out_features: int, in_features: int, dtype: torch.dtype = torch.float32, std: float = 0.05) -> torch.Tensor:
    """Gaussian weights with a different spread per row, a few exact zeros, and a shifted mean on some rows."""
    w = torch.randn(out_features, in_features, generator=gen) * std
    w = w * torch.exp(torch.randn(out_features, 1, generator=gen))  # rows of different magnitude
    w = w + (torch.rand(out_features, 1, generator=gen) < 0.3) * std * 2  # some rows not centred on 0
    w[torch.rand(out_features, in_features, generator=gen) < 0.05] = 0.0
    return w.to(dtype)


def outlier_weight(gen: torch.Generator, out_features: int = 64, in_features: int = 256) -> torch.Tensor:
    """Weights like a trained LLM layer's: a Gaussian bulk, two outlier output rows and two outlier input columns (× 8)."""
    w = torch.randn(out_features, in_features, generator=gen) * 0.02
    w[[5, 40]] *= 8  # output channels with a large range
    w[:, [17, 200]] *= 8  # input features with a large range, as in LLM.int8()'s outlier features
    return w


def random_case(rng: random.Random) -> dict:
    """Random quantize_weight arguments: bits, granularity, symmetry, weight and scale dtypes, and a fitting shape."""
    group_size = rng.choice([None, -1, 8, 16, 32, 64, 128])
    in_features = (group_size if group_size and group_size > 0 else rng.choice([8, 16])) * rng.randint(1, 6)
    if rng.random() < 0.3 and group_size in (None, -1):
        in_features = rng.randint(1, 97)  # per-channel and per-tensor work on any width
    return dict(
        out_features=rng.randint(1, 40),
        in_features=in_features,
        bits=rng.choice([2, 3, 4, 4, 5, 6, 7, 8, 8]),
        group_size=group_size,
        symmetric=rng.random() < 0.5,
        dtype=rng.choice(WEIGHT_DTYPES),
        scale_dtype=rng.choice(SCALE_DTYPES),
    )


def describe_case(case: dict) -> str:
    granularity = {None: "per-channel", -1: "per-tensor"}.get(case["group_size"], f"group_size={case['group_size']}")
    kind = "symmetric" if case["symmetric"] else "asymmetric"
    name = f"{case['name']}: " if "name" in case else ""
    return (
        f"{name}w ({case['out_features']}, {case['in_features']}) {case['dtype']}, {case['bits']} bits {kind} {granularity}, "
        f"scales in {case['scale_dtype']}"
    )


RECIPROCAL_SCALE = 0.0999755859375
"""The float16 nearest 0.1: a scale whose float32 reciprocal rounds, so ``w * (1 / scale)`` and ``w / scale`` differ."""

RECIPROCAL_W = [0.9497680068016052, 1.44964599609375, -1.44964599609375, 127 * RECIPROCAL_SCALE]
"""With ``RECIPROCAL_SCALE``: 9.499999 (just below a tie), 14.5 and -14.5 (exact ties), 127 (the amax).

``w / scale`` gives codes 9, 14, -14, 127; ``w * (1 / scale)`` gives 10, 15, -15, 127; rounding half
away from zero gives 9, 15, -15, 127.
"""

F16_ZERO_POINT_W = [-1.5, 0.25, 0.0, -0.75]
"""8-bit asymmetric: the float32 scale 1.75 / 255 gives the zero point 219, the stored float16 scale
0.006866455078125 gives 218 (-1.5 / scale is -218.57 and -218.45)."""


def _case(name, w, bits, group_size=None, symmetric=True, scale_dtype=torch.float16):
    return (
        dict(name=name, out_features=w.shape[0], in_features=w.shape[1], bits=bits, group_size=group_size, symmetric=symmetric, dtype=w.dtype, scale_dtype=scale_dtype),
        w,
    )


def edge_cases() -> list[tuple[dict, torch.Tensor]]:
    """The deterministic ``(case, w)`` every hidden check runs before its random ones, so that a
    verdict never depends on the seed: ties at .5, values next to a tie, negative zeros, odd row
    lengths, boundary group sizes and bit widths, zero, constant, tiny and huge weights, half
    precision, and a zero point that depends on the stored scale."""
    gen = torch_generator(303)
    ties8 = torch.tensor([[63.5, 1.25, -1.25, 0.75, 0.25, -0.75, 2.25, -63.5]])  # scale 0.5: 127, ±2.5, 1.5, 0.5, ...
    ties4 = torch.tensor([[3.5, 1.25, -1.25, 0.25, 0.75, -2.25]])  # scale 0.5 at 4 bits: 7, ±2.5, 0.5, 1.5, -4.5
    negative_zero = torch.tensor([[-0.0, 0.5, -0.0, -1.0], [-0.0, -0.0, -0.0, -0.0], [0.25, -0.0, 0.0, 0.75]])
    zero_and_constant = torch.zeros(3, 8)
    zero_and_constant[1] = 0.3
    zero_and_constant[2, :4] = -2.0
    huge = torch.tensor([[1e8, -3e7, 2.0, 1.0], [5e6, -1.0, 0.5, 0.0]], dtype=torch.bfloat16)
    odd = random_weight(gen, 3, 5)
    return [
        _case("ties at .5, int8", ties8, 8),
        _case("ties at .5, int4", ties4, 4),
        _case("next to a tie, scale 0.1 in float16", torch.tensor([RECIPROCAL_W]), 8),
        _case("negative zeros, symmetric", negative_zero, 4),
        _case("negative zeros, asymmetric", negative_zero, 4, 2, symmetric=False),
        _case("odd row length 5", odd, 4),
        _case("odd row length 5, asymmetric per-tensor", odd, 4, -1, symmetric=False),
        _case("odd row length 7", random_weight(gen, 2, 7), 4, None, symmetric=False, scale_dtype=torch.float32),
        _case("one input", random_weight(gen, 4, 1), 4),
        _case("one weight", torch.tensor([[-0.4]]), 4, None, symmetric=False),
        _case("odd row length 9, 3 bits", random_weight(gen, 1, 9), 3),
        _case("group_size = in_features", random_weight(gen, 2, 6), 4, 6, symmetric=False),
        _case("group_size = 1", random_weight(gen, 2, 6), 4, 1, symmetric=False),
        _case("2 bits", random_weight(gen, 3, 8), 2, 4),
        _case("8 bits asymmetric", random_weight(gen, 3, 8), 8, 4, symmetric=False, scale_dtype=torch.bfloat16),
        _case("zero and constant groups", zero_and_constant, 8, 4, scale_dtype=torch.bfloat16),
        _case("zero and constant groups, asymmetric", zero_and_constant, 8, 4, symmetric=False),
        _case("tiny weights under the float16 floor", random_weight(gen, 2, 16, std=1e-6), 8, 8),
        _case("tiny weights, float32 scales", random_weight(gen, 2, 16, std=1e-6), 8, 8, symmetric=False, scale_dtype=torch.float32),
        _case("huge weights, float32 scales", huge, 8, None, scale_dtype=torch.float32),
        _case("float16 weights", random_weight(gen, 4, 32, torch.float16), 4, 16),
        _case("bfloat16 weights", random_weight(gen, 4, 32, torch.bfloat16), 4, 16, symmetric=False),
        _case("zero point from the stored scale", torch.tensor([F16_ZERO_POINT_W]), 8, None, symmetric=False),
        _case("rows entirely >= 0 and <= 0", torch.tensor([[-1.5, 0.0, 6.0, 3.0], [1.0, 2.0, 7.5, 0.5], [-7.5, -1.0, 0.0, -0.5]]), 4, None, symmetric=False),
    ]


def expand_qparam(qparam: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A stored ``(1, 1)``, ``(out, 1)`` or ``(out, in // g)`` scale or zero point repeated to the
    weight's ``(out, in)`` shape, in float64 (exact for float16, bfloat16 and float32 values)."""
    return qparam.double().repeat_interleave(shape[1] // qparam.shape[1], dim=1).expand(shape)


def reconstruct(qdata: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    """``(qdata - zero_point) × scale`` in float64, the weight a stored quantization stands for
    (float64 so that a check's own rounding never blames the learner)."""
    shape = tuple(qdata.shape)
    q = qdata.double() if zero_point is None else qdata.double() - expand_qparam(zero_point, shape)
    return q * expand_qparam(scale, shape)


def stored_bytes(tensors) -> int:
    """Bytes held by a collection of tensors (a state_dict's values)."""
    return sum(t.numel() * t.element_size() for t in tensors)
