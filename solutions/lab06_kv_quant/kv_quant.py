"""Lab 06 — KV-cache quantization: per-channel keys, per-token values, a residual window, FP8.

At long context the KV cache, not the weights, fills the GPU: Llama-3-8B holds 1 GiB of bf16
keys and values per 8192-token sequence, and quantizing the weights leaves every byte of it where
it was. Quantizing the cache itself is a different problem from quantizing weights: keys have
**outlier channels** (a few head_dim entries far larger than the rest, in every token), values do
not; new tokens arrive one at a time; and the error that matters is not the tensor's but the
attention distribution's. KIVI answers with asymmetric low-bit codes, keys grouped **per channel**
(statistics over tokens), values **per token**, and the most recent tokens kept in full precision
until a whole group of them has aged. FP8 is the simpler alternative: one per-tensor scale and
torch's ``float8`` dtypes.

Conventions of the whole lab (the checks test each one):

* keys and values are ``(..., tokens, head_dim)`` (usually ``(batch, num_kv_heads, tokens,
  head_dim)``); float32, float16 or bfloat16, converted to float32 before any arithmetic;
* asymmetric codes in ``[0, quant_max]`` with ``quant_max = 2^bits - 1`` (3 at 2 bits) for
  ``bits`` in ``SUPPORTED_BITS``; each group of ``group_size`` elements stores a float32
  ``scale = (max - min) / quant_max`` (floored at ``SCALE_EPS``) and a float32
  ``zero_point = min`` (KIVI's ``mn``): ``x ≈ codes × scale + zero_point``; codes are
  ``torch.uint8``, one per element until :func:`pack_codes` packs them;
* rounding is ``torch.round`` (half to even) of a true division ``(x - zero_point) / scale``;
* bad input raises ``ValueError`` naming the offending numbers.

Work through the exercises in order (``infralens hint lab06`` when stuck):

1. ``quantize_groups``        asymmetric codes in groups along one axis
2. ``dequantize_groups``      codes × scale + zero_point, back to float32
3. ``quantize_keys``          per channel: groups run along the tokens
4. ``quantize_values``        per token: groups run along head_dim
5. ``QuantizedKVCache``       quantized old tokens, a full-precision residual window, prefill and append
6. ``fp8_scale``              a per-tensor FP8 scale, amax / 448 (e4m3fn) or amax / 57344 (e5m2)
7. ``quantize_fp8``           scale, saturate, cast to torch's float8 dtype
8. ``attention_score_error``  how far quantized keys move the attention distribution
9. ``quantized_kv_bytes``     the bytes a quantized cache stores at a context length, against bf16

Run ``pytest --lab 06`` (or ``pytest checks/lab06_kv_quant``) to check your work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from infralens.tensors import require_float_tensor

# --------------------------------------------------------------------------------------------
# Given: vocabulary and helpers of the lab (not exercises)
# --------------------------------------------------------------------------------------------

KV_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Key and value dtypes accepted; all are converted to float32 before any arithmetic."""

SUPPORTED_BITS = (2, 4, 8)
"""Code widths of the KV quantizers (KIVI uses 2 and 4); 8 // bits codes pack into one byte."""

DEFAULT_GROUP_SIZE = 32
"""KIVI's group size: 32 elements share a scale and a zero point."""

SCALE_EPS = torch.finfo(torch.float32).tiny
"""Floor of every scale, 2^-126 (the smallest normal float32): a constant group gets this scale
instead of 0, so its codes are 0 instead of 0 / 0 = NaN, and it dequantizes to its value exactly."""

FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}
"""The largest finite value of each OCP FP8 dtype (``torch.finfo(dtype).max``). AMD's
``float8_e4m3fnuz`` stops at 240; this lab uses the two OCP dtypes only."""

METADATA_BYTES = 4
"""Bytes of one stored scale or zero point: float32. (KIVI's kernels keep them in float16, which
halves the metadata; float32 keeps every step of this lab exact.)"""

RESIDUAL_BYTES = 2
"""Bytes per element of the full-precision residual window in :func:`quantized_kv_bytes`: bf16."""


def quant_max(bits: int) -> int:
    """``2^bits - 1``, the largest asymmetric code: 3 at 2 bits, 15 at 4 bits, 255 at 8 bits.

    ``bits`` must be an ``int`` (never a ``bool``) in ``SUPPORTED_BITS``; anything else raises
    ``ValueError("bits=3 is not supported: ...")`` naming the value.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} is not supported: KV codes are one of {SUPPORTED_BITS} bits wide")
    return 2**bits - 1


def check_int(value: object, name: str, low: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (never a ``bool``) ``>= low``; the
    message names ``name`` and the value, e.g. ``"group_size=0 must be an int >= 1"``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} must be an int >= {low}")


def check_kv(x: Tensor, name: str, min_dim: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite, non-empty tensor of a dtype in ``KV_DTYPES``
    with at least ``min_dim`` dims. The message starts with ``name`` and names the problem: the
    type, the dtype, the shape, or "NaN or Inf" with the first bad value's index."""
    require_float_tensor(x, name, KV_DTYPES, min_dim)


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack ``bits``-wide ``torch.uint8`` codes ``(..., n)`` along the last dim, ``8 // bits`` per byte.

    Element ``j`` goes to byte ``j // (8 // bits)``, at bit offset ``(j % (8 // bits)) × bits``
    (the first element in the lowest bits); a last byte that is not full is padded with zero
    codes. Returns ``torch.uint8 (..., ceil(n × bits / 8))``. Example: 2-bit codes
    ``[1, 2, 3, 0, 3]`` -> ``[0b00111001, 0b00000011] = [57, 3]``.
    """
    per_byte = 8 // bits
    n = codes.shape[-1]
    padded = torch.nn.functional.pad(codes, (0, -n % per_byte)).to(torch.int32)  # (..., n rounded up)
    lanes = padded.reshape(*codes.shape[:-1], -1, per_byte)  # (..., bytes, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return (lanes << shifts).sum(dim=-1).to(torch.uint8)


def unpack_codes(packed: Tensor, bits: int, n: int) -> Tensor:
    """The inverse of :func:`pack_codes`: the first ``n`` codes of ``packed (..., bytes)`` as
    ``torch.uint8 (..., n)``."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    lanes = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & (2**bits - 1)  # (..., bytes, per_byte)
    return lanes.reshape(*packed.shape[:-1], -1)[..., :n].to(torch.uint8)


def dequantize_fp8(x8: Tensor, scale: float) -> Tensor:
    """``x8 × scale`` in float32: the values an FP8 tensor with a per-tensor ``scale`` stands for."""
    return x8.to(torch.float32) * torch.tensor(scale, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def quantize_groups(x: Tensor, bits: int = 2, group_size: int = DEFAULT_GROUP_SIZE, axis: int = -1) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric quantization in groups of ``group_size`` consecutive elements along ``axis``.

    For every group ``G`` (``group_size`` neighbours along ``axis``, every other index fixed), in
    float32: ``zero_point = min(G)``, ``scale = max((max(G) - min(G)) / quant_max, SCALE_EPS)``
    and ``codes = clamp(round((x - zero_point) / scale), 0, quant_max)`` (``torch.round``, half
    to even, of a true division). Returns ``(codes, scale, zero_point)``: ``codes`` is
    ``torch.uint8`` of ``x``'s shape; ``scale`` and ``zero_point`` are ``torch.float32`` of
    ``x``'s shape with dim ``axis`` divided by ``group_size`` (one entry per group, in place).

    Dequantized (:func:`dequantize_groups`), every element is within half its group's step,
    ``scale / 2``; each group's min and max come back exactly (codes 0 and ``quant_max``), and a
    constant group comes back as its value.

    Errors (``ValueError``; what its message must contain is in brackets): ``bits`` (see
    :func:`quant_max`) [its value]; ``x`` invalid (:func:`check_kv`): another dtype [the dtype],
    a 0-d or empty ``x`` [its shape], NaN or Inf ["NaN" or "Inf"]; ``group_size`` not an ``int
    >= 1`` [its value]; ``axis`` not an ``int`` in ``[-x.dim(), x.dim())``, or a ``bool`` [its
    value]; ``x.shape[axis]`` not a multiple of ``group_size`` [both numbers].

    Example: ``x = [0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0, -1.0, -1.0, -1.0, -1.0]``,
    ``bits=2``, ``group_size=4``: ``scale = [1.0, 2.0, 2^-126]``, ``zero_point = [0.0, -2.0,
    -1.0]``, ``codes = [0, 0, 2, 3, 0, 0, 1, 3, 0, 0, 0, 0]`` (0.5 and 1.25 → the ties 0.5 and
    1.5 go to the even 0 and 2; 0.5 → 0).
    """
    q_max = quant_max(bits)
    check_kv(x, "x")
    check_int(group_size, "group_size", 1)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis={axis!r} is out of range for x of shape {tuple(x.shape)}: expected an int in [{-x.dim()}, {x.dim()})")
    length = x.shape[axis]
    if length % group_size:
        raise ValueError(f"x has {length} elements along axis {axis} (shape {tuple(x.shape)}), not a multiple of group_size={group_size}")
    # Move the grouped axis last and split it into (groups, group_size): every reduction is then over dim -1.
    xf = x.float().movedim(axis, -1)  # (..., length)
    groups = xf.reshape(*xf.shape[:-1], length // group_size, group_size)  # (..., groups, group_size)
    low = groups.amin(dim=-1, keepdim=True)  # (..., groups, 1): the zero point, KIVI's mn
    high = groups.amax(dim=-1, keepdim=True)
    scale = ((high - low) / q_max).clamp(min=SCALE_EPS)  # a constant group must not divide 0 by 0
    codes = torch.round((groups - low) / scale).clamp(0, q_max).to(torch.uint8)
    codes = codes.reshape(xf.shape).movedim(-1, axis)
    return codes, scale.squeeze(-1).movedim(-1, axis), low.squeeze(-1).movedim(-1, axis)


def dequantize_groups(codes: Tensor, scale: Tensor, zero_point: Tensor, axis: int = -1) -> Tensor:
    """``codes × scale + zero_point`` in float32, each group's scale and zero point repeated over
    its ``group_size`` elements along ``axis``, computed in that order (the product, then the sum).

    ``group_size = codes.shape[axis] // scale.shape[axis]``. Returns ``torch.float32`` of
    ``codes``' shape.

    Errors (``ValueError``; brackets: what its message must contain): ``codes`` not
    ``torch.uint8`` [its dtype]; ``scale`` or ``zero_point`` not ``torch.float32`` [the dtype];
    ``axis`` not an ``int`` in ``[-codes.dim(), codes.dim())`` or a ``bool`` [its value];
    ``scale`` and ``zero_point`` of different shapes, or a shape that is not ``codes``' with dim
    ``axis`` divided by a whole group size [both shapes].

    Example: ``codes = [0, 0, 2, 3, 0, 0, 1, 3]``, ``scale = [1.0, 2.0]``, ``zero_point =
    [0.0, -2.0]`` -> ``[0.0, 0.0, 2.0, 3.0, -2.0, -2.0, 0.0, 4.0]``.
    """
    if not isinstance(codes, Tensor) or codes.dtype != torch.uint8 or codes.dim() == 0:
        raise ValueError(f"codes must be a torch.uint8 tensor with at least one dim, got {_describe(codes)}")
    for name, value in (("scale", scale), ("zero_point", zero_point)):
        if not isinstance(value, Tensor) or value.dtype != torch.float32:
            raise ValueError(f"{name} must be a torch.float32 tensor, got {_describe(value)}")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -codes.dim() <= axis < codes.dim():
        raise ValueError(f"axis={axis!r} is out of range for codes of shape {tuple(codes.shape)}: expected an int in [{-codes.dim()}, {codes.dim()})")
    groups = scale.shape[axis] if scale.dim() == codes.dim() else 0
    expected = list(codes.shape)
    expected[axis] = groups
    if scale.shape != zero_point.shape or list(scale.shape) != expected or not groups or codes.shape[axis] % groups:
        raise ValueError(
            f"scale {tuple(scale.shape)} and zero_point {tuple(zero_point.shape)} do not fit codes of shape {tuple(codes.shape)}: "
            f"both must be codes' shape with dim {axis} divided by the group size"
        )
    group_size = codes.shape[axis] // groups
    scale_full = scale.repeat_interleave(group_size, dim=axis)  # codes' shape: each group's entry over its elements
    zero_full = zero_point.repeat_interleave(group_size, dim=axis)
    return codes.to(torch.float32) * scale_full + zero_full


def quantize_keys(k: Tensor, bits: int = 2, group_size: int = DEFAULT_GROUP_SIZE) -> tuple[Tensor, Tensor, Tensor]:
    """KIVI's keys: quantized **per channel**, in groups of ``group_size`` tokens.

    ``k`` is ``(..., tokens, head_dim)``; each channel (a ``head_dim`` index) of each run of
    ``group_size`` consecutive tokens shares a scale and a zero point: :func:`quantize_groups`
    along the tokens axis (``axis=-2``). Returns ``(codes, scale, zero_point)``: ``codes``
    ``torch.uint8 (..., tokens, head_dim)``, ``scale`` and ``zero_point`` ``torch.float32
    (..., tokens // group_size, head_dim)``.

    Why per channel: keys have outlier channels, large in every token. A per-token group would
    contain them and stretch every other channel's step; a per-channel group holds one channel's
    values only, so an outlier channel coarsens nothing but itself.

    Errors (``ValueError``; brackets: what its message must contain): those of
    :func:`quantize_groups`; a ``k`` with fewer than 2 dims [its shape]; ``tokens`` not a
    multiple of ``group_size`` [both numbers].

    Example: ``k = [[1.0, 100.0], [3.0, -100.0]]`` (2 tokens, 2 channels), ``bits=2``,
    ``group_size=2``: ``scale = [[2/3, 200/3]]`` (float32 ``0.6666666865348816`` and
    ``66.66666412353516``), ``zero_point = [[1.0, -100.0]]``, ``codes = [[0, 3], [3, 0]]``.
    """
    check_kv(k, "k", min_dim=2)
    return quantize_groups(k, bits, group_size, axis=-2)


def quantize_values(v: Tensor, bits: int = 2, group_size: int = DEFAULT_GROUP_SIZE) -> tuple[Tensor, Tensor, Tensor]:
    """KIVI's values: quantized **per token**, in groups of ``group_size`` channels.

    ``v`` is ``(..., tokens, head_dim)``; each run of ``group_size`` consecutive channels of one
    token shares a scale and a zero point: :func:`quantize_groups` along ``head_dim``
    (``axis=-1``). Returns ``(codes, scale, zero_point)``: ``codes`` ``torch.uint8 (..., tokens,
    head_dim)``, ``scale`` and ``zero_point`` ``torch.float32 (..., tokens, head_dim //
    group_size)``.

    Why per token: the attention output is ``P @ V``, a weighted mix of value *rows*; each
    token's error stays in its own row and is averaged by the weights. Values have no outlier
    channels to isolate, and a token's groups can be quantized the moment it arrives.

    Errors (``ValueError``; brackets: what its message must contain): those of
    :func:`quantize_groups`; a ``v`` with fewer than 2 dims [its shape]; ``head_dim`` not a
    multiple of ``group_size`` [both numbers].

    Example: ``v = [[1.0, 100.0], [3.0, -100.0]]``, ``bits=2``, ``group_size=2``: ``scale =
    [[33.0], [34.33333206176758]]``, ``zero_point = [[1.0], [-100.0]]``, ``codes = [[0, 3],
    [3, 0]]`` (``103 / 34.33 = 3.0``).
    """
    check_kv(v, "v", min_dim=2)
    return quantize_groups(v, bits, group_size, axis=-1)


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
    return type(value).__name__


def _quantize_kv(cache: "QuantizedKVCache", k: Tensor, v: Tensor) -> tuple[Tensor, ...]:
    """Packed codes, scales and zero points of whole groups of aged tokens ``(batch, heads, n, head_dim)``."""
    k_codes, k_scale, k_zero = quantize_keys(k.float(), cache.bits, cache.group_size)  # scale (b, h, n // g, d)
    v_codes, v_scale, v_zero = quantize_values(v.float(), cache.bits, cache.group_size)  # scale (b, h, n, d // g)
    return pack_codes(k_codes, cache.bits), k_scale, k_zero, pack_codes(v_codes, cache.bits), v_scale, v_zero


def _age(cache: "QuantizedKVCache") -> None:
    """Quantize the oldest residual tokens, in whole groups, until the rule of the class holds."""
    aged = cache.group_size * (max(cache.tokens - cache.residual_length, 0) // cache.group_size) - cache.quantized_tokens
    if aged <= 0:
        return
    parts = _quantize_kv(cache, cache.k_residual[:, :, :aged], cache.v_residual[:, :, :aged])
    names = ("k_codes", "k_scale", "k_zero_point", "v_codes", "v_scale", "v_zero_point")
    for name, part in zip(names, parts):
        setattr(cache, name, torch.cat([getattr(cache, name), part], dim=2))  # tokens (or key groups) run along dim 2
    cache.k_residual = cache.k_residual[:, :, aged:].clone()
    cache.v_residual = cache.v_residual[:, :, aged:].clone()


def _check_step(cache: "QuantizedKVCache", where: str, k: Tensor, v: Tensor, one_token: bool) -> None:
    check_kv(k, f"{where}: k", min_dim=4)
    check_kv(v, f"{where}: v", min_dim=4)
    expected = (cache.batch, cache.num_kv_heads, 1 if one_token else k.shape[2], cache.head_dim)
    if k.dim() != 4 or tuple(k.shape) != expected or tuple(v.shape) != expected:
        tokens = "1" if one_token else "tokens"
        raise ValueError(
            f"{where}: k {tuple(k.shape)} and v {tuple(v.shape)} must both be (batch, num_kv_heads, {tokens}, head_dim) = "
            f"({cache.batch}, {cache.num_kv_heads}, {tokens}, {cache.head_dim})"
        )


def _contents(cache: "QuantizedKVCache") -> tuple[Tensor, Tensor]:
    """Every cached token in ``cache.dtype``: the dequantized old ones, then the residual."""
    n, d = cache.quantized_tokens, cache.head_dim
    k_old = dequantize_groups(unpack_codes(cache.k_codes, cache.bits, d), cache.k_scale, cache.k_zero_point, axis=-2) if n else cache.k_residual[:, :, :0]
    v_old = dequantize_groups(unpack_codes(cache.v_codes, cache.bits, d), cache.v_scale, cache.v_zero_point, axis=-1) if n else cache.v_residual[:, :, :0]
    keys = torch.cat([k_old.to(cache.dtype), cache.k_residual], dim=2)  # (b, h, tokens, d)
    values = torch.cat([v_old.to(cache.dtype), cache.v_residual], dim=2)
    return keys, values


@dataclass(eq=False)
class QuantizedKVCache:
    """KIVI's cache for one attention layer: old tokens quantized, the recent ones in full precision.

    ``__post_init__`` validates the fields (``batch``, ``num_kv_heads``, ``head_dim`` and
    ``group_size`` each an ``int >= 1``, ``residual_length`` an ``int >= 0``, ``bits`` as
    :func:`quant_max`, ``head_dim`` a multiple of ``group_size``, ``dtype`` one of
    ``KV_DTYPES``; else ``ValueError`` naming the field and its value) and creates an empty
    cache: every stored tensor below with 0 along its token (or key-group) axis, dim 2.

    What is stored (``n`` = ``quantized_tokens``, ``d`` = ``head_dim``, ``g`` = ``group_size``,
    ``b`` = ``batch``, ``h`` = ``num_kv_heads``):

    * ``k_codes``, ``v_codes``: ``torch.uint8 (b, h, n, ceil(d × bits / 8))``, codes of
      :func:`quantize_keys` / :func:`quantize_values` packed along ``head_dim`` by
      :func:`pack_codes`;
    * ``k_scale``, ``k_zero_point``: ``torch.float32 (b, h, n // g, d)`` (per channel, groups of
      ``g`` tokens); ``v_scale``, ``v_zero_point``: ``torch.float32 (b, h, n, d // g)``
      (per token, groups of ``g`` channels);
    * ``k_residual``, ``v_residual``: the most recent ``tokens - n`` tokens in ``dtype``,
      ``(b, h, tokens - n, d)``.

    The aging rule, after every call: ``n = g × floor(max(tokens - residual_length, 0) / g)``.
    The residual holds at least ``residual_length`` tokens (all of them while there are fewer),
    and fewer than ``residual_length + g``; when it would reach that, its oldest ``g`` tokens are
    quantized as one group. Tokens are converted to ``dtype`` when they arrive, and a group is
    quantized from those stored values, so a token's codes do not depend on how it arrived:
    ``prefill`` of ``T`` tokens stores exactly what ``prefill`` of the first one and ``T - 1``
    ``append`` calls store.

    The append contract (Lab 02's, for one layer):

    * ``prefill(k, v)`` writes the prompt, ``(batch, num_kv_heads, T, head_dim)`` with ``T >=
      1``, into an empty cache;
    * ``append(k, v)`` writes one decode step, ``(batch, num_kv_heads, 1, head_dim)``, into a
      prefilled cache;
    * both return every cached ``(keys, values)`` so far, ``(batch, num_kv_heads, tokens,
      head_dim)`` in ``dtype``: the dequantized old tokens (:func:`dequantize_groups` in float32,
      then converted to ``dtype``) followed by the residual, exactly as stored.

    Anything else raises ``ValueError`` and leaves the cache as it was: ``k`` or ``v`` invalid
    as in :func:`check_kv` [as there], of different or wrong shapes [the shape received], more
    than one token in ``append`` [the shape received], a ``prefill`` into a cache that holds
    tokens or an ``append`` into an empty one [the number of tokens held, 0 for an empty one].

    Example: ``QuantizedKVCache(batch=1, num_kv_heads=8, head_dim=128, bits=2, group_size=32,
    residual_length=128)`` after a prefill of 200 tokens holds ``n = 64`` quantized tokens and
    136 in the residual: ``nbytes = 2 × 16,384`` (codes) ``+ 2 × 8,192`` (key scales and zero
    points) ``+ 2 × 8,192`` (value scales and zero points) ``+ 2 × 278,528`` (bf16 residual)
    ``= 622,592`` bytes, against ``819,200`` in bf16.
    """

    batch: int
    num_kv_heads: int
    head_dim: int
    bits: int = 2
    group_size: int = DEFAULT_GROUP_SIZE
    residual_length: int = 128
    dtype: torch.dtype = torch.bfloat16
    k_codes: Tensor = field(init=False, repr=False)
    k_scale: Tensor = field(init=False, repr=False)
    k_zero_point: Tensor = field(init=False, repr=False)
    v_codes: Tensor = field(init=False, repr=False)
    v_scale: Tensor = field(init=False, repr=False)
    v_zero_point: Tensor = field(init=False, repr=False)
    k_residual: Tensor = field(init=False, repr=False)
    v_residual: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("batch", "num_kv_heads", "head_dim", "group_size"):
            check_int(getattr(self, name), name, 1)
        check_int(self.residual_length, "residual_length", 0)
        quant_max(self.bits)
        if self.head_dim % self.group_size:
            raise ValueError(f"head_dim={self.head_dim} is not a multiple of group_size={self.group_size}: values are grouped along head_dim")
        if self.dtype not in KV_DTYPES:
            raise ValueError(f"dtype={self.dtype!r} must be one of {KV_DTYPES}")
        b, h, d, g = self.batch, self.num_kv_heads, self.head_dim, self.group_size
        packed = math.ceil(d * self.bits / 8)
        self.k_codes = torch.zeros(b, h, 0, packed, dtype=torch.uint8)  # (b, h, n, packed): n grows by whole groups
        self.v_codes = torch.zeros(b, h, 0, packed, dtype=torch.uint8)
        self.k_scale = torch.zeros(b, h, 0, d)  # (b, h, n // g, d): per channel
        self.k_zero_point = torch.zeros(b, h, 0, d)
        self.v_scale = torch.zeros(b, h, 0, d // g)  # (b, h, n, d // g): per token
        self.v_zero_point = torch.zeros(b, h, 0, d // g)
        self.k_residual = torch.zeros(b, h, 0, d, dtype=self.dtype)  # (b, h, tokens - n, d)
        self.v_residual = torch.zeros(b, h, 0, d, dtype=self.dtype)

    @property
    def quantized_tokens(self) -> int:
        """Tokens held as codes (``n``): the length of ``k_codes`` along dim 2."""
        return self.k_codes.shape[2]

    @property
    def tokens(self) -> int:
        """Every token held: the quantized ones and the residual."""
        return self.quantized_tokens + self.k_residual.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes stored (an ``int``): codes, scales, zero points and residual, from the tensors themselves."""
        stored = (self.k_codes, self.k_scale, self.k_zero_point, self.v_codes, self.v_scale, self.v_zero_point, self.k_residual, self.v_residual)
        return sum(tensor.nbytes for tensor in stored)

    def prefill(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write the prompt's ``k``, ``v`` ``(batch, num_kv_heads, T, head_dim)`` into an empty cache,
        quantize its oldest whole groups by the aging rule, and return every cached ``(keys, values)``."""
        _check_step(self, "prefill", k, v, one_token=False)
        if self.tokens:
            raise ValueError(f"prefill: the cache already holds {self.tokens} tokens; prefill writes the prompt once, decode steps use append")
        self.k_residual, self.v_residual = k.to(self.dtype).clone(), v.to(self.dtype).clone()
        _age(self)
        return _contents(self)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write one decode step's ``k``, ``v`` ``(batch, num_kv_heads, 1, head_dim)`` after the cached
        tokens, quantize a group that ages out, and return every cached ``(keys, values)``."""
        _check_step(self, "append", k, v, one_token=True)
        if not self.tokens:
            raise ValueError("append: the cache holds 0 tokens; write the prompt with prefill first")
        self.k_residual = torch.cat([self.k_residual, k.to(self.dtype)], dim=2)
        self.v_residual = torch.cat([self.v_residual, v.to(self.dtype)], dim=2)
        _age(self)
        return _contents(self)


def fp8_scale(x: Tensor, dtype: torch.dtype = torch.float8_e4m3fn) -> float:
    """The per-tensor FP8 scale of ``x``: ``max(amax(|x|) / FP8_MAX[dtype], SCALE_EPS)``.

    In float32, returned as a Python ``float`` holding that float32 value exactly. ``amax`` is
    the largest ``|x|``: a tensor whose extreme value is negative needs it as much as a positive
    one. Dividing by the scale maps ``±amax`` onto the dtype's largest finite value, 448 for
    ``torch.float8_e4m3fn`` and 57344 for ``torch.float8_e5m2``.

    Errors (``ValueError``; brackets: what its message must contain): ``x`` invalid
    (:func:`check_kv`) [as there]; ``dtype`` not a key of ``FP8_MAX`` [the dtype].

    Example: ``x = [[-896.0, 3.0], [0.5, 100.0]]`` -> ``2.0`` (e4m3fn: ``896 / 448``),
    ``0.015625`` (e5m2: ``896 / 57344``).
    """
    check_kv(x, "x")
    if dtype not in FP8_MAX:
        raise ValueError(f"dtype={dtype!r} is not an FP8 dtype of this lab: expected one of {tuple(FP8_MAX)}")
    amax = x.float().abs().amax()
    return (amax / FP8_MAX[dtype]).clamp(min=SCALE_EPS).item()


def quantize_fp8(x: Tensor, scale: float = 1.0, dtype: torch.dtype = torch.float8_e4m3fn) -> Tensor:
    """``x / scale`` in float32, clamped to ``±FP8_MAX[dtype]``, cast to ``dtype`` (round to nearest even).

    Returns a ``dtype`` tensor of ``x``'s shape; :func:`dequantize_fp8` multiplies it back. The
    clamp saturates values outside the range instead of letting the cast decide: PyTorch 2.13's
    CPU cast happens to saturate ``float8_e4m3fn`` (no Inf in that format) but sends
    ``float8_e5m2`` overflow to Inf, and a GPU cast may give NaN.

    With ``scale = 1.0`` (vLLM's default when no scale was calibrated) every ``|x| > 448``
    saturates at e4m3fn: a key of 1000 comes back as 448. Below the range, the 3 mantissa bits of
    e4m3fn keep every normal value within 2^-4 of itself (relative), the 2 of e5m2 within 2^-3;
    values under the smallest normal (2^-6 × scale, 2^-14 × scale) lose more.

    Errors (``ValueError``; brackets: what its message must contain): ``x`` invalid
    (:func:`check_kv`) [as there]; ``scale`` not a positive finite ``int`` or ``float``, or a
    ``bool`` [its value]; ``dtype`` not a key of ``FP8_MAX`` [the dtype].

    Example: ``x = [1000.0, -500.0, 3.0, 0.3]``, ``scale=1.0``, e4m3fn -> ``[448, -448, 3,
    0.3125]``; ``scale=2.0`` -> ``[448, -256, 1.5, 0.15625]`` (500 / 2 = 250 rounds to 256, the
    nearest e4m3fn value: steps are 16 wide there).
    """
    check_kv(x, "x")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale={scale!r} must be a positive finite number")
    if dtype not in FP8_MAX:
        raise ValueError(f"dtype={dtype!r} is not an FP8 dtype of this lab: expected one of {tuple(FP8_MAX)}")
    limit = FP8_MAX[dtype]
    return (x.float() / torch.tensor(scale, dtype=torch.float32)).clamp(-limit, limit).to(dtype)


def attention_score_error(q: Tensor, k: Tensor, k_hat: Tensor) -> float:
    """How far ``k_hat`` (quantized keys) moves attention: the mean total-variation distance.

    In float32: ``P = softmax(q @ k^T / sqrt(head_dim))`` and ``P_hat`` the same with ``k_hat``
    (softmax over the keys, no mask: a decode step attends to every cached token). For every
    query row, ``0.5 × sum_j |P - P_hat|`` is the probability mass that moved (0: identical
    distributions, 1: disjoint); the result is its mean over all query rows (every leading index
    and every query), a Python ``float``.

    ``q`` is ``(..., queries, head_dim)``; ``k`` and ``k_hat`` ``(..., keys, head_dim)`` with the
    same leading dims as ``q``.

    Errors (``ValueError``; brackets: what its message must contain): ``q``, ``k`` or ``k_hat``
    invalid (:func:`check_kv`, at least 2-D) [as there]; ``k_hat`` not ``k``'s shape, or ``q``
    with other leading dims or another ``head_dim`` [the shapes].

    Example: ``q = [[2.0, 0.0, 0.0, 0.0]]``, ``k = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0,
    0.0]]``, ``k_hat = [[2 ln 3, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]``: scores ``[0, 0]`` and
    ``[ln 9, 0]``, ``P = [0.5, 0.5]``, ``P_hat = [0.9, 0.1]``, error ``0.4`` (``0.3999999761581421``
    in float32).
    """
    for name, tensor in (("q", q), ("k", k), ("k_hat", k_hat)):
        check_kv(tensor, name, min_dim=2)
    if k_hat.shape != k.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)} and k_hat {tuple(k_hat.shape)} do not fit: k_hat must have k's shape, "
            "and q the same leading dims and head_dim as k"
        )
    qf = q.float()
    scale = 1.0 / math.sqrt(q.shape[-1])
    exact = torch.softmax(qf @ k.float().transpose(-2, -1) * scale, dim=-1)  # (..., queries, keys)
    approx = torch.softmax(qf @ k_hat.float().transpose(-2, -1) * scale, dim=-1)
    moved = 0.5 * (exact - approx).abs().sum(dim=-1)  # (..., queries): total-variation distance per query
    return moved.mean().item()


def quantized_kv_bytes(
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    tokens: int,
    batch: int = 1,
    bits: int = 2,
    group_size: int = DEFAULT_GROUP_SIZE,
    residual_length: int = 128,
) -> int:
    """Bytes of a KIVI-quantized KV cache holding ``tokens`` tokens per sequence, as stored.

    Per layer, KV head and sequence, with ``n = group_size × floor(max(tokens -
    residual_length, 0) / group_size)`` quantized tokens (the aging rule of
    :class:`QuantizedKVCache`) and ``tokens - n`` in the residual:

    * codes: ``2 × n × ceil(head_dim × bits / 8)`` bytes (keys and values, packed);
    * key scales and zero points: ``2 × (n / group_size) × head_dim × METADATA_BYTES``;
    * value scales and zero points: ``2 × n × (head_dim / group_size) × METADATA_BYTES``;
    * residual: ``2 × (tokens - n) × head_dim × RESIDUAL_BYTES`` (bf16 keys and values).

    Times ``num_layers × num_kv_heads × batch``; an ``int``. The bf16 cache it replaces holds
    ``2 × num_layers × num_kv_heads × head_dim × 2 × tokens × batch`` bytes. Quantizing the
    *weights* changes neither number: the cache is its own target.

    Errors (``ValueError`` naming the argument and its value): ``num_layers``,
    ``num_kv_heads``, ``head_dim``, ``tokens``, ``batch``, ``group_size`` not an ``int >= 1``
    (a ``bool`` is not an ``int``); ``residual_length`` not an ``int >= 0``; ``bits`` (see
    :func:`quant_max`); ``head_dim`` not a multiple of ``group_size`` [both numbers].

    Example: Llama-3-8B (32 layers, 8 KV heads, head_dim 128) at 8192 tokens, 2 bits, groups of
    32, residual 128: ``n = 8064`` and ``281,018,368`` bytes, against ``1,073,741,824`` in
    bf16 (3.8× smaller; 792,723,456 bytes saved).
    """
    for name, value in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim), ("tokens", tokens),
                        ("batch", batch), ("group_size", group_size)):
        check_int(value, name, 1)
    check_int(residual_length, "residual_length", 0)
    quant_max(bits)
    if head_dim % group_size:
        raise ValueError(f"head_dim={head_dim} is not a multiple of group_size={group_size}: values are grouped along head_dim")
    n = group_size * (max(tokens - residual_length, 0) // group_size)
    codes = 2 * n * math.ceil(head_dim * bits / 8)
    key_metadata = 2 * (n // group_size) * head_dim * METADATA_BYTES
    value_metadata = 2 * n * (head_dim // group_size) * METADATA_BYTES
    residual = 2 * (tokens - n) * head_dim * RESIDUAL_BYTES
    return num_layers * num_kv_heads * batch * (codes + key_metadata + value_metadata + residual)
