"""Lab 04 — block formats: GGUF Q8_0 and Q4_0 byte for byte, and bitsandbytes' NF4.

A block format stores each run of weights together with the scale that decodes it: a GGUF Q4_0
block is 2 bytes of fp16 scale followed by 16 bytes holding 32 four-bit codes, so "4-bit" costs
4.5 bits per weight once the scale is paid for. Because the scale travels inside the block, a
kernel reads one contiguous run of bytes and can decode any block without looking anywhere else.

You write the quantizers that llama.cpp uses to create model files, exactly: the same rounding,
the same scale, the same nibble order, the same bytes. Then NF4, the 4-bit format of QLoRA,
with bitsandbytes' codebook, tie rule and packing order, and what it costs per weight.

Work through the exercises in order (``infralens hint lab04`` when stuck):

1. ``bits_per_weight``       what a GGUF format costs per weight, from its block layout
2. ``quantize_q8_0``         float32 ``(..., K)`` -> Q8_0 bytes, byte-identical to llama.cpp
3. ``dequantize_q8_0``       Q8_0 bytes -> float32, with the stored fp16 scale
4. ``quantize_q4_0``         float32 ``(..., K)`` -> Q4_0 bytes, byte-identical to llama.cpp
5. ``dequantize_q4_0``       Q4_0 bytes -> float32
6. ``quantize_nf4``          bitsandbytes NF4: blockwise absmax, nearest codebook value, packing
7. ``dequantize_nf4``        NF4 back to float32
8. ``nf4_bits_per_weight``   4.5 bits per weight, and 4.127 with double quantization

Run ``pytest --lab 04`` to check your work. Everything here is NumPy: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Given: block layouts and codebooks (not exercises)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockLayout:
    """One GGUF block: ``block_size`` weights stored as ``fields``, in this order, with no padding.

    Each field is ``(name, bytes)``; names and sizes follow the C structs in llama.cpp's
    ``ggml-common.h`` (``ggml_half`` is a 2-byte IEEE fp16, ``QK_K = 256``).
    """

    block_size: int
    fields: tuple[tuple[str, int], ...]


BLOCK_LAYOUTS: dict[str, BlockLayout] = {
    # block_q8_0: ggml_half d; int8_t qs[32]
    "Q8_0": BlockLayout(32, (("d", 2), ("qs", 32))),
    # block_q4_0: ggml_half d; uint8_t qs[16] (two 4-bit codes per byte)
    "Q4_0": BlockLayout(32, (("d", 2), ("qs", 16))),
    # block_q4_1: ggml_half d; ggml_half m; uint8_t qs[16]
    "Q4_1": BlockLayout(32, (("d", 2), ("m", 2), ("qs", 16))),
    # block_q4_K: ggml_half d; ggml_half dmin; uint8_t scales[12] (6-bit scales and mins of 8 sub-blocks); uint8_t qs[128]
    "Q4_K": BlockLayout(256, (("d", 2), ("dmin", 2), ("scales", 12), ("qs", 128))),
    # block_q6_K: uint8_t ql[128] (low 4 bits); uint8_t qh[64] (high 2 bits); int8_t scales[16]; ggml_half d
    "Q6_K": BlockLayout(256, (("ql", 128), ("qh", 64), ("scales", 16), ("d", 2))),
}

QK8_0 = 32
"""Weights per Q8_0 block."""
Q8_0_BLOCK_BYTES = 34
"""Bytes per Q8_0 block: fp16 ``d`` (2) + 32 int8 codes."""
QK4_0 = 32
"""Weights per Q4_0 block."""
Q4_0_BLOCK_BYTES = 18
"""Bytes per Q4_0 block: fp16 ``d`` (2) + 16 bytes of 4-bit codes."""

NF4_CODE = np.array(
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ],
    dtype=np.float32,
)
"""The 16 NF4 values of bitsandbytes (QLoRA), ascending: code ``i`` decodes to ``NF4_CODE[i]``."""

NF4_DEFAULT_BLOCK_SIZE = 64
"""bitsandbytes' default NF4 block size: one fp32 absmax per 64 weights."""


@dataclass(frozen=True)
class NF4Weight:
    """An NF4-quantized tensor as bitsandbytes stores it (its ``QuantState``, simplified).

    packed      uint8 ``(numel // 2,)``: two 4-bit codes per byte, element ``2i`` in the HIGH
                nibble of byte ``i``, element ``2i + 1`` in the low nibble
    absmax      float32 ``(numel // block_size,)``: ``max |x|`` of each block of the flattened tensor
                (``+0.0`` for an all-zero block, whatever the signs of its zeros)
    shape       the original shape; the tensor is flattened in C order before blocking
    block_size  weights per absmax
    """

    packed: np.ndarray
    absmax: np.ndarray
    shape: tuple[int, ...]
    block_size: int

    @property
    def nbytes(self) -> int:
        """Bytes stored: packed codes + fp32 absmax values."""
        return int(self.packed.nbytes + self.absmax.nbytes)

    @property
    def bits_per_weight(self) -> float:
        """Stored bits divided by the number of weights (4.5 for block size 64)."""
        return self.nbytes * 8 / int(np.prod(self.shape))


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def bits_per_weight(fmt: str) -> float:
    """Bits stored per weight by the GGUF format ``fmt`` (a key of ``BLOCK_LAYOUTS``).

    Every byte of the block counts — codes, scales, mins, sub-block scales — divided by the
    weights the block holds: ``sum(field bytes) × 8 / block_size``. Example: Q4_0 stores 32
    weights in 2 + 16 = 18 bytes, so ``bits_per_weight("Q4_0") == 18 * 8 / 32 == 4.5``; Q6_K is
    210 bytes per 256 weights, 6.5625.

    Returns a Python ``float`` (not a NumPy scalar). An unknown format raises ``ValueError``
    whose message names it and lists the known ones.
    """
    if fmt not in BLOCK_LAYOUTS:
        raise ValueError(f"unknown block format {fmt!r}: known formats are {sorted(BLOCK_LAYOUTS)}")
    layout = BLOCK_LAYOUTS[fmt]
    # The scales live inside the block, so they are part of the price of every weight.
    block_bytes = sum(size for _, size in layout.fields)
    return block_bytes * 8 / layout.block_size


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """Quantize ``x`` of shape ``(..., K)`` to GGUF Q8_0: uint8 ``(..., K // 32 × 34)``.

    Byte-identical to llama.cpp's ``quantize_row_q8_0_ref``. Each row is cut into blocks of 32
    consecutive values along the last axis; for each block, in float32 arithmetic:

    * ``amax = max |x|``; ``d = amax / 127``; ``id = 1 / d`` (``id = 0`` when ``d == 0``);
    * code ``q = roundf(x × id)`` — round half AWAY from zero (2.5 -> 3, -2.5 -> -3), which is
      not NumPy's ``np.round`` (half to even); codes lie in [-127, 127];
    * stored block: ``d`` as fp16 (round to nearest even; 2 bytes, little-endian), then the 32
      codes as int8 (two's complement bytes). The codes use the float32 ``d``, not the fp16 one.

    Edge cases, as llama.cpp: an all-zero block stores ``d = 0`` and codes 0. A block so small
    that ``1/d`` overflows float32 (amax below about 3.7e-37) also stores codes 0 (the C
    conversion of an infinite product yields 0 on x86-64, and gguf-py writes the same); its fp16
    ``d`` is 0 anyway. A block with amax above 65504 × 127 stores ``d = inf``.

    Input: ``float32`` (``float16`` is accepted and widened exactly, as llama.cpp does before it
    quantizes an f16 tensor); any other dtype raises ``ValueError`` naming it — convert
    explicitly, since float64 would be rounded. ``K`` not a multiple of 32, a 0-d array, and
    NaN or ±Inf values raise ``ValueError``; the message names the dtype, ``K``, or the bad value
    (``nan``, ``inf``) with its index.

    Example: a block of 32 values ``0, 1, ..., 31`` has ``d = 31/127``, codes ``round(i × 127/31)``
    = 0, 4, 8, 12, 16, 20, 25, ... 127; its bytes start ``d0 33 00 04 08 0c 10 14 19``.
    """
    blocks, batch_shape = _float32_blocks(x, "quantize_q8_0", QK8_0)
    out = np.empty((blocks.shape[0], Q8_0_BLOCK_BYTES), dtype=np.uint8)  # (nb, 34)
    # Work in chunks of blocks that stay in cache: every step below streams over the chunk once.
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):
        chunk = blocks[start : start + _CHUNK_BLOCKS]  # (cb, 32)
        high, low = _block_max_min(chunk)  # (cb, 1) each
        # max |x|; "+ 0" turns -0.0 into +0.0, as fabsf never returns -0.0.
        amax = np.maximum(high, -low) + np.float32(0)
        _reject_non_finite(amax, x, start, "quantize_q8_0")
        d = amax / np.float32(127)
        inv = _reciprocal_or_zero(d)
        # 1/d overflowed (a block of tiny values): llama.cpp writes codes 0, as id = 0 would.
        inv[np.isinf(inv)] = 0
        y = chunk * inv  # (cb, 32) float32, |y| <= 127 (up to an ulp)
        # roundf: round half away from zero. Adding the float just below 0.5 (with the sign of y)
        # and truncating is exact for every float32 |y| <= 130 (checked exhaustively): ties
        # k + 0.5 still reach k + 1, and 0.49999997 does not round up to 1 as +0.5 would.
        # The sign is copied with integer bit operations (np.copysign is several times slower).
        y += ((y.view(np.int32) & _SIGN_BIT) | _JUST_BELOW_HALF_BITS).view(np.float32)
        codes = y.astype(np.int8)  # truncation toward zero
        out[start : start + _CHUNK_BLOCKS, 2:] = codes.view(np.uint8)
        # d goes into the block as fp16, little-endian; the codes above used the float32 d.
        out[start : start + _CHUNK_BLOCKS, :2] = _fp16_bytes(d)
    return out.reshape(*batch_shape, -1)


def dequantize_q8_0(q: np.ndarray) -> np.ndarray:
    """Decode Q8_0 bytes ``(..., nb × 34)`` back to float32 ``(..., nb × 32)``.

    Each value is ``code × d`` with ``d`` read from the block's first two bytes as little-endian
    fp16 (the stored scale, not the float32 one the quantizer computed) and ``code`` the int8 of
    its byte. The product is exact in float32. ``q`` must be uint8 with a last dimension that is a
    multiple of 34; otherwise ``ValueError`` naming the dtype or the length.

    Example: the block ``d0 33`` + ``00 04 08 0c ...`` decodes to 0.0, 0.9765625, 1.953125,
    2.9296875, ...: ``d`` is the stored fp16 0.244140625, not 31/127 = 0.2440945.
    """
    blocks, batch_shape = _uint8_blocks(q, "dequantize_q8_0", Q8_0_BLOCK_BYTES)
    d = _fp16_from_bytes(blocks[:, :2])  # (nb, 1) float32
    codes = blocks[:, 2:].view(np.int8)  # (nb, 32)
    with np.errstate(invalid="ignore"):  # code 0 × an inf d is NaN, as in C
        return (codes * d).reshape(*batch_shape, -1)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """Quantize ``x`` of shape ``(..., K)`` to GGUF Q4_0: uint8 ``(..., K // 32 × 18)``.

    Byte-identical to llama.cpp's ``quantize_row_q4_0_ref``. For each block of 32 values along
    the last axis, in float32 arithmetic:

    * ``max`` = the value with the largest ``|x|``, KEEPING ITS SIGN (the first one in the block
      when ``+a`` and ``-a`` tie; ``+0.0`` for an all-zero block);
    * ``d = max / -8``, so the extreme value maps to code 0 and ``d`` is negative when the extreme
      value is positive; ``id = 1 / d`` (``id = 0`` when ``d == 0``);
    * code ``q = min(15, trunc(x × id + 8.5))`` — adding 8.5 and truncating (not rounding) is how
      llama.cpp rounds to nearest with an offset of 8; codes lie in [0, 15];
    * stored block: ``d`` as fp16 (little-endian), then 16 bytes: byte ``j`` holds element ``j``
      in its LOW nibble and element ``j + 16`` in its HIGH nibble.

    Edge cases, as llama.cpp: an all-zero block (signed zeros included) stores ``d = -0.0``
    (bytes ``00 80``: ``+0.0 / -8``) and codes 8 (bytes ``88``); a block whose ``1/d``
    overflows float32 (``|max|`` below about 2.4e-38) stores codes 0 (the C conversion yields 0).
    Input rules and errors are those of :func:`quantize_q8_0`.

    Example: the block ``0, 1, ..., 31`` has ``max = 31``, ``d = -3.875`` (fp16 bytes ``c0 c3``);
    element 0 gets code 8, element 16 code trunc(-16/3.875 + 8.5) = 4, element 31 code 0. Byte 0
    holds elements 0 and 16: ``0x48``; the block is ``c0 c3 48 48 37 37 37 37 26 ...``.
    """
    blocks, batch_shape = _float32_blocks(x, "quantize_q4_0", QK4_0)
    out = np.empty((blocks.shape[0], Q4_0_BLOCK_BYTES), dtype=np.uint8)  # (nb, 18)
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):
        chunk = blocks[start : start + _CHUNK_BLOCKS]  # (cb, 32)
        high, low = _block_max_min(chunk)  # (cb, 1) each
        amax = np.maximum(high, -low)
        _reject_non_finite(amax, x, start, "quantize_q4_0")
        # The signed extreme: whichever of high and low is farther from zero.
        signed_max = np.where(-low > high, low, high)
        # When +a and -a tie, llama.cpp keeps the first one it met (it only replaces on a strictly
        # larger |x|): look those rare blocks up element by element.
        tied = np.flatnonzero((-low == high)[:, 0] & (high[:, 0] > 0))
        if tied.size:
            first = np.argmax(np.abs(chunk[tied]) == high[tied], axis=1)
            signed_max[tied, 0] = chunk[tied, first]
        # An all-zero block keeps llama.cpp's starting value +0.0, whatever the signs of its zeros.
        signed_max[amax == 0] = np.float32(0)
        d = signed_max / np.float32(-8)
        inv = _reciprocal_or_zero(d)
        overflow = np.isinf(inv[:, 0])
        inv[overflow] = 0
        # x·id lies in [-8, 8] (up to an ulp): +8.5 then truncation is round-to-nearest onto 0..16.
        y = chunk * inv
        y += np.float32(8.5)
        # min(15, trunc(y)) == trunc(min(y, 15.5)) for y >= 0; clamping the float is the faster pass.
        # (Only the element at -max reaches 16.)
        np.minimum(y, np.float32(15.5), out=y)
        codes = y.astype(np.uint8)  # (cb, 32), truncation
        codes[overflow] = 0  # 1/d overflowed: llama.cpp writes 0 (see docstring)
        # Byte j: element j in the low nibble, element j + 16 in the high nibble.
        out[start : start + _CHUNK_BLOCKS, 2:] = codes[:, :16] | (codes[:, 16:] << np.uint8(4))
        out[start : start + _CHUNK_BLOCKS, :2] = _fp16_bytes(d)
    return out.reshape(*batch_shape, -1)


def dequantize_q4_0(q: np.ndarray) -> np.ndarray:
    """Decode Q4_0 bytes ``(..., nb × 18)`` back to float32 ``(..., nb × 32)``.

    Element ``j`` of a block is ``((byte[j] & 0x0F) - 8) × d`` and element ``j + 16`` is
    ``((byte[j] >> 4) - 8) × d``, with ``d`` the stored little-endian fp16. Exact in float32.
    ``q`` must be uint8 with a last dimension that is a multiple of 18; otherwise ``ValueError``
    naming the dtype or the length.

    Example: ``c0 c3 48 48 37 ...``: ``d = -3.875``; element 0 is ``(8 - 8) × d = -0.0``, element 2
    is ``(7 - 8) × d = 3.875``, element 16 is ``(4 - 8) × d = 15.5``.
    """
    blocks, batch_shape = _uint8_blocks(q, "dequantize_q4_0", Q4_0_BLOCK_BYTES)
    d = _fp16_from_bytes(blocks[:, :2])  # (nb, 1)
    packed = blocks[:, 2:]  # (nb, 16)
    codes = np.concatenate([packed & 0x0F, packed >> 4], axis=1).view(np.int8) - np.int8(8)  # (nb, 32)
    with np.errstate(invalid="ignore"):  # code 8 × an inf d is NaN, as in C
        return (codes * d).reshape(*batch_shape, -1)


def quantize_nf4(x: np.ndarray, block_size: int = NF4_DEFAULT_BLOCK_SIZE) -> NF4Weight:
    """Quantize ``x`` to NF4 with bitsandbytes' semantics (``quantize_4bit(..., quant_type="nf4")``).

    * flatten ``x`` in C order and cut it into blocks of ``block_size`` values;
    * ``absmax = max |x|`` per block, stored as float32; ``|-0.0|`` is ``+0.0``, so an all-zero
      block stores ``absmax = +0.0`` (bitsandbytes takes ``fabsf`` of every value);
    * normalize: ``n = x × (1 / absmax)`` in float32 (a reciprocal, then a multiply, as the kernel
      does): ``x / absmax`` differs by an ulp for some values, enough to cross a midpoint;
    * code = the NF4 value nearest to ``n``: the number of midpoints
      ``(NF4_CODE[i] + NF4_CODE[i+1]) / 2`` (float32) that lie strictly below ``n`` — this is
      bitsandbytes' decision tree (``x > midpoint`` goes up). A value exactly on a midpoint takes
      the LOWER code. An all-zero block gives ``0 × (1/0) = NaN``, which is above no midpoint:
      its codes are 0 and it decodes to ``NF4_CODE[0] × absmax = -1.0 × +0.0 = -0.0``;
    * pack two codes per byte: element ``2i`` in the HIGH nibble of byte ``i``.

    ``x`` must be float32 or float16 (widened exactly) and finite; ``block_size`` a positive even
    int (a ``bool`` is not a block size); ``x.size`` a multiple of ``block_size`` (bitsandbytes also
    accepts a ragged last block; this lab does not). Violations raise ``ValueError`` whose message
    names the dtype, the ``block_size``, the number of elements, or the bad value (``nan``, ``inf``).

    Example: ``x = [1, -0.5, 0.25, 0, ...]`` in one block of 64 with absmax 1 has codes
    15, 2 (-0.525 is nearest to -0.5), 10 (0.246), 7, ...: packed bytes ``f2 a7 77 77 ...``.
    """
    values = _as_float32(x, "quantize_nf4").reshape(-1)  # (numel,)
    _check_block_size(block_size)
    if values.size % block_size:
        raise ValueError(f"x has {values.size} elements (shape {np.shape(x)}), not a multiple of block_size={block_size}")
    blocks = values.reshape(-1, block_size)  # (nb, block_size)
    # max |x|; "+ 0" turns -0.0 into +0.0 (np.maximum may return either zero of an all-zero block).
    absmax = np.maximum(blocks.max(axis=1, keepdims=True), -blocks.min(axis=1, keepdims=True)) + np.float32(0)  # (nb, 1) float32
    _reject_non_finite(absmax, x, 0, "quantize_nf4", per_block=block_size)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        normalized = blocks * (np.float32(1) / absmax)  # (nb, block_size); NaN in all-zero blocks, ±inf or NaN in tiny ones
    # searchsorted(side="left") counts the midpoints strictly below n; NaN sorts last, but the
    # decision tree sends NaN (every "n > midpoint" is false) to code 0.
    codes = np.searchsorted(_NF4_MIDPOINTS, normalized, side="left").astype(np.uint8)
    codes[np.isnan(normalized)] = 0
    codes = codes.reshape(-1, 2)  # (numel/2, 2): consecutive pairs
    packed = (codes[:, 0] << 4) | codes[:, 1]  # even element in the high nibble
    return NF4Weight(packed=packed, absmax=absmax[:, 0].copy(), shape=tuple(np.shape(x)), block_size=int(block_size))


def dequantize_nf4(qw: NF4Weight) -> np.ndarray:
    """Decode an :class:`NF4Weight` to float32 of shape ``qw.shape``.

    Element ``2i`` is ``NF4_CODE[packed[i] >> 4]``, element ``2i + 1`` is
    ``NF4_CODE[packed[i] & 0x0F]``, each multiplied (float32) by its block's ``absmax``.
    ``packed`` must be uint8 and ``block_size`` a positive even int (not a ``bool``); sizes that do
    not fit together (``packed.size × 2`` vs the number of elements of ``shape``, ``absmax.size``
    vs elements / ``block_size``) raise ``ValueError`` naming both numbers, a bad dtype or
    ``block_size`` one naming it.
    """
    _check_block_size(qw.block_size)
    numel = int(np.prod(qw.shape))
    packed = np.asarray(qw.packed).reshape(-1)
    if packed.dtype != np.uint8:
        raise ValueError(f"dequantize_nf4 expects packed as the uint8 bytes quantize_nf4 stored, got dtype {packed.dtype}")
    absmax = np.asarray(qw.absmax, dtype=np.float32).reshape(-1)
    if packed.size * 2 != numel:
        raise ValueError(f"packed holds {packed.size} bytes = {packed.size * 2} codes, but shape {tuple(qw.shape)} has {numel} elements")
    if numel % qw.block_size or absmax.size != numel // qw.block_size:
        raise ValueError(f"absmax holds {absmax.size} values, but {numel} elements in blocks of {qw.block_size} need {numel / qw.block_size:g}")
    codes = np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1, qw.block_size)  # (nb, block_size)
    with np.errstate(invalid="ignore"):  # 0.0 × an inf absmax is NaN
        return (NF4_CODE[codes] * absmax[:, None]).reshape(qw.shape)


def nf4_bits_per_weight(block_size: int = NF4_DEFAULT_BLOCK_SIZE, double_quant: bool = False, double_quant_block_size: int = 256) -> float:
    """Bits stored per weight by NF4: 4 bits of code plus each weight's share of its block's scale.

    * plain: one fp32 absmax per ``block_size`` weights: ``4 + 32 / block_size`` (4.5 for 64);
    * ``double_quant=True`` (QLoRA's double quantization): each absmax is itself stored as an
      8-bit code, and every ``double_quant_block_size`` absmax codes share one fp32 scale:
      ``4 + 8 / block_size + 32 / (block_size × double_quant_block_size)``
      = 4 + 0.125 + 0.001953125 = 4.126953125 for 64 and 256.

    Per-tensor constants (bitsandbytes' fp32 absmax offset and its 256-entry code table) are not
    counted: they vanish for real weight matrices. Returns a Python ``float``. Block sizes must be
    positive ints and ``double_quant`` a ``bool`` (``True`` is not a block size, ``1`` is not a
    flag), else ``ValueError`` naming the parameter.
    """
    for name, value in (("block_size", block_size), ("double_quant_block_size", double_quant_block_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: use a positive int")
    if not isinstance(double_quant, bool):
        raise ValueError(f"double_quant={double_quant!r} is invalid: use True or False")
    if not double_quant:
        return 4 + 32 / block_size
    # 8-bit absmax codes, plus one fp32 scale per double_quant_block_size of them.
    return 4 + 8 / block_size + 32 / (block_size * double_quant_block_size)


# --------------------------------------------------------------------------------------------
# Private helpers of the reference
# --------------------------------------------------------------------------------------------

_CHUNK_BLOCKS = 2048  # 2048 blocks × 32 float32 = 256 KiB: a chunk and its temporaries stay in cache
_JUST_BELOW_HALF_BITS = np.nextafter(np.float32(0.5), np.float32(0)).view(np.int32)  # bits of 0.49999997
_SIGN_BIT = np.int32(-(2**31))  # 0x80000000 as int32
_NF4_MIDPOINTS = (NF4_CODE[:-1] + NF4_CODE[1:]) / np.float32(2)  # (15,) float32, the decision tree's thresholds


def _as_float32(x: np.ndarray, fn: str) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype == np.float16:
        return array.astype(np.float32)  # exact: every fp16 is a float32
    if array.dtype != np.float32:
        raise ValueError(
            f"{fn} expects float32 values (float16 is widened exactly), got dtype {array.dtype}: "
            "convert explicitly with x.astype(np.float32) — a float64 input would be rounded first"
        )
    return array


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 2 or block_size % 2:
        raise ValueError(f"block_size={block_size!r} is invalid: NF4 packs two codes per byte, so use a positive even block size such as 64")


def _float32_blocks(x: np.ndarray, fn: str, block: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(nb, block)`` float32 blocks of ``x`` along its last axis, and the leading shape."""
    array = _as_float32(x, fn)
    if array.ndim == 0:
        raise ValueError(f"{fn} needs an array of shape (..., K), got a 0-d array")
    k = array.shape[-1]
    if k % block:
        raise ValueError(f"{fn}: K={k} (last dimension of shape {array.shape}) is not a multiple of the block size {block}")
    return np.ascontiguousarray(array).reshape(-1, block), array.shape[:-1]


def _uint8_blocks(q: np.ndarray, fn: str, block_bytes: int) -> tuple[np.ndarray, tuple[int, ...]]:
    array = np.asarray(q)
    if array.dtype != np.uint8:
        raise ValueError(f"{fn} expects the uint8 bytes a quantizer returned, got dtype {array.dtype}")
    if array.ndim == 0 or array.shape[-1] % block_bytes:
        raise ValueError(f"{fn}: the last dimension of shape {array.shape} is not a multiple of {block_bytes} bytes per block")
    return np.ascontiguousarray(array).reshape(-1, block_bytes), array.shape[:-1]


def _reject_non_finite(amax: np.ndarray, x: np.ndarray, start_block: int, fn: str, per_block: int = 32) -> None:
    """A block's amax is finite exactly when all its values are (max propagates NaN)."""
    bad = np.flatnonzero(~np.isfinite(amax[:, 0]))
    if bad.size:
        flat = np.asarray(x).reshape(-1)
        first_block = start_block + int(bad[0])
        offset = int(np.flatnonzero(~np.isfinite(flat[first_block * per_block : (first_block + 1) * per_block]))[0])
        where = np.unravel_index(first_block * per_block + offset, np.shape(x))
        raise ValueError(f"{fn}: x holds a non-finite value {flat[first_block * per_block + offset]} at index {tuple(int(i) for i in where)}: the format has no code for NaN or Inf")


def _block_max_min(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-block max and min of ``(cb, 32)`` float32 blocks, as ``(cb, 1)`` arrays.

    Reducing 32 contiguous values per row is slow in NumPy (a short inner loop per block); on the
    transposed copy ``(32, cb)`` the same reduction is an elementwise max over 32 long rows (SIMD).
    """
    columns = np.ascontiguousarray(chunk.T)  # (32, cb)
    return columns.max(axis=0)[:, None], columns.min(axis=0)[:, None]


def _reciprocal_or_zero(d: np.ndarray) -> np.ndarray:
    """float32 ``1/d``, and 0 where ``d == 0`` (llama.cpp: ``id = d ? 1.0f/d : 0.0f``); may be inf."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d)


def _fp16_bytes(d: np.ndarray) -> np.ndarray:
    """``(n, 1)`` float32 -> ``(n, 2)`` little-endian fp16 bytes (round to nearest even; overflow -> inf)."""
    with np.errstate(over="ignore"):
        return d.astype("<f2").view(np.uint8)


def _fp16_from_bytes(pairs: np.ndarray) -> np.ndarray:
    """``(n, 2)`` uint8 -> ``(n, 1)`` float32 of the little-endian fp16 they hold."""
    return np.ascontiguousarray(pairs).view("<f2").astype(np.float32)
