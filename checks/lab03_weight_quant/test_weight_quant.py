"""Public checks for Lab 03 — weight quantization.

Worked examples with exact codes, scales and bytes; properties on random weights (the half-step
error bound, shapes per granularity, round trips); the lab's usual mistakes turned into checks.
Read a failing check's message first: it names the quantity, the expected and actual values,
and what usually causes the difference.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from infralens.checking import expect_value_error
from lab03_inputs import STEP_SLACK, describe_case, outlier_weight, random_case, random_weight, stored_bytes, torch_generator

check = pytest.mark.check
T = torch.tensor
F16_TINY = 2.0**-14  # torch.finfo(torch.float16).tiny, the eps floor of float16 scales


def _list(t):
    return None if t is None else t.tolist()


# --- quant_range -----------------------------------------------------------------------------


@check("quant_range", points=2)
@pytest.mark.parametrize(
    ("bits", "symmetric", "expected"),
    [(8, True, (-127, 127)), (4, True, (-7, 7)), (2, True, (-1, 1)), (3, True, (-3, 3)), (8, False, (0, 255)), (4, False, (0, 15)), (2, False, (0, 3))],
)
def test_quant_range_table(lab, bits, symmetric, expected):
    got = lab.weight_quant.quant_range(bits, symmetric)
    assert tuple(got) == expected, (
        f"quant_range({bits}, symmetric={symmetric}) is {tuple(got)}, expected {expected}: "
        + ("symmetric codes use the restricted range ±(2^(b-1) - 1), leaving -2^(b-1) unused" if symmetric else "asymmetric codes use all 2^b values from 0")
    )


@check("quant_range", points=1)
@pytest.mark.parametrize("bits", [1, 9, 0, 16, True, 4.0])
def test_quant_range_rejects_unsupported_bits(lab, bits):
    expect_value_error(lab.weight_quant.quant_range, bits, what=f"quant_range({bits!r})", must_mention=(bits,))


# --- choose_qparams --------------------------------------------------------------------------

WORKED_W = [[0.5, -1.0, 0.25, 0.0], [1.25, 3.5, -1.25, 0.0]]
WORKED_SCALE = [[0.1429443359375], [0.5]]  # 1/7 rounded up to float16 (1171 × 2^-13); 3.5/7 = 0.5 exactly
ASYM_W = [[-1.5, 0.0, 6.0, 3.0], [1.0, 2.0, 7.5, 0.5], [-7.5, -1.0, 0.0, -0.5]]


@check("choose_qparams", points=2)
def test_choose_qparams_worked_example_per_channel(lab):
    wq = lab.weight_quant
    scale, zero_point = wq.choose_qparams(T(WORKED_W), 4)
    assert zero_point is None, f"symmetric choose_qparams returned a zero point {_list(zero_point)}; a symmetric scheme has none (return None)"
    assert tuple(scale.shape) == (2, 1), f"per-channel scale has shape {tuple(scale.shape)}, expected (2, 1): one scale per output row of the [out, in] weight"
    assert scale.dtype == torch.float16, f"scale has dtype {scale.dtype}, expected torch.float16 (the default scale_dtype)"
    assert scale.float().tolist() == WORKED_SCALE, (
        f"4-bit per-channel scales of {WORKED_W} are {scale.float().tolist()}, expected {WORKED_SCALE}: "
        "scale = amax / 7 per row (amax 1.0 and 3.5), stored in float16 rounded up (round_up_to). "
        "0.125 or 0.4375 means amax / 8 (the unrestricted range); 0.142822265625 means rounded to nearest"
    )


@check("choose_qparams", points=1)
def test_scale_is_rounded_up_to_float16(lab):
    scale, _ = lab.weight_quant.choose_qparams(T([[1.0, -0.5]]), 8)
    got = scale.float().item()
    assert got == 0.00788116455078125, (
        f"int8 scale of [[1.0, -0.5]] is {got!r}, expected 0.00788116455078125: 1/127 = 0.0078740157 rounded UP to float16. "
        "0.00787353515625 is the nearest float16, which is smaller, so 1.0 / scale > 127 would clip; use round_up_to(scale, scale_dtype). "
        "0.0078125 is 1/128 (the unrestricted range)"
    )


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
            "None (per-channel)": (None, (out_features, 1), "one per output row"),
            f"{group_size} (per-group)": (group_size, (out_features, in_features // group_size), "one per group of inputs in each row"),
        }
        for name, (gs, shape, meaning) in expected.items():
            scale, zero_point = wq.choose_qparams(w, 4, gs, symmetric)
            assert tuple(scale.shape) == shape, (
                f"choose_qparams(w of shape ({out_features}, {in_features}), group_size={name}) gave a scale of shape {tuple(scale.shape)}, "
                f"expected {shape}: {meaning}. Per-channel reduces over in (dim 1); groups run along in"
            )
            if not symmetric:
                assert zero_point is not None and tuple(zero_point.shape) == shape, (
                    f"asymmetric zero_point for group_size={name} has shape {None if zero_point is None else tuple(zero_point.shape)}, expected {shape} (one per scale)"
                )


@check("choose_qparams", points=2)
@pytest.mark.parametrize("bits", [8, 4])
def test_per_channel_scale_follows_each_output_row(lab, seed, bits):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    quant_max = 2 ** (bits - 1) - 1
    w = random_weight(gen, 24, 40, std=1.0)  # rows differ in magnitude; not square, so the axis shows
    scale, _ = wq.choose_qparams(w, bits)
    assert tuple(scale.shape) == (24, 1), f"per-channel scale of a (24, 40) weight has shape {tuple(scale.shape)}, expected (24, 1): one per output row"
    ideal = w.abs().amax(dim=1, keepdim=True) / quant_max  # (24, 1), float32
    got = scale.float()
    # Stored in float16 and rounded up: at least the float32 value, and less than one float16 step (2^-10 relative) above it.
    ok = (got >= ideal) & (got <= ideal * (1 + 2.0**-10))
    row = int((~ok).nonzero()[0, 0]) if not ok.all() else None
    assert row is None, (
        f"{bits}-bit per-channel scale of row {row} is {got[row].item():.8g}, expected amax/{quant_max} = {ideal[row].item():.8g} "
        f"rounded up to float16 (row amax {w[row].abs().max().item():.6g}). Reduce |w| over in (dim 1) for each output row; "
        f"divide by {quant_max}, not {quant_max + 1}"
    )


@check("choose_qparams", points=2)
def test_groups_run_along_in_features(lab, seed):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    w = random_weight(gen, 12, 96)
    for symmetric in (True, False):
        scale, zero_point = wq.choose_qparams(w, 4, 32, symmetric)
        assert tuple(scale.shape) == (12, 3), f"group-32 scale of a (12, 96) weight has shape {tuple(scale.shape)}, expected (12, 3)"
        for j in range(3):
            part_scale, part_zero = wq.choose_qparams(w[:, 32 * j : 32 * (j + 1)].contiguous(), 4, None, symmetric)
            assert torch.equal(scale[:, j : j + 1], part_scale), (
                f"{'symmetric' if symmetric else 'asymmetric'} group {j} scales are {scale[:4, j].float().tolist()}... but the per-channel scales of "
                f"w[:, {32 * j}:{32 * (j + 1)}] are {part_scale[:4, 0].float().tolist()}...: group j of each row is w[row, j·g:(j+1)·g], "
                "consecutive inputs of one output row (reshape to (out, in // g, g), never across rows)"
            )
            if not symmetric:
                assert torch.equal(zero_point[:, j : j + 1], part_zero), f"asymmetric group {j} zero points differ from the per-channel zero points of the same columns"


@check("choose_qparams", points=2)
def test_asymmetric_worked_example(lab):
    scale, zero_point = lab.weight_quant.choose_qparams(T(ASYM_W), 4, None, symmetric=False)
    assert scale.dtype == torch.float16, f"asymmetric scale has dtype {scale.dtype}, expected torch.float16 (the default scale_dtype)"
    assert scale.float().tolist() == [[0.5], [0.5], [0.5]], (
        f"asymmetric 4-bit scales of {ASYM_W} are {scale.float().tolist()}, expected [[0.5], [0.5], [0.5]]: "
        "(max(max w, 0) - min(min w, 0)) / 15, and the range always includes 0 (row 2 is all >= 0, row 3 all <= 0)"
    )
    assert zero_point is not None, "asymmetric choose_qparams returned zero_point=None, expected one zero point per scale"
    assert zero_point.dtype == scale.dtype, f"zero_point has dtype {zero_point.dtype}; it is stored like the scale, in {scale.dtype}"
    assert zero_point.float().tolist() == [[3.0], [0.0], [15.0]], (
        f"asymmetric 4-bit zero points are {zero_point.float().tolist()}, expected [[3], [0], [15]]: "
        "zero_point = quant_min - round(min_neg / scale) = 0 - round(-1.5 / 0.5) = 3 for row 1; the code that dequantizes to exactly 0.0"
    )


@check("choose_qparams", points=1)
@pytest.mark.parametrize(("scale_dtype", "tiny"), [("float16", 2.0**-14), ("bfloat16", 2.0**-126), ("float32", 2.0**-126)])
def test_all_zero_weight_gets_the_eps_scale(lab, scale_dtype, tiny):
    wq = lab.weight_quant
    dtype = getattr(torch, scale_dtype)
    for symmetric in (True, False):
        scale, zero_point = wq.choose_qparams(torch.zeros(3, 8), 8, 4, symmetric, dtype)
        assert scale.dtype == dtype, f"scale_dtype=torch.{scale_dtype} but the scale came back as {scale.dtype}"
        assert torch.all(scale.float() == tiny), (
            f"the scales of an all-zero weight are {scale.float().flatten().tolist()[:4]}..., expected the eps floor {tiny!r} "
            f"(torch.finfo(torch.{scale_dtype}).tiny): a scale of 0 makes 0 / 0 = NaN codes"
        )
        if not symmetric:
            assert torch.all(zero_point.float() == 0), f"the zero points of an all-zero weight are {zero_point.flatten().tolist()[:4]}..., expected 0"


@check("choose_qparams", points=1)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_are_computed_in_float32(lab, seed, dtype):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 16, 64, getattr(torch, dtype))
    for symmetric in (True, False):
        scale, zero_point = wq.choose_qparams(w, 4, 16, symmetric)
        scale32, zero32 = wq.choose_qparams(w.float(), 4, 16, symmetric)
        assert scale.dtype == torch.float16, f"a {dtype} weight gave scales in {scale.dtype}; scales are stored in scale_dtype (float16 by default) whatever the weight's dtype"
        assert torch.equal(scale, scale32) and (symmetric or torch.equal(zero_point, zero32)), (
            f"a {dtype} weight and the same weight converted to float32 gave different qparams: convert w to float32 first and do every step in float32"
        )


@check("choose_qparams", points=2)
@pytest.mark.parametrize(
    ("case", "args", "kwargs", "mention"),
    [
        ("NaN in w", ("nan",), {}, ("nan",)),
        ("Inf in w", ("inf",), {}, ("inf",)),
        ("group_size=100 with in_features=48", (), {"group_size": 100}, (100, 48)),
        ("group_size=36 with in_features=48", (), {"group_size": 36}, (36, 48)),
        ("group_size=0", (), {"group_size": 0}, (0,)),
        ("bits=9", (), {"bits": 9}, (9,)),
        ("bits=1", (), {"bits": 1}, (1,)),
        ("a 1-D w", ("1d",), {}, (48,)),
        ("a scale beyond float16 (amax 1e8)", ("huge",), {}, ("65504",)),
    ],
)
def test_choose_qparams_rejects_bad_input(lab, case, args, kwargs, mention):
    w = torch.randn(4, 48, generator=torch_generator(3))
    if args == ("nan",):
        w[2, 7] = float("nan")
    elif args == ("inf",):
        w[1, 3] = float("-inf")
    elif args == ("1d",):
        w = w[0]
    elif args == ("huge",):
        w = (w * 1e8).to(torch.bfloat16)
    call = dict(bits=8, group_size=None, symmetric=True)
    call.update(kwargs)
    expect_value_error(lab.weight_quant.choose_qparams, w, what=f"choose_qparams with {case}", must_mention=mention, **call)


@check("choose_qparams", points=1)
def test_huge_weights_fit_float32_scales(lab):
    w = torch.tensor([[1e8, -3e7], [2.0, 1.0]], dtype=torch.bfloat16)
    scale, _ = lab.weight_quant.choose_qparams(w, 8, None, True, torch.float32)
    assert scale.dtype == torch.float32 and torch.isfinite(scale).all(), (
        f"with scale_dtype=torch.float32 the scales of a weight holding 1e8 came back as {scale.flatten().tolist()} ({scale.dtype}): "
        "float32 holds them; only float16 (max 65504) cannot"
    )


# --- quantize --------------------------------------------------------------------------------


@check("quantize", points=2)
def test_quantize_rounds_half_to_even(lab):
    w = T([[1.25, -1.25, 0.75, 63.5, 0.25, -0.75, 2.25, -63.5]])  # with scale 0.5: 2.5, -2.5, 1.5, 127, 0.5, -1.5, 4.5, -127
    codes = lab.weight_quant.quantize(w, T([[0.5]], dtype=torch.float16), None, 8)
    expected = [[2, -2, 2, 127, 0, -2, 4, -127]]
    assert codes.tolist() == expected, (
        f"int8 codes of w / 0.5 = [2.5, -2.5, 1.5, 127, 0.5, -1.5, 4.5, -127] are {codes.tolist()}, expected {expected}: "
        "torch.round rounds ties to the even neighbour (2.5 -> 2, 1.5 -> 2, 0.5 -> 0); "
        "floor(x + 0.5) or sign(x)·floor(|x| + 0.5) round ties away from zero"
    )
    assert codes.dtype == torch.int8, f"symmetric codes have dtype {codes.dtype}, expected torch.int8"


@check("quantize", points=1)
def test_quantize_clamps_to_the_code_range(lab):
    wq = lab.weight_quant
    codes = wq.quantize(T([[10.0, -10.0, 3.0]]), T([[0.5]]), None, 4)
    assert codes.tolist() == [[7, -7, 6]], f"4-bit symmetric codes of [10, -10, 3] / 0.5 are {codes.tolist()}, expected [[7, -7, 6]]: clamp to quant_range(4) = (-7, 7)"
    codes = wq.quantize(T([[10.0, -10.0, 3.0]]), T([[0.5]]), T([[3.0]]), 4)
    assert codes.dtype == torch.uint8, f"asymmetric codes have dtype {codes.dtype}, expected torch.uint8 (codes 0..2^b - 1 do not fit int8 at 8 bits)"
    assert codes.tolist() == [[15, 0, 9]], f"4-bit asymmetric codes of [10, -10, 3] / 0.5 + 3 are {codes.tolist()}, expected [[15, 0, 9]]: add the zero point, then clamp to (0, 15)"


@check("quantize", points=2)
def test_quantize_asymmetric_worked_example(lab):
    scale, zero_point = T([[0.5], [0.5], [0.5]], dtype=torch.float16), T([[3.0], [0.0], [15.0]], dtype=torch.float16)
    codes = lab.weight_quant.quantize(T(ASYM_W), scale, zero_point, 4)
    expected = [[0, 3, 15, 9], [2, 4, 15, 1], [0, 13, 15, 14]]
    assert codes.tolist() == expected, (
        f"asymmetric 4-bit codes of {ASYM_W} (scale 0.5, zero points 3, 0, 15) are {codes.tolist()}, expected {expected}: "
        "round(w / scale) + zero_point, clamped to (0, 15); 0.0 must land exactly on the zero point"
    )


@check("quantize", points=1)
def test_quantize_per_group_uses_each_groups_scale(lab):
    w = T([[1.0, 2.0, 10.0, 20.0], [-1.0, 0.5, 4.0, -4.0]])
    scale = T([[0.25, 2.5], [0.125, 1.0]])  # (out, in // 2): group 0 = inputs 0-1, group 1 = inputs 2-3
    codes = lab.weight_quant.quantize(w, scale, None, 8)
    expected = [[4, 8, 4, 8], [-8, 4, 4, -4]]
    assert codes.tolist() == expected, (
        f"per-group codes (scale {scale.tolist()}, groups of 2 along in) are {codes.tolist()}, expected {expected}: "
        "column j of a (out, in // g) scale covers inputs j·g ... (j+1)·g - 1 of its row (broadcast_qparam does this)"
    )


@check("quantize", points=1)
def test_quantize_rejects_a_scale_per_column(lab):
    w = torch.randn(6, 10, generator=torch_generator(1))
    expect_value_error(
        lab.weight_quant.quantize, w, torch.ones(1, 10), None, 8,
        what="quantize(w of shape (6, 10), scale of shape (1, 10)) — one scale per input column", must_mention=("(1, 10)",),
    )


# --- dequantize ------------------------------------------------------------------------------


@check("dequantize", points=2)
def test_dequantize_worked_examples(lab):
    wq = lab.weight_quant
    got = wq.dequantize(T([[0, 3, 15, 9]], dtype=torch.uint8), T([[0.5]], dtype=torch.float16), T([[3.0]], dtype=torch.float16))
    assert got.dtype == torch.float32, f"dequantize returned {got.dtype}, expected torch.float32"
    assert got.tolist() == [[-1.5, 0.0, 6.0, 3.0]], (
        f"dequantize(codes [0, 3, 15, 9], scale 0.5, zero_point 3) is {got.tolist()}, expected [[-1.5, 0.0, 6.0, 3.0]]: "
        "(qdata - zero_point) × scale; [0.0, 1.5, 7.5, 4.5] means the zero point was forgotten"
    )
    got = wq.dequantize(T([[3, -7, 2, 0], [2, 7, -2, 0]], dtype=torch.int8), T(WORKED_SCALE, dtype=torch.float16), None)
    expected = [[0.4288330078125, -1.0006103515625, 0.285888671875, 0.0], [1.0, 3.5, -1.0, 0.0]]
    assert got.tolist() == expected, f"symmetric dequantize is {got.tolist()}, expected {expected} (qdata × scale, one scale per row)"


@check("dequantize", points=1)
def test_dequantize_per_group(lab):
    codes = T([[4, 8, 4, 8], [-8, 4, 4, -4]], dtype=torch.int8)
    scale = T([[0.25, 2.5], [0.125, 1.0]])
    got = lab.weight_quant.dequantize(codes, scale, None)
    expected = [[1.0, 2.0, 10.0, 20.0], [-1.0, 0.5, 4.0, -4.0]]
    assert got.tolist() == expected, f"per-group dequantize (groups of 2 along in) is {got.tolist()}, expected {expected}"


# --- pack_int4 / unpack_int4 -----------------------------------------------------------------


@check("pack_int4", points=2)
def test_pack_int4_worked_bytes(lab):
    wq = lab.weight_quant
    packed = wq.pack_int4(T([[-7, 3, 0, 7]], dtype=torch.int8))
    assert packed.dtype == torch.uint8, f"pack_int4 returned {packed.dtype}, expected torch.uint8"
    assert packed.tolist() == [[57, 112]], (
        f"pack_int4([[-7, 3, 0, 7]]) is {packed.tolist()}, expected [[57, 112]] = [0x39, 0x70]: element 2j in the LOW nibble, 2j+1 in the HIGH "
        "nibble, -7 as 4-bit two's complement 0b1001 = 9. [[147, 7]] has the nibbles swapped; [[49, 112]] stored -7 offset by +8"
    )
    packed = wq.pack_int4(T([[1, 2, 15, 0], [8, 9, 10, 11]], dtype=torch.uint8))
    assert packed.tolist() == [[33, 15], [152, 186]], f"pack_int4 of uint8 codes [[1, 2, 15, 0], [8, 9, 10, 11]] is {packed.tolist()}, expected [[33, 15], [152, 186]] (0x21, 0x0F, 0x98, 0xBA)"


@check("unpack_int4", points=1)
def test_unpack_int4_worked(lab):
    wq = lab.weight_quant
    got = wq.unpack_int4(T([[57, 112]], dtype=torch.uint8))
    assert got.dtype == torch.int8 and got.tolist() == [[-7, 3, 0, 7]], f"unpack_int4([[57, 112]]) is {got.tolist()} ({got.dtype}), expected [[-7, 3, 0, 7]] (torch.int8): low nibble first, sign-extend 8..15"
    got = wq.unpack_int4(T([[57, 112]], dtype=torch.uint8), signed=False)
    assert got.dtype == torch.uint8 and got.tolist() == [[9, 3, 0, 7]], f"unpack_int4([[57, 112]], signed=False) is {got.tolist()} ({got.dtype}), expected [[9, 3, 0, 7]] (torch.uint8)"


@check("unpack_int4", points=2)
def test_pack_unpack_round_trip(lab, seed, rng):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    for _ in range(10):
        shape = (rng.randint(1, 9), 2 * rng.randint(1, 40))
        for dtype, low, high, signed in ((torch.int8, -8, 8, True), (torch.uint8, 0, 16, False)):
            codes = torch.randint(low, high, shape, generator=gen).to(dtype)
            packed = wq.pack_int4(codes)
            assert tuple(packed.shape) == (shape[0], shape[1] // 2), f"pack_int4 of shape {shape} gave {tuple(packed.shape)}, expected {(shape[0], shape[1] // 2)}"
            back = wq.unpack_int4(packed, signed=signed)
            assert back.dtype == dtype and torch.equal(back, codes), (
                f"unpack_int4(pack_int4(codes), signed={signed}) differs from codes ({dtype}, shape {shape}): first codes {codes[0, :6].tolist()}, "
                f"got back {back[0, :6].tolist()}"
            )


@check("pack_int4", points=1)
@pytest.mark.parametrize(
    ("codes", "mention", "what"),
    [
        ([[1, 2, 3, 4, 5]], (5,), "5 codes in a row"),
        ([[8, 0]], (8,), "int8 code 8 (beyond [-8, 7])"),
        ([[-9, 0]], (-9,), "int8 code -9"),
        ("uint8-16", (16,), "uint8 code 16 (beyond [0, 15])"),
        ("int32", ("int32",), "torch.int32 codes"),
    ],
)
def test_pack_int4_rejects_bad_codes(lab, codes, mention, what):
    if codes == "uint8-16":
        codes = T([[16, 0]], dtype=torch.uint8)
    elif codes == "int32":
        codes = T([[1, 2]], dtype=torch.int32)
    else:
        codes = T(codes, dtype=torch.int8)
    expect_value_error(lab.weight_quant.pack_int4, codes, what=f"pack_int4 with {what}", must_mention=mention)


# --- QuantizedWeight.nbytes ------------------------------------------------------------------

NBYTES = [
    # (bits, qdata dtype, scale shape, scale dtype, zero point?, expected bytes, story)
    (4, torch.int8, (256, 8), torch.float16, False, 256 * 512 + 256 * 8 * 2, "int4 g128: codes packed, half a byte each, + fp16 scales -> 4.125 bits"),
    (4, torch.uint8, (256, 8), torch.float16, True, 256 * 512 + 256 * 8 * 4, "int4 g128 asymmetric: + fp16 zero points -> 4.25 bits"),
    (4, torch.int8, (256, 8), torch.float32, False, 256 * 512 + 256 * 8 * 4, "int4 g128 with fp32 scales -> 4.25 bits"),
    (8, torch.int8, (256, 1), torch.float16, False, 256 * 1024 + 256 * 2, "int8 per-channel: 8 + 16/1024 bits"),
    (8, torch.uint8, (1, 1), torch.bfloat16, True, 256 * 1024 + 4, "uint8 per-tensor, bf16 scale and zero point"),
    (3, torch.int8, (256, 16), torch.float16, False, 256 * 1024 + 256 * 16 * 2, "3-bit g64: codes are not packed, one byte each -> 8.25 bits"),
]


@check("QuantizedWeight", points=3)
@pytest.mark.parametrize(("bits", "qdtype", "scale_shape", "scale_dtype", "has_zero", "expected", "story"), NBYTES)
def test_nbytes_counts_what_is_stored(lab, bits, qdtype, scale_shape, scale_dtype, has_zero, expected, story):
    wq = lab.weight_quant
    scale = torch.ones(scale_shape, dtype=scale_dtype)
    qw = wq.QuantizedWeight(
        qdata=torch.zeros(256, 1024, dtype=qdtype), scale=scale, zero_point=torch.zeros_like(scale) if has_zero else None,
        bits=bits, group_size=None if scale_shape[1] == 1 else 1024 // scale_shape[1],
    )
    assert qw.nbytes == expected, f"nbytes of a (256, 1024) weight, {story}, is {qw.nbytes:,}, expected {expected:,}"
    assert qw.bits_per_weight == 8 * expected / (256 * 1024), f"bits_per_weight is {qw.bits_per_weight}, expected {8 * expected / (256 * 1024)} (8 × nbytes / weights)"


# --- quantize_weight / dequantize_weight -----------------------------------------------------


@check("quantize_weight", points=2)
def test_quantize_weight_worked_example(lab):
    qw = lab.weight_quant.quantize_weight(T(WORKED_W), 4)
    assert (qw.bits, qw.group_size, qw.zero_point) == (4, None, None), f"QuantizedWeight has bits={qw.bits}, group_size={qw.group_size}, zero_point={_list(qw.zero_point)}; expected 4, None, None"
    assert qw.qdata.dtype == torch.int8, f"qdata has dtype {qw.qdata.dtype}, expected torch.int8 for symmetric codes"
    expected = [[3, -7, 2, 0], [2, 7, -2, 0]]
    assert qw.qdata.tolist() == expected, (
        f"4-bit per-channel codes of {WORKED_W} are {qw.qdata.tolist()}, expected {expected}: row 2 has scale 0.5, and 1.25 / 0.5 = 2.5 and -2.5 round to 2 and -2 (half to even, not away from zero); "
        "row 1 divides by the stored scale 0.1429443359375"
    )
    assert qw.scale.float().tolist() == WORKED_SCALE, f"scale is {qw.scale.float().tolist()}, expected {WORKED_SCALE}"


@check("quantize_weight", points=2)
@pytest.mark.parametrize(
    ("bits", "group_size", "symmetric", "scale_dtype", "expected"),
    [(4, 128, True, "float16", 4.125), (4, 128, False, "float16", 4.25), (4, 128, True, "float32", 4.25), (8, None, True, "float16", 8 + 16 / 1024), (4, 32, True, "float16", 4.5)],
)
def test_quantize_weight_bits_per_weight(lab, seed, bits, group_size, symmetric, scale_dtype, expected):
    w = torch.randn(32, 1024, generator=torch_generator(seed)) * 0.02
    qw = lab.weight_quant.quantize_weight(w, bits, group_size, symmetric, getattr(torch, scale_dtype))
    assert qw.bits_per_weight == expected, (
        f"int{bits} group_size={group_size} {'symmetric' if symmetric else 'asymmetric'} with {scale_dtype} scales costs {qw.bits_per_weight} bits per weight, "
        f"expected {expected}: packed codes + {scale_dtype} scales{'' if symmetric else ' + zero points'}. Check that the scale is stored in scale_dtype"
    )


@check("quantize_weight", points=3)
def test_reconstruction_error_within_half_a_step(lab, rng, seed):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    for _ in range(30):
        case = random_case(rng)
        w = random_weight(gen, case["out_features"], case["in_features"], case["dtype"])
        qw = wq.quantize_weight(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        w_hat = wq.dequantize_weight(qw)
        assert tuple(w_hat.shape) == tuple(w.shape) and w_hat.dtype == torch.float32, f"dequantize_weight gave {tuple(w_hat.shape)} {w_hat.dtype}, expected {tuple(w.shape)} torch.float32 ({describe_case(case)})"
        # Per-element step: the scale of the element's group, expanded along in.
        scale = qw.scale.double()
        step = scale.repeat_interleave(w.shape[1] // scale.shape[1], dim=1).expand(w.shape)
        err = (w.double() - w_hat.double()).abs()
        bound = step * (0.5 + STEP_SLACK)
        worst = (err / step).max().item()
        assert bool((err <= bound).all()), (
            f"{describe_case(case)}: an element is {worst:.4f} steps from its reconstruction; every element must be within half a step "
            f"(scale / 2, + {STEP_SLACK:.1e} of a step for float32 rounding). Usual causes: a scale too small (rounded down, or amax / 2^(b-1)), "
            "a forgotten zero point, or codes computed for one axis and scales for the other"
        )


@check("quantize_weight", points=1)
def test_zero_and_constant_rows_round_trip(lab):
    wq = lab.weight_quant
    w = torch.zeros(4, 32)
    w[1] = 0.3
    w[2, :16] = -2.0  # group 0 constant, group 1 zero
    w[3] = torch.linspace(-1, 1, 32)
    for symmetric in (True, False):
        for group_size in (None, 16):
            w_hat = wq.dequantize_weight(wq.quantize_weight(w, 8, group_size, symmetric))
            assert torch.isfinite(w_hat).all(), f"an all-zero or constant row dequantized to NaN/Inf ({'symmetric' if symmetric else 'asymmetric'}, group_size={group_size}): floor the scale at eps"
            for name, part in (("row 0 (all zero)", w_hat[0]), ("row 2, inputs 16-31 (all zero)", w_hat[2, 16:])):
                assert torch.all(part == 0), (
                    f"{name} dequantized to {part[:4].tolist()}..., expected exact zeros ({'symmetric' if symmetric else 'asymmetric'}, group_size={group_size}): "
                    "0.0 must be a code (the zero point) and dequantize must subtract it"
                )
            # Half a step of int8 is at most amax / 254; 1% covers the float16 rounding of the scale.
            close = (w_hat[1] - 0.3).abs().max() <= 0.3 / 254 * 1.01 and (w_hat[2, :16] + 2.0).abs().max() <= 2.0 / 254 * 1.01
            assert close, f"constant rows came back as {w_hat[1, 0].item()} and {w_hat[2, 0].item()}, expected 0.3 and -2.0 to within half an int8 step (amax / 254)"


@check("quantize_weight", points=1)
def test_zero_is_exact_in_asymmetric_quantization(lab, seed):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 32, 64) + 0.1  # mostly positive rows, with exact zeros mixed in
    w[torch.rand(32, 64, generator=torch_generator(seed + 1)) < 0.2] = 0.0
    for group_size in (None, 16):
        w_hat = wq.dequantize_weight(wq.quantize_weight(w, 4, group_size, symmetric=False))
        zeros = w == 0
        assert torch.all(w_hat[zeros] == 0), (
            f"{int((w_hat[zeros] != 0).sum())} of {int(zeros.sum())} exact zeros came back non-zero (e.g. {w_hat[zeros][w_hat[zeros] != 0][0].item():.6g}) "
            f"with group_size={group_size}: include 0 in the range (min(min w, 0), max(max w, 0)) and round the zero point to an integer"
        )


@check("quantize_weight", points=1)
def test_group_size_equal_to_in_features_is_per_channel(lab, seed):
    wq = lab.weight_quant
    w = random_weight(torch_generator(seed), 8, 48)
    for symmetric in (True, False):
        a, b = wq.quantize_weight(w, 6, None, symmetric), wq.quantize_weight(w, 6, 48, symmetric)
        assert torch.equal(a.qdata, b.qdata) and torch.equal(a.scale, b.scale), "group_size=in_features (one group per row) should give exactly the per-channel codes and scales"


@check("quantize_weight", points=2)
@pytest.mark.parametrize("bits", [4, 8])
def test_finer_granularity_wins_on_outlier_weights(lab, seed, bits):
    wq = lab.weight_quant
    w = outlier_weight(torch_generator(seed))
    mse = {}
    for name, group_size in (("per-tensor", wq.PER_TENSOR), ("per-channel", None), ("group-32", 32)):
        w_hat = wq.dequantize_weight(wq.quantize_weight(w, bits, group_size))
        mse[name] = ((w_hat - w) ** 2).mean().item()
    assert mse["group-32"] < mse["per-channel"] < mse["per-tensor"], (
        f"int{bits} MSE on a weight with 2 outlier rows and 2 outlier input columns: {', '.join(f'{k} {v:.3e}' for k, v in mse.items())}; "
        "expected group-32 < per-channel < per-tensor: a scale shared by fewer values is stretched by fewer outliers"
    )


@check("dequantize_weight", points=1)
def test_dequantize_weight_worked_example(lab):
    wq = lab.weight_quant
    w_hat = wq.dequantize_weight(wq.quantize_weight(T(WORKED_W), 4))
    expected = [[0.4288330078125, -1.0006103515625, 0.285888671875, 0.0], [1.0, 3.5, -1.0, 0.0]]
    assert w_hat.tolist() == expected, f"dequantize_weight(quantize_weight({WORKED_W}, 4)) is {w_hat.tolist()}, expected {expected}"
    qw = wq.quantize_weight(T(ASYM_W), 4, symmetric=False)
    assert wq.dequantize_weight(qw).tolist() == ASYM_W, f"asymmetric 4-bit round trip of {ASYM_W} gave {wq.dequantize_weight(qw).tolist()}: every value is on the grid, so it must come back exactly"


# --- quant_error -----------------------------------------------------------------------------


@check("quant_error", points=2)
def test_quant_error_worked_example(lab):
    e = lab.weight_quant.quant_error(T([1.0, -2.0, 3.0, 4.0]), T([1.0, -2.0, 3.0, 3.5]))
    assert e.mse == 0.0625 and e.max_abs == 0.5, f"mse and max_abs of an error [0, 0, 0, 0.5] are {e.mse}, {e.max_abs}; expected 0.0625 and 0.5"
    expected = 10 * math.log10(30 / 0.25)
    assert abs(e.sqnr_db - expected) < 1e-9, f"sqnr_db is {e.sqnr_db}, expected 10·log10(sum w² / sum err²) = 10·log10(30 / 0.25) = {expected:.4f} dB (power ratio, so 10·log10, not 20·log10)"


@check("quant_error", points=1)
def test_quant_error_edge_cases(lab):
    wq = lab.weight_quant
    e = wq.quant_error(T([[0.5, -1.0]]), T([[0.5, -1.0]]))
    assert (e.mse, e.max_abs, e.sqnr_db) == (0.0, 0.0, math.inf), f"zero error gave mse={e.mse}, max_abs={e.max_abs}, sqnr_db={e.sqnr_db}; expected 0.0, 0.0, inf"
    e = wq.quant_error(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.float16))
    assert e.sqnr_db == math.inf, f"an all-zero weight reconstructed exactly gave sqnr_db={e.sqnr_db}, expected inf (no noise at all)"
    expect_value_error(wq.quant_error, torch.zeros(2, 3), torch.zeros(3, 2), what="quant_error(w of shape (2, 3), w_hat of shape (3, 2))", must_mention=("(2, 3)", "(3, 2)"))


# --- QuantizedLinear -------------------------------------------------------------------------

LINEARS = [(4, 32, True), (4, 16, False), (8, None, True), (6, -1, False), (3, 8, True)]


@check("QuantizedLinear", points=3)
@pytest.mark.parametrize(("bits", "group_size", "symmetric"), LINEARS)
def test_quantized_linear_stores_codes_and_scales_as_buffers(lab, seed, bits, group_size, symmetric):
    wq = lab.weight_quant
    qw = wq.quantize_weight(random_weight(torch_generator(seed), 24, 64), bits, group_size, symmetric)
    layer = wq.QuantizedLinear(qw)
    state = layer.state_dict()
    expected_keys = {"qdata", "scale"} | (set() if symmetric else {"zero_point"})
    assert set(state) == expected_keys, f"state_dict() keys are {sorted(state)}, expected {sorted(expected_keys)}: register the codes, the scale and (asymmetric only) the zero point as buffers"
    assert not list(layer.parameters()), "QuantizedLinear has trainable parameters; codes and scales are buffers (register_buffer), not nn.Parameter"
    if bits == 4:
        assert state["qdata"].dtype == torch.uint8 and tuple(state["qdata"].shape) == (24, 32), (
            f"the stored int4 codes are {state['qdata'].dtype} {tuple(state['qdata'].shape)}, expected torch.uint8 (24, 32): pack_int4(qw.qdata), two codes per byte"
        )
    total = stored_bytes(state.values())
    assert total == qw.nbytes, f"state_dict() holds {total:,} bytes but qw.nbytes is {qw.nbytes:,} (int{bits}, group_size={group_size}): store exactly what nbytes counts"
    assert (layer.in_features, layer.out_features, layer.bits) == (64, 24, bits), f"in_features, out_features, bits are {(layer.in_features, layer.out_features, layer.bits)}, expected (64, 24, {bits})"


@check("QuantizedLinear", points=3)
@pytest.mark.parametrize(("bits", "group_size", "symmetric"), LINEARS)
def test_quantized_linear_forward_is_dequantize_then_linear(lab, seed, bits, group_size, symmetric):
    wq = lab.weight_quant
    gen = torch_generator(seed)
    qw = wq.quantize_weight(random_weight(gen, 24, 64), bits, group_size, symmetric)
    layer = wq.QuantizedLinear(qw)
    x = torch.randn(2, 5, 64, generator=gen)
    y = layer(x)
    w_hat = wq.dequantize_weight(qw)
    expected = F.linear(x, w_hat)
    assert tuple(y.shape) == (2, 5, 24) and y.dtype == torch.float32, f"forward of x (2, 5, 64) gave {tuple(y.shape)} {y.dtype}, expected (2, 5, 24) torch.float32"
    # A float32 dot product of length 64 is off by at most 64 × 2^-24 of sum |x|·|w| in any summation order.
    tolerance = 64 * 2.0**-24 * F.linear(x.abs(), w_hat.abs())
    worst = ((y - expected).abs() - tolerance).max().item()
    assert worst <= 0, f"forward differs from F.linear(x, dequantize_weight(qw)) by more than float32 rounding (worst excess {worst:.3g}): unpack, dequantize with the same scales, then F.linear"
    y16 = layer(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16, f"forward of a bfloat16 x returned {y16.dtype}: compute in x.dtype (cast the dequantized weight to it)"
