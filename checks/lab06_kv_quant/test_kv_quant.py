"""Public checks for Lab 06 — KV-cache quantization.

Worked examples with exact codes, scales, zero points, FP8 values and bytes; properties on random
keys and values (the half-step bound, the layouts, a cache that does not depend on how tokens
arrived); measured error ratios on keys with LLM-like outlier channels; the lab's usual mistakes
turned into checks. Every check builds its own inputs and uses only the exercise it names. Read a
failing check's message first: it names the quantity, the expected and actual values, and, when
the value matches a usual mistake, that mistake.
"""

from __future__ import annotations

import math

import pytest
import torch

from infralens.checking import assert_exact, expect_correct, expect_value_error
from infralens.tensor_checks import assert_layout, assert_tensor_close, assert_tensor_equal, cause_of
from lab06_inputs import (
    BF16,
    E4M3,
    E5M2,
    F16,
    FP8_HALF_SUBNORMAL,
    FP8_HALF_ULP,
    OUTLIER_CHANNELS,
    RECIPROCAL_CODES,
    RECIPROCAL_GROUP,
    SCALE_EPS,
    attention_probs,
    half_step_bound,
    outlier_keys,
    plain_values,
    queries,
    read_codes,
    reconstruct,
    torch_generator,
)

check = pytest.mark.check
T = torch.tensor
U8, F32 = torch.uint8, torch.float32


def _triple(result, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    assert_exact(type(result), tuple, f"{what}: return type", "(codes, scale, zero_point)")
    assert_exact(len(result), 3, f"{what}: number of items returned", "(codes, scale, zero_point)")
    return result


# --- quantize_groups -------------------------------------------------------------------------

GROUPS_X = [0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.5, 2.0, 4.0]
GROUPS_CODES = [0, 0, 2, 3, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 1, 3]
GROUPS_SCALE = [1.0, 2.0, SCALE_EPS, 1.0]
GROUPS_ZERO = [0.0, -2.0, -1.0, 1.0]


def _groups_expected() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return T(GROUPS_CODES, dtype=U8), T(GROUPS_SCALE), T(GROUPS_ZERO)


@check("quantize_groups", points=3)
def test_quantize_groups_worked_example(lab):
    what = f"quantize_groups({GROUPS_X}, bits=2, group_size=4)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_groups(T(GROUPS_X), 2, 4), what)
    why = cause_of(scale, ([0.75, 1.0, SCALE_EPS, 0.75], "that is (max - min) / 4: divide by quant_max = 2^bits - 1 = 3"),
                 ([1.0, 1.3333333730697632, 0.3333333432674408, 1.3333333730697632], "that is max |x| / 3: the asymmetric step is (max - min) / 3"),
                 ([1.0, 2.0, 0.0, 1.0], "a constant group needs the SCALE_EPS floor, or its codes are 0 / 0 = NaN"),
                 ([1.0, 2.0, SCALE_EPS, 1.3333333730697632], "the last group's min is 1.0: zero_point is the group's own min, not min(x, 0)"))
    assert_tensor_equal(scale, T(GROUPS_SCALE), f"{what}'s scale", why or "one float32 scale per group of 4: (max - min) / 3, floored at SCALE_EPS")
    why = cause_of(zero, ([0.0, -2.0, -1.0, 0.0], "the last group's min is 1.0: zero_point is min(group), even when it is positive"))
    assert_tensor_equal(zero, T(GROUPS_ZERO), f"{what}'s zero_point", why or "zero_point = min of each group (KIVI's mn), float32")
    why = cause_of(codes, ([0, 1, 2, 3, 0, 1, 1, 3, 0, 0, 0, 0, 0, 1, 1, 3], "those are ties rounded AWAY from zero; torch.round sends 0.5 to 0 and 1.5 to 2"))
    assert_tensor_equal(codes, T(GROUPS_CODES, dtype=U8), f"{what}'s codes",
                        why or "round((x - zero_point) / scale) with torch.round (half to even), clamped to [0, 3], uint8")


@check("quantize_groups", points=1)
def test_quantize_groups_divides_by_the_scale(lab):
    what = f"quantize_groups({RECIPROCAL_GROUP}, bits=4, group_size=4)"
    codes, scale, _ = _triple(lab.kv_quant.quantize_groups(T(RECIPROCAL_GROUP), 4, 4), what)
    assert_tensor_equal(scale, T([1.0]) / 15, f"{what}'s scale", "float32 (1 - 0) / 15")
    why = cause_of(codes, ([0, 1, 14, 15], "those are the codes of (x - zero_point) * (1 / scale): 1 / scale rounds first and the products "
                                         "land just below the ties 1.5 and 14.5. Divide: (x - zero_point) / scale"))
    assert_tensor_equal(codes, T(RECIPROCAL_CODES, dtype=U8), f"{what}'s codes",
                        why or "(x - 0) / scale in float32 is [0, 1.5, 14.500001, 15]: torch.round gives [0, 2, 15, 15]")


@check("quantize_groups", points=2)
@pytest.mark.parametrize(("shape", "axis", "group_size"), [((8, 12), -1, 4), ((8, 12), -2, 4), ((16, 3, 5), 0, 8), ((2, 6, 4), 1, 3)])
def test_quantize_groups_layout(lab, shape, axis, group_size):
    x = torch.randn(shape, generator=torch_generator(61))
    what = f"quantize_groups(x {shape}, bits=4, group_size={group_size}, axis={axis})"
    codes, scale, zero = _triple(lab.kv_quant.quantize_groups(x, 4, group_size, axis), what)
    grouped = list(shape)
    grouped[axis] //= group_size
    assert_layout(codes, shape, U8, f"{what}'s codes", "uint8 codes of x's shape")
    for name, tensor in (("scale", scale), ("zero_point", zero)):
        assert_layout(tensor, tuple(grouped), F32, f"{what}'s {name}",
                f"float32, x's shape with dim {axis} divided by group_size (one per group, in place): the groups run along axis {axis}")
    blocks = x.movedim(axis, -1).reshape(*x.movedim(axis, -1).shape[:-1], -1, group_size)  # (..., groups, group_size)
    expected_zero = blocks.amin(-1).movedim(-1, axis)
    assert_tensor_equal(zero, expected_zero, f"{what}'s zero_point", f"the min of {group_size} consecutive elements along axis {axis}")
    expected_scale = ((blocks.amax(-1) - blocks.amin(-1)) / 15).clamp(min=SCALE_EPS).movedim(-1, axis)
    assert_tensor_equal(scale, expected_scale, f"{what}'s scale", f"(max - min) / 15 over {group_size} consecutive elements along axis {axis}, float32")


@check("quantize_groups", points=2)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_groups_round_trip_is_within_half_a_step(lab, seed, bits):
    x = outlier_keys(torch_generator(seed), (3, 32, 64))
    what = f"quantize_groups(x (3, 32, 64), bits={bits}, group_size=16)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_groups(x, bits, 16), what)
    assert_layout(codes, (3, 32, 64), U8, f"{what}'s codes", "uint8 codes of x's shape")
    assert_layout(scale, (3, 32, 4), F32, f"{what}'s scale", "float32, one per group of 16 along the last dim")
    assert_layout(zero, (3, 32, 4), F32, f"{what}'s zero_point", "float32, one per group of 16 along the last dim")
    blocks = codes.reshape(3, 32, 4, 16)
    assert_tensor_equal(blocks.amin(-1), torch.zeros(3, 32, 4, dtype=U8), f"{what}: the smallest code of each group", "each group's min maps to code 0")
    assert_tensor_equal(blocks.amax(-1), torch.full((3, 32, 4), 2**bits - 1, dtype=U8), f"{what}: the largest code of each group",
                        f"each group's max maps to quant_max = 2^bits - 1 = {2**bits - 1}")
    assert_tensor_close(reconstruct(codes, scale, zero, -1), x.double(), f"{what}: codes × scale + zero_point",
                        atol=half_step_bound(scale, zero, 16, -1, bits),
                        why="every element within half its group's step (scale / 2), plus 2^-14 of a step and 2^-22 of the magnitudes for float32 rounding")


@check("quantize_groups", points=1)
def test_constant_and_all_zero_groups(lab):
    x = T([[0.0] * 4 + [-7.25] * 4, [0.3] * 8])
    what = "quantize_groups([[0, 0, 0, 0, -7.25 × 4], [0.3 × 8]], bits=2, group_size=4)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_groups(x, 2, 4), what)
    assert_tensor_equal(scale, torch.full((2, 2), SCALE_EPS), f"{what}'s scale", f"a constant group's max - min is 0: the scale is the floor SCALE_EPS = {SCALE_EPS!r}")
    assert_tensor_equal(zero, T([[0.0, -7.25], [0.3, 0.3]]), f"{what}'s zero_point", "a constant group's min is its value")
    assert_tensor_equal(codes, torch.zeros(2, 8, dtype=U8), f"{what}'s codes", "0 everywhere (never NaN): a constant group dequantizes to its value exactly")


@check("quantize_groups", points=1)
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_half_precision_is_computed_in_float32(lab, dtype):
    x = outlier_keys(torch_generator(62), (16, 48), dtype)
    what = f"quantize_groups of {dtype} x (16, 48), bits=4, group_size=8"
    mine = _triple(lab.kv_quant.quantize_groups(x, 4, 8), what)
    reference = _triple(lab.kv_quant.quantize_groups(x.float(), 4, 8), "quantize_groups of the same x in float32")
    why = "convert x to float32 first and do every step in float32: scales and zero points are float32 whatever x's dtype"
    for index, name in enumerate(("codes", "scale", "zero_point")):
        assert_tensor_equal(mine[index], reference[index], f"{what}: {name} (against the same x in float32)", why)


@check("quantize_groups", points=2)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("bits=3", (torch.ones(8), 3, 4, -1), (3,)),
        ("bits=True (a bool, not an int)", (torch.ones(8), True, 4, -1), (True,)),
        ("bits=2.0 (a float)", (torch.ones(8), 2.0, 4, -1), (2.0,)),
        ("group_size=0", (torch.ones(8), 2, 0, -1), (0,)),
        ("group_size=True", (torch.ones(8), 2, True, -1), (True,)),
        ("10 elements in groups of 4", (torch.ones(2, 10), 2, 4, -1), (10, 4)),
        ("axis=2 for a 2-D x", (torch.ones(4, 4), 2, 4, 2), (2,)),
        ("axis=True", (torch.ones(4, 4), 2, 4, True), (True,)),
        ("NaN in x", (T([1.0, float("nan"), 0.0, 2.0]), 2, 4, -1), ("nan",)),
        ("Inf in x", (T([1.0, 0.0, float("-inf"), 2.0]), 2, 4, -1), ("inf",)),
        ("an int32 x", (torch.ones(8, dtype=torch.int32), 2, 4, -1), ("int32",)),
        ("a 0-d x", (T(1.5), 2, 1, -1), ((),)),
    ],
)
def test_quantize_groups_rejects_bad_input(lab, case, args, mention):
    kq = lab.kv_quant
    expect_correct(kq.quantize_groups, T(GROUPS_X), 2, 4, expected=_groups_expected(), what=f"quantize_groups({GROUPS_X}, 2, 4)")
    expect_value_error(kq.quantize_groups, *args, what=f"quantize_groups with {case}", must_mention=mention)


# --- dequantize_groups -----------------------------------------------------------------------


@check("dequantize_groups", points=2)
def test_dequantize_groups_worked_example(lab):
    codes, scale, zero = _groups_expected()
    what = "dequantize_groups(the quantize_groups example's codes, scale, zero_point)"
    result = lab.kv_quant.dequantize_groups(codes, scale, zero)
    expected = T([0.0, 0.0, 2.0, 3.0, -2.0, -2.0, 0.0, 4.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 2.0, 4.0])
    why = cause_of(result, ([0.0, 0.0, 2.0, 3.0, 2.0, 2.0, 4.0, 8.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 0.0, 2.0], "subtract nothing: x = codes × scale + zero_point"))
    assert_tensor_equal(result, expected, what, why or "codes × scale + zero_point, each group's parameters over its 4 elements, float32")


@check("dequantize_groups", points=2)
def test_dequantize_groups_along_the_tokens_axis(lab):
    codes = T([[0, 3], [1, 2], [3, 0], [2, 1]], dtype=U8)  # (tokens 4, channels 2), groups of 2 tokens per channel
    scale, zero = T([[1.0, 0.5], [2.0, 4.0]]), T([[0.0, -1.0], [10.0, 20.0]])
    what = "dequantize_groups(codes (4, 2), scale (2, 2), zero_point (2, 2), axis=-2)"
    result = lab.kv_quant.dequantize_groups(codes, scale, zero, -2)
    expected = T([[0.0, 0.5], [1.0, 0.0], [16.0, 20.0], [14.0, 24.0]])
    why = cause_of(result, ([[0.0, 0.5], [2.0, 8.0], [3.0, -1.0], [12.0, 24.0]], "token 1 got the second group's parameters: repeat each group over "
                                                                               "its consecutive elements (repeat_interleave), not the whole tensor (tile)"))
    assert_tensor_equal(result, expected, what, why or "the group size is 4 // 2 = 2 tokens: tokens 0-1 use row 0 of scale and zero_point, tokens 2-3 row 1")


@check("dequantize_groups", points=1)
def test_dequantize_groups_rounds_in_the_documented_order(lab):
    gen = torch_generator(63)
    codes = torch.randint(0, 256, (6, 64), generator=gen).to(U8)
    scale = torch.rand(6, 2, generator=gen) * 0.37 + 1e-3
    zero = torch.randn(6, 2, generator=gen) * 50
    result = lab.kv_quant.dequantize_groups(codes, scale, zero)
    expected = codes.float() * scale.repeat_interleave(32, dim=-1) + zero.repeat_interleave(32, dim=-1)  # the documented float32 order
    assert_tensor_equal(result, expected, "dequantize_groups(random codes (6, 64), scale (6, 2), zero_point (6, 2))",
                        "codes.float() × scale, then + zero_point, in float32: the order the docstring fixes (the cache returns these values)")


@check("dequantize_groups", points=2)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("int8 codes", (torch.zeros(8, dtype=torch.int8), torch.ones(2), torch.zeros(2)), ("int8",)),
        ("float64 scale", (torch.zeros(8, dtype=U8), torch.ones(2, dtype=torch.float64), torch.zeros(2)), ("float64",)),
        ("scale (3,) for 8 codes", (torch.zeros(8, dtype=U8), torch.ones(3), torch.zeros(3)), ((3,), (8,))),
        ("zero_point (4,) with scale (2,)", (torch.zeros(8, dtype=U8), torch.ones(2), torch.zeros(4)), ((2,), (4,))),
        ("scale (2, 2) for codes (8,)", (torch.zeros(8, dtype=U8), torch.ones(2, 2), torch.zeros(2, 2)), ((2, 2), (8,))),
        ("axis=1 for 1-D codes", (torch.zeros(8, dtype=U8), torch.ones(2), torch.zeros(2), 1), (1,)),
    ],
)
def test_dequantize_groups_rejects_bad_input(lab, case, args, mention):
    kq = lab.kv_quant
    codes, scale, zero = _groups_expected()
    expected = T([0.0, 0.0, 2.0, 3.0, -2.0, -2.0, 0.0, 4.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 2.0, 4.0])
    expect_correct(kq.dequantize_groups, codes, scale, zero, expected=expected, what="dequantize_groups(the worked example)")
    expect_value_error(kq.dequantize_groups, *args, what=f"dequantize_groups with {case}", must_mention=mention)


# --- quantize_keys / quantize_values ---------------------------------------------------------

KV_EXAMPLE = [[1.0, 100.0], [3.0, -100.0]]
KEYS_EXPECTED = ([[0, 3], [3, 0]], [[0.6666666865348816, 66.66666412353516]], [[1.0, -100.0]])
VALUES_EXPECTED = ([[0, 3], [3, 0]], [[33.0], [34.33333206176758]], [[1.0], [-100.0]])


def _expected(triple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return T(triple[0], dtype=U8), T(triple[1]), T(triple[2])


@check("quantize_keys", points=3)
def test_quantize_keys_worked_example(lab):
    what = f"quantize_keys({KV_EXAMPLE}, bits=2, group_size=2)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_keys(T(KV_EXAMPLE), 2, 2), what)
    per_token = "that is one scale per TOKEN (groups along head_dim); keys are quantized per CHANNEL: groups run along the tokens (axis -2)"
    assert_layout(scale, (1, 2), F32, f"{what}'s scale", f"one per channel per group of 2 tokens: (tokens // group_size, head_dim) = (1, 2). "
            f"{per_token if isinstance(scale, torch.Tensor) and tuple(scale.shape) == (2, 1) else ''}")
    expected = _expected(KEYS_EXPECTED)
    for index, name in enumerate(("codes", "scale", "zero_point")):
        assert_tensor_equal((codes, scale, zero)[index], expected[index], f"{what}'s {name}",
                            "channel 0 holds 1 and 3 (step 2 / 3), channel 1 holds 100 and -100 (step 200 / 3): each channel gets its own step")


@check("quantize_keys", points=2)
def test_quantize_keys_are_grouped_per_channel_over_tokens(lab, seed):
    k = outlier_keys(torch_generator(seed), (2, 3, 64, 48))
    what = "quantize_keys(k (batch 2, heads 3, tokens 64, head_dim 48), bits=2, group_size=32)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_keys(k, 2, 32), what)
    assert_layout(codes, (2, 3, 64, 48), U8, f"{what}'s codes", "uint8 codes of k's shape")
    why = "per channel: (..., tokens // group_size, head_dim) = (2, 3, 2, 48), one per channel per group of 32 tokens"
    assert_layout(scale, (2, 3, 2, 48), F32, f"{what}'s scale", why)
    assert_layout(zero, (2, 3, 2, 48), F32, f"{what}'s zero_point", why)
    runs = k.reshape(2, 3, 2, 32, 48)  # (batch, heads, token groups, 32 tokens, channels)
    assert_tensor_equal(zero, runs.amin(3), f"{what}'s zero_point", "the min of each channel over each run of 32 tokens")
    assert_tensor_close(reconstruct(codes, scale, zero, -2), k.double(), f"{what}: codes × scale + zero_point",
                        atol=half_step_bound(scale, zero, 32, -2, 2), why="half a step of each channel's group, plus float32 slack")


@check("quantize_keys", points=3)
@pytest.mark.parametrize(("bits", "ratio"), [(2, 2.5), (4, 4.0)])
def test_per_channel_keys_move_attention_less_than_per_token_keys(lab, bits, ratio):
    gen = torch_generator(606)  # fixed: the measured ratios below are properties of these keys, not of luck
    k = outlier_keys(gen, (2, 2, 64, 64))
    q = queries(gen, (2, 2, 4, 64))
    what = f"quantize_keys(k (2, 2, 64, 64) with outlier channels {OUTLIER_CHANNELS}, bits={bits}, group_size=32)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_keys(k, bits, 32), what)
    assert_layout(scale, (2, 2, 2, 64), F32, f"{what}'s scale", "per channel: (..., tokens // 32, head_dim)")
    # Per-token keys from the same function: quantize_keys of k^T groups along k's head_dim, one token at a time.
    t_codes, t_scale, t_zero = _triple(lab.kv_quant.quantize_keys(k.transpose(-2, -1).contiguous(), bits, 32), "quantize_keys(k^T)")
    assert_layout(t_scale, (2, 2, 2, 64), F32, "quantize_keys(k^T (2, 2, 64, 64))'s scale", "per channel of k^T, i.e. per token of k")
    exact = attention_probs(q, k)

    def moved(k_hat: torch.Tensor) -> float:
        return float((0.5 * (attention_probs(q, k_hat) - exact).abs().sum(-1)).mean())

    per_channel = moved(reconstruct(codes, scale, zero, -2))
    per_token = moved(reconstruct(t_codes, t_scale, t_zero, -2).transpose(-2, -1))
    assert per_channel * ratio <= per_token, (
        f"mean attention mass moved by {bits}-bit keys with outlier channels: per channel {per_channel:.4f}, per token {per_token:.4f} "
        f"(ratio {per_token / max(per_channel, 1e-300):.2f}); expected per-token at least {ratio}x worse (measured: about 4x at 2 bits, "
        "6-7x at 4 bits): each key channel's step must come from that channel's own range, over the tokens"
    )


@check("quantize_keys", points=2)
@pytest.mark.parametrize(
    ("case", "k", "group_size", "mention"),
    [
        ("a 1-D k", torch.ones(8), 4, ((8,),)),
        ("10 tokens in groups of 4", torch.ones(10, 4), 4, (10, 4)),
        ("NaN in k", T([[1.0, float("nan")], [0.0, 2.0]]), 2, ("nan",)),
    ],
)
def test_quantize_keys_rejects_bad_input(lab, case, k, group_size, mention):
    kq = lab.kv_quant
    expect_correct(kq.quantize_keys, T(KV_EXAMPLE), 2, 2, expected=_expected(KEYS_EXPECTED), what=f"quantize_keys({KV_EXAMPLE}, 2, 2)")
    expect_value_error(kq.quantize_keys, k, 2, group_size, what=f"quantize_keys with {case}", must_mention=mention)


@check("quantize_values", points=3)
def test_quantize_values_worked_example(lab):
    what = f"quantize_values({KV_EXAMPLE}, bits=2, group_size=2)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_values(T(KV_EXAMPLE), 2, 2), what)
    per_channel = "that is one scale per CHANNEL (groups along the tokens); values are quantized per TOKEN: groups run along head_dim (axis -1)"
    assert_layout(scale, (2, 1), F32, f"{what}'s scale", f"one per token per group of 2 channels: (tokens, head_dim // group_size) = (2, 1). "
            f"{per_channel if isinstance(scale, torch.Tensor) and tuple(scale.shape) == (1, 2) else ''}")
    expected = _expected(VALUES_EXPECTED)
    for index, name in enumerate(("codes", "scale", "zero_point")):
        assert_tensor_equal((codes, scale, zero)[index], expected[index], f"{what}'s {name}",
                            "token 0 holds 1 and 100 (step 99 / 3), token 1 holds 3 and -100 (step 103 / 3)")


@check("quantize_values", points=2)
def test_quantize_values_are_grouped_per_token_and_barely_move_the_output(lab, seed):
    gen = torch_generator(seed)
    k, v, q = outlier_keys(gen, (2, 2, 40, 64)), plain_values(gen, (2, 2, 40, 64)), queries(gen, (2, 2, 5, 64))
    what = "quantize_values(v (batch 2, heads 2, tokens 40, head_dim 64), bits=2, group_size=32)"
    codes, scale, zero = _triple(lab.kv_quant.quantize_values(v, 2, 32), what)
    assert_layout(codes, (2, 2, 40, 64), U8, f"{what}'s codes", "uint8 codes of v's shape")
    why = "per token: (..., tokens, head_dim // group_size) = (2, 2, 40, 2), one per token per group of 32 channels"
    assert_layout(scale, (2, 2, 40, 2), F32, f"{what}'s scale", why)
    assert_layout(zero, (2, 2, 40, 2), F32, f"{what}'s zero_point", why)
    assert_tensor_equal(zero, v.reshape(2, 2, 40, 2, 32).amin(-1), f"{what}'s zero_point", "the min of each token's run of 32 channels")
    v_hat = reconstruct(codes, scale, zero, -1)
    assert_tensor_close(v_hat, v.double(), f"{what}: codes × scale + zero_point", atol=half_step_bound(scale, zero, 32, -1, 2),
                        why="half a step of each token's group, plus float32 slack")
    probs = attention_probs(q, k)  # (2, 2, 5, 40)
    # P @ V mixes value rows with weights summing to 1: its error is at most the weighted half-steps.
    bound = probs @ (half_step_bound(scale, zero, 32, -1, 2).amax(-1, keepdim=True))
    assert_tensor_close(probs @ v_hat, probs @ v.double(), f"attention output P @ V with {what}", atol=bound,
                        why="each output is a weighted mean of value rows, so its error is at most the weighted half-steps of those rows")


@check("quantize_values", points=2)
@pytest.mark.parametrize(
    ("case", "v", "group_size", "mention"),
    [
        ("a 1-D v", torch.ones(8), 4, ((8,),)),
        ("head_dim 6 in groups of 4", torch.ones(4, 6), 4, (6, 4)),
        ("a float64 v", torch.ones(2, 4, dtype=torch.float64), 2, ("float64",)),
    ],
)
def test_quantize_values_rejects_bad_input(lab, case, v, group_size, mention):
    kq = lab.kv_quant
    expect_correct(kq.quantize_values, T(KV_EXAMPLE), 2, 2, expected=_expected(VALUES_EXPECTED), what=f"quantize_values({KV_EXAMPLE}, 2, 2)")
    expect_value_error(kq.quantize_values, v, 2, group_size, what=f"quantize_values with {case}", must_mention=mention)


# --- QuantizedKVCache ------------------------------------------------------------------------

# One head, head_dim 4, 2-bit groups of 4, residual 1: a prefill of 6 tokens quantizes the oldest 4.
CACHE_KEYS = [[0.0, 6.0, 1.0, -3.0], [1.5, 4.5, 1.0, 0.0], [3.0, 0.0, 1.0, 1.5], [0.75, 3.0, 1.0, 3.0], [7.0, 7.5, -2.0, 0.25], [0.5, 0.5, 0.5, 0.5]]
CACHE_VALUES = [[0.0, 1.5, 0.75, 3.0], [6.0, 4.5, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0], [-3.0, 0.0, 1.5, 3.0], [2.0, 2.0, 9.0, -1.0], [0.25, 0.0, 1.0, 2.0]]
CACHE_KEYS_OUT = [[0.0, 6.0, 1.0, -3.0], [2.0, 4.0, 1.0, 1.0], [3.0, 0.0, 1.0, 1.0], [1.0, 4.0, 1.0, 3.0], [7.0, 7.5, -2.0, 0.25], [0.5, 0.5, 0.5, 0.5]]
CACHE_VALUES_OUT = [[0.0, 2.0, 1.0, 3.0], [6.0, 4.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0], [-3.0, 1.0, 1.0, 3.0], [2.0, 2.0, 9.0, -1.0], [0.25, 0.0, 1.0, 2.0]]
CACHE_SMALL = dict(batch=1, num_kv_heads=1, head_dim=4, bits=2, group_size=4, residual_length=1, dtype=torch.float32)


def _kv(rows: list) -> torch.Tensor:
    return T(rows).reshape(1, 1, -1, 4)


def _expected_nbytes(b: int, h: int, d: int, bits: int, g: int, n: int, residual: int, element: int) -> int:
    """The bytes the docstring lists for ``n`` quantized tokens and ``residual`` full-precision ones."""
    codes = 2 * b * h * n * math.ceil(d * bits / 8)
    metadata = 2 * 4 * b * h * ((n // g) * d + n * (d // g))
    return codes + metadata + 2 * b * h * residual * d * element


def _state(cache, what: str) -> tuple[int, int, int]:
    tokens, quantized, nbytes = cache.tokens, cache.quantized_tokens, cache.nbytes
    assert_exact(type(nbytes), int, f"{what}.nbytes: type", "a byte count is an int: the sum of the stored tensors' .nbytes")
    return tokens, quantized, nbytes


@check("QuantizedKVCache", points=2)
def test_new_cache_is_empty_with_the_documented_layout(lab):
    cache = lab.kv_quant.QuantizedKVCache(batch=2, num_kv_heads=3, head_dim=64, bits=2, group_size=32, residual_length=8)
    what = "QuantizedKVCache(batch=2, num_kv_heads=3, head_dim=64, bits=2, group_size=32, residual_length=8)"
    layout = {"k_codes": ((2, 3, 0, 16), U8), "v_codes": ((2, 3, 0, 16), U8), "k_scale": ((2, 3, 0, 64), F32), "k_zero_point": ((2, 3, 0, 64), F32),
              "v_scale": ((2, 3, 0, 2), F32), "v_zero_point": ((2, 3, 0, 2), F32), "k_residual": ((2, 3, 0, 64), BF16), "v_residual": ((2, 3, 0, 64), BF16)}
    for name, (shape, dtype) in layout.items():
        assert_layout(getattr(cache, name, None), shape, dtype, f"{what}.{name}", "empty along dim 2; packed codes are ceil(64 × 2 / 8) = 16 bytes per token; "
                "key metadata per channel (head_dim), value metadata per group of 32 channels (head_dim // 32); the residual in dtype (bf16 by default)")
    assert_exact(_state(cache, what), (0, 0, 0), f"{what}: (tokens, quantized_tokens, nbytes)", "nothing is stored yet")


@check("QuantizedKVCache", points=4)
def test_cache_worked_example(lab):
    cache = lab.kv_quant.QuantizedKVCache(**CACHE_SMALL)
    what = "QuantizedKVCache(head_dim=4, bits=2, group_size=4, residual_length=1, dtype=float32).prefill(6 tokens)"
    result = cache.prefill(_kv(CACHE_KEYS), _kv(CACHE_VALUES))
    assert_exact(type(result), tuple, f"{what}: return type", "(keys, values)")
    keys, values = result
    assert_exact(_state(cache, what), (6, 4, _expected_nbytes(1, 1, 4, 2, 4, 4, 2, 4)), f"{what}: (tokens, quantized_tokens, nbytes)",
                 "n = 4 × floor((6 - 1) / 4) = 4 quantized tokens, 2 in the residual; bytes: 2 × 4 packed codes + 2 × 4 × (4 + 4) float32 "
                 "metadata + 2 × 2 × 4 × 4 float32 residual = 136")
    per_token = [[0.0, 6.0, 1.0, -3.0], [1.5, 4.5, 1.0, 0.0], [3.0, 0.0, 1.0, 1.5], [0.75, 3.0, 1.0, 3.0]]
    why = cause_of(keys[0, 0, :4] if isinstance(keys, torch.Tensor) and keys.shape == (1, 1, 6, 4) else None,
                 (per_token, "the old keys came back unchanged: were they quantized at all?"))
    assert_tensor_equal(keys, _kv(CACHE_KEYS_OUT), f"{what}: keys", why or "tokens 0-3 quantized per channel (each channel's 4 tokens share one step: "
                        "channel 0 holds 0, 1.5, 3, 0.75 -> step 1, codes 0, 2, 3, 1; channel 1 holds 6, 4.5, 0, 3 -> step 2), tokens 4-5 as given (the residual)")
    assert_tensor_equal(values, _kv(CACHE_VALUES_OUT), f"{what}: values", "tokens 0-3 quantized per token (token 0 holds 0, 1.5, 0.75, 3 -> step 1, "
                        "codes 0, 2, 1, 3), tokens 4-5 as given (the residual)")


@check("QuantizedKVCache", points=3)
@pytest.mark.parametrize(("prompt", "steps", "residual_length"), [(5, 70, 16), (1, 40, 0), (100, 3, 32), (48, 17, 16)])
def test_cache_ages_whole_groups_and_counts_its_bytes(lab, seed, prompt, steps, residual_length):
    gen = torch_generator(seed)
    total = prompt + steps
    k, v = outlier_keys(gen, (1, 2, total, 64)), plain_values(gen, (1, 2, total, 64))
    cache = lab.kv_quant.QuantizedKVCache(batch=1, num_kv_heads=2, head_dim=64, bits=4, group_size=16, residual_length=residual_length)
    base = f"QuantizedKVCache(1, 2, 64, bits=4, group_size=16, residual_length={residual_length}, bf16)"
    for tokens in range(prompt, total + 1):
        if tokens == prompt:
            what = f"{base}.prefill({prompt} tokens)"
            keys, values = cache.prefill(k[:, :, :prompt], v[:, :, :prompt])
        else:
            what = f"{base} after prefill({prompt}) and {tokens - prompt} append calls"
            keys, values = cache.append(k[:, :, tokens - 1 : tokens], v[:, :, tokens - 1 : tokens])
        n = 16 * (max(tokens - residual_length, 0) // 16)
        expected = (tokens, n, _expected_nbytes(1, 2, 64, 4, 16, n, tokens - n, 2))
        if _state(cache, what) != expected:
            assert_exact(_state(cache, what), expected, f"{what}: (tokens, quantized_tokens, nbytes)",
                         f"n = 16 × floor(max({tokens} - {residual_length}, 0) / 16) = {n}: the newest {residual_length} or more tokens stay in bf16, "
                         "older ones are quantized in whole groups; nbytes sums the packed codes, float32 scales and zero points and the residual")
        assert_layout(keys, (1, 2, tokens, 64), BF16, f"{what}: keys", "every cached token, (batch, heads, tokens, head_dim), in the cache's dtype")
        assert_layout(values, (1, 2, tokens, 64), BF16, f"{what}: values", "every cached token, in the cache's dtype")
        assert_tensor_equal(keys[:, :, n:], k[:, :, n:tokens].to(BF16), f"{what}: keys of the residual tokens {n}..{tokens - 1}",
                            "the residual window comes back exactly as given (converted to bf16): it is never quantized")
        assert_tensor_equal(values[:, :, n:], v[:, :, n:tokens].to(BF16), f"{what}: values of the residual tokens", "returned exactly, in bf16")


@check("QuantizedKVCache", points=3)
def test_cache_contents_do_not_depend_on_how_tokens_arrived(lab, seed):
    gen = torch_generator(seed)
    k, v = outlier_keys(gen, (2, 1, 90, 32)), plain_values(gen, (2, 1, 90, 32))
    make = lambda: lab.kv_quant.QuantizedKVCache(batch=2, num_kv_heads=1, head_dim=32, bits=2, group_size=32, residual_length=20)
    whole = make()
    keys, values = whole.prefill(k, v)
    stepped = make()
    stepped.prefill(k[:, :, :1], v[:, :, :1])
    for t in range(1, 90):
        step_keys, step_values = stepped.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
    what = "QuantizedKVCache(2, 1, 32, bits=2, group_size=32, residual_length=20): prefill(1) + 89 appends, against prefill(90)"
    assert_tensor_equal(step_keys, keys, f"{what}: keys", "a group is quantized from its own tokens only: the order of arrival cannot change its codes")
    assert_tensor_equal(step_values, values, f"{what}: values", "each token's values are quantized from that token only")
    for name in ("k_codes", "k_scale", "k_zero_point", "v_codes", "v_scale", "v_zero_point"):
        assert_tensor_equal(getattr(stepped, name), getattr(whole, name), f"{what}: {name}", "the same groups, quantized the same way")
    n = 64
    codes = read_codes(whole.k_codes, 2, 32)  # (2, 1, 64, 32): the layout of pack_codes
    runs = k[:, :, :n].to(BF16).float().reshape(2, 1, 2, 32, 32)  # (batch, head, key groups, 32 tokens, channels)
    assert_tensor_equal(whole.k_zero_point, runs.amin(3), f"{what}: k_zero_point", "per channel: the min of each channel over each group of 32 tokens "
                        "(quantize_keys of the bf16 tokens as stored)")
    assert_tensor_close(reconstruct(codes, whole.k_scale, whole.k_zero_point, -2), k[:, :, :n].to(BF16).double(), f"{what}: the stored key codes, unpacked",
                        atol=half_step_bound(whole.k_scale, whole.k_zero_point, 32, -2, 2), why="half a step of each channel's group: codes packed by pack_codes")
    dequantized = codes.float() * whole.k_scale.repeat_interleave(32, dim=-2) + whole.k_zero_point.repeat_interleave(32, dim=-2)  # the documented float32 order
    assert_tensor_equal(keys[:, :, :n], dequantized.to(BF16), f"{what}: keys of the quantized tokens",
                        "dequantize_groups of the stored codes (codes × scale + zero_point in float32), converted to bf16")


@check("QuantizedKVCache", points=2)
def test_cache_rejects_bad_fields(lab):
    kq = lab.kv_quant
    expect_correct(lambda: kq.QuantizedKVCache(**CACHE_SMALL).prefill(_kv(CACHE_KEYS), _kv(CACHE_VALUES)),
                   expected=(_kv(CACHE_KEYS_OUT), _kv(CACHE_VALUES_OUT)), what="the worked example's prefill")
    for case, fields, mention in [
        ("bits=3", dict(bits=3), (3,)),
        ("group_size=0", dict(group_size=0), (0,)),
        ("head_dim=4 in groups of 3", dict(group_size=3), (4, 3)),
        ("residual_length=-1", dict(residual_length=-1), (-1,)),
        ("batch=True", dict(batch=True), (True,)),
        ("num_kv_heads=2.0", dict(num_kv_heads=2.0), (2.0,)),
        ("dtype=torch.int32", dict(dtype=torch.int32), ("int32",)),
    ]:
        expect_value_error(lambda f=fields: kq.QuantizedKVCache(**{**CACHE_SMALL, **f}), what=f"QuantizedKVCache with {case}", must_mention=mention)


@check("QuantizedKVCache", points=2)
def test_cache_rejects_bad_steps_and_keeps_its_contents(lab):
    kq = lab.kv_quant
    expect_correct(lambda: kq.QuantizedKVCache(**CACHE_SMALL).prefill(_kv(CACHE_KEYS), _kv(CACHE_VALUES)),
                   expected=(_kv(CACHE_KEYS_OUT), _kv(CACHE_VALUES_OUT)), what="the worked example's prefill")
    empty = kq.QuantizedKVCache(**CACHE_SMALL)
    expect_value_error(empty.append, _kv(CACHE_KEYS[:1]), _kv(CACHE_VALUES[:1]), what="append into an empty cache", must_mention=(0,))
    expect_value_error(empty.prefill, torch.ones(1, 1, 3, 5), torch.ones(1, 1, 3, 5), what="prefill with head_dim 5 (the cache has 4)", must_mention=((1, 1, 3, 5),))
    expect_value_error(empty.prefill, torch.ones(1, 1, 3, 4), torch.ones(1, 1, 2, 4), what="prefill with k of 3 tokens and v of 2", must_mention=((1, 1, 2, 4),))
    expect_value_error(empty.prefill, T([[[[1.0, float("nan"), 0.0, 0.0]]]]), torch.ones(1, 1, 1, 4), what="prefill with NaN in k", must_mention=("nan",))
    cache = kq.QuantizedKVCache(**CACHE_SMALL)
    cache.prefill(_kv(CACHE_KEYS), _kv(CACHE_VALUES))
    expect_value_error(cache.prefill, _kv(CACHE_KEYS), _kv(CACHE_VALUES), what="a second prefill into a cache of 6 tokens", must_mention=(6,))
    expect_value_error(cache.append, torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4), what="append of 2 tokens", must_mention=((1, 1, 2, 4),))
    assert_exact(_state(cache, "the cache after rejected calls"), (6, 4, 136), "the cache after rejected calls: (tokens, quantized_tokens, nbytes)",
                 "a rejected call leaves the cache as it was")
    keys, values = cache.append(_kv([[0.5, 0.5, 0.5, 0.5]]), _kv([[1.0, 1.0, 1.0, 1.0]]))
    assert_tensor_equal(keys[:, :, :6], _kv(CACHE_KEYS_OUT), "keys after rejected calls and one good append", "a rejected call leaves the cache as it was")


# --- fp8_scale / quantize_fp8 ----------------------------------------------------------------

FP8_X = [[-896.0, 3.0], [0.5, 100.0]]


def _float32(value: float) -> float:
    return T(value, dtype=F32).item()


@check("fp8_scale", points=3)
@pytest.mark.parametrize(("dtype", "expected"), [(E4M3, 2.0), (E5M2, 0.015625)])
def test_fp8_scale_worked_example(lab, dtype, expected):
    what = f"fp8_scale({FP8_X}, {dtype})"
    scale = lab.kv_quant.fp8_scale(T(FP8_X), dtype)
    why = {896 / 240: "that is amax / 240, the max of float8_e4m3fnuz (AMD); float8_e4m3fn's max is 448",
           _float32(100 / 448): "that is the signed max (100) / 448: the extreme value is -896, so amax = max |x|",
           _float32(100 / 57344): "that is the signed max (100): amax = max |x| = 896",
           896 / 57344 if dtype == E4M3 else 896 / 448: "that is the other FP8 dtype's maximum"}.get(scale, "")
    assert_exact(scale, expected, what, why or f"max |x| / {448 if dtype == E4M3 else 57344} in float32, as a Python float")


@check("fp8_scale", points=2)
def test_fp8_scale_is_a_float32_value(lab, seed):
    x = plain_values(torch_generator(seed), (7, 33)) * 3.7
    scale = lab.kv_quant.fp8_scale(x)
    expected = (x.abs().amax() / 448).item()
    assert_exact(scale, expected, "fp8_scale(random x (7, 33))", "amax / 448 computed in float32 (a Python float holding that float32 value): "
                 "a float64 division gives a scale the float32 cast does not reproduce")
    zero = lab.kv_quant.fp8_scale(torch.zeros(3, 4, dtype=BF16), E5M2)
    assert_exact(zero, SCALE_EPS, "fp8_scale(zeros (3, 4) bf16, e5m2)", "an all-zero tensor gets the floor SCALE_EPS, never 0 (x / 0 = NaN)")


@check("fp8_scale", points=1)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("dtype=torch.float16", (torch.ones(2), torch.float16), ("float16",)),
        ("dtype=torch.float8_e4m3fnuz", (torch.ones(2), torch.float8_e4m3fnuz), ("float8_e4m3fnuz",)),
        ("NaN in x", (T([1.0, float("nan")]), E4M3), ("nan",)),
        ("an int64 x", (torch.ones(2, dtype=torch.int64), E4M3), ("int64",)),
    ],
)
def test_fp8_scale_rejects_bad_input(lab, case, args, mention):
    kq = lab.kv_quant
    expect_correct(kq.fp8_scale, T(FP8_X), E4M3, expected=2.0, what=f"fp8_scale({FP8_X})")
    expect_value_error(kq.fp8_scale, *args, what=f"fp8_scale with {case}", must_mention=mention)


FP8_VALUES = [1000.0, -500.0, 3.0, 0.3]


@check("quantize_fp8", points=3)
@pytest.mark.parametrize(("scale", "dtype", "expected"), [(1.0, E4M3, [448.0, -448.0, 3.0, 0.3125]), (2.0, E4M3, [448.0, -256.0, 1.5, 0.15625]),
                                                          (1.0, E5M2, [1024.0, -512.0, 3.0, 0.3125]), (0.01, E5M2, [57344.0, -49152.0, 320.0, 32.0])])
def test_quantize_fp8_worked_examples(lab, scale, dtype, expected):
    what = f"quantize_fp8({FP8_VALUES}, scale={scale}, {dtype})"
    x8 = lab.kv_quant.quantize_fp8(T(FP8_VALUES), scale, dtype)
    assert_layout(x8, (4,), dtype, what, f"a {dtype} tensor of x's shape: torch's own FP8 dtype")
    expected = T([_float32(e) for e in expected]).to(dtype)
    why = cause_of(x8.float(), ([float("inf"), -49152.0, 320.0, 32.0], "100,000 overflows e5m2: clamp x / scale to ±57344 before the cast "
                                                                       "(the CPU cast sends e5m2 overflow to Inf)"),
                 ([240.0, -240.0, 3.0, 0.3125], "that clamps at 240, float8_e4m3fnuz's max: float8_e4m3fn's is 448"),
                 ([448.0, -448.0, 6.0, 0.625], "that is x × scale: quantize divides by the scale"))
    assert_tensor_equal(x8, expected, what, why or "x / scale in float32, clamped to ±max of the dtype (saturation), cast with round to nearest even")


@check("quantize_fp8", points=2)
@pytest.mark.parametrize("dtype", [E4M3, E5M2])
def test_fp8_round_trip_error_is_bounded_by_the_mantissa(lab, seed, dtype):
    x = outlier_keys(torch_generator(seed), (16, 64))
    x[0, 0] = -1e-6  # a value below the normal range
    limit = 448.0 if dtype == E4M3 else 57344.0
    scale = _float32(float(x.abs().max()) / limit)
    what = f"quantize_fp8(x (16, 64), scale=amax / {limit:g}, {dtype})"
    x8 = lab.kv_quant.quantize_fp8(x, scale, dtype)
    assert_layout(x8, (16, 64), dtype, what, f"a {dtype} tensor of x's shape")
    back = x8.double() * scale
    rel, sub = FP8_HALF_ULP[dtype], FP8_HALF_SUBNORMAL[dtype]
    assert_tensor_close(back, x.double(), f"{what} × scale", atol=rel * x.double().abs() + sub * scale + 2.0**-22 * x.double().abs(),
                        why=f"round to nearest: normal values within half a spacing ({rel:g} relative, {'3' if dtype == E4M3 else '2'} mantissa bits), "
                        f"subnormal ones within half the smallest subnormal ({sub:g} × scale), plus float32 rounding of x / scale")


@check("quantize_fp8", points=2)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("scale=0", (torch.ones(2), 0.0, E4M3), (0.0,)),
        ("scale=-1", (torch.ones(2), -1.0, E4M3), (-1.0,)),
        ("scale=True", (torch.ones(2), True, E4M3), (True,)),
        ("scale=inf", (torch.ones(2), float("inf"), E4M3), ("inf",)),
        ("dtype=torch.bfloat16", (torch.ones(2), 1.0, BF16), ("bfloat16",)),
        ("Inf in x", (T([1.0, float("inf")]), 1.0, E4M3), ("inf",)),
    ],
)
def test_quantize_fp8_rejects_bad_input(lab, case, args, mention):
    kq = lab.kv_quant
    expect_correct(kq.quantize_fp8, T(FP8_VALUES), 1.0, E4M3, expected=T([448.0, -448.0, 3.0, 0.3125]).to(E4M3), what=f"quantize_fp8({FP8_VALUES}, 1.0)")
    expect_value_error(kq.quantize_fp8, *args, what=f"quantize_fp8 with {case}", must_mention=mention)


# --- attention_score_error -------------------------------------------------------------------

Q_EXAMPLE = [[2.0, 0.0, 0.0, 0.0]]
K_EXAMPLE = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
K_HAT_EXAMPLE = [[2 * math.log(3), 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
SOFTMAX_SLACK = 2.0**-20  # float32 softmax of these two scores: a few ulps of probabilities near 0.5


@check("attention_score_error", points=3)
def test_attention_score_error_worked_example(lab):
    what = "attention_score_error(q = [[2, 0, 0, 0]], k = zeros (2, 4), k_hat = k with 2 ln 3 at [0, 0])"
    error = lab.kv_quant.attention_score_error(T(Q_EXAMPLE), T(K_EXAMPLE), T(K_HAT_EXAMPLE))
    assert_exact(type(error), float, f"{what}: return type", "a Python float")
    causes = [(0.8, "that is sum |P - P_hat| = 0.8: the total-variation distance is half of it"),
              (40 / 82, "that is without the 1 / sqrt(head_dim) = 1 / 2 on the scores: P_hat would be [81/82, 1/82]"),
              (0.0, "0 means the distributions were not compared over the keys: softmax over the last dim (the keys)")]
    why = next((text for value, text in causes if abs(error - value) <= SOFTMAX_SLACK), "")
    assert abs(error - 0.4) <= SOFTMAX_SLACK, (
        f"{what} returned {error!r}, expected 0.4 within {SOFTMAX_SLACK:.2g} (float32 softmax): scores [0, 0] and [ln 9, 0], P = [0.5, 0.5], "
        f"P_hat = [0.9, 0.1], half the L1 distance = 0.4. {why}"
    )


@check("attention_score_error", points=2)
def test_attention_score_error_averages_over_every_query_row(lab):
    q = T([Q_EXAMPLE * 2, Q_EXAMPLE * 2])  # (2 batches, 2 queries, 4)
    k = T([K_EXAMPLE, K_EXAMPLE])
    k_hat = T([K_HAT_EXAMPLE, K_EXAMPLE])  # batch 0 moves 0.4 per query, batch 1 nothing
    what = "attention_score_error(q (2, 2, 4), k (2, 2, 4), k_hat moving 0.4 per query in batch 0 and 0 in batch 1)"
    error = lab.kv_quant.attention_score_error(q, k, k_hat)
    assert_exact(type(error), float, f"{what}: return type", "a Python float")
    why = {0.4: "that is the largest row's error or batch 0's mean: average over every query row of every batch",
           0.8: "that is the sum over batches of their means: average over every row"}.get(round(error, 6), "")
    assert abs(error - 0.2) <= SOFTMAX_SLACK, f"{what} returned {error!r}, expected 0.2: the mean over all 4 query rows of [0.4, 0.4, 0, 0]. {why}"
    same = lab.kv_quant.attention_score_error(q, k, k.clone())
    assert_exact(same, 0.0, "attention_score_error(q, k, k_hat = k)", "identical keys give identical distributions: exactly 0.0")


@check("attention_score_error", points=1)
@pytest.mark.parametrize(
    ("case", "q", "k", "k_hat", "mention"),
    [
        ("k_hat of another shape", torch.ones(1, 4), torch.ones(2, 4), torch.ones(3, 4), ((3, 4), (2, 4))),
        ("q of another head_dim", torch.ones(1, 3), torch.ones(2, 4), torch.ones(2, 4), ((1, 3),)),
        ("a 1-D q", torch.ones(4), torch.ones(2, 4), torch.ones(2, 4), ((4,),)),
        ("NaN in k_hat", torch.ones(1, 4), torch.ones(2, 4), T([[1.0, 1.0, 1.0, 1.0], [float("nan"), 1.0, 1.0, 1.0]]), ("nan",)),
    ],
)
def test_attention_score_error_rejects_bad_input(lab, case, q, k, k_hat, mention):
    kq = lab.kv_quant
    expect_correct(kq.attention_score_error, T(Q_EXAMPLE), T(K_EXAMPLE), T(K_EXAMPLE), expected=0.0, what="attention_score_error(q, k, k)")
    expect_value_error(kq.attention_score_error, q, k, k_hat, what=f"attention_score_error with {case}", must_mention=mention)


# --- quantized_kv_bytes ----------------------------------------------------------------------

LLAMA3_8B = (32, 8, 128)  # num_hidden_layers, num_key_value_heads, head_dim (Hugging Face config.json)


@check("quantized_kv_bytes", points=3)
def test_quantized_kv_bytes_llama3_8b(lab):
    what = "quantized_kv_bytes(32 layers, 8 KV heads, head_dim 128, 8192 tokens, bits=2, group_size=32, residual_length=128)"
    actual = lab.kv_quant.quantized_kv_bytes(*LLAMA3_8B, 8192, 1, 2, 32, 128)
    why = {32 * 8 * (2 * 8192 * 32 + 2 * 256 * 128 * 4 + 2 * 8192 * 4 * 4): "that quantizes the residual window too: the newest 128 tokens stay in bf16",
           32 * 8 * (2 * 8064 * 128 + 2 * 252 * 128 * 4 + 2 * 8064 * 4 * 4 + 2 * 128 * 128 * 2): "that stores one byte per 2-bit code: 4 codes pack into a byte",
           32 * 8 * (2 * 8064 * 32 + 2 * 252 * 128 * 2 + 2 * 8064 * 4 * 2 + 2 * 128 * 128 * 2): "that counts 2-byte scales and zero points: they are float32",
           32 * 8 * (2 * 8064 * 32 + 2 * 252 * 128 * 4 + 2 * 8064 * 4 * 4): "that leaves out the residual window's bf16 bytes"}.get(actual, "")
    assert_exact(actual, 281_018_368, what, why or "n = 8064 quantized tokens: per layer and head 2 × 8064 × 32 code bytes + 2 × 252 × 128 × 4 key metadata "
                 "+ 2 × 8064 × 4 × 4 value metadata + 2 × 128 × 128 × 2 bf16 residual; against 1,073,741,824 bytes in bf16")


@check("quantized_kv_bytes", points=2)
@pytest.mark.parametrize(("tokens", "n"), [(100, 0), (159, 0), (160, 32), (161, 32), (1000, 864)])
def test_quantized_kv_bytes_follows_the_aging_rule(lab, tokens, n):
    what = f"quantized_kv_bytes(2 layers, 4 KV heads, head_dim 64, {tokens} tokens, batch 3, bits=4, group_size=32, residual_length=128)"
    expected = 2 * 4 * _expected_nbytes(3, 1, 64, 4, 32, n, tokens - n, 2)
    bf16 = 2 * 2 * 4 * 64 * 2 * tokens * 3
    why = " (with no quantized token it is the bf16 cache exactly)" if n == 0 else f" (against {bf16:,} bytes in bf16)"
    assert_exact(lab.kv_quant.quantized_kv_bytes(2, 4, 64, tokens, 3, 4, 32, 128), expected, what,
                 f"n = 32 × floor(max({tokens} - 128, 0) / 32) = {n} quantized tokens, {tokens - n} in the bf16 residual{why}")


@check("quantized_kv_bytes", points=1)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("tokens=0", (32, 8, 128, 0), (0,)),
        ("batch=True", (32, 8, 128, 10, True), (True,)),
        ("num_layers=32.0", (32.0, 8, 128, 10), (32.0,)),
        ("bits=3", (32, 8, 128, 10, 1, 3), (3,)),
        ("residual_length=-1", (32, 8, 128, 10, 1, 2, 32, -1), (-1,)),
        ("head_dim 96 in groups of 64", (32, 8, 96, 10, 1, 2, 64), (96, 64)),
    ],
)
def test_quantized_kv_bytes_rejects_bad_input(lab, case, args, mention):
    kq = lab.kv_quant
    expect_correct(kq.quantized_kv_bytes, *LLAMA3_8B, 8192, expected=281_018_368, what="quantized_kv_bytes(Llama-3-8B, 8192 tokens)")
    expect_value_error(kq.quantized_kv_bytes, *args, what=f"quantized_kv_bytes with {case}", must_mention=mention)
