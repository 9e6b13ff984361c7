"""Public checks for Lab 10 — the quantization plan.

Exact worked figures on real models, properties on random models and workloads, and the lab's
misunderstandings turned into checks. Read a failing check's message first: it names the
quantity, the expected and actual values, and what usually causes the difference.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from infralens.checking import assert_exact, digest, expect_correct, expect_value_error, random_dense_model, summarize
from infralens.models import preset
from lab10_inputs import RISK_DIGESTS, documented_granularity, make_plan, make_workload, plan_text

check = pytest.mark.check
GIB = 2**30


def _require_int(value, what):
    """Byte counts are ``int``: a float (even 8.0) or a bool fails here, naming the call and the type."""
    if type(value) is not int:
        pytest.fail(f"{what} returned {type(value).__name__} {summarize(value)}; byte counts are int (use // and math.ceil, not /)", pytrace=False)


def _targets(qp):
    return [qp.Target.WEIGHTS, qp.Target.ACTIVATIONS, qp.Target.KV_CACHE]


# --- Workload ---------------------------------------------------------------------------------


def _workload_fields(qp, batch, context_tokens):
    workload = qp.Workload(batch, context_tokens)
    return workload.batch, workload.context_tokens, workload.tokens


@check("Workload", points=1)
def test_workload_accepts_counts_from_one_up_and_refuses_an_empty_batch(lab, rng):
    qp = lab.quantization_plan
    sizes = [(1, 1), (8, 8192), (3, 131071)] + [(rng.randint(1, 64), rng.randint(1, 131072)) for _ in range(20)]
    for batch, context in sizes:
        assert_exact(
            _workload_fields(qp, batch, context), (batch, context, batch * context), f"Workload({batch}, {context}) as (batch, context_tokens, tokens)",
            "the fields keep the ints they were given, and tokens = batch × context_tokens",
        )
    # Accepting is half the job: a Workload that validates nothing must not earn this check.
    expect_value_error(qp.Workload, 0, 8192, what="Workload(batch=0, context_tokens=8192) (nothing to serve)", must_mention=("batch", 0))


@check("Workload", points=2)
@pytest.mark.parametrize(
    ("batch", "context_tokens", "field", "bad"),
    [
        (-2, 4096, "batch", -2), (0, 4096, "batch", 0), (8, -1, "context_tokens", -1), (8, 0, "context_tokens", 0),
        (1.5, 4096, "batch", 1.5), (8.0, 4096, "batch", 8.0), (8, 4096.0, "context_tokens", 4096.0),
        (True, 4096, "batch", True), (8, True, "context_tokens", True), (8, "4096", "context_tokens", "4096"), (None, 4096, "batch", None),
    ],
    ids=[
        "batch-negative", "batch-zero", "context-negative", "context-zero", "batch-float", "batch-whole-float", "context-float",
        "batch-bool", "context-bool", "context-str", "batch-none",
    ],
)
def test_workload_rejects_bad_values(lab, batch, context_tokens, field, bad):
    qp = lab.quantization_plan
    expect_correct(_workload_fields, qp, 8, 4096, expected=(8, 4096, 32768), what="Workload(8, 4096) as (batch, context_tokens, tokens)")
    expect_value_error(
        qp.Workload, batch, context_tokens, what=f"Workload(batch={batch!r}, context_tokens={context_tokens!r}) (counts are ints of at least 1; a bool is not a count)",
        must_mention=(field, bad),
    )


# --- QuantizationPlan --------------------------------------------------------------------------


def _plan_fields(qp, target, *args, **kwargs):
    plan = qp.QuantizationPlan(target, *args, **kwargs)
    return plan.target, plan.bits, plan.group_size, plan.scale_bits, plan.zero_point_bits, plan.number_format, plan.fmt, plan.granularity


def _expect_a_valid_plan(qp):
    """The gate of the QuantizationPlan validation checks: a valid int4 group-128 plan is accepted as given."""
    expect_correct(
        _plan_fields, qp, qp.Target.WEIGHTS, 4, 128, scale_bits=16, zero_point_bits=8,
        expected=(qp.Target.WEIGHTS, 4, 128, 16, 8, "int", "int4", "group-128"),
        what="QuantizationPlan(Target.WEIGHTS, 4, 128, scale_bits=16, zero_point_bits=8) as (target, bits, group_size, scale_bits, zero_point_bits, number_format, fmt, granularity)",
    )


@check("QuantizationPlan", points=1)
def test_plan_accepts_every_supported_combination(lab):
    qp = lab.quantization_plan
    for target in _targets(qp):
        for bits in (2, 4, 8):
            for group_size in (None, qp.PER_TENSOR, 1, 32, 128):
                for scale_bits in (8, 16, 32):
                    for zero_point_bits in (0, 8, 16, 32):
                        assert_exact(
                            _plan_fields(qp, target, bits, group_size, scale_bits, zero_point_bits),
                            (target, bits, group_size, scale_bits, zero_point_bits, "int", f"int{bits}", documented_granularity(target.value, group_size)),
                            f"QuantizationPlan({target.value}, {bits}, {group_size}, {scale_bits}, {zero_point_bits}) as "
                            "(target, bits, group_size, scale_bits, zero_point_bits, number_format, fmt, granularity)",
                            "every width in SUPPORTED_BITS, SUPPORTED_SCALE_BITS and SUPPORTED_ZERO_POINT_BITS is valid",
                        )
        assert_exact(
            _plan_fields(qp, target, 8, qp.PER_TENSOR, number_format="fp8"),
            (target, 8, qp.PER_TENSOR, 16, 0, "fp8", "fp8", "per-tensor"), f"QuantizationPlan({target.value}, 8, PER_TENSOR, number_format='fp8') as its fields",
        )


ALLOWED = {"bits": (2, 4, 8), "scale_bits": (8, 16, 32), "zero_point_bits": (0, 8, 16, 32), "number_format": ("int", "fp8")}
BAD_PLANS = [
    ("bits-3", {"bits": 3}, "bits", 3, "codes must pack into whole bytes: 2, 4 or 8 bits"),
    ("bits-16", {"bits": 16}, "bits", 16, "16 bits is the bf16 baseline, not a quantization plan"),
    ("bits-0", {"bits": 0}, "bits", 0, "a code needs at least one bit"),
    ("bits-bool", {"bits": True}, "bits", True, "True is a bool, not a bit width"),
    ("bits-float", {"bits": 8.0}, "bits", 8.0, "8.0 == 8, but a bit width is an int"),
    ("group-0", {"bits": 8, "group_size": 0}, None, 0, "group_size 0 is neither None, PER_TENSOR (-1) nor a positive length"),
    ("group-minus-8", {"bits": 8, "group_size": -8}, None, -8, "negative group sizes other than PER_TENSOR (-1) mean nothing"),
    ("group-bool", {"bits": 8, "group_size": True}, None, True, "True == 1, but a bool is not a group of one value"),
    ("group-float", {"bits": 8, "group_size": 64.0}, None, 64.0, "a group is a whole number of values, an int"),
    ("scale-bits-12", {"bits": 8, "scale_bits": 12}, "scale_bits", 12, "scales are stored as 8-, 16- or 32-bit numbers"),
    ("scale-bits-24", {"bits": 8, "scale_bits": 24}, "scale_bits", 24, "a multiple of 8, but no scale format is 24 bits wide"),
    ("scale-bits-64", {"bits": 8, "scale_bits": 64}, "scale_bits", 64, "a multiple of 8, but fp64 scales are not stored"),
    ("scale-bits-0", {"bits": 8, "scale_bits": 0}, "scale_bits", 0, "every scale group stores a scale"),
    ("scale-bits-bool", {"bits": 8, "scale_bits": True}, "scale_bits", True, "True is a bool, not a width"),
    ("scale-bits-float", {"bits": 8, "scale_bits": 16.0}, "scale_bits", 16.0, "16.0 == 16, but a width is an int"),
    ("zero-point-bits-4", {"bits": 4, "zero_point_bits": 4}, "zero_point_bits", 4, "zero points are stored as 0, 8, 16 or 32 bits"),
    ("zero-point-bits-24", {"bits": 4, "zero_point_bits": 24}, "zero_point_bits", 24, "a multiple of 8, but no zero point is 24 bits wide"),
    ("zero-point-bits-bool", {"bits": 4, "zero_point_bits": False}, "zero_point_bits", False, "False == 0, but a bool is not a width"),
    ("zero-point-bits-float", {"bits": 4, "zero_point_bits": 8.0}, "zero_point_bits", 8.0, "8.0 == 8, but a width is an int"),
    ("fp8-4-bits", {"bits": 4, "number_format": "fp8"}, None, 4, "fp8 codes are 8 bits"),
    ("fp8-zero-point", {"bits": 8, "number_format": "fp8", "zero_point_bits": 8}, None, 8, "fp8 is symmetric: it stores no zero point"),
    ("format-nf4", {"bits": 8, "number_format": "nf4"}, "number_format", "nf4", "only 'int' and 'fp8' are supported"),
]


@check("QuantizationPlan", points=2)
@pytest.mark.parametrize(("kwargs", "field", "bad", "why"), [case[1:] for case in BAD_PLANS], ids=[case[0] for case in BAD_PLANS])
def test_plan_rejects_what_it_cannot_store(lab, kwargs, field, bad, why):
    qp = lab.quantization_plan
    _expect_a_valid_plan(qp)
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    allowed = ALLOWED.get(field, ())
    expect_value_error(
        qp.QuantizationPlan, qp.Target.WEIGHTS, what=f"QuantizationPlan(Target.WEIGHTS, {shown}) ({why})",
        must_mention=(bad, *allowed), **kwargs,
    )


@check("QuantizationPlan", points=1)
def test_plan_rejects_a_target_that_is_not_a_target(lab):
    qp = lab.quantization_plan
    _expect_a_valid_plan(qp)
    expect_value_error(qp.QuantizationPlan, "weight", 8, what="QuantizationPlan('weight', 8) (a typo, not a Target)", must_mention=("weight",))


@check("QuantizationPlan", points=2)
def test_granularity_names_the_row_of_each_target(lab):
    qp = lab.quantization_plan
    rows = {qp.Target.WEIGHTS: "per-channel", qp.Target.ACTIVATIONS: "per-token", qp.Target.KV_CACHE: "per-token-per-head"}
    for target, expected in rows.items():
        assert_exact(
            qp.QuantizationPlan(target, 8).granularity, expected, f"the granularity of a {target.value} plan with group_size=None",
            "one scale per row, and a row is an output channel of a weight, a token of an activation, one head's vector in the KV cache",
        )
        assert_exact(qp.QuantizationPlan(target, 8, qp.PER_TENSOR).granularity, "per-tensor", "the granularity with group_size=PER_TENSOR")
        assert_exact(qp.QuantizationPlan(target, 4, 64).granularity, "group-64", "the granularity with group_size=64")
        assert_exact(qp.QuantizationPlan(target, 2, 1).granularity, "group-1", "the granularity with group_size=1")


# --- quantized_bytes ---------------------------------------------------------------------------

QUANTIZED_BYTES = [
    ("int4-g128", {"bits": 4, "group_size": 128}, 4096, 4096, 8_650_752, "4096 × 2048 code bytes + 4096 × 32 fp16 scales"),
    ("int2-odd-rows", {"bits": 2}, 3, 5, 12, "each row of 5 two-bit codes takes ceil(10/8) = 2 bytes, plus one fp16 scale per row"),
    ("int4-one-value", {"bits": 4}, 1, 1, 3, "one 4-bit code still takes a whole byte, plus one fp16 scale"),
    ("int8-per-tensor", {"bits": 8, "group_size": -1}, 10, 16, 162, "160 code bytes + a single fp16 scale for the whole tensor"),
    ("int4-zero-points", {"bits": 4, "group_size": 4, "zero_point_bits": 8}, 2, 8, 20, "8 code bytes + 4 groups × (2-byte scale + 1-byte zero point)"),
    ("int8-fp32-scales", {"bits": 8, "scale_bits": 32}, 3, 7, 33, "21 code bytes + 3 fp32 scales"),
    ("int2-fp8-scales-int32-zero-points", {"bits": 2, "group_size": 4, "scale_bits": 8, "zero_point_bits": 32}, 3, 12, 54, "3 rows × 3 code bytes + 9 groups × (1-byte scale + 4-byte zero point)"),
    ("int4-group-of-one", {"bits": 4, "group_size": 1, "scale_bits": 32, "zero_point_bits": 16}, 1, 4, 26, "2 code bytes + 4 groups of one value × (4 + 2) bytes"),
]


@check("quantized_bytes", points=2)
@pytest.mark.parametrize(("plan_kwargs", "rows", "row_length", "expected", "story"), [case[1:] for case in QUANTIZED_BYTES], ids=[case[0] for case in QUANTIZED_BYTES])
def test_quantized_bytes_worked_examples(lab, plan_kwargs, rows, row_length, expected, story):
    qp = lab.quantization_plan
    plan = make_plan(qp, "weights", **plan_kwargs)
    actual = qp.quantized_bytes(plan, rows, row_length)
    assert_exact(actual, expected, f"quantized_bytes({plan_text(plan)}, rows={rows}, row_length={row_length})", f"{story}; byte counts are int")


def _extra_bytes_cause(extra, groups, width_bits):
    """Why a wider scale or an added zero point changed the byte count by ``extra`` instead of
    ``groups × width_bits / 8``, when the difference matches a usual mistake."""
    if extra == 0:
        return " (the added bits were not counted at all)"
    if extra == groups * width_bits:
        return " (counted bits, not bytes: divide by 8)"
    return ""


@check("quantized_bytes", points=2)
def test_quantized_bytes_counts_scales_and_zero_points_per_group(lab, rng):
    qp = lab.quantization_plan
    for _ in range(30):
        group = rng.choice([None, 8, 16, 32])
        rows, row_length = rng.randint(1, 300), 32 * rng.randint(1, 20)
        bits = rng.choice([2, 4, 8])
        plain = qp.quantized_bytes(make_plan(qp, "weights", bits, group), rows, row_length)
        with_zp = qp.quantized_bytes(make_plan(qp, "weights", bits, group, zero_point_bits=16), rows, row_length)
        fp32 = qp.quantized_bytes(make_plan(qp, "weights", bits, group, scale_bits=32), rows, row_length)
        for name, value in (("fp16 scales", plain), ("a 16-bit zero point", with_zp), ("fp32 scales", fp32)):
            _require_int(value, f"quantized_bytes(int{bits} group_size={group} with {name}, rows={rows}, row_length={row_length})")
        groups = rows if group is None else rows * row_length // group
        assert with_zp - plain == 2 * groups, (
            f"[{rows}, {row_length}] int{bits} group_size={group}: a 16-bit zero point added {with_zp - plain:,} bytes, "
            f"expected 2 bytes for each of the {groups:,} scale groups{_extra_bytes_cause(with_zp - plain, groups, 16)}"
        )
        assert fp32 - plain == 2 * groups, (
            f"[{rows}, {row_length}] int{bits} group_size={group}: fp32 instead of fp16 scales added {fp32 - plain:,} bytes, "
            f"expected 2 more bytes for each of the {groups:,} scale groups{_extra_bytes_cause(fp32 - plain, groups, 16)}"
        )
        doubled = qp.quantized_bytes(make_plan(qp, "weights", bits, group), 2 * rows, row_length)
        _require_int(doubled, f"quantized_bytes(int{bits} group_size={group}, rows={2 * rows}, row_length={row_length})")
        assert doubled == 2 * plain, f"twice the rows should store twice the bytes: {doubled:,} for {2 * rows} rows vs 2 × {plain:,} for {rows}"


def _expect_the_worked_example(qp):
    """The gate of the quantized_bytes validation checks: the docstring's example, 8,650,752 bytes."""
    expect_correct(
        qp.quantized_bytes, make_plan(qp, "weights", 4, 128), 4096, 4096, expected=8_650_752,
        what="quantized_bytes(int4 group_size=128, rows=4096, row_length=4096)",
    )


@check("quantized_bytes", points=1)
def test_quantized_bytes_rejects_groups_that_do_not_tile_a_row(lab):
    qp = lab.quantization_plan
    _expect_the_worked_example(qp)
    for group, row_length in ((100, 4096), (128, 64), (3, 4)):
        expect_value_error(
            qp.quantized_bytes, make_plan(qp, "weights", 4, group), 16, row_length,
            what=f"quantized_bytes(group_size={group}, rows=16, row_length={row_length})", must_mention=(group, row_length),
        )


@check("quantized_bytes", points=1)
@pytest.mark.parametrize(
    ("rows", "row_length", "name", "bad"),
    [(True, 4096, "rows", True), (0, 4096, "rows", 0), (-3, 4096, "rows", -3), (2.5, 4096, "rows", 2.5), (16.0, 4096, "rows", 16.0),
     (16, False, "row_length", False), (16, 0, "row_length", 0), (16, 4096.0, "row_length", 4096.0)],
    ids=["rows-bool", "rows-zero", "rows-negative", "rows-float", "rows-whole-float", "row-length-bool", "row-length-zero", "row-length-whole-float"],
)
def test_quantized_bytes_rejects_counts_that_are_not_positive_ints(lab, rows, row_length, name, bad):
    qp = lab.quantization_plan
    _expect_the_worked_example(qp)
    expect_value_error(
        qp.quantized_bytes, make_plan(qp, "weights", 8), rows, row_length,
        what=f"quantized_bytes(int8 per-channel, rows={rows!r}, row_length={row_length!r}) (a count of values is an int of at least 1, never a bool)",
        must_mention=(name, bad),
    )


# --- saved_memory ------------------------------------------------------------------------------


WORKED = [
    ("llama-3-8b", "weights", {"bits": 4, "group_size": 128}, (1, 8192), 10_359_930_880, "q/k/v/o + gate/up/down of 32 layers, int4 codes + fp16 scale per 128"),
    ("llama-3-8b", "kv_cache", {"bits": 8}, (8, 8192), 4_227_858_432, "K and V, 32 layers, 8 KV heads × 128, one fp16 scale per head vector"),
    ("llama-3-8b", "kv_cache", {"bits": 8, "group_size": -1, "number_format": "fp8"}, (8, 8192), 4_294_967_168, "one fp16 scale per layer for K and for V"),
    ("llama-3-8b", "activations", {"bits": 8}, (1, 4096), 58_712_064, "down_proj input [4096, 14336], one fp16 scale per token"),
    ("qwen2.5-7b", "weights", {"bits": 8}, (1, 1), 6_522_507_264, "28 layers, one fp16 scale per output channel"),
    ("qwen2.5-7b", "weights", {"bits": 4, "group_size": 128, "zero_point_bits": 8}, (1, 1), 9_634_996_224, "int4 codes + fp16 scale and int8 zero point per 128"),
    ("qwen2.5-7b", "kv_cache", {"bits": 4, "group_size": 32, "zero_point_bits": 8}, (4, 32768), 5_284_823_040, "4 KV heads × 128, groups of 32 with fp16 scale + int8 zero point"),
    ("qwen2.5-7b", "activations", {"bits": 8, "group_size": -1, "number_format": "fp8"}, (2, 2048), 77_594_622, "down_proj input [4096, 18944], one scale"),
    ("gemma-2-9b", "kv_cache", {"bits": 8}, (1, 8192), 1_048_707_072, "21 full-attention layers hold 8192 tokens, the 21 sliding-window layers only 4096"),
    ("mistral-7b-v0.1", "kv_cache", {"bits": 8}, (2, 32768), 528_482_304, "every layer's 4096-token window caps the cache"),
    ("mistral-7b-v0.1", "kv_cache", {"bits": 2, "group_size": -1, "scale_bits": 32}, (2, 32768), 939_523_840, "4096-token windows, int2 codes, one fp32 scale per layer for K and for V"),
]


def _likely_kv_mistake(model, batch, actual, expected):
    """The usual KV-sizing mistakes whose result is exactly ``actual``: named only when they fit."""
    if not expected or type(actual) is not int:
        return ""
    ratio = Fraction(actual, expected)
    known = {
        Fraction(1, 2): "K and V counted once (the cache holds both)",
        Fraction(model.num_attention_heads, model.num_key_value_heads): "num_attention_heads used instead of num_key_value_heads (query heads share K and V)",
        Fraction(1, batch): "the cache sized for one sequence (every sequence of the batch holds its own)",
    }
    causes = [cause for value, cause in known.items() if value == ratio and value != 1]
    return f" That is exactly what {' or '.join(causes)} gives." if causes else ""


@check("saved_memory", points=3)
@pytest.mark.parametrize(("model_name", "target", "plan_kwargs", "workload", "expected", "story"), WORKED, ids=[f"{w[0]}-{w[1]}-{i}" for i, w in enumerate(WORKED)])
def test_saved_memory_on_real_models(lab, model_name, target, plan_kwargs, workload, expected, story):
    qp = lab.quantization_plan
    model, plan = preset(model_name), make_plan(qp, target, **plan_kwargs)
    actual = qp.saved_memory(plan, model, make_workload(qp, *workload))
    what = f"saved_memory({plan_text(plan)}, {model_name}, batch {workload[0]} × {workload[1]} tokens)"
    _require_int(actual, what)
    cause = _likely_kv_mistake(model, workload[0], actual, expected) if target == "kv_cache" else ""
    assert actual == expected, (
        f"{what} is {actual:,} bytes, expected {expected:,} ({expected / GIB:.4f} GiB; {story}); off by {actual - expected:+,} bytes.{cause}"
    )


@check("saved_memory", points=2)
def test_weight_saving_does_not_depend_on_the_workload(lab, rng):
    qp = lab.quantization_plan
    for _ in range(10):
        model = random_dense_model(rng)
        plan = make_plan(qp, "weights", rng.choice([2, 4, 8]), rng.choice([None, qp.PER_TENSOR]))
        large = (rng.randint(2, 64), rng.randint(1000, 100000))
        a, b = qp.saved_memory(plan, model, make_workload(qp, 1, 1)), qp.saved_memory(plan, model, make_workload(qp, *large))
        _require_int(a, f"saved_memory({plan_text(plan)}, batch 1 × 1 token)")
        assert a == b, (
            f"a weights plan saved {a:,} bytes at batch 1 × 1 token but {summarize(b)} at batch {large[0]} × {large[1]}: "
            "weights are stored once, whatever is served; a weights plan saves no KV-cache or activation bytes"
        )


@check("saved_memory", points=2)
def test_kv_saving_grows_linearly_with_batch_and_tokens(lab, rng):
    qp = lab.quantization_plan
    for _ in range(10):
        model = random_dense_model(rng)
        plan = make_plan(qp, "kv_cache", rng.choice([2, 4, 8]))
        batch, context = rng.randint(1, 8), rng.randint(1, 4096)
        base = qp.saved_memory(plan, model, make_workload(qp, batch, context))
        _require_int(base, f"saved_memory({plan_text(plan)}, batch {batch} × {context} tokens)")
        for b, t in ((2 * batch, context), (batch, 3 * context)):
            grown = qp.saved_memory(plan, model, make_workload(qp, b, t))
            factor = (b * t) // (batch * context)
            assert grown == factor * base, (
                f"KV saving at batch {b} × {t} tokens is {summarize(grown)} bytes, expected {factor} × {base:,} = {factor * base:,} "
                f"(batch {batch} × {context}): every token of every sequence holds its own K and V"
            )


@check("saved_memory", points=2)
def test_kv_saving_follows_kv_heads_not_query_heads(lab, rng):
    qp = lab.quantization_plan
    plan = make_plan(qp, "kv_cache", 8)
    workload = make_workload(qp, 2, 1024)
    for _ in range(10):
        model = random_dense_model(rng, num_key_value_heads=1, num_attention_heads=8)
        gqa = random_dense_model(rng, **{**model.__dict__, "num_key_value_heads": 2})
        one, two = qp.saved_memory(plan, model, workload), qp.saved_memory(plan, gqa, workload)
        _require_int(one, f"saved_memory({plan_text(plan)}, {model.name}, batch 2 × 1024 tokens)")
        assert two == 2 * one, (
            f"doubling num_key_value_heads (1 -> 2, with 8 query heads) changed the KV saving from {one:,} to {summarize(two)}, "
            "expected exactly twice: the cache stores K and V per KV head, and query heads share them (GQA/MQA)"
        )


@check("saved_memory", points=2)
def test_kv_saving_ignores_weights_and_counts_k_and_v(lab, rng):
    qp = lab.quantization_plan
    plan = make_plan(qp, "kv_cache", 8)
    for _ in range(10):
        model = random_dense_model(rng)
        wider = random_dense_model(rng, **{**model.__dict__, "intermediate_size": model.intermediate_size * 2, "vocab_size": model.vocab_size + 7})
        batch, context = rng.randint(1, 4), rng.randint(1, 2048)
        workload = make_workload(qp, batch, context)
        a, b = qp.saved_memory(plan, model, workload), qp.saved_memory(plan, wider, workload)
        _require_int(a, f"saved_memory({plan_text(plan)}, {model.name}, batch {batch} × {context} tokens)")
        assert a == b, f"a KV plan saved {a:,} bytes, and {summarize(b)} on the same model with a wider MLP: a KV plan saves no weight bytes"
        held = batch * context * model.num_key_value_heads * model.num_hidden_layers
        per_vector = model.head_dim * 2 - (model.head_dim + 2)  # bf16 bytes minus int8 codes and one fp16 scale
        assert a == 2 * held * per_vector, (
            f"int8 KV saving on {model.num_hidden_layers} layers × {model.num_key_value_heads} KV heads × head_dim {model.head_dim} "
            f"at batch {batch} × {context} tokens is {a:,}, expected {2 * held * per_vector:,}: count K and V (the 2), every layer, every KV head."
            + _likely_kv_mistake(model, batch, a, 2 * held * per_vector)
        )


@check("saved_memory", points=1)
def test_kv_saving_stops_growing_at_the_sliding_window(lab, rng):
    qp = lab.quantization_plan
    plan = make_plan(qp, "kv_cache", 4, None)
    model = random_dense_model(rng, sliding_window=256)
    saved = {tokens: qp.saved_memory(plan, model, make_workload(qp, 2, tokens)) for tokens in (1, 255, 256, 257, 1000)}
    _require_int(saved[1], f"saved_memory({plan_text(plan)}, batch 2 × 1 token)")
    for tokens in (255, 256):
        assert saved[tokens] == tokens * saved[1], (
            f"with sliding_window=256 the KV saving at {tokens} tokens is {summarize(saved[tokens])}, expected {tokens} × {saved[1]:,} "
            f"(the saving at 1 token): up to the window, every token is held"
        )
    for tokens in (257, 1000):
        assert saved[tokens] == saved[256], (
            f"with sliding_window=256 the KV saving at {tokens} tokens is {summarize(saved[tokens])} but {saved[256]:,} at 256: "
            "a sliding-window layer only keeps the last 256 tokens (min(context_tokens, window), not window + 1)"
        )


@check("saved_memory", points=1)
def test_activation_saving_follows_tokens_and_mlp_width(lab, rng):
    qp = lab.quantization_plan
    plan = make_plan(qp, "activations", 8)
    for _ in range(10):
        model = random_dense_model(rng)
        batch, context = rng.randint(1, 8), rng.randint(1, 4096)
        saved = qp.saved_memory(plan, model, make_workload(qp, batch, context))
        _require_int(saved, f"saved_memory({plan_text(plan)}, batch {batch} × {context} tokens)")
        expected = batch * context * (model.intermediate_size * 2 - model.intermediate_size - 2)
        assert saved == expected, (
            f"int8 per-token activations at batch {batch} × {context} tokens, intermediate_size {model.intermediate_size}: saved {saved:,}, "
            f"expected {expected:,} (the down_proj input [tokens, intermediate_size] of one layer at a time; hidden_size is {model.hidden_size})"
        )


def _expect_a_worked_saving(qp):
    """The gate of the saved_memory validation checks: Llama-3-8B's int4 group-128 weights save 10,359,930,880 bytes."""
    expect_correct(
        qp.saved_memory, make_plan(qp, "weights", 4, 128), preset("llama-3-8b"), make_workload(qp, 1, 1), expected=10_359_930_880,
        what="saved_memory(weights int4 group_size=128, llama-3-8b, batch 1 × 1 token)",
    )


@check("saved_memory", points=1)
@pytest.mark.parametrize("model_name", ["mixtral-8x7b", "deepseek-v3"])
def test_saved_memory_rejects_architectures_it_does_not_model(lab, model_name):
    qp = lab.quantization_plan
    _expect_a_worked_saving(qp)
    expect_value_error(
        qp.saved_memory, make_plan(qp, "weights", 4, 128), preset(model_name), make_workload(qp, 1, 1),
        what=f"saved_memory(..., {model_name}) (experts or latent attention are not a dense decoder)", must_mention=(model_name,),
    )


@check("saved_memory", points=1)
def test_saved_memory_rejects_a_group_that_does_not_divide_the_weights(lab):
    qp = lab.quantization_plan
    _expect_a_worked_saving(qp)
    expect_value_error(
        qp.saved_memory, make_plan(qp, "weights", 4, 100), preset("llama-3-8b"), make_workload(qp, 1, 1),
        what="saved_memory(int4 group_size=100, llama-3-8b)", must_mention=(100, 4096),
    )


# --- risk ----------------------------------------------------------------------------------------

RISK_QUESTIONS = {
    "weights": "which tensor is changed once, offline, and then read by every matmul?",
    "activations": "which tensors are produced fresh for every token, and what do outlier channels do to one shared scale?",
    "kv_cache": "which computation reads the cached K and V back, and what does softmax do to a small error in q·k?",
}


@check("risk", points=3)
@pytest.mark.parametrize("target", ["weights", "activations", "kv_cache"])
def test_risk_names_where_error_enters_for_each_target(lab, target):
    qp = lab.quantization_plan
    found = qp.risk(make_plan(qp, target, 8))
    assert found.target == qp.Target(target), f"risk(...).target is {summarize(found.target)}, expected the plan's own target {target!r}"
    for field, expected in zip(("site", "mechanism", "mitigation"), RISK_DIGESTS[target]):
        value = getattr(found, field)
        assert digest(getattr(value, "value", value)) == expected, (
            f"risk(a {target} plan).{field} is {summarize(getattr(value, 'name', value))}, which does not fit a {target} plan. "
            f"Ask: {RISK_QUESTIONS[target]} (the enums in the starter must keep their given texts)"
        )


@check("risk", points=1)
def test_risk_differs_between_targets(lab):
    qp = lab.quantization_plan
    risks = [qp.risk(make_plan(qp, target, 4)) for target in _targets(qp)]
    for field in ("site", "mechanism", "mitigation"):
        values = [getattr(r, field) for r in risks]
        assert len(set(values)) == 3, f"risk().{field} is {summarize(values)} for weights, activations, KV cache: each target puts error somewhere else"


@check("risk", points=2)
@pytest.mark.parametrize(
    ("bits", "group_size", "number_format", "expected"),
    [(8, None, "int", "low"), (4, 128, "int", "medium"), (2, 32, "int", "high"), (8, -1, "int", "medium"), (4, -1, "int", "high"), (2, -1, "int", "high"), (8, -1, "fp8", "low"), (8, None, "fp8", "low")],
    ids=["int8-row", "int4-g128", "int2-g32", "int8-tensor", "int4-tensor", "int2-tensor", "fp8-tensor", "fp8-row"],
)
def test_risk_severity_follows_bits_and_granularity(lab, bits, group_size, number_format, expected):
    qp = lab.quantization_plan
    for target in _targets(qp):
        plan = make_plan(qp, target, bits, group_size, number_format=number_format)
        assert_exact(
            qp.risk(plan).severity, expected, f"risk({plan_text(plan)}).severity",
            "8/4/2 bits are low/medium/high, one level worse (capped at high) for an integer per-tensor plan, FP8 exempt",
        )


# --- describe ------------------------------------------------------------------------------------

DESCRIBED = [
    ("kv_cache", {"bits": 8}, "llama-3-8b", (8, 8192), 4_227_858_432, "low",
     "kv_cache int8 per-token-per-head (16-bit scales): saves 3.94 GiB on llama-3-8b at batch 8 × 8192 tokens; main risk (low): ", "cd766fc29957ff98"),
    ("weights", {"bits": 4, "group_size": 128, "zero_point_bits": 8}, "qwen2.5-7b", (1, 1), 9_634_996_224, "medium",
     "weights int4 group-128 (16-bit scales, 8-bit zero points): saves 8.97 GiB on qwen2.5-7b at batch 1 × 1 tokens; main risk (medium): ", "6b6307a22f1acd54"),
    ("activations", {"bits": 8, "group_size": -1, "number_format": "fp8"}, "qwen2.5-7b", (2, 2048), 77_594_622, "low",
     "activations fp8 per-tensor (16-bit scales): saves 0.07 GiB on qwen2.5-7b at batch 2 × 2048 tokens; main risk (low): ", "f818e0eb0d7d7008"),
    ("kv_cache", {"bits": 2, "group_size": -1, "scale_bits": 32}, "mistral-7b-v0.1", (2, 32768), 939_523_840, "high",
     "kv_cache int2 per-tensor (32-bit scales): saves 0.87 GiB on mistral-7b-v0.1 at batch 2 × 32768 tokens; main risk (high): ", "0ae12b8e98a6064d"),
]


@check("describe", points=2)
@pytest.mark.parametrize(("target", "plan_kwargs", "model_name", "workload", "saved", "severity", "expected", "line_digest"), DESCRIBED, ids=[f"{d[2]}-{d[0]}" for d in DESCRIBED])
def test_describe_worked_examples(lab, target, plan_kwargs, model_name, workload, saved, severity, expected, line_digest):
    qp = lab.quantization_plan
    plan = make_plan(qp, target, **plan_kwargs)
    line = qp.describe(plan, preset(model_name), make_workload(qp, *workload))
    what = f"describe({plan_text(plan)}, {model_name}, batch {workload[0]} × {workload[1]})"
    if type(line) is not str:
        pytest.fail(f"{what} returned {type(line).__name__} {summarize(line)}, expected a str", pytrace=False)
    shown = summarize(line, limit=400)
    assert "\n" not in line, f"{what} must be one line, got {shown}"
    if not line.startswith(expected):
        gib = f"saves {saved / GIB:.2f} GiB"
        cause = (
            f" The plan saves {saved:,} bytes, {gib[6:]} (bytes / 2**30, two decimals): if the saved_memory checks fail, fix those first"
            if gib not in line else ""
        ) + (f" The severity is {severity!r}: if the risk checks fail, fix those first." if f"main risk ({severity}): " not in line else "")
        pytest.fail(f"{what} gave\n    {shown}\nexpected it to start with\n    {expected!r}.{cause}", pytrace=False)
    assert digest(line) == line_digest, (
        f"{what} gave\n    {shown}\nwhich starts right but ends wrong: after 'main risk (...): ' comes risk(plan).mechanism.value, "
        "the given sentence, and nothing else"
    )


@check("describe", points=2)
def test_describe_says_more_than_the_bit_width(lab, rng):
    qp = lab.quantization_plan
    for _ in range(15):
        model = random_dense_model(rng)
        batch, context = rng.randint(1, 16), rng.randint(1, 32768)
        target = rng.choice(["weights", "activations", "kv_cache"])
        plan = make_plan(qp, target, rng.choice([2, 4, 8]), rng.choice([None, qp.PER_TENSOR]), rng.choice([8, 16, 32]), rng.choice([0, 8]))
        line = qp.describe(plan, model, make_workload(qp, batch, context))
        what = f"describe({plan_text(plan)}, {model.name}, batch {batch} × {context})"
        if type(line) is not str:
            pytest.fail(f"{what} returned {type(line).__name__} {summarize(line)}, expected a str", pytrace=False)
        stored = f"({plan.scale_bits}-bit scales" + (f", {plan.zero_point_bits}-bit zero points)" if plan.zero_point_bits else ")")
        wanted = {
            "the target, format and granularity": f"{target} {plan.fmt} {documented_granularity(target, plan.group_size)} {stored}: ",
            "the saving in GiB": " GiB on ",
            "the model": f" on {model.name} at ",
            "the workload": f" at batch {batch} × {context} tokens; ",
            "the risk severity": "; main risk (",
        }
        for part, text in wanted.items():
            assert text in line, f"{what} should name {part} ({text!r}), got:\n    {summarize(line, limit=400)}"
        assert " GB" not in line, f"describe() reports GB (10**9 bytes); report GiB (2**30): {summarize(line, limit=400)}"
        assert "\n" not in line, f"{what} must be one line, got {summarize(line, limit=400)}"


# --- kernel_path -------------------------------------------------------------------------------

KERNEL_CASES = [
    ("vllm-int4-weights", "weights", {"bits": 4, "group_size": 128}, "vLLM", "Marlin mixed-precision GEMM (GPTQ/AWQ int4)", True, "Marlin reads int4 weights directly"),
    ("vllm-fp8-kv", "kv_cache", {"bits": 8, "group_size": -1, "number_format": "fp8"}, "vLLM", "FP8 KV cache in FlashAttention / FlashInfer", True, "vLLM's attention reads an FP8 cache"),
    ("transformers-int4-kv", "kv_cache", {"bits": 4, "group_size": 64}, "transformers", "QuantizedCache (int4 KV, dequantized before attention)", False, "QuantizedCache dequantizes before attention: capacity only"),
    ("transformers-int2-kv", "kv_cache", {"bits": 2}, "transformers", "QuantizedCache (int2 KV, dequantized before attention)", False, "a kernel exists, but it dequantizes first"),
    ("llamacpp-int8-kv", "kv_cache", {"bits": 8}, "llama.cpp", "q8_0 KV cache read by flash attention", True, "llama.cpp's flash attention reads a q8_0 cache"),
    ("torchao-fp8-activations", "activations", {"bits": 8, "group_size": -1, "number_format": "fp8"}, "torchao", "torch._scaled_mm for FP8 activations", True, "torch._scaled_mm reads FP8 activations"),
    ("vllm-int2-weights", "weights", {"bits": 2, "group_size": 64}, "vLLM", None, False, "no kernel: no speedup, only dequantization overhead"),
    ("llamacpp-w8a8", "activations", {"bits": 8}, "llama.cpp", None, False, "no W8A8 kernel in that backend (its int8 kernels are for weights and the KV cache)"),
    ("transformers-int8-kv", "kv_cache", {"bits": 8}, "transformers", None, False, "transformers lists int4 and int2 KV caches only"),
]


@check("kernel_path", points=2)
@pytest.mark.parametrize(("target", "plan_kwargs", "backend", "kernel", "speedup", "lesson"), [c[1:] for c in KERNEL_CASES], ids=[c[0] for c in KERNEL_CASES])
def test_kernel_path_decides_speed_or_capacity(lab, target, plan_kwargs, backend, kernel, speedup, lesson):
    qp = lab.quantization_plan
    plan = make_plan(qp, target, **plan_kwargs)
    path = qp.kernel_path(plan, backend)
    what = f"kernel_path({plan_text(plan)}, {backend!r})"
    assert_exact((path.backend, path.kernel, path.speedup), (backend, kernel, speedup), f"{what} as (backend, kernel, speedup)", lesson)
    assert type(path.reason) is str and path.reason.strip(), f"{what}.reason is {summarize(path.reason)}: say in a sentence why it is (or is not) faster"


@check("kernel_path", points=1)
def test_kernel_path_rejects_unknown_backends(lab):
    qp = lab.quantization_plan
    plan = make_plan(qp, "weights", 4, 128)
    expect_correct(
        lambda: (lambda path: (path.backend, path.kernel, path.speedup))(qp.kernel_path(plan, "vLLM")),
        expected=("vLLM", "Marlin mixed-precision GEMM (GPTQ/AWQ int4)", True), what="kernel_path(weights int4 group-128, 'vLLM') as (backend, kernel, speedup)",
    )
    for backend in ("tensorrt", "vllm"):
        expect_value_error(qp.kernel_path, plan, backend, what=f"kernel_path(..., {backend!r}) (not one of BACKENDS, which are case-sensitive)", must_mention=(backend,))


# --- compare_plans -----------------------------------------------------------------------------


def _rows(rows):
    return [(row.label, row.saved_bytes, row.kernel, row.speedup, row.severity) for row in rows]


BASELINE = ("bf16 baseline", 0, "bf16 dense", False, None)


@check("compare_plans", points=2)
def test_compare_plans_side_by_side(lab):
    qp = lab.quantization_plan
    plans = [
        make_plan(qp, "weights", 8),
        make_plan(qp, "weights", 4, 128),
        make_plan(qp, "kv_cache", 8),
        make_plan(qp, "kv_cache", 8, qp.PER_TENSOR, number_format="fp8"),
    ]
    expected = [
        BASELINE,
        ("weights int8 per-channel", 6_976_569_344, "Marlin mixed-precision GEMM (GPTQ int8)", True, "low"),
        ("weights int4 group-128", 10_359_930_880, "Marlin mixed-precision GEMM (GPTQ/AWQ int4)", True, "medium"),
        ("kv_cache int8 per-token-per-head", 4_227_858_432, None, False, "low"),
        ("kv_cache fp8 per-tensor", 4_294_967_168, "FP8 KV cache in FlashAttention / FlashInfer", True, "low"),
    ]
    rows = qp.compare_plans(plans, preset("llama-3-8b"), make_workload(qp, 8, 8192), "vLLM")
    if type(rows) is not list:
        pytest.fail(f"compare_plans returned {type(rows).__name__} {summarize(rows)}, expected a list of PlanComparison rows", pytrace=False)
    assert len(rows) == 5, f"compare_plans returned {len(rows)} rows for 4 plans, expected 5 (the bf16 baseline first)"
    sources = ("granularity", "saved_memory", "kernel_path", "kernel_path", "risk")
    for index, (row, wanted) in enumerate(zip(_rows(rows), expected)):
        for field, source, mine, theirs in zip(("label", "saved_bytes", "kernel", "speedup", "severity"), sources, row, wanted):
            assert_exact(
                mine, theirs, f"compare_plans(4 plans, llama-3-8b, batch 8 × 8192, 'vLLM')[{index}].{field}",
                "row 0 is the bf16 baseline" if index == 0 else f"this field comes from {source}: if its checks fail, fix those first",
            )


@check("compare_plans", points=1)
def test_compare_plans_rejects_unknown_backend_even_without_plans(lab):
    qp = lab.quantization_plan
    model, workload = preset("qwen2.5-7b"), make_workload(qp, 1, 1)
    expect_correct(lambda: _rows(qp.compare_plans([], model, workload, "vLLM")), expected=[BASELINE], what="compare_plans([], qwen2.5-7b, batch 1 × 1, 'vLLM') as rows")
    expect_value_error(qp.compare_plans, [], model, workload, "TensorRT", what="compare_plans([], ..., 'TensorRT')", must_mention=("TensorRT",))
