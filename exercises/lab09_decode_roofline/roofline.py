"""Lab 09 — the decode roofline: why generating a token is memory-bound, and what quantization does to the bound.

One decode step produces one new token for each of ``batch`` sequences. To do it the GPU must read
every weight of the model once (the whole batch shares that read) and every sequence's own KV
cache, and it must do about two FLOPs per parameter per sequence plus the attention over the
cache. Neither the memory system nor the tensor cores can go faster than their datasheet peaks,
so ``max(bytes / bandwidth, FLOPs / peak)`` is a time no implementation can beat: the roofline
bound of the step. At batch 1 the bytes win by two orders of magnitude; quantizing weights
shrinks the part shared by the batch, quantizing the KV cache shrinks the part that grows with
batch × context.

Work through the exercises in order (``infralens hint lab09`` when stuck):

1. ``peak_flops``             the GPU's dense peak for a compute format
2. ``step_bytes``             bytes one decode step must read: weights once, each sequence's KV
3. ``step_flops``             FLOPs of one decode step: matmuls and attention
4. ``step_bound``             the roofline bound of one step, which side binds, tokens per second
5. ``kv_crossover_tokens``    how many cached tokens make the KV cache outweigh the weights
6. ``quantization_speedup``   what quantizing weights or the KV cache does to the bound

Units, decided once: bytes are bytes; sizes are quoted in decimal GB (10**9 bytes) and bandwidths
in decimal TB/s (10**12 bytes/s), as GPU datasheets and model cards quote them; GiB (2**30) only
where it is named. Times are seconds, rates FLOP/s (int8: operations/s).

Run ``pytest --lab 09`` (or ``pytest checks/lab09_decode_roofline``) to check your work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infralens.models import ModelConfig

# --------------------------------------------------------------------------------------------
# Given: units, GPU datasheets and the KV bytes of one token (not exercises)
# --------------------------------------------------------------------------------------------

GB = 10**9
"""A decimal gigabyte. Datasheets and model sizes ("16.06 GB") use it."""
TB = 10**12
"""A decimal terabyte: HBM bandwidth "4.8 TB/s" is 4.8 × 10**12 bytes per second."""
GiB = 2**30
"""A binary gibibyte: 1 GiB = 1.0737 GB. Never mix the two silently."""
TERA = 10**12
"""A TFLOP/s is 10**12 floating-point operations per second."""

COMPUTE_FORMATS = ("bf16", "fp8", "int8")
"""Tensor-core input formats a matmul can run in: weight-only quantized kernels dequantize to bf16
and compute in bf16; W8A8 kernels compute in int8 or fp8."""


@dataclass(frozen=True)
class GpuSpec:
    """One GPU's datasheet peaks: HBM bandwidth in bytes/s and *dense* tensor-core rates.

    Dense means without 2:4 structured sparsity (datasheets print the sparse figure, twice as
    large, in the same table). ``fp8_flops`` is ``None`` for GPUs without FP8 tensor cores.
    """

    name: str
    hbm_bytes_per_s: float
    bf16_flops: float
    fp8_flops: float | None
    int8_ops: float


# NVIDIA datasheets: "NVIDIA A100 Tensor Core GPU" (A100 80GB SXM: 2,039 GB/s HBM2e, BF16 312
# TFLOPS, INT8 624 TOPS, no FP8), "NVIDIA H100 Tensor Core GPU" (H100 SXM: 3.35 TB/s HBM3, BF16
# 989 TFLOPS, FP8 and INT8 1,979) and "NVIDIA H200 Tensor Core GPU" (H200 SXM: 4.8 TB/s HBM3e,
# same tensor cores as H100 SXM). All dense figures: the datasheets' sparse ones halved.
GPUS: dict[str, GpuSpec] = {
    spec.name: spec
    for spec in (
        GpuSpec("a100-80gb", hbm_bytes_per_s=2.039 * TB, bf16_flops=312 * TERA, fp8_flops=None, int8_ops=624 * TERA),
        GpuSpec("h100-sxm", hbm_bytes_per_s=3.35 * TB, bf16_flops=989 * TERA, fp8_flops=1979 * TERA, int8_ops=1979 * TERA),
        GpuSpec("h200", hbm_bytes_per_s=4.8 * TB, bf16_flops=989 * TERA, fp8_flops=1979 * TERA, int8_ops=1979 * TERA),
    )
}

DENSE_DECODER_TYPES = frozenset({"gpt2", "llama", "mistral", "qwen2", "phi3", "gemma2"})
"""``model_type`` values whose every layer caches per-head K and V and whose every weight is read at
every step (windows may differ by layer: ``model.layer_window(i)`` says). Mixture-of-experts
models read only the routed experts' weights and MLA models (DeepSeek-V2/V3) cache a latent
instead of K and V: this lab's bound does not model them."""


def kv_bytes_per_token(model: ModelConfig, kv_bytes_per_element: float = 2.0) -> float:
    """Given (not an exercise): bytes of K and V that one token adds to one sequence's cache.

    ``2 (K and V) × num_hidden_layers × num_key_value_heads × head_dim × kv_bytes_per_element``:
    the cache stores one ``head_dim`` vector per *KV* head (GQA and MQA share them between query
    heads). ``kv_bytes_per_element`` is the average stored bytes per element, scales included: 2
    for bf16, 1 for FP8 with per-tensor scales, 1 + 2/128 for int8 with one fp16 scale per head
    vector of 128. Sliding windows are not applied here: a layer's window limits how many tokens it
holds, not what one token costs. Lab 02 derives this formula and the cases it leaves out; a model whose
    ``model_type`` is not in ``DENSE_DECODER_TYPES``, or a ``kv_bytes_per_element`` that is not a
    positive finite number, raises ``ValueError``.

    Llama-3-8B in bf16: 2 × 32 × 8 × 128 × 2 = 131,072 bytes (128 KiB) per token.
    """
    if model.model_type not in DENSE_DECODER_TYPES:
        raise ValueError(
            f"{model.name}: model_type={model.model_type!r} is not a dense decoder this lab models "
            f"({', '.join(sorted(DENSE_DECODER_TYPES))}); MoE and MLA models need Lab 02's accounting"
        )
    _require_positive_bytes("kv_bytes_per_element", kv_bytes_per_element)
    return 2 * model.num_hidden_layers * model.num_key_value_heads * model.head_dim * kv_bytes_per_element


def _require_positive_bytes(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of bytes, got {value!r}")


@dataclass(frozen=True)
class StepBytes:
    """Bytes one decode step must read from HBM: the weights once, plus every sequence's KV cache."""

    weights: float
    kv_cache: float

    @property
    def total(self) -> float:
        """``weights + kv_cache``: every byte the step reads."""
        return self.weights + self.kv_cache


@dataclass(frozen=True)
class StepBound:
    """The roofline bound of one decode step: no implementation on this GPU can be faster.

    weight_bytes, kv_bytes       bytes read, as in :class:`StepBytes`
    flops                        FLOPs of the step, as in :func:`step_flops`
    memory_s                     (weight_bytes + kv_bytes) / HBM bandwidth, seconds
    compute_s                    flops / peak FLOP/s of the compute format, seconds
    step_s                       max(memory_s, compute_s): the step's lower bound, seconds
    bound                        ``"memory"`` if memory_s >= compute_s, else ``"compute"``
    tokens_per_s_per_sequence    1 / step_s: each sequence gains one token per step
    tokens_per_s                 batch / step_s: tokens per second across the batch
    """

    weight_bytes: float
    kv_bytes: float
    flops: int
    memory_s: float
    compute_s: float
    step_s: float
    bound: str
    tokens_per_s_per_sequence: float
    tokens_per_s: float


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def peak_flops(gpu: str, compute: str = "bf16") -> float:
    """Dense peak rate of ``gpu`` (a key of ``GPUS``) for ``compute`` (one of ``COMPUTE_FORMATS``), per second.

    ``peak_flops("h200")`` is 989e12; ``peak_flops("h100-sxm", "fp8")`` is 1979e12;
    ``peak_flops("a100-80gb", "int8")`` is 624e12. Raises ``ValueError`` naming the value for an
    unknown GPU (and listing ``GPUS``), an unknown compute format, or ``"fp8"`` on a GPU whose
    ``fp8_flops`` is ``None`` (the A100 has no FP8 tensor cores).
    """
    # TODO: look the GPU up in GPUS (unknown name -> ValueError listing GPUS), check compute against
    #       COMPUTE_FORMATS, pick the matching field, and reject a None rate (fp8 on the A100).
    raise NotImplementedError("peak_flops: the dense peak rate of a GPU for a compute format")


def step_bytes(model: ModelConfig, batch: int, context_tokens: int, bytes_per_weight: float = 2.0, kv_bytes_per_element: float = 2.0) -> StepBytes:
    """Bytes one decode step reads for ``batch`` sequences, each with ``context_tokens`` tokens already cached.

    * ``weights``: ``model.published_parameters × bytes_per_weight``, read **once** per step and
      shared by the whole batch. ``bytes_per_weight`` is the average over all parameters, scales
      included: 2 for bf16, 1 for int8, 0.5 for bare int4, 0.5 + 2/128 for int4 with an fp16
      scale per group of 128. (Every parameter counts, the embedding table too, although a lookup
      reads only ``batch`` of its rows: the usual "model size / bandwidth" convention.)
    * ``kv_cache``: each sequence reads its own cache, layer by layer. Layer ``i`` holds
      ``context_tokens`` tokens, or ``min(context_tokens, W)`` when ``model.layer_window(i)`` is a
      window ``W`` (``None`` is full attention; Gemma-2 and Qwen2 with ``max_window_layers`` slide
      on some layers only). With ``held`` = those tokens summed over the layers, ``kv_cache`` is
      ``batch × held × kv_bytes_per_token(model, kv_bytes_per_element) / num_hidden_layers``
      (one layer's share of a token's bytes per held token).

    Both fields are byte counts as floats (an ``int`` is accepted too; never a ``bool``); they are
    exact whenever the byte sizes are binary fractions such as 2, 0.5 or 0.515625.
    ``batch`` is an int >= 1 and ``context_tokens`` an int >= 0 (``True`` is neither: a ``bool``
    raises); ``bytes_per_weight`` and ``kv_bytes_per_element`` are positive finite numbers; a model
    without ``published_parameters`` cannot be sized. Each violation raises ``ValueError`` whose
    message contains the offending value (``True``, ``-1``, ``nan``...) or the model's name.

    Examples: Llama-3-8B in bf16, batch 8 × 8192 tokens: weights 8,030,261,248 × 2 =
    16,060,522,496 bytes (16.06 GB), KV 8 × 8192 × 131,072 = 8,589,934,592 bytes (exactly 8 GiB).
    Qwen2.5-7B's config with ``use_sliding_window: true``, ``sliding_window: 4096`` and
    ``max_window_layers: 14`` at 32,768 tokens: layers 0-13 hold 32,768 tokens, layers 14-27 hold
    4096, so the KV is (14 × 32,768 + 14 × 4096) × 2048 = 1,056,964,608 bytes, 4.5× what a window
    on every layer would give.
    """
    # TODO: validate batch, context_tokens, bytes_per_weight (_require_positive_bytes is given) and
    #       published_parameters; weights are read once per step, the KV cache once per sequence.
    raise NotImplementedError("step_bytes: weights once per step, plus each sequence's KV cache")


def step_flops(model: ModelConfig, batch: int, context_tokens: int) -> int:
    """FLOPs of one decode step (one new token for each of ``batch`` sequences), an ``int``.

    * matmuls: ``2 × published_parameters × batch``: each parameter is one multiply-add (2 FLOPs)
      per token (like the weight bytes, this counts the embedding table too);
    * attention: ``4 × num_hidden_layers × num_attention_heads × head_dim × held × batch``: every
      *query* head scores the new token against ``held`` cached keys (q·k, 2 × head_dim FLOPs
      each) and sums as many values (2 × head_dim FLOPs each). GQA shares K and V between query
      heads, which saves bytes but not FLOPs. Layer by layer as in :func:`step_bytes`: with
      ``held`` the held tokens summed over the layers (each capped by ``model.layer_window(i)``),
      attention is ``4 × num_attention_heads × head_dim × held × batch``.

    Softmax, norms and activations are left out (a few FLOPs per element, far below the matmuls).
    Returns an ``int`` (never a float: every term is a product of integers). Bad
    ``batch``/``context_tokens`` (a ``bool`` included) or a model without ``published_parameters``
    raise ``ValueError`` as in :func:`step_bytes`.

    Example: Llama-3-8B, batch 1, 8192 cached tokens: 2 × 8,030,261,248 = 16,060,522,496 plus
    4 × 32 × 32 × 128 × 8192 = 4,294,967,296, i.e. 20,355,489,792 FLOPs.
    """
    # TODO: 2 FLOPs per parameter per sequence, plus the attention over the held tokens, per query head.
    raise NotImplementedError("step_flops: matmul FLOPs plus attention FLOPs")


def step_bound(
    model: ModelConfig,
    gpu: str,
    batch: int,
    context_tokens: int,
    bytes_per_weight: float = 2.0,
    kv_bytes_per_element: float = 2.0,
    compute: str = "bf16",
) -> StepBound:
    """The roofline bound of one decode step of ``model`` on ``gpu``, as a :class:`StepBound`.

    Bytes from :func:`step_bytes`, FLOPs from :func:`step_flops`. The memory time is the total
    bytes over ``GPUS[gpu].hbm_bytes_per_s``, the compute time the FLOPs over
    ``peak_flops(gpu, compute)``; the two overlap at best, so the step takes at least their
    maximum. ``bound`` names the side that takes longer; on an exact tie (``memory_s ==
    compute_s``, a step sitting on the ridge) it is ``"memory"``: the step is memory-bound until
    compute takes strictly longer. ``flops`` is an ``int``, every other number a float (an ``int``
    is accepted too), ``bound`` a ``str``. Errors as in the functions it uses.

    Example (the figure to remember): Llama-3-8B in bf16 at batch 1 on an H200, nothing cached
    yet, reads 16.06 GB per step, so ``step_s`` >= 16,060,522,496 / 4.8e12 = 3.346 ms: at most
    298.9 tokens/s, however good the kernels. ``bound`` is ``"memory"`` (compute needs 0.016 ms).
    A tie: 2 layers, 2 heads of 128 (MHA), 2,902,523,904 parameters, batch 207 × 64 tokens in
    bf16 reads 5,832,179,712 bytes and does 1,201,672,028,160 FLOPs: 1.21503744 ms on both sides
    of an H200, so ``bound`` is ``"memory"``.
    """
    # TODO: bytes / bandwidth and FLOPs / peak, the larger of the two, which side binds, tokens per second.
    raise NotImplementedError("step_bound: the roofline bound of one decode step")


def kv_crossover_tokens(model: ModelConfig, bytes_per_weight: float = 2.0, kv_bytes_per_element: float = 2.0) -> float:
    """Cached tokens, summed over the batch, at which a step reads as many KV bytes as weight bytes.

    ``weights / kv_bytes_per_token``: the weight read is fixed, the KV read grows with
    ``batch × held`` tokens, so only their product matters (batch 4 × 30k tokens crosses where
    batch 64 × 1.9k does). Past the crossover the KV cache dominates the step's bytes, and
    quantizing only the weights can at best remove less than half of them. A float (a fraction of
    a token is fine); validation as in :func:`step_bytes`.

    Example: Llama-3-8B, bf16 weights and KV: 16,060,522,496 / 131,072 = 122,532.06 tokens; with
    int4 weights (0.5 bytes) it is 4× fewer, 30,633.02: the cheaper the weights, the sooner the
    cache dominates.
    """
    # TODO: the weight bytes of a step divided by the KV bytes of one cached token.
    raise NotImplementedError("kv_crossover_tokens: where KV bytes equal weight bytes")


def quantization_speedup(
    model: ModelConfig,
    gpu: str,
    batch: int,
    context_tokens: int,
    bytes_per_weight: float = 2.0,
    kv_bytes_per_element: float = 2.0,
    compute: str = "bf16",
) -> float:
    """How much faster the *bound* of one step gets when weights and/or the KV cache are quantized.

    ``step_s`` of the bf16 baseline (2 bytes per weight, 2 per KV element, bf16 compute) divided
    by ``step_s`` with ``bytes_per_weight``, ``kv_bytes_per_element`` and ``compute``: 1.0 means
    no gain. This is an upper limit on the real speedup, reached only by kernels that read the
    compressed format at full bandwidth. Errors as in :func:`step_bound`.

    Example: Qwen2.5-7B on an H200 with int4 weights (0.5 bytes) and a bf16 cache: ≈ 3.95× at
    batch 1 × 1024 tokens (the weights are almost all of the bytes), but ≈ 1.09× at batch 64 ×
    32768 tokens, where the KV cache is 8× the bf16 weights; an FP8 cache (1 byte) gives ≈ 1.80×
    there.
    """
    # TODO: the bf16 baseline's step_s over the quantized configuration's step_s.
    raise NotImplementedError("quantization_speedup: the bound's speedup against bf16")
