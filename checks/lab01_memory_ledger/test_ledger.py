"""Public checks for Lab 01 — the memory ledger.

Exact counts of ten real models (each equal to its published total), worked figures of the
training ledger, properties on random models, and the lab's misunderstandings turned into checks.
A failing check names the quantity, the expected and actual values, and what usually causes the gap.
Return types are part of each exercise: parameter and byte counts are ``int`` (never a float or a
bool), the all-reduce bytes and the bubble are floats (an ``int`` is accepted, a ``bool`` never).
"""

from __future__ import annotations

import math

import pytest

from infralens.checking import assert_exact, expect_correct, expect_value_error, random_dense_model, summarize
from infralens.models import ModelConfig, preset
from lab01_memory_ledger_inputs import describe, random_model

check = pytest.mark.check

FIELDS = ("embeddings", "attention", "mlp", "router", "norms", "lm_head")
WHY_FIELD = {
    "embeddings": "vocab_size × hidden_size, plus max_position_embeddings × hidden_size when the model learns its positions (GPT-2)",
    "attention": "num_hidden_layers × attention_parameters(model); see that exercise's checks",
    "mlp": "mlp_parameters summed over every layer; see that exercise's checks",
    "router": "hidden_size × routed experts in each MoE layer (plus one routing bias per expert for topk_method 'noaux_tc'); 0 for dense models",
    "norms": "norms_per_layer norms in every layer plus the final norm; LayerNorm stores weight and bias; MLA adds its q and kv latent norms",
    "lm_head": "vocab_size × hidden_size, or 0 when tie_word_embeddings is true (GPT-2, Gemma-2 reuse the embedding matrix)",
}

# The expected breakdown of each preset (embeddings, attention, mlp, router, norms, lm_head); each sums to the published total.
BREAKDOWNS = {
    "gpt2": (39_383_808, 28_348_416, 56_669_184, 0, 38_400, 0),
    "llama-2-7b": (131_072_000, 2_147_483_648, 4_328_521_728, 0, 266_240, 131_072_000),
    "llama-3-8b": (525_336_576, 1_342_177_280, 5_637_144_576, 0, 266_240, 525_336_576),
    "llama-3-70b": (1_050_673_152, 12_079_595_520, 56_371_445_760, 0, 1_318_912, 1_050_673_152),
    "mistral-7b-v0.1": (131_072_000, 1_342_177_280, 5_637_144_576, 0, 266_240, 131_072_000),
    "mixtral-8x7b": (131_072_000, 1_342_177_280, 45_097_156_608, 1_048_576, 266_240, 131_072_000),
    "qwen2.5-7b": (544_997_376, 822_212_608, 5_703_204_864, 0, 204_288, 544_997_376),
    "gemma-2-9b": (917_504_000, 1_849_688_064, 6_473_908_224, 0, 605_696, 0),
    "phi-3-mini-4k": (98_500_608, 1_207_959_552, 2_415_919_104, 0, 199_680, 98_500_608),
    "deepseek-v3": (926_679_040, 11_413_422_080, 657_652_187_136, 106_445_312, 1_006_592, 926_679_040),
}
TOTALS = {
    "gpt2": 124_439_808,
    "llama-2-7b": 6_738_415_616,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b-v0.1": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
    "qwen2.5-7b": 7_615_616_512,
    "gemma-2-9b": 9_241_705_984,
    "phi-3-mini-4k": 3_821_079_552,
    "deepseek-v3": 671_026_419_200,  # published as "671B" (main model, without the multi-token-prediction module)
}


def _explain(actual, expected, known_mistakes):
    """The usual cause of a wrong count, when ``actual`` is one of the known wrong answers."""
    return known_mistakes.get(actual, "") if type(actual) in (int, float) else ""


def _fields(breakdown, what: str) -> tuple[int, ...]:
    """The six counts of a ``ParameterBreakdown``, each checked to be an ``int``."""
    values = tuple(getattr(breakdown, field, None) for field in FIELDS)
    for field, value in zip(FIELDS, values):
        if type(value) is not int:
            pytest.fail(f"{what}.{field} is {type(value).__name__} {summarize(value)}; parameter counts are int (never a float or a bool)", pytrace=False)
    return values


def _float(value, what: str) -> float:
    """``value`` if it is a float or an int (never a bool, a string or a NumPy scalar); else a failure naming the type."""
    if type(value) not in (int, float):
        pytest.fail(f"{what} returned {type(value).__name__} {summarize(value)}; it should be a float (an int is accepted, a bool never)", pytrace=False)
    return value


def _memory(memory) -> tuple:
    """A ``TrainingMemory`` as ``(parameters, gradients, optimizer_states)``, for comparisons that check each field's type."""
    return tuple(getattr(memory, field, None) for field in ("parameters", "gradients", "optimizer_states"))


# --- attention_parameters ---------------------------------------------------------------------


@check("attention_parameters", points=2)
@pytest.mark.parametrize(
    ("name", "expected", "story", "known_mistakes"),
    [
        ("llama-3-8b", 41_943_040, "q 4096·4096 + k, v 4096·1024 each + o 4096·4096",
         {67_108_864: "k_proj and v_proj were sized with num_attention_heads; under GQA they have num_key_value_heads (8) heads"}),
        ("llama-2-7b", 67_108_864, "MHA: four 4096·4096 projections", {}),
        ("qwen2.5-7b", 29_364_736, "GQA 28/4 heads of 128, plus biases on q (3584), k (512) and v (512), none on o_proj",
         {29_360_128: "Qwen2's q, k and v projections carry biases (model.attention_bias)",
          29_368_320: "Qwen2's o_proj has no bias (model.attention_output_bias is False)"}),
        ("gpt2", 2_362_368, "c_attn 768·2304 + 2304 bias, c_proj 768·768 + 768 bias",
         {2_359_296: "GPT-2's projections carry biases (attention_bias and attention_output_bias)"}),
        ("gemma-2-9b", 44_040_192, "16 heads × 256 = 4096 wide queries from a 3584 hidden: use head_dim, not hidden/heads",
         {38_535_168: "Gemma-2's head_dim (256) is not hidden_size / num_attention_heads (224): always use model.head_dim"}),
        ("phi-3-mini-4k", 37_748_736, "fused qkv_proj 3072·9216 + o_proj 3072·3072: fusing does not change the count", {}),
        ("deepseek-v3", 187_105_280,
         "MLA: q_a 7168·1536 + q_b 1536·(128·192) + kv_a 7168·(512+64) + kv_b 512·(128·256) + o 128·128·7168",
         {187_107_328: "MLA's q_a_layernorm and kv_a_layernorm are norms: count them in parameter_breakdown's norms",
          704_643_072: "MLA has no per-head k_proj/v_proj from hidden_size: keys and values come from the kv_lora_rank latent (kv_a_proj_with_mqa, kv_b_proj)",
          245_366_784: "the RoPE key of kv_a_proj_with_mqa is ONE qk_rope_head_dim vector shared by all heads, not one per head"}),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 else "",
)
def test_attention_parameters_of_real_models(lab, name, expected, story, known_mistakes):
    actual = lab.ledger.attention_parameters(preset(name))
    assert_exact(actual, expected, f"attention_parameters({name})", f"{story}. {_explain(actual, expected, known_mistakes)}")


@check("attention_parameters", points=1)
@pytest.mark.parametrize(
    ("changes", "expected", "story", "known_mistakes"),
    [
        ({}, 349, "q_a 8·4 + 4 bias, q_b 4·2·5, kv_a_proj_with_mqa 8·(7 + 2) + 9 bias, kv_b 7·2·(3 + 5), o 2·5·8",
         {345: "q_a_proj carries a bias of q_lora_rank (4) when attention_bias is true",
          340: "kv_a_proj_with_mqa carries a bias of kv_lora_rank + qk_rope_head_dim (9) when attention_bias is true",
          336: "with attention_bias, q_a_proj (4) and kv_a_proj_with_mqa (9) carry biases",
          359: "q_b_proj has no bias in MLA: only q_a_proj and kv_a_proj_with_mqa do",
          365: "kv_b_proj has no bias in MLA: only q_a_proj and kv_a_proj_with_mqa do",
          357: "o_proj carries a bias only with attention_output_bias"}),
        ({"q_lora_rank": None}, 353, "one q_proj 8·2·5 without bias, kv_a 8·9 + 9 bias, kv_b 7·2·8, o 2·5·8",
         {344: "kv_a_proj_with_mqa carries a bias of kv_lora_rank + qk_rope_head_dim (9) when attention_bias is true",
          363: "without q_lora_rank, MLA's single q_proj has no bias"}),
        ({"attention_bias": False}, 336, "the same projections without biases", {349: "attention_bias is false: no q_a or kv_a bias"}),
        ({"attention_output_bias": True}, 357, "349 plus o_proj's bias of hidden_size 8",
         {349: "attention_output_bias adds hidden_size (8) for o_proj's bias", 353: "q_a_proj carries a bias of q_lora_rank (4) when attention_bias is true",
          348: "kv_a_proj_with_mqa carries a bias of kv_lora_rank + qk_rope_head_dim (9) when attention_bias is true"}),
    ],
    ids=["q-lora", "no-q-lora", "no-bias", "output-bias"],
)
def test_mla_biases_by_hand(lab, changes, expected, story, known_mistakes):
    # hidden 8, 2 heads, q_lora_rank 4, kv_lora_rank 7, qk_nope_head_dim 3 + qk_rope_head_dim 2, v_head_dim 5, attention_bias on
    fields = dict(name="tiny-mla", model_type="deepseek_v3", num_hidden_layers=1, hidden_size=8, num_attention_heads=2, num_key_value_heads=2,
                  head_dim=5, intermediate_size=16, vocab_size=10, attention_bias=True, q_lora_rank=4, kv_lora_rank=7,
                  qk_nope_head_dim=3, qk_rope_head_dim=2, v_head_dim=5)
    actual = lab.ledger.attention_parameters(ModelConfig(**{**fields, **changes}))
    shown = ", ".join(f"{key}={value!r}" for key, value in changes.items()) or "q_lora_rank=4"
    assert_exact(actual, expected, f"attention_parameters(tiny MLA with attention_bias=True, {shown})", f"{story}. {_explain(actual, expected, known_mistakes)}")


@check("attention_parameters", points=1)
def test_attention_shrinks_with_fewer_kv_heads(lab, rng):
    ledger = lab.ledger
    for _ in range(20):
        model = random_dense_model(rng)
        mha = ModelConfig(**{**model.__dict__, "num_key_value_heads": model.num_attention_heads})
        mqa = ModelConfig(**{**model.__dict__, "num_key_value_heads": 1})
        saved = ledger.attention_parameters(mha) - ledger.attention_parameters(mqa)
        expected = 2 * model.hidden_size * model.head_dim * (model.num_attention_heads - 1)
        assert saved == expected, (
            f"MHA minus MQA attention parameters for {describe(model)}: {saved:_}, expected {expected:_} — "
            "only k_proj and v_proj shrink, from num_attention_heads to one head of head_dim each"
        )


# --- mlp_parameters ---------------------------------------------------------------------------


@check("mlp_parameters", points=2)
@pytest.mark.parametrize(
    ("name", "layer_index", "expected", "story", "known_mistakes"),
    [
        ("llama-3-8b", 0, 176_160_768, "gate, up and down: 3 × 4096 × 14336", {117_440_512: "a Llama MLP is gated: gate_proj, up_proj and down_proj are three matrices"}),
        ("gpt2", 11, 4_722_432, "c_fc 768·3072 + 3072, c_proj 3072·768 + 768",
         {4_718_592: "GPT-2's c_fc and c_proj carry biases (model.mlp_bias)", 7_077_888: "GPT-2's MLP is not gated: two matrices (model.gated_mlp is False)"}),
        ("mixtral-8x7b", 0, 1_409_286_144, "all 8 experts are stored: 8 × 3 × 4096 × 14336",
         {176_160_768: "an MoE layer stores every expert (routed_experts of them), not one MLP",
          352_321_536: "num_experts_per_tok (2) experts run per token, but all 8 are stored"}),
        ("deepseek-v3", 0, 396_361_728, "the first first_k_dense_replace = 3 layers are dense: 3 × 7168 × 18432",
         {11_318_329_344: "DeepSeek-V3's layers 0, 1, 2 are dense (first_k_dense_replace = 3): ask model.is_moe_layer(layer_index)"}),
        ("deepseek-v3", 3, 11_318_329_344, "256 routed + 1 shared expert, each 3 × 7168 × 2048",
         {11_274_289_152: "the shared expert (n_shared_experts = 1) is stored next to the 256 routed ones",
          396_361_728: "layer 3 is an MoE layer (first_k_dense_replace = 3 dense layers: 0, 1, 2)",
          101_864_964_096: "experts use moe_intermediate_size (2048), not intermediate_size (18432): use model.expert_intermediate_size"}),
        ("phi-3-mini-4k", 31, 75_497_472, "fused gate_up_proj 3072·16384 + down_proj 8192·3072", {}),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 else "",
)
def test_mlp_parameters_of_real_models(lab, name, layer_index, expected, story, known_mistakes):
    actual = lab.ledger.mlp_parameters(preset(name), layer_index)
    assert_exact(actual, expected, f"mlp_parameters({name}, layer_index={layer_index})", f"{story}. {_explain(actual, expected, known_mistakes)}")


@check("mlp_parameters", points=1)
@pytest.mark.parametrize("bad", [-1, 32, 1.0, True, None], ids=["minus-one", "past-the-end", "float", "bool", "none"])
def test_mlp_parameters_rejects_a_layer_that_does_not_exist(lab, bad):
    expect_correct(lab.ledger.mlp_parameters, preset("llama-3-8b"), 31, expected=176_160_768, what="mlp_parameters(llama-3-8b, layer_index=31)")
    expect_value_error(lab.ledger.mlp_parameters, preset("llama-3-8b"), bad, what=f"mlp_parameters(llama-3-8b, layer_index={bad!r}) (32 layers: 0..31)", must_mention=(bad,))


# --- parameter_breakdown ----------------------------------------------------------------------


@check("parameter_breakdown", points=3)
@pytest.mark.parametrize("name", list(BREAKDOWNS))
def test_breakdown_of_each_preset_sums_to_its_published_total(lab, name):
    model = preset(name)
    actual = _fields(lab.ledger.parameter_breakdown(model), f"parameter_breakdown({name})")
    wrong = [
        f"  {field}: {got:_}, expected {want:_} ({got - want:+_}) — {WHY_FIELD[field]}"
        for field, got, want in zip(FIELDS, actual, BREAKDOWNS[name])
        if got != want
    ]
    assert not wrong, f"parameter_breakdown({name}) differs from the published architecture:\n" + "\n".join(wrong)
    assert_exact(lab.ledger.count_parameters(model), TOTALS[name], f"count_parameters({name})", "it should be parameter_breakdown(model).total")


@check("parameter_breakdown", points=1)
def test_breakdown_is_consistent_with_the_per_layer_counts(lab, rng):
    ledger = lab.ledger
    for _ in range(15):
        model = random_model(rng)
        breakdown = ledger.parameter_breakdown(model)
        _fields(breakdown, f"parameter_breakdown({describe(model)})")
        layers = model.num_hidden_layers
        assert breakdown.attention == layers * ledger.attention_parameters(model), (
            f"breakdown.attention = {breakdown.attention:_} for {describe(model)}, expected {layers} layers × attention_parameters"
        )
        mlp = sum(ledger.mlp_parameters(model, i) for i in range(layers))
        assert breakdown.mlp == mlp, f"breakdown.mlp = {breakdown.mlp:_} for {describe(model)}, expected the sum of mlp_parameters over the layers, {mlp:_}"
        assert (breakdown.lm_head == 0) == model.tie_word_embeddings, (
            f"breakdown.lm_head = {breakdown.lm_head:_} with tie_word_embeddings={model.tie_word_embeddings}: a tied head is the embedding matrix, stored once"
        )
        assert (breakdown.router == 0) == (model.routed_experts is None or model.first_k_dense_replace == layers), (
            f"breakdown.router = {breakdown.router:_} for {describe(model)}: only MoE layers have a router"
        )


@check("parameter_breakdown", points=1)
def test_tiny_model_counted_by_hand(lab):
    # 1 layer, hidden 4, 2 heads / 1 KV head of 2, MLP 6, vocab 10, untied, RMSNorm:
    # attention 4·4 + 2·4·2 + 4·4 = 48; MLP 3·4·6 = 72; norms 2·4 + 4 = 12; embeddings 40; lm_head 40.
    model = ModelConfig("tiny", "llama", 1, 4, 2, 1, 2, 6, 10)
    actual = _fields(lab.ledger.parameter_breakdown(model), "parameter_breakdown(tiny)")
    assert actual == (40, 48, 72, 0, 12, 40), f"parameter_breakdown(tiny) = {dict(zip(FIELDS, actual))}, expected embeddings 40, attention 48, mlp 72, router 0, norms 12, lm_head 40"


# --- active_parameters ------------------------------------------------------------------------


@check("active_parameters", points=2)
@pytest.mark.parametrize(
    ("name", "expected", "story", "known_mistakes"),
    [
        ("mixtral-8x7b", 12_879_925_248, "2 of 8 experts per token: Mistral AI's 12.9B",
         {46_702_792_704: "a token runs only num_experts_per_tok (2) of the 8 experts", 12_617_781_248: "embeddings and lm_head count as active (as model cards count them)"}),
        ("deepseek-v3", 37_552_297_472, "8 of 256 routed experts + the shared one in 58 MoE layers: DeepSeek's 37B",
         {34_997_966_336: "the shared expert runs for every token: it is active",
          35_698_939_392: "embeddings and lm_head count as active (as model cards count them)"}),
        ("llama-3-8b", 8_030_261_248, "a dense model uses every parameter for every token: count_parameters(model)", {}),
        ("gemma-2-9b", 9_241_705_984, "a dense model uses every parameter for every token: count_parameters(model)", {}),
    ],
    ids=["mixtral-8x7b", "deepseek-v3", "llama-3-8b", "gemma-2-9b"],
)
def test_active_parameters_of_real_models(lab, name, expected, story, known_mistakes):
    actual = lab.ledger.active_parameters(preset(name))
    assert_exact(actual, expected, f"active_parameters({name})", f"{story}. {_explain(actual, expected, known_mistakes)}")


@check("active_parameters", points=1)
def test_active_parameters_grow_with_experts_per_token(lab, rng):
    ledger = lab.ledger
    for _ in range(10):
        model = random_model(rng, "mixtral")
        fewer = ModelConfig(**{**model.__dict__, "num_experts_per_tok": 1})
        every = ModelConfig(**{**model.__dict__, "num_experts_per_tok": model.routed_experts})
        low, high, total = ledger.active_parameters(fewer), ledger.active_parameters(every), ledger.count_parameters(model)
        assert high == total, f"with every expert active ({model.routed_experts}/{model.routed_experts}) active_parameters is {high:_}, expected the total {total:_}"
        assert low < high, f"active_parameters with 1 expert per token ({low:_}) should be below all {model.routed_experts} ({high:_}) for {describe(model)}"


# --- weight_bytes -----------------------------------------------------------------------------


@check("weight_bytes", points=2)
@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("fp32", 32_121_044_992), ("bf16", 16_060_522_496), ("fp16", 16_060_522_496), ("fp8", 8_030_261_248), ("int8", 8_030_261_248), ("int4", 4_015_130_624)],
)
def test_weight_bytes_of_llama_3_8b(lab, dtype, expected):
    actual = lab.ledger.weight_bytes(preset("llama-3-8b"), dtype)
    assert_exact(
        actual, expected, f"weight_bytes(llama-3-8b, {dtype!r})",
        f"8_030_261_248 parameters × {expected / 8_030_261_248:g} bytes ({expected / 1e9:.2f} GB, {expected / 2**30:.2f} GiB): bytes as an int, not bits, GiB or GB",
    )


@check("weight_bytes", points=1)
def test_int4_rounds_half_a_byte_up(lab):
    # 1 layer, hidden 3, 1 head of 3, MLP 5, vocab 7, tied: 36 + 45 + 9 + 21 = 111 parameters
    model = ModelConfig("odd", "llama", 1, 3, 1, 1, 3, 5, 7, tie_word_embeddings=True)
    count = lab.ledger.count_parameters(model)
    assert count == 111, f"this check's tiny model has 111 parameters, but count_parameters gives {count}: fix parameter_breakdown first"
    assert_exact(lab.ledger.weight_bytes(model, "int4"), 56, "weight_bytes(111 parameters, 'int4')", "55.5 bytes of codes occupy 56 whole bytes (an int, not a float)")
    assert_exact(lab.ledger.weight_bytes(model, "bf16"), 222, "weight_bytes(111 parameters, 'bf16')", "2 bytes each, an int")


@check("weight_bytes", points=1)
@pytest.mark.parametrize("bad", ["float16", "BF16", "int3", "nf4", ""], ids=["float16", "BF16", "int3", "nf4", "empty"])
def test_weight_bytes_rejects_unknown_dtypes(lab, bad):
    expect_correct(lab.ledger.weight_bytes, preset("llama-3-8b"), "bf16", expected=16_060_522_496, what="weight_bytes(llama-3-8b, 'bf16')")
    expect_value_error(lab.ledger.weight_bytes, preset("gpt2"), bad, what=f"weight_bytes(gpt2, {bad!r}) (dtypes: fp32 bf16 fp16 fp8 int8 int4)", must_mention=(repr(bad),))


# --- training_memory_per_rank -----------------------------------------------------------------

SEVEN_B = 7 * 10**9


@check("training_memory_per_rank", points=3)
@pytest.mark.parametrize(
    ("zero_stage", "expected", "story"),
    [
        (0, (14_000_000_000, 14_000_000_000, 56_000_000_000), "plain data parallelism replicates everything: 12 bytes × 7e9 = 84 GB"),
        (1, (14_000_000_000, 14_000_000_000, 7_000_000_000), "ZeRO-1 shards only the optimizer state: 56 GB / 8"),
        (2, (14_000_000_000, 1_750_000_000, 7_000_000_000), "ZeRO-2 also shards the gradients: 14 GB / 8"),
        (3, (1_750_000_000, 1_750_000_000, 7_000_000_000), "ZeRO-3 shards parameters too: 84 GB / 8 = 10.5 GB per rank"),
    ],
)
def test_training_memory_of_7b_on_8_ranks(lab, zero_stage, expected, story):
    memory = lab.ledger.training_memory_per_rank(SEVEN_B, 8, zero_stage, param_bytes=2, grad_bytes=2, optimizer_bytes=8)
    assert_exact(
        _memory(memory), expected,
        f"training_memory_per_rank(7e9, world_size=8, zero_stage={zero_stage}, fp16 params and grads, 8 optimizer bytes) as (parameters, gradients, optimizer_states)",
        f"{story}; bytes are ints",
    )


@check("training_memory_per_rank", points=1)
def test_training_memory_defaults_are_mixed_precision_adam(lab):
    # ZeRO paper, Figure 1: 7.5B parameters, 64 ranks, K = 12 → 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per rank
    expected = {0: 120_000_000_000, 1: 31_406_250_000, 2: 16_640_625_000, 3: 1_875_000_000}
    for stage, want in expected.items():
        total = lab.ledger.training_memory_per_rank(7_500_000_000, 64, stage).total
        assert type(total) is int and total == want, (
            f"training_memory_per_rank(7.5e9, 64, zero_stage={stage}) with default bytes = {total:_}, expected {want:_} "
            "(the ZeRO paper's Figure 1: 2 + 2 bytes of fp16 parameter and gradient, K = 12 bytes of fp32 master copy and Adam moments)"
        )


@check("training_memory_per_rank", points=1)
def test_shards_round_up_and_one_rank_shards_nothing(lab):
    ledger = lab.ledger
    assert_exact(
        _memory(ledger.training_memory_per_rank(10, 4, 3)), (6, 6, 36), "training_memory_per_rank(10, 4, zero_stage=3) as (parameters, gradients, optimizer_states)",
        "10 parameters over 4 ranks: shards of ceil(10/4) = 3 parameters, so 6, 6 and 36 bytes",
    )
    single = {stage: ledger.training_memory_per_rank(1000, 1, stage).total for stage in (0, 1, 2, 3)}
    assert set(single.values()) == {16_000}, f"with one rank every ZeRO stage holds everything (16 bytes × 1000): got {single}"


@check("training_memory_per_rank", points=1)
@pytest.mark.parametrize(
    ("args", "kwargs", "bad"),
    [
        ((SEVEN_B, 0, 3), {}, 0),
        ((SEVEN_B, -8, 0), {}, -8),
        ((SEVEN_B, 8, 4), {}, 4),
        ((SEVEN_B, 8, -1), {}, -1),
        ((-5, 8, 1), {}, -5),
        ((SEVEN_B, 8, 1), {"optimizer_bytes": -12}, -12),
        ((SEVEN_B, 8, 1), {"param_bytes": -2}, -2),
        ((SEVEN_B, 2.5, 1), {}, 2.5),
        ((SEVEN_B, 8, True), {}, True),
        ((SEVEN_B, 8, False), {}, False),
        ((SEVEN_B, True, 1), {}, True),
        ((True, 8, 1), {}, True),
        ((SEVEN_B, 8, 1), {"grad_bytes": True}, True),
        ((SEVEN_B, 8, "3"), {}, "'3'"),
    ],
    ids=["world-0", "world-negative", "stage-4", "stage-negative", "parameters-negative", "optimizer-bytes-negative", "param-bytes-negative", "world-float",
         "stage-true", "stage-false", "world-true", "parameters-true", "grad-bytes-true", "stage-string"],
)
def test_training_memory_rejects_bad_values(lab, args, kwargs, bad):
    # True == 1 and hash(True) == hash(1): `stage in (0, 1, 2, 3)` accepts it unless bools are refused first
    expect_correct(
        lambda: _memory(lab.ledger.training_memory_per_rank(SEVEN_B, 8, 1, param_bytes=2, grad_bytes=2, optimizer_bytes=8)),
        expected=(14_000_000_000, 14_000_000_000, 7_000_000_000), what="training_memory_per_rank(7e9, 8, zero_stage=1, 2, 2, 8) as (parameters, gradients, optimizer_states)",
    )
    shown = ", ".join([*map(repr, args), *(f"{key}={value!r}" for key, value in kwargs.items())])
    expect_value_error(lab.ledger.training_memory_per_rank, *args, what=f"training_memory_per_rank({shown})", must_mention=(bad,), **kwargs)


# --- ring_allreduce_bytes_per_rank ------------------------------------------------------------


@check("ring_allreduce_bytes_per_rank", points=2)
@pytest.mark.parametrize(
    ("payload", "world_size", "expected", "story"),
    [
        (2e9, 8, 3.5e9, "2 × 7/8 × 2 GB: reduce-scatter then all-gather"),
        (2e9, 1, 0.0, "one rank has nobody to talk to"),
        (2e9, 2, 2e9, "2 × 1/2: each rank sends half the payload twice"),
        (1024, 1024, 2046.0, "close to 2 × payload for large rings"),
        (1000, 3, 4000 / 3, "2 × 2/3 × 1000 = 1333.33...: a chunk need not be whole bytes, so divide with /, not //"),
        (2e9, 3, 8e9 / 3, "2 × 2/3 × 2 GB = 2.67 GB: true division, not floor division"),
    ],
)
def test_ring_allreduce_worked_figures(lab, payload, world_size, expected, story):
    actual = _float(lab.ledger.ring_allreduce_bytes_per_rank(payload, world_size), f"ring_allreduce_bytes_per_rank({payload:g}, {world_size})")
    # one multiplication and one division of exact small integers: within 1e-12 relative of the exact value
    assert math.isclose(actual, expected, rel_tol=1e-12, abs_tol=0.0), (
        f"ring_allreduce_bytes_per_rank({payload:g}, world_size={world_size}) = {actual!r}, expected {expected:g} ({story}); "
        "a rank sends 2 (N − 1) chunks of payload / N"
    )


@check("ring_allreduce_bytes_per_rank", points=1)
@pytest.mark.parametrize(
    ("payload", "world_size", "bad"),
    [(2e9, 0, 0), (2e9, -4, -4), (-1, 8, -1), (2e9, 8.0, 8.0), (2e9, True, True), (True, 8, True), (float("nan"), 8, "nan"), (float("inf"), 8, "inf")],
    ids=["world-0", "world-negative", "payload-negative", "world-float", "world-true", "payload-true", "payload-nan", "payload-inf"],
)
def test_ring_allreduce_rejects_bad_values(lab, payload, world_size, bad):
    expect_correct(lab.ledger.ring_allreduce_bytes_per_rank, 2e9, 8, expected=3.5e9, what="ring_allreduce_bytes_per_rank(2e9, 8)")
    expect_value_error(lab.ledger.ring_allreduce_bytes_per_rank, payload, world_size, what=f"ring_allreduce_bytes_per_rank({payload!r}, {world_size!r})", must_mention=(bad,))


# --- pipeline_bubble_fraction -----------------------------------------------------------------


@check("pipeline_bubble_fraction", points=2)
@pytest.mark.parametrize(
    ("stages", "microbatches", "expected", "story"),
    [
        (4, 16, 3 / 19, "3 idle slots of 19: ≈ 15.79 %"),
        (1, 8, 0.0, "one stage never waits"),
        (8, 1, 7 / 8, "one microbatch keeps only one of 8 stages busy at a time"),
        (16, 64, 15 / 79, "p − 1 = 15 over m + p − 1 = 79"),
    ],
)
def test_pipeline_bubble_worked_figures(lab, stages, microbatches, expected, story):
    actual = _float(lab.ledger.pipeline_bubble_fraction(stages, microbatches), f"pipeline_bubble_fraction({stages}, {microbatches})")
    # a ratio of small integers, rounded once: 1e-12 relative leaves room for 1 − m/(m + p − 1)
    assert math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-15), (
        f"pipeline_bubble_fraction(stages={stages}, microbatches={microbatches}) = {actual!r}, expected {expected:.6f} ({story}); "
        "the bubble is (p − 1) / (m + p − 1), not (p − 1) / m"
    )


@check("pipeline_bubble_fraction", points=1)
@pytest.mark.parametrize(
    ("stages", "microbatches", "bad"),
    [(0, 16, 0), (4, 0, 0), (-2, 16, -2), (4, 1.5, 1.5), (True, 16, True), (4, True, True)],
    ids=["stages-0", "microbatches-0", "stages-negative", "microbatches-float", "stages-true", "microbatches-true"],
)
def test_pipeline_bubble_rejects_bad_values(lab, stages, microbatches, bad):
    # 2 stages, 3 microbatches: 1 idle slot of 4, exactly 0.25 whatever the order of operations
    expect_correct(lambda: float(_float(lab.ledger.pipeline_bubble_fraction(2, 3), "pipeline_bubble_fraction(2, 3)")), expected=0.25, what="pipeline_bubble_fraction(2, 3)")
    expect_value_error(lab.ledger.pipeline_bubble_fraction, stages, microbatches, what=f"pipeline_bubble_fraction({stages!r}, {microbatches!r})", must_mention=(bad,))
