"""Lab 05 — activation quantization: per-token and calibrated scales, W8A8, and outlier channels.

Weights are known before serving; activations are not. They are quantized either *dynamically*
(a scale computed from each token's row as it arrives) or *statically* (one scale fixed ahead of
time from calibration data, which saturates whatever falls outside it). Multiplying int8
activations by int8 weights accumulates exact int32 sums, rescaled to float once per output:
that is W8A8, the int8 GEMM path. What makes it hard in LLMs are **outlier features**: a few
hidden channels 20–100× larger than the rest in every token. SmoothQuant moves that range into
the weights; LLM.int8() computes those channels in floating point.

Conventions of the whole lab (the checks test each one):

* activations are ``x[..., hidden]`` (any leading dims: ``[tokens, hidden]`` or
  ``[batch, tokens, hidden]``); a "token" is a row of the last dim; an ``nn.Linear`` weight is
  ``[out_features, in_features]`` and per-channel means one scale per output row;
* symmetric codes in the restricted range ``±quant_max`` with ``quant_max = 2^(b-1) - 1``
  (int8: ±127, as SmoothQuant and LLM.int8()) and ``scale = amax / quant_max``, floored at
  ``SCALE_EPS``; codes are ``torch.int8``, scales ``torch.float32``;
* all arithmetic runs in float32 (float16 and bfloat16 inputs are converted first), rounding is
  ``torch.round`` (half to even) of a true division ``x / scale``;
* bad input raises ``ValueError`` naming the offending numbers.

Reference solution. Work through the exercises in order (``infralens hint lab05`` when stuck):

1.  ``quantize_per_token``   dynamic int8: one scale per token
2.  ``calibrate_scale``      a static per-tensor scale from calibration batches (absmax, percentile)
3.  ``quantize_static``      codes with a fixed scale, and the fraction that saturates
4.  ``int8_matmul``          int8 × int8 -> exact int32 sums (``torch._int_mm``)
5.  ``w8a8_linear``          per-token activations × per-channel weights, rescaled to float32
6.  ``smooth_scales``        SmoothQuant's per-channel migration strength
7.  ``apply_smoothing``      ``X / s`` and ``W · s``: the same product, easier activations
8.  ``smoothquant_linear``   smoothing, then W8A8
9.  ``llm_int8_linear``      outlier columns in float, the rest in int8
10. ``activation_nbytes``    what an activation tensor costs at bf16 and at int8 + scales

Run ``pytest --lab 05`` (or ``pytest checks/lab05_activation_quant``) to check your work.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from infralens.tensors import require_float_tensor

# --------------------------------------------------------------------------------------------
# Given: vocabulary and helpers of the lab (not exercises)
# --------------------------------------------------------------------------------------------

ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Activation and weight dtypes accepted; all are converted to float32 before any arithmetic."""

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)
"""Code widths of the quantizers; every code fits one ``torch.int8``."""

SCALE_EPS = torch.finfo(torch.float32).tiny
"""Floor of every scale, 2^-126 (the smallest normal float32): an all-zero row gets this scale
instead of 0, so its codes are 0 instead of 0 / 0 = NaN."""

OUTLIER_THRESHOLD = 6.0
"""LLM.int8()'s default: a feature column with any ``|x| >= 6.0`` runs in floating point
(bitsandbytes and Hugging Face transformers use this value)."""

SMOOTH_EPS = 1e-5
"""SmoothQuant's floor (``smooth.py``): on each weight column's max and on each smoothing factor."""

ACTIVATION_SCHEMES = ("fp32", "bf16", "fp16", "int8-per-tensor", "int8-per-token")
"""How an activation tensor is stored, for :func:`activation_nbytes`: 4 or 2 bytes per element,
or 1 byte per int8 code plus float32 scales (one for the tensor, or one per token)."""

INT32_SAFE_K = 2**31 // 127**2
"""133,143: the longest reduction whose sums of products of codes in ±127 always fit an int32."""


def quant_max(bits: int) -> int:
    """``2^(bits-1) - 1``, the largest symmetric code: 127 at 8 bits, 7 at 4 bits, 1 at 2 bits.

    ``bits`` must be an ``int`` (never a ``bool``) in ``SUPPORTED_BITS``; anything else raises
    ``ValueError("bits=9 is not supported: ...")`` naming the value.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} is not supported: codes must be 2 to 8 bits wide, one of {SUPPORTED_BITS}")
    return 2 ** (bits - 1) - 1


def check_activations(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a non-empty, at least 1-D, finite tensor of a dtype in
    ``ACTIVATION_DTYPES``. The message starts with ``name`` and names the problem: the type, the
    dtype, the shape, or "NaN or Inf" with the first bad value's index."""
    require_float_tensor(x, name, ACTIVATION_DTYPES)


def int_mm_applies(a: Tensor, b: Tensor) -> bool:
    """True when ``torch._int_mm(a, b.t())`` runs for int8 ``a (M, K)`` and ``b (N, K)``.

    ``torch._int_mm`` multiplies 2-D int8 matrices into int32. On CPU (recent PyTorch) it takes
    any shape but ``K = 1``: there an ``(M, 1)`` operand's strides are ambiguous and on some
    CPUs PyTorch 2.13's kernel returns wrong sums (zeros), so this lab takes the exact path. On
    CUDA (cuBLASLt's int8 GEMM) it needs ``M > 16`` and ``K`` and ``N`` positive multiples of 8,
    and ``b.t()`` of a row-major ``b`` is the column-major operand it wants. Batch-1 decode
    (``M = 1``) therefore never takes this path on a GPU.
    """
    if not hasattr(torch, "_int_mm") or a.dim() != 2 or b.dim() != 2:
        return False
    (m, k), n = a.shape, b.shape[0]
    if a.device.type == "cpu":
        return k > 1
    return a.device.type == "cuda" and m > 16 and k > 0 and k % 8 == 0 and n > 0 and n % 8 == 0


def check_weight(weight: Tensor, x: Tensor) -> None:
    """Raise ``ValueError`` unless ``weight`` passes :func:`check_activations` and is a 2-D
    ``[out_features, in_features]`` weight whose ``in_features`` is ``x``'s last dim; the
    message names both shapes."""
    check_activations(weight, "weight")
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not fit x of shape {tuple(x.shape)}: "
            f"expected a 2-D [out_features, in_features] weight with in_features = {x.shape[-1]} (x's last dim)"
        )


def check_number(value: object, name: str, low: float, high: float, low_inclusive: bool) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite ``int`` or ``float`` (never a ``bool``) in
    ``[low, high]`` (``(low, high]`` when not ``low_inclusive``); the message names ``name`` and
    the value, e.g. ``"alpha=1.5 is out of range: expected a number in [0, 1]"``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value > high or value < low or (value == low and not low_inclusive):
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{name}={value!r} is out of range: expected a number in {bracket}{low:g}, {high:g}]")


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def quantize_per_token(x: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Dynamic symmetric quantization with one scale per token (per row of the last dim).

    For every row ``r`` of ``x[..., hidden]``, in float32:
    ``scale[r] = max(amax(|x[r]|) / quant_max, SCALE_EPS)`` and
    ``codes[r] = clamp(round(x[r] / scale[r]), -quant_max, quant_max)``, with ``torch.round``
    (half to even) of a true division. Returns ``(codes, scale)``: ``codes`` is ``torch.int8``
    of ``x``'s shape, ``scale`` is ``torch.float32`` of shape ``(..., 1)`` (``x``'s shape with a
    last dim of 1), so ``codes * scale`` broadcasts back. ``x`` may be float32, float16 or
    bfloat16, with any number of leading dims (a 1-D ``x`` is one token).

    Dequantized, every element is within half its row's step, ``scale / 2``. A large value
    coarsens only its own token's step; an outlier *channel*, present in every token, coarsens
    them all.

    Errors (``ValueError``; what its message must contain is in brackets): ``bits`` (see
    :func:`quant_max`) [its value]; ``x`` invalid (:func:`check_activations`): a 0-d or empty
    ``x`` [its shape], another dtype [the dtype], NaN or Inf ["NaN" or "Inf"].

    Example: ``x = [[-63.5, 0.25, 0.75, 1.25], [0, 0, 0, 0], [3.0, -1.5, 0.0, 127.0]]`` ->
    ``scale = [[0.5], [2^-126], [1.0]]`` and
    ``codes = [[-127, 0, 2, 2], [0, 0, 0, 0], [3, -2, 0, 127]]`` (0.5, 1.5, 2.5 and -1.5 are
    ties: they go to the even neighbour).
    """
    q_max = quant_max(bits)
    check_activations(x, "x")
    xf = x.float()  # (..., hidden): float16/bfloat16 values are exact in float32
    amax = xf.abs().amax(dim=-1, keepdim=True)  # (..., 1): one per token
    scale = (amax / q_max).clamp(min=SCALE_EPS)  # an all-zero token must not divide 0 by 0
    codes = torch.round(xf / scale).clamp(-q_max, q_max).to(torch.int8)  # (..., hidden)
    return codes, scale


def calibrate_scale(batches: list[Tensor], method: str = "absmax", percentile: float = 99.99, bits: int = 8) -> float:
    """A static per-tensor scale from calibration activations, fixed before serving.

    All values of all ``batches`` (tensors of any shapes) count as one population of ``|x|``:

    * ``method="absmax"``: ``amax = max |x|`` (float32, exact);
    * ``method="percentile"``: ``amax`` = the ``percentile``-th percentile of ``|x|`` with
      linear interpolation, as ``numpy.percentile`` and ``torch.quantile`` define it: sort the
      ``n`` values, position ``p = (n - 1) × percentile / 100``, interpolate between the values
      at ``floor(p)`` and ``ceil(p)``. Computed in float64, then converted to float32. A
      percentile below 100 ignores the rarest, largest values: they will saturate.

    Then ``scale = max(amax / quant_max, SCALE_EPS)`` in float32, returned as a Python ``float``
    (holding that float32 value exactly, so ``torch.tensor(scale)`` gives it back).

    Errors (``ValueError``; brackets: what the message must contain): ``batches`` not a
    non-empty list or tuple ["batches"]; a batch invalid as in :func:`check_activations` [as
    there]; an unknown ``method`` [its value]; ``percentile`` not a number in ``(0, 100]``, or a
    ``bool`` [its value]; ``bits`` [its value].

    Example: ``batches = [[1.0, -2.0], [[0.5, 4.0], [-3.0, 0.0]]]``: absmax -> ``4 / 127 =
    0.031496062874794006``; percentile 50 -> sorted ``|x|`` is ``[0, 0.5, 1, 2, 3, 4]``, position
    2.5, amax 1.5, ``scale = 1.5 / 127 = 0.011811023578047752``.
    """
    q_max = quant_max(bits)
    if method not in ("absmax", "percentile"):
        raise ValueError(f"method={method!r} is not supported: use 'absmax' or 'percentile'")
    check_number(percentile, "percentile", 0.0, 100.0, low_inclusive=False)
    if not isinstance(batches, (list, tuple)) or not batches:
        raise ValueError(f"batches must be a non-empty list of calibration tensors, got {type(batches).__name__} of length {len(batches) if isinstance(batches, (list, tuple)) else '?'}")
    for index, batch in enumerate(batches):
        check_activations(batch, f"batches[{index}]")
    values = torch.cat([batch.detach().float().abs().flatten() for batch in batches])  # (n,)
    if method == "absmax":
        amax = values.max()
    else:
        ordered = torch.sort(values.double()).values  # (n,) ascending
        position = (ordered.numel() - 1) * percentile / 100
        low = math.floor(position)
        high = min(low + 1, ordered.numel() - 1)
        amax = (ordered[low] + (ordered[high] - ordered[low]) * (position - low)).float()
    return (amax / q_max).clamp(min=SCALE_EPS).item()


def quantize_static(x: Tensor, scale: float, bits: int = 8) -> tuple[Tensor, float]:
    """Quantize ``x`` with a fixed (calibrated) scale; report the fraction that saturated.

    In float32, with ``scale`` converted to float32: ``ratio = x / scale``,
    ``codes = clamp(round(ratio), -quant_max, quant_max)`` (``torch.round``, half to even).
    An element is *clipped* when its rounded value lies outside the range,
    ``|round(ratio)| > quant_max``: at int8, ``|ratio| > 127.5`` (and 127.5 itself, which rounds
    to 128). 127.3 is not clipped: it rounds to 127 like any in-range value.

    Returns ``(codes, clipped_fraction)``: ``codes`` ``torch.int8`` of ``x``'s shape;
    ``clipped_fraction`` = clipped elements / all elements, a Python ``float`` in [0, 1].
    Saturated elements are off by ``|x| - quant_max × scale``, which has no bound: a scale
    calibrated on data without the outliers ruins exactly the values that matter most.

    Errors (``ValueError``; brackets: what its message must contain): ``scale`` not a positive
    finite ``int`` or ``float`` (a ``bool`` is neither) [its value]; ``x`` invalid
    (:func:`check_activations`) [as there]; ``bits`` [its value].

    Example: ``x = [0.25, -1.0, 63.6, 64.0, -200.0]``, ``scale = 0.5`` -> ratio
    ``[0.5, -2, 127.2, 128, -400]``, codes ``[0, -2, 127, 127, -127]``, clipped fraction
    ``2 / 5 = 0.4``.
    """
    q_max = quant_max(bits)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale={scale!r} is not a usable scale: expected a positive, finite number")
    check_activations(x, "x")
    ratio = x.float() / torch.tensor(scale, dtype=torch.float32)  # x's shape
    rounded = torch.round(ratio)
    clipped = int((rounded.abs() > q_max).sum())  # saturated by the clamp below
    return rounded.clamp(-q_max, q_max).to(torch.int8), clipped / x.numel()


def int8_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b.T`` for int8 ``a (M, K)`` (activation codes) and ``b (N, K)`` (weight codes, an
    ``nn.Linear`` layout), accumulated exactly in int32: ``torch.int32 (M, N)``.

    Use ``torch._int_mm(a, b.t())`` where :func:`int_mm_applies` says it runs; otherwise
    compute the same sums exactly (in float64, exact for ``|sum| <= 128² · K < 2^53``, or in
    int32/int64 on CPU) and return them as ``torch.int32``. Never accumulate in float32: above
    2^24 it drops the low bits of the sum. The sums fit an int32 for ``K <= INT32_SAFE_K``.

    Errors (``ValueError``; brackets: what its message must contain): ``a`` or ``b`` not
    ``torch.int8`` [the dtype]; not 2-D [the shape]; ``K`` differing [both shapes].

    Example: ``a = [[1, -2, 3]]``, ``b = [[4, 5, 6], [127, 127, 127]]`` ->
    ``[[12, 254]]`` (``4 - 10 + 18`` and ``127 · 2``), dtype ``torch.int32``.
    """
    for name, codes in (("a", a), ("b", b)):
        if codes.dtype != torch.int8:
            raise ValueError(f"{name} has dtype {codes.dtype}; int8_matmul multiplies torch.int8 codes")
        if codes.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(codes.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)} disagree on K: a is (M, K), b is (N, K)")
    if int_mm_applies(a, b):
        return torch._int_mm(a, b.t())  # (M, N) int32: b.t() is the column-major (K, N) operand
    # float64 holds every partial sum exactly (< 2^53), on any device.
    return (a.double() @ b.double().t()).to(torch.int32)


def w8a8_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight.T`` computed as W8A8: int8 activations per token × int8 weights per output
    channel, exact int32 sums, one float32 rescale per output.

    1. ``x (..., in)`` viewed as ``(M, in)`` tokens; ``x_codes, x_scale = quantize_per_token``
       of it (``x_scale (M, 1)``);
    2. ``w_codes, w_scale = quantize_per_token(weight)``: a row of ``[out, in]`` is an output
       channel, so per-token quantization of the weight *is* per-channel (``w_scale (out, 1)``);
    3. ``acc = int8_matmul(x_codes, w_codes)``, int32 ``(M, out)``;
    4. ``y = acc × x_scale × w_scale.T`` in float32 (``acc`` converted to float32 first), shaped
       ``(..., out)``.

    Both scales factor out of the sum only because each is constant along ``in``: a scale per
    input column (per-channel activations) could not be pulled out of an integer GEMM.

    Errors (``ValueError``; brackets: what its message must contain): ``x`` or ``weight``
    invalid (:func:`check_activations`) [as there]; ``weight`` not 2-D or its ``in`` not ``x``'s
    last dim [both shapes].

    Example: ``x = [[127.0, -63.5]]`` (scale 1.0, codes ``[[127, -64]]``: -63.5 is a tie and
    goes to the even -64), ``weight = [[127.0, 0.0], [0.0, -0.5]]`` (scales 1.0 and 0.5 / 127,
    codes ``[[127, 0], [0, -127]]``): ``acc = [[16129, 8128]]`` and ``y = [[16129.0, 32.0]]``,
    against the exact ``[[16129.0, 31.75]]``.
    """
    check_activations(x, "x")
    check_weight(weight, x)
    tokens = x.reshape(-1, x.shape[-1])  # (M, in)
    x_codes, x_scale = quantize_per_token(tokens)  # (M, in) int8, (M, 1) float32
    w_codes, w_scale = quantize_per_token(weight)  # (out, in) int8, (out, 1): per output channel
    acc = int8_matmul(x_codes, w_codes)  # (M, out) int32, exact
    y = acc.float() * x_scale * w_scale.t()  # (M, out): both scales are constant along in
    return y.reshape(*x.shape[:-1], weight.shape[0])


def smooth_scales(x: Tensor, weight: Tensor, alpha: float = 0.5) -> Tensor:
    """SmoothQuant's smoothing factors, one per input channel ``j``: float32, shape ``(in,)``.

    ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``, clamped below at ``SMOOTH_EPS``, where
    ``max|X_j|`` is the largest ``|x[..., j]|`` over every token (every leading index) and
    ``max|W_j|`` the largest ``|weight[:, j]|`` over the output rows, itself clamped below at
    ``SMOOTH_EPS`` (as SmoothQuant's ``smooth.py``). In float32 with ``torch.pow``.

    ``alpha`` is the migration strength: 0 leaves the activations' range as it is (``s_j`` is
    ``1 / max|W_j|``), 1 moves all of it into the weights, 0.5 (the paper's default for most
    models) balances the two so that ``max|X_j / s_j| = max|W_j · s_j|``. In deployment ``x`` is
    a calibration set and ``1 / s`` is folded into the previous LayerNorm.

    Errors (``ValueError``; brackets: what its message must contain): ``alpha`` not a number in
    ``[0, 1]`` or a ``bool`` [its value]; ``x`` or ``weight`` invalid [as in
    :func:`w8a8_linear`].

    Example: ``x = [[1.0, -16.0], [-4.0, 2.0]]``, ``weight = [[1.0, 0.25], [-4.0, 0.5]]``:
    ``max|X| = [4, 16]``, ``max|W| = [4, 0.5]``, ``s = [4^0.5 / 4^0.5, 16^0.5 / 0.5^0.5] =
    [1.0, 5.656854152679443]`` (``4·√2``).
    """
    check_number(alpha, "alpha", 0.0, 1.0, low_inclusive=True)
    check_activations(x, "x")
    check_weight(weight, x)
    act_max = x.float().abs().reshape(-1, x.shape[-1]).amax(dim=0)  # (in,): over every token
    weight_max = weight.float().abs().amax(dim=0).clamp(min=SMOOTH_EPS)  # (in,): over output rows
    return (act_max.pow(alpha) / weight_max.pow(1 - alpha)).clamp(min=SMOOTH_EPS)


def apply_smoothing(x: Tensor, weight: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """``(x / s, weight * s)`` in float32: channel ``j`` of every token divided by ``s_j``,
    column ``j`` of the ``[out, in]`` weight (input channel ``j``) multiplied by it.

    In exact arithmetic ``(x / s) @ (weight * s).T == x @ weight.T``: each term
    ``x_j · w_j`` becomes ``(x_j / s_j) · (w_j · s_j)``. In float32 the two differ only by
    rounding, a few float32 ulps of ``sum |x_j · w_j|``. Returns float32 tensors of ``x``'s and
    ``weight``'s shapes.

    Errors (``ValueError``; brackets: what its message must contain): ``x`` or ``weight``
    invalid [as in :func:`w8a8_linear`]; ``s`` not a float tensor of shape ``(in,)`` [its shape
    and ``in``]; an ``s`` that is not finite and positive everywhere ["positive"].

    Example: ``x = [[1.0, -16.0]]``, ``weight = [[1.0, 0.25]]``, ``s = [1.0, 4.0]`` ->
    ``([[1.0, -4.0]], [[1.0, 1.0]])``.
    """
    check_activations(x, "x")
    check_weight(weight, x)
    in_features = x.shape[-1]
    if not isinstance(s, Tensor) or not s.is_floating_point() or tuple(s.shape) != (in_features,):
        shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"s must be a float tensor of shape ({in_features},), one factor per input channel (in = {in_features}), got {shape}")
    if not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError("s must be finite and positive everywhere: dividing a channel by 0 or a negative factor is not a smoothing")
    s32 = s.float()
    return x.float() / s32, weight.float() * s32  # (..., in) / (in,), (out, in) * (in,): both along in


def smoothquant_linear(x: Tensor, weight: Tensor, alpha: float = 0.5) -> Tensor:
    """W8A8 after SmoothQuant: :func:`smooth_scales` of ``x`` and ``weight``, then
    :func:`apply_smoothing`, then :func:`w8a8_linear` of the smoothed pair; float32
    ``(..., out)``. (Here ``x`` is its own calibration set.) Errors: those of the three steps.

    On activations with outlier channels the per-token int8 step is set by the outliers, so
    the other channels get few levels; after smoothing with ``alpha = 0.5`` the same W8A8 is
    several times more accurate (the checks measure the ratio).

    Example: ``x = [[1.0, -16.0], [-4.0, 2.0]]``, ``weight = [[1.0, 0.25], [-4.0, 0.5]]``
    (``s = [1.0, 4·√2]``): ``[[-2.9955978393554688, -12.026383399963379], [-3.5188305377960205,
    16.98208236694336]]``, against the exact ``x @ weight.T = [[-3.0, -12.0], [-3.5, 17.0]]``.
    """
    s = smooth_scales(x, weight, alpha)
    x_smooth, w_smooth = apply_smoothing(x, weight, s)
    return w8a8_linear(x_smooth, w_smooth)


def llm_int8_linear(x: Tensor, weight: Tensor, threshold: float = OUTLIER_THRESHOLD) -> tuple[Tensor, Tensor]:
    """LLM.int8()'s mixed-precision decomposition of ``x @ weight.T``; returns ``(y, outliers)``.

    * ``outliers``: the input feature columns ``j`` with ``|x[..., j]| >= threshold`` for at
      least one token, as a sorted ``torch.int64`` tensor of column indices (possibly empty);
    * the outlier part, ``x[..., outliers] @ weight[:, outliers].T``, in float32;
    * the regular part, :func:`w8a8_linear` of ``x[..., regular]`` and ``weight[:, regular]``
      (the other columns: their per-token and per-channel scales come from those columns only,
      so an outlier no longer stretches a token's step); zero when every column is an outlier;
    * ``y = outlier part + regular part``, float32 ``(..., out)``.

    The error is that of int8 on the regular columns only, close to the float result.

    Errors (``ValueError``; brackets: what its message must contain): ``threshold`` not a
    positive finite number or a ``bool`` [its value]; ``x`` or ``weight`` invalid [as in
    :func:`w8a8_linear`].

    Example: ``x = [[1.0, 6.0, -0.5], [0.5, 0.25, 2.0]]``, ``weight = [[1.0, 2.0, 0.0]]``:
    column 1 reaches 6.0, so ``outliers = [1]``; its part is ``[[12.0], [0.5]]`` in float32;
    the regular columns 0 and 2 give ``[[1.0], [0.5039370059967041]]`` (``x`` codes
    ``[[127, -64], [32, 127]]`` with scales ``1/127`` and ``2/127``, weight codes ``[[127, 0]]``);
    ``y = [[13.0], [1.003937005996704]]`` against the exact ``[[13.0], [1.0]]``.
    """
    check_number(threshold, "threshold", 0.0, math.inf, low_inclusive=False)
    check_activations(x, "x")
    check_weight(weight, x)
    tokens = x.float().reshape(-1, x.shape[-1])  # (M, in)
    w = weight.float()  # (out, in)
    outlier = (tokens.abs() >= threshold).any(dim=0)  # (in,): a column is an outlier for every token
    y = tokens[:, outlier] @ w[:, outlier].t()  # (M, out) in float32; zeros when there is none
    regular = ~outlier
    if regular.any():
        y = y + w8a8_linear(tokens[:, regular], w[:, regular])
    return y.reshape(*x.shape[:-1], weight.shape[0]), outlier.nonzero().flatten()


def activation_nbytes(batch: int, tokens: int, hidden: int, scheme: str = "bf16") -> int:
    """Bytes of one activation tensor ``[batch, tokens, hidden]`` stored as ``scheme``.

    * ``"fp32"``: 4 bytes per element; ``"bf16"``, ``"fp16"``: 2;
    * ``"int8-per-tensor"``: 1 byte per code + one float32 scale (4 bytes);
    * ``"int8-per-token"``: 1 byte per code + one float32 scale per token
      (``batch × tokens × 4`` bytes).

    ``batch``, ``tokens`` and ``hidden`` must be positive ``int`` (never ``bool``); anything
    else raises ``ValueError`` naming the argument and its value; an unknown ``scheme`` (see
    ``ACTIVATION_SCHEMES``) raises ``ValueError`` naming it. Returns an ``int``.

    Example: a Llama-3-8B prefill of 8 × 4096 tokens, hidden 4096: bf16 ``268,435,456`` bytes
    (256 MiB), int8 per token ``134,217,728 + 131,072 = 134,348,800``. Weights (16 GB) and the
    KV cache stay as they were: this buys bandwidth and temporary memory, not capacity.
    """
    for name, value in (("batch", batch), ("tokens", tokens), ("hidden", hidden)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive int")
    if scheme not in ACTIVATION_SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not one of {ACTIVATION_SCHEMES}")
    elements = batch * tokens * hidden
    if scheme == "fp32":
        return 4 * elements
    if scheme in ("bf16", "fp16"):
        return 2 * elements
    if scheme == "int8-per-tensor":
        return elements + 4  # codes + one float32 scale
    return elements + batch * tokens * 4  # codes + one float32 scale per token
