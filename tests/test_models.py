"""The model preset registry and ``ModelConfig.from_hf_config``: real configs load, malformed ones are named."""

from __future__ import annotations

import json

import pytest

from infralens.models import ModelConfig, describe_preset, preset, preset_names

PRESETS = ["gpt2", "llama-2-7b", "llama-3-8b", "llama-3-70b", "mistral-7b-v0.1", "mixtral-8x7b", "qwen2.5-7b", "gemma-2-9b", "phi-3-mini-4k", "deepseek-v3"]

# meta-llama/Meta-Llama-3-8B config.json, as published (every field, rope settings included)
LLAMA_3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}

# deepseek-ai/DeepSeek-V3 config.json (quantization_config and auto_map left out)
DEEPSEEK_V3_CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 129280,
}

# openai-community/gpt2 config.json: the old field names, and no n_inner
GPT2_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}

# google/gemma-2-9b config.json: an older file without layer_types
GEMMA_2_9B_CONFIG = {
    "architectures": ["Gemma2ForCausalLM"],
    "attention_bias": False,
    "attn_logit_softcapping": 50.0,
    "cache_implementation": "hybrid",
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 16,
    "num_hidden_layers": 42,
    "num_key_value_heads": 8,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "vocab_size": 256000,
}


def _same_architecture(a: ModelConfig, b: ModelConfig) -> dict:
    """Fields that differ, ignoring the name and the published total (data a config.json does not hold)."""
    skip = {"name", "published_parameters"}
    return {key: (value, getattr(b, key)) for key, value in a.__dict__.items() if key not in skip and getattr(b, key) != value}


def test_every_preset_of_the_issue_is_registered():
    assert set(PRESETS) <= set(preset_names())
    assert preset_names() == sorted(preset_names())


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_with_its_published_total(name):
    model = preset(name)
    assert model.name == name
    assert model.published_parameters and model.published_parameters > 10**8
    assert model.num_attention_heads % model.num_key_value_heads == 0
    assert hash(model) == hash(preset(name)), "a ModelConfig is frozen and hashable"
    assert describe_preset(name).startswith(name)


@pytest.mark.parametrize(
    ("config", "name"),
    [(LLAMA_3_8B_CONFIG, "llama-3-8b"), (DEEPSEEK_V3_CONFIG, "deepseek-v3"), (GPT2_CONFIG, "gpt2"), (GEMMA_2_9B_CONFIG, "gemma-2-9b")],
    ids=["llama-3-8b", "deepseek-v3", "gpt2", "gemma-2-9b"],
)
def test_a_real_config_json_equals_the_preset(config, name, tmp_path):
    from_dict = ModelConfig.from_hf_config(config, name=name)
    assert _same_architecture(from_dict, preset(name)) == {}
    path = tmp_path / name / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config), encoding="utf-8")
    from_file = ModelConfig.from_hf_config(path)
    assert from_file.name == name, "a config file is named after its folder, as a Hugging Face snapshot is"
    assert _same_architecture(from_file, preset(name)) == {}


def test_gpt2_fields_load_through_the_attribute_map():
    gpt2 = preset("gpt2")
    assert (gpt2.num_hidden_layers, gpt2.hidden_size, gpt2.num_attention_heads, gpt2.head_dim) == (12, 768, 12, 64)
    assert gpt2.intermediate_size == 3072, "GPT-2 without n_inner uses 4 × n_embd"
    assert gpt2.max_position_embeddings == 1024
    assert (gpt2.tie_word_embeddings, gpt2.learned_position_embeddings, gpt2.norm_type, gpt2.gated_mlp) == (True, True, "layer_norm", False)
    assert (gpt2.attention_bias, gpt2.attention_output_bias, gpt2.mlp_bias) == (True, True, True)
    wider = ModelConfig.from_hf_config({**GPT2_CONFIG, "n_inner": 1000})
    assert wider.intermediate_size == 1000


def test_architecture_facts_of_each_family():
    qwen = preset("qwen2.5-7b")
    assert (qwen.attention_bias, qwen.attention_output_bias) == (True, False), "Qwen2 has q/k/v biases and a bias-free o_proj"
    assert qwen.sliding_window is None and qwen.layer_types is None
    llama = preset("llama-3-8b")
    assert (llama.attention_bias, llama.attention_output_bias, llama.mlp_bias, llama.gated_mlp, llama.norm_type, llama.norms_per_layer) == (False, False, False, True, "rms_norm", 2)
    assert preset("llama-2-7b").head_dim == 128 and preset("phi-3-mini-4k").head_dim == 96
    gemma = preset("gemma-2-9b")
    assert (gemma.norms_per_layer, gemma.tie_word_embeddings, gemma.head_dim) == (4, True, 256)
    mixtral = preset("mixtral-8x7b")
    assert (mixtral.routed_experts, mixtral.expert_intermediate_size, mixtral.num_experts_per_tok, mixtral.n_shared_experts) == (8, 14336, 2, None)
    assert all(mixtral.is_moe_layer(i) for i in range(32))
    assert preset("llama-3-8b").routed_experts is None and not preset("llama-3-8b").is_moe_layer(0)


def test_deepseek_v3_mla_and_experts():
    ds = preset("deepseek-v3")
    assert ds.is_mla and (ds.q_lora_rank, ds.kv_lora_rank, ds.qk_nope_head_dim, ds.qk_rope_head_dim, ds.v_head_dim) == (1536, 512, 128, 64, 128)
    assert ds.head_dim == 192, "an MLA query/key head is qk_nope_head_dim + qk_rope_head_dim wide"
    assert ds.num_key_value_heads == 128, "the config's own (misleading for the cache) value is kept"
    assert (ds.routed_experts, ds.n_shared_experts, ds.expert_intermediate_size, ds.num_experts_per_tok, ds.topk_method) == (256, 1, 2048, 8, "noaux_tc")
    assert [ds.is_moe_layer(i) for i in range(5)] == [False, False, False, True, True]
    assert not preset("llama-3-8b").is_mla
    for bad in (-1, 61, 1.0, True):
        with pytest.raises(ValueError, match=r"layer_index must be an integer in \[0, 61\)"):
            ds.is_moe_layer(bad)


def test_layer_window_resolves_every_kind_of_window():
    gemma = preset("gemma-2-9b")
    assert [gemma.layer_window(i) for i in range(6)] == [4096, None, 4096, None, 4096, None]
    assert sum(gemma.layer_window(i) is not None for i in range(42)) == 21
    assert all(preset("mistral-7b-v0.1").layer_window(i) == 4096 for i in range(32))
    assert all(preset("phi-3-mini-4k").layer_window(i) == 2047 for i in range(32))
    for name in ("llama-3-8b", "qwen2.5-7b", "mixtral-8x7b", "deepseek-v3", "gpt2"):
        model = preset(name)
        assert all(model.layer_window(i) is None for i in range(model.num_hidden_layers)), name
    for bad in (-1, 42, 1.0, True):
        with pytest.raises(ValueError, match="layer_index"):
            gemma.layer_window(bad)


def test_qwen2_sliding_window_follows_use_sliding_window_and_max_window_layers():
    base = {"model_type": "qwen2", "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100, "sliding_window": 32}
    assert ModelConfig.from_hf_config({**base, "use_sliding_window": False, "max_window_layers": 2}).sliding_window is None
    model = ModelConfig.from_hf_config({**base, "use_sliding_window": True, "max_window_layers": 2})
    assert [model.layer_window(i) for i in range(4)] == [None, None, 32, 32]
    assert ModelConfig.from_hf_config({**base, "use_sliding_window": True, "max_window_layers": 4}).sliding_window is None


def test_explicit_layer_types_win_and_load_as_a_tuple():
    config = {**LLAMA_3_8B_CONFIG, "num_hidden_layers": 3, "sliding_window": 128, "layer_types": ["full_attention", "sliding_attention", "full_attention"]}
    model = ModelConfig.from_hf_config(config)
    assert model.layer_types == ("full_attention", "sliding_attention", "full_attention")
    assert [model.layer_window(i) for i in range(3)] == [None, 128, None]
    hash(model)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_hidden_layers": None}, "num_hidden_layers"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_size": -4096}, "hidden_size"),
        ({"intermediate_size": True}, "intermediate_size"),
        ({"num_attention_heads": 32.0}, "num_attention_heads"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
        ({"head_dim": "128"}, "head_dim"),
        ({"tie_word_embeddings": "no"}, "tie_word_embeddings"),
        ({"attention_bias": 1}, "attention_bias"),
        ({"mlp_bias": None}, "mlp_bias"),
        ({"sliding_window": 0}, "sliding_window"),
        ({"layer_types": ["full_attention"] * 31}, "layer_types"),
        ({"layer_types": ["full_attention"] * 31 + ["local"]}, "layer_types"),
        ({"layer_types": ["sliding_attention"] * 32}, "sliding_window"),
        ({"num_local_experts": 8}, "num_experts_per_tok"),
        ({"num_local_experts": 8, "num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({"num_local_experts": 0, "num_experts_per_tok": 2}, "num_local_experts"),
        ({"n_routed_experts": 8, "num_experts_per_tok": 2, "first_k_dense_replace": -1}, "first_k_dense_replace"),
        ({"n_routed_experts": 8, "num_experts_per_tok": 2, "first_k_dense_replace": 33}, "first_k_dense_replace"),
        ({"kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64}, "v_head_dim"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_malformed_configs_name_the_field(change, field):
    config = {key: value for key, value in {**LLAMA_3_8B_CONFIG, **change}.items() if value is not None or key == "mlp_bias"}
    with pytest.raises(ValueError, match=field):
        ModelConfig.from_hf_config(config)


def test_missing_field_is_named_with_its_old_spelling():
    config = {key: value for key, value in GPT2_CONFIG.items() if key != "n_layer"}
    with pytest.raises(ValueError, match=r"num_hidden_layers \(or n_layer\)"):
        ModelConfig.from_hf_config(config)


def test_heads_that_do_not_divide_hidden_need_head_dim():
    config = {**LLAMA_3_8B_CONFIG, "num_attention_heads": 24, "num_key_value_heads": 8}
    with pytest.raises(ValueError, match="head_dim"):
        ModelConfig.from_hf_config(config)
    assert ModelConfig.from_hf_config({**config, "head_dim": 160}).head_dim == 160


def test_bad_files_and_non_objects_raise_value_error(tmp_path):
    broken = tmp_path / "config.json"
    broken.write_text("{\"hidden_size\": 4096,", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_hf_config(broken)
    with pytest.raises(ValueError, match="no config file"):
        ModelConfig.from_hf_config(tmp_path / "missing" / "config.json")
    with pytest.raises(ValueError, match="JSON object"):
        ModelConfig.from_hf_config([1, 2, 3])


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_round_trips_through_a_dict(name):
    model = preset(name)
    fields = {key: (list(value) if key == "layer_types" and value else value) for key, value in model.__dict__.items()}
    assert _same_architecture(ModelConfig.from_hf_config(fields, name=name), model) == {}


def test_learned_positions_need_a_table_size():
    config = {key: value for key, value in GPT2_CONFIG.items() if key not in ("n_positions", "n_ctx")}
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ModelConfig.from_hf_config(config)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="llama-3-8b"):
        preset("llama-4")
