"""Public checks for Lab 07 — quality risk.

Worked examples with exact fake-quantized values; properties of every group on random tensors
(min and max come back exactly, at most 2^bits levels, half a step of error); perplexity and
agreement against torch's own cross-entropy and argmax; measurements on the given model with
hooks these checks build themselves, so the figure expected is measured here; the workload
effects (a KV window that protects short prompts exactly and not long ones). Every check builds
its own inputs. Read a failing check's message first: it names the quantity, the expected and
actual values and, when the value shows it, the usual mistake.
"""

from __future__ import annotations

import math

import pytest
import torch

from infralens.checking import accepted, assert_exact, expect_correct, expect_value_error
from infralens.tensor_checks import assert_layout, assert_tensor_equal, cause_of
from lab07_inputs import (
    BF16,
    F16,
    PERPLEXITY_RTOL,
    RECIPROCAL_GROUP,
    assert_grouped_quantization,
    float_logits,
    float_perplexity,
    reference_perplexity,
    run,
    tokens,
    torch_generator,
)

check = pytest.mark.check
T = torch.tensor
F32 = torch.float32


# --- fake_quantize ---------------------------------------------------------------------------

FQ_X = [0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0]
FQ_GROUPS_OF_4 = [0.0, 0.0, 2.0, 3.0, -2.0, -2.0, 0.0, 4.0]
FQ_WHOLE = [0.0, 0.0, 2.0, 2.0, -2.0, -2.0, 0.0, 4.0]


@check("fake_quantize", points=3)
def test_fake_quantize_worked_example(lab):
    what = f"fake_quantize({FQ_X}, bits=2, group_size=4)"
    result = lab.quality_risk.fake_quantize(T(FQ_X), 2, -1, 4)
    why = cause_of(result, ([0.0, 0.75, 1.5, 2.25, -2.0, -0.5, 1.0, 2.5], "that is 2^bits = 4 steps: 2 bits give 4 levels, codes 0..3, so the step is (max - min) / 3"),
                   ([0.0, 1.0, 2.0, 3.0, -2.0, 0.0, 0.0, 4.0], "those are ties rounded away from zero: torch.round sends 0.5 to 0 and 1.5 to 2 (half to even)"),
                   ([0.0, 0.0, 2.0, 3.0, 2.0, 2.0, 4.0, 8.0], "the zero point was subtracted: it is added back, codes × scale + min"))
    assert_tensor_equal(result, T(FQ_GROUPS_OF_4), what, why or "scales [1, 2], zero points [0, -2], codes [0, 0, 2, 3, 0, 0, 1, 3]: codes × scale + zero_point")
    whole = lab.quality_risk.fake_quantize(T(FQ_X), 2)
    assert_tensor_equal(whole, T(FQ_WHOLE), f"fake_quantize({FQ_X}, bits=2) (group_size=None: the whole axis is one group)",
                        "one group: scale (4 - -2) / 3 = 2, zero point -2, codes [1, 1, 2, 2, 0, 0, 1, 3]")


@check("fake_quantize", points=1)
def test_fake_quantize_divides_by_the_scale(lab):
    what = f"fake_quantize({RECIPROCAL_GROUP}, bits=4)"
    result = lab.quality_risk.fake_quantize(T(RECIPROCAL_GROUP), 4)
    step = (T(1.0) / 15).item()
    expected = T([0.0, 2 * step, 1.0, 1.0])
    why = cause_of(result, ([0.0, step, (T(14.0) * (T(1.0) / 15)).item(), 1.0],
                            "that multiplies by the reciprocal 1 / scale, which lands just below the ties 1.5 and 14.5: divide, (x - min) / scale"))
    assert_tensor_equal(result, expected, what, why or "(x - 0) / scale in float32 is [0, 1.5, 14.500001, 15]: codes [0, 2, 15, 15]")


@check("fake_quantize", points=2)
@pytest.mark.parametrize(("shape", "axis", "group_size", "bits"), [((8, 12), -1, 4, 2), ((8, 12), -2, 4, 3), ((6, 5, 4), 0, 3, 4), ((2, 6, 16), 1, None, 8)])
def test_fake_quantize_groups_along_the_axis(lab, shape, axis, group_size, bits):
    x = torch.randn(shape, generator=torch_generator(71)) * torch.exp(torch.randn(shape, generator=torch_generator(72)))
    what = f"fake_quantize(x {shape}, bits={bits}, axis={axis}, group_size={group_size})"
    result = lab.quality_risk.fake_quantize(x, bits, axis, group_size)
    size = shape[axis] if group_size is None else group_size
    assert_grouped_quantization(result, x, bits, axis, size, what, f"groups of {size} consecutive elements along axis {axis}")


@check("fake_quantize", points=1)
def test_fake_quantize_constant_groups_and_half_precision(lab):
    x = T([[0.0] * 4 + [-7.25] * 4, [0.3] * 8])
    result = lab.quality_risk.fake_quantize(x, 2, -1, 4)
    assert_tensor_equal(result, x, "fake_quantize([[0 × 4, -7.25 × 4], [0.3 × 8]], bits=2, group_size=4)",
                        "a constant group has max - min = 0: its scale is floored at SCALE_EPS, its codes are 0 (never NaN) and it comes back exactly")
    for dtype in (F16, BF16):
        values = T([[1.0, -3.0, 2.5, 0.25], [8.0, 8.0, -8.0, 0.0]], dtype=dtype)
        out = lab.quality_risk.fake_quantize(values, 8)
        assert_layout(out, (2, 4), F32, f"fake_quantize({dtype} values, bits=8)", "float32: inputs are converted to float32 before any arithmetic")


@check("fake_quantize", points=1)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("bits=1", (torch.ones(4), 1), (1,)),
        ("bits=True", (torch.ones(4), True), (True,)),
        ("an int64 x", (torch.ones(4, dtype=torch.int64), 2), ("int64",)),
        ("NaN in x", (T([1.0, float("nan")]), 2), ("nan",)),
        ("axis=2 for a 2-D x", (torch.ones(2, 4), 2, 2), (2,)),
        ("group_size 3 along 8", (torch.ones(8), 2, -1, 3), (3, 8)),
        ("group_size=0", (torch.ones(8), 2, -1, 0), (0,)),
    ],
)
def test_fake_quantize_rejects_bad_input(lab, case, args, mention):
    fq = lab.quality_risk.fake_quantize
    expect_correct(lambda: fq(T(FQ_X), 2, -1, 4).tolist(), expected=FQ_GROUPS_OF_4, what=f"fake_quantize({FQ_X}, 2, group_size=4)")
    expect_value_error(fq, *args, what=f"fake_quantize with {case}", must_mention=mention)


# --- quantize_weight -------------------------------------------------------------------------

W_EXAMPLE = [[0.0, 1.0, 2.0, 3.0], [0.0, 4.0, 20.0, 30.0]]


@check("quantize_weight", points=3)
def test_quantize_weight_worked_example(lab):
    qw = lab.quality_risk.quantize_weight
    result = qw(T(W_EXAMPLE), 2, "per-channel")
    why = cause_of(result, ([[0.0, 0.0, 0.0, 0.0], [0.0, 4.0, 20.0, 30.0]], "those are per input column: per-channel means one scale per OUTPUT row "
                                                                            "of the [out, in] weight, statistics over the input dim (-1)"),
                   ([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 20.0, 30.0]], "that is one scale for the whole tensor (per-tensor): per-channel is one per output row"))
    assert_tensor_equal(result, T([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 20.0, 30.0]]), f"quantize_weight({W_EXAMPLE}, bits=2, 'per-channel')",
                        why or "row steps (3 - 0) / 3 = 1 and (30 - 0) / 3 = 10: the 4.0 rounds to 0")
    grouped = qw(T(W_EXAMPLE), 2, "per-group", 2)
    why = cause_of(grouped, ([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 20.0, 30.0]], "that is per channel: per-group splits each row into groups of group_size input columns"))
    assert_tensor_equal(grouped, T(W_EXAMPLE), f"quantize_weight({W_EXAMPLE}, bits=2, 'per-group', group_size=2)",
                        why or "groups of 2 input columns: each group is its own min and max, so every value comes back exactly")


@check("quantize_weight", points=2)
@pytest.mark.parametrize(("granularity", "group_size", "bits"), [("per-channel", 32, 4), ("per-channel", 32, 2), ("per-group", 16, 3), ("per-group", 8, 2)])
def test_quantize_weight_groups_run_along_the_input_dim(lab, granularity, group_size, bits):
    w = torch.randn(24, 64, generator=torch_generator(73)) * 0.05
    w[5] *= 40  # one output row with a wide range: it must not coarsen the other rows
    w[:, 9] *= 25  # one input column with a wide range
    what = f"quantize_weight(w [24, 64], bits={bits}, {granularity!r}, group_size={group_size})"
    result = lab.quality_risk.quantize_weight(w, bits, granularity, group_size)
    size = 64 if granularity == "per-channel" else group_size
    assert_grouped_quantization(result, w, bits, -1, size, what,
                                "per-channel: one group per output row (all 64 input columns)" if granularity == "per-channel" else f"groups of {group_size} input columns of each row")


@check("quantize_weight", points=1)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("a 1-D w", (torch.ones(8), 4), ((8,),)),
        ("a 3-D w", (torch.ones(2, 2, 4), 4), ((2, 2, 4),)),
        ("granularity='per-token'", (torch.ones(2, 4), 4, "per-token"), ("per-token",)),
        ("group_size 3 for 4 columns", (torch.ones(2, 4), 4, "per-group", 3), (3, 4)),
        ("bits=9", (torch.ones(2, 4), 9), (9,)),
    ],
)
def test_quantize_weight_rejects_bad_input(lab, case, args, mention):
    qw = lab.quality_risk.quantize_weight
    expect_correct(lambda: qw(T(W_EXAMPLE), 2, "per-channel").tolist(), expected=[[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 20.0, 30.0]],
                   what=f"quantize_weight({W_EXAMPLE}, 2)")
    expect_value_error(qw, *args, what=f"quantize_weight with {case}", must_mention=mention)


# --- quantize_activation ---------------------------------------------------------------------

A_EXAMPLE = [[0.0, 1.0, 2.0, 3.0], [0.0, 0.1, 0.2, 0.3]]


@check("quantize_activation", points=3)
def test_quantize_activation_worked_example(lab):
    qa = lab.quality_risk.quantize_activation
    per_token = qa(T(A_EXAMPLE), 2, "per-token")
    assert_tensor_equal(per_token, T(A_EXAMPLE), f"quantize_activation({A_EXAMPLE}, bits=2, 'per-token')",
                        "one step per token (row): 1.0 and 0.1, so every value is on its own row's grid and comes back exactly")
    per_tensor = qa(T(A_EXAMPLE), 2, "per-tensor")
    why = cause_of(per_tensor, (A_EXAMPLE, "that is per token: per-tensor shares one scale across every token, so the small row loses everything"))
    assert_tensor_equal(per_tensor, T([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]]), f"quantize_activation({A_EXAMPLE}, bits=2, 'per-tensor')",
                        why or "one scale (3 - 0) / 3 = 1.0 for the whole tensor: the second token's values all round to 0")


@check("quantize_activation", points=2)
@pytest.mark.parametrize(("granularity", "bits"), [("per-token", 4), ("per-token", 3), ("per-tensor", 4), ("per-tensor", 6)])
def test_quantize_activation_on_a_batch_of_sequences(lab, granularity, bits):
    x = torch.randn(3, 10, 32, generator=torch_generator(74))
    x[1, 4] *= 30  # one token far larger than the rest
    what = f"quantize_activation(x [3, 10, 32], bits={bits}, {granularity!r})"
    result = lab.quality_risk.quantize_activation(x, bits, granularity)
    if granularity == "per-token":
        assert_grouped_quantization(result, x, bits, -1, 32, what, "per-token: one group per token, the 32 values of its row")
    else:
        flat = result.reshape(1, -1) if isinstance(result, torch.Tensor) and result.shape == x.shape else result
        assert_grouped_quantization(flat, x.reshape(1, -1), bits, -1, x.numel(), what.replace("x [3, 10, 32]", "x [3, 10, 32] (seen flat)"),
                                    "per-tensor: one group for all 960 values, every sequence and token together")


@check("quantize_activation", points=1)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("granularity='per-channel'", (torch.ones(2, 4), 4, "per-channel"), ("per-channel",)),
        ("Inf in x", (T([[1.0, float("inf")]]), 4, "per-token"), ("inf",)),
        ("bits=0", (torch.ones(2, 4), 0, "per-token"), (0,)),
    ],
)
def test_quantize_activation_rejects_bad_input(lab, case, args, mention):
    qa = lab.quality_risk.quantize_activation
    expect_correct(lambda: qa(T(A_EXAMPLE), 2, "per-tensor").tolist(), expected=[[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]],
                   what=f"quantize_activation({A_EXAMPLE}, 2, 'per-tensor')")
    expect_value_error(qa, *args, what=f"quantize_activation with {case}", must_mention=mention)


# --- quantize_kv -----------------------------------------------------------------------------

KV_K = [[0.0, 1.0, 2.0, 6.0], [3.0, 0.0, 1.0, 0.0], [6.0, 2.0, 0.0, 3.0], [1.3, 1.7, 2.9, 0.4]]
KV_V = [[0.5, -0.5, 1.0, 2.0], [4.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [9.0, 8.0, 7.0, 6.0]]
THIRD = (T(2.0) / 3).item()  # the float32 step 2/3
KV_V_OUT = [[0.3333333134651184, -0.5, 1.1666666269302368, 2.0], [4.0, 0.0, 0.0, 1.3333333730697632], [1.0, 1.0, 1.0, 1.0], KV_V[3]]  # steps 5/6, 4/3, 0
KV_K_PER_TOKEN = [[0.0, 0.0, 2.0, 6.0], [3.0, 0.0, 1.0, 0.0], [6.0, 2.0, 0.0, 4.0], KV_K[3]]
KV_K_PER_CHANNEL = [[0.0, 2 * THIRD, 2.0, 6.0], [4.0, 0.0, 2 * THIRD, 0.0], [6.0, 2.0, 0.0, 4.0], KV_K[3]]


def _cache(rows: list[list[float]]) -> torch.Tensor:
    return T([[rows]])  # [batch 1, heads 1, tokens, head_dim]


@check("quantize_kv", points=3)
@pytest.mark.parametrize(("granularity", "expected_k"), [("per-token", KV_K_PER_TOKEN), ("per-channel-keys", KV_K_PER_CHANNEL)])
def test_quantize_kv_worked_example(lab, granularity, expected_k):
    what = f"quantize_kv(k, v [1, 1, 4, 4], bits=2, {granularity!r}, residual_length=1)"
    result = lab.quality_risk.quantize_kv(_cache(KV_K), _cache(KV_V), 2, granularity, 1)
    assert_exact(type(result), tuple, f"{what}: return type", "(k_hat, v_hat)")
    assert_exact(len(result), 2, f"{what}: number of items returned", "(k_hat, v_hat)")
    k_hat, v_hat = result
    other = KV_K_PER_CHANNEL if granularity == "per-token" else KV_K_PER_TOKEN
    why = cause_of(k_hat[0, 0], (other, f"those are the other scheme's keys: {granularity} groups keys "
                                        + ("over each token's head_dim (axis -1)" if granularity == "per-token" else "per channel, statistics over the quantized tokens (axis -2)")),
                   ([KV_K[0], *expected_k[1:3], [1.0, 1.0, 3.0, 0.0] if granularity == "per-token" else [1.3, 1.7, 2.9, 0.4]],
                    "the first token stayed in float: the window keeps the MOST RECENT residual_length tokens, the last ones along dim 2"))
    if why == "" and not torch.equal(k_hat[0, 0, 3], T(KV_K[3])):
        why = "the last token changed: with residual_length=1 the most recent token stays exactly as it is"
    assert_tensor_equal(k_hat, _cache(expected_k), f"{what}'s keys", why or f"tokens 0-2 quantized {granularity}, token 3 (the window) unchanged")
    assert_tensor_equal(v_hat, _cache(KV_V_OUT), f"{what}'s values", "values per token in both schemes (steps 5/6, 4/3, 0), token 3 unchanged")


@check("quantize_kv", points=2)
@pytest.mark.parametrize("granularity", ["per-token", "per-channel-keys"])
def test_quantize_kv_layouts_on_random_caches(lab, granularity):
    gen = torch_generator(75)
    k = torch.randn(2, 3, 40, 16, generator=gen) + torch.linspace(-4, 4, 16)  # channels with their own centres
    v = torch.randn(2, 3, 40, 16, generator=gen)
    what = f"quantize_kv(k, v [2, 3, 40, 16], bits=3, {granularity!r}, residual_length=8)"
    k_hat, v_hat = lab.quality_risk.quantize_kv(k, v, 3, granularity, 8)
    assert_layout(k_hat, (2, 3, 40, 16), F32, f"{what}'s keys", "float32 of k's shape")
    assert_tensor_equal(k_hat[:, :, 32:], k[:, :, 32:], f"{what}: the 8 most recent keys", "the residual window keeps the last 8 tokens exactly")
    assert_tensor_equal(v_hat[:, :, 32:], v[:, :, 32:], f"{what}: the 8 most recent values", "the residual window keeps the last 8 tokens exactly")
    old_k, old_v = k[:, :, :32].contiguous(), v[:, :, :32].contiguous()
    key_axis, key_size = (-2, 32) if granularity == "per-channel-keys" else (-1, 16)
    assert_grouped_quantization(k_hat[:, :, :32].contiguous(), old_k, 3, key_axis, key_size, f"{what}: the 32 oldest keys",
                                "per-channel-keys: one group per channel of each head, over the 32 quantized tokens" if key_axis == -2 else "per-token: one group per token's head_dim")
    assert_grouped_quantization(v_hat[:, :, :32].contiguous(), old_v, 3, -1, 16, f"{what}: the 32 oldest values", "values: one group per token's head_dim")


@check("quantize_kv", points=2)
def test_a_prompt_that_fits_the_window_is_untouched(lab):
    k = torch.randn(1, 2, 5, 8, generator=torch_generator(76))
    v = torch.randn(1, 2, 5, 8, generator=torch_generator(77))
    for window in (5, 64):
        k_hat, v_hat = lab.quality_risk.quantize_kv(k, v, 2, "per-channel-keys", window)
        assert_tensor_equal(k_hat, k, f"quantize_kv(5 tokens, bits=2, residual_length={window})'s keys", "every token fits the window: nothing is quantized")
        assert_tensor_equal(v_hat, v, f"quantize_kv(5 tokens, bits=2, residual_length={window})'s values", "every token fits the window: nothing is quantized")


@check("quantize_kv", points=3)
def test_the_window_protects_short_prompts_but_not_long_ones(lab):
    """The workload effect: one KV configuration, two workloads of the given model."""
    quantize_kv = lab.quality_risk.quantize_kv
    hook = {"kv": lambda layer, k, v: quantize_kv(k, v, 2, "per-channel-keys", 32)}  # this check's hook around your quantize_kv
    short = run("short", **hook)
    assert_tensor_equal(short, float_logits("short"), "the model's logits on the 'short' workload (32-token prompts) with 2-bit per-channel-keys KV, residual_length=32",
                        "every prompt fits the 32-token window, so no key or value is quantized and the logits are the float model's, bit for bit")
    long_tokens = tokens("long")
    increase = reference_perplexity(run("long", **hook), long_tokens[:, 1:]) / float_perplexity("long") - 1
    assert increase > 0.01, (
        f"on the 'long' workload (256-token documents) the same configuration changed perplexity by {increase:+.3%}; the reference measures "
        "about +3% to +5%: 224 of 256 tokens are older than the window and must be quantized (keys per channel over them, values per token)"
    )


@check("quantize_kv", points=1)
@pytest.mark.parametrize(
    ("case", "k", "v", "granularity", "residual", "mention"),
    [
        ("a 3-D k", torch.ones(2, 4, 8), torch.ones(2, 4, 8), "per-token", 0, ((2, 4, 8),)),
        ("v of another shape", torch.ones(1, 1, 4, 8), torch.ones(1, 1, 3, 8), "per-token", 0, ((1, 1, 3, 8),)),
        ("granularity='per-channel'", torch.ones(1, 1, 4, 8), torch.ones(1, 1, 4, 8), "per-channel", 0, ("per-channel",)),
        ("residual_length=-1", torch.ones(1, 1, 4, 8), torch.ones(1, 1, 4, 8), "per-token", -1, (-1,)),
        ("residual_length=True", torch.ones(1, 1, 4, 8), torch.ones(1, 1, 4, 8), "per-token", True, (True,)),
    ],
)
def test_quantize_kv_rejects_bad_input(lab, case, k, v, granularity, residual, mention):
    qkv = lab.quality_risk.quantize_kv
    expect_correct(lambda: [t.tolist() for t in qkv(_cache(KV_K), _cache(KV_V), 2, "per-token", 1)], expected=[_cache(KV_K_PER_TOKEN).tolist(), _cache(KV_V_OUT).tolist()],
                   what="quantize_kv(the worked example, 2, 'per-token', 1)")
    expect_value_error(qkv, k, v, 2, granularity, residual, what=f"quantize_kv with {case}", must_mention=mention)


# --- perplexity ------------------------------------------------------------------------------

LN3 = math.log(3)


@check("perplexity", points=3)
def test_perplexity_worked_example(lab):
    logits, targets = T([[0.0, 0.0, 0.0, 0.0], [LN3, 0.0, 0.0, 0.0]]), T([1, 0])
    what = "perplexity(logits [[0, 0, 0, 0], [ln 3, 0, 0, 0]], targets [1, 0])"
    value = lab.quality_risk.perplexity(logits, targets)
    assert_exact(type(value), float, f"{what}: return type", "a Python float")
    expected = reference_perplexity(logits, targets)  # sqrt(8) with ln 3 rounded to float32
    causes = [(8.0, "that is exp of the SUM of the negative log-likelihoods (ln 4 + ln 2): perplexity is exp of their MEAN"),
              (math.exp((2 + 1) / 2), "that is exp of a mean in bits (2 and 1 bits): exp goes with nats, the natural log (or 2 ** the mean in bits)"),
              (2 ** ((math.log(4) + math.log(2)) / 2), "that is 2 to the power of a mean in nats: exp goes with the natural log"),
              (1 / expected, "that is exp of the mean log-likelihood: perplexity is exp of the NEGATIVE log-likelihood")]
    why = next((text for wrong, text in causes if math.isclose(value, wrong, rel_tol=1e-6)), "")
    assert math.isclose(value, expected, rel_tol=PERPLEXITY_RTOL), (
        f"{what} returned {value!r}, expected {expected!r} (sqrt(8) ≈ 2.8284: probabilities 1/4 and 1/2, exp((ln 4 + ln 2) / 2)) within "
        f"{PERPLEXITY_RTOL:g} relative (float64 rounding). {why}"
    )


@check("perplexity", points=2)
@pytest.mark.parametrize("dtype", [F32, F16, BF16])
def test_perplexity_matches_torch_cross_entropy(lab, dtype):
    gen = torch_generator(78)
    logits = (torch.randn(3, 7, 11, generator=gen) * 3).to(dtype)
    targets = torch.randint(0, 11, (3, 7), generator=gen)
    what = f"perplexity(random {dtype} logits [3, 7, 11], targets [3, 7])"
    value = lab.quality_risk.perplexity(logits, targets)
    assert_exact(type(value), float, f"{what}: return type", "a Python float")
    expected = reference_perplexity(logits, targets)
    assert math.isclose(value, expected, rel_tol=PERPLEXITY_RTOL), (
        f"{what} returned {value!r}, expected {expected!r} (exp of torch's F.cross_entropy in float64, the mean over all 21 positions) "
        f"within {PERPLEXITY_RTOL:g} relative: log-softmax over the LAST dim (the vocabulary), float64"
    )
    uniform = lab.quality_risk.perplexity(torch.zeros(4, 60), T([0, 17, 59, 3]))
    assert math.isclose(uniform, 60.0, rel_tol=PERPLEXITY_RTOL), f"perplexity of a uniform model over 60 tokens returned {uniform!r}, expected 60.0: exp(ln 60)"


@check("perplexity", points=1)
@pytest.mark.parametrize(
    ("case", "logits", "targets", "mention"),
    [
        ("int32 targets", torch.zeros(2, 4), T([0, 1], dtype=torch.int32), ("int32",)),
        ("targets of another shape", torch.zeros(2, 4), T([0, 1, 2]), ((3,), (2, 4))),
        ("a target outside the vocabulary", torch.zeros(2, 4), T([0, 4]), (4,)),
        ("NaN logits", T([[0.0, float("nan")]]), T([0]), ("nan",)),
    ],
)
def test_perplexity_rejects_bad_input(lab, case, logits, targets, mention):
    pp = lab.quality_risk.perplexity
    value = accepted(pp, torch.zeros(3, 5), T([0, 4, 2]), what="perplexity(uniform logits [3, 5], targets [0, 4, 2])")
    assert isinstance(value, float) and math.isclose(value, 5.0, rel_tol=PERPLEXITY_RTOL), (
        f"perplexity(uniform logits [3, 5], targets [0, 4, 2]) returned {value!r}, expected 5.0: a uniform model over 5 tokens")
    expect_value_error(pp, logits, targets, what=f"perplexity with {case}", must_mention=mention)


# --- top1_agreement --------------------------------------------------------------------------


@check("top1_agreement", points=3)
def test_top1_agreement_worked_example(lab):
    logits, reference = T([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]]), T([[5.0, 4.9, 0.0], [0.0, 3.0, 1.0]])
    what = "top1_agreement([[2, 1, 0], [0, 1, 3]], [[5, 4.9, 0], [0, 3, 1]])"
    value = lab.quality_risk.top1_agreement(logits, reference)
    why = {0.0: "0 means the logits themselves were compared: compare the argmax, the token each would pick",
           1.0 / 6: "that counts equal logits over all 6 entries: compare the argmax of each position"}.get(value, "")
    assert_exact(value, 0.5, what, why or "argmaxes [0, 2] and [0, 1]: 1 of 2 positions agree")


@check("top1_agreement", points=2)
def test_top1_agreement_counts_every_position(lab):
    gen = torch_generator(79)
    reference = torch.randn(4, 9, 13, generator=gen)
    logits = reference + 0.6 * torch.randn(4, 9, 13, generator=gen)
    expected = (logits.argmax(-1) == reference.argmax(-1)).sum().item() / 36
    what = "top1_agreement(logits [4, 9, 13], reference_logits [4, 9, 13] with noise)"
    assert_exact(lab.quality_risk.top1_agreement(logits, reference), expected, what, "matching argmaxes over the vocabulary / all 36 positions, a float")
    assert_exact(lab.quality_risk.top1_agreement(reference.half(), reference.half()), 1.0, "top1_agreement(x, x) in float16", "a model agrees with itself everywhere")


@check("top1_agreement", points=1)
def test_top1_agreement_rejects_bad_input(lab):
    ag = lab.quality_risk.top1_agreement
    expect_correct(ag, T([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]]), T([[5.0, 4.9, 0.0], [0.0, 3.0, 1.0]]), expected=0.5, what="the worked example")
    expect_value_error(ag, torch.zeros(2, 3), torch.zeros(3, 3), what="top1_agreement with shapes (2, 3) and (3, 3)", must_mention=((2, 3), (3, 3)))
    expect_value_error(ag, torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3), what="top1_agreement with int64 logits", must_mention=("int64",))


# --- model_hooks -----------------------------------------------------------------------------


@check("model_hooks", points=3)
def test_model_hooks_quantize_the_configured_target(lab):
    qr = lab.quality_risk
    weight_hooks = qr.model_hooks(qr.QuantConfig("weights", "per-group", 2, group_size=2))
    assert_exact(sorted(weight_hooks), ["weight"], "model_hooks(weights per-group g2 2-bit): keys", "one hook, for the model's `weight` argument")
    assert_tensor_equal(weight_hooks["weight"]("blocks.0.mlp.up", T(W_EXAMPLE)), T(W_EXAMPLE), "the weight hook of weights per-group g2 2-bit on the quantize_weight example",
                        "quantize_weight(w, 2, 'per-group', 2): the config's group_size must reach the quantizer")
    act_hooks = qr.model_hooks(qr.QuantConfig("activations", "per-tensor", 2))
    assert_exact(sorted(act_hooks), ["activation"], "model_hooks(activations per-tensor 2-bit): keys", "one hook, for the model's `activation` argument")
    assert_tensor_equal(act_hooks["activation"]("blocks.1.attn.out", T(A_EXAMPLE)), T([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]]),
                        "the activation hook of activations per-tensor 2-bit on the quantize_activation example", "quantize_activation(x, 2, 'per-tensor')")
    kv_hooks = qr.model_hooks(qr.QuantConfig("kv", "per-channel-keys", 2, residual_length=1))
    assert_exact(sorted(kv_hooks), ["kv"], "model_hooks(kv per-channel-keys r1 2-bit): keys", "one hook, for the model's `kv` argument")
    k_hat, v_hat = kv_hooks["kv"](0, _cache(KV_K), _cache(KV_V))
    assert_tensor_equal(k_hat, _cache(KV_K_PER_CHANNEL), "the kv hook of kv per-channel-keys r1 2-bit on the quantize_kv example's keys",
                        "quantize_kv(k, v, 2, 'per-channel-keys', 1): the config's residual_length must reach the quantizer")
    assert_tensor_equal(v_hat, _cache(KV_V_OUT), "the kv hook's values", "values per token, last token kept")


@check("model_hooks", points=1)
def test_model_hooks_rejects_what_is_not_a_config(lab):
    qr = lab.quality_risk
    accepted(qr.model_hooks, qr.QuantConfig("weights", "per-channel", 8), what="model_hooks(weights per-channel 8-bit)")
    assert_exact(sorted(qr.model_hooks(qr.QuantConfig("kv", "per-token", 4))), ["kv"], "model_hooks(kv per-token 4-bit): keys")
    expect_value_error(qr.model_hooks, {"target": "weights", "bits": 4}, what="model_hooks with a dict", must_mention=("dict",))


# --- measure ---------------------------------------------------------------------------------


@check("measure", points=3)
def test_measure_the_float_model_and_quantized_weights(lab):
    qr = lab.quality_risk
    long_tokens, reference = tokens("long"), float_logits("long")
    result = qr.measure(long_tokens, reference, None)
    what = "measure(the 'long' workload, its float logits, config=None)"
    assert_exact(type(result), tuple, f"{what}: return type", "(perplexity, agreement)")
    perplexity, agreement = result
    expected = float_perplexity("long")
    off_by_one = reference_perplexity(reference, long_tokens[:, :-1])
    why = "that scores each position on its own input token: the model predicts tokens[:, 1:] from tokens[:, :-1]" if math.isclose(perplexity, off_by_one, rel_tol=1e-6) else ""
    assert math.isclose(perplexity, expected, rel_tol=PERPLEXITY_RTOL), (
        f"{what} returned perplexity {perplexity!r}, expected {expected!r} (measured here with F.cross_entropy) within {PERPLEXITY_RTOL:g} relative. {why}"
    )
    assert_exact(agreement, 1.0, f"{what}: agreement", "the float model agrees with its own logits at every position")
    config = qr.QuantConfig("weights", "per-channel", 3)
    perplexity, agreement = qr.measure(long_tokens, reference, config)
    quantize_weight = qr.quantize_weight
    logits = run("long", weight=lambda name, w: quantize_weight(w, 3, "per-channel", 32))  # this check's hook around your quantize_weight
    expected = reference_perplexity(logits, long_tokens[:, 1:])
    assert math.isclose(perplexity, expected, rel_tol=PERPLEXITY_RTOL), (
        f"measure('long', its float logits, weights per-channel 3-bit) returned perplexity {perplexity!r}; the model run here with your "
        f"quantize_weight on every Linear scores {expected!r} (float: {float_perplexity('long'):.4f}): run tiny_lm()(tokens[:, :-1], **model_hooks(config))"
    )
    expected_agreement = (logits.argmax(-1) == reference.argmax(-1)).sum().item() / logits[..., 0].numel()
    assert_exact(agreement, expected_agreement, "measure with weights per-channel 3-bit: agreement", "argmax of the quantized run against the reference logits, over every position")


@check("measure", points=1)
def test_measure_rejects_bad_input(lab):
    me = lab.quality_risk.measure
    short, reference = tokens("short"), float_logits("short")
    result = accepted(me, short, reference, None, what="measure(the 'short' workload, its float logits, None)")
    assert isinstance(result, tuple) and len(result) == 2 and math.isclose(result[0], float_perplexity("short"), rel_tol=PERPLEXITY_RTOL) and result[1] == 1.0, (
        f"measure(the 'short' workload, its float logits, None) returned {result!r}, expected ({float_perplexity('short')!r}, 1.0): "
        "rejecting bad input earns points once valid input is measured correctly")
    expect_value_error(me, short.int(), reference, None, what="measure with int32 tokens", must_mention=("int32",))
    expect_value_error(me, short, reference[:, 1:], None, what="measure with reference_logits one position short", must_mention=(tuple(reference[:, 1:].shape),))
    expect_value_error(me, short, reference, {"target": "weights", "bits": 4}, what="measure with a dict for a config", must_mention=("dict",))


# --- verdict ---------------------------------------------------------------------------------


@check("verdict", points=2)
@pytest.mark.parametrize(("increase", "expected"), [(0.004, "safe"), (-0.002, "safe"), (0.01, "safe"), (0.0100001, "degrades"), (0.05, "degrades"),
                                                    (0.2, "degrades"), (0.2000001, "breaks"), (0.69, "breaks"), (math.inf, "breaks"), (0, "safe")])
def test_verdict_thresholds(lab, increase, expected):
    why = "each bound belongs to the milder verdict: +1% is safe, +20% degrades" if increase in (0.01, 0.2) else "safe up to +1%, degrades up to +20%, breaks beyond"
    assert_exact(lab.quality_risk.verdict(increase), expected, f"verdict({increase!r})", why)


@check("verdict", points=1)
@pytest.mark.parametrize(("case", "value"), [("NaN", math.nan), ("True", True), ("-1.5", -1.5), ("a string", "0.05")])
def test_verdict_rejects_bad_input(lab, case, value):
    expect_correct(lab.quality_risk.verdict, 0.05, expected="degrades", what="verdict(0.05)")
    expect_value_error(lab.quality_risk.verdict, value, what=f"verdict({case})", must_mention=(value,) if case != "NaN" else ("nan",))


# --- risk_table ------------------------------------------------------------------------------


def _table_configs(qr) -> list:
    return [qr.QuantConfig("weights", "per-channel", 8), qr.QuantConfig("activations", "per-tensor", 3),
            qr.QuantConfig("kv", "per-channel-keys", 2, residual_length=32), qr.QuantConfig("weights", "per-group", 2)]


@check("risk_table", points=3)
def test_risk_table_on_the_long_workload(lab):
    qr = lab.quality_risk
    configs = _table_configs(qr)
    rows = qr.risk_table(tokens("long"), configs)
    what = "risk_table(the 'long' workload, [weights per-channel 8-bit, activations per-tensor 3-bit, kv per-channel-keys r32 2-bit, weights per-group g32 2-bit])"
    assert_exact(type(rows), list, f"{what}: return type", "a list of RiskRow")
    assert_exact(len(rows), 4, f"{what}: number of rows", "one RiskRow per config")
    base = float_perplexity("long")
    for row, config in zip(rows, configs):
        label = f"{what}: the row of {config.label}"
        assert row.config == config, f"{label} holds config {row.config!r}: rows come in the order of configs"
        for field in ("perplexity", "increase", "agreement"):
            assert_exact(type(getattr(row, field)), float, f"{label}: {field}'s type", "a Python float")
        assert math.isclose(row.increase, row.perplexity / base - 1, rel_tol=1e-9, abs_tol=1e-12), (
            f"{label} has increase {row.increase!r} for perplexity {row.perplexity!r}; the float model's perplexity, measured here, is {base!r}, "
            f"so the increase is {row.perplexity / base - 1!r}: perplexity / float_perplexity - 1 (relative, not a difference)"
        )
        assert 0.0 <= row.agreement <= 1.0, f"{label} has agreement {row.agreement!r}: a fraction of positions, in [0, 1]"
        expected_verdict = "safe" if row.increase <= 0.01 else "degrades" if row.increase <= 0.2 else "breaks"
        assert_exact(row.verdict, expected_verdict, f"{label}: verdict", f"increase {row.increase:+.3%}: safe up to +1%, degrades up to +20%, breaks beyond")
    eight_bit, three_bit_acts = rows[0], rows[1]
    assert abs(eight_bit.increase) < 0.001 and eight_bit.agreement > 0.99, (
        f"8-bit per-channel weights changed perplexity by {eight_bit.increase:+.3%} with agreement {eight_bit.agreement:.4f}; "
        "256 levels per output row move each weight by at most 1/510 of its row's range: the reference measures below 0.01% and agreement above 0.99"
    )
    assert three_bit_acts.verdict == "breaks", (
        f"3-bit per-tensor activations changed perplexity by {three_bit_acts.increase:+.2%}: with one scale for every token of the batch, "
        "8 levels cannot hold the small activations next to the largest; the reference measures more than +100% (breaks)"
    )


@check("risk_table", points=1)
def test_risk_table_rejects_bad_input(lab):
    qr = lab.quality_risk
    rows = accepted(qr.risk_table, tokens("short"), [qr.QuantConfig("kv", "per-token", 2, residual_length=32)],
                    what="risk_table(the 'short' workload, [kv per-token r32 2-bit])")
    assert_exact((len(rows), rows[0].increase, rows[0].agreement, rows[0].verdict), (1, 0.0, 1.0, "safe"),
                 "risk_table on 32-token prompts with a 32-token KV window: (rows, increase, agreement, verdict)",
                 "every prompt fits the window: nothing is quantized, so the perplexity is exactly the float one")
    expect_value_error(qr.risk_table, tokens("short"), [], what="risk_table with no configs", must_mention=("[]",))
    expect_value_error(qr.risk_table, tokens("short"), ["weights 4-bit"], what="risk_table with a string for a config", must_mention=("str",))
