"""Random inputs for the Lab 03 checks: weights with awkward shapes, dtypes and outliers.

Given check tooling: it draws inputs and states tolerances; it computes no answer of the lab.
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
    return (
        f"w ({case['out_features']}, {case['in_features']}) {case['dtype']}, {case['bits']} bits {kind} {granularity}, "
        f"scales in {case['scale_dtype']}"
    )


def stored_bytes(tensors) -> int:
    """Bytes held by a collection of tensors (a state_dict's values)."""
    return sum(t.numel() * t.element_size() for t in tensors)
