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
    # TODO: look fmt up in BLOCK_LAYOUTS (an unknown fmt raises ValueError listing the known ones),
    #       add up the bytes of every field and turn them into bits per weight of the block.
    raise NotImplementedError("bits_per_weight: bytes of the whole block × 8 / weights per block")


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
    # TODO: check the input (dtype, a last axis K that is a multiple of 32, finite values), view x as
    #       (n_blocks, 32) float32 blocks, compute amax, d and id per block in float32, round x × id half
    #       AWAY from zero (np.round rounds half to even), then fill a (n_blocks, 34) uint8 array: d as
    #       little-endian fp16 bytes, then the int8 codes. No Python loop over blocks.
    raise NotImplementedError("quantize_q8_0: fp16 d + 32 int8 codes per block of 32")


def dequantize_q8_0(q: np.ndarray) -> np.ndarray:
    """Decode Q8_0 bytes ``(..., nb × 34)`` back to float32 ``(..., nb × 32)``.

    Each value is ``code × d`` with ``d`` read from the block's first two bytes as little-endian
    fp16 (the stored scale, not the float32 one the quantizer computed) and ``code`` the int8 of
    its byte. The product is exact in float32. ``q`` must be uint8 with a last dimension that is a
    multiple of 34; otherwise ``ValueError`` naming the dtype or the length.

    Example: the block ``d0 33`` + ``00 04 08 0c ...`` decodes to 0.0, 0.9765625, 1.953125,
    2.9296875, ...: ``d`` is the stored fp16 0.244140625, not 31/127 = 0.2440945.
    """
    # TODO: check dtype and length, split each 34-byte block into its fp16 d and 32 int8 codes,
    #       multiply, and give the result the shape (..., n_blocks × 32).
    raise NotImplementedError("dequantize_q8_0: code × stored fp16 d")


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
    # TODO: same checks as quantize_q8_0. Per block: the signed value with the largest |x| (first one on
    #       a tie, +0.0 for an all-zero block), d = max / -8, codes min(15, trunc(x × id + 8.5)), blocks
    #       whose 1/d overflows get codes 0. Pack element j in the low nibble and j + 16 in the high one.
    raise NotImplementedError("quantize_q4_0: fp16 d + 16 bytes of nibbles per block of 32")


def dequantize_q4_0(q: np.ndarray) -> np.ndarray:
    """Decode Q4_0 bytes ``(..., nb × 18)`` back to float32 ``(..., nb × 32)``.

    Element ``j`` of a block is ``((byte[j] & 0x0F) - 8) × d`` and element ``j + 16`` is
    ``((byte[j] >> 4) - 8) × d``, with ``d`` the stored little-endian fp16. Exact in float32.
    ``q`` must be uint8 with a last dimension that is a multiple of 18; otherwise ``ValueError``
    naming the dtype or the length.

    Example: ``c0 c3 48 48 37 ...``: ``d = -3.875``; element 0 is ``(8 - 8) × d = -0.0``, element 2
    is ``(7 - 8) × d = 3.875``, element 16 is ``(4 - 8) × d = 15.5``.
    """
    # TODO: check dtype and length, unpack both nibbles of each byte (low nibbles are elements
    #       0..15, high nibbles 16..31), subtract 8 and multiply by the stored fp16 d.
    raise NotImplementedError("dequantize_q4_0: (nibble - 8) × stored fp16 d")


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
    # TODO: check dtype, block_size and sizes; per block absmax (float32, +0.0 for zeros), n = x × (1 / absmax),
    #       code = number of codebook midpoints strictly below n (NaN -> 0), then pack pairs with the even
    #       element in the high nibble. Return an NF4Weight.
    raise NotImplementedError("quantize_nf4: absmax per block, nearest NF4 value, two codes per byte")


def dequantize_nf4(qw: NF4Weight) -> np.ndarray:
    """Decode an :class:`NF4Weight` to float32 of shape ``qw.shape``.

    Element ``2i`` is ``NF4_CODE[packed[i] >> 4]``, element ``2i + 1`` is
    ``NF4_CODE[packed[i] & 0x0F]``, each multiplied (float32) by its block's ``absmax``.
    ``packed`` must be uint8 and ``block_size`` a positive even int (not a ``bool``); sizes that do
    not fit together (``packed.size × 2`` vs the number of elements of ``shape``, ``absmax.size``
    vs elements / ``block_size``) raise ``ValueError`` naming both numbers, a bad dtype or
    ``block_size`` one naming it.
    """
    # TODO: check packed's dtype, block_size, and that packed, absmax and shape fit together; unpack
    #       (high nibble first), look the codes up in NF4_CODE and multiply each block by its absmax.
    raise NotImplementedError("dequantize_nf4: NF4_CODE[code] × absmax")


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
    # TODO: validate the block sizes and the flag, then add the code bits and each weight's share of the
    #       scale bits (fp32 absmax; with double quantization an 8-bit absmax plus a shared fp32 scale).
    raise NotImplementedError("nf4_bits_per_weight: 4 bits of code + the scale's share")
