"""Inputs for the Lab 05 checks: activations with LLM-like outlier channels, weights, deterministic
edge cases, and the error bounds the checks hold the learner to.

Given check tooling: it builds inputs, states tolerances and bounds, and reconstructs
``codes × scale`` as the docstrings define it; it computes no exercise's answer.
"""

from __future__ import annotations

import torch

F16, BF16 = torch.float16, torch.bfloat16
SCALE_EPS = torch.finfo(torch.float32).tiny

OUTLIER_CHANNELS = (3, 17, 40)
"""Hidden channels that carry the outliers in :func:`outlier_activations` (a hidden size of 48 or more)."""

RECIPROCAL_ROW = [1.0, 0.04330708459019661, 0.05905511602759361, 0.6889763474464417]
"""A token with amax 1.0, so scale = float32(1 / 127) = 0.007874015718698502. ``x / scale`` is
``[127, 5.5, 7.5, 87.5]`` (exact ties, to even: 127, 6, 8, 88); ``x * (1 / scale)`` is
``[127, 5.4999995, 7.4999995, 87.49999]`` (codes 127, 5, 7, 87)."""
RECIPROCAL_CODES = [127, 6, 8, 88]
RECIPROCAL_SCALE = 0.007874015718698502

FLOAT32_SLACK = 2.0**-20
"""Relative float32 slack on a W8A8 result: the int32 sums are exact and convert to float32
exactly (below 2^24); the two scale multiplications round once each (2^-24 relative), in any
order. 2^-20 of ``sum |x|·|w|`` covers that and the float32 scales' own rounding, and is far below
one int8 step (1/254 of a token's amax)."""


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def outlier_activations(gen: torch.Generator, tokens: int = 64, hidden: int = 96, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Activations ``(tokens, hidden)`` as LLMs have them: a Gaussian bulk whose size varies from
    token to token, the channels ``OUTLIER_CHANNELS`` 20–100× larger in every token, and 8×
    more in token 0 (a massive activation)."""
    size = 0.5 * torch.exp(0.3 * torch.randn(tokens, 1, generator=gen))  # tokens of different magnitude
    x = torch.randn(tokens, hidden, generator=gen) * size  # the bulk: |x| well under 6
    sign = torch.randint(0, 2, (tokens, len(OUTLIER_CHANNELS)), generator=gen) * 2 - 1
    spread = 0.5 + torch.rand(tokens, len(OUTLIER_CHANNELS), generator=gen)
    x[:, list(OUTLIER_CHANNELS)] = sign * torch.tensor([20.0, 60.0, 100.0]) * spread * size  # 20-100x the bulk, in every token
    x[0, list(OUTLIER_CHANNELS)] *= 8  # a massive activation, as the first token of many LLMs (an attention sink) has
    return x.to(dtype)


def random_weight(gen: torch.Generator, out_features: int, in_features: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian ``[out, in]`` weights whose output rows differ in magnitude, as trained layers' do."""
    w = torch.randn(out_features, in_features, generator=gen) * 0.05
    return (w * torch.exp(torch.randn(out_features, 1, generator=gen))).to(dtype)


def reconstruct(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codes × scale`` in float64 (exact for int8 codes and float32 scales)."""
    return codes.double() * scale.double()


def w8a8_bound(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The largest ``|W8A8(x, w) - x @ w.T|`` allowed, per output element, float64 ``(M, out)``
    for ``x (M, in)``.

    With per-token steps ``sx = amax_m / 127`` and per-channel steps ``sw = amax_n / 127``, every
    code is off by at most half a step, so
    ``|error| <= sx/2 · sum|w| + sw/2 · sum|x| + in · sx·sw/4``, plus :data:`FLOAT32_SLACK`
    of ``sum |x|·|w|`` (and 2^-16 of the bound for the float32 steps' rounding).
    """
    x, w = x.double(), w.double()
    sx = x.abs().amax(dim=1, keepdim=True) / 127  # (M, 1)
    sw = w.abs().amax(dim=1, keepdim=True).t() / 127  # (1, out)
    bound = sx / 2 * w.abs().sum(dim=1) + sw / 2 * x.abs().sum(dim=1, keepdim=True) + x.shape[1] * sx * sw / 4
    return bound * (1 + 2.0**-16) + FLOAT32_SLACK * (x.abs() @ w.abs().t())


def fake_w8a8(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The baseline of the outlier checks' ratios: per-token × per-channel int8 simulated in
    float64 ("fake quantization", as SmoothQuant's ``fake_quant.py`` measures it), ``(M, out)``."""
    x, w = x.double(), w.double()
    sx = (x.abs().amax(dim=1, keepdim=True) / 127).clamp(min=SCALE_EPS)
    sw = (w.abs().amax(dim=1, keepdim=True) / 127).clamp(min=SCALE_EPS)
    return (torch.round(x / sx) * sx) @ (torch.round(w / sw) * sw).t()


def relative_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    """``||y - reference|| / ||reference||`` (Frobenius, float64)."""
    return float((y.double() - reference.double()).norm() / reference.double().norm())


def edge_activations() -> list[tuple[str, torch.Tensor]]:
    """The deterministic activations every hidden check runs before its random ones, so that a
    verdict never depends on the seed: ties at .5, values next to a tie, all-zero and constant
    rows, a single huge outlier, negative zeros, half precision, 1-D and 3-D shapes, odd widths."""
    gen = torch_generator(505)
    ties = torch.tensor([[-63.5, 0.25, 0.75, 1.25, 2.5, -0.5, 126.5], [3.0, -1.5, 0.0, 127.0, -2.5, 0.5, 4.5]])
    small_ties = torch.tensor([[3.96875, 0.015625, 0.078125, -0.046875, -0.078125], [-3.96875, 0.109375, -0.015625, 0.0, 1.984375]])  # ±0.5, 2.5, 3.5 steps
    zero_constant = torch.zeros(3, 5)
    zero_constant[1] = 0.3
    zero_constant[2] = -7.0
    huge = torch.randn(4, 33, generator=gen)
    huge[2, 5] = 3.0e4
    negative_zero = torch.tensor([[-0.0, 0.5, -0.0], [-0.0, -0.0, -0.0]])
    return [
        ("ties at .5", ties),
        ("ties at .5 below the outlier threshold (step 2^-5)", small_ties),
        ("next to a tie (scale 1/127)", torch.tensor([RECIPROCAL_ROW])),
        ("all-zero and constant rows", zero_constant),
        ("a single huge outlier", huge),
        ("negative zeros", negative_zero),
        ("one token, 1-D", torch.randn(7, generator=gen)),
        ("one hidden channel", torch.randn(5, 1, generator=gen)),
        ("3-D [batch, tokens, hidden], odd sizes", torch.randn(3, 5, 7, generator=gen)),
        ("float16 with outlier channels", outlier_activations(gen, 9, 48, F16)),
        ("bfloat16 with outlier channels", outlier_activations(gen, 9, 48, BF16)),
        ("tiny values", torch.randn(3, 8, generator=gen) * 1e-30),
    ]
