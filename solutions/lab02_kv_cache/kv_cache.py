"""Lab 02 — the KV cache: how many bytes serving holds per token, per sequence, per GPU.

During decoding every attention layer keeps the keys and values of all earlier tokens, so the
next token's query can attend to them without recomputing them. That cache grows with every
token of every sequence in the batch, and on a long context or a large batch it outgrows the
weights. How fast it grows depends on the attention design: multi-head (MHA), grouped-query
(GQA), multi-query (MQA), DeepSeek's multi-head latent attention (MLA), and sliding windows.

Work through the exercises in order (``infralens hint lab02`` when stuck):

1. ``kv_bytes_per_token``        bytes one more token adds, summed over layers
2. ``kv_cache_bytes``            bytes for a batch of sequences, windows applied
3. ``blocks_needed``             whole blocks a paged allocator hands out
4. ``paged_kv_bytes``            bytes a paged cache really reserves
5. ``max_concurrent_sequences``  how many sequences fit next to the weights
6. ``KVCache``                   a real cache of tensors: prefill once, append one token per step

Every byte count and every count of sequences or blocks is an ``int``: a ``float`` such as
``131072.0`` is wrong even when it equals the answer, so stay in integer arithmetic (``//``, not
``/``). Arguments documented as ``int`` reject ``bool`` (``True`` is not a count).

Run ``pytest --lab 02`` from the repository root or from this folder to check your work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from infralens.models import ModelConfig

# --------------------------------------------------------------------------------------------
# Given: constants and the attention the cache serves (not exercises)
# --------------------------------------------------------------------------------------------

DEFAULT_BLOCK_SIZE = 16
"""Tokens per KV block: vLLM's default ``block_size`` (``CacheConfig``)."""

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's default ``gpu_memory_utilization``: the fraction of GPU memory the engine may use at all."""


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal scaled-dot-product attention with grouped KV heads (MHA, GQA and MQA alike).

    q        ``(B, nh, Tq, hs)``: queries of the last ``Tq`` positions
    k, v     ``(B, kv_heads, Tk, hs)``: keys and values of all ``Tk`` positions so far, ``Tq <= Tk``
    returns  ``(B, nh, Tq, hs)``

    Query ``i`` sits at position ``Tk - Tq + i`` and attends to keys ``0 .. Tk - Tq + i``: with
    ``Tq == Tk`` this is the usual causal prefill, with ``Tq == 1`` it is one decode step that
    sees every cached token. Query head ``h`` reads KV head ``h // (nh // kv_heads)``, as
    transformers' ``repeat_kv`` does, so ``nh`` must be a multiple of ``kv_heads``.
    """
    batch, heads, q_len, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    if heads % kv_heads or q_len > k_len:
        raise ValueError(f"causal_attention: q {tuple(q.shape)} cannot attend to k {tuple(k.shape)}: need nh % kv_heads == 0 and Tq <= Tk")
    k = k.repeat_interleave(heads // kv_heads, dim=1)  # (B, nh, Tk, hs)
    v = v.repeat_interleave(heads // kv_heads, dim=1)  # (B, nh, Tk, hs)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(head_dim)  # (B, nh, Tq, Tk)
    query_pos = torch.arange(k_len - q_len, k_len).unsqueeze(1)  # (Tq, 1)
    scores = scores.masked_fill(torch.arange(k_len) > query_pos, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, nh, Tq, hs)


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def kv_bytes_per_token(model: ModelConfig, bytes_per_element: int = 2) -> int:
    """Bytes of KV cache that one more token adds to one sequence, summed over all layers.

    What one layer stores per token:

    * MHA, GQA, MQA: a key and a value vector of ``head_dim`` elements for every KV head, so
      ``2 × num_key_value_heads × head_dim`` elements. Query heads share KV heads
      (``num_attention_heads / num_key_value_heads`` of them per KV head), so they do not count.
    * MLA (``model.kv_lora_rank`` is not None: DeepSeek-V2/V3): the compressed latent
      (``kv_lora_rank`` elements) and the shared RoPE key (``qk_rope_head_dim`` elements), once
      for all heads. Per-head keys and values are rebuilt from the latent at attention time, so
      ``num_key_value_heads`` and ``head_dim`` play no part.

    Sliding windows are ignored here on purpose: this is the rate at which the cache grows while
    the context is still shorter than every window. A layer with window ``W`` stops growing after
    ``W`` tokens, so ``kv_cache_bytes(model, t) == t × kv_bytes_per_token(model)`` only holds for
    ``t`` up to the smallest window; past it, ask ``kv_cache_bytes``.

    ``bytes_per_element`` is the size of one cached number: 2 for bf16/fp16 (the default), 1 for
    fp8, 4 for fp32. It must be a positive ``int`` (not a bool); anything else raises
    ``ValueError`` naming the value. Returns an ``int``.

    Examples: Llama-3-8B in bf16 stores 2 × 32 layers × 8 KV heads × 128 × 2 bytes = 131,072
    bytes per token; DeepSeek-V3 stores (512 + 64) × 61 layers × 2 bytes = 70,272.
    """
    _require_int("bytes_per_element", bytes_per_element, 1)
    return model.num_hidden_layers * _layer_bytes_per_token(model, bytes_per_element)


def kv_cache_bytes(model: ModelConfig, tokens: int, batch: int = 1, bytes_per_element: int = 2) -> int:
    """Bytes of KV cache held by ``batch`` sequences of ``tokens`` tokens each, windows applied.

    Each layer holds ``tokens`` tokens per sequence, or at most ``W`` when
    ``model.layer_window(layer)`` is a window ``W`` (``None`` means full attention). Each held
    token costs the layer's bytes per token (see ``kv_bytes_per_token``). So the cache is
    ``batch × Σ_layers min(tokens, window) × (bytes per token of one layer)``, exactly linear in
    ``batch`` and, below every window, in ``tokens``.

    ``tokens`` is an ``int >= 0`` (0 holds nothing), ``batch`` an ``int >= 1``, and
    ``bytes_per_element`` as in ``kv_bytes_per_token``; bools, floats and smaller values raise
    ``ValueError`` naming the argument and the value.

    Examples (bf16): Llama-3-8B, one sequence of 8192 tokens: 8192 × 131,072 = 1,073,741,824
    bytes (1 GiB). Mistral-7B-v0.1 (window 4096 on every layer) at 32,768 tokens holds only 4096
    per layer: 536,870,912 bytes, not 4 GiB. Gemma-2-9B at 8192 tokens: 21 full layers hold 8192
    tokens, 21 sliding layers 4096, each token-layer 8192 bytes: 2,113,929,216 bytes.
    """
    _require_int("tokens", tokens, 0)
    _require_int("batch", batch, 1)
    _require_int("bytes_per_element", bytes_per_element, 1)
    held = sum(_held_tokens(model, layer, tokens) for layer in range(model.num_hidden_layers))
    return batch * held * _layer_bytes_per_token(model, bytes_per_element)


def blocks_needed(tokens: int, block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Whole blocks of ``block_size`` tokens that hold ``tokens`` tokens: ``ceil(tokens / block_size)``.

    A paged allocator (vLLM's PagedAttention) hands out KV memory in fixed blocks, so the last
    block of a sequence is usually partly empty. 0 tokens need 0 blocks; 1 to 16 tokens need one
    block of 16; 17 need two. ``tokens`` must be an ``int >= 0`` and ``block_size`` an
    ``int >= 1``; anything else raises ``ValueError`` naming the argument and the value.
    """
    _require_int("tokens", tokens, 0)
    _require_int("block_size", block_size, 1)
    return -(-tokens // block_size)  # ceiling division in integers: no float rounding at any size


def paged_kv_bytes(model: ModelConfig, tokens: int, batch: int = 1, block_size: int = DEFAULT_BLOCK_SIZE, bytes_per_element: int = 2) -> int:
    """Bytes a paged KV cache reserves for ``batch`` sequences of ``tokens`` tokens each.

    Like ``kv_cache_bytes``, but every layer of every sequence rounds the tokens it holds up to
    whole blocks: ``batch × Σ_layers blocks_needed(held, block_size) × block_size × (bytes per
    token of one layer)``, where ``held = min(tokens, window)`` for a sliding layer. (This counts
    a window's tokens as if they started on a block boundary; an engine that frees blocks as the
    window slides can hold one more, partly stale, block per layer.)

    Arguments are validated as in ``kv_cache_bytes`` and ``blocks_needed``.

    Example: Llama-3-8B, one sequence of 1000 tokens in blocks of 16: 63 blocks = 1008 token
    slots, 1008 × 131,072 = 132,120,576 bytes, 1,048,576 more than the 131,072,000 the tokens use.
    """
    _require_int("batch", batch, 1)
    _require_int("bytes_per_element", bytes_per_element, 1)
    _require_int("block_size", block_size, 1)
    _require_int("tokens", tokens, 0)
    slots = sum(blocks_needed(_held_tokens(model, layer, tokens), block_size) * block_size for layer in range(model.num_hidden_layers))
    return batch * slots * _layer_bytes_per_token(model, bytes_per_element)


def max_concurrent_sequences(
    model: ModelConfig,
    gpu_memory_bytes: int,
    weight_bytes: int,
    tokens_per_sequence: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    bytes_per_element: int = 2,
) -> int:
    """How many sequences of ``tokens_per_sequence`` tokens can hold their paged KV cache at once.

    As in vLLM, the engine may use ``gpu_memory_utilization`` of the GPU's memory in total
    (weights *and* KV cache); the rest, ``1 - gpu_memory_utilization`` (10 % by default), is left
    for what this lab does not count: the CUDA context, activations of the forward pass,
    fragmentation, other processes. So::

        usable   = math.floor(gpu_memory_bytes * gpu_memory_utilization)
        kv_pool  = usable − weight_bytes
        answer   = kv_pool // paged_kv_bytes(model, tokens_per_sequence, 1, block_size, bytes_per_element)

    Rounding rule: ``usable`` is the product as Python computes it, rounded **down** to a whole
    byte (``math.floor``), never up or to nearest: a fraction of a byte holds nothing. With a GPU
    of 1,000,001 bytes at ``gpu_memory_utilization=0.5`` the engine may use 500,000 bytes, not
    500,001. The answer is an ``int``; a pool too small for one sequence gives 0. Quantizing the
    weights only shrinks ``weight_bytes``: each sequence still needs its full KV cache at
    ``bytes_per_element``.

    ``gpu_memory_bytes``, ``weight_bytes`` and ``tokens_per_sequence`` are ``int``s (at least 1,
    0 and 1; not bools); ``gpu_memory_utilization`` is an ``int`` or ``float`` in ``(0, 1]`` (not a
    bool). The weights must fit in ``usable``, not in the whole GPU: ``weight_bytes > usable``
    raises ``ValueError`` naming both byte counts (``weight_bytes`` and ``usable``), while weights
    of exactly ``usable`` bytes fit and leave room for 0 sequences. Bad arguments raise
    ``ValueError`` naming the argument and the value.

    Example: Llama-3-8B, bf16 weights (16,060,522,496 bytes) on an 80 GiB GPU
    (85,899,345,920 bytes), 8192 tokens per sequence: usable 77,309,411,328, pool
    61,248,888,832, 1 GiB per sequence, 57 sequences. With int4 weights (4,015,130,624 bytes):
    68, not four times as many.
    """
    _require_int("gpu_memory_bytes", gpu_memory_bytes, 1)
    _require_int("weight_bytes", weight_bytes, 0)
    _require_int("tokens_per_sequence", tokens_per_sequence, 1)
    if isinstance(gpu_memory_utilization, bool) or not isinstance(gpu_memory_utilization, (int, float)) or not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be a fraction in (0, 1], got {gpu_memory_utilization!r}")
    usable = math.floor(gpu_memory_bytes * gpu_memory_utilization)
    if weight_bytes > usable:
        raise ValueError(
            f"the weights ({weight_bytes} bytes) do not fit in the usable memory ({usable} bytes = "
            f"gpu_memory_utilization {gpu_memory_utilization} × {gpu_memory_bytes}): there is no room left for any KV cache"
        )
    per_sequence = paged_kv_bytes(model, tokens_per_sequence, 1, block_size, bytes_per_element)
    # The pool is shared block by block, but every sequence needs the same whole blocks, so
    # floor(floor(pool / block) / blocks) == pool // per_sequence.
    return (usable - weight_bytes) // per_sequence


@dataclass(eq=False)
class KVCache:
    """A preallocated KV cache for ``num_layers`` attention layers, filled by prefill, grown by decode.

    ``__post_init__`` validates the fields (each an ``int >= 1``, ``dtype`` a floating
    ``torch.dtype``; else ``ValueError`` naming the field and the value) and allocates, like
    gpt-fast's ``KVCache``:

    * ``k_cache`` and ``v_cache``: zeros of shape ``(num_layers, batch, num_kv_heads, max_tokens,
      head_dim)`` in ``dtype``; layer ``l``'s tokens live at ``k_cache[l, :, :, :lengths[l]]``;
    * ``lengths``: a list of ``num_layers`` zeros, the tokens each layer holds.

    The append contract (every later call names its ``layer``, ``0 <= layer < num_layers``):

    * ``prefill(layer, k, v)`` writes the prompt's keys and values, ``(batch, num_kv_heads, T,
      head_dim)`` with ``1 <= T <= max_tokens``, into an empty layer (a prompt of exactly
      ``max_tokens`` tokens fits: it fills the layer, and the next ``append`` is an error);
    * ``append(layer, k, v)`` writes the one new token of a decode step, ``(batch, num_kv_heads,
      1, head_dim)``, after the tokens the layer already holds;
    * both return the layer's cached ``(k, v)`` so far, each ``(batch, num_kv_heads,
      lengths[layer], head_dim)`` in ``dtype``: exactly what ``causal_attention`` needs.

    Anything else raises ``ValueError`` that names the shapes and numbers, and leaves the cache
    as it was: a bad layer index (not an ``int`` in ``[0, num_layers)``, or a bool; the message
    names the index), k and v of different or wrong shapes (the message shows the shape
    received), more than one token in ``append`` (the shape received), a prefill into a layer
    that already holds tokens (the layer), an ``append`` into an empty layer (the layer), or a
    token past ``max_tokens`` (the prompt's length and ``max_tokens``, or ``max_tokens`` when an
    ``append`` finds the layer full).

    Example: ``KVCache(num_layers=2, batch=1, num_kv_heads=8, head_dim=128, max_tokens=8192,
    dtype=torch.bfloat16).nbytes`` is 2 × 2 × 1 × 8 × 8192 × 128 × 2 = 67,108,864 bytes.
    """

    num_layers: int
    batch: int
    num_kv_heads: int
    head_dim: int
    max_tokens: int
    dtype: torch.dtype = torch.float32
    k_cache: torch.Tensor = field(init=False, repr=False)
    v_cache: torch.Tensor = field(init=False, repr=False)
    lengths: list[int] = field(init=False)

    def __post_init__(self) -> None:
        for name in ("num_layers", "batch", "num_kv_heads", "head_dim", "max_tokens"):
            _require_int(name, getattr(self, name), 1)
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype such as torch.bfloat16, got {self.dtype!r}")
        # Reserve the whole capacity up front: decode then never reallocates or copies the past.
        shape = (self.num_layers, self.batch, self.num_kv_heads, self.max_tokens, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=self.dtype)  # (L, B, kv_heads, max_tokens, hs)
        self.v_cache = torch.zeros(shape, dtype=self.dtype)  # (L, B, kv_heads, max_tokens, hs)
        self.lengths = [0] * self.num_layers

    @property
    def nbytes(self) -> int:
        """Bytes the cache reserves (an ``int``): both buffers, whole capacity, whether filled or not.

        Equals ``kv_cache_bytes`` of a matching full-attention model at ``max_tokens`` tokens,
        ``batch`` sequences and ``dtype``'s element size.
        """
        # Count what is allocated, not what is filled: the capacity is reserved either way.
        return self.k_cache.nbytes + self.v_cache.nbytes

    def prefill(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the prompt's ``k``, ``v`` ``(batch, num_kv_heads, T, head_dim)`` into an empty layer.

        Returns the layer's cached keys and values, each ``(batch, num_kv_heads, T, head_dim)``.
        """
        _check_layer(self, layer)
        if self.lengths[layer]:
            raise ValueError(f"prefill: layer {layer} already holds {self.lengths[layer]} tokens; prefill writes the prompt once, decode steps use append")
        tokens = _check_kv(self, "prefill", k, v)
        if tokens > self.max_tokens:
            raise ValueError(f"prefill: a prompt of {tokens} tokens (k {tuple(k.shape)}) does not fit in max_tokens={self.max_tokens}")
        self.k_cache[layer, :, :, :tokens] = k
        self.v_cache[layer, :, :, :tokens] = v
        self.lengths[layer] = tokens
        return _cached(self, layer)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one decode step's ``k``, ``v`` ``(batch, num_kv_heads, 1, head_dim)`` after the layer's tokens.

        Returns the layer's cached keys and values, each ``(batch, num_kv_heads, lengths[layer], head_dim)``.
        """
        _check_layer(self, layer)
        tokens = _check_kv(self, "append", k, v)
        if tokens != 1:
            raise ValueError(
                f"append: a decode step adds exactly one token per layer, got k {tuple(k.shape)} with {tokens} tokens; "
                f"expected {(self.batch, self.num_kv_heads, 1, self.head_dim)} (use prefill for the prompt)"
            )
        position = self.lengths[layer]
        if position == 0:
            raise ValueError(f"append: layer {layer} is empty; prefill it with the prompt before decoding")
        if position == self.max_tokens:
            raise ValueError(f"append: layer {layer} is full: it holds max_tokens={self.max_tokens} tokens, no room for token {position + 1}")
        self.k_cache[layer, :, :, position] = k[:, :, 0]  # (B, kv_heads, hs) into slot `position`
        self.v_cache[layer, :, :, position] = v[:, :, 0]
        self.lengths[layer] = position + 1
        return _cached(self, layer)


def _check_layer(cache: KVCache, layer: int) -> None:
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < cache.num_layers:
        raise ValueError(f"layer must be an int in [0, {cache.num_layers}), got {layer!r}")


def _check_kv(cache: KVCache, what: str, k: torch.Tensor, v: torch.Tensor) -> int:
    """The number of tokens in ``k``/``v``, after checking both against ``(batch, num_kv_heads, T, head_dim)``."""
    if k.shape != v.shape:
        raise ValueError(f"{what}: k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if k.dim() != 4 or (k.shape[0], k.shape[1], k.shape[3]) != (cache.batch, cache.num_kv_heads, cache.head_dim) or k.shape[2] < 1:
        raise ValueError(
            f"{what}: k and v have shape {tuple(k.shape)}, expected (batch, num_kv_heads, T, head_dim) = "
            f"({cache.batch}, {cache.num_kv_heads}, T, {cache.head_dim}) with T >= 1"
        )
    return k.shape[2]


def _cached(cache: KVCache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = cache.lengths[layer]
    return cache.k_cache[layer, :, :, :length], cache.v_cache[layer, :, :, :length]  # (B, kv_heads, length, hs) views


def _require_int(name: str, value: object, minimum: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _layer_bytes_per_token(model: ModelConfig, bytes_per_element: int) -> int:
    """Bytes one layer stores per token of one sequence (every layer of a preset stores the same)."""
    if model.kv_lora_rank is not None:
        # MLA caches the joint KV latent and the one RoPE key shared by all heads.
        return (model.kv_lora_rank + model.qk_rope_head_dim) * bytes_per_element
    # A key and a value vector per KV head; the query heads of a group share them.
    return 2 * model.num_key_value_heads * model.head_dim * bytes_per_element


def _held_tokens(model: ModelConfig, layer: int, tokens: int) -> int:
    """Tokens a layer keeps: all of them, or the last ``window`` on a sliding-window layer."""
    window = model.layer_window(layer)
    return tokens if window is None else min(tokens, window)
