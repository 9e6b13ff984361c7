"""Lab 03 — weight quantization: integer codes, scales, zero points, and what is really stored.

A quantized weight is three things: small integer codes (``qdata``), a ``scale`` per tensor, per
output channel or per group of inputs, and — for the asymmetric (affine) scheme — an integer
``zero_point`` per scale. Dequantizing gives ``(qdata - zero_point) × scale``. How many values
share a scale (the granularity) decides both the error and the bytes: every scale is stored too,
so "int4" with fp16 scales per group of 128 costs 4.125 bits per weight, not 4.

Conventions of the whole lab (the checks test each one):

* an ``nn.Linear`` weight is ``[out_features, in_features]``; per-channel means one scale per
  output row; groups of ``group_size`` consecutive values run along ``in_features``;
* symmetric codes use the restricted range ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (int8: ±127) with
  ``scale = amax / quant_max``; asymmetric codes use ``[0, 2^b - 1]`` (uint8: 0..255) with
  torchao's formula, so that 0.0 is exactly representable;
* all arithmetic runs in float32 (float16 and bfloat16 weights are converted first), rounding is
  ``torch.round`` (half to even), and scales are stored in ``scale_dtype`` (float16 by default),
  rounded *up* so the stored grid always covers the weight's range;
* bad input raises ``ValueError`` naming the offending numbers.

Reference solution. Work through the exercises in order (``infralens hint lab03`` when stuck):

1.  ``quant_range``         the integer range of b-bit codes
2.  ``choose_qparams``      scales (and zero points) per tensor, per channel or per group
3.  ``quantize``            weights -> integer codes
4.  ``dequantize``          integer codes -> float32 weights
5.  ``pack_int4``           two 4-bit codes per byte
6.  ``unpack_int4``         ... and back
7.  ``QuantizedWeight``     ``nbytes``: what is stored, byte for byte
8.  ``quantize_weight``     the whole pipeline in one call
9.  ``dequantize_weight``   ... and back
10. ``quant_error``         MSE, max abs error, SQNR in dB
11. ``QuantizedLinear``     a linear layer that stores codes and scales as buffers

Run ``pytest --lab 03`` (or ``pytest checks/lab03_weight_quant``) to check your work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Given: vocabulary and helpers of the lab (not exercises)
# --------------------------------------------------------------------------------------------

PER_TENSOR = -1
"""``group_size=PER_TENSOR``: one scale (and zero point) for the whole weight."""

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)
"""Code widths this lab supports: every code fits one int8/uint8 element before packing."""

WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Weight dtypes accepted; all are converted to float32 before any arithmetic."""

SCALE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
"""Dtypes a scale (and a zero point) can be stored in; float16 is the default."""


def round_up_to(scale: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast positive float32 ``scale`` values to ``dtype``, rounding *up* instead of to nearest.

    A plain ``.to(torch.float16)`` rounds to the nearest float16, which is below the float32
    value about half of the time. A smaller stored scale stretches ``amax / scale`` past
    ``quant_max``, and the largest weight would be clipped. Rounding up keeps every weight
    inside the grid.

    Example: ``1 / 127 = 0.0078740157`` becomes ``0.0078811646`` in float16 (the nearest float16,
    ``0.0078735352``, is smaller). Values too large for ``dtype`` become ``inf``.
    """
    stored = scale.to(dtype)
    if dtype == torch.float32:
        return stored
    below = stored.float() < scale
    return torch.where(below, torch.nextafter(stored, torch.full_like(stored, float("inf"))), stored)


def broadcast_qparam(qparam: Tensor, shape: tuple[int, int]) -> Tensor:
    """Expand a scale or zero point to the weight's ``shape = (out, in)``, as float32.

    Accepted shapes: ``(1, 1)`` per-tensor, ``(out, 1)`` per-channel, ``(out, in // group_size)``
    per-group, where column ``j`` covers inputs ``j·group_size … (j+1)·group_size − 1`` of its
    row. Anything else raises ``ValueError`` naming both shapes, e.g. a ``(1, in)`` scale (one
    per input *column*: the wrong axis for a ``[out, in]`` weight).
    """
    out_features, in_features = shape
    if qparam.dim() != 2:
        raise ValueError(f"a scale or zero point must be 2-D, got shape {tuple(qparam.shape)} for a weight of shape {tuple(shape)}")
    rows, groups = qparam.shape
    if not ((rows, groups) == (1, 1) or (rows == out_features and groups >= 1 and in_features % groups == 0)):
        raise ValueError(
            f"a scale or zero point of shape {tuple(qparam.shape)} does not fit a weight of shape {tuple(shape)}: expected "
            f"(1, 1) per-tensor, ({out_features}, 1) per-channel (one per output row) or ({out_features}, in // group_size) per-group"
        )
    return qparam.float().repeat_interleave(in_features // groups, dim=1).expand(out_features, in_features)


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def quant_range(bits: int, symmetric: bool = True) -> tuple[int, int]:
    """``(quant_min, quant_max)``, the integer range of ``bits``-bit codes.

    * symmetric: the restricted range ``[-(2^(b-1) - 1), 2^(b-1) - 1]``: int8 ``(-127, 127)``,
      int4 ``(-7, 7)``, 2-bit ``(-1, 1)``. The code ``-2^(b-1)`` (-128 for int8) is left unused
      so that ``w`` and ``-w`` get opposite codes and 0 sits in the middle (as in SmoothQuant,
      bitsandbytes' LLM.int8() and llama.cpp's Q8_0; torchao instead uses -128..127 with
      ``scale = amax / 127.5``).
    * asymmetric: ``[0, 2^b - 1]``: uint8 ``(0, 255)``, uint4 ``(0, 15)``.

    ``bits`` must be an ``int`` (not ``bool``) in ``SUPPORTED_BITS`` (2..8); anything else raises
    ``ValueError`` naming it, e.g. ``quant_range(9)`` -> ``ValueError("bits=9 is not supported: ...")``.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} is not supported: codes must be 2 to 8 bits wide, one of {SUPPORTED_BITS}")
    if symmetric:
        quant_max = 2 ** (bits - 1) - 1
        return -quant_max, quant_max
    return 0, 2**bits - 1


def choose_qparams(
    w: Tensor, bits: int, group_size: int | None = None, symmetric: bool = True, scale_dtype: torch.dtype = torch.float16
) -> tuple[Tensor, Tensor | None]:
    """Scales and zero points for a weight ``w`` of shape ``(out, in)``: ``(scale, zero_point)``.

    Granularity (``group_size``) and the shape of ``scale`` and ``zero_point``:

    * ``PER_TENSOR`` (-1): one for the whole weight, shape ``(1, 1)``;
    * ``None``: per-channel, one per output row, shape ``(out, 1)`` (reduce over ``in``);
    * a positive ``g`` dividing ``in``: per-group, shape ``(out, in // g)``; group ``j`` of a row
      is ``w[row, j·g:(j+1)·g]`` (groups run along ``in``, never across rows).

    For each group, in float32:

    * symmetric: ``scale = amax / quant_max`` with ``amax = max |w|``; ``zero_point`` is ``None``;
    * asymmetric (torchao's formula): ``min_neg = min(min(w), 0)``, ``max_pos = max(max(w), 0)``,
      ``scale = (max_pos - min_neg) / (quant_max - quant_min)``. Including 0 in the range makes
      0.0 exactly representable (padding and pruned weights stay exactly 0).
    * eps floor: ``scale = max(scale, torch.finfo(scale_dtype).tiny)`` (float16: 2^-14 ≈ 6.1e-5,
      the smallest normal float16), so an all-zero group gets a usable scale instead of 0 (which
      would divide 0 by 0). A group whose ``amax`` is below ``quant_max × tiny`` (0.0078 at int8
      with float16 scales) gets the floored scale: use ``scale_dtype=torch.float32`` for tiny
      weights.
    * the scale is stored in ``scale_dtype`` with :func:`round_up_to` (never rounded down, so the
      largest weight is never clipped), whatever the dtype of ``w``: a bfloat16 weight still gets
      float16 scales by default;
    * asymmetric zero point, from the *stored* scale (converted back to float32):
      ``zero_point = clamp(quant_min - round(min_neg / scale), quant_min, quant_max)``, an integer
      value stored in ``scale_dtype`` too (exact: every integer up to 256 is a float16 and a
      bfloat16). (torchao computes it from the float32 scale before rounding the scale; using the
      stored one keeps every later step on exactly the stored numbers.)

    Errors (``ValueError``; what its message must contain is in brackets): ``bits`` (see
    :func:`quant_range`) [the value of ``bits``]; ``w`` not 2-D or empty [its shape]; a dtype
    outside ``WEIGHT_DTYPES`` [the dtype]; NaN or Inf in ``w`` ["NaN" or "Inf"]; a ``group_size``
    that is not ``None``, ``PER_TENSOR`` or a positive ``int`` (never a ``bool``) dividing ``in``
    [both ``group_size`` and ``in``]; a ``scale_dtype`` outside ``SCALE_DTYPES`` [the dtype]; a
    scale too large for ``scale_dtype`` [the dtype's largest value: float16 tops out at 65504, so
    int8 weights up to 65504 × 127 ≈ 8.3e6 fit].

    Example: ``w = [[0.5, -1.0, 0.25, 0.0], [1.25, 3.5, -1.25, 0.0]]``, ``bits=4`` (quant_max 7),
    per-channel symmetric: ``scale = [[0.1429443359375], [0.5]]`` (float16: 1/7 = 0.142857… rounded up to
    1171 × 2^-13; 3.5/7 is exactly 0.5), no zero point.
    """
    quant_min, quant_max = quant_range(bits, symmetric)
    if w.dim() != 2 or w.numel() == 0:
        raise ValueError(f"w must be a non-empty 2-D weight (out_features, in_features), got shape {tuple(w.shape)}")
    if w.dtype not in WEIGHT_DTYPES:
        raise ValueError(f"w has dtype {w.dtype}; quantize a weight stored as one of {WEIGHT_DTYPES}")
    bad = ~torch.isfinite(w)
    if bad.any():
        first = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"w has {int(bad.sum())} non-finite value(s) (NaN or Inf), the first at {first}: {w[first].item()}; quantization needs finite weights")
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype={scale_dtype} is not supported: store scales as one of {SCALE_DTYPES}")
    out_features, in_features = w.shape
    if group_size is not None and group_size != PER_TENSOR and (type(group_size) is not int or group_size < 1 or in_features % group_size):
        raise ValueError(
            f"group_size={group_size!r} does not work for in_features={in_features}: use None (per-channel), "
            f"PER_TENSOR (-1) or a positive group size that divides {in_features}"
        )
    x = w.float()  # (out, in): float16/bfloat16 weights are exact in float32
    if group_size == PER_TENSOR:
        groups = x.reshape(1, 1, -1)  # (1, 1, out·in)
    elif group_size is None:
        groups = x.reshape(out_features, 1, in_features)  # (out, 1, in)
    else:
        groups = x.reshape(out_features, in_features // group_size, group_size)  # (out, in/g, g): groups along in
    eps = torch.finfo(scale_dtype).tiny
    if symmetric:
        amax = groups.abs().amax(dim=-1)  # (S, k)
        scale = (amax / quant_max).clamp(min=eps)
    else:
        # Stretch the range to include 0 so that 0.0 lands exactly on a code.
        min_neg = groups.amin(dim=-1).clamp(max=0)  # (S, k)
        max_pos = groups.amax(dim=-1).clamp(min=0)  # (S, k)
        scale = ((max_pos - min_neg) / (quant_max - quant_min)).clamp(min=eps)
    stored = round_up_to(scale, scale_dtype)
    if torch.isinf(stored).any():
        raise ValueError(
            f"a scale of {scale.max().item():.6g} does not fit {scale_dtype} (largest finite value {torch.finfo(scale_dtype).max:g}): "
            "store scales as torch.float32 for weights this large"
        )
    if symmetric:
        return stored, None
    # From the stored scale, so the most negative weight maps exactly to quant_min.
    zero_point = (quant_min - torch.round(min_neg / stored.float())).clamp(quant_min, quant_max)
    return stored, zero_point.to(scale_dtype)


def quantize(w: Tensor, scale: Tensor, zero_point: Tensor | None, bits: int) -> Tensor:
    """Integer codes of ``w`` (shape ``(out, in)``) for the given scale and zero point.

    ``scale`` (and ``zero_point``) have a shape :func:`broadcast_qparam` accepts. In float32::

        qdata = clamp(round(w / scale) + zero_point, quant_min, quant_max)

    with ``round`` = ``torch.round`` (half to even: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2) and a true
    division: ``w * (1 / scale)`` rounds ``1 / scale`` first, which moves values next to a tie
    across it (with scale 0.0999755859375, the float16 0.1, ``w = 0.9497680068016052`` divides to
    9.499999 -> code 9 but multiplies to 9.5 -> code 10). ``zero_point=None`` means symmetric (no
    zero point added) and returns ``torch.int8`` codes in ``quant_range(bits)``; otherwise the
    range is ``quant_range(bits, symmetric=False)`` and the codes are ``torch.uint8``. Shape
    ``(out, in)``.

    Errors (``ValueError``): ``bits`` as in :func:`quant_range` [the value of ``bits``]; a
    ``scale`` or ``zero_point`` whose shape does not fit ``w`` (:func:`broadcast_qparam`) [both
    shapes].

    Example: ``w = [[1.25, -1.25, 0.75, 63.5]]``, ``scale = [[0.5]]``, no zero point, 8 bits ->
    ``[[2, -2, 2, 127]]`` (2.5 and -2.5 are ties and go to the even neighbour).
    """
    quant_min, quant_max = quant_range(bits, symmetric=zero_point is None)
    shape = tuple(w.shape)
    q = torch.round(w.float() / broadcast_qparam(scale, shape))  # (out, in)
    if zero_point is not None:
        q = q + broadcast_qparam(zero_point, shape)
    return q.clamp(quant_min, quant_max).to(torch.int8 if zero_point is None else torch.uint8)


def dequantize(qdata: Tensor, scale: Tensor, zero_point: Tensor | None) -> Tensor:
    """float32 weights ``(qdata - zero_point) × scale`` (``zero_point=None``: ``qdata × scale``).

    ``qdata`` is ``(out, in)`` integer codes; ``scale`` and ``zero_point`` have a shape
    :func:`broadcast_qparam` accepts. Computed in float32 in that order (subtract, then
    multiply); returns float32 ``(out, in)``.

    Example: ``qdata = [[0, 3, 15, 9]]`` (uint8), ``scale = [[0.5]]``, ``zero_point = [[3]]`` ->
    ``[[-1.5, 0.0, 6.0, 3.0]]``: the code equal to the zero point is exactly 0.0.
    """
    shape = tuple(qdata.shape)
    q = qdata.float()  # (out, in)
    if zero_point is not None:
        q = q - broadcast_qparam(zero_point, shape)
    return q * broadcast_qparam(scale, shape)


def pack_int4(codes: Tensor) -> Tensor:
    """Pack 4-bit codes two per byte along the last dimension: ``(..., n)`` -> ``uint8 (..., n // 2)``.

    Nibble order: byte ``j`` holds element ``2j`` in its **low** nibble (bits 0-3) and element
    ``2j + 1`` in its **high** nibble (bits 4-7): ``byte = (c[2j] & 0xF) | (c[2j+1] & 0xF) << 4``.
    (Other formats choose differently: bitsandbytes puts the even element in the high nibble,
    llama.cpp's Q4_0 pairs element j with element j + 16.)

    Codes are stored as their low 4 bits: ``torch.int8`` codes in [-8, 7] as 4-bit two's
    complement (-7 -> 0b1001 = 9, -1 -> 0b1111 = 15), ``torch.uint8`` codes in [0, 15] as they
    are. Errors (``ValueError``; its message must contain what is in brackets): another dtype
    [the dtype]; a code outside its range [the code]; an odd ``n`` [``n``].

    Example: ``pack_int4(tensor([[-7, 3, 0, 7]], dtype=torch.int8))`` -> ``[[57, 112]]``
    (``0x39``: 3 high, 9 low; ``0x70``: 7 high, 0 low).
    """
    ranges = {torch.int8: (-8, 7), torch.uint8: (0, 15)}
    if codes.dtype not in ranges:
        raise ValueError(f"pack_int4 packs torch.int8 codes in [-8, 7] or torch.uint8 codes in [0, 15], got dtype {codes.dtype}")
    low_limit, high_limit = ranges[codes.dtype]
    outside = (codes < low_limit) | (codes > high_limit)
    if outside.any():
        raise ValueError(f"a {codes.dtype} code of {codes[outside][0].item()} does not fit 4 bits: expected [{low_limit}, {high_limit}]")
    n = codes.shape[-1] if codes.dim() else 1  # a 0-d tensor is one code
    if n % 2:
        raise ValueError(f"pack_int4 needs an even number of codes along the last dimension, got {n} (shape {tuple(codes.shape)})")
    nibbles = (codes.to(torch.int16) & 0xF).to(torch.uint8)  # (..., n): two's complement low 4 bits
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)  # (..., n/2): even element low, odd high


def unpack_int4(packed: Tensor, signed: bool = True) -> Tensor:
    """Inverse of :func:`pack_int4`: ``uint8 (..., m)`` -> codes ``(..., 2m)``.

    Element ``2j`` comes from the low nibble of byte ``j``, element ``2j + 1`` from its high
    nibble. ``signed=True`` reads each nibble as 4-bit two's complement and returns
    ``torch.int8`` in [-8, 7]; ``signed=False`` returns ``torch.uint8`` in [0, 15]. A ``packed``
    tensor that is not ``torch.uint8`` raises ``ValueError`` naming its dtype.

    Example: ``unpack_int4(tensor([[57, 112]], dtype=torch.uint8))`` -> ``[[-7, 3, 0, 7]]``.
    """
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack_int4 reads torch.uint8 bytes, got dtype {packed.dtype}")
    low, high = packed & 0xF, packed >> 4  # (..., m) each
    codes = torch.stack((low, high), dim=-1).flatten(-2)  # (..., 2m): low nibble first
    if not signed:
        return codes
    # Sign-extend: nibbles 8..15 are the negative codes -8..-1.
    wide = codes.to(torch.int16)
    return torch.where(wide >= 8, wide - 16, wide).to(torch.int8)


@dataclass(frozen=True)
class QuantizedWeight:
    """A quantized ``[out, in]`` weight, as data.

    qdata       integer codes, one per weight, shape ``(out, in)``: ``torch.int8`` (symmetric) or
                ``torch.uint8`` (asymmetric)
    scale       ``(1, 1)``, ``(out, 1)`` or ``(out, in // group_size)``, in its storage dtype
    zero_point  same shape and dtype as ``scale``; ``None`` when symmetric
    bits        code width, 2..8
    group_size  as given to :func:`quantize_weight`: ``None``, ``PER_TENSOR`` or ``g``
    """

    qdata: Tensor
    scale: Tensor
    zero_point: Tensor | None
    bits: int
    group_size: int | None

    @property
    def symmetric(self) -> bool:
        """True when there is no zero point."""
        return self.zero_point is None

    @property
    def nbytes(self) -> int:
        """Bytes stored: codes + scales + zero points, counted from the stored tensors.

        * codes: 4-bit codes are stored packed with :func:`pack_int4`, two per byte, each row
          on its own: ``out × ceil(in / 2)`` bytes (an odd row ends in half a byte of padding);
          every other width is stored one code per byte (``int8``/``uint8``), so 2-, 3-, 5-, 6-
          and 7-bit codes cost a full byte in this lab;
        * scales and zero points: ``numel × element_size`` of the tensors as stored (float16:
          2 bytes each, float32: 4).

        Example: ``(4096, 4096)`` int4, groups of 128, float16 scales, symmetric:
        ``4096 × 2048 + 4096 × 32 × 2 = 8,650,752`` bytes, 4.125 bits per weight; with a
        float16 zero point too, 8,912,896 bytes, 4.25 bits per weight.
        """
        # A 4-bit code really takes half a byte only once it is packed; any other width sits in a byte.
        out_features, in_features = self.qdata.shape
        codes = out_features * ((in_features + 1) // 2) if self.bits == 4 else out_features * in_features
        stored = [self.scale] if self.zero_point is None else [self.scale, self.zero_point]
        return codes + sum(t.numel() * t.element_size() for t in stored)

    @property
    def bits_per_weight(self) -> float:
        """``8 × nbytes / number of weights``: the real cost of one weight, scales included."""
        return 8 * self.nbytes / self.qdata.numel()


def quantize_weight(
    w: Tensor, bits: int, group_size: int | None = None, symmetric: bool = True, scale_dtype: torch.dtype = torch.float16
) -> QuantizedWeight:
    """Quantize an ``[out, in]`` weight: :func:`choose_qparams`, then :func:`quantize`.

    ``group_size``: ``None`` per-channel, ``PER_TENSOR`` per-tensor, ``g`` per-group (``g`` must
    divide ``in``; ``g = in`` gives the same result as per-channel). Errors are those of
    :func:`choose_qparams`. Every element then satisfies
    ``|w - dequantize_weight(qw)| <= scale / 2`` (up to float32 rounding), with ``scale`` the
    stored scale of its group.

    Example: ``quantize_weight(randn(4096, 4096), 4, 128).bits_per_weight == 4.125``;
    with ``symmetric=False`` it is 4.25.
    """
    scale, zero_point = choose_qparams(w, bits, group_size, symmetric, scale_dtype)
    return QuantizedWeight(quantize(w, scale, zero_point, bits), scale, zero_point, bits, group_size)


def dequantize_weight(qw: QuantizedWeight) -> Tensor:
    """The float32 weight ``(out, in)`` that ``qw`` stands for: :func:`dequantize` of its fields."""
    return dequantize(qw.qdata, qw.scale, qw.zero_point)


@dataclass(frozen=True)
class QuantError:
    """How far a reconstruction ``w_hat`` is from ``w``."""

    mse: float
    max_abs: float
    sqnr_db: float


def quant_error(w: Tensor, w_hat: Tensor) -> QuantError:
    """Error metrics of a reconstruction, as Python floats, computed in float64.

    * ``mse = mean((w - w_hat)^2)``;
    * ``max_abs = max |w - w_hat|``;
    * ``sqnr_db = 10 · log10(sum(w^2) / sum((w - w_hat)^2))``: signal-to-quantization-noise
      ratio in decibels; each extra bit of a uniform quantizer adds about 6.02 dB. Zero error
      gives ``inf`` (also for an all-zero ``w``); an all-zero ``w`` with some error gives ``-inf``.

    Sums and the logarithm run in float64 (in float32 they would be off by about 1e-7 relative).
    ``w`` and ``w_hat`` may have any dtype and any shape, but the same shape; otherwise
    ``ValueError`` whose message names both shapes.

    Example: ``w = [1, -2, 3, 4]``, ``w_hat = [1, -2, 3, 4.5]``: mse 0.0625, max_abs 0.5,
    sqnr_db ``10 · log10(30 / 0.25) = 20.791812460476248``.
    """
    if w.shape != w_hat.shape:
        raise ValueError(f"w has shape {tuple(w.shape)} but w_hat has shape {tuple(w_hat.shape)}: compare tensors of the same shape")
    x, err = w.double(), w.double() - w_hat.double()
    signal, noise = (x * x).sum().item(), (err * err).sum().item()
    if noise == 0:
        sqnr_db = float("inf")
    elif signal == 0:
        sqnr_db = float("-inf")
    else:
        sqnr_db = 10 * torch.log10(torch.tensor(signal / noise, dtype=torch.float64)).item()
    return QuantError(mse=(err * err).mean().item(), max_abs=err.abs().max().item(), sqnr_db=sqnr_db)


class QuantizedLinear(nn.Module):
    """A bias-free linear layer that stores its weight quantized (cf. gpt-fast's ``WeightOnlyInt8Linear``).

    Buffers, registered with ``register_buffer`` (so they move with ``.to(device)`` and appear in
    ``state_dict()``, but are not trainable parameters):

    * ``qdata``: the codes as stored: ``pack_int4(qw.qdata)`` (uint8 ``(out, in // 2)``) when
      ``qw.bits == 4``, else ``qw.qdata`` (``(out, in)``);
    * ``scale``: ``qw.scale``;
    * ``zero_point``: ``qw.zero_point``, registered only when it is not ``None``.

    So ``state_dict()`` holds exactly ``qw.nbytes`` bytes. 4-bit codes need an even ``in``
    (``pack_int4`` raises ``ValueError`` otherwise). Attributes ``bits``, ``group_size``,
    ``in_features`` and ``out_features`` are plain ints (``group_size`` may be ``None``).

    ``forward(x)``: ``x (..., in)`` -> ``(..., out)`` in ``x.dtype``, equal to
    ``F.linear(x, dequantize_weight(qw).to(x.dtype))``.
    """

    def __init__(self, qw: QuantizedWeight) -> None:
        """Register ``qw``'s stored codes, scale and zero point as buffers (see the class docstring)."""
        super().__init__()
        self.bits, self.group_size = qw.bits, qw.group_size
        self.out_features, self.in_features = qw.qdata.shape
        # Buffers, not Parameters: codes are not trainable, and buffers follow .to() and state_dict().
        self.register_buffer("qdata", pack_int4(qw.qdata) if qw.bits == 4 else qw.qdata.clone())
        self.register_buffer("scale", qw.scale.clone())
        # A None buffer is skipped by state_dict(), so a symmetric layer stores no zero point.
        self.register_buffer("zero_point", None if qw.zero_point is None else qw.zero_point.clone())

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., in)`` -> ``(..., out)`` in ``x.dtype``: dequantize the stored codes, then ``F.linear``."""
        codes = unpack_int4(self.qdata, signed=self.zero_point is None) if self.bits == 4 else self.qdata  # (out, in)
        weight = dequantize(codes, self.scale, self.zero_point)  # (out, in) float32
        return F.linear(x, weight.to(x.dtype))  # (..., out)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int | None = None, symmetric: bool = True) -> QuantizedLinear:
        """Quantize a bias-free ``nn.Linear``; a layer with a bias raises ``ValueError``."""
        if linear.bias is not None:
            raise ValueError(f"QuantizedLinear has no bias; got an nn.Linear({linear.in_features}, {linear.out_features}) with one")
        return cls(quantize_weight(linear.weight.detach(), bits, group_size, symmetric))
