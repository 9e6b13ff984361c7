"""Public checks for Lab 09 — the decode roofline.

Worked figures on real models and real GPUs (the datasheet numbers are given in the starter),
properties on random models, and the lab's misunderstandings turned into checks. Read a failing
check's message first: it names the quantity, the expected and actual values, and the usual cause.
Return types are part of each exercise: FLOPs are an ``int``, bytes, times and rates are floats (an
``int`` is accepted where a float is documented, a ``bool`` never), ``bound`` is a ``str``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from infralens.checking import assert_exact, expect_correct, expect_value_error, random_dense_model, summarize
from infralens.models import ModelConfig, preset

check = pytest.mark.check
GB = 10**9

# Tolerance for floats: every figure here is a few products and one or two divisions of exact
# integers, so any correct order of operations agrees to ~1e-15 relative. 1e-9 leaves room for
# that and is far below the smallest real mistake (a missing factor, a wrong field: >= 1e-3).
# Byte counts whose sizes are binary fractions (2, 1, 0.5, 0.515625) are exact in any order and
# are compared exactly.
REL = 1e-9


def _number(value, what: str, kind: str = "a float") -> float:
    """``value`` if it is an int or a float (never a bool, a string or a NumPy scalar); else a failure naming the type."""
    if type(value) not in (int, float):
        pytest.fail(f"{what} returned {type(value).__name__} {summarize(value)}; it should be {kind} (an int is accepted, a bool never)", pytrace=False)
    return value


def _close(actual, expected) -> bool:
    return type(actual) in (int, float) and math.isclose(actual, expected, rel_tol=REL)


def _bytes(read, what: str) -> tuple[float, float]:
    """The ``weights`` and ``kv_cache`` of a ``StepBytes``, each checked to be a number."""
    return tuple(_number(getattr(read, field, None), f"{what}.{field}", "a float number of bytes") for field in ("weights", "kv_cache"))


def _bound_fields(bound, what: str):
    """A ``StepBound`` with every field's type checked: ``flops`` an int, ``bound`` a str, the rest numbers."""
    for field in ("weight_bytes", "kv_bytes", "memory_s", "compute_s", "step_s", "tokens_per_s_per_sequence", "tokens_per_s"):
        _number(getattr(bound, field, None), f"{what}.{field}")
    if type(bound.flops) is not int:
        pytest.fail(f"{what}.flops is {type(bound.flops).__name__} {summarize(bound.flops)}; FLOPs are an int (a count, never a float or a bool)", pytrace=False)
    if type(bound.bound) is not str:
        pytest.fail(f"{what}.bound is {type(bound.bound).__name__} {summarize(bound.bound)}; it should be the str 'memory' or 'compute'", pytrace=False)
    return bound


def _as_floats(read) -> tuple[float, float]:
    """A ``StepBytes`` as ``(weights, kv_cache)`` floats for :func:`expect_correct`; a non-number stays as it is and fails there."""
    return tuple(float(v) if type(v) in (int, float) else v for v in (read.weights, read.kv_cache))


def _model(rng, **overrides) -> ModelConfig:
    """A random dense decoder with a published parameter total (any positive total will do here)."""
    return random_dense_model(rng, published_parameters=rng.randint(10**6, 10**11), **overrides)


LLAMA3_8B_PARAMS = 8_030_261_248
QWEN25_7B_PARAMS = 7_615_616_512
# KV bytes per token in bf16, 2 (K and V) × layers × kv_heads × head_dim × 2 bytes:
LLAMA3_8B_KV = 2 * 32 * 8 * 128 * 2  # 131,072
QWEN25_7B_KV = 2 * 28 * 4 * 128 * 2  # 57,344

# Qwen2.5-7B's config.json with its sliding window switched on from layer 14 (transformers' Qwen2:
# layers below max_window_layers attend to everything, the others to their last 4096 tokens).
QWEN2_WINDOW_CONFIG = {
    "model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
    "intermediate_size": 18944, "vocab_size": 152064, "max_position_embeddings": 131072, "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False, "sliding_window": 4096, "use_sliding_window": True, "max_window_layers": 14,
}


def _qwen2_window() -> ModelConfig:
    model = ModelConfig.from_hf_config(QWEN2_WINDOW_CONFIG, name="qwen2.5-7b-window-from-layer-14")
    return dataclasses.replace(model, published_parameters=QWEN25_7B_PARAMS)


# A made-up model on the ridge of an H200: batch 207 × 64 tokens in bf16 reads 5,832,179,712 bytes
# and does 1,201,672,028,160 FLOPs, 1.21503744 ms on both sides (each a single exact division).
RIDGE = ModelConfig("ridge", "llama", 2, 256, 2, 2, 128, 512, 100, published_parameters=2_902_523_904)


# --- peak_flops ----------------------------------------------------------------------------------


@check("peak_flops", points=1)
@pytest.mark.parametrize(
    ("gpu", "compute", "expected"),
    [
        ("a100-80gb", "bf16", 312e12),
        ("a100-80gb", "int8", 624e12),
        ("h100-sxm", "bf16", 989e12),
        ("h100-sxm", "fp8", 1979e12),
        ("h100-sxm", "int8", 1979e12),
        ("h200", "bf16", 989e12),
        ("h200", "fp8", 1979e12),
        ("h200", "int8", 1979e12),
    ],
)
def test_peak_flops_reads_the_datasheet_table(lab, gpu, compute, expected):
    rf = lab.roofline
    actual = _number(rf.peak_flops(gpu, compute), f"peak_flops({gpu!r}, {compute!r})", "a float rate per second")
    assert _close(actual, expected), (
        f"peak_flops({gpu!r}, {compute!r}) is {actual:.4g}, expected {expected:.4g} (dense, from GPUS[{gpu!r}]): "
        "pick the field that matches the compute format; the datasheets' sparse figures are twice the dense ones"
    )


@check("peak_flops", points=1)
def test_peak_flops_defaults_to_bf16(lab):
    rf = lab.roofline
    actual = _number(rf.peak_flops("h200"), "peak_flops('h200')", "a float rate per second")
    assert _close(actual, 989e12), f"peak_flops('h200') is {actual:.4g}, expected the bf16 peak 989e12: compute defaults to 'bf16'"


@check("peak_flops", points=2)
@pytest.mark.parametrize(
    ("gpu", "compute", "bad", "why"),
    [
        ("b300", "bf16", "b300", "a GPU that is not in GPUS"),
        ("H200", "bf16", "H200", "GPU names are the keys of GPUS, lower case"),
        ("h200", "fp4", "fp4", "a compute format that is not in COMPUTE_FORMATS"),
        ("a100-80gb", "fp8", "fp8", "the A100 has no FP8 tensor cores: its fp8_flops is None"),
    ],
)
def test_peak_flops_rejects_what_the_table_does_not_have(lab, gpu, compute, bad, why):
    rf = lab.roofline
    # rejecting earns points only once the table is read right
    for good, fmt, rate in (("h100-sxm", "fp8", 1979e12), ("a100-80gb", "int8", 624e12)):
        expect_correct(lambda: float(_number(rf.peak_flops(good, fmt), f"peak_flops({good!r}, {fmt!r})")), expected=rate, what=f"peak_flops({good!r}, {fmt!r})")
    expect_value_error(rf.peak_flops, gpu, compute, what=f"peak_flops({gpu!r}, {compute!r}) ({why})", must_mention=(bad,))


# --- step_bytes ----------------------------------------------------------------------------------


@check("step_bytes", points=3)
@pytest.mark.parametrize(
    ("model_name", "batch", "context", "bytes_per_weight", "kv_bytes", "weights", "kv_cache", "story"),
    [
        ("llama-3-8b", 1, 0, 2, 2, 2 * LLAMA3_8B_PARAMS, 0, "bf16: 8,030,261,248 parameters × 2 bytes = 16.06 GB, nothing cached yet"),
        ("llama-3-8b", 8, 8192, 2, 2, 16_060_522_496, 8 * 8192 * LLAMA3_8B_KV, "8 sequences × 8192 tokens × 131,072 bytes = exactly 8 GiB of KV"),
        ("llama-3-8b", 8, 8192, 0.5, 2, 4_015_130_624, 8 * 8192 * LLAMA3_8B_KV, "int4 weights are 4× fewer bytes, the bf16 KV cache is unchanged"),
        ("qwen2.5-7b", 1, 32768, 0.5 + 2 / 128, 1, 3_926_802_264, 32768 * QWEN25_7B_KV // 2, "int4 + fp16 scale per 128 weights; FP8 KV halves 57,344 bytes/token"),
        ("mistral-7b-v0.1", 1, 32768, 2, 2, 14_483_464_192, 4096 * 131_072, "sliding_window 4096 on every layer: only the last 4096 tokens are read"),
        ("gemma-2-9b", 1, 8192, 2, 2, 18_483_411_968, (21 * 8192 + 21 * 4096) * 8192,
         "21 full layers hold 8192 tokens, the 21 sliding ones (every other layer) 4096; 8192 bytes per token-layer"),
    ],
    ids=["llama-empty", "llama-8x8k", "llama-int4", "qwen-int4-fp8kv", "mistral-window", "gemma2-alternating"],
)
def test_step_bytes_on_real_models(lab, model_name, batch, context, bytes_per_weight, kv_bytes, weights, kv_cache, story):
    rf = lab.roofline
    call = f"step_bytes({model_name}, batch={batch}, context_tokens={context}, bytes_per_weight={bytes_per_weight}, kv_bytes_per_element={kv_bytes})"
    got_weights, got_kv = _bytes(rf.step_bytes(preset(model_name), batch, context, bytes_per_weight, kv_bytes), call)
    # binary-fraction byte sizes: every product is exact, so the bytes are compared exactly
    assert got_weights == weights, (
        f"{call}.weights is {got_weights:,.1f} bytes, expected {weights:,} ({story}): "
        "published_parameters × bytes_per_weight, read once per step whatever the batch"
    )
    assert got_kv == kv_cache, (
        f"{call}.kv_cache is {got_kv:,.1f} bytes, expected {kv_cache:,} ({story}): batch × the tokens each layer holds × one layer's bytes per token"
    )


@check("step_bytes", points=2)
def test_windows_apply_layer_by_layer(lab):
    rf = lab.roofline
    model = _qwen2_window()
    call = "step_bytes(Qwen2.5-7B with use_sliding_window, sliding_window=4096, max_window_layers=14; batch=1, context_tokens=32768)"
    _, got_kv = _bytes(rf.step_bytes(model, 1, 32768), call)
    expected = (14 * 32_768 + 14 * 4096) * 2048  # 1,056,964,608: 2 × 4 KV heads × 128 × 2 bytes per token-layer
    known = {
        28 * 4096 * 2048: "the window was applied to every layer, but layers 0-13 (below max_window_layers) attend to all 32,768 tokens",
        28 * 32_768 * 2048: "the window was ignored, but layers 14-27 hold only their last 4096 tokens",
    }
    assert got_kv == expected, (
        f"{call}.kv_cache is {got_kv:,.1f} bytes, expected 14 × 32,768 + 14 × 4096 token-layers × 2048 bytes = {expected:,}. "
        + known.get(got_kv, "Ask model.layer_window(i) for each layer i: None holds every token, a window W at most W")
    )


@check("step_bytes", points=2)
def test_weights_are_read_once_per_step_whatever_the_batch(lab, rng):
    rf = lab.roofline
    for _ in range(15):
        model = _model(rng)
        batch, context = rng.randint(2, 256), rng.randint(1, 32768)
        one_weights, _ = _bytes(rf.step_bytes(model, 1, 0), "step_bytes(batch=1, context_tokens=0)")
        many_weights, _ = _bytes(rf.step_bytes(model, batch, context), f"step_bytes(batch={batch}, context_tokens={context})")
        assert _close(many_weights, one_weights), (
            f"weight bytes are {one_weights:,.0f} at batch 1 but {many_weights:,.0f} at batch {batch} × {context} tokens: "
            "the batch shares one read of every weight (each weight tile is loaded once and used for all the batch's tokens)"
        )
        assert _close(one_weights, model.published_parameters * 2), (
            f"bf16 weight bytes of a model with {model.published_parameters:,} parameters are {one_weights:,.0f}, "
            f"expected {model.published_parameters * 2:,} (2 bytes each)"
        )


@check("step_bytes", points=2)
def test_kv_bytes_grow_with_batch_times_context(lab, rng):
    rf = lab.roofline
    for _ in range(15):
        model = _model(rng)
        batch, context = rng.randint(1, 16), rng.randint(1, 8192)
        _, base = _bytes(rf.step_bytes(model, batch, context), f"step_bytes(batch={batch}, context_tokens={context})")
        for b, t in ((3 * batch, context), (batch, 2 * context)):
            _, grown = _bytes(rf.step_bytes(model, b, t), f"step_bytes(batch={b}, context_tokens={t})")
            factor = (b * t) // (batch * context)
            assert _close(grown, factor * base), (
                f"KV bytes at batch {b} × {t} tokens are {grown:,.0f}, expected {factor} × {base:,.0f} (batch {batch} × {context}): "
                "every sequence reads its own cache, so KV bytes scale with batch × cached tokens"
            )
        per_token = 2 * model.num_hidden_layers * model.num_key_value_heads * model.head_dim * 2
        assert _close(base, batch * context * per_token), (
            f"bf16 KV bytes for {model.num_hidden_layers} layers × {model.num_key_value_heads} KV heads × head_dim {model.head_dim} "
            f"at batch {batch} × {context} tokens are {base:,.0f}, expected {batch * context * per_token:,}: "
            "use the given kv_bytes_per_token (K and V, every layer, every KV head)"
        )


@check("step_bytes", points=2)
def test_weight_quantization_does_not_shrink_the_kv_cache(lab, rng):
    rf = lab.roofline
    for _ in range(10):
        model = _model(rng)
        batch, context = rng.randint(1, 64), rng.randint(1, 32768)
        bf16 = _bytes(rf.step_bytes(model, batch, context, 2), "step_bytes(bytes_per_weight=2)")
        int4 = _bytes(rf.step_bytes(model, batch, context, 0.5), "step_bytes(bytes_per_weight=0.5)")
        assert _close(int4[1], bf16[1]), (
            f"KV bytes changed from {bf16[1]:,.0f} to {int4[1]:,.0f} when only the weights went from 2 to 0.5 bytes: "
            "weight quantization leaves the KV cache in its own format"
        )
        assert _close(int4[0], bf16[0] / 4), f"int4 weights (0.5 bytes) are {int4[0]:,.0f} bytes, expected a quarter of {bf16[0]:,.0f}"
        fp8_kv = _bytes(rf.step_bytes(model, batch, context, 2, 1), "step_bytes(kv_bytes_per_element=1)")
        assert _close(fp8_kv[1], bf16[1] / 2) and _close(fp8_kv[0], bf16[0]), (
            f"an FP8 cache (kv_bytes_per_element=1) should halve the KV bytes ({bf16[1]:,.0f} -> {bf16[1] / 2:,.0f}) "
            f"and leave the weights alone; got KV {fp8_kv[1]:,.0f}, weights {fp8_kv[0]:,.0f}"
        )


@check("step_bytes", points=1)
def test_kv_bytes_follow_kv_heads_not_query_heads(lab, rng):
    rf = lab.roofline
    for _ in range(10):
        mqa = _model(rng, num_key_value_heads=1, num_attention_heads=8)
        gqa = ModelConfig(**{**mqa.__dict__, "num_key_value_heads": 4})
        _, one = _bytes(rf.step_bytes(mqa, 2, 1000), "step_bytes(1 KV head)")
        _, four = _bytes(rf.step_bytes(gqa, 2, 1000), "step_bytes(4 KV heads)")
        assert _close(four, 4 * one), (
            f"with 8 query heads, 1 KV head gives {one:,.0f} KV bytes and 4 KV heads give {four:,.0f}; expected exactly 4×: "
            "the cache holds K and V per KV head, shared by the query heads of its group"
        )


@check("step_bytes", points=1)
def test_kv_bytes_stop_growing_past_the_sliding_window(lab, rng):
    rf = lab.roofline
    model = _model(rng, sliding_window=4096)
    _, at_window = _bytes(rf.step_bytes(model, 4, 4096), "step_bytes(context_tokens=4096)")
    _, past = _bytes(rf.step_bytes(model, 4, 20000), "step_bytes(context_tokens=20000)")
    assert _close(past, at_window), (
        f"with sliding_window=4096 on every layer, KV bytes at 20,000 tokens are {past:,.0f} but {at_window:,.0f} at 4096: "
        "a sliding-window layer keeps (and reads) only its last 4096 tokens"
    )
    _, inside = _bytes(rf.step_bytes(model, 4, 1000), "step_bytes(context_tokens=1000)")
    assert _close(inside, at_window * 1000 / 4096), f"inside the window KV bytes still grow with the context: {inside:,.0f} at 1000 tokens"


def _gate_step_bytes(rf):
    """Rejecting bad input earns points only once a valid step is sized right."""
    expect_correct(
        lambda: _as_floats(rf.step_bytes(preset("llama-3-8b"), 8, 8192)),
        expected=(16_060_522_496.0, 8_589_934_592.0),
        what="step_bytes(llama-3-8b, batch=8, context_tokens=8192) as (weights, kv_cache)",
    )


@check("step_bytes", points=2)
@pytest.mark.parametrize(
    ("kwargs", "bad", "why"),
    [
        ({"batch": 0, "context_tokens": 128}, 0, "a step decodes at least one sequence"),
        ({"batch": -3, "context_tokens": 128}, -3, "a negative batch"),
        ({"batch": 2.0, "context_tokens": 128}, 2.0, "a batch is a whole number of sequences"),
        ({"batch": True, "context_tokens": 128}, True, "True is not a batch size"),
        ({"batch": 1, "context_tokens": -1}, -1, "a negative context"),
        ({"batch": 1, "context_tokens": 10.5}, 10.5, "cached tokens are whole tokens"),
        ({"batch": 1, "context_tokens": True}, True, "True is not a context length, although bool is a subclass of int"),
        ({"batch": 1, "context_tokens": False}, False, "False is not an empty context: pass 0"),
        ({"batch": 1, "context_tokens": 128, "bytes_per_weight": 0}, 0, "weights of 0 bytes"),
        ({"batch": 1, "context_tokens": 128, "bytes_per_weight": -0.5}, -0.5, "negative bytes"),
        ({"batch": 1, "context_tokens": 128, "bytes_per_weight": float("nan")}, "nan", "NaN bytes"),
        ({"batch": 1, "context_tokens": 128, "bytes_per_weight": float("inf")}, "inf", "infinite bytes"),
        ({"batch": 1, "context_tokens": 128, "bytes_per_weight": True}, True, "True is not a byte size"),
        ({"batch": 1, "context_tokens": 128, "kv_bytes_per_element": 0}, 0, "a KV cache of 0 bytes per element"),
    ],
    ids=["batch-0", "batch-negative", "batch-float", "batch-bool", "context-negative", "context-float", "context-true", "context-false",
         "weight-bytes-0", "weight-bytes-negative", "weight-bytes-nan", "weight-bytes-inf", "weight-bytes-bool", "kv-bytes-0"],
)
def test_step_bytes_rejects_bad_inputs(lab, kwargs, bad, why):
    rf = lab.roofline
    _gate_step_bytes(rf)
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    expect_value_error(rf.step_bytes, preset("llama-3-8b"), what=f"step_bytes(llama-3-8b, {shown}) ({why})", must_mention=(bad,), **kwargs)


@check("step_bytes", points=1)
def test_step_bytes_needs_a_parameter_total_and_a_dense_model(lab, rng):
    rf = lab.roofline
    _gate_step_bytes(rf)
    unsized = random_dense_model(rng, name="no-total")
    expect_value_error(rf.step_bytes, unsized, 1, 16, what="step_bytes on a model whose published_parameters is None", must_mention=("no-total",))
    mla = random_dense_model(rng, name="latent-cache", model_type="deepseek_v3", published_parameters=10**9)
    expect_value_error(
        rf.step_bytes, mla, 1, 16, what="step_bytes on a deepseek_v3 model (the given kv_bytes_per_token rejects it)", must_mention=("deepseek_v3",)
    )


# --- step_flops ----------------------------------------------------------------------------------


@check("step_flops", points=3)
@pytest.mark.parametrize(
    ("model_name", "batch", "context", "expected", "story"),
    [
        ("llama-3-8b", 1, 0, 16_060_522_496, "2 FLOPs per parameter, nothing cached to attend to"),
        ("llama-3-8b", 1, 8192, 16_060_522_496 + 4_294_967_296, "plus 4 × 32 layers × 32 query heads × 128 × 8192 tokens of attention"),
        ("qwen2.5-7b", 4, 1000, 60_924_932_096 + 1_605_632_000, "4 × (2 × 7,615,616,512) plus 4 × 28 × 28 × 128 × 1000 × 4"),
        ("gemma-2-9b", 1, 8192, 18_483_411_968 + 4 * 16 * 256 * (21 * 8192 + 21 * 4096),
         "plus 4 × 16 query heads × 256 × (21 full layers × 8192 + 21 sliding layers × 4096 tokens)"),
    ],
    ids=["llama-empty", "llama-8k", "qwen-batch-4", "gemma2-alternating"],
)
def test_step_flops_on_real_models(lab, model_name, batch, context, expected, story):
    rf = lab.roofline
    actual = rf.step_flops(preset(model_name), batch, context)
    assert_exact(actual, expected, f"step_flops({model_name}, batch={batch}, context_tokens={context})", f"{story}; FLOPs are an int")


@check("step_flops", points=1)
def test_step_flops_apply_windows_layer_by_layer(lab):
    rf = lab.roofline
    actual = rf.step_flops(_qwen2_window(), 1, 32768)
    expected = 2 * QWEN25_7B_PARAMS + 4 * 28 * 128 * (14 * 32_768 + 14 * 4096)  # 22,629,985,280
    wrong = {2 * QWEN25_7B_PARAMS + 4 * 28 * 128 * 28 * 4096: "the window was applied to every layer, but layers 0-13 (below max_window_layers) attend to all 32,768 tokens"}
    assert_exact(
        actual, expected, "step_flops(Qwen2.5-7B with use_sliding_window, sliding_window=4096, max_window_layers=14; batch=1, context_tokens=32768)",
        wrong.get(actual, "14 full layers score 32,768 cached tokens, 14 sliding layers 4096: ask model.layer_window(i) for each layer"),
    )


@check("step_flops", points=2)
def test_attention_flops_follow_query_heads_not_kv_heads(lab, rng):
    rf = lab.roofline
    for _ in range(10):
        mqa = _model(rng, num_key_value_heads=1, num_attention_heads=8)
        gqa = ModelConfig(**{**mqa.__dict__, "num_key_value_heads": 4})
        a, b = rf.step_flops(mqa, 2, 1000), rf.step_flops(gqa, 2, 1000)
        assert a == b, (
            f"step_flops changed from {summarize(a)} to {summarize(b)} when only num_key_value_heads went from 1 to 4: every query head still "
            "scores all cached keys, so GQA saves cache bytes but no attention FLOPs"
        )
        attention = rf.step_flops(mqa, 2, 1000) - rf.step_flops(mqa, 2, 0)
        expected = 4 * mqa.num_hidden_layers * 8 * mqa.head_dim * 1000 * 2
        assert attention == expected, (
            f"attention FLOPs over 1000 cached tokens at batch 2 are {summarize(attention)}, expected {expected:,}: "
            "4 × layers × query heads × head_dim × tokens × batch (q·k and the weighted sum of V, 2 FLOPs per multiply-add)"
        )


@check("step_flops", points=1)
def test_step_flops_grow_with_the_batch(lab, rng):
    rf = lab.roofline
    for _ in range(10):
        model = _model(rng)
        batch, context = rng.randint(1, 64), rng.randint(0, 8192)
        one, many = rf.step_flops(model, 1, context), rf.step_flops(model, batch, context)
        assert many == batch * one, (
            f"step_flops at batch {batch} is {summarize(many)}, expected {batch} × {summarize(one)}: unlike the weight bytes, "
            "the FLOPs are done again for every sequence"
        )
        assert rf.step_flops(model, 1, 0) == 2 * model.published_parameters, "with nothing cached a step costs 2 FLOPs per parameter"


@check("step_flops", points=1)
def test_step_flops_stop_growing_past_the_sliding_window(lab):
    rf = lab.roofline
    mistral = preset("mistral-7b-v0.1")
    at_window, past = rf.step_flops(mistral, 2, 4096), rf.step_flops(mistral, 2, 32768)
    expected = 2 * (2 * 7_241_732_096 + 4 * 32 * 32 * 128 * 4096)
    assert past == at_window == expected, (
        f"Mistral-7B-v0.1 (sliding_window 4096) at batch 2: step_flops is {summarize(at_window)} at 4096 tokens and {summarize(past)} at 32768, "
        f"expected {expected:,} for both: a sliding-window layer attends to its last 4096 tokens only"
    )


@check("step_flops", points=1)
@pytest.mark.parametrize(
    ("batch", "context", "bad"), [(0, 128, 0), (1, -5, -5), (True, 128, True), (1, True, True), (1, 64.0, 64.0)],
    ids=["batch-0", "context-negative", "batch-bool", "context-bool", "context-float"],
)
def test_step_flops_rejects_bad_workloads(lab, batch, context, bad):
    rf = lab.roofline
    expect_correct(rf.step_flops, preset("llama-3-8b"), 1, 8192, expected=20_355_489_792, what="step_flops(llama-3-8b, batch=1, context_tokens=8192)")
    expect_value_error(rf.step_flops, preset("qwen2.5-7b"), batch, context, what=f"step_flops(qwen2.5-7b, batch={batch!r}, context_tokens={context!r})", must_mention=(bad,))


# --- step_bound ----------------------------------------------------------------------------------


@check("step_bound", points=3)
def test_llama3_8b_on_h200_cannot_beat_3_35_ms(lab):
    rf = lab.roofline
    bound = _bound_fields(rf.step_bound(preset("llama-3-8b"), "h200", 1, 0), "step_bound(llama-3-8b, 'h200', batch=1, context_tokens=0)")
    floor_s = 16_060_522_496 / 4.8e12  # 16.06 GB / 4.8 TB/s = 3.346 ms
    assert _close(bound.memory_s, floor_s), (
        f"memory_s of Llama-3-8B bf16, batch 1, on an H200 is {bound.memory_s * 1e3:.4f} ms, expected "
        f"16,060,522,496 bytes / 4.8e12 bytes/s = {floor_s * 1e3:.4f} ms (decimal TB/s; all weights read once)"
    )
    assert _close(bound.step_s, floor_s) and bound.bound == "memory", (
        f"step_s is {bound.step_s * 1e3:.4f} ms with bound={bound.bound!r}, expected {floor_s * 1e3:.4f} ms, 'memory': "
        f"step_s is max(memory_s, compute_s), and the compute side needs only {16_060_522_496 / 989e12 * 1e3:.4f} ms"
    )
    assert _close(bound.tokens_per_s_per_sequence, 1 / floor_s) and _close(bound.tokens_per_s, 1 / floor_s), (
        f"tokens/s is {bound.tokens_per_s_per_sequence:.2f} per sequence and {bound.tokens_per_s:.2f} in total, "
        f"expected {1 / floor_s:.2f} for both at batch 1 (one token per sequence per step)"
    )
    assert (bound.weight_bytes, bound.kv_bytes, bound.flops) == (16_060_522_496, 0, 16_060_522_496), (
        f"weight_bytes, kv_bytes, flops are {bound.weight_bytes}, {bound.kv_bytes}, {bound.flops}; "
        "expected 16,060,522,496, 0 and 16,060,522,496 (from step_bytes and step_flops)"
    )


@check("step_bound", points=2)
def test_large_batch_short_context_becomes_compute_bound(lab):
    rf = lab.roofline
    bound = _bound_fields(rf.step_bound(preset("llama-3-8b"), "h200", 512, 128), "step_bound(llama-3-8b, 'h200', batch=512, context_tokens=128)")
    flops = 512 * 16_060_522_496 + 4 * 32 * 32 * 128 * 128 * 512  # 8,257,347,256,320
    read = 16_060_522_496 + 512 * 128 * LLAMA3_8B_KV  # 24,650,457,088 bytes
    assert _close(bound.compute_s, flops / 989e12) and _close(bound.memory_s, read / 4.8e12), (
        f"at batch 512 × 128 tokens: compute_s {bound.compute_s * 1e3:.3f} ms (expected {flops / 989e12 * 1e3:.3f}), "
        f"memory_s {bound.memory_s * 1e3:.3f} ms (expected {read / 4.8e12 * 1e3:.3f})"
    )
    assert bound.bound == "compute" and _close(bound.step_s, flops / 989e12), (
        f"bound is {bound.bound!r} with step_s {bound.step_s * 1e3:.3f} ms; expected 'compute' at {flops / 989e12 * 1e3:.3f} ms: "
        "512 sequences share one weight read but each needs its own FLOPs, so the step crosses the ridge"
    )
    assert _close(bound.tokens_per_s, 512 / bound.step_s), (
        f"tokens_per_s is {bound.tokens_per_s:,.0f}, expected batch / step_s = {512 / bound.step_s:,.0f}: every sequence gains a token per step"
    )


@check("step_bound", points=2)
def test_a_step_exactly_on_the_ridge_is_memory_bound(lab):
    rf = lab.roofline
    what = "step_bound(2 layers, 2 heads of 128, 2,902,523,904 parameters; 'h200', batch=207, context_tokens=64)"
    bound = _bound_fields(rf.step_bound(RIDGE, "h200", 207, 64), what)
    tie_s = 0.00121503744  # 5,832,179,712 bytes / 4.8e12 = 1,201,672,028,160 FLOPs / 989e12, exactly 1.21503744 ms
    assert _close(bound.memory_s, tie_s) and _close(bound.compute_s, tie_s), (
        f"{what}: memory_s {bound.memory_s!r} s and compute_s {bound.compute_s!r} s, expected {tie_s} s for both "
        "(5,832,179,712 bytes at 4.8e12 bytes/s; 1,201,672,028,160 FLOPs at 989e12 FLOP/s)"
    )
    assert bound.memory_s == bound.compute_s, (
        f"{what}: memory_s {bound.memory_s!r} and compute_s {bound.compute_s!r} should be the same float: each is one exact "
        "division, (weight_bytes + kv_bytes) / hbm_bytes_per_s and flops / peak_flops"
    )
    assert bound.bound == "memory", (
        f"{what}: bound is {bound.bound!r} although memory_s == compute_s == {tie_s} s; the docstring's tie rule says 'memory' "
        "(memory_s >= compute_s), a step is compute-bound only when compute takes strictly longer"
    )
    assert _close(bound.step_s, tie_s), f"{what}: step_s is {bound.step_s!r}, expected {tie_s} (the max of two equal times)"


@check("step_bound", points=2)
def test_step_bound_is_the_slower_of_memory_and_compute(lab, rng):
    rf = lab.roofline
    for _ in range(20):
        model, gpu = _model(rng), rng.choice(sorted(rf.GPUS))
        batch, context = rng.choice([1, 4, 64, 1024]), rng.randint(0, 16384)
        bpw, kvb = rng.choice([2, 1, 0.5, 0.515625]), rng.choice([2, 1, 1.015625])
        compute = rng.choice(["bf16", "int8"])
        where = f"step_bound(batch={batch}, context_tokens={context}, {gpu}, {compute})"
        bound = _bound_fields(rf.step_bound(model, gpu, batch, context, bpw, kvb, compute), where)
        read = bound.weight_bytes + bound.kv_bytes
        assert _close(bound.memory_s, read / rf.GPUS[gpu].hbm_bytes_per_s), (
            f"{where}: memory_s is {bound.memory_s:.6g} s, expected (weight_bytes + kv_bytes) / bandwidth = {read / rf.GPUS[gpu].hbm_bytes_per_s:.6g} s"
        )
        assert _close(bound.step_s, max(bound.memory_s, bound.compute_s)), (
            f"{where}: step_s is {bound.step_s:.6g} s with memory_s {bound.memory_s:.6g} and compute_s {bound.compute_s:.6g}: "
            "at best loads and math overlap, so the step takes the larger of the two, not their sum or the smaller"
        )
        expected_label = "memory" if bound.memory_s >= bound.compute_s else "compute"
        assert bound.bound == expected_label, f"{where}: bound is {bound.bound!r}, expected {expected_label!r} (the side that takes longer)"
        assert _close(bound.tokens_per_s, batch * bound.tokens_per_s_per_sequence), (
            f"{where}: tokens_per_s {bound.tokens_per_s:.6g} should be batch × tokens_per_s_per_sequence = {batch * bound.tokens_per_s_per_sequence:.6g}"
        )


@check("step_bound", points=1)
def test_memory_bound_steps_scale_with_bandwidth(lab):
    rf = lab.roofline
    model = preset("qwen2.5-7b")
    a100 = _bound_fields(rf.step_bound(model, "a100-80gb", 1, 2048), "step_bound(qwen2.5-7b, 'a100-80gb', 1, 2048)")
    h200 = _bound_fields(rf.step_bound(model, "h200", 1, 2048), "step_bound(qwen2.5-7b, 'h200', 1, 2048)")
    assert _close(a100.step_s / h200.step_s, 4.8 / 2.039), (
        f"a memory-bound step takes {a100.step_s * 1e3:.3f} ms on an A100 and {h200.step_s * 1e3:.3f} ms on an H200: "
        f"the ratio should be the bandwidth ratio 4.8 / 2.039 = {4.8 / 2.039:.4f}, not a FLOP/s ratio"
    )


def _gate_step_bound(rf):
    """Rejecting bad input earns points only once a valid step is bounded right (compared exactly: a label and two exact counts)."""
    def label_and_counts():
        bound = rf.step_bound(preset("llama-3-8b"), "h200", 1, 0)
        weights = float(bound.weight_bytes) if type(bound.weight_bytes) in (int, float) else bound.weight_bytes
        return bound.bound, weights, bound.flops

    expect_correct(
        label_and_counts,
        expected=("memory", 16_060_522_496.0, 16_060_522_496),
        what="step_bound(llama-3-8b, 'h200', batch=1, context_tokens=0) as (bound, weight_bytes, flops)",
    )


@check("step_bound", points=1)
@pytest.mark.parametrize(
    ("gpu", "batch", "context", "compute", "bad"),
    [("rtx-4090", 1, 0, "bf16", "rtx-4090"), ("a100-80gb", 1, 0, "fp8", "fp8"), ("h200", 0, 4096, "bf16", 0),
     ("h200", 1, -4096, "bf16", -4096), ("h200", 1, True, "bf16", True)],
    ids=["unknown-gpu", "fp8-on-a100", "batch-0", "context-negative", "context-bool"],
)
def test_step_bound_rejects_unknown_gpus_and_bad_workloads(lab, gpu, batch, context, compute, bad):
    rf = lab.roofline
    model = preset("llama-3-8b")
    _gate_step_bound(rf)
    expect_value_error(rf.step_bound, model, gpu, batch, context, 2, 2, compute,
                       what=f"step_bound(llama-3-8b, {gpu!r}, batch={batch!r}, context_tokens={context!r}, compute={compute!r})", must_mention=(bad,))


# --- kv_crossover_tokens -------------------------------------------------------------------------


@check("kv_crossover_tokens", points=2)
@pytest.mark.parametrize(
    ("model_name", "bytes_per_weight", "kv_bytes", "expected", "story"),
    [
        ("llama-3-8b", 2, 2, 16_060_522_496 / LLAMA3_8B_KV, "16.06 GB of bf16 weights / 131,072 bytes per token = 122,532.06"),
        ("llama-3-8b", 0.5, 2, 4_015_130_624 / LLAMA3_8B_KV, "int4 weights: 4× fewer bytes, so the cache dominates 4× sooner"),
        ("llama-3-8b", 2, 1, 16_060_522_496 / (LLAMA3_8B_KV // 2), "an FP8 cache: half the bytes per token, twice the tokens"),
        ("qwen2.5-7b", 2, 2, 15_231_233_024 / QWEN25_7B_KV, "4 KV heads: 57,344 bytes per token, 265,611.6 tokens"),
    ],
)
def test_kv_crossover_on_real_models(lab, model_name, bytes_per_weight, kv_bytes, expected, story):
    rf = lab.roofline
    call = f"kv_crossover_tokens({model_name}, bytes_per_weight={bytes_per_weight}, kv_bytes_per_element={kv_bytes})"
    actual = _number(rf.kv_crossover_tokens(preset(model_name), bytes_per_weight, kv_bytes), call, "a float number of tokens")
    assert _close(actual, expected), f"{call} is {actual:,.4f} tokens, expected {expected:,.4f} ({story}): weight bytes / KV bytes of one token"


@check("kv_crossover_tokens", points=2)
def test_at_the_crossover_kv_bytes_equal_weight_bytes(lab, rng):
    rf = lab.roofline
    for _ in range(15):
        model = _model(rng)
        bpw, kvb = rng.choice([2, 1, 0.5]), rng.choice([2, 1, 0.5])
        call = f"kv_crossover_tokens(bytes_per_weight={bpw}, kv_bytes_per_element={kvb})"
        tokens = _number(rf.kv_crossover_tokens(model, bpw, kvb), call, "a float number of tokens")
        weights = model.published_parameters * bpw
        kv = tokens * 2 * model.num_hidden_layers * model.num_key_value_heads * model.head_dim * kvb
        assert _close(kv, weights), (
            f"at {call} = {tokens:,.2f} tokens the KV bytes are {kv:,.0f} but the weights {weights:,.0f}: the crossover is where "
            "the two are equal, counted in tokens summed over the batch"
        )


# --- quantization_speedup ------------------------------------------------------------------------


@check("quantization_speedup", points=3)
def test_weight_only_int4_helps_at_batch_1_but_not_at_long_context(lab):
    rf = lab.roofline
    qwen = preset("qwen2.5-7b")
    short = _number(rf.quantization_speedup(qwen, "h200", 1, 1024, 0.5, 2), "quantization_speedup(qwen2.5-7b, 'h200', 1, 1024, 0.5, 2)")
    kv_short = 1024 * QWEN25_7B_KV  # 58,720,256 bytes
    expected_short = (15_231_233_024 + kv_short) / (3_807_808_256 + kv_short)
    assert _close(short, expected_short), (
        f"int4 weights on Qwen2.5-7B at batch 1 × 1024 tokens: the bound speeds up {short:.4f}×, expected "
        f"(15.23 GB + 0.06 GB) / (3.81 GB + 0.06 GB) = {expected_short:.4f}×: at batch 1 the weights are almost all the bytes"
    )
    long = _number(rf.quantization_speedup(qwen, "h200", 64, 32768, 0.5, 2), "quantization_speedup(qwen2.5-7b, 'h200', 64, 32768, 0.5, 2)")
    kv_long = 64 * 32768 * QWEN25_7B_KV  # 120,259,084,288 bytes: 8× the bf16 weights
    expected_long = (15_231_233_024 + kv_long) / (3_807_808_256 + kv_long)
    assert _close(long, expected_long), (
        f"int4 weights on Qwen2.5-7B at batch 64 × 32768 tokens: the bound speeds up {long:.4f}×, expected "
        f"(15.23 + 120.26 GB) / (3.81 + 120.26 GB) = {expected_long:.4f}×: past the crossover the bf16 KV cache dominates, "
        "and weight-only quantization leaves it untouched"
    )


@check("quantization_speedup", points=2)
def test_kv_quantization_helps_only_where_the_cache_is_large(lab):
    rf = lab.roofline
    qwen = preset("qwen2.5-7b")
    long = _number(rf.quantization_speedup(qwen, "h200", 64, 32768, 2, 1), "quantization_speedup(qwen2.5-7b, 'h200', 64, 32768, 2, 1)")
    kv_long = 64 * 32768 * QWEN25_7B_KV
    expected = (15_231_233_024 + kv_long) / (15_231_233_024 + kv_long / 2)
    assert _close(long, expected), (
        f"an FP8 KV cache on Qwen2.5-7B at batch 64 × 32768 tokens speeds the bound up {long:.4f}×, expected {expected:.4f}× "
        "(the KV half of the bytes is halved)"
    )
    short = _number(rf.quantization_speedup(qwen, "h200", 1, 1024, 2, 1), "quantization_speedup(qwen2.5-7b, 'h200', 1, 1024, 2, 1)")
    expected_short = (15_231_233_024 + 1024 * QWEN25_7B_KV) / (15_231_233_024 + 512 * QWEN25_7B_KV)
    assert _close(short, expected_short), (
        f"an FP8 KV cache at batch 1 × 1024 tokens gives {short:.6f}×, expected {expected_short:.6f}×, barely above 1: the cache is 0.4% of the bytes"
    )


@check("quantization_speedup", points=2)
def test_compute_bound_steps_gain_nothing_from_smaller_weights(lab):
    rf = lab.roofline
    llama = preset("llama-3-8b")
    bf16_compute = _number(rf.quantization_speedup(llama, "h200", 512, 128, 0.5, 2), "quantization_speedup(llama-3-8b, 'h200', 512, 128, 0.5, 2)")
    assert _close(bf16_compute, 1.0), (
        f"at batch 512 × 128 tokens the bf16 step is compute-bound; int4 weights computed in bf16 gave {bf16_compute:.4f}×, "
        "expected exactly 1.0: fewer bytes do not shorten the FLOPs"
    )
    fp8_compute = _number(rf.quantization_speedup(llama, "h200", 512, 128, 0.5, 2, "fp8"), "quantization_speedup(..., compute='fp8')")
    flops = 512 * 16_060_522_496 + 4 * 32 * 32 * 128 * 128 * 512
    expected = (flops / 989e12) / (flops / 1979e12)
    assert _close(fp8_compute, expected), (
        f"computing in fp8 at batch 512 × 128 tokens gives {fp8_compute:.4f}×, expected 1979 / 989 = {expected:.4f}×: "
        "the step stays compute-bound, and the fp8 tensor cores are twice as fast"
    )


@check("quantization_speedup", points=1)
def test_the_bf16_baseline_is_1x(lab, rng):
    rf = lab.roofline
    for _ in range(10):
        model, gpu = _model(rng), rng.choice(sorted(rf.GPUS))
        ratio = _number(rf.quantization_speedup(model, gpu, rng.randint(1, 64), rng.randint(0, 8192)), "quantization_speedup (bf16 defaults)")
        assert _close(ratio, 1.0), f"quantization_speedup with bf16 weights and KV (the defaults) is {ratio:.6f}×, expected 1.0 against itself"
    expect_value_error(
        rf.quantization_speedup, preset("llama-3-8b"), "h200", 1, 0, 0, 2, what="quantization_speedup(bytes_per_weight=0)", must_mention=(0,)
    )
    expect_value_error(
        rf.quantization_speedup, preset("llama-3-8b"), "h200", 1, True, what="quantization_speedup(context_tokens=True)", must_mention=(True,)
    )
