"""Inputs for the Lab 07 checks: the given model and workloads, the float model's logits on them
(computed here, once per process, never by learner code), an independent perplexity, and
deterministic edge cases for the hidden checks.

Given check tooling: it builds inputs, states tolerances and measures the float model; it
computes no exercise's answer.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F

from infralens.tensor_checks import assert_layout, assert_tensor_close, assert_tensor_equal
from infralens.tinylm import load_tiny_lm, workload

F16, BF16 = torch.float16, torch.bfloat16
SCALE_EPS = torch.finfo(torch.float32).tiny

PERPLEXITY_RTOL = 1e-9
"""Relative tolerance between two float64 perplexities of the same logits: a float64 mean over at
most 10^5 terms rounds to about 10^5 × 2^-53 ≈ 1e-11 relative; exp keeps that; 1e-9 leaves room
for log-softmax written another way."""

HALF_STEP_SLACK = 2.0**-14
"""Float32 slack on the half-step bound, in steps: ``(x - min) / scale`` is within ``2^-24 × 255``
of its exact value, far below 2^-14 of a step."""

VALUE_SLACK = 2.0**-22
"""Relative float32 slack of a fake-quantized value: ``codes × scale + zero_point`` rounds twice."""


RECIPROCAL_GROUP = [0.0, 0.10000000149011612, 0.9666667580604553, 1.0]
"""A 4-bit group with min 0 and max 1, so scale = float32(1 / 15): ``x / scale`` is ``[0, 1.5,
14.500001, 15]`` (codes 0, 2, 15, 15), ``x * (1 / scale)`` is ``[0, 1.4999999, 14.5, 15]``
(codes 0, 1, 14, 15): multiplying by the reciprocal crosses both ties."""


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=None)
def model():
    """The given model (``infralens.tinylm``), loaded once per process."""
    return load_tiny_lm()


@functools.lru_cache(maxsize=None)
def tokens(name: str) -> torch.Tensor:
    """A given workload's token ids ``[count, length + 1]``."""
    return workload(name)


@functools.lru_cache(maxsize=None)
def float_logits(name: str) -> torch.Tensor:
    """The float model's logits on a workload's inputs ``tokens[:, :-1]``."""
    with torch.no_grad():
        return model()(tokens(name)[:, :-1])


def reference_perplexity(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """``exp`` of the mean cross-entropy in nats, with torch's own ``F.cross_entropy`` in float64."""
    return math.exp(F.cross_entropy(logits.double().reshape(-1, logits.shape[-1]), targets.reshape(-1)).item())


@functools.lru_cache(maxsize=None)
def float_perplexity(name: str) -> float:
    return reference_perplexity(float_logits(name), tokens(name)[:, 1:])


def run(name: str, **hooks) -> torch.Tensor:
    """The model's logits on a workload with the given hooks (the check's own, or ones wrapping one learner function)."""
    with torch.no_grad():
        return model()(tokens(name)[:, :-1], **hooks)


def groups_along(x: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """``x`` float64 with ``axis`` moved last and split into ``(groups, size)``: one group per row of the result."""
    moved = x.double().movedim(axis, -1)
    return moved.reshape(-1, size)


def assert_grouped_quantization(actual: torch.Tensor, x: torch.Tensor, bits: int, axis: int, size: int, what: str, who: str) -> None:
    """The properties every fake-quantized group has, whatever its values: float32 of ``x``'s shape;
    each group's min comes back exactly (code 0: ``0 × scale + min``); at most ``2^bits`` distinct
    values per group; every element within half a step (``(max - min) / (2^bits - 1) / 2``) of its
    input, plus float32 slack (the max too: ``quant_max × scale + min`` may round by an ulp)."""
    assert_layout(actual, tuple(x.shape), torch.float32, what, "float32 of the input's shape: fake quantization dequantizes back")
    mine, theirs = groups_along(actual, axis, size), groups_along(x.float(), axis, size)
    low, high = theirs.amin(-1, keepdim=True), theirs.amax(-1, keepdim=True)
    assert_tensor_equal(mine.amin(-1, keepdim=True).float(), low.float(), f"{what}: each group's min after quantization",
                        f"{who}: a group's min is its zero point, code 0, and comes back exactly. A different result means the groups are not "
                        "the ones asked for (another axis, or another granularity)")
    levels = max(len(torch.unique(row)) for row in mine)
    assert levels <= 2**bits, f"{what}: a group holds {levels} distinct values after quantization, more than 2^{bits} = {2**bits} levels ({who})"
    step = (high - low) / (2**bits - 1)
    bound = step * (0.5 + HALF_STEP_SLACK) + VALUE_SLACK * (low.abs() + high.abs())
    assert_tensor_close(mine, theirs, f"{what} (groups as rows)", atol=bound,
                        why=f"{who}: every element within half its group's step, (max - min) / (2^bits - 1) / 2, plus float32 rounding")


def edge_tensors() -> list[tuple[str, torch.Tensor]]:
    """Deterministic ``[rows, columns]`` inputs every hidden check runs before its random ones: ties,
    constant and all-zero rows, values next to a tie, a single huge outlier, negative zeros, half
    precision, tiny values.
    Every one has 8 rows and a number of columns that 4 divides."""
    gen = torch_generator(707)
    ties = torch.tensor([[0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0]] * 4 + [[1.0, 1.5, 2.0, 4.0, 3.0, -1.5, 0.0, 1.5]] * 4)
    constant = torch.zeros(8, 8)
    constant[:, 4:] = -7.25
    constant[4:] = 0.3
    huge = torch.randn(8, 12, generator=gen)
    huge[5, 2] = 3.0e4
    by_token = torch.tensor([[RECIPROCAL_GROUP[t % 4]] * 4 for t in range(8)])  # (8, 4): each column's tokens next to the ties
    reciprocal = torch.cat([torch.tensor([RECIPROCAL_GROUP] * 8), by_token], dim=1)  # and each row's first 4 columns too
    return [
        ("ties at .5", ties),
        ("all-zero and constant groups", constant),
        ("next to a tie (scale 1/15 at 4 bits)", reciprocal),
        ("a single huge outlier", huge),
        ("negative zeros", torch.tensor([[-0.0, 0.5, -0.0, 0.0] * 2] * 8)),
        ("float16 values", (torch.randn(8, 16, generator=gen) * 3).to(F16)),
        ("bfloat16 values", (torch.randn(8, 16, generator=gen) * 3).to(BF16)),
        ("tiny values", torch.randn(8, 16, generator=gen) * 1e-30),
    ]
