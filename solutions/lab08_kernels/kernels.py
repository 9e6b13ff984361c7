"""Lab 08 — kernel support and speedups: weight-only int8 and int4 linears, the int8 GEMM, bytes per call.

A quantized weight is smaller at rest. Whether a layer that uses it is *faster* depends on the
kernel that multiplies by it. Batch-1 decode is memory-bound: a linear layer's time is the bytes
it moves over the memory bandwidth, and an int8 weight moves half the bytes of a bf16 one — but
only if a kernel reads the int8 codes and widens them in registers. A dequantize-then-matmul
implementation first writes a full-precision copy of the weight and then reads it back: more
bytes than the bf16 layer it replaces, and slower. W8A8 (int8 activations × int8 weights) is the
other path: at large batch the int8 tensor cores do twice the bf16 work per second, but
quantizing the activations costs a pass over them on every call, and ``torch._int_mm`` has shape
rules that batch-1 decode does not meet on a GPU.

Conventions of the whole lab (the checks test each one):

* an ``nn.Linear`` weight is ``[out_features, in_features]``, written ``(N, K)``; activations are
  ``x (..., K)`` with any leading dims (``M`` tokens in all), float32, float16 or bfloat16, and
  every linear returns ``y (..., N)`` in ``x``'s dtype;
* ``y ≈ x @ Wᵀ`` where ``W`` is the dequantized weight; the sums are accumulated in float32 (or
  exactly in int32), and the output is rounded to ``x``'s dtype at the end;
* int8 weights are ``torch.int8`` codes with one scale per output row, ``W[n] = qweight[n] ×
  scale[n]``; int4 weights are unsigned 4-bit codes, two per byte, with a scale and an integer
  zero point per group of ``group_size`` inputs, ``W = (code - zero_point) × scale``;
* shapes and dtypes are validated (``ValueError`` naming the numbers), the data never is: a
  kernel does not read its inputs twice to look for NaN, and on a GPU such a check would stall
  the stream.

Work through the exercises in order (``infralens hint lab08`` when stuck):

1. ``int8_weight_only_linear``  int8 codes × a per-channel scale, activations in floating point
2. ``int4_weight_only_linear``  packed 4-bit codes, per-group scales and zero points
3. ``int8_dynamic_linear``      W8A8: per-token int8 activations, exact int32 sums (``torch._int_mm``)
4. ``linear_traffic``           the bytes one call moves: stored weight, activations, and the
                                full-precision copy a dequantize-then-matmul path materializes

Run ``pytest --lab 08`` (or ``pytest checks/lab08_kernels``) to check your work;
``python benchmarks/bench_kernels.py`` times every path on your machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------------------------
# Given: vocabulary and helpers of the lab (not exercises)
# --------------------------------------------------------------------------------------------

ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Dtypes of activations (and of scales): what a linear layer computes in."""

QUANT_MAX = 127
"""Largest int8 activation code of :func:`int8_dynamic_linear`: codes in ``[-127, 127]``."""

SCALE_EPS = torch.finfo(torch.float32).tiny
"""Floor of a dynamic activation scale, 2^-126: an all-zero token gets this scale instead of 0,
so its codes are 0 instead of 0 / 0 = NaN."""

WEIGHT_FORMATS = ("dense", "int8", "int4")
"""How :func:`linear_traffic` finds a weight stored: ``dense`` (in the compute dtype), ``int8``
(codes and a scale per output row), ``int4`` (packed codes, a scale and a zero point per group)."""

ZERO_POINT_BYTES = 1
"""Bytes of one stored int4 zero point: ``torch.uint8``."""


def check_param(tensor: object, name: str, dtypes: tuple[torch.dtype, ...], shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``tensor`` is a tensor of one of ``dtypes`` and exactly ``shape``.

    The message names ``name`` and both the expected and the actual dtype or shape, e.g.
    ``"scale has shape (3, 1), expected (3,)"``.
    """
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in dtypes:
        raise ValueError(f"{name} has dtype {tensor.dtype}, expected one of {dtypes}")
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")


def check_weight(tensor: object, name: str, dtype: torch.dtype) -> tuple[int, int]:
    """Raise ``ValueError`` unless ``tensor`` is a 2-D ``dtype`` tensor with no empty dim; return its shape.

    The message names ``name`` and its dtype or shape, e.g. ``"qweight has dtype torch.uint8,
    expected torch.int8"``.
    """
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype != dtype:
        raise ValueError(f"{name} has dtype {tensor.dtype}, expected {dtype}")
    if tensor.dim() != 2 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (out_features, ...) tensor, got shape {tuple(tensor.shape)}")
    return tensor.shape[0], tensor.shape[1]


def check_activations(x: object, in_features: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a non-empty tensor of a dtype in ``ACTIVATION_DTYPES``
    whose last dim is ``in_features``; the message names the dtype, or ``x``'s shape and
    ``in_features``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"x has dtype {x.dtype}; activations must be one of {ACTIVATION_DTYPES}")
    if x.dim() == 0 or x.numel() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., {in_features}): its last dim must be the weight's in_features, {in_features}")


def pack_int4(codes: Tensor) -> Tensor:
    """Pack unsigned 4-bit codes ``uint8 (N, K)`` in ``[0, 15]``, ``K`` even, into ``uint8 (N, K // 2)``.

    Byte ``j`` of a row holds element ``2j`` in its **low** nibble (bits 0-3) and element ``2j + 1``
    in its **high** nibble (bits 4-7): ``byte = codes[2j] | codes[2j + 1] << 4``, the layout of
    Lab 03's ``pack_int4``. Example: ``[[3, 12, 0, 15]]`` -> ``[[195, 240]]`` (``3 + 12 × 16``,
    ``0 + 15 × 16``).
    """
    if codes.dtype != torch.uint8 or codes.dim() != 2 or codes.shape[1] % 2:
        raise ValueError(f"codes must be uint8 (N, K) with K even, got {codes.dtype} {tuple(codes.shape)}")
    if int(codes.max()) > 15:
        raise ValueError(f"4-bit codes are 0..15, got {int(codes.max())}")
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def int_mm_applies(a: Tensor, b: Tensor) -> bool:
    """True when ``torch._int_mm(a, b.t())`` runs for int8 ``a (M, K)`` and ``b (N, K)`` where they live.

    ``torch._int_mm`` multiplies 2-D int8 matrices into exact int32 sums. On CPU it takes any
    shapes (recent PyTorch; whether it is *fast* depends on the CPU: without VNNI it can be far
    slower than a float32 matmul — run the benchmark). On CUDA (cuBLASLt's int8 GEMM) it needs
    ``M > 16`` and ``K`` and ``N`` positive multiples of 8, and ``b.t()`` of a row-major ``b`` is
    the column-major operand it wants: batch-1 decode never qualifies.
    """
    if not hasattr(torch, "_int_mm") or a.dim() != 2 or b.dim() != 2 or a.device != b.device:
        return False
    (m, k), n = a.shape, b.shape[0]
    if a.device.type == "cpu":
        return True
    return a.device.type == "cuda" and m > 16 and k > 0 and k % 8 == 0 and n > 0 and n % 8 == 0


@dataclass(frozen=True)
class LinearTraffic:
    """The bytes one call of a linear layer moves through memory (see :func:`linear_traffic`)."""

    weight_bytes: int
    """The weight as stored: codes, scales and zero points."""
    activation_bytes: int
    """``x`` read and ``y`` written."""
    materialized_bytes: int
    """The full-precision weight a dequantize-then-matmul path writes (0 for a fused kernel or a dense weight)."""

    @property
    def total_bytes(self) -> int:
        """Everything read or written: a materialized weight is written once and read back by the matmul."""
        return self.weight_bytes + self.activation_bytes + 2 * self.materialized_bytes


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def int8_weight_only_linear(x: Tensor, qweight: Tensor, scale: Tensor) -> Tensor:
    """``x @ (qweight × scale)ᵀ`` for int8 codes with one scale per output channel (gpt-fast's ``WeightOnlyInt8Linear``).

    ``qweight`` is ``torch.int8 (N, K)``, ``scale`` is ``(N,)`` in a dtype of
    ``ACTIVATION_DTYPES``, ``x`` is ``(..., K)`` in one of them too. Returns ``(..., N)`` in
    ``x``'s dtype: ``y[..., n] = scale[n] × Σ_k x[..., k] × qweight[n, k]``. The scale is constant
    along ``k``, so it factors out of the sum: multiply the sums, never the weight. Compute in
    float32 and round to ``x``'s dtype once, at the end: the unscaled sums of int8 codes overflow
    float16 (127 × 1024 inputs of magnitude 1 is 130,048 > 65,504), so the sum must not be rounded
    to ``x``'s dtype before the scale is applied. (gpt-fast does round first, in bfloat16, whose
    range is float32's.)

    An eager version converts the whole weight first (``qweight.float()``): correct, but it
    materializes the (N, K) copy that a fused kernel avoids by widening codes in registers.
    (PyTorch's private CPU kernel ``torch._weight_int8pack_mm`` is one; it checks none of its
    shape rules — in 2.13 on an AVX2 CPU an ``in_features`` that is not a multiple of 8 gives
    wrong sums — so the benchmark times it on shapes it handles, and your function need not use it.)

    Errors (``ValueError``; brackets: what its message must contain): ``qweight`` not int8 [its
    dtype] or not non-empty 2-D [its shape]; ``x`` of another dtype [the dtype] or a last dim
    that is not ``K`` [x's shape and K]; ``scale`` not ``(N,)`` [both shapes] or not a dtype of
    ``ACTIVATION_DTYPES`` [its dtype]. Data is never inspected.

    Example: ``x = [[2.0, 1.0, 0.5]]``, ``qweight = [[1, -2, 127], [0, 64, -127]]``, ``scale =
    [0.5, 0.25]`` -> ``[[31.75, 0.125]]`` (``(2 - 2 + 63.5) × 0.5`` and ``(64 - 63.5) × 0.25``).
    """
    out_features, in_features = check_weight(qweight, "qweight", torch.int8)
    check_activations(x, in_features)
    check_param(scale, "scale", ACTIVATION_DTYPES, (out_features,))
    x2d = x.reshape(-1, in_features).float()  # (M, K): every leading dim is a token
    # float32 sums of the widened codes; the per-channel scale multiplies the (M, N) sums, never
    # the (N, K) weight; one rounding to x's dtype at the end.
    y = F.linear(x2d, qweight.float()) * scale.float()
    return y.to(x.dtype).reshape(*x.shape[:-1], out_features)


def int4_weight_only_linear(x: Tensor, packed: Tensor, scale: Tensor, zero_point: Tensor, group_size: int) -> Tensor:
    """``x @ Wᵀ`` for a 4-bit weight with a scale and a zero point per group: the int4 weight-only linear.

    The format (the convention of this lab, Lab 03's packing and asymmetric zero point):

    * ``packed`` is ``torch.uint8 (N, K // 2)``: byte ``j`` of row ``n`` holds the code of input
      ``2j`` in its low nibble and of input ``2j + 1`` in its high nibble (see :func:`pack_int4`);
      codes are unsigned, 0..15;
    * groups of ``group_size`` consecutive inputs of a row share a scale and a zero point:
      ``scale`` is ``(N, K // group_size)`` in a dtype of ``ACTIVATION_DTYPES``, ``zero_point`` is
      ``torch.uint8`` of the same shape, an integer code (0..15) that stands for 0.0;
    * ``W[n, k] = (code[n, k] - zero_point[n, k // group_size]) × scale[n, k // group_size]``.

    Returns ``(..., N)`` in ``x``'s dtype, computed in float32 (``|code - zero_point| <= 15`` has 4
    bits, so with 16-bit scales the dequantized weight is exact in float32) and rounded once.
    Unlike int8's per-row scale, a per-group scale changes along ``k``: it cannot be pulled out of
    the whole sum, so the weight is dequantized group by group. A fused kernel (tinygemm, Marlin)
    does that in registers; an eager version materializes the (N, K) float weight.

    Errors (``ValueError``; brackets: what its message must contain): ``packed`` not uint8 [its
    dtype] or not non-empty 2-D [its shape]; ``x`` of another dtype [the dtype] or a last dim
    that is not ``K = 2 × packed.shape[1]`` [x's shape and K]; ``group_size`` not an ``int`` (a
    ``bool`` is not) ``>= 1`` dividing ``K`` [group_size and K]; ``scale`` not ``(N, K //
    group_size)`` [both shapes] or of another dtype [its dtype]; ``zero_point`` not uint8 of that
    shape [its dtype or both shapes]. Data is never inspected.

    Example: ``packed = [[195, 240]]`` (codes ``[3, 12, 0, 15]``), ``scale = [[0.5, 0.25]]``,
    ``zero_point = [[4, 8]]``, ``group_size = 2``: ``W = [[-0.5, 4.0, -2.0, 1.75]]``; with
    ``x = [[1.0, 2.0, 3.0, 4.0]]``, ``y = [[8.5]]`` (``-0.5 + 8 - 6 + 7``).
    """
    out_features, packed_width = check_weight(packed, "packed", torch.uint8)
    in_features = 2 * packed_width  # two codes per byte
    check_activations(x, in_features)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or in_features % group_size:
        raise ValueError(f"group_size={group_size!r} must be an int >= 1 dividing in_features K={in_features}")
    groups = in_features // group_size
    check_param(scale, "scale", ACTIVATION_DTYPES, (out_features, groups))
    check_param(zero_point, "zero_point", (torch.uint8,), (out_features, groups))
    # Unpack: element 2j is the low nibble of byte j, element 2j + 1 the high one; stacking them
    # on a last axis and flattening interleaves them in that order.
    codes = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(out_features, groups, group_size)  # (N, G, g)
    # Dequantize group by group: the (N, G, 1) scale and zero point broadcast over each group.
    weight = (codes.float() - zero_point.float().unsqueeze(-1)) * scale.float().unsqueeze(-1)
    y = F.linear(x.reshape(-1, in_features).float(), weight.reshape(out_features, in_features))
    return y.to(x.dtype).reshape(*x.shape[:-1], out_features)


def int8_dynamic_linear(x: Tensor, qweight: Tensor, scale: Tensor) -> Tensor:
    """W8A8: ``x`` quantized per token on the fly, times int8 weights, exact int32 sums, one rescale.

    ``qweight`` is ``torch.int8 (N, K)`` with a per-channel ``scale (N,)`` (a dtype of
    ``ACTIVATION_DTYPES``), as in :func:`int8_weight_only_linear`. In float32, for the ``M`` tokens
    of ``x`` (``x.reshape(-1, K)``):

    1. ``x_scale = max(amax(|x_row|) / QUANT_MAX, SCALE_EPS)``, ``(M, 1)``: one scale per token;
    2. ``x_codes = clamp(round(x / x_scale), -127, 127)`` as ``torch.int8``, ``torch.round``
       (half to even) of a true division;
    3. ``acc``: the int32 ``(M, N)`` sums ``x_codes @ qweight.T``, exact:
       ``torch._int_mm(x_codes, qweight.t())`` where :func:`int_mm_applies` says it runs, else an
       exact path (``(x_codes.double() @ qweight.double().T)``: every partial sum is an integer
       far below 2^53 — never float32, which drops low bits above 2^24);
    4. ``y = acc.float() × x_scale × scale.float()`` (in that order), rounded to ``x``'s dtype,
       shaped ``(..., N)``.

    Both scales factor out of the sum because each is constant along ``k``: the GEMM runs on
    integers only. The price: a pass over ``x`` every call to quantize it, which at batch 1 costs
    more than the int8 GEMM saves.

    Errors (``ValueError``; brackets: what its message must contain): as
    :func:`int8_weight_only_linear`.

    Example: ``x = [[127.0, -62.5, 0.25]]`` (``x_scale = 1.0``; codes ``[127, -62, 0]``: -62.5 is a
    tie and goes to the even -62, 0.25 rounds to 0), ``qweight = [[1, 2, 3], [-127, 0, 127]]``,
    ``scale = [0.5, 2.0]``: ``acc = [[3, -16129]]``, ``y = [[1.5, -32258.0]]`` against the
    unquantized ``[[1.375, -32194.5]]``: each output within ``x_scale / 2 × Σ_k |W[n, k]|``.
    """
    out_features, in_features = check_weight(qweight, "qweight", torch.int8)
    check_activations(x, in_features)
    check_param(scale, "scale", ACTIVATION_DTYPES, (out_features,))
    x2d = x.reshape(-1, in_features).float()  # (M, K)
    x_scale = (x2d.abs().amax(dim=1, keepdim=True) / QUANT_MAX).clamp(min=SCALE_EPS)  # (M, 1)
    x_codes = torch.round(x2d / x_scale).clamp(-QUANT_MAX, QUANT_MAX).to(torch.int8)  # (M, K)
    if int_mm_applies(x_codes, qweight):
        acc = torch._int_mm(x_codes, qweight.t())  # (M, N) int32 on the integer GEMM
    else:
        # Exact: |sum| <= 127 × 128 × K stays an integer far below 2^53 in float64.
        acc = (x_codes.double() @ qweight.double().t()).to(torch.int32)
    y = acc.float() * x_scale * scale.float()  # (M, N): the sums' two scales, in float32
    return y.to(x.dtype).reshape(*x.shape[:-1], out_features)


def linear_traffic(
    tokens: int,
    in_features: int,
    out_features: int,
    weight_format: str,
    dtype: torch.dtype = torch.bfloat16,
    group_size: int = 128,
    fused: bool = True,
) -> LinearTraffic:
    """The bytes one call of a linear layer moves, as a :class:`LinearTraffic` of ints.

    ``M = tokens`` rows of ``x (M, K)`` in ``dtype`` go in, ``y (M, N)`` in ``dtype`` comes out;
    ``e`` is ``dtype``'s size in bytes (2 for bf16). Scales are stored in ``dtype`` too (as gpt-fast
    and torchao store them), int4 zero points as ``uint8`` (``ZERO_POINT_BYTES``):

    * ``weight_bytes``: ``dense`` ``N·K·e``; ``int8`` ``N·K`` codes ``+ N·e`` scales; ``int4``
      ``N·K/2`` packed codes ``+ (N·K/group_size)·(e + 1)`` scales and zero points;
    * ``activation_bytes``: ``M·K·e + M·N·e``;
    * ``materialized_bytes``: the (N, K) weight in ``dtype``, ``N·K·e``, when ``fused`` is False and
      the format is quantized: a dequantize-then-matmul path writes it in full and the matmul reads
      it back. A fused kernel (``fused=True``) widens codes in registers, and a dense weight needs
      no copy: 0 for both.

    ``total_bytes`` adds them up, the copy twice. At batch-1 decode time ≈ bytes / bandwidth: for
    Llama-3-8B's up projection (K = 4096, N = 14336) in bf16, int8 fused moves 2.0× fewer bytes
    than dense, int8 dequantize-then-matmul 2.5× *more*.

    Errors (``ValueError`` naming the argument and its value): ``tokens``, ``in_features``,
    ``out_features``, ``group_size`` not an ``int >= 1`` (a ``bool`` is not an ``int``);
    ``weight_format`` not in ``WEIGHT_FORMATS``; ``dtype`` not in ``ACTIVATION_DTYPES``;
    ``fused`` not a ``bool``; for ``int4``, ``in_features`` odd or not a multiple of
    ``group_size`` [both numbers].

    Example (``tokens=1, in_features=4096, out_features=14336``, bf16): ``dense`` ->
    ``(117440512, 36864, 0)``; ``int8`` fused -> ``(58748928, 36864, 0)``; ``int8`` not fused ->
    ``(58748928, 36864, 117440512)``, ``total_bytes = 293666816``; ``int4`` fused, groups of 128 ->
    ``(30736384, 36864, 0)``.
    """
    for name, value in (("tokens", tokens), ("in_features", in_features), ("out_features", out_features), ("group_size", group_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an int >= 1")
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format={weight_format!r} is not one of {WEIGHT_FORMATS}")
    if dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {ACTIVATION_DTYPES}")
    if not isinstance(fused, bool):
        raise ValueError(f"fused={fused!r} must be a bool")
    if weight_format == "int4" and (in_features % 2 or in_features % group_size):
        raise ValueError(f"in_features={in_features} must be even and a multiple of group_size={group_size} for int4")
    e = torch.empty((), dtype=dtype).element_size()
    n, k = out_features, in_features
    if weight_format == "dense":
        weight = n * k * e
    elif weight_format == "int8":
        weight = n * k + n * e  # one byte per code, one scale per output row
    else:
        weight = n * k // 2 + (n * k // group_size) * (e + ZERO_POINT_BYTES)  # two codes per byte; a scale and a zero point per group
    materialized = 0 if fused or weight_format == "dense" else n * k * e
    return LinearTraffic(weight, tokens * k * e + tokens * n * e, materialized)
