"""Random inputs for the Lab 02 checks: models of every KV-cache family, and attention tensors.

Given check tooling: it builds configurations and tensors, and computes none of the lab's answers.
"""

from __future__ import annotations

import random

import torch

from infralens.checking import random_dense_model
from infralens.models import ModelConfig, preset, preset_names

FAMILIES = ("mha", "gqa", "mqa", "mla", "sliding", "alternating")


def random_kv_model(rng: random.Random, family: str | None = None) -> ModelConfig:
    """A random model of one KV family: plain MHA/GQA/MQA, MLA, every layer sliding, or alternating windows."""
    family = family or rng.choice(FAMILIES)
    if family in ("mha", "gqa", "mqa"):
        kv_heads = 1 if family == "mqa" else rng.choice([2, 4, 8])
        heads = kv_heads * (1 if family == "mha" else rng.choice([2, 4, 8]))
        return random_dense_model(rng, num_attention_heads=heads, num_key_value_heads=kv_heads)
    if family == "mla":
        base = random_dense_model(rng)
        heads = rng.choice([4, 16, 128])
        rope, nope = rng.choice([16, 32, 64]), rng.choice([32, 64, 128])
        return ModelConfig(
            **{
                **base.__dict__,
                "name": f"random-mla-{rng.randrange(10**6)}",
                "model_type": "deepseek_v3",
                "num_attention_heads": heads,
                "num_key_value_heads": heads,  # what an MLA config.json says; not what the cache holds
                "head_dim": nope + rope,
                "q_lora_rank": rng.choice([None, 384, 1536]),
                "kv_lora_rank": rng.choice([64, 128, 512, 320]),
                "qk_rope_head_dim": rope,
                "qk_nope_head_dim": nope,
                "v_head_dim": rng.choice([64, 128]),
            }
        )
    window = rng.choice([16, 100, 512, 4096])
    if family == "sliding":
        return random_dense_model(rng, sliding_window=window)
    model = random_dense_model(rng, sliding_window=window)
    kinds = [rng.choice(["full_attention", "sliding_attention"]) for _ in range(model.num_hidden_layers)]
    return ModelConfig(**{**model.__dict__, "layer_types": tuple(kinds)})


def fixed_kv_models() -> list[ModelConfig]:
    """The deterministic models every hidden check starts with: each preset, then two models of each
    KV family drawn from fixed seeds, so every family is covered whatever the run's seed."""
    fixed = [preset(name) for name in preset_names()]
    return fixed + [random_kv_model(random.Random(f"lab02-{family}-{index}"), family) for family in FAMILIES for index in range(2)]


def attention_inputs(generator: torch.Generator, batch: int, heads: int, kv_heads: int, tokens: int, head_dim: int):
    """fp32 ``q (B, nh, T, hs)``, ``k`` and ``v (B, kv_heads, T, hs)`` drawn from N(0, 1)."""
    q = torch.randn(batch, heads, tokens, head_dim, generator=generator)
    k = torch.randn(batch, kv_heads, tokens, head_dim, generator=generator)
    v = torch.randn(batch, kv_heads, tokens, head_dim, generator=generator)
    return q, k, v


def describe(model: ModelConfig) -> str:
    """The KV-relevant facts of a model in one line, for failure messages."""
    if model.kv_lora_rank is not None:
        attention = f"MLA with kv_lora_rank {model.kv_lora_rank}, qk_rope_head_dim {model.qk_rope_head_dim} (config num_key_value_heads {model.num_key_value_heads})"
    else:
        attention = f"{model.num_attention_heads} query heads, {model.num_key_value_heads} KV heads × head_dim {model.head_dim}"
    windows = "no sliding window"
    if model.sliding_window is not None:
        sliding = [i for i in range(model.num_hidden_layers) if model.layer_window(i) is not None]
        where = "every layer" if len(sliding) == model.num_hidden_layers else f"layers {sliding}"
        windows = f"window {model.sliding_window} on {where}" if sliding else "no layer slides"
    return f"{model.name} ({model.num_hidden_layers} layers, {attention}, {windows})"
