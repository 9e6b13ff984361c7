"""Inputs for Lab 01's checks: random real-looking models of every family the ledger covers.

Given test data, shared by the public and hidden checks; nothing here counts parameters.
"""

from __future__ import annotations

import random

from infralens.checking import bounded, random_dense_model
from infralens.models import ModelConfig

FAMILIES = ("llama", "gpt2", "qwen2", "gemma2", "mixtral", "deepseek")


def random_model(rng: random.Random, family: str | None = None) -> ModelConfig:
    """A random model of ``family`` (random when ``None``): small, awkward sizes, every architecture switch set as that family sets it.

    ``llama`` also flips biases, norms and tying at random, so every field of the config matters.
    """
    family = family or rng.choice(FAMILIES)
    base = random_dense_model(rng)
    fields = dict(name=f"random-{family}-{rng.randrange(10**6)}", model_type=family)
    if family == "llama":
        bias = rng.random() < 0.3
        fields.update(
            attention_bias=bias,
            attention_output_bias=bias,
            mlp_bias=rng.random() < 0.3,
            tie_word_embeddings=rng.random() < 0.5,
            norm_type=rng.choice(["rms_norm", "layer_norm"]),
            norms_per_layer=rng.choice([2, 2, 4]),
        )
    elif family == "gpt2":
        fields.update(
            num_key_value_heads=base.num_attention_heads,
            attention_bias=True,
            attention_output_bias=True,
            mlp_bias=True,
            gated_mlp=False,
            norm_type="layer_norm",
            learned_position_embeddings=True,
            max_position_embeddings=rng.choice([128, 1024, 2048]),
            tie_word_embeddings=True,
        )
    elif family == "qwen2":
        fields.update(attention_bias=True, attention_output_bias=False)
    elif family == "gemma2":
        fields.update(norms_per_layer=4, tie_word_embeddings=True, sliding_window=rng.choice([16, 4096]),
                      layer_types=tuple("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(base.num_hidden_layers)))
    elif family == "mixtral":
        experts = rng.choice([4, 8, 16])
        fields.update(num_local_experts=experts, num_experts_per_tok=rng.randint(1, experts))
    elif family == "deepseek":
        experts = rng.choice([8, 16, 64])
        heads = base.num_attention_heads
        bias = rng.random() < 0.3
        nope, rope = rng.choice([16, 32, 128]), rng.choice([8, 16, 64])
        fields.update(
            num_key_value_heads=heads,
            head_dim=nope + rope,
            attention_bias=bias,
            attention_output_bias=bias,
            n_routed_experts=experts,
            n_shared_experts=rng.choice([None, 0, 1, 2]),
            num_experts_per_tok=rng.randint(1, experts),
            moe_intermediate_size=rng.choice([24, 64, 200]),
            first_k_dense_replace=rng.randint(0, base.num_hidden_layers),
            topk_method=rng.choice([None, "greedy", "noaux_tc"]),
            q_lora_rank=rng.choice([None, 48, 96]),
            kv_lora_rank=rng.choice([32, 64, 512]),
            qk_nope_head_dim=nope,
            qk_rope_head_dim=rope,
            v_head_dim=rng.choice([16, 32, 128]),
        )
    return ModelConfig(**{**base.__dict__, **fields})


def describe(model: ModelConfig) -> str:
    """Every field that differs from a bias-free, untied Llama-style default: a model in a failure message (at most 300 characters)."""
    defaults = ModelConfig(name="x", model_type="x", num_hidden_layers=1, hidden_size=1, num_attention_heads=1, num_key_value_heads=1, head_dim=1, intermediate_size=1, vocab_size=1)
    shown = [f"{key}={value!r}" for key, value in model.__dict__.items() if key not in ("name", "layer_types") and value != getattr(defaults, key)]
    return bounded(f"{model.name}(" + ", ".join(shown) + ")", 300)
