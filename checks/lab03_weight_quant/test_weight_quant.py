"""Public checks for Lab 03 — weight quantization.

Worked examples with exact codes, scales and bytes; properties on random weights (the half-step
error bound, shapes per granularity, round trips); the lab's usual mistakes turned into checks.
Every check builds its own inputs and uses only the function it names. Read a failing check's
message first: it names the quantity, the expected and actual values, and, when the value matches
a usual mistake, that mistake.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from infralens.checking import assert_exact, expect_correct, expect_value_error, summarize
from infralens.tensor_checks import assert_layout, assert_tensor_close, assert_tensor_equal, cause_of
from lab03_inputs import (
    F16_ZERO_POINT_W,
    RECIPROCAL_SCALE,
    RECIPROCAL_W,
    STEP_SLACK,
    describe_case,
    expand_qparam,
    outlier_weight,
    random_case,
    random_weight,
    reconstruct,
    stored_bytes,
    torch_generator,
)

check = pytest.mark.check
T = torch.tensor
F16 = torch.float16


def _wrong_axis(scale, in_features: int) -> str:
    """Said only when a per-channel ``scale`` has one entry per input column: the wrong axis."""
    if isinstance(scale, torch.Tensor) and tuple(scale.shape) in ((in_features, 1), (1, in_features)):
        return f"shape {tuple(scale.shape)} is one scale per input column (a reduction over out): per-channel means one per output row, reduce over in (dim 1)"
    return ""


def _pair(result, what: str) -> tuple:
    """``result`` must be a 2-tuple, as ``choose_qparams`` documents: ``(scale, zero_point)``."""
    if type(result) is not tuple or len(result) != 2:
        pytest.fail(f"{what} returned {type(result).__name__} {summarize(result)}, expected a tuple (scale, zero_point)", pytrace=False)
    return result


def _no_zero_point(zero_point, what: str) -> None:
    if zero_point is not None:
        pytest.fail(f"{what}: a symmetric scheme has no zero point (None), got {summarize(zero_point)}", pytrace=False)


# --- quant_range -----------------------------------------------------------------------------


@check("quant_range", points=2)
@pytest.mark.parametrize(
    ("bits", "symmetric", "expected"),
    [(8, True, (-127, 127)), (4, True, (-7, 7)), (2, True, (-1, 1)), (3, True, (-3, 3)), (8, False, (0, 255)), (4, False, (0, 15)), (2, False, (0, 3))],
)
def test_quant_range_table(lab, bits, symmetric, expected):
    got = lab.weight_quant.quant_range(bits, symmetric)
    quant_max = 2 ** (bits - 1) - 1
    why = "quant_range returns a tuple of two ints"
    if type(got) is tuple and got == (-quant_max - 1, quant_max):
        why = "symmetric codes use the restricted range ±(2^(b-1) - 1), leaving -2^(b-1) unused" if symmetric else "asymmetric codes are unsigned: all 2^b values from 0"
    assert_exact(got, expected, f"quant_range({bits}, symmetric={symmetric})", why)


@check("quant_range", points=1)
@pytest.mark.parametrize("bits", [1, 9, 0, 16, -4, True, False, 4.0, "8"])
def test_quant_range_rejects_unsupported_bits(lab, bits):
    wq = lab.weight_quant
    expect_correct(wq.quant_range, 8, expected=(-127, 127), what="quant_range(8)")
    expect_value_error(wq.quant_range, bits, what=f"quant_range({bits!r})", must_mention=(bits,))


# --- choose_qparams --------------------------------------------------------------------------

WORKED_W = [[0.5, -1.0, 0.25, 0.0], [1.25, 3.5, -1.25, 0.0]]
WORKED_SCALE = [[0.1429443359375], [0.5]]  # 1/7 rounded up to float16 (1171 × 2^-13); 3.5/7 = 0.5 exactly
WORKED_CODES = [[3, -7, 2, 0], [2, 7, -2, 0]]
WORKED_W_HAT = [[0.4288330078125, -1.0006103515625, 0.285888671875, 0.0], [1.0, 3.5, -1.0, 0.0]]
ASYM_W = [[-1.5, 0.0, 6.0, 3.0], [1.0, 2.0, 7.5, 0.5], [-7.5, -1.0, 0.0, -0.5]]
ASYM_CODES = [[0, 3, 15, 9], [2, 4, 15, 1], [0, 13, 15, 14]]


@check("choose_qparams", points=2)
def test_choose_qparams_worked_example_per_channel(lab):
    what = f"choose_qparams({WORKED_W}, bits=4)"
    scale, zero_point = _pair(lab.weight_quant.choose_qparams(T(WORKED_W), 4), what)
    _no_zero_point(zero_point, what)
    why = cause_of(
        scale,
        ([[0.125], [0.4375]], "that is amax / 8: divide by quant_max = 7 (the restricted range), not 2^(b-1)"),
        ([[0.142822265625], [0.5]], "1/7 was rounded to the NEAREST float16, which is below 1/7: round up with round_up_to"),
        ([[0.0714111328125], [0.5]], "row 0's amax is 1.0 (from -1.0): take max |w|, not max w"),
    )
    assert_tensor_equal(scale, T(WORKED_SCALE, dtype=F16), f"{what}'s scale",
                        why or _wrong_axis(scale, 4) or "scale = amax / 7 per output row (amax 1.0 and 3.5), stored in float16 rounded up (round_up_to)")


@check("choose_qparams", points=1)
def test_scale_is_rounded_up_to_float16(lab):
    what = "choose_qparams([[1.0, -0.5]], bits=8)"
    scale, _ = _pair(lab.weight_quant.choose_qparams(T([[1.0, -0.5]]), 8), what)
    why = cause_of(
        scale,
        ([[0.00787353515625]], "0.00787353515625 is the NEAREST float16 to 1/127, which is smaller, so 1.0 / scale > 127 would clip: use round_up_to(scale, scale_dtype)"),
        ([[0.0078125]], "0.0078125 is 1/128: divide by quant_max = 127, not 128"),
    ) or "1/127 = 0.0078740157 rounded UP to float16 is 0.00788116455078125"
    assert_tensor_equal(scale, T([[0.00788116455078125]], dtype=F16), f"{what}'s scale", why)


@check("choose_qparams", points=2)
@pytest.mark.parametrize("symmetric", [True, False])
def test_scale_shapes_per_granularity(lab, rng, seed, symmetric):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    for _ in range(5):
        out_features, group_size = rng.randint(2, 24), rng.choice([8, 16, 32])
        in_features = group_size * rng.randint(2, 6)
        w = random_weight(gen, out_features, in_features)
        expected = {
            "PER_TENSOR": (wq.PER_TENSOR, (1, 1), "one for the whole weight"),
            "None (per-channel)": (None, (out_features, 1), "one per output row: reduce over in (dim 1)"),
            f"{group_size} (per-group)": (group_size, (out_features, in_features // group_size), "one per group of inputs in each row: groups run along in"),
        }
        for name, (gs, shape, meaning) in expected.items():
            what = f"choose_qparams(w of shape ({out_features}, {in_features}), bits=4, group_size={name}, symmetric={symmetric})"
            scale, zero_point = _pair(wq.choose_qparams(w, 4, gs, symmetric), what)
            assert_layout(scale, shape, F16, f"{what}'s scale", (gs is None and _wrong_axis(scale, in_features)) or meaning)
            if symmetric:
                _no_zero_point(zero_point, what)
            else:
                assert_layout(zero_point, shape, F16, f"{what}'s zero_point", "one zero point per scale, stored in scale_dtype like the scale")


def _within_rounding_up(scale: torch.Tensor, ideal: torch.Tensor, what: str, hint: str) -> None:
    """The float16 ``scale`` (layout already checked) must be the float32 ``ideal`` rounded up: at
    least it, and less than one float16 step (2^-10 relative) above it."""
    got = scale.float()
    ok = (got >= ideal) & (got <= ideal * (1 + 2.0**-10))
    if not bool(ok.all()):
        index = tuple(int(i) for i in (~ok).nonzero()[0])
        below = "; below it, the largest weight of the group would clip (round up with round_up_to)" if got[index] < ideal[index] else ""
        pytest.fail(
            f"{what}{list(index)} is {got[index].item():.8g}, expected {hint} = {ideal[index].item():.8g} rounded up to float16 "
            f"(at most 2^-10 relative above it){below}. {int((~ok).sum())} of {ok.numel()} scales are off",
            pytrace=False,
        )


@check("choose_qparams", points=2)
@pytest.mark.parametrize("bits", [8, 4])
def test_per_channel_scale_follows_each_output_row(lab, seed, bits):
    wq = lab.weight_quant
    quant_max = 2 ** (bits - 1) - 1
    w = random_weight(torch_generator(seed), 24, 40, std=1.0)  # rows differ in magnitude; not square, so the axis shows
    what = f"{bits}-bit per-channel choose_qparams of a (24, 40) weight"
    scale, _ = _pair(wq.choose_qparams(w, bits), what)
    assert_layout(scale, (24, 1), F16, f"{what}: scale", _wrong_axis(scale, 40) or "one scale per output row of the [out, in] weight")
    ideal = w.abs().amax(dim=1, keepdim=True) / quant_max  # (24, 1), float32
    _within_rounding_up(scale, ideal, f"{what}: scale", f"amax / {quant_max} of each output row (reduce |w| over in, dim 1)")


GROUP_W = [[7.0, -1.0, 2.0, 0.5, 0.875, -0.25, 0.5, 0.125], [-3.5, 1.0, 0.5, 2.0, 3.0, -14.0, 7.0, 1.0]]
GROUP_SCALE = [[1.0, 0.125], [0.5, 2.0]]  # amax 7, 0.875, 3.5, 14 over 7: exact in float16
GROUP_ASYM_W = [[0.0, 3.75, 1.0, 2.0, -1.5, 0.0, 6.0, 3.0], [-7.5, -1.0, 0.0, -0.5, 1.0, 2.0, 15.0, 0.5]]
GROUP_ASYM = ([[0.25, 0.5], [0.5, 1.0]], [[0.0, 3.0], [15.0, 0.0]])  # (max_pos - min_neg) / 15, -round(min_neg / scale)


@check("choose_qparams", points=2)
def test_groups_run_along_in_features(lab):
    wq = lab.weight_quant
    what = f"choose_qparams({GROUP_W}, bits=4, group_size=4)"
    scale, zero_point = _pair(wq.choose_qparams(T(GROUP_W), 4, 4), what)
    _no_zero_point(zero_point, what)
    assert_tensor_equal(scale, T(GROUP_SCALE, dtype=F16), f"{what}'s scale",
                        "group j of row r is w[r, 4j:4j+4], four consecutive inputs of one output row (amax 7, 0.875 | 3.5, 14, over 7); "
                        "reshape to (out, in // g, g) and reduce the last dim, never across rows")
    what = f"choose_qparams({GROUP_ASYM_W}, bits=4, group_size=4, symmetric=False)"
    scale, zero_point = _pair(wq.choose_qparams(T(GROUP_ASYM_W), 4, 4, False), what)
    assert_tensor_equal(scale, T(GROUP_ASYM[0], dtype=F16), f"{what}'s scale", "(max(max w, 0) - min(min w, 0)) / 15 for each group of 4 consecutive inputs")
    assert_tensor_equal(zero_point, T(GROUP_ASYM[1], dtype=F16), f"{what}'s zero_point", "-round(min_neg / scale) for each group: 0, 3 | 15, 0")


@check("choose_qparams", points=1)
@pytest.mark.parametrize("symmetric", [True, False])
def test_group_scales_follow_each_group(lab, seed, symmetric):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 12, 96, std=1.0)
    what = f"{'symmetric' if symmetric else 'asymmetric'} 4-bit choose_qparams of a (12, 96) weight, group_size=32"
    scale, zero_point = _pair(wq.choose_qparams(w, 4, 32, symmetric), what)
    assert_layout(scale, (12, 3), F16, f"{what}: scale", "one scale per group of 32 inputs in each row: (out, in // 32)")
    groups = w.reshape(12, 3, 32)  # group j of row r = w[r, 32j:32j+32]
    if symmetric:
        ideal, hint = groups.abs().amax(-1) / 7, "amax / 7 of each group of 32 consecutive inputs of a row"
    else:
        ideal = (groups.amax(-1).clamp(min=0) - groups.amin(-1).clamp(max=0)) / 15
        hint = "(max(max w, 0) - min(min w, 0)) / 15 of each group of 32 consecutive inputs of a row"
    _within_rounding_up(scale, ideal, f"{what}: scale", hint)


@check("choose_qparams", points=2)
def test_asymmetric_worked_example(lab):
    what = f"choose_qparams({ASYM_W}, bits=4, symmetric=False)"
    scale, zero_point = _pair(lab.weight_quant.choose_qparams(T(ASYM_W), 4, None, symmetric=False), what)
    assert_tensor_equal(scale, T([[0.5], [0.5], [0.5]], dtype=F16), f"{what}'s scale",
                        "(max(max w, 0) - min(min w, 0)) / 15: the range always includes 0 (row 1 is all >= 0, row 2 all <= 0)")
    if zero_point is None:
        pytest.fail(f"{what} returned zero_point=None; an asymmetric scheme has one zero point per scale", pytrace=False)
    why = cause_of(zero_point, ([[-3.0], [0.0], [-15.0]], "the sign is flipped: zero_point = quant_min - round(min_neg / scale)"))
    assert_tensor_equal(zero_point, T([[3.0], [0.0], [15.0]], dtype=F16), f"{what}'s zero_point",
                        why or "zero_point = quant_min - round(min_neg / scale) = 0 - round(-1.5 / 0.5) = 3 for row 0, the code that "
                        "dequantizes to exactly 0.0, stored in scale_dtype (float16) like the scale")


@check("choose_qparams", points=2)
def test_zero_point_comes_from_the_stored_scale(lab):
    what = f"choose_qparams({[F16_ZERO_POINT_W]}, bits=8, symmetric=False)"
    scale, zero_point = _pair(lab.weight_quant.choose_qparams(T([F16_ZERO_POINT_W]), 8, None, symmetric=False), what)
    assert_tensor_equal(scale, T([[0.006866455078125]], dtype=F16), f"{what}'s scale", "1.75 / 255 = 0.0068627 rounded up to float16")
    why = cause_of(zero_point, ([[219.0]], "219 is -round(-1.5 / (1.75 / 255)), from the float32 scale before it was stored. "
                                          "Compute the zero point from the stored float16 scale: -round(-1.5 / 0.006866455078125) = -round(-218.45) = 218"))
    assert_tensor_equal(zero_point, T([[218.0]], dtype=F16), f"{what}'s zero_point",
                        why or "zero_point = -round(min_neg / stored scale) = -round(-1.5 / 0.006866455078125) = 218")


@check("choose_qparams", points=1)
@pytest.mark.parametrize(("scale_dtype", "tiny"), [("float16", 2.0**-14), ("bfloat16", 2.0**-126), ("float32", 2.0**-126)])
def test_all_zero_weight_gets_the_eps_scale(lab, scale_dtype, tiny):
    wq = lab.weight_quant
    dtype = getattr(torch, scale_dtype)
    for symmetric in (True, False):
        what = f"choose_qparams(zeros(3, 8), bits=8, group_size=4, symmetric={symmetric}, scale_dtype=torch.{scale_dtype})"
        scale, zero_point = _pair(wq.choose_qparams(torch.zeros(3, 8), 8, 4, symmetric, dtype), what)
        assert_tensor_equal(scale, torch.full((3, 2), tiny, dtype=dtype), f"{what}'s scale",
                            f"an all-zero group gets the eps floor torch.finfo(torch.{scale_dtype}).tiny = {tiny!r}: a scale of 0 makes 0 / 0 = NaN codes")
        if symmetric:
            _no_zero_point(zero_point, what)
        else:
            assert_tensor_equal(zero_point, torch.zeros(3, 2, dtype=dtype), f"{what}'s zero_point", "an all-zero group has min_neg = 0, so zero_point = 0")


@check("choose_qparams", points=1)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_are_computed_in_float32(lab, seed, dtype):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 16, 64, getattr(torch, dtype))
    for symmetric in (True, False):
        what = f"choose_qparams(a {dtype} weight, bits=4, group_size=16, symmetric={symmetric})"
        scale, zero_point = _pair(wq.choose_qparams(w, 4, 16, symmetric), what)
        scale32, zero32 = _pair(wq.choose_qparams(w.float(), 4, 16, symmetric), f"choose_qparams(the same weight in float32, symmetric={symmetric})")
        why = "convert w to float32 first and do every step in float32; scales are stored in scale_dtype (float16 by default) whatever w's dtype"
        assert_tensor_equal(scale, scale32, f"{what}'s scale (compared with the float32 weight's)", why)
        if not symmetric:
            assert_tensor_equal(zero_point, zero32, f"{what}'s zero_point (compared with the float32 weight's)", why)


@check("choose_qparams", points=2)
@pytest.mark.parametrize(
    ("case", "spoil", "kwargs", "mention"),
    [
        ("NaN in w", "nan", {}, ("nan",)),
        ("-Inf in w", "inf", {}, ("inf",)),
        ("group_size=100 with in_features=48", None, {"group_size": 100}, (100, 48)),
        ("group_size=36 with in_features=48", None, {"group_size": 36}, (36, 48)),
        ("group_size=0", None, {"group_size": 0}, (0,)),
        ("group_size=-2", None, {"group_size": -2}, (-2,)),
        ("group_size=True (a bool, not an int)", None, {"group_size": True}, (True,)),
        ("group_size=16.0 (a float)", None, {"group_size": 16.0}, (16.0,)),
        ("bits=9", None, {"bits": 9}, (9,)),
        ("bits=1", None, {"bits": 1}, (1,)),
        ("bits=True (a bool, not an int)", None, {"bits": True}, (True,)),
        ("scale_dtype=torch.float64", None, {"scale_dtype": torch.float64}, ("float64",)),
        ("a 1-D w", "1d", {}, ((48,),)),
        ("an empty (0, 48) w", "empty", {}, ((0, 48),)),
        ("a 3-D w", "3d", {}, ((1, 4, 48),)),
        ("an int32 w", "int32", {}, ("int32",)),
        ("a scale beyond float16 (amax 1e8)", "huge", {}, ("65504",)),
    ],
)
def test_choose_qparams_rejects_bad_input(lab, case, spoil, kwargs, mention):
    wq = lab.weight_quant
    expect_correct(wq.choose_qparams, T(WORKED_W), 4, expected=(T(WORKED_SCALE, dtype=F16), None), what=f"choose_qparams({WORKED_W}, 4)")
    w = torch.randn(4, 48, generator=torch_generator(3))
    if spoil == "nan":
        w[2, 7] = float("nan")
    elif spoil == "inf":
        w[1, 3] = float("-inf")
    elif spoil == "1d":
        w = w[0]
    elif spoil == "empty":
        w = torch.zeros(0, 48)
    elif spoil == "3d":
        w = w[None]
    elif spoil == "int32":
        w = (w * 10).to(torch.int32)
    elif spoil == "huge":
        w = (w * 1e8).to(torch.bfloat16)
    call = dict(bits=8, group_size=None, symmetric=True)
    call.update(kwargs)
    expect_value_error(wq.choose_qparams, w, what=f"choose_qparams with {case}", must_mention=mention, **call)


@check("choose_qparams", points=1)
def test_huge_weights_fit_float32_scales(lab):
    what = "choose_qparams([[1e8, -3e7], [2.0, 1.0]] in bfloat16, bits=8, scale_dtype=torch.float32)"
    w = T([[1e8, -3e7], [2.0, 1.0]], dtype=torch.bfloat16)
    scale, _ = _pair(lab.weight_quant.choose_qparams(w, 8, None, True, torch.float32), what)
    ideal = w.float().abs().amax(dim=1, keepdim=True) / 127
    assert_tensor_equal(scale, ideal, f"{what}'s scale", "float32 holds amax / 127 of a weight near 1e8 as it is; only float16 (max 65504) cannot")


# --- quantize --------------------------------------------------------------------------------


@check("quantize", points=2)
def test_quantize_rounds_half_to_even(lab):
    w = T([[1.25, -1.25, 0.75, 63.5, 0.25, -0.75, 2.25, -63.5]])  # with scale 0.5: 2.5, -2.5, 1.5, 127, 0.5, -1.5, 4.5, -127
    codes = lab.weight_quant.quantize(w, T([[0.5]], dtype=F16), None, 8)
    why = cause_of(codes, ([[3, -3, 2, 127, 1, -2, 5, -127]], "those are ties rounded AWAY from zero (floor(x + 0.5) or C's roundf); torch.round sends ties to the even neighbour"))
    assert_tensor_equal(codes, T([[2, -2, 2, 127, 0, -2, 4, -127]], dtype=torch.int8),
                        "int8 codes of w / 0.5 = [2.5, -2.5, 1.5, 127, 0.5, -1.5, 4.5, -127]",
                        why or "torch.round rounds ties to the even neighbour (2.5 -> 2, 1.5 -> 2, 0.5 -> 0); symmetric codes are torch.int8")


@check("quantize", points=2)
def test_quantize_divides_by_the_scale(lab):
    codes = lab.weight_quant.quantize(T([RECIPROCAL_W]), T([[RECIPROCAL_SCALE]], dtype=F16), None, 8)
    why = cause_of(
        codes,
        ([[10, 15, -15, 127]], "those are the codes of w * (1 / scale): 1 / scale is rounded to float32 first, and the product lands on or past "
                              "the tie (9.5 instead of 9.499999, 14.5000005 instead of 14.5). Divide: w / scale"),
        ([[9, 15, -15, 127]], "14.5 and -14.5 are exact ties: torch.round sends them to the even neighbour 14 and -14, not away from zero"),
    )
    assert_tensor_equal(codes, T([[9, 14, -14, 127]], dtype=torch.int8),
                        f"int8 codes of {RECIPROCAL_W} with scale {RECIPROCAL_SCALE} (the float16 nearest 0.1)",
                        why or "w / scale in float32 is [9.499999, 14.5, -14.5, 127], then torch.round (half to even)")


@check("quantize", points=1)
def test_quantize_clamps_to_the_code_range(lab):
    wq = lab.weight_quant
    codes = wq.quantize(T([[10.0, -10.0, 3.0]]), T([[0.5]]), None, 4)
    assert_tensor_equal(codes, T([[7, -7, 6]], dtype=torch.int8), "4-bit symmetric codes of [10, -10, 3] / 0.5", "clamp to quant_range(4) = (-7, 7)")
    codes = wq.quantize(T([[10.0, -10.0, 3.0]]), T([[0.5]]), T([[3.0]]), 4)
    why = cause_of(codes, ([[18, 3, 9]], "the codes were clamped before the zero point was added: add it first, then clamp to (0, 15)"))
    assert_tensor_equal(codes, T([[15, 0, 9]], dtype=torch.uint8), "4-bit asymmetric codes of [10, -10, 3] / 0.5 + 3",
                        why or "add the zero point, then clamp to (0, 15); asymmetric codes are torch.uint8 (0..255 does not fit int8)")


@check("quantize", points=2)
def test_quantize_asymmetric_worked_example(lab):
    scale, zero_point = T([[0.5], [0.5], [0.5]], dtype=F16), T([[3.0], [0.0], [15.0]], dtype=F16)
    codes = lab.weight_quant.quantize(T(ASYM_W), scale, zero_point, 4)
    why = cause_of(codes, ([[0, 0, 12, 6], [2, 4, 15, 1], [0, 0, 0, 0]], "the zero point was not added: round(w / scale) + zero_point"))
    assert_tensor_equal(codes, T(ASYM_CODES, dtype=torch.uint8), f"asymmetric 4-bit codes of {ASYM_W} (scale 0.5, zero points 3, 0, 15)",
                        why or "round(w / scale) + zero_point, clamped to (0, 15); 0.0 lands exactly on the zero point")


@check("quantize", points=1)
def test_quantize_per_group_uses_each_groups_scale(lab):
    w = T([[1.0, 2.0, 10.0, 20.0], [-1.0, 0.5, 4.0, -4.0]])
    scale = T([[0.25, 2.5], [0.125, 1.0]])  # (out, in // 2): group 0 = inputs 0-1, group 1 = inputs 2-3
    codes = lab.weight_quant.quantize(w, scale, None, 8)
    assert_tensor_equal(codes, T([[4, 8, 4, 8], [-8, 4, 4, -4]], dtype=torch.int8), "per-group codes (scale [[0.25, 2.5], [0.125, 1.0]], groups of 2 along in)",
                        "column j of a (out, in // g) scale covers inputs j·g ... (j+1)·g - 1 of its row (broadcast_qparam does this)")


@check("quantize", points=1)
@pytest.mark.parametrize(
    ("case", "scale", "zero_point", "bits", "mention"),
    [
        ("a (1, 10) scale, one per input column", torch.ones(1, 10), None, 8, ((1, 10), (6, 10))),
        ("a (6, 1) scale with a (1, 6) zero point", torch.ones(6, 1), torch.zeros(1, 6), 8, ((1, 6), (6, 10))),
        ("bits=9", torch.ones(6, 1), None, 9, (9,)),
        ("bits=True (a bool, not an int)", torch.ones(6, 1), None, True, (True,)),
    ],
)
def test_quantize_rejects_bad_input(lab, case, scale, zero_point, bits, mention):
    wq = lab.weight_quant
    expect_correct(wq.quantize, T([[1.25, -1.25, 0.75, 63.5]]), T([[0.5]], dtype=F16), None, 8,
                   expected=T([[2, -2, 2, 127]], dtype=torch.int8), what="quantize([[1.25, -1.25, 0.75, 63.5]], scale 0.5, None, 8)")
    w = torch.randn(6, 10, generator=torch_generator(1))
    expect_value_error(wq.quantize, w, scale, zero_point, bits, what=f"quantize(w of shape (6, 10), {case})", must_mention=mention)


# --- dequantize ------------------------------------------------------------------------------


@check("dequantize", points=2)
def test_dequantize_worked_examples(lab):
    wq = lab.weight_quant
    got = wq.dequantize(T([[0, 3, 15, 9]], dtype=torch.uint8), T([[0.5]], dtype=F16), T([[3.0]], dtype=F16))
    why = cause_of(got, ([[0.0, 1.5, 7.5, 4.5]], "the zero point was not subtracted: (qdata - zero_point) × scale"),
                       ([[-3.0, -1.5, 4.5, 1.5]], "the zero point was subtracted after scaling: (qdata - zero_point) × scale, not qdata × scale - zero_point"))
    assert_tensor_equal(got, T([[-1.5, 0.0, 6.0, 3.0]]), "dequantize(codes [[0, 3, 15, 9]], scale 0.5, zero_point 3)",
                        why or "(qdata - zero_point) × scale in float32: the code equal to the zero point is exactly 0.0")
    got = wq.dequantize(T(WORKED_CODES, dtype=torch.int8), T(WORKED_SCALE, dtype=F16), None)
    assert_tensor_equal(got, T(WORKED_W_HAT), f"dequantize({WORKED_CODES}, scale {WORKED_SCALE}, None)", "qdata × scale in float32, one scale per output row")


@check("dequantize", points=1)
def test_dequantize_per_group(lab):
    codes = T([[4, 8, 4, 8], [-8, 4, 4, -4]], dtype=torch.int8)
    got = lab.weight_quant.dequantize(codes, T([[0.25, 2.5], [0.125, 1.0]]), None)
    assert_tensor_equal(got, T([[1.0, 2.0, 10.0, 20.0], [-1.0, 0.5, 4.0, -4.0]]), "per-group dequantize (scale [[0.25, 2.5], [0.125, 1.0]], groups of 2 along in)",
                        "column j of the scale covers inputs 2j and 2j + 1 of its row")


# --- pack_int4 / unpack_int4 -----------------------------------------------------------------


@check("pack_int4", points=2)
def test_pack_int4_worked_bytes(lab):
    wq = lab.weight_quant
    packed = wq.pack_int4(T([[-7, 3, 0, 7]], dtype=torch.int8))
    why = cause_of(packed, ([[147, 7]], "the nibbles are swapped: element 2j goes in the LOW nibble, 2j + 1 in the HIGH nibble"),
                          ([[49, 120]], "the codes were offset by +8; int8 codes are stored as 4-bit two's complement (-7 -> 0b1001 = 9)"))
    assert_tensor_equal(packed, T([[57, 112]], dtype=torch.uint8), "pack_int4([[-7, 3, 0, 7]] as int8)",
                        why or "[0x39, 0x70]: element 2j in the LOW nibble, 2j+1 in the HIGH nibble, -7 as 4-bit two's complement 0b1001 = 9")
    packed = wq.pack_int4(T([[1, 2, 15, 0], [8, 9, 10, 11]], dtype=torch.uint8))
    assert_tensor_equal(packed, T([[33, 15], [152, 186]], dtype=torch.uint8), "pack_int4([[1, 2, 15, 0], [8, 9, 10, 11]] as uint8)", "0x21, 0x0F, 0x98, 0xBA")


@check("pack_int4", points=1)
def test_pack_int4_keeps_leading_dimensions(lab):
    codes = T([[[-8, 7], [1, -1]], [[0, 0], [7, -8]]], dtype=torch.int8)  # (2, 2, 2)
    assert_tensor_equal(lab.weight_quant.pack_int4(codes), T([[[120], [241]], [[0], [135]]], dtype=torch.uint8),
                        "pack_int4 of int8 codes of shape (2, 2, 2)", "(..., n) -> (..., n // 2): pairs along the last dimension only")


@check("unpack_int4", points=1)
def test_unpack_int4_worked(lab):
    wq = lab.weight_quant
    got = wq.unpack_int4(T([[57, 112]], dtype=torch.uint8))
    why = cause_of(got, ([[3, -7, 7, 0]], "high nibble first: element 2j comes from the LOW nibble"),
                       ([[9, 3, 0, 7]], "nibbles 8..15 are negative codes when signed: subtract 16 (9 -> -7)"))
    assert_tensor_equal(got, T([[-7, 3, 0, 7]], dtype=torch.int8), "unpack_int4([[57, 112]])", why or "low nibble first, sign-extend 8..15; torch.int8")
    got = wq.unpack_int4(T([[57, 112]], dtype=torch.uint8), signed=False)
    assert_tensor_equal(got, T([[9, 3, 0, 7]], dtype=torch.uint8), "unpack_int4([[57, 112]], signed=False)", "unsigned codes 0..15 as torch.uint8")


def _every_byte() -> tuple[list[int], list[int], list[int]]:
    """All 256 bytes with their two nibbles: ``(bytes, low nibbles, high nibbles)``, from Python integers."""
    values = list(range(256))
    return values, [b & 0xF for b in values], [b >> 4 for b in values]


@check("pack_int4", points=2)
@pytest.mark.parametrize("signed", [True, False])
def test_pack_int4_every_pair_of_codes(lab, signed):
    values, low, high = _every_byte()
    as_code = (lambda n: n - 16 if n >= 8 else n) if signed else (lambda n: n)
    codes = [c for b in values for c in (as_code(low[b]), as_code(high[b]))]  # element 2j in byte j's low nibble
    dtype = torch.int8 if signed else torch.uint8
    assert_tensor_equal(lab.weight_quant.pack_int4(T([codes, codes[::-1]], dtype=dtype)), T([values, [((b & 0xF) << 4) | (b >> 4) for b in values[::-1]]], dtype=torch.uint8),
                        f"pack_int4 of all 256 pairs of {dtype} codes, shape (2, 512)",
                        "byte j = (code[2j] & 0xF) | (code[2j+1] & 0xF) << 4, negative codes as 4-bit two's complement")


@check("unpack_int4", points=2)
@pytest.mark.parametrize("signed", [True, False])
def test_unpack_int4_every_byte(lab, signed):
    values, low, high = _every_byte()
    as_code = (lambda n: n - 16 if n >= 8 else n) if signed else (lambda n: n)
    expected = [c for b in values for c in (as_code(low[b]), as_code(high[b]))]
    packed = T(values, dtype=torch.uint8).reshape(2, 8, 16)  # leading dimensions are kept
    assert_tensor_equal(lab.weight_quant.unpack_int4(packed, signed=signed), T(expected, dtype=torch.int8 if signed else torch.uint8).reshape(2, 8, 32),
                        f"unpack_int4 of all 256 bytes, shape (2, 8, 16), signed={signed}",
                        "element 2j = low nibble of byte j, 2j + 1 = high nibble; signed: nibbles 8..15 are -8..-1 (torch.int8), else 0..15 (torch.uint8)")


@check("pack_int4", points=1)
@pytest.mark.parametrize(
    ("codes", "mention", "what"),
    [
        (([[1, 2, 3, 4, 5]], torch.int8), (5,), "5 codes in a row"),
        (([[8, 0]], torch.int8), (8,), "int8 code 8 (beyond [-8, 7])"),
        (([[-9, 0]], torch.int8), (-9,), "int8 code -9"),
        (([[16, 0]], torch.uint8), (16,), "uint8 code 16 (beyond [0, 15])"),
        (([[1, 2]], torch.int32), ("int32",), "torch.int32 codes"),
        (([[True, False]], torch.bool), ("bool",), "torch.bool codes"),
    ],
)
def test_pack_int4_rejects_bad_codes(lab, codes, mention, what):
    wq = lab.weight_quant
    expect_correct(wq.pack_int4, T([[-7, 3, 0, 7]], dtype=torch.int8), expected=T([[57, 112]], dtype=torch.uint8), what="pack_int4([[-7, 3, 0, 7]] as int8)")
    expect_value_error(wq.pack_int4, T(*codes[:1], dtype=codes[1]), what=f"pack_int4 with {what}", must_mention=mention)


@check("unpack_int4", points=1)
@pytest.mark.parametrize("dtype", ["int8", "int32", "float32"])
def test_unpack_int4_rejects_non_bytes(lab, dtype):
    wq = lab.weight_quant
    expect_correct(wq.unpack_int4, T([[57, 112]], dtype=torch.uint8), expected=T([[-7, 3, 0, 7]], dtype=torch.int8), what="unpack_int4([[57, 112]])")
    expect_value_error(wq.unpack_int4, T([[57, 112]], dtype=getattr(torch, dtype)), what=f"unpack_int4 of torch.{dtype} values", must_mention=(dtype,))


# --- QuantizedWeight.nbytes ------------------------------------------------------------------

NBYTES = [
    # (shape, bits, qdata dtype, scale shape, scale dtype, zero point?, expected bytes, story)
    ((256, 1024), 4, torch.int8, (256, 8), F16, False, 256 * 512 + 256 * 8 * 2, "int4 g128: codes packed, half a byte each, + fp16 scales -> 4.125 bits"),
    ((256, 1024), 4, torch.uint8, (256, 8), F16, True, 256 * 512 + 256 * 8 * 4, "int4 g128 asymmetric: + fp16 zero points -> 4.25 bits"),
    ((256, 1024), 4, torch.int8, (256, 8), torch.float32, False, 256 * 512 + 256 * 8 * 4, "int4 g128 with fp32 scales -> 4.25 bits"),
    ((256, 1024), 8, torch.int8, (256, 1), F16, False, 256 * 1024 + 256 * 2, "int8 per-channel: 8 + 16/1024 bits"),
    ((256, 1024), 8, torch.uint8, (1, 1), torch.bfloat16, True, 256 * 1024 + 4, "uint8 per-tensor, bf16 scale and zero point"),
    ((256, 1024), 3, torch.int8, (256, 16), F16, False, 256 * 1024 + 256 * 16 * 2, "3-bit g64: codes are not packed, one byte each -> 8.25 bits"),
    ((3, 5), 4, torch.int8, (3, 1), F16, False, 3 * 3 + 3 * 2, "int4 rows of 5 codes: 3 bytes per row (the last byte half padding) + fp16 scales"),
    ((3, 5), 4, torch.uint8, (1, 1), F16, True, 3 * 3 + 2 + 2, "uint4 rows of 5 codes per-tensor: 3 bytes per row + one fp16 scale and zero point"),
    ((1, 1), 4, torch.int8, (1, 1), torch.float32, False, 1 + 4, "a single int4 code takes a whole byte + one fp32 scale"),
    ((2, 7), 4, torch.int8, (2, 1), F16, False, 2 * 4 + 2 * 2, "int4 rows of 7 codes: 4 bytes per row + fp16 scales"),
]


@check("QuantizedWeight", points=3)
@pytest.mark.parametrize(("shape", "bits", "qdtype", "scale_shape", "scale_dtype", "has_zero", "expected", "story"), NBYTES)
def test_nbytes_counts_what_is_stored(lab, shape, bits, qdtype, scale_shape, scale_dtype, has_zero, expected, story):
    wq = lab.weight_quant
    out_features, in_features = shape
    scale = torch.ones(scale_shape, dtype=scale_dtype)
    qw = wq.QuantizedWeight(
        qdata=torch.zeros(shape, dtype=qdtype), scale=scale, zero_point=torch.zeros_like(scale) if has_zero else None,
        bits=bits, group_size=None if scale_shape[1] == 1 else in_features // scale_shape[1],
    )
    nbytes = qw.nbytes
    params = scale.numel() * scale.element_size() * (2 if has_zero else 1)
    why = story
    if bits == 4 and in_features % 2 and type(nbytes) is int:
        why = {
            out_features * (in_features // 2) + params: "odd rows were rounded down: each row is packed on its own and an odd row ends in half a byte of padding, out × ceil(in / 2)",
            (out_features * in_features + 1) // 2 + params: "the codes were packed as one stream across rows: each row is packed on its own, out × ceil(in / 2)",
        }.get(nbytes, story)
    assert_exact(nbytes, expected, f"QuantizedWeight.nbytes of a {shape} weight", f"{why}. Byte counts are int")
    assert_exact(qw.bits_per_weight, 8 * expected / (out_features * in_features), f"QuantizedWeight.bits_per_weight of a {shape} weight", "8 × nbytes / weights")


# --- quantize_weight / dequantize_weight -----------------------------------------------------


def _layout(qw, what: str, shape: tuple[int, int], bits: int, group_size, symmetric: bool, scale_dtype) -> None:
    """``qw``'s fields must have the documented types, dtypes and shapes before any value is compared."""
    out_features, in_features = shape
    assert_exact(qw.bits, bits, f"{what}.bits")
    assert_exact(qw.group_size, group_size, f"{what}.group_size", "as given: None, PER_TENSOR (-1) or g")
    scale_shape = {None: (out_features, 1), -1: (1, 1)}.get(group_size, (out_features, in_features // (group_size or 1)))
    assert_layout(qw.qdata, shape, torch.int8 if symmetric else torch.uint8, f"{what}.qdata",
                   "one code per weight: torch.int8 when symmetric, torch.uint8 when asymmetric")
    assert_layout(qw.scale, scale_shape, scale_dtype, f"{what}.scale", "one per tensor (1, 1), per row (out, 1) or per group (out, in // g), in scale_dtype")
    if symmetric:
        _no_zero_point(qw.zero_point, what)
    else:
        assert_layout(qw.zero_point, scale_shape, scale_dtype, f"{what}.zero_point", "same shape and dtype as the scale")


@check("quantize_weight", points=2)
def test_quantize_weight_worked_example(lab):
    what = f"quantize_weight({WORKED_W}, 4)"
    qw = lab.weight_quant.quantize_weight(T(WORKED_W), 4)
    assert_exact(qw.bits, 4, f"{what}.bits")
    assert_exact(qw.group_size, None, f"{what}.group_size")
    _no_zero_point(qw.zero_point, what)
    assert_tensor_equal(qw.scale, T(WORKED_SCALE, dtype=F16), f"{what}.scale", "amax / 7 per output row, rounded up to float16")
    why = cause_of(qw.qdata, ([[3, -7, 2, 0], [3, 7, -3, 0]], "row 1 divides by 0.5: 2.5 and -2.5 are ties and go to the even neighbours 2 and -2, not away from zero"))
    assert_tensor_equal(qw.qdata, T(WORKED_CODES, dtype=torch.int8), f"{what}.qdata",
                        why or "row 0 divides by the stored scale 0.1429443359375, row 1 by 0.5; ties (±2.5) go to the even neighbour")


@check("quantize_weight", points=2)
@pytest.mark.parametrize(
    ("bits", "group_size", "symmetric", "scale_dtype", "expected"),
    [(4, 128, True, "float16", 4.125), (4, 128, False, "float16", 4.25), (4, 128, True, "float32", 4.25), (8, None, True, "float16", 8 + 16 / 1024), (4, 32, True, "float16", 4.5)],
)
def test_quantize_weight_stores_the_documented_layout(lab, seed, bits, group_size, symmetric, scale_dtype, expected):
    w = torch.randn(32, 1024, generator=torch_generator(seed)) * 0.02
    dtype = getattr(torch, scale_dtype)
    what = f"quantize_weight(w (32, 1024), {bits}, group_size={group_size}, symmetric={symmetric}, scale_dtype=torch.{scale_dtype}) ({expected} bits per weight)"
    _layout(lab.weight_quant.quantize_weight(w, bits, group_size, symmetric, dtype), what, (32, 1024), bits, group_size, symmetric, dtype)


@check("quantize_weight", points=3)
def test_reconstruction_error_within_half_a_step(lab, rng, seed):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    for _ in range(30):
        case = random_case(rng)
        w = random_weight(gen, case["out_features"], case["in_features"], case["dtype"])
        what = f"quantize_weight({describe_case(case)})"
        qw = wq.quantize_weight(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        _layout(qw, what, tuple(w.shape), case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        step = expand_qparam(qw.scale, tuple(w.shape))  # (out, in): the scale of each element's group
        # Half a step, plus float32 slack (see STEP_SLACK); computed in float64 so that this check's own rounding adds nothing.
        assert_tensor_close(reconstruct(qw.qdata, qw.scale, qw.zero_point), w.double(), f"{what}: (qdata - zero_point) × scale",
                            atol=step * (0.5 + STEP_SLACK),
                            why=f"every element within half a step (scale / 2, + {STEP_SLACK:.1e} of a step for float32 rounding). Usual causes: a scale too "
                            "small (rounded down, or amax / 2^(b-1)), a forgotten zero point, or codes computed for one axis and scales for the other")


@check("quantize_weight", points=1)
def test_zero_and_constant_rows_round_trip(lab):
    wq = lab.weight_quant
    w = torch.zeros(4, 32)
    w[1] = 0.3
    w[2, :16] = -2.0  # group 0 constant, group 1 zero
    w[3] = torch.linspace(-1, 1, 32)
    for symmetric in (True, False):
        for group_size in (None, 16):
            what = f"quantize_weight(zero and constant rows, 8 bits, group_size={group_size}, symmetric={symmetric})"
            qw = wq.quantize_weight(w, 8, group_size, symmetric)
            _layout(qw, what, (4, 32), 8, group_size, symmetric, F16)
            w_hat = reconstruct(qw.qdata, qw.scale, qw.zero_point)
            zeros = torch.zeros(4, 32, dtype=torch.bool)
            zeros[0], zeros[2, 16:] = True, True
            assert_tensor_equal(w_hat[zeros], torch.zeros(int(zeros.sum()), dtype=torch.float64), f"{what}: dequantized all-zero row 0 and group w[2, 16:]",
                                "0.0 must be a code (the zero point), and the scale of an all-zero group must be the eps floor, never 0 (0 / 0 = NaN)")
            # Half a step of int8 is at most amax / 254; 1% covers the float16 rounding of the scale.
            assert_tensor_close(w_hat[1], torch.full((32,), 0.3, dtype=torch.float64), f"{what}: dequantized constant row 1 (0.3)",
                                atol=0.3 / 254 * 1.01, why="half an int8 step, amax / 254, + 1% for the float16 scale")


@check("quantize_weight", points=1)
def test_zero_is_exact_in_asymmetric_quantization(lab, seed):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 32, 64) + 0.1  # mostly positive rows, with exact zeros mixed in
    w[torch.rand(32, 64, generator=torch_generator(seed + 1)) < 0.2] = 0.0
    zeros = w == 0
    for group_size in (None, 16):
        what = f"quantize_weight(w (32, 64) with exact zeros, 4 bits, group_size={group_size}, symmetric=False)"
        qw = wq.quantize_weight(w, 4, group_size, symmetric=False)
        _layout(qw, what, (32, 64), 4, group_size, False, F16)
        zero_codes = expand_qparam(qw.zero_point, (32, 64))[zeros]
        assert_tensor_equal(qw.qdata.double()[zeros], zero_codes, f"{what}: codes of the {int(zeros.sum())} exact zeros",
                            "each must be its group's zero point, so that it dequantizes to exactly 0.0: include 0 in the range "
                            "(min(min w, 0), max(max w, 0)) and round the zero point to an integer")


@check("quantize_weight", points=1)
def test_group_size_equal_to_in_features_is_per_channel(lab, seed):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 8, 48)
    for symmetric in (True, False):
        a, b = wq.quantize_weight(w, 6, None, symmetric), wq.quantize_weight(w, 6, 48, symmetric)
        why = "group_size=in_features (one group per row) gives exactly the per-channel codes and scales"
        assert_tensor_equal(b.qdata, a.qdata, f"quantize_weight(w (8, 48), 6, group_size=48, symmetric={symmetric}).qdata (against group_size=None)", why)
        assert_tensor_equal(b.scale, a.scale, f"quantize_weight(w (8, 48), 6, group_size=48, symmetric={symmetric}).scale (against group_size=None)", why)


@check("quantize_weight", points=2)
@pytest.mark.parametrize("bits", [4, 8])
def test_finer_granularity_wins_on_outlier_weights(lab, seed, bits):
    wq = lab.weight_quant
    w = outlier_weight(torch_generator(seed))
    mse = {}
    for name, group_size in (("per-tensor", wq.PER_TENSOR), ("per-channel", None), ("group-32", 32)):
        qw = wq.quantize_weight(w, bits, group_size)
        _layout(qw, f"quantize_weight(outlier weight (64, 256), {bits}, group_size={group_size})", (64, 256), bits, group_size, True, F16)
        mse[name] = ((reconstruct(qw.qdata, qw.scale, None) - w.double()) ** 2).mean().item()
    assert mse["group-32"] < mse["per-channel"] < mse["per-tensor"], (
        f"int{bits} MSE on a weight with 2 outlier rows and 2 outlier input columns: {', '.join(f'{k} {v:.3e}' for k, v in mse.items())}; "
        "expected group-32 < per-channel < per-tensor: a scale shared by fewer values is stretched by fewer outliers"
    )


@check("dequantize_weight", points=1)
def test_dequantize_weight_worked_example(lab):
    wq = lab.weight_quant
    qw = wq.QuantizedWeight(T(WORKED_CODES, dtype=torch.int8), T(WORKED_SCALE, dtype=F16), None, 4, None)
    assert_tensor_equal(wq.dequantize_weight(qw), T(WORKED_W_HAT), f"dequantize_weight(codes {WORKED_CODES}, scale {WORKED_SCALE})", "qdata × scale in float32")
    scale, zero_point = T([[0.5], [0.5], [0.5]], dtype=F16), T([[3.0], [0.0], [15.0]], dtype=F16)
    qw = wq.QuantizedWeight(T(ASYM_CODES, dtype=torch.uint8), scale, zero_point, 4, None)
    assert_tensor_equal(wq.dequantize_weight(qw), T(ASYM_W), f"dequantize_weight(codes {ASYM_CODES}, scale 0.5, zero points 3, 0, 15)",
                        "(qdata - zero_point) × scale: every value is on the grid, so it comes back exactly")


# --- quant_error -----------------------------------------------------------------------------

SQNR_RELATIVE = 1e-12
"""Tolerance on a float64 SQNR: float64 paths (torch.log10, math.log10, a difference of two logs, a
ratio of means) agree to a few ulps, 1e-15 relative; float32 arithmetic is off by 1e-8 or more."""


def _sqnr_cause(actual: float, expected: float) -> str:
    """Why an SQNR of ``actual`` dB is not ``expected``, said only when the value shows it."""
    if abs(actual - 2 * expected) <= 1e-5 * abs(expected):
        return "that is 20·log10 of the power ratio: sum w² / sum err² is already a ratio of powers, so it is 10·log10"
    if abs(actual + expected) <= 1e-5 * abs(expected):
        return "that is 10·log10(noise / signal): the signal power goes on top"
    if abs(actual - expected) <= 1e-5 * abs(expected):
        return "the formula is right, but the arithmetic ran in float32: convert with .double() and sum in float64"
    return "sqnr_db = 10·log10(sum w² / sum (w - w_hat)²)"


def _error_fields(e, what: str) -> tuple[float, float, float]:
    """``(mse, max_abs, sqnr_db)``, each a Python float as documented."""
    fields = tuple(getattr(e, name, None) for name in ("mse", "max_abs", "sqnr_db"))
    for name, value in zip(("mse", "max_abs", "sqnr_db"), fields):
        if type(value) is not float:
            pytest.fail(f"{what}.{name} is {type(value).__name__} {summarize(value)}; quant_error returns Python floats (use .item())", pytrace=False)
    return fields


@check("quant_error", points=2)
def test_quant_error_worked_example(lab):
    what = "quant_error([1, -2, 3, 4], [1, -2, 3, 4.5])"
    mse, max_abs, sqnr_db = _error_fields(lab.weight_quant.quant_error(T([1.0, -2.0, 3.0, 4.0]), T([1.0, -2.0, 3.0, 4.5])), what)
    assert_exact(mse, 0.0625, f"{what}.mse", "mean of err² = 0.25 / 4")
    assert_exact(max_abs, 0.5, f"{what}.max_abs", "max |w - w_hat|: the error here is -0.5, so take the absolute value" if max_abs == 0.0 else "max |w - w_hat|")
    expected = 10 * math.log10(30 / 0.25)
    assert abs(sqnr_db - expected) <= SQNR_RELATIVE * expected, (
        f"{what}.sqnr_db is {sqnr_db!r}, expected 10·log10(30 / 0.25) = {expected!r} dB (within {SQNR_RELATIVE:g} relative: float64 arithmetic): "
        + _sqnr_cause(sqnr_db, expected)
    )


@check("quant_error", points=1)
def test_quant_error_runs_in_float64(lab):
    w, w_hat = T([0.1, -0.7, 0.3, 1.9, -2.3]), T([0.125, -0.6875, 0.25, 1.875, -2.3125])
    what = "quant_error(float32 [0.1, -0.7, 0.3, 1.9, -2.3], [0.125, -0.6875, 0.25, 1.875, -2.3125])"
    mse, max_abs, sqnr_db = _error_fields(lab.weight_quant.quant_error(w, w_hat), what)
    # The float32 inputs as float64 values, and the documented formulas in Python's float64 arithmetic.
    x, y = [float(v) for v in w], [float(v) for v in w_hat]
    errors = [a - b for a, b in zip(x, y)]
    expected_mse = sum(e * e for e in errors) / 5
    expected_sqnr = 10 * math.log10(sum(a * a for a in x) / sum(e * e for e in errors))
    float32 = "the formula is right, but the arithmetic ran in float32: convert with .double() first"
    assert abs(mse - expected_mse) <= 1e-12 * expected_mse, (
        f"{what}.mse is {mse!r}, expected {expected_mse!r} (within 1e-12 relative, float64): "
        + (float32 if abs(mse - expected_mse) <= 1e-5 * expected_mse else "mean((w - w_hat)²)")
    )
    assert_exact(max_abs, max(abs(e) for e in errors), f"{what}.max_abs", "max |w - w_hat| of the float32 inputs, subtracted in float64")
    assert abs(sqnr_db - expected_sqnr) <= SQNR_RELATIVE * expected_sqnr, (
        f"{what}.sqnr_db is {sqnr_db!r}, expected {expected_sqnr!r} (within {SQNR_RELATIVE:g} relative, float64): " + _sqnr_cause(sqnr_db, expected_sqnr)
    )


@check("quant_error", points=1)
def test_quant_error_edge_cases(lab):
    wq = lab.weight_quant
    what = "quant_error([[0.5, -1.0]], the same)"
    assert_exact(_error_fields(wq.quant_error(T([[0.5, -1.0]]), T([[0.5, -1.0]])), what), (0.0, 0.0, math.inf), f"{what} (mse, max_abs, sqnr_db)",
                 "zero error: no noise at all, so the SQNR is inf")
    what = "quant_error(zeros(2, 2), zeros(2, 2) in float16)"
    assert_exact(_error_fields(wq.quant_error(torch.zeros(2, 2), torch.zeros(2, 2, dtype=F16)), what)[2], math.inf, f"{what}.sqnr_db", "no noise at all")
    what = "quant_error(zeros(2), [0.5, 0.0])"
    assert_exact(_error_fields(wq.quant_error(torch.zeros(2), T([0.5, 0.0])), what)[2], -math.inf, f"{what}.sqnr_db", "no signal but some noise")


@check("quant_error", points=1)
def test_quant_error_rejects_different_shapes(lab):
    wq = lab.weight_quant
    what = "quant_error([1, -2, 3, 4], [1, -2, 3, 4.5])"
    fields = _error_fields(wq.quant_error(T([1.0, -2.0, 3.0, 4.0]), T([1.0, -2.0, 3.0, 4.5])), what)
    assert_exact(fields[:2], (0.0625, 0.5), f"{what} (mse, max_abs)")
    expect_value_error(wq.quant_error, torch.zeros(2, 3), torch.zeros(3, 2), what="quant_error(w of shape (2, 3), w_hat of shape (3, 2))", must_mention=((2, 3), (3, 2)))


# --- QuantizedLinear -------------------------------------------------------------------------

LINEARS = [(4, 32, True), (4, 16, False), (8, None, True), (6, -1, False), (3, 8, True)]


def _given_quantized_weight(wq, seed: int, bits: int, group_size, symmetric: bool):
    """A QuantizedWeight built from given random codes, float16 scales and zero points (no learner function)."""
    gen = torch_generator(seed)
    out_features, in_features = 24, 64
    scale_shape = {None: (out_features, 1), -1: (1, 1)}.get(group_size, (out_features, in_features // (group_size or 1)))
    scale = (torch.rand(scale_shape, generator=gen) * 0.01 + 1e-3).to(F16)
    if symmetric:
        limit = 2 ** (bits - 1) - 1
        codes, zero_point = torch.randint(-limit, limit + 1, (out_features, in_features), generator=gen).to(torch.int8), None
    else:
        codes = torch.randint(0, 2**bits, (out_features, in_features), generator=gen).to(torch.uint8)
        zero_point = torch.randint(0, 2**bits, scale_shape, generator=gen).to(F16)
    return wq.QuantizedWeight(codes, scale, zero_point, bits, group_size)


@check("QuantizedLinear", points=3)
@pytest.mark.parametrize(("bits", "group_size", "symmetric"), LINEARS)
def test_quantized_linear_stores_codes_and_scales_as_buffers(lab, seed, bits, group_size, symmetric):
    wq = lab.weight_quant
    qw = _given_quantized_weight(wq, seed, bits, group_size, symmetric)
    layer = wq.QuantizedLinear(qw)
    state = layer.state_dict()
    expected_keys = {"qdata", "scale"} | (set() if symmetric else {"zero_point"})
    assert set(state) == expected_keys, f"state_dict() keys are {sorted(state)[:8]}, expected {sorted(expected_keys)}: register the codes, the scale and (asymmetric only) the zero point as buffers"
    assert not list(layer.parameters()), "QuantizedLinear has trainable parameters; codes and scales are buffers (register_buffer), not nn.Parameter"
    if bits == 4:
        assert_layout(state["qdata"], (24, 32), torch.uint8, "the stored int4 codes (state_dict()['qdata'])", "pack_int4(qw.qdata): two codes per byte")
    else:
        assert_tensor_equal(state["qdata"], qw.qdata, "state_dict()['qdata']", f"{bits}-bit codes are stored as they are, one per byte")
    assert_tensor_equal(state["scale"], qw.scale, "state_dict()['scale']", "qw.scale as stored")
    if not symmetric:
        assert_tensor_equal(state["zero_point"], qw.zero_point, "state_dict()['zero_point']", "qw.zero_point as stored")
    code_bytes = 24 * 32 if bits == 4 else 24 * 64
    expected_bytes = code_bytes + stored_bytes([qw.scale] + ([] if symmetric else [qw.zero_point]))
    total = stored_bytes(state.values())
    assert total == expected_bytes, f"state_dict() holds {total:,} bytes, expected {expected_bytes:,} (int{bits}, group_size={group_size}): codes as stored + scales + zero points"
    assert_exact((layer.in_features, layer.out_features, layer.bits, layer.group_size), (64, 24, bits, group_size), "(in_features, out_features, bits, group_size)")


@check("QuantizedLinear", points=3)
@pytest.mark.parametrize(("bits", "group_size", "symmetric"), LINEARS)
def test_quantized_linear_forward_is_dequantize_then_linear(lab, seed, bits, group_size, symmetric):
    wq = lab.weight_quant
    qw = _given_quantized_weight(wq, seed, bits, group_size, symmetric)
    layer = wq.QuantizedLinear(qw)
    x = torch.randn(2, 5, 64, generator=torch_generator(seed + 1))
    w_hat = reconstruct(qw.qdata, qw.scale, qw.zero_point).float()  # exact: small integers times float16 scales
    expected = F.linear(x, w_hat)
    # A float32 dot product of length 64 is off by at most 64 × 2^-24 of sum |x|·|w| in any summation order.
    assert_tensor_close(layer(x), expected, "QuantizedLinear forward of x (2, 5, 64)", atol=64 * 2.0**-24 * F.linear(x.abs(), w_hat.abs()),
                        why="float32 rounding of a length-64 dot product, 64 × 2^-24 × sum |x|·|w|: unpack, dequantize with the stored scales "
                        "(and zero points), then F.linear")
    assert_layout(layer(x.to(torch.bfloat16)), (2, 5, 24), torch.bfloat16, "QuantizedLinear forward of a bfloat16 x (2, 5, 64)",
                   "compute in x.dtype: cast the dequantized weight to it")
