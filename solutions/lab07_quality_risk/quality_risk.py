"""Lab 07 — quality risk: measure what quantizing each target does to a trained model.

Labs 03, 05 and 06 quantize weights, activations and the KV cache as tensors and measure tensor
errors. A model does not feel a tensor error; it feels a changed next-token distribution. This
lab fake-quantizes (quantize, then dequantize back to float32) each target of a small trained
causal transformer, ``infralens.tinylm`` (given: the model, its language and held-out text), one
target at a time, and measures what users would notice: **perplexity** on held-out text and
**top-1 agreement** with the float model. The result is a risk table that names, for this model,
which target and bit width is safe, which degrades it and which breaks it — and two workloads
that show a verdict is a property of the model *and* the workload.

Conventions of the whole lab (the checks test each one):

* one quantizer for every target, asymmetric with a float zero point (KIVI's): for each group of
  values, in float32, ``zero_point = min``, ``scale = max((max - min) / quant_max, SCALE_EPS)``
  with ``quant_max = 2^bits - 1`` (so ``2^bits`` levels), ``codes = clamp(round((x - min) /
  scale), 0, quant_max)`` (``torch.round``, half to even, of a true division) and the
  fake-quantized value ``codes × scale + zero_point``, computed in that order;
* ``bits`` is an ``int`` (never a ``bool``) in ``SUPPORTED_BITS``; tensors are float32, float16
  or bfloat16, converted to float32 first; results are float32;
* granularity names who shares a scale: ``TARGETS`` lists them per target (weights
  ``[out_features, in_features]``: per output row, or groups of ``group_size`` input columns;
  activations ``[..., in_features]``: the whole tensor, or each token's row; KV
  ``[batch, heads, tokens, head_dim]``: each token's ``head_dim`` values, or keys per channel
  across the quantized tokens with values per token);
* quality is measured against the float model on the same tokens; a configuration's verdict
  follows the perplexity increase ``perplexity / float_perplexity - 1``:

  ===========  ==========================================  =====================================
  verdict      increase                                    on this model, for example
  ===========  ==========================================  =====================================
  ``safe``     ``<= SAFE_INCREASE`` (+1%)                  8-bit anything; 4-bit weights
  ``degrades`` ``<= BREAKS_INCREASE`` (+20%)               2-bit weights in groups of 32
  ``breaks``   ``> BREAKS_INCREASE``, or an infinite one   4-bit activations per tensor
  ===========  ==========================================  =====================================

  +1% is about ten times the gap between int8 weight-only and bf16 in torchao's Llama-3-8B table
  (7.447 against 7.441: +0.1%); past +20% this model picks another next token than the float
  one at about 16% of positions or more (top-1 agreement 0.84 or less);
* bad input raises ``ValueError`` naming the offending values.

Work through the exercises in order (``infralens hint lab07`` when stuck):

1.  ``fake_quantize``        the quantizer: groups along one axis, back to float32
2.  ``quantize_weight``      weights per output channel or per group of input columns
3.  ``quantize_activation``  a Linear's input per tensor or per token
4.  ``quantize_kv``          the KV cache per token or with per-channel keys, recent tokens in float
5.  ``perplexity``           exp of the mean negative log-likelihood, natural log
6.  ``top1_agreement``       how often the quantized model's argmax is the float model's
7.  ``model_hooks``          a configuration as the model's fake-quantization hooks
8.  ``measure``              one forward pass of the given model: perplexity and agreement
9.  ``verdict``              safe, degrades or breaks, from the perplexity increase
10. ``risk_table``           every configuration measured against the float model

Run ``pytest --lab 07`` (or ``pytest checks/lab07_quality_risk``) to check your work, and
``infralens chart lab07`` to draw your risk table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from infralens.tensors import require_float_tensor
from infralens.tinylm import TinyLM, load_tiny_lm

# --------------------------------------------------------------------------------------------
# Given: vocabulary and helpers of the lab (not exercises)
# --------------------------------------------------------------------------------------------

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Dtypes the quantizers accept; all are converted to float32 before any arithmetic."""

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)
"""Code widths of the quantizer: ``2^bits`` levels, codes ``0 .. 2^bits - 1``."""

SCALE_EPS = torch.finfo(torch.float32).tiny
"""Floor of every scale, 2^-126 (the smallest normal float32): a constant group gets this scale
instead of 0, so its codes are 0 instead of 0 / 0 = NaN, and it comes back as its value."""

TARGETS = {
    "weights": ("per-channel", "per-group"),
    "activations": ("per-tensor", "per-token"),
    "kv": ("per-token", "per-channel-keys"),
}
"""Each quantization target and its granularities, in the order the risk table lists them."""

SAFE_INCREASE = 0.01
"""A perplexity increase up to +1% is ``safe``."""

BREAKS_INCREASE = 0.20
"""A perplexity increase beyond +20% ``breaks`` the model; in between it ``degrades``."""

VERDICTS = ("safe", "degrades", "breaks")


def quant_max(bits: int) -> int:
    """``2^bits - 1``, the largest code: 3 at 2 bits, 15 at 4 bits, 255 at 8 bits.

    ``bits`` must be an ``int`` (never a ``bool``) in ``SUPPORTED_BITS``; anything else raises
    ``ValueError("bits=9 is not supported: ...")`` naming the value.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} is not supported: codes are one of {SUPPORTED_BITS} bits wide")
    return 2**bits - 1


def check_tensor(x: object, name: str, min_dim: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite, non-empty tensor of a dtype in ``FLOAT_DTYPES``
    with at least ``min_dim`` dims; the message starts with ``name`` and names the problem."""
    require_float_tensor(x, name, FLOAT_DTYPES, min_dim)


def check_granularity(target: str, granularity: object) -> None:
    """Raise ``ValueError`` unless ``granularity`` is one of ``TARGETS[target]``, naming both."""
    if granularity not in TARGETS[target]:
        raise ValueError(f"granularity={granularity!r} is not one of {target}'s: {TARGETS[target]}")


@dataclass(frozen=True)
class QuantConfig:
    """One row of the risk table: which target, at which granularity and bit width.

    ``group_size`` (input columns per group) matters only for ``weights`` ``per-group``;
    ``residual_length`` (most recent tokens kept in float) only for ``kv``. The constructor
    validates every field and raises ``ValueError`` naming the field and its value.
    """

    target: str
    granularity: str
    bits: int
    group_size: int = 32
    residual_length: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} is not one of {tuple(TARGETS)}")
        check_granularity(self.target, self.granularity)
        quant_max(self.bits)
        for name, low in (("group_size", 1), ("residual_length", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an int >= {low}")

    @property
    def label(self) -> str:
        """``"weights per-group g32 4-bit"``, ``"kv per-token r32 2-bit"``: the row's name in tables and charts."""
        extra = f" g{self.group_size}" if self.granularity == "per-group" else f" r{self.residual_length}" if self.target == "kv" and self.residual_length else ""
        return f"{self.target} {self.granularity}{extra} {self.bits}-bit"

    @property
    def series(self) -> str:
        """The row's line in the chart: everything but the bit width, ``"weights per-group g32"``."""
        return self.label.rsplit(" ", 1)[0]


@dataclass(frozen=True)
class RiskRow:
    """One measured configuration: its perplexity, the increase over float, top-1 agreement, verdict."""

    config: QuantConfig
    perplexity: float
    increase: float
    agreement: float
    verdict: str


RISK_GRID = tuple(
    [QuantConfig("weights", g, b) for g in TARGETS["weights"] for b in (8, 4, 3, 2)]
    + [QuantConfig("activations", g, b) for g in TARGETS["activations"] for b in (8, 6, 4, 3)]
    + [QuantConfig("kv", g, b, residual_length=r) for g in TARGETS["kv"] for r in (0, 32) for b in (8, 4, 3, 2)]
)
"""The configurations of the lab's risk table and chart (``infralens chart lab07``)."""


@functools.lru_cache(maxsize=None)
def tiny_lm() -> TinyLM:
    """The given trained model (:func:`infralens.tinylm.load_tiny_lm`), loaded once per process:
    eval mode, parameters frozen. Its forward takes the hooks :func:`model_hooks` builds."""
    return load_tiny_lm()


def format_risk_table(rows: list[RiskRow], float_perplexity: float) -> str:
    """The rows as a Markdown table, float model first: what the reading guide shows."""
    lines = ["| configuration | perplexity | increase | top-1 agreement | verdict |", "|---|---|---|---|---|",
             f"| float32 | {float_perplexity:.3f} | — | 1.000 | — |"]
    lines += [f"| {r.config.label} | {r.perplexity:.3f} | {r.increase:+.2%} | {r.agreement:.3f} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def fake_quantize(x: Tensor, bits: int, axis: int = -1, group_size: int | None = None) -> Tensor:
    """Quantize ``x`` in groups along ``axis`` and dequantize it back: float32 of ``x``'s shape.

    A group is ``group_size`` consecutive elements along ``axis`` with every other index fixed;
    ``group_size=None`` means the whole axis (one group per index of the other dims). For each
    group, in float32: ``zero_point = min``, ``scale = max((max - min) / quant_max(bits),
    SCALE_EPS)``, ``codes = clamp(round((x - zero_point) / scale), 0, quant_max)``
    (``torch.round``: half to even), and the result ``codes × scale + zero_point``. Each group's
    min comes back exactly (code 0), its max up to float32 rounding (code ``quant_max``); every
    element moves by at most half a step, ``scale / 2`` (plus float32 rounding).

    Errors (``ValueError``; brackets: what its message must contain): ``bits`` (see
    :func:`quant_max`) [its value]; ``x`` invalid (:func:`check_tensor`) [as there]; ``axis`` not
    an ``int`` in ``[-x.dim(), x.dim())``, or a ``bool`` [its value]; ``group_size`` neither
    ``None`` nor an ``int >= 1``, or not dividing ``x.shape[axis]`` [both numbers].

    Example: ``x = [0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0]``, ``bits=2``, ``group_size=4``:
    scales ``[1.0, 2.0]``, zero points ``[0.0, -2.0]``, codes ``[0, 0, 2, 3, 0, 0, 1, 3]`` (0.5 and
    1.5 are ties: to the even 0 and 2; 1.25 -> 1) -> ``[0.0, 0.0, 2.0, 3.0, -2.0, -2.0, 0.0,
    4.0]``. With ``group_size=None`` the whole row is one group: scale 2.0, zero point -2.0 ->
    ``[0.0, 0.0, 2.0, 2.0, -2.0, -2.0, 0.0, 4.0]``.
    """
    q_max = quant_max(bits)
    check_tensor(x, "x")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis={axis!r} is out of range for x of shape {tuple(x.shape)}: expected an int in [{-x.dim()}, {x.dim()})")
    length = x.shape[axis]
    size = length if group_size is None else group_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or length % size:
        raise ValueError(f"group_size={group_size!r} must be None or an int >= 1 dividing the {length} elements along axis {axis} (shape {tuple(x.shape)})")
    # Move the grouped axis last and split it into (groups, size): every reduction is over dim -1.
    moved = x.float().movedim(axis, -1)  # (..., length)
    groups = moved.reshape(*moved.shape[:-1], length // size, size)  # (..., groups, size)
    low = groups.amin(dim=-1, keepdim=True)  # the zero point: the group's min comes back exactly
    scale = ((groups.amax(dim=-1, keepdim=True) - low) / q_max).clamp(min=SCALE_EPS)  # a constant group must not divide 0 by 0
    codes = torch.round((groups - low) / scale).clamp(0, q_max)
    return (codes * scale + low).reshape(moved.shape).movedim(-1, axis)


def quantize_weight(w: Tensor, bits: int, granularity: str = "per-channel", group_size: int = 32) -> Tensor:
    """Fake-quantize an ``nn.Linear`` weight ``[out_features, in_features]``: float32 of its shape.

    ``per-channel``: one scale and zero point per output row, over all ``in_features`` columns.
    ``per-group``: one per run of ``group_size`` consecutive input columns of each row (GPTQ and
    AWQ use 128, HQQ 64). Both are :func:`fake_quantize` along the input dim (the last).

    Errors (``ValueError``; brackets: what its message must contain): ``w`` not 2-D or invalid
    (:func:`check_tensor`) [its shape, or as there]; ``granularity`` not one of
    ``TARGETS["weights"]`` [its value]; those of :func:`fake_quantize` (``bits``; a
    ``group_size`` that does not divide ``in_features``, for ``per-group`` only).

    Example: ``w = [[0.0, 1.0, 2.0, 3.0], [0.0, 4.0, 20.0, 30.0]]``, ``bits=2``: per channel
    the rows' steps are 1.0 and 10.0 -> ``[[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 20.0, 30.0]]`` (the
    4.0 is lost to the row's range); per group of 2 (``[0, 4]`` and ``[20, 30]`` are groups of
    their own) -> ``w`` exactly.
    """
    check_tensor(w, "w", min_dim=2)
    if w.dim() != 2:
        raise ValueError(f"w must be a 2-D [out_features, in_features] weight, got shape {tuple(w.shape)}")
    check_granularity("weights", granularity)
    # Groups run along the input dim: the values one output row multiplies and sums together.
    return fake_quantize(w, bits, axis=-1, group_size=None if granularity == "per-channel" else group_size)


def quantize_activation(x: Tensor, bits: int, granularity: str = "per-token") -> Tensor:
    """Fake-quantize the input ``x [..., in_features]`` of a Linear: float32 of its shape.

    ``per-token``: one scale and zero point per token (per row of the last dim), computed as the
    token arrives (dynamic quantization). ``per-tensor``: one for the whole tensor, every
    sequence of the batch and every token together, so the largest value anywhere sets the step
    of every other value.

    Errors (``ValueError``; brackets: what its message must contain): ``x`` invalid
    (:func:`check_tensor`) [as there]; ``granularity`` not one of ``TARGETS["activations"]`` [its
    value]; ``bits`` (see :func:`quant_max`) [its value].

    Example: ``x = [[0.0, 1.0, 2.0, 3.0], [0.0, 0.1, 0.2, 0.3]]``, ``bits=2``: per token ->
    ``x`` itself (steps 1.0 and 0.1: every value is on its row's grid); per tensor the step is
    1.0 for both rows -> ``[[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]]``: the small token is gone.
    """
    check_tensor(x, "x")
    check_granularity("activations", granularity)
    if granularity == "per-token":
        return fake_quantize(x, bits, axis=-1)
    return fake_quantize(x.reshape(-1), bits).reshape(x.shape)  # one group: every element of the tensor


def quantize_kv(k: Tensor, v: Tensor, bits: int, granularity: str = "per-channel-keys", residual_length: int = 0) -> tuple[Tensor, Tensor]:
    """Fake-quantize a KV cache as a prompt leaves it: old tokens quantized, recent ones in float.

    ``k`` and ``v`` are ``[batch, heads, tokens, head_dim]``. The oldest ``n = max(tokens -
    residual_length, 0)`` tokens (the first ``n`` along dim 2) are fake-quantized; the most
    recent ``residual_length`` stay exactly as they are (converted to float32). ``per-token``:
    keys and values both with one scale per token (over its ``head_dim`` values).
    ``per-channel-keys`` (KIVI's choice): keys with one scale per channel of each head, over the
    ``n`` quantized tokens; values per token. Returns ``(k_hat, v_hat)``, float32 of the inputs'
    shape. With ``n = 0`` (a prompt that fits the window) nothing is quantized.

    Errors (``ValueError``; brackets: what its message must contain): ``k`` or ``v`` invalid or
    not 4-D (:func:`check_tensor`) [its shape, or as there]; ``v`` of another shape than ``k``
    [both shapes]; ``granularity`` not one of ``TARGETS["kv"]`` [its value]; ``residual_length``
    not an ``int >= 0``, or a ``bool`` [its value]; ``bits`` (see :func:`quant_max`) [its value].

    Example: one head, 4 tokens, ``k = [[0, 1, 2, 6], [3, 0, 1, 0], [6, 2, 0, 3], [1.3, 1.7,
    2.9, 0.4]]``, ``bits=2``, ``residual_length=1``: tokens 0-2 are quantized, token 3 is kept
    as is. Per token (steps 2, 1, 2): ``[[0, 0, 2, 6], [3, 0, 1, 0], [6, 2, 0, 4], [1.3, 1.7, 2.9,
    0.4]]`` (0.5 and 1.5 steps are ties: to even). Per channel (channel steps 2, 2/3, 2/3, 2):
    ``[[0, 4/3, 2, 6], [4, 0, 4/3, 0], [6, 2, 0, 4], [1.3, 1.7, 2.9, 0.4]]``.
    """
    for name, tensor in (("k", k), ("v", v)):
        check_tensor(tensor, name, min_dim=4)
        if tensor.dim() != 4:
            raise ValueError(f"{name} must be [batch, heads, tokens, head_dim], got shape {tuple(tensor.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"v has shape {tuple(v.shape)} but k has {tuple(k.shape)}: the cache holds one value per key")
    check_granularity("kv", granularity)
    if isinstance(residual_length, bool) or not isinstance(residual_length, int) or residual_length < 0:
        raise ValueError(f"residual_length={residual_length!r} must be an int >= 0")
    quant_max(bits)
    k, v = k.float(), v.float()
    n = max(k.shape[2] - residual_length, 0)  # the oldest tokens; the window keeps the newest
    if n == 0:
        return k, v
    key_axis = -2 if granularity == "per-channel-keys" else -1  # per channel: statistics over tokens
    k_old = fake_quantize(k[:, :, :n], bits, axis=key_axis)
    v_old = fake_quantize(v[:, :, :n], bits, axis=-1)  # values per token in both schemes
    return torch.cat([k_old, k[:, :, n:]], dim=2), torch.cat([v_old, v[:, :, n:]], dim=2)


def perplexity(logits: Tensor, targets: Tensor) -> float:
    """``exp(mean(-log p(target)))``: the model's perplexity on ``targets``, a Python ``float``.

    ``logits`` is ``[..., vocab]`` (float), ``targets`` the ``torch.int64`` token ids ``[...]``
    with ``logits``' leading shape. In float64 (logits converted first): log-softmax over the
    vocabulary, the negative log-probability of each target in nats (natural log), the **mean**
    over every position, then ``exp``. A uniform model over ``V`` tokens scores exactly ``V``; a
    perfect one 1.

    Errors (``ValueError``; brackets: what its message must contain): ``logits`` invalid
    (:func:`check_tensor`, at least 1-D) [as there]; ``targets`` not ``torch.int64`` [its dtype];
    shapes that do not fit [both shapes]; a target outside ``[0, vocab)`` [its value].

    Example: ``logits = [[0.0, 0.0, 0.0, 0.0], [ln 3, 0.0, 0.0, 0.0]]``, ``targets = [1, 0]``:
    probabilities ``1/4`` and ``3/6 = 1/2`` -> ``exp((ln 4 + ln 2) / 2) = sqrt(8) ≈ 2.8284``.
    """
    check_tensor(logits, "logits")
    if not isinstance(targets, Tensor) or targets.dtype != torch.int64:
        raise ValueError(f"targets must be a torch.int64 tensor of token ids, got {targets.dtype if isinstance(targets, Tensor) else type(targets).__name__}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets {tuple(targets.shape)} do not fit logits {tuple(logits.shape)}: expected targets of shape {tuple(logits.shape[:-1])}")
    vocab = logits.shape[-1]
    outside = (targets < 0) | (targets >= vocab)
    if outside.any():
        raise ValueError(f"target {int(targets[outside][0])} is outside the vocabulary [0, {vocab})")
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # (..., vocab), nats
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...)
    return math.exp(nll.mean().item())  # the mean, not the sum: a per-token figure


def top1_agreement(logits: Tensor, reference_logits: Tensor) -> float:
    """The fraction of positions where ``logits`` and ``reference_logits`` pick the same next token.

    Both ``[..., vocab]`` of one shape; the pick is ``torch.argmax`` over the vocabulary (the first
    index on a tie). Returns ``matches / positions`` as a Python ``float`` in ``[0, 1]``: 1.0 when
    the quantized model would greedily generate exactly what the float model does.

    Errors (``ValueError``; brackets: what its message must contain): either tensor invalid
    (:func:`check_tensor`) [as there]; different shapes [both shapes].

    Example: ``logits = [[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]]``, ``reference_logits = [[5.0, 4.9,
    0.0], [0.0, 3.0, 1.0]]``: argmaxes ``[0, 2]`` and ``[0, 1]`` -> ``0.5``. The logits differ
    everywhere; what matters is the token chosen.
    """
    check_tensor(logits, "logits")
    check_tensor(reference_logits, "reference_logits")
    if logits.shape != reference_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and reference_logits {tuple(reference_logits.shape)} must have one shape")
    same = logits.argmax(dim=-1) == reference_logits.argmax(dim=-1)  # (...): the greedy token, not the scores
    return same.sum().item() / same.numel()


def model_hooks(config: QuantConfig) -> dict[str, Callable]:
    """The keyword arguments that make the model fake-quantize ``config``'s target.

    ``TinyLM.forward(tokens, weight=..., activation=..., kv=...)`` calls, in every block:
    ``weight(name, w)`` with each Linear's weight, ``activation(name, x)`` with each Linear's
    input and ``kv(layer, k, v)`` with the cache. Return a dict with exactly one of those keys:

    * ``weights``: ``{"weight": f}`` with ``f(name, w) = quantize_weight(w, bits, granularity,
      group_size)``;
    * ``activations``: ``{"activation": f}`` with ``f(name, x) = quantize_activation(x, bits,
      granularity)``;
    * ``kv``: ``{"kv": f}`` with ``f(layer, k, v) = quantize_kv(k, v, bits, granularity,
      residual_length)``.

    Every Linear and every layer gets the same treatment (``name`` and ``layer`` are not used).
    ``tiny_lm()(tokens, **model_hooks(config))`` is then the quantized model.

    Errors: ``config`` not a ``QuantConfig`` (``ValueError`` naming its type).

    Example: ``model_hooks(QuantConfig("weights", "per-group", 4, group_size=32))["weight"]("blocks.0.mlp.up", w)``
    is ``quantize_weight(w, 4, "per-group", 32)``.
    """
    if type(config).__name__ != "QuantConfig" or not hasattr(config, "target"):
        raise ValueError(f"config must be a QuantConfig, got {type(config).__name__}")
    bits, granularity = config.bits, config.granularity
    if config.target == "weights":
        return {"weight": lambda name, w: quantize_weight(w, bits, granularity, config.group_size)}
    if config.target == "activations":
        return {"activation": lambda name, x: quantize_activation(x, bits, granularity)}
    return {"kv": lambda layer, k, v: quantize_kv(k, v, bits, granularity, config.residual_length)}


def measure(tokens: Tensor, reference_logits: Tensor, config: QuantConfig | None = None) -> tuple[float, float]:
    """One evaluation of the given model: ``(perplexity, top-1 agreement)`` with ``config`` applied.

    The model is :func:`tiny_lm`. It reads ``tokens[:, :-1]`` (``tokens`` is ``torch.int64
    [batch, length + 1]``) and is scored (:func:`perplexity`) on the next tokens ``tokens[:,
    1:]``. Run it as ``model(tokens[:, :-1], **model_hooks(config))`` under ``torch.no_grad()``,
    or without hooks when ``config`` is ``None`` (the float model). ``reference_logits`` are the
    float model's logits on the same input, ``[batch, length, vocab]``; the agreement is
    :func:`top1_agreement` of the run's logits with them.

    Errors (``ValueError``; brackets: what its message must contain): ``tokens`` not a 2-D
    ``torch.int64`` tensor of at least 2 columns [its dtype or shape]; ``reference_logits`` not
    of shape ``[batch, length, vocab]`` [both shapes]; ``config`` neither ``None`` nor a
    ``QuantConfig`` [its type].

    Example: with ``config=None`` the model is the float one, so against its own logits the
    agreement is exactly 1.0 and the perplexity is the float perplexity (3.490 on the ``long``
    workload, against 61 for a uniform guess).
    """
    if not isinstance(tokens, Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 2 or tokens.shape[1] < 2:
        shown = f"dtype {tokens.dtype}, shape {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a 2-D torch.int64 tensor [batch, length + 1] with at least 2 columns, got {shown}")
    model = tiny_lm()
    expected = (tokens.shape[0], tokens.shape[1] - 1, model.config.vocab_size)
    if not isinstance(reference_logits, Tensor) or tuple(reference_logits.shape) != expected:
        shown = tuple(reference_logits.shape) if isinstance(reference_logits, Tensor) else type(reference_logits).__name__
        raise ValueError(f"reference_logits has shape {shown}, expected {expected}: the float model's logits on tokens[:, :-1]")
    hooks = {} if config is None else model_hooks(config)  # model_hooks rejects what is not a QuantConfig
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # the model predicts each next token
    with torch.no_grad():
        logits = model(inputs, **hooks)  # (batch, length, vocab)
    return perplexity(logits, targets), top1_agreement(logits, reference_logits)


def verdict(increase: float) -> str:
    """``"safe"``, ``"degrades"`` or ``"breaks"`` for a perplexity increase ``perplexity / float - 1``.

    ``increase <= SAFE_INCREASE`` (0.01, +1%) is ``"safe"`` (a negative increase too: quantization
    noise can lower perplexity a little); ``<= BREAKS_INCREASE`` (0.20) ``"degrades"``; above it,
    ``+inf`` included (an infinite perplexity), ``"breaks"``. The bounds belong to the milder
    verdict: exactly +1% is safe, exactly +20% degrades.

    Errors (``ValueError``): ``increase`` not an ``int`` or ``float``, a ``bool``, NaN, or below
    -1 (a perplexity cannot be negative) [its value].

    Example: ``0.004`` -> ``"safe"``, ``0.05`` -> ``"degrades"``, ``0.69`` -> ``"breaks"``.
    """
    if isinstance(increase, bool) or not isinstance(increase, (int, float)) or math.isnan(increase) or increase < -1:
        raise ValueError(f"increase={increase!r} must be a number >= -1 (perplexity / float perplexity - 1)")
    if increase <= SAFE_INCREASE:
        return "safe"
    return "degrades" if increase <= BREAKS_INCREASE else "breaks"


def risk_table(tokens: Tensor, configs: list[QuantConfig]) -> list[RiskRow]:
    """Measure every configuration against the float model on ``tokens``: one :class:`RiskRow` each.

    Run the float model (:func:`tiny_lm`, no hooks) once on ``tokens[:, :-1]`` under
    ``torch.no_grad()``: its logits are every row's reference, its perplexity on ``tokens[:, 1:]``
    every row's baseline. Then for each config, in order, :func:`measure` gives ``perplexity`` and
    ``agreement``; ``increase = perplexity / float_perplexity - 1``; ``verdict`` is
    :func:`verdict` of it. Returns a list of ``RiskRow(config, perplexity, increase, agreement,
    verdict)``, one per config, in order.

    Errors (``ValueError``): ``configs`` not a list or tuple of ``QuantConfig``, or empty [what
    it holds]; ``tokens`` as in :func:`measure`.

    Example: on the ``long`` workload (float perplexity 3.490), ``QuantConfig("weights",
    "per-channel", 8)`` is safe (+0.00%, agreement 0.997) and ``QuantConfig("activations",
    "per-tensor", 3)`` breaks the model (+117%).
    """
    if not isinstance(configs, (list, tuple)) or not configs or any(type(c).__name__ != "QuantConfig" for c in configs):
        shown = [type(c).__name__ for c in configs][:5] if isinstance(configs, (list, tuple)) else type(configs).__name__
        raise ValueError(f"configs must be a non-empty list of QuantConfig, got {shown}")
    if not isinstance(tokens, Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 2 or tokens.shape[1] < 2:
        shown = f"dtype {tokens.dtype}, shape {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a 2-D torch.int64 tensor [batch, length + 1] with at least 2 columns, got {shown}")
    with torch.no_grad():
        reference = tiny_lm()(tokens[:, :-1])  # the float model: every row's reference and baseline
    baseline = perplexity(reference, tokens[:, 1:])
    rows = []
    for config in configs:
        quantized, agreement = measure(tokens, reference, config)
        increase = quantized / baseline - 1  # relative: +0.05 is 5% worse than float
        rows.append(RiskRow(config, quantized, increase, agreement, verdict(increase)))
    return rows
