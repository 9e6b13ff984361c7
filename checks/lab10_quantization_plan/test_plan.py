"""Public checks for Lab 10 — the quantization plan.

Exact worked figures on real models, properties on random models and workloads, and the lab's
misunderstandings turned into checks. Read a failing check's message first: it names the
quantity, the expected and actual values, and what usually causes the difference.
"""

from __future__ import annotations

import pytest

from infralens.checking import digest, expect_value_error, random_dense_model
from infralens.models import preset

check = pytest.mark.check
GIB = 2**30


def _targets(qp):
    return [qp.Target.WEIGHTS, qp.Target.ACTIVATIONS, qp.Target.KV_CACHE]


# --- Workload ---------------------------------------------------------------------------------


@check("Workload", points=1)
def test_workload_holds_batch_times_context_tokens(lab, rng):
    qp = lab.quantization_plan
    for _ in range(20):
        batch, context = rng.randint(1, 64), rng.randint(1, 131072)
        workload = qp.Workload(batch, context)
        assert (workload.batch, workload.context_tokens) == (batch, context), (
            f"Workload({batch}, {context}) stored batch={workload.batch}, context_tokens={workload.context_tokens}"
        )
        assert workload.tokens == batch * context, f"Workload({batch}, {context}).tokens is {workload.tokens}, expected {batch * context}"


@check("Workload", points=2)
@pytest.mark.parametrize(
    ("batch", "context_tokens", "bad"),
    [(-2, 4096, -2), (0, 4096, 0), (8, -1, -1), (8, 0, 0), (1.5, 4096, 1.5), (True, 4096, True), (8, "4096", "4096")],
    ids=["batch-negative", "batch-zero", "context-negative", "context-zero", "batch-float", "batch-bool", "context-str"],
)
def test_workload_rejects_bad_values(lab, batch, context_tokens, bad):
    qp = lab.quantization_plan
    expect_value_error(qp.Workload, batch, context_tokens, what=f"Workload(batch={batch!r}, context_tokens={context_tokens!r})", must_mention=(bad,))


# --- QuantizationPlan --------------------------------------------------------------------------


@check("QuantizationPlan", points=1)
def test_plan_accepts_every_supported_combination(lab):
    qp = lab.quantization_plan
    for target in _targets(qp):
        for bits in (2, 4, 8):
            for group_size in (None, qp.PER_TENSOR, 32, 128):
                for scale_bits, zero_point_bits in ((16, 0), (32, 0), (8, 8), (16, 16), (32, 32)):
                    plan = qp.QuantizationPlan(target, bits, group_size, scale_bits, zero_point_bits)
                    assert (plan.target, plan.bits, plan.group_size) == (target, bits, group_size)
        fp8 = qp.QuantizationPlan(target, 8, qp.PER_TENSOR, number_format="fp8")
        assert fp8.fmt == "fp8", f"an fp8 plan's fmt is {fp8.fmt!r}, expected 'fp8'"


@check("QuantizationPlan", points=2)
@pytest.mark.parametrize(
    ("kwargs", "bad", "why"),
    [
        ({"bits": 3}, 3, "codes must pack into whole bytes: 2, 4 or 8 bits"),
        ({"bits": 16}, 16, "16 bits is the bf16 baseline, not a quantization plan"),
        ({"bits": 0}, 0, "a code needs at least one bit"),
        ({"bits": 8, "group_size": 0}, 0, "group_size 0 is neither None, PER_TENSOR (-1) nor a positive length"),
        ({"bits": 8, "group_size": -8}, -8, "negative group sizes other than PER_TENSOR (-1) mean nothing"),
        ({"bits": 8, "scale_bits": 12}, 12, "scales are stored as 8-, 16- or 32-bit numbers"),
        ({"bits": 4, "zero_point_bits": 4}, 4, "zero points are stored as 0, 8, 16 or 32 bits"),
        ({"bits": 4, "number_format": "fp8"}, 4, "fp8 codes are 8 bits"),
        ({"bits": 8, "number_format": "fp8", "zero_point_bits": 8}, 8, "fp8 is symmetric: it stores no zero point"),
        ({"bits": 8, "number_format": "nf4"}, "nf4", "only 'int' and 'fp8' are supported"),
    ],
    ids=["bits-3", "bits-16", "bits-0", "group-0", "group-minus-8", "scale-bits-12", "zero-point-bits-4", "fp8-4-bits", "fp8-zero-point", "format-nf4"],
)
def test_plan_rejects_what_it_cannot_store(lab, kwargs, bad, why):
    qp = lab.quantization_plan
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    expect_value_error(qp.QuantizationPlan, qp.Target.WEIGHTS, what=f"QuantizationPlan(Target.WEIGHTS, {shown}) ({why})", must_mention=(bad,), **kwargs)


@check("QuantizationPlan", points=1)
def test_plan_rejects_a_target_that_is_not_a_target(lab):
    qp = lab.quantization_plan
    expect_value_error(qp.QuantizationPlan, "weight", 8, what="QuantizationPlan('weight', 8) (a typo, not a Target)", must_mention=("weight",))


@check("QuantizationPlan", points=2)
def test_granularity_names_the_row_of_each_target(lab):
    qp = lab.quantization_plan
    rows = {qp.Target.WEIGHTS: "per-channel", qp.Target.ACTIVATIONS: "per-token", qp.Target.KV_CACHE: "per-token-per-head"}
    for target, expected in rows.items():
        plan = qp.QuantizationPlan(target, 8)
        assert plan.granularity == expected, (
            f"granularity of a {target.value} plan with group_size=None is {plan.granularity!r}, expected {expected!r}: "
            "one scale per row, and a row is an output channel of a weight, a token of an activation, one head's vector in the KV cache"
        )
        per_tensor = qp.QuantizationPlan(target, 8, qp.PER_TENSOR).granularity
        assert per_tensor == "per-tensor", f"granularity with group_size=PER_TENSOR is {per_tensor!r}, expected 'per-tensor'"
        grouped = qp.QuantizationPlan(target, 4, 64).granularity
        assert grouped == "group-64", f"granularity with group_size=64 is {grouped!r}, expected 'group-64'"


# --- quantized_bytes ---------------------------------------------------------------------------


@check("quantized_bytes", points=2)
@pytest.mark.parametrize(
    ("plan_kwargs", "rows", "row_length", "expected", "story"),
    [
        ({"bits": 4, "group_size": 128}, 4096, 4096, 8_650_752, "4096 × 2048 code bytes + 4096 × 32 fp16 scales"),
        ({"bits": 2}, 3, 5, 12, "each row of 5 two-bit codes takes ceil(10/8) = 2 bytes, plus one fp16 scale per row"),
        ({"bits": 8, "group_size": -1}, 10, 16, 162, "160 code bytes + a single fp16 scale for the whole tensor"),
        ({"bits": 4, "group_size": 4, "zero_point_bits": 8}, 2, 8, 20, "8 code bytes + 4 groups × (2-byte scale + 1-byte zero point)"),
        ({"bits": 8, "scale_bits": 32}, 3, 7, 33, "21 code bytes + 3 fp32 scales"),
    ],
    ids=["int4-g128", "int2-odd-rows", "int8-per-tensor", "int4-zero-points", "int8-fp32-scales"],
)
def test_quantized_bytes_worked_examples(lab, plan_kwargs, rows, row_length, expected, story):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.WEIGHTS, **plan_kwargs)
    actual = qp.quantized_bytes(plan, rows, row_length)
    assert actual == expected, (
        f"quantized_bytes({plan_kwargs}, rows={rows}, row_length={row_length}) is {actual}, expected {expected} ({story})"
    )


@check("quantized_bytes", points=2)
def test_quantized_bytes_counts_scales_and_zero_points_per_group(lab, rng):
    qp = lab.quantization_plan
    for _ in range(30):
        group = rng.choice([None, 8, 16, 32])
        rows, row_length = rng.randint(1, 300), 32 * rng.randint(1, 20)
        bits = rng.choice([2, 4, 8])
        plain = qp.quantized_bytes(qp.QuantizationPlan(qp.Target.WEIGHTS, bits, group), rows, row_length)
        with_zp = qp.quantized_bytes(qp.QuantizationPlan(qp.Target.WEIGHTS, bits, group, zero_point_bits=16), rows, row_length)
        fp32 = qp.quantized_bytes(qp.QuantizationPlan(qp.Target.WEIGHTS, bits, group, scale_bits=32), rows, row_length)
        groups = rows if group is None else rows * row_length // group
        assert with_zp - plain == 2 * groups, (
            f"[{rows}, {row_length}] int{bits} group_size={group}: a 16-bit zero point added {with_zp - plain} bytes, "
            f"expected 2 bytes for each of the {groups} scale groups (forgot the zero points, or counted bits instead of bytes?)"
        )
        assert fp32 - plain == 2 * groups, (
            f"[{rows}, {row_length}] int{bits} group_size={group}: fp32 instead of fp16 scales added {fp32 - plain} bytes, "
            f"expected 2 more bytes for each of the {groups} scale groups"
        )
        doubled = qp.quantized_bytes(qp.QuantizationPlan(qp.Target.WEIGHTS, bits, group), 2 * rows, row_length)
        assert doubled == 2 * plain, f"twice the rows should store twice the bytes: {doubled} vs 2 × {plain}"


@check("quantized_bytes", points=1)
def test_quantized_bytes_rejects_groups_that_do_not_tile_a_row(lab):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.WEIGHTS, 4, 100)
    expect_value_error(qp.quantized_bytes, plan, 16, 4096, what="quantized_bytes(group_size=100, rows=16, row_length=4096)", must_mention=(100, 4096))


# --- saved_memory ------------------------------------------------------------------------------


WORKED = [
    ("llama-3-8b", "weights", {"bits": 4, "group_size": 128}, (1, 8192), 10_359_930_880, "q/k/v/o + gate/up/down of 32 layers, int4 codes + fp16 scale per 128"),
    ("llama-3-8b", "kv_cache", {"bits": 8}, (8, 8192), 4_227_858_432, "K and V, 32 layers, 8 KV heads × 128, one fp16 scale per head vector"),
    ("llama-3-8b", "kv_cache", {"bits": 8, "group_size": -1, "number_format": "fp8"}, (8, 8192), 4_294_967_168, "one fp16 scale per layer for K and for V"),
    ("llama-3-8b", "activations", {"bits": 8}, (1, 4096), 58_712_064, "down_proj input [4096, 14336], one fp16 scale per token"),
    ("qwen2.5-7b", "weights", {"bits": 8}, (1, 1), 6_522_507_264, "28 layers, one fp16 scale per output channel"),
    ("qwen2.5-7b", "kv_cache", {"bits": 4, "group_size": 32, "zero_point_bits": 8}, (4, 32768), 5_284_823_040, "4 KV heads × 128, groups of 32 with fp16 scale + int8 zero point"),
    ("qwen2.5-7b", "activations", {"bits": 8, "group_size": -1, "number_format": "fp8"}, (2, 2048), 77_594_622, "down_proj input [4096, 18944], one scale"),
    ("gemma-2-9b", "kv_cache", {"bits": 8}, (1, 8192), 1_048_707_072, "21 full-attention layers hold 8192 tokens, the 21 sliding-window layers only 4096"),
    ("mistral-7b-v0.1", "kv_cache", {"bits": 8}, (2, 32768), 528_482_304, "every layer's 4096-token window caps the cache"),
]


@check("saved_memory", points=3)
@pytest.mark.parametrize(("model_name", "target", "plan_kwargs", "workload", "expected", "story"), WORKED, ids=[f"{w[0]}-{w[1]}-{i}" for i, w in enumerate(WORKED)])
def test_saved_memory_on_real_models(lab, model_name, target, plan_kwargs, workload, expected, story):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target(target), **plan_kwargs)
    actual = qp.saved_memory(plan, preset(model_name), qp.Workload(*workload))
    assert actual == expected, (
        f"saved_memory({target} {plan_kwargs}) on {model_name} at batch {workload[0]} × {workload[1]} tokens is {actual:,} bytes, "
        f"expected {expected:,} ({expected / GIB:.4f} GiB; {story}); off by {actual - expected:+,} bytes"
    )


@check("saved_memory", points=2)
def test_weight_saving_does_not_depend_on_the_workload(lab, rng):
    qp = lab.quantization_plan
    for _ in range(10):
        model = random_dense_model(rng)
        plan = qp.QuantizationPlan(qp.Target.WEIGHTS, rng.choice([2, 4, 8]), rng.choice([None, qp.PER_TENSOR]))
        small, large = qp.Workload(1, 1), qp.Workload(rng.randint(2, 64), rng.randint(1000, 100000))
        a, b = qp.saved_memory(plan, model, small), qp.saved_memory(plan, model, large)
        assert a == b, (
            f"a weights plan saved {a:,} bytes at batch 1 × 1 token but {b:,} at batch {large.batch} × {large.context_tokens}: "
            "weights are stored once, whatever is served; a weights plan saves no KV-cache or activation bytes"
        )


@check("saved_memory", points=2)
def test_kv_saving_grows_linearly_with_batch_and_tokens(lab, rng):
    qp = lab.quantization_plan
    for _ in range(10):
        model = random_dense_model(rng)
        plan = qp.QuantizationPlan(qp.Target.KV_CACHE, rng.choice([2, 4, 8]))
        batch, context = rng.randint(1, 8), rng.randint(1, 4096)
        base = qp.saved_memory(plan, model, qp.Workload(batch, context))
        for b, t in ((2 * batch, context), (batch, 3 * context)):
            grown = qp.saved_memory(plan, model, qp.Workload(b, t))
            factor = (b * t) // (batch * context)
            assert grown == factor * base, (
                f"KV saving at batch {b} × {t} tokens is {grown:,} bytes, expected {factor} × {base:,} = {factor * base:,} "
                f"(batch {batch} × {context}): every token of every sequence holds its own K and V"
            )


@check("saved_memory", points=2)
def test_kv_saving_follows_kv_heads_not_query_heads(lab, rng):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.KV_CACHE, 8)
    workload = qp.Workload(2, 1024)
    for _ in range(10):
        model = random_dense_model(rng, num_key_value_heads=1, num_attention_heads=8)
        gqa = random_dense_model(rng, **{**model.__dict__, "num_key_value_heads": 2})
        one, two = qp.saved_memory(plan, model, workload), qp.saved_memory(plan, gqa, workload)
        assert two == 2 * one, (
            f"doubling num_key_value_heads (1 -> 2, with 8 query heads) changed the KV saving from {one:,} to {two:,}, "
            "expected exactly twice: the cache stores K and V per KV head, and query heads share them (GQA/MQA)"
        )


@check("saved_memory", points=2)
def test_kv_saving_ignores_weights_and_counts_k_and_v(lab, rng):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.KV_CACHE, 8)
    for _ in range(10):
        model = random_dense_model(rng)
        wider = random_dense_model(rng, **{**model.__dict__, "intermediate_size": model.intermediate_size * 2, "vocab_size": model.vocab_size + 7})
        workload = qp.Workload(rng.randint(1, 4), rng.randint(1, 2048))
        a, b = qp.saved_memory(plan, model, workload), qp.saved_memory(plan, wider, workload)
        assert a == b, f"a KV plan saved {a:,} bytes, and {b:,} on the same model with a wider MLP: a KV plan saves no weight bytes"
        held = workload.tokens * model.num_key_value_heads * model.num_hidden_layers
        per_vector = model.head_dim * 2 - (model.head_dim + 2)  # bf16 bytes minus int8 codes and one fp16 scale
        assert a == 2 * held * per_vector, (
            f"int8 KV saving on {model.num_hidden_layers} layers × {model.num_key_value_heads} KV heads × head_dim {model.head_dim} "
            f"at {workload.tokens} tokens is {a:,}, expected {2 * held * per_vector:,}: count K and V (the 2), every layer, every KV head"
        )


@check("saved_memory", points=1)
def test_kv_saving_stops_growing_past_the_sliding_window(lab, rng):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.KV_CACHE, 4, None)
    model = random_dense_model(rng, sliding_window=256)
    at_window, past = qp.saved_memory(plan, model, qp.Workload(2, 256)), qp.saved_memory(plan, model, qp.Workload(2, 1000))
    assert past == at_window, (
        f"with sliding_window=256 the KV saving at 1000 tokens is {past:,} but {at_window:,} at 256: "
        "a sliding-window layer only keeps the last 256 tokens"
    )


@check("saved_memory", points=1)
def test_activation_saving_follows_tokens_and_mlp_width(lab, rng):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.ACTIVATIONS, 8)
    for _ in range(10):
        model = random_dense_model(rng)
        workload = qp.Workload(rng.randint(1, 8), rng.randint(1, 4096))
        saved = qp.saved_memory(plan, model, workload)
        expected = workload.tokens * (model.intermediate_size * 2 - model.intermediate_size - 2)
        assert saved == expected, (
            f"int8 per-token activations at {workload.tokens} tokens, intermediate_size {model.intermediate_size}: saved {saved:,}, "
            f"expected {expected:,} (the down_proj input [tokens, intermediate_size]; hidden_size is {model.hidden_size})"
        )


@check("saved_memory", points=1)
@pytest.mark.parametrize("model_name", ["mixtral-8x7b", "deepseek-v3"])
def test_saved_memory_rejects_architectures_it_does_not_model(lab, model_name):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.WEIGHTS, 4, 128)
    expect_value_error(
        qp.saved_memory, plan, preset(model_name), qp.Workload(1, 1),
        what=f"saved_memory(..., {model_name}) (experts or latent attention are not a dense decoder)", must_mention=(model_name,),
    )


@check("saved_memory", points=1)
def test_saved_memory_rejects_a_group_that_does_not_divide_the_weights(lab):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.WEIGHTS, 4, 100)
    expect_value_error(qp.saved_memory, plan, preset("llama-3-8b"), qp.Workload(1, 1), what="saved_memory(int4 group_size=100, llama-3-8b)", must_mention=(100, 4096))


# --- risk ----------------------------------------------------------------------------------------

RISK_DIGESTS = {
    "weights": ("ebd51c517aed9ccf", "c2e115d089b120dd", "b32486ecb36fb529"),
    "activations": ("d398224b2de86ec3", "c2e791230b303654", "e68e7e2e0a0fb526"),
    "kv_cache": ("d616f1bceeb64359", "7b69233942fb3663", "c8206a272b657681"),
}
RISK_QUESTIONS = {
    "weights": "which tensor is changed once, offline, and then read by every matmul?",
    "activations": "which tensors are produced fresh for every token, and what do outlier channels do to one shared scale?",
    "kv_cache": "which computation reads the cached K and V back, and what does softmax do to a small error in q·k?",
}


@check("risk", points=3)
@pytest.mark.parametrize("target", ["weights", "activations", "kv_cache"])
def test_risk_names_where_error_enters_for_each_target(lab, target):
    qp = lab.quantization_plan
    found = qp.risk(qp.QuantizationPlan(qp.Target(target), 8))
    assert found.target == qp.Target(target), f"risk(...).target is {found.target!r}, expected the plan's own target {target!r}"
    for field, expected in zip(("site", "mechanism", "mitigation"), RISK_DIGESTS[target]):
        value = getattr(found, field)
        assert digest(getattr(value, "value", value)) == expected, (
            f"risk(a {target} plan).{field} is {getattr(value, 'name', value)}, which does not fit a {target} plan. "
            f"Ask: {RISK_QUESTIONS[target]} (the enums in the starter must keep their given texts)"
        )


@check("risk", points=1)
def test_risk_differs_between_targets(lab):
    qp = lab.quantization_plan
    risks = [qp.risk(qp.QuantizationPlan(target, 4)) for target in _targets(qp)]
    for field in ("site", "mechanism", "mitigation"):
        values = [getattr(r, field) for r in risks]
        assert len(set(values)) == 3, f"risk().{field} is {values} for weights, activations, KV cache: each target puts error somewhere else"


@check("risk", points=2)
@pytest.mark.parametrize(
    ("bits", "group_size", "number_format", "expected"),
    [(8, None, "int", "low"), (4, 128, "int", "medium"), (2, 32, "int", "high"), (8, -1, "int", "medium"), (4, -1, "int", "high"), (2, -1, "int", "high"), (8, -1, "fp8", "low")],
    ids=["int8-row", "int4-g128", "int2-g32", "int8-tensor", "int4-tensor", "int2-tensor", "fp8-tensor"],
)
def test_risk_severity_follows_bits_and_granularity(lab, bits, group_size, number_format, expected):
    qp = lab.quantization_plan
    for target in _targets(qp):
        plan = qp.QuantizationPlan(target, bits, group_size, number_format=number_format)
        severity = qp.risk(plan).severity
        assert severity == expected, (
            f"severity of {target.value} {plan.fmt} with group_size={group_size} is {severity!r}, expected {expected!r}: "
            "8/4/2 bits are low/medium/high, one level worse for an integer per-tensor plan, FP8 exempt"
        )


# --- describe ------------------------------------------------------------------------------------


@check("describe", points=2)
def test_describe_worked_example(lab):
    qp = lab.quantization_plan
    plan = qp.QuantizationPlan(qp.Target.KV_CACHE, 8)
    line = qp.describe(plan, preset("llama-3-8b"), qp.Workload(8, 8192))
    expected = "kv_cache int8 per-token-per-head (16-bit scales): saves 3.94 GiB on llama-3-8b at batch 8 × 8192 tokens; main risk (low): "
    assert line.startswith(expected), f"describe() gave\n    {line!r}\nexpected it to start with\n    {expected!r}"
    assert "\n" not in line, "describe() must be one line"


@check("describe", points=2)
def test_describe_says_more_than_the_bit_width(lab, rng):
    qp = lab.quantization_plan
    for _ in range(15):
        model = random_dense_model(rng)
        workload = qp.Workload(rng.randint(1, 16), rng.randint(1, 32768))
        target = rng.choice(_targets(qp))
        plan = qp.QuantizationPlan(target, rng.choice([2, 4, 8]), rng.choice([None, qp.PER_TENSOR]), zero_point_bits=rng.choice([0, 8]))
        line = qp.describe(plan, model, workload)
        gib = f"{qp.saved_memory(plan, model, workload) / GIB:.2f} GiB"
        wanted = {
            "the target": target.value,
            "the format": f" {plan.fmt} ",
            "the granularity": plan.granularity,
            "the saving in GiB (bytes / 2**30, two decimals)": gib,
            "the model": model.name,
            "the workload": f"batch {workload.batch} × {workload.context_tokens} tokens",
            "the risk severity": f"({qp.risk(plan).severity})",
        }
        if plan.zero_point_bits:
            wanted["the zero points"] = f"{plan.zero_point_bits}-bit zero points"
        for what, text in wanted.items():
            assert text in line, f"describe() should name {what} ({text!r}), got:\n    {line!r}"
        assert " GB" not in line, f"describe() reports GB (10**9 bytes); report GiB (2**30): {line!r}"


# --- kernel_path -------------------------------------------------------------------------------


@check("kernel_path", points=2)
@pytest.mark.parametrize(
    ("target", "plan_kwargs", "backend", "has_kernel", "speedup", "lesson"),
    [
        ("weights", {"bits": 4, "group_size": 128}, "vLLM", True, True, "Marlin reads int4 weights directly"),
        ("kv_cache", {"bits": 8, "group_size": -1, "number_format": "fp8"}, "vLLM", True, True, "vLLM's attention reads an FP8 cache"),
        ("kv_cache", {"bits": 4, "group_size": 64}, "transformers", True, False, "QuantizedCache dequantizes before attention: capacity only"),
        ("weights", {"bits": 2, "group_size": 64}, "vLLM", False, False, "no kernel: no speedup, only dequantization overhead"),
        ("activations", {"bits": 8}, "llama.cpp", False, False, "no W8A8 kernel in that backend"),
    ],
    ids=["vllm-int4-weights", "vllm-fp8-kv", "transformers-int4-kv", "vllm-int2-weights", "llamacpp-w8a8"],
)
def test_kernel_path_decides_speed_or_capacity(lab, target, plan_kwargs, backend, has_kernel, speedup, lesson):
    qp = lab.quantization_plan
    path = qp.kernel_path(qp.QuantizationPlan(qp.Target(target), **plan_kwargs), backend)
    assert (path.kernel is not None) == has_kernel, f"kernel_path({target} {plan_kwargs}, {backend!r}).kernel is {path.kernel!r} ({lesson})"
    assert path.speedup is speedup, f"kernel_path({target} {plan_kwargs}, {backend!r}).speedup is {path.speedup!r}, expected {speedup} ({lesson})"
    assert path.backend == backend and path.reason.strip(), "kernel_path must return its backend and a reason sentence"


@check("kernel_path", points=1)
def test_kernel_path_rejects_unknown_backends(lab):
    qp = lab.quantization_plan
    expect_value_error(qp.kernel_path, qp.QuantizationPlan(qp.Target.WEIGHTS, 4), "tensorrt", what="kernel_path(..., 'tensorrt')", must_mention=("tensorrt",))


# --- compare_plans -----------------------------------------------------------------------------


@check("compare_plans", points=2)
def test_compare_plans_side_by_side(lab):
    qp = lab.quantization_plan
    model, workload = preset("llama-3-8b"), qp.Workload(8, 8192)
    plans = [
        qp.QuantizationPlan(qp.Target.WEIGHTS, 8),
        qp.QuantizationPlan(qp.Target.WEIGHTS, 4, 128),
        qp.QuantizationPlan(qp.Target.KV_CACHE, 8),
        qp.QuantizationPlan(qp.Target.KV_CACHE, 8, qp.PER_TENSOR, number_format="fp8"),
    ]
    rows = qp.compare_plans(plans, model, workload, "vLLM")
    assert len(rows) == 5, f"compare_plans returned {len(rows)} rows for 4 plans, expected 5 (the bf16 baseline first)"
    base = rows[0]
    assert (base.label, base.saved_bytes, base.kernel, base.speedup, base.severity) == ("bf16 baseline", 0, "bf16 dense", False, None), f"row 0 is {base}, expected the bf16 baseline"
    expected = [
        ("weights int8 per-channel", 6_976_569_344, True, "low"),
        ("weights int4 group-128", 10_359_930_880, True, "medium"),
        ("kv_cache int8 per-token-per-head", 4_227_858_432, False, "low"),
        ("kv_cache fp8 per-tensor", 4_294_967_168, True, "low"),
    ]
    for row, (label, saved, speedup, severity) in zip(rows[1:], expected):
        actual = (row.label, row.saved_bytes, row.speedup, row.severity)
        assert actual == (label, saved, speedup, severity), f"row for {label!r} is {actual}, expected {(label, saved, speedup, severity)}"


@check("compare_plans", points=1)
def test_compare_plans_rejects_unknown_backend_even_without_plans(lab):
    qp = lab.quantization_plan
    expect_value_error(qp.compare_plans, [], preset("qwen2.5-7b"), qp.Workload(1, 1), "TensorRT", what="compare_plans([], ..., 'TensorRT')", must_mention=("TensorRT",))
