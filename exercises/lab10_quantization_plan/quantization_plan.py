"""Lab 10 — the quantization plan: what is quantized, what it saves, what it risks, and whether it is faster.

A quantization plan is more than a bit width. It names the tensor it changes (``target``), how
values share scales (granularity), what is stored per scale, and therefore how many bytes it
saves *for that target*: weights save model memory, activations save temporary memory, the KV
cache saves per-token serving memory. Each target puts error in a different place (``risk``),
and only a kernel that reads the compressed format turns saved bytes into speed.

Work through the exercises in order (``infralens hint lab10`` when stuck):

1. ``Workload``           validate a serving workload
2. ``QuantizationPlan``   validate a plan; name its granularity
3. ``quantized_bytes``    bytes stored for one tensor: codes + scales + zero points
4. ``saved_memory``       bytes a plan saves against bf16, for its own target only
5. ``risk``               where the error enters, how it acts, how to mitigate it
6. ``describe``           one line that says far more than "int4"
7. ``kernel_path``        can this backend turn the saving into speed?
8. ``compare_plans``      several plans side by side

Run ``pytest checks/lab10_quantization_plan`` (or ``pytest --lab 10``) to check your work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from infralens.models import ModelConfig

# --------------------------------------------------------------------------------------------
# Given: vocabulary and data of the lab (not exercises)
# --------------------------------------------------------------------------------------------


class Target(str, Enum):
    """Which tensor a plan quantizes."""

    WEIGHTS = "weights"
    ACTIVATIONS = "activations"
    KV_CACHE = "kv_cache"


PER_TENSOR = -1
"""``group_size=PER_TENSOR``: one scale for a whole tensor (a weight matrix, one layer's K or V cache)."""

SUPPORTED_BITS = (2, 4, 8)
SUPPORTED_SCALE_BITS = (8, 16, 32)
SUPPORTED_ZERO_POINT_BITS = (0, 8, 16, 32)
NUMBER_FORMATS = ("int", "fp8")
BF16_BYTES = 2
SEVERITIES = ("low", "medium", "high")


class ErrorSite(str, Enum):
    """Where quantization error enters the forward pass."""

    LINEAR_WEIGHTS = "the weight matrices of the linear layers, read by every matmul for every token"
    LINEAR_INPUTS = "the inputs of the linear layers, quantized again for every token at run time"
    ATTENTION_CACHE = "the cached keys and values that every later attention step reads back"
    EMBEDDING_TABLE = "the token embedding table looked up once per token"
    NORM_STATISTICS = "the mean and variance statistics of the normalization layers"


class Mechanism(str, Enum):
    """How the error turns into changed model behaviour."""

    FIXED_ROUNDING = "rounding error is baked into the weights once and reused by every token and every request"
    OUTLIER_CLIPPING = "a few outlier channels stretch the scale, so a calibrated range either clips them or wastes precision on all the others"
    SCORE_DISTORTION = "key error shifts q·k scores that softmax amplifies, value error mixes into every later output, and both accumulate with context length"
    RANGE_OVERFLOW = "values beyond the format's largest number overflow to infinity"


class Mitigation(str, Enum):
    """The usual way to bring the error back down."""

    SMALLER_GROUPS = "use smaller groups (e.g. 128 along in_features) or error-compensating methods such as GPTQ or AWQ"
    TAME_OUTLIERS = "use per-token dynamic scales, migrate outliers into the weights (SmoothQuant), or keep outlier features in 16-bit (LLM.int8())"
    PROTECT_KEYS = "quantize keys per channel, keep the most recent tokens in full precision (KIVI), or use FP8 with calibrated scales"
    LARGER_BATCH = "serve larger batches so each request's error averages out"


@dataclass(frozen=True)
class Kernel:
    """A backend kernel that consumes one quantized format of one target.

    ``reads_compressed`` is True when the kernel computes from the quantized codes directly, so the
    bytes saved are bytes not moved (speed). False means it dequantizes to bf16 first: the saving
    is memory capacity only, and the extra dequantization costs time.
    """

    backend: str
    name: str
    target: Target
    fmt: str
    reads_compressed: bool


# Which backend ships a kernel for which format (as documented in late 2025; backends change
# fast, so check each project's current documentation before relying on a row).
KERNEL_SUPPORT: tuple[Kernel, ...] = (
    Kernel("vLLM", "Marlin mixed-precision GEMM (GPTQ/AWQ int4)", Target.WEIGHTS, "int4", True),
    Kernel("vLLM", "Marlin mixed-precision GEMM (GPTQ int8)", Target.WEIGHTS, "int8", True),
    Kernel("vLLM", "CUTLASS W8A8 int8 scaled GEMM", Target.ACTIVATIONS, "int8", True),
    Kernel("vLLM", "CUTLASS FP8 scaled GEMM", Target.ACTIVATIONS, "fp8", True),
    Kernel("vLLM", "FP8 KV cache in FlashAttention / FlashInfer", Target.KV_CACHE, "fp8", True),
    Kernel("torchao", "int8 weight-only mm (int8 × bf16)", Target.WEIGHTS, "int8", True),
    Kernel("torchao", "tinygemm int4 weight-only mm", Target.WEIGHTS, "int4", True),
    Kernel("torchao", "torch._int_mm for dynamic int8 activations", Target.ACTIVATIONS, "int8", True),
    Kernel("torchao", "torch._scaled_mm for FP8 activations", Target.ACTIVATIONS, "fp8", True),
    Kernel("transformers", "QuantizedCache (int4 KV, dequantized before attention)", Target.KV_CACHE, "int4", False),
    Kernel("transformers", "QuantizedCache (int2 KV, dequantized before attention)", Target.KV_CACHE, "int2", False),
    Kernel("llama.cpp", "Q8_0 matmul kernels", Target.WEIGHTS, "int8", True),
    Kernel("llama.cpp", "Q4_0 matmul kernels", Target.WEIGHTS, "int4", True),
    Kernel("llama.cpp", "q8_0 KV cache read by flash attention", Target.KV_CACHE, "int8", True),
)
BACKENDS = ("vLLM", "torchao", "transformers", "llama.cpp")

# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """How much is being served at once: ``batch`` sequences of ``context_tokens`` tokens each.

    Both fields must be ``int`` (not ``bool``, not ``float``) and at least 1; anything else raises
    ``ValueError`` with a message that names the field and the bad value, e.g.
    ``Workload(batch=-2, context_tokens=4096)`` -> ``ValueError("Workload.batch must be at least 1, got -2")``.
    """

    batch: int
    context_tokens: int

    def __post_init__(self) -> None:
        # TODO: validate both fields as the class docstring says. isinstance(True, int) is True,
        #       so reject bool explicitly. Put the bad value in the message.
        raise NotImplementedError("Workload.__post_init__: validate batch and context_tokens")

    @property
    def tokens(self) -> int:
        """Tokens held across the batch: ``batch × context_tokens``."""
        return self.batch * self.context_tokens


@dataclass(frozen=True)
class QuantizationPlan:
    """What to quantize and how it is stored.

    target           ``Target.WEIGHTS``, ``Target.ACTIVATIONS`` or ``Target.KV_CACHE``
    bits             bits per code: one of ``SUPPORTED_BITS`` (2, 4, 8)
    group_size       ``None``: one scale per row. A row is an output channel of a weight
                     ``[out_features, in_features]`` (per-channel), one token of an activation
                     ``[tokens, features]`` (per-token), one head's ``head_dim`` vector of K or of
                     V (per-token-per-head). ``PER_TENSOR`` (-1): one scale per tensor.
                     A positive ``g``: groups of ``g`` consecutive values along each row.
    scale_bits       bits stored per scale: one of ``SUPPORTED_SCALE_BITS`` (8, 16, 32; 16 = fp16
                     scales). No other width is stored, not even a multiple of 8 such as 24 or 64.
    zero_point_bits  bits stored per zero point: one of ``SUPPORTED_ZERO_POINT_BITS``: 0
                     (symmetric, none stored) or 8, 16, 32
    number_format    ``"int"`` (integer codes) or ``"fp8"`` (8-bit floats: bits must be 8 and
                     zero_point_bits 0)

    ``bits``, ``scale_bits``, ``zero_point_bits`` and a numeric ``group_size`` are ``int``: a
    ``bool`` (``True`` is not 1 bit or a group of 1) or a ``float`` (``8.0``) is rejected.

    Every rule above is checked in ``__post_init__``: a violation raises ``ValueError`` whose
    message names the bad value and, for ``bits``, ``scale_bits``, ``zero_point_bits`` and
    ``number_format``, the allowed ones, e.g. ``QuantizationPlan(Target.WEIGHTS, bits=8,
    scale_bits=24)`` -> ``ValueError("scale_bits=24 is not supported: use one of (8, 16, 32)")``.
    Whether a positive group size divides a row is only known once a model is given:
    ``quantized_bytes`` checks that.
    """

    target: Target
    bits: int
    group_size: int | None = None
    scale_bits: int = 16
    zero_point_bits: int = 0
    number_format: str = "int"

    def __post_init__(self) -> None:
        # TODO: check target (a Target), bits, number_format (and the fp8 rules), group_size
        #       (None, PER_TENSOR or >= 1), scale_bits, zero_point_bits. True == 1 and 8.0 == 8,
        #       so test type(x) is int before looking x up in its SUPPORTED_* tuple.
        raise NotImplementedError("QuantizationPlan.__post_init__: validate the plan")

    @property
    def fmt(self) -> str:
        """``"int4"``, ``"int8"``, ``"fp8"``: the name kernels are listed under in ``KERNEL_SUPPORT``."""
        return "fp8" if self.number_format == "fp8" else f"int{self.bits}"

    @property
    def granularity(self) -> str:
        """How values share scales, in words.

        ``"per-tensor"`` for ``PER_TENSOR``; ``"group-128"`` for ``group_size=128``; for ``None``
        the row depends on the target: ``"per-channel"`` (weights), ``"per-token"``
        (activations), ``"per-token-per-head"`` (KV cache).
        """
        # TODO: return the words above.
        raise NotImplementedError("QuantizationPlan.granularity")


def quantized_bytes(plan: QuantizationPlan, rows: int, row_length: int) -> int:
    """Bytes stored for one tensor of shape ``[rows, row_length]`` quantized with ``plan``.

    Stored = codes + scales + zero points:

    * codes: each row is packed on its own, starting on a byte boundary:
      ``rows × ceil(row_length × bits / 8)`` bytes (a row of 5 two-bit codes takes 2 bytes);
    * scale groups: 1 for ``PER_TENSOR``, ``rows`` for ``group_size=None``,
      ``rows × row_length / group_size`` for a group size;
    * each scale group stores ``scale_bits + zero_point_bits`` bits.

    ``rows`` and ``row_length`` are ``int`` (not ``bool``, not ``float``) and at least 1; anything
    else raises ``ValueError`` naming the argument and its value. A positive ``group_size`` that
    does not divide ``row_length`` raises ``ValueError`` naming both numbers. The result is an
    ``int``: bytes are whole.

    Example: ``quantized_bytes(QuantizationPlan(Target.WEIGHTS, 4, group_size=128), 4096, 4096)``
    is ``4096 × 2048`` code bytes + ``4096 × 32`` fp16 scales × 2 bytes = 8,650,752.
    """
    # TODO: validate rows and row_length, then follow the three bullet points; keep everything
    #       in integers (math.ceil or (n + 7) // 8, and // rather than /).
    raise NotImplementedError("quantized_bytes: codes + scales + zero points")


def saved_memory(plan: QuantizationPlan, model: ModelConfig, workload: Workload) -> int:
    """Bytes a plan saves against storing the same tensors in bf16 (2 bytes each).

    Only the plan's own target changes; everything else stays bf16:

    * ``WEIGHTS``: the seven linear layers of every transformer block are quantized — q_proj
      ``[heads × head_dim, hidden]``, k_proj and v_proj ``[kv_heads × head_dim, hidden]``, o_proj
      ``[hidden, heads × head_dim]``, gate_proj and up_proj ``[intermediate, hidden]``, down_proj
      ``[hidden, intermediate]`` (all ``[out, in]``). Embeddings, lm_head, norms and biases stay
      bf16. The saving does not depend on the workload.
    * ``KV_CACHE``: every layer caches K and V for ``batch × held`` tokens; one layer's K cache is
      ``[batch × held × kv_heads, head_dim]`` (a row is one head's vector), V the same. ``held``
      is ``context_tokens``, capped at ``model.layer_window(i)`` for a sliding-window layer ``i``
      (Mistral slides on every layer, Gemma-2 on every other one; ``None`` means full attention).
    * ``ACTIVATIONS``: activation quantization shrinks the inputs of the linear layers; the
      largest one alive at a time is down_proj's input ``[batch × context_tokens, intermediate]``,
      and that tensor's saving is the answer (one layer runs at a time).

    Each tensor saves ``rows × row_length × 2 − quantized_bytes(plan, rows, row_length)``. A group
    size that does not divide a row raises ``ValueError`` naming the tensor and both numbers.

    Plans cover dense decoders with standard attention: a mixture-of-experts model
    (``model.routed_experts`` is set) or multi-head latent attention (``model.is_mla``) raises
    ``ValueError`` naming the model — their tensors are counted in Labs 01 and 02.

    Example (checked): Llama-3-8B, KV cache int8 per-token-per-head with fp16 scales, batch 8 ×
    8192 tokens saves 4,227,858,432 bytes (3.94 GiB).
    """
    # TODO: one branch per target; reuse quantized_bytes for every tensor.
    raise NotImplementedError("saved_memory: bytes saved for the plan's target")


@dataclass(frozen=True)
class Risk:
    """Where a plan's error enters the model, how it changes behaviour, how to mitigate it, how severe."""

    target: Target
    site: ErrorSite
    mechanism: Mechanism
    mitigation: Mitigation
    severity: str


def risk(plan: QuantizationPlan) -> Risk:
    """The plan's quality risk, as data.

    Pick the ``ErrorSite``, ``Mechanism`` and ``Mitigation`` that fit the plan's target (each
    target has its own; read the lab's README). ``severity`` is one of ``SEVERITIES``: 8 bits
    ``"low"``, 4 bits ``"medium"``, 2 bits ``"high"``; an integer plan at ``PER_TENSOR``
    granularity is one level worse (capped at ``"high"``), because one outlier then sets the
    scale of every value. FP8 keeps an exponent per value, so it gets no such penalty. No plan is
    risk-free: there is no ``"none"``.
    """
    # TODO: choose the three members for plan.target and compute the severity.
    raise NotImplementedError("risk: site, mechanism, mitigation and severity")


def describe(plan: QuantizationPlan, model: ModelConfig, workload: Workload) -> str:
    """One line that says what a plan really is, never only its bit width. Exactly::

        "{target} {fmt} {granularity} ({scale_bits}-bit scales): saves {GiB:.2f} GiB on {model.name}
         at batch {batch} × {context_tokens} tokens; main risk ({severity}): {mechanism}"

    (one line, no line break), where GiB is ``saved_memory(...) / 2**30`` (GiB, not GB) and
    severity and mechanism come from ``risk(plan)`` (``mechanism.value``, the sentence). With a
    zero point the parenthesis reads ``(16-bit scales, 8-bit zero points)``. Example::

        kv_cache int8 per-token-per-head (16-bit scales): saves 3.94 GiB on llama-3-8b at batch 8
        × 8192 tokens; main risk (low): key error shifts q·k scores ...
    """
    # TODO: build the line from saved_memory, granularity and risk.
    raise NotImplementedError("describe: one line with target, format, granularity, GiB saved and risk")


@dataclass(frozen=True)
class KernelPath:
    """Whether a backend can turn a plan's saved bytes into speed."""

    backend: str
    kernel: str | None
    speedup: bool
    reason: str


def kernel_path(plan: QuantizationPlan, backend: str) -> KernelPath:
    """Look the plan up in ``KERNEL_SUPPORT`` for ``backend`` (matching ``target`` and ``plan.fmt``).

    * a kernel with ``reads_compressed=True`` exists: ``speedup=True``, ``kernel`` is its name;
    * only kernels that dequantize first: ``speedup=False``, ``kernel`` is the first such name;
    * no kernel at all: ``kernel=None``, ``speedup=False`` — the saving is capacity only and
      dequantizing to bf16 costs time.

    ``reason`` says which case applies in a sentence. A backend not in ``BACKENDS`` raises
    ``ValueError`` naming it and listing ``BACKENDS``.
    """
    # TODO: filter KERNEL_SUPPORT, then decide between the three cases.
    raise NotImplementedError("kernel_path: find the kernel and decide speed vs capacity")


@dataclass(frozen=True)
class PlanComparison:
    """One row of :func:`compare_plans`."""

    label: str
    saved_bytes: int
    kernel: str | None
    speedup: bool
    severity: str | None


def compare_plans(plans: list[QuantizationPlan], model: ModelConfig, workload: Workload, backend: str) -> list[PlanComparison]:
    """Several plans side by side for one model, workload and backend.

    Row 0 is always the baseline: ``PlanComparison("bf16 baseline", 0, "bf16 dense", False, None)``.
    Then one row per plan, in order: label ``"{target} {fmt} {granularity}"`` (e.g.
    ``"weights int4 group-128"``), ``saved_memory``, and the kernel and ``speedup`` of
    ``kernel_path`` and the ``severity`` of ``risk``. An unknown backend raises ``ValueError``
    naming it, as ``kernel_path`` does, even when ``plans`` is empty.
    """
    # TODO: the baseline row, then one row per plan.
    raise NotImplementedError("compare_plans: baseline row, then one row per plan")
