"""Lab 01's reference against independent oracles: published parameter totals, published figures
of the ZeRO paper and the issue's worked examples, and real PyTorch modules built on the meta device.

The published totals are literal numbers from the model cards (collected in the project's domain
reference); the module oracle builds each architecture the way its Hugging Face modeling file does
(module by module, tied weights shared) and lets ``nn.Module.parameters()`` count.
"""

from __future__ import annotations

import math
import random
import sys
from unittest import mock

import pytest
import torch
from torch import nn

from infralens.loader import LabCode
from infralens.models import ModelConfig, preset

from conftest import REPO

sys.path.insert(0, str(REPO / "checks" / "lab01_memory_ledger"))
from lab01_memory_ledger_inputs import FAMILIES, random_model  # noqa: E402

ledger = LabCode(REPO / "solutions", "lab01_memory_ledger", "solutions").ledger

# Published parameter totals (model cards; the table "Real model configs" of the domain reference).
PUBLISHED = {
    "gpt2": 124_439_808,
    "llama-2-7b": 6_738_415_616,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b-v0.1": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
    "qwen2.5-7b": 7_615_616_512,
    "gemma-2-9b": 9_241_705_984,
    "phi-3-mini-4k": 3_821_079_552,
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_reference_equals_every_published_total(name):
    assert ledger.count_parameters(preset(name)) == PUBLISHED[name]
    assert preset(name).published_parameters == PUBLISHED[name]


def test_deepseek_v3_is_the_published_671b_without_mtp():
    total = ledger.count_parameters(preset("deepseek-v3"))
    assert round(total / 1e9) == 671, "DeepSeek-V3: 671B total parameters (the multi-token-prediction module excluded)"
    # the element count of the main-model tensors in the released checkpoint (FP8 scale tensors and the MTP layer excluded)
    assert total == 671_026_419_200


def test_active_parameters_equal_the_published_active_counts():
    assert round(ledger.active_parameters(preset("mixtral-8x7b")) / 1e8) == 129, "Mistral AI: Mixtral uses 12.9B parameters per token"
    assert math.floor(ledger.active_parameters(preset("deepseek-v3")) / 1e9) == 37, "DeepSeek-V3: 37B activated parameters per token"
    for name in ("llama-3-8b", "gemma-2-9b", "gpt2"):
        assert ledger.active_parameters(preset(name)) == PUBLISHED[name]


def test_weight_bytes_of_llama_3_8b_match_the_decode_bound_of_the_issue():
    # Lab 09's worked figure: Llama-3-8B in bf16 moves ≈ 16.06 GB per decode step
    assert round(ledger.weight_bytes(preset("llama-3-8b"), "bf16") / 1e9, 2) == 16.06
    assert ledger.weight_bytes(preset("llama-3-8b"), "int4") * 4 == ledger.weight_bytes(preset("llama-3-8b"), "bf16")


def test_training_ledger_worked_figures_of_the_issue():
    # 7B parameters, fp16 parameters and gradients, 8 bytes/param optimizer state, DP = 8, ZeRO-3 → 10.5 GB per rank
    assert ledger.training_memory_per_rank(7 * 10**9, 8, 3, param_bytes=2, grad_bytes=2, optimizer_bytes=8).total == 10_500_000_000
    assert ledger.ring_allreduce_bytes_per_rank(2e9, 8) == 3.5e9
    assert round(100 * ledger.pipeline_bubble_fraction(4, 16), 2) == 15.79


def test_zero_paper_figure_1():
    # Rajbhandari et al., ZeRO (2020), Figure 1: Ψ = 7.5B, N_d = 64, K = 12 → 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per device
    published_gb = {0: 120, 1: 31.4, 2: 16.6, 3: 1.9}
    for stage, gb in published_gb.items():
        assert round(ledger.training_memory_per_rank(7_500_000_000, 64, stage).total / 1e9, 1) == gb


# --- the module oracle ------------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        h, heads = m.hidden_size, m.num_attention_heads
        if m.is_mla:  # DeepseekV3Attention
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank is None:
                self.q_proj = nn.Linear(h, heads * qk, bias=False)
            else:
                self.q_a_proj = nn.Linear(h, m.q_lora_rank, bias=m.attention_bias)
                self.q_a_layernorm = _norm(m, m.q_lora_rank)
                self.q_b_proj = nn.Linear(m.q_lora_rank, heads * qk, bias=False)
            self.kv_a_proj_with_mqa = nn.Linear(h, m.kv_lora_rank + m.qk_rope_head_dim, bias=m.attention_bias)
            self.kv_a_layernorm = _norm(m, m.kv_lora_rank)
            self.kv_b_proj = nn.Linear(m.kv_lora_rank, heads * (m.qk_nope_head_dim + m.v_head_dim), bias=False)
            self.o_proj = nn.Linear(heads * m.v_head_dim, h, bias=m.attention_output_bias)
        else:
            self.q_proj = nn.Linear(h, heads * m.head_dim, bias=m.attention_bias)
            self.k_proj = nn.Linear(h, m.num_key_value_heads * m.head_dim, bias=m.attention_bias)
            self.v_proj = nn.Linear(h, m.num_key_value_heads * m.head_dim, bias=m.attention_bias)
            self.o_proj = nn.Linear(heads * m.head_dim, h, bias=m.attention_output_bias)


class _MLP(nn.Module):
    def __init__(self, m: ModelConfig, width: int):
        super().__init__()
        if m.gated_mlp:
            self.gate_proj = nn.Linear(m.hidden_size, width, bias=m.mlp_bias)
        self.up_proj = nn.Linear(m.hidden_size, width, bias=m.mlp_bias)
        self.down_proj = nn.Linear(width, m.hidden_size, bias=m.mlp_bias)


class _MoE(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(m.hidden_size, m.routed_experts, bias=False)
        if m.topk_method == "noaux_tc":
            self.e_score_correction_bias = nn.Parameter(torch.empty(m.routed_experts, device="meta"))
        self.experts = nn.ModuleList(_MLP(m, m.expert_intermediate_size) for _ in range(m.routed_experts))
        if m.n_shared_experts:
            self.shared_experts = _MLP(m, m.expert_intermediate_size * m.n_shared_experts)


def _norm(m: ModelConfig, width: int) -> nn.Module:
    return nn.LayerNorm(width) if m.norm_type == "layer_norm" else nn.RMSNorm(width)


class _Layer(nn.Module):
    def __init__(self, m: ModelConfig, index: int):
        super().__init__()
        self.self_attn = _Attention(m)
        self.mlp = _MoE(m) if m.is_moe_layer(index) else _MLP(m, m.intermediate_size)
        self.norms = nn.ModuleList(_norm(m, m.hidden_size) for _ in range(m.norms_per_layer))


class _CausalLM(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(m.vocab_size, m.hidden_size)
        if m.learned_position_embeddings:
            self.wpe = nn.Embedding(m.max_position_embeddings, m.hidden_size)
        self.layers = nn.ModuleList(_Layer(m, i) for i in range(m.num_hidden_layers))
        self.norm = _norm(m, m.hidden_size)
        self.lm_head = nn.Linear(m.hidden_size, m.vocab_size, bias=False)
        if m.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight


def _module_count(model: ModelConfig) -> int:
    # Counting never reads a value: Linear's and Embedding's random initialisation is skipped (on
    # the meta device it still runs through Python, and took most of the oracle's time).
    skip = lambda module: None  # noqa: E731
    with torch.device("meta"), mock.patch.object(nn.Linear, "reset_parameters", skip), mock.patch.object(nn.Embedding, "reset_parameters", skip):
        return sum(p.numel() for p in _CausalLM(model).parameters())  # parameters() yields a tied weight once


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_module_oracle_reproduces_the_published_totals(name):
    assert _module_count(preset(name)) == PUBLISHED[name]


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_equals_the_module_oracle_on_random_models(family):
    rng = random.Random(f"lab01-{family}")
    for _ in range(25):
        model = random_model(rng, family)
        assert ledger.count_parameters(model) == _module_count(model), model


def test_deepseek_v3_per_layer_counts_equal_the_module_oracle():
    # two layers of DeepSeek-V3's own sizes (one dense, one MoE) keep the oracle quick
    model = ModelConfig(**{**preset("deepseek-v3").__dict__, "num_hidden_layers": 2, "first_k_dense_replace": 1})
    assert ledger.count_parameters(model) == _module_count(model)
