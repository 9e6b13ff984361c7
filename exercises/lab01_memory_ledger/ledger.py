"""Lab 01 — the memory ledger: where the bytes of an LLM live, from a config.json to a training cluster.

Every memory question about a model starts from one number, its parameter count, and that
number follows exactly from the architecture: embeddings, attention projections, MLPs (or
experts), norms and the output head. From it follow the bytes of the weights in each dtype and,
for training, the bytes of gradients and optimizer state on each GPU, which ZeRO shards across
data-parallel ranks. Two more figures of a training step complete the ledger: the bytes each
rank sends in a ring all-reduce, and the idle fraction of a pipeline.

Work through the exercises in order (``infralens hint lab01`` when stuck):

1. ``attention_parameters``       one decoder layer's attention projections (MHA, GQA, MQA, MLA)
2. ``mlp_parameters``             one layer's MLP: dense, or every expert of an MoE layer
3. ``parameter_breakdown``        the whole model by component; ``count_parameters`` is its total
4. ``active_parameters``          parameters one token actually uses in an MoE model
5. ``weight_bytes``               bytes of the weights in fp32 ... int4
6. ``training_memory_per_rank``   parameters + gradients + optimizer state, plain DP and ZeRO-1/2/3
7. ``ring_allreduce_bytes_per_rank``  what each rank sends to all-reduce the gradients
8. ``pipeline_bubble_fraction``   the idle share of a pipeline-parallel step

Run ``pytest --lab 01`` to check your work. Sizes are in bytes; GB means 10**9 bytes, GiB 2**30.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infralens.models import ModelConfig

# --------------------------------------------------------------------------------------------
# Given: data and containers of the lab (not exercises)
# --------------------------------------------------------------------------------------------

BITS_PER_PARAMETER = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4}
"""Storage bits of one weight in each dtype. int4 packs two weights per byte; none of these counts
quantization scales or zero points (Lab 03 adds them)."""

ZERO_STAGES = (0, 1, 2, 3)
"""0 is plain data parallelism; ZeRO-1 shards optimizer state, ZeRO-2 also gradients, ZeRO-3 also parameters."""


@dataclass(frozen=True)
class ParameterBreakdown:
    """A model's parameters by component; every field counts numbers (not bytes) in the whole model.

    ``embeddings``: the token embedding table, plus a learned position table if the model has one.
    ``attention``: every layer's attention projections with their biases (norms excluded).
    ``mlp``: every layer's MLP; in an MoE layer all routed and shared experts.
    ``router``: every MoE layer's gate (0 for dense models).
    ``norms``: every normalization weight (and bias, for LayerNorm), the final norm included.
    ``lm_head``: the output projection; 0 when it is tied to the embeddings.
    """

    embeddings: int
    attention: int
    mlp: int
    router: int
    norms: int
    lm_head: int

    @property
    def total(self) -> int:
        """All parameters: the sum of the components."""
        return self.embeddings + self.attention + self.mlp + self.router + self.norms + self.lm_head


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one data-parallel rank holds for training state (activations not included)."""

    parameters: int
    gradients: int
    optimizer_states: int

    @property
    def total(self) -> int:
        """Parameters + gradients + optimizer state, in bytes."""
        return self.parameters + self.gradients + self.optimizer_states


def count_parameters(model: ModelConfig) -> int:
    """Every parameter of ``model``: ``parameter_breakdown(model).total``.

    Example: ``count_parameters(preset("llama-3-8b")) == 8_030_261_248``.
    """
    return parameter_breakdown(model).total


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


def attention_parameters(model: ModelConfig) -> int:
    """Parameters of ONE decoder layer's attention block: its linear projections and their biases.

    Standard attention (MHA, GQA, MQA): q_proj ``hidden_size → num_attention_heads × head_dim``,
    k_proj and v_proj ``hidden_size → num_key_value_heads × head_dim`` each, o_proj back to
    ``hidden_size``. Fused projections (GPT-2's c_attn, Phi-3's qkv_proj) hold the same numbers.
    ``model.attention_bias`` adds one bias per q, k and v output; ``model.attention_output_bias``
    adds one per o_proj output.

    Multi-head latent attention (``model.is_mla``, DeepSeek-V2/V3), with h heads and
    ``qk = qk_nope_head_dim + qk_rope_head_dim``:
    queries ``hidden_size → q_lora_rank → h × qk`` (q_a_proj, q_b_proj) or, without ``q_lora_rank``,
    one q_proj ``hidden_size → h × qk``; kv_a_proj_with_mqa ``hidden_size → kv_lora_rank +
    qk_rope_head_dim``; kv_b_proj ``kv_lora_rank → h × (qk_nope_head_dim + v_head_dim)``; o_proj
    ``h × v_head_dim → hidden_size``. With ``attention_bias``, q_a_proj and kv_a_proj_with_mqa carry
    biases; with ``attention_output_bias``, o_proj does. MLA's two inner RMSNorms are norms, not here.

    Returns an ``int``. Example: Llama-3-8B (4096 hidden, 32 heads, 8 KV heads of 128) has
    4096·4096 + 2·4096·1024 + 4096·4096 = 41_943_040 attention parameters per layer. A tiny MLA
    layer (hidden 8, 2 heads, q_lora_rank 4, kv_lora_rank 7, qk_nope_head_dim 3 + qk_rope_head_dim
    2, v_head_dim 5) with ``attention_bias``: q_a 8·4 + 4, q_b 4·2·5, kv_a 8·9 + 9, kv_b 7·2·8,
    o 2·5·8, i.e. 349 (336 without the two biases).
    """
    # TODO: count q_proj, k_proj, v_proj and o_proj (weights, then biases); k/v use num_key_value_heads.
    # TODO: For MLA (model.is_mla) count q_a/q_b (or q_proj), kv_a_proj_with_mqa, kv_b_proj and o_proj instead.
    raise NotImplementedError("attention_parameters: not written yet")


def mlp_parameters(model: ModelConfig, layer_index: int) -> int:
    """Parameters of the MLP of layer ``layer_index`` (0-based), router excluded.

    A gated MLP (``model.gated_mlp``: gate_proj, up_proj, down_proj) of width I holds 3·hidden·I
    weights, a plain one (GPT-2's c_fc, c_proj) 2·hidden·I; with ``model.mlp_bias`` every matrix
    has a bias (I per gate/up/c_fc, hidden per down/c_proj).
    A dense layer (``not model.is_moe_layer(layer_index)``) has one MLP of ``intermediate_size``.
    An MoE layer holds ``model.routed_experts`` routed experts plus ``n_shared_experts`` shared ones
    (0 when ``None``), each an MLP of ``model.expert_intermediate_size``: all are stored, even though
    a token uses only a few. Returns an ``int``. Raises ``ValueError`` whose message contains the
    given ``layer_index`` when it is not an ``int`` in ``[0, num_hidden_layers)`` (a ``bool`` is
    not a layer index).

    Example: Mixtral-8x7B layer 0 holds 8 experts × 3·4096·14336 = 1_409_286_144 parameters.
    """
    # TODO: validate layer_index, then count one MLP of intermediate_size for a dense layer,
    # TODO: or (routed + shared) experts of expert_intermediate_size for an MoE layer.
    raise NotImplementedError("mlp_parameters: not written yet")


def parameter_breakdown(model: ModelConfig) -> ParameterBreakdown:
    """Every parameter of ``model``, by component (see :class:`ParameterBreakdown`).

    - embeddings: ``vocab_size × hidden_size``, plus ``max_position_embeddings × hidden_size`` when
      ``model.learned_position_embeddings`` (GPT-2's wpe; RoPE models store no position table).
    - attention: ``num_hidden_layers × attention_parameters(model)``.
    - mlp: ``mlp_parameters`` summed over the layers.
    - router: in each MoE layer a bias-free ``hidden_size → routed_experts`` gate, plus one routing
      bias per expert when ``model.topk_method == "noaux_tc"`` (DeepSeek-V3's e_score_correction_bias).
    - norms: ``norms_per_layer`` norms per layer plus the final one, each ``hidden_size`` numbers for
      ``"rms_norm"`` and ``2 × hidden_size`` (weight and bias) for ``"layer_norm"``; an MLA layer also
      normalizes its query latent (``q_lora_rank``, if any) and its KV latent (``kv_lora_rank``).
    - lm_head: ``vocab_size × hidden_size`` without bias, 0 when ``model.tie_word_embeddings``.

    Example: Llama-3-8B → embeddings 525_336_576, attention 1_342_177_280, mlp 5_637_144_576,
    router 0, norms 266_240, lm_head 525_336_576; total 8_030_261_248 (the published figure).
    The multi-token-prediction module of DeepSeek-V3 is not part of the count (671B without it).
    """
    # TODO: fill every field of ParameterBreakdown: embeddings (+ learned positions), attention and mlp over
    # TODO: all layers, the routers of MoE layers, every norm (+ the final one, + MLA's latent norms), lm_head unless tied.
    raise NotImplementedError("parameter_breakdown: not written yet")


def active_parameters(model: ModelConfig) -> int:
    """Parameters used to process one token: all of them for a dense model; for an MoE model,
    everything except the routed experts the token is not sent to.

    Each MoE layer runs ``num_experts_per_tok`` of its ``routed_experts`` routed experts, and every
    shared expert, the router, attention, norms, embeddings and lm_head. This is how model cards
    count "active" parameters (embeddings included).

    Returns an ``int``. Example: Mixtral-8x7B uses 2 of 8 experts: 46_702_792_704 − 32 layers × 6 × 176_160_768
    = 12_879_925_248 (Mistral AI quotes 12.9B); a dense model returns ``count_parameters(model)``.
    """
    # TODO: start from count_parameters(model) and remove, in every MoE layer, the routed experts a token skips.
    raise NotImplementedError("active_parameters: not written yet")


def weight_bytes(model: ModelConfig, dtype: str) -> int:
    """Bytes of every weight of ``model`` stored in ``dtype`` (a key of ``BITS_PER_PARAMETER``).

    ``count_parameters(model) × bits / 8``, rounded up to whole bytes (int4 packs two weights per
    byte, so an odd count leaves half a byte). Quantization scales and zero points are not counted
    here (Lab 03 counts them). Returns an ``int``, never a float. Raises ``ValueError`` whose
    message contains the unknown ``dtype`` as its ``repr`` (``'float16'``).

    Example: Llama-3-8B in bf16 is 16_060_522_496 bytes (16.06 GB, 14.96 GiB); in int4 4_015_130_624.
    """
    # TODO: reject unknown dtypes, then convert parameters × bits into whole bytes (int4 rounds up).
    raise NotImplementedError("weight_bytes: not written yet")


def training_memory_per_rank(
    parameters: int,
    world_size: int = 1,
    zero_stage: int = 0,
    *,
    param_bytes: int = 2,
    grad_bytes: int = 2,
    optimizer_bytes: int = 12,
) -> TrainingMemory:
    """Training-state bytes on one of ``world_size`` data-parallel ranks.

    Each parameter costs ``param_bytes`` (fp16/bf16 weights: 2), ``grad_bytes`` (2) and
    ``optimizer_bytes`` of optimizer state (mixed-precision Adam: fp32 master copy + first and
    second moments = 4 + 4 + 4 = 12, the ZeRO paper's K; 8 for the two moments alone).
    Plain data parallelism (``zero_stage=0``) replicates all three on every rank. ZeRO-1 shards the
    optimizer state, ZeRO-2 also the gradients, ZeRO-3 also the parameters. A sharded tensor puts
    ``ceil(parameters / world_size)`` parameters on each rank (the flat buffer is padded so every
    rank holds an equal shard). Every field of the result is an ``int`` number of bytes.
    Every argument is an ``int`` (a ``bool`` is none of them: ``True`` is not ZeRO stage 1, nor
    one rank). Raises ``ValueError`` whose message contains the offending value for a negative
    count or byte size, a ``world_size`` below 1, a stage outside ``ZERO_STAGES``, or a non-int.

    Example: 7e9 parameters, fp16 parameters and gradients, 8 optimizer bytes, 8 ranks, ZeRO-3:
    (2 + 2 + 8) × 7e9 / 8 = 10.5e9 bytes = 10.5 GB per rank (84 GB with plain data parallelism).
    """
    # TODO: validate every argument, then shard optimizer state (stage >= 1), gradients (>= 2) and
    # TODO: parameters (3) into ceil(parameters / world_size) per rank; stage 0 replicates everything.
    raise NotImplementedError("training_memory_per_rank: not written yet")


def ring_allreduce_bytes_per_rank(payload_bytes: int | float, world_size: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``payload_bytes``: ``2 (N − 1) / N × payload``.

    The payload is cut into N chunks; a reduce-scatter pass (N − 1 steps) leaves each rank one fully
    reduced chunk, an all-gather pass (N − 1 more steps) hands every chunk to every rank, one chunk
    of ``payload / N`` per step. It approaches twice the payload as N grows; one rank sends nothing.
    Returns a ``float`` (true division: a chunk need not be whole bytes). ``payload_bytes`` is a
    finite number >= 0 and ``world_size`` an ``int`` >= 1 (``bool`` is neither); otherwise raises
    ``ValueError`` whose message contains the offending value.

    Example: a 2 GB gradient all-reduce over 8 ranks sends 2 × 7/8 × 2e9 = 3.5e9 bytes per rank;
    1000 bytes over 3 ranks send 2 × 2/3 × 1000 = 1333.33..., not 1333.
    """
    # TODO: validate, then apply 2 (N - 1) / N × payload.
    raise NotImplementedError("ring_allreduce_bytes_per_rank: not written yet")


def pipeline_bubble_fraction(stages: int, microbatches: int) -> float:
    """Idle fraction of a GPipe/1F1B pipeline step: ``(p − 1) / (m + p − 1)`` for p stages, m microbatches.

    Each stage works for m microbatch slots out of the m + p − 1 slots the step lasts: it waits
    p − 1 slots while the pipeline fills (or drains). One stage has no bubble; more microbatches
    shrink it. Returns a ``float``. Raises ``ValueError`` whose message contains the offending value
    when ``stages`` or ``microbatches`` is not an ``int`` >= 1 (a ``bool`` included).

    Example: 4 stages and 16 microbatches idle 3 / 19 ≈ 0.1579 (15.79 %) of the step.
    """
    # TODO: validate, then return (p - 1) / (m + p - 1).
    raise NotImplementedError("pipeline_bubble_fraction: not written yet")
