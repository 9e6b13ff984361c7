"""Public checks for Lab 05 — activation quantization and outliers.

Worked examples with exact codes, scales, sums and bytes; properties on random activations (the
half-step bound, the W8A8 error bound, the SmoothQuant identity); measured error ratios on
activations with LLM-like outlier channels; the lab's usual mistakes turned into checks. Every
check builds its own inputs and uses only the function it names. Read a failing check's message
first: it names the quantity, the expected and actual values, and, when the value matches a usual
mistake, that mistake.
"""

from __future__ import annotations

import pytest
import torch

from infralens.checking import assert_exact, expect_correct, expect_value_error
from infralens.tensor_checks import assert_layout, assert_tensor_close, assert_tensor_equal, cause_of
from lab05_inputs import (
    BF16,
    F16,
    FLOAT32_SLACK,
    OUTLIER_CHANNELS,
    RECIPROCAL_CODES,
    RECIPROCAL_ROW,
    RECIPROCAL_SCALE,
    SCALE_EPS,
    fake_w8a8,
    outlier_activations,
    random_weight,
    reconstruct,
    relative_error,
    torch_generator,
    w8a8_bound,
)

check = pytest.mark.check
T = torch.tensor
I8, I32 = torch.int8, torch.int32


# --- quantize_per_token ----------------------------------------------------------------------

TOKENS = [[-63.5, 0.25, 0.75, 1.25], [0.0, 0.0, 0.0, 0.0], [3.0, -1.5, 0.0, 127.0]]
TOKEN_SCALE = [[0.5], [SCALE_EPS], [1.0]]
TOKEN_CODES = [[-127, 0, 2, 2], [0, 0, 0, 0], [3, -2, 0, 127]]


@check("quantize_per_token", points=3)
def test_quantize_per_token_worked_example(lab):
    what = f"quantize_per_token({TOKENS})"
    codes, scale = lab.activation_quant.quantize_per_token(T(TOKENS))
    why = cause_of(scale, ([[0.0], [0.0], [0.0]], "amax must be max |x| of the row; the scale of a row with negative values cannot be 0"),
                 ([[0.001968503952957690], [SCALE_EPS], [1.0]], "row 0's amax is 63.5 (from -63.5): take max |x|, not max x"),
                 ([[0.49609375], [SCALE_EPS], [0.9921875]], "that is amax / 128: divide by quant_max = 127 (the restricted range)"),
                 ([[0.5], [0.0], [1.0]], "an all-zero row needs the SCALE_EPS floor, or its codes are 0 / 0 = NaN"))
    assert_tensor_equal(scale, T(TOKEN_SCALE), f"{what}'s scale",
                        why or "one float32 scale per row (token), amax(|x|) / 127, floored at SCALE_EPS, shape (tokens, 1)")
    why = cause_of(codes, ([[-127, 1, 2, 3], [0, 0, 0, 0], [3, -2, 0, 127]], "those are ties rounded AWAY from zero; torch.round sends 0.5 to 0, 2.5 to 2"),
                 ([[-127, 0, 2, 2], [0, 0, 0, 0], [3, -1, 0, 127]], "-1.5 is a tie: torch.round sends it to the even -2"))
    assert_tensor_equal(codes, T(TOKEN_CODES, dtype=I8), f"{what}'s codes",
                        why or "round(x / scale) with torch.round (half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2), int8")


@check("quantize_per_token", points=1)
def test_quantize_per_token_divides_by_the_scale(lab):
    codes, scale = lab.activation_quant.quantize_per_token(T([RECIPROCAL_ROW]))
    assert_tensor_equal(scale, T([[RECIPROCAL_SCALE]]), f"quantize_per_token({RECIPROCAL_ROW})'s scale", "float32 1 / 127")
    why = cause_of(codes, ([[127, 5, 7, 87]], "those are the codes of x * (1 / scale): 1 / scale is rounded to float32 first and the "
                                           "products land just below the ties 5.5, 7.5, 87.5. Divide: x / scale"))
    assert_tensor_equal(codes, T([RECIPROCAL_CODES], dtype=I8), f"quantize_per_token({RECIPROCAL_ROW})'s codes",
                        why or "x / scale in float32 is exactly [127, 5.5, 7.5, 87.5]; torch.round sends the ties to the even 6, 8, 88")


@check("quantize_per_token", points=2)
@pytest.mark.parametrize("shape", [(7,), (5, 33), (2, 3, 17)])
def test_one_scale_per_token(lab, seed, shape):
    x = outlier_activations(torch_generator(seed), 6, 48)[:, :shape[-1]].flatten()[: torch.Size(shape).numel()].reshape(shape)
    what = f"quantize_per_token(x of shape {shape})"
    codes, scale = lab.activation_quant.quantize_per_token(x)
    assert_layout(codes, shape, I8, f"{what}'s codes", "int8 codes of x's shape")
    assert_layout(scale, shape[:-1] + (1,), torch.float32, f"{what}'s scale",
                   "float32, one per token: x's shape with the last (hidden) dim reduced to 1 (keepdim), so codes * scale broadcasts")
    expected = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=SCALE_EPS)  # (..., 1), float32: the documented formula
    assert_tensor_equal(scale, expected, f"{what}'s scale",
                        "amax(|x|) / 127 over the LAST dim of each token, in float32 — not over the tokens (that would be per-channel)")


@check("quantize_per_token", points=2)
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_per_token_round_trip_is_within_half_a_step(lab, seed, bits):
    x = outlier_activations(torch_generator(seed), 24, 57)
    what = f"quantize_per_token(x (24, 57), bits={bits})"
    codes, scale = lab.activation_quant.quantize_per_token(x, bits)
    assert_layout(codes, (24, 57), I8, f"{what}'s codes", "int8 codes of x's shape")
    assert_layout(scale, (24, 1), torch.float32, f"{what}'s scale", "float32, one per token")
    q_max = 2 ** (bits - 1) - 1
    assert_tensor_equal(codes.abs().amax(dim=1, keepdim=True), torch.full((24, 1), q_max, dtype=I8), f"{what}: max |code| of each token",
                        f"the largest |x| of every token maps to quant_max = {q_max} (scale = amax / (2^(bits-1) - 1))")
    # Half a step, plus float32 slack: x / scale rounds to within 2^-24 × 127 of a step.
    assert_tensor_close(reconstruct(codes, scale), x.double(), f"{what}: codes × scale", atol=scale.double() * (0.5 + 2.0**-14),
                        why="every element within half its token's step (scale / 2, + 2^-14 of a step for float32 rounding)")


@check("quantize_per_token", points=1)
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_half_precision_activations_are_computed_in_float32(lab, seed, dtype):
    x = outlier_activations(torch_generator(seed), 8, 48, dtype)
    codes, scale = lab.activation_quant.quantize_per_token(x)
    codes32, scale32 = lab.activation_quant.quantize_per_token(x.float())
    why = "convert x to float32 first and do every step in float32: scales are float32 whatever x's dtype"
    assert_tensor_equal(scale, scale32, f"quantize_per_token of {dtype} x (8, 48): scale (against the same x in float32)", why)
    assert_tensor_equal(codes, codes32, f"quantize_per_token of {dtype} x (8, 48): codes (against the same x in float32)", why)


@check("quantize_per_token", points=2)
def test_per_token_beats_per_tensor_on_outlier_activations(lab, seed):
    aq = lab.activation_quant
    x = outlier_activations(torch_generator(seed), 64, 96)
    codes, scale = aq.quantize_per_token(x)
    assert_layout(scale, (64, 1), torch.float32, "quantize_per_token(x (64, 96))'s scale", "one per token")
    flat_codes, flat_scale = aq.quantize_per_token(x.reshape(1, -1))  # one row holding every value: a per-tensor scale
    assert_layout(flat_scale, (1, 1), torch.float32, "quantize_per_token(x.reshape(1, -1))'s scale", "one for the single row")
    per_token = ((reconstruct(codes, scale) - x.double()) ** 2).mean().item()
    per_tensor = ((reconstruct(flat_codes, flat_scale).reshape(64, 96) - x.double()) ** 2).mean().item()
    assert per_token * 4 <= per_tensor, (
        f"int8 MSE on activations with outlier channels {OUTLIER_CHANNELS} (20-100x, and 8x more in token 0): per-token "
        f"{per_token:.3e}, per-tensor {per_tensor:.3e} (ratio {per_tensor / max(per_token, 1e-300):.2f}); expected per-tensor at least "
        "4x worse (about 8-16x measured): each token's step must come from its own amax"
    )


@check("quantize_per_token", points=1)
def test_all_zero_and_constant_tokens(lab):
    x = torch.zeros(3, 6)
    x[1], x[2] = 0.3, -7.0
    codes, scale = lab.activation_quant.quantize_per_token(x)
    assert_tensor_equal(scale, T([[SCALE_EPS], [0.3 / 127], [7.0 / 127]]), "quantize_per_token(zero, 0.3 and -7.0 rows)'s scale",
                        f"the all-zero row gets the floor SCALE_EPS = {SCALE_EPS!r}; a constant row's amax is its |value|")
    assert_tensor_equal(codes, T([[0] * 6, [127] * 6, [-127] * 6], dtype=I8), "quantize_per_token(zero, 0.3 and -7.0 rows)'s codes",
                        "0 for the zero row (never NaN), ±127 for a constant row")


@check("quantize_per_token", points=2)
@pytest.mark.parametrize(
    ("case", "x", "bits", "mention"),
    [
        ("bits=9", torch.ones(2, 4), 9, (9,)),
        ("bits=1", torch.ones(2, 4), 1, (1,)),
        ("bits=True (a bool, not an int)", torch.ones(2, 4), True, (True,)),
        ("bits=8.0 (a float)", torch.ones(2, 4), 8.0, (8.0,)),
        ("NaN in x", T([[1.0, float("nan")], [0.5, 2.0]]), 8, ("nan",)),
        ("Inf in x", T([[1.0, 2.0], [float("-inf"), 2.0]]), 8, ("inf",)),
        ("an int32 x", torch.ones(2, 4, dtype=torch.int32), 8, ("int32",)),
        ("a 0-d x", T(1.5), 8, ((),)),
        ("an empty (3, 0) x", torch.zeros(3, 0), 8, ((3, 0),)),
    ],
)
def test_quantize_per_token_rejects_bad_input(lab, case, x, bits, mention):
    aq = lab.activation_quant
    expect_correct(aq.quantize_per_token, T(TOKENS), expected=(T(TOKEN_CODES, dtype=I8), T(TOKEN_SCALE)), what=f"quantize_per_token({TOKENS})")
    expect_value_error(aq.quantize_per_token, x, bits, what=f"quantize_per_token with {case}", must_mention=mention)


# --- calibrate_scale -------------------------------------------------------------------------

CALIBRATION = [[1.0, -2.0], [[0.5, 4.0], [-3.0, 0.0]]]


def _calibration() -> list[torch.Tensor]:
    return [T(CALIBRATION[0]), T(CALIBRATION[1])]


def _float32(value: float) -> float:
    return T(value, dtype=torch.float32).item()


@check("calibrate_scale", points=2)
def test_calibrate_absmax_worked_example(lab):
    what = f"calibrate_scale({CALIBRATION})"
    scale = lab.activation_quant.calibrate_scale(_calibration())
    why = {4 / 127: "that is 4 / 127 in float64: compute amax / 127 in float32 and return its .item()",
           _float32(4 / 128): "that is amax / 128: divide by quant_max = 127",
           _float32(2 / 127): "that is the first batch's amax only: pool every batch"}.get(scale, "max |x| over every batch, / 127 in float32")
    assert_exact(scale, _float32(4 / 127), what, why)


@check("calibrate_scale", points=2)
def test_calibrate_percentile_interpolates_the_absolute_values(lab):
    what = f"calibrate_scale({CALIBRATION}, method='percentile', percentile=50)"
    scale = lab.activation_quant.calibrate_scale(_calibration(), "percentile", 50)
    why = {_float32(1.0 / 127): "1.0 is the nearest-rank value below; interpolate linearly between the 3rd and 4th smallest |x| (position 2.5)",
           _float32(2.0 / 127): "2.0 is the nearest-rank value above; interpolate linearly between the 3rd and 4th smallest |x| (position 2.5)",
           _float32(0.25 / 127): "that is the median of the signed values: the percentile is of |x|"}.get(scale, "")
    assert_exact(scale, _float32(1.5 / 127), what,
                 why or "sorted |x| = [0, 0.5, 1, 2, 3, 4], position (6 - 1) × 50 / 100 = 2.5, amax = 1 + 0.5 × (2 - 1) = 1.5, / 127")


@check("calibrate_scale", points=1)
def test_calibrate_pools_every_batch(lab):
    aq = lab.activation_quant
    batches = [T([[0.5, -1.0]]), T([[-9.0, 3.0, 2.0], [1.0, 0.0, 0.5]]), T([2.0, -4.0, 0.25])]
    what = "calibrate_scale([[0.5, -1.0]], [[-9, 3, 2], [1, 0, 0.5]], [2, -4, 0.25]])"
    assert_exact(aq.calibrate_scale(batches), _float32(9.0 / 127), what, "the largest |x| of ALL batches (9.0, in the middle one), / 127")
    # 11 values; position 10 × 90 / 100 = 9: the 10th smallest |x|, 4.0.
    assert_exact(aq.calibrate_scale(batches, "percentile", 90.0), _float32(4.0 / 127), f"{what} with method='percentile', percentile=90",
                 "sorted |x| of all 11 values: [0, 0.25, 0.5, 0.5, 1, 1, 2, 2, 3, 4, 9]; position (11 - 1) × 0.9 = 9 -> 4.0")


@check("calibrate_scale", points=1)
def test_calibrate_percentile_100_and_bits(lab, seed):
    aq = lab.activation_quant
    batches = [outlier_activations(torch_generator(seed + i), 16, 48) for i in range(3)]
    amax = max(float(b.abs().max()) for b in batches)
    what = "calibrate_scale(three (16, 48) batches, method='percentile', percentile=100)"
    assert_exact(aq.calibrate_scale(batches, "percentile", 100), _float32(amax / 127), what, "the 100th percentile of |x| is its max")
    assert_exact(aq.calibrate_scale(batches, bits=4), (T(amax) / 7).item(), "calibrate_scale(three (16, 48) batches, bits=4)", "amax / quant_max with quant_max = 7")
    low = aq.calibrate_scale(batches, "percentile", 99.0)
    assert type(low) is float and low < amax / 127 / 2, (
        f"calibrate_scale(..., 'percentile', 99.0) returned {low!r}; with outlier channels 20-100x the bulk, the 99th percentile of |x| is "
        f"well under half the absmax {amax:.4g}: it ignores the largest 1% of values"
    )


@check("calibrate_scale", points=1)
@pytest.mark.parametrize(
    ("case", "batches", "kwargs", "mention"),
    [
        ("an empty list of batches", [], {}, ("batches",)),
        ("method='minmax'", None, {"method": "minmax"}, ("minmax",)),
        ("percentile=0", None, {"method": "percentile", "percentile": 0}, (0,)),
        ("percentile=100.5", None, {"method": "percentile", "percentile": 100.5}, (100.5,)),
        ("percentile=True (a bool)", None, {"method": "percentile", "percentile": True}, (True,)),
        ("a NaN in a batch", [T([1.0, float("nan")])], {}, ("nan",)),
        ("an int64 batch", [T([1, 2])], {}, ("int64",)),
        ("bits=9", None, {"bits": 9}, (9,)),
    ],
)
def test_calibrate_scale_rejects_bad_input(lab, case, batches, kwargs, mention):
    aq = lab.activation_quant
    expect_correct(aq.calibrate_scale, _calibration(), expected=_float32(4 / 127), what=f"calibrate_scale({CALIBRATION})")
    expect_value_error(aq.calibrate_scale, _calibration() if batches is None else batches, what=f"calibrate_scale with {case}", must_mention=mention, **kwargs)


# --- quantize_static -------------------------------------------------------------------------

STATIC_X = [0.25, -1.0, 63.6, 64.0, -200.0]
STATIC_CODES = [0, -2, 127, 127, -127]


@check("quantize_static", points=3)
def test_quantize_static_worked_example(lab):
    what = f"quantize_static({STATIC_X}, scale=0.5)"
    codes, fraction = lab.activation_quant.quantize_static(T(STATIC_X), 0.5)
    why = cause_of(codes, ([0, -2, 127, -128, 112], "the values were cast to int8 without clamping: 128 wraps to -128 and -400 to 112. Clamp to ±127 first"),
                 ([0, -2, 127, 128, -400], "clamp to ±quant_max before casting to int8"))
    assert_tensor_equal(codes, T(STATIC_CODES, dtype=I8), f"{what}'s codes",
                        why or "ratio = x / 0.5 = [0.5, -2, 127.2, 128, -400]; round half to even, then clamp to ±127 (saturate)")
    why = {0.6: "127.2 rounds to 127, which is in range: an element is clipped only when |round(x / scale)| > 127",
           2: "return the FRACTION of elements clipped, 2 / 5, not the count"}.get(fraction, "2 of 5 elements (128 and -400) saturate")
    assert_exact(fraction, 0.4, f"{what}'s clipped fraction", why)


@check("quantize_static", points=1)
def test_quantize_static_ties_at_the_edge(lab):
    scale = 0.5
    x = [63.75, -63.75, 63.25, 63.3, -0.25, 0.75]  # ratios 127.5, -127.5, 126.5, 126.6, -0.5, 1.5
    codes, fraction = lab.activation_quant.quantize_static(T(x), scale)
    assert_tensor_equal(codes, T([127, -127, 126, 127, 0, 2], dtype=I8), f"quantize_static({x}, 0.5)'s codes",
                        "ratios 127.5 and -127.5 round to ±128 (even) and saturate; 126.5 -> 126, -0.5 -> 0, 1.5 -> 2 (half to even)")
    assert_exact(fraction, 2 / 6, f"quantize_static({x}, 0.5)'s clipped fraction",
                 "127.5 rounds to 128 (half to even), which is out of range: clipped, as is -127.5; 126.6 is not")


@check("quantize_static", points=1)
def test_quantize_static_divides_by_the_scale(lab):
    codes, fraction = lab.activation_quant.quantize_static(T([RECIPROCAL_ROW]), RECIPROCAL_SCALE)
    why = cause_of(codes, ([[127, 5, 7, 87]], "those are the codes of x * (1 / scale): divide, x / scale"))
    assert_tensor_equal(codes, T([RECIPROCAL_CODES], dtype=I8), f"quantize_static({RECIPROCAL_ROW}, {RECIPROCAL_SCALE})'s codes",
                        why or "x / scale in float32 is exactly [127, 5.5, 7.5, 87.5]; ties to even")
    assert_exact(fraction, 0.0, f"quantize_static({RECIPROCAL_ROW}, {RECIPROCAL_SCALE})'s clipped fraction", "nothing saturates: a float 0.0")


@check("quantize_static", points=1)
def test_quantize_static_at_4_bits(lab):
    codes, fraction = lab.activation_quant.quantize_static(T([[3.0, -3.75, 1.25, 4.0]]), 0.5, 4)
    assert_tensor_equal(codes, T([[6, -7, 2, 7]], dtype=I8), "quantize_static([[3, -3.75, 1.25, 4]], 0.5, bits=4)'s codes",
                        "4-bit codes saturate at ±7: ratios 6, -7.5 (-> -8, clipped to -7), 2.5 (-> 2), 8 (clipped to 7)")
    assert_exact(fraction, 0.5, "quantize_static([[3, -3.75, 1.25, 4]], 0.5, bits=4)'s clipped fraction", "two of four exceed ±7 after rounding")


@check("quantize_static", points=2)
def test_unrepresentative_calibration_clips_real_inputs(lab, seed):
    gen = torch_generator(seed)
    # Calibrated on activations without outliers: |x| <= 1, so scale = 1 / 127.
    scale = RECIPROCAL_SCALE
    x = torch.rand(32, 64, generator=gen) * 2 - 1  # in-range bulk, |x| < 1
    x[:, [5, 44]] = 10.0 + torch.rand(32, 2, generator=gen) * 50  # two outlier channels at serving time: every value saturates
    what = "quantize_static(x (32, 64) with outlier channels 5 and 44, scale 1/127 calibrated without them)"
    codes, fraction = lab.activation_quant.quantize_static(x, scale)
    assert_layout(codes, (32, 64), I8, f"{what}'s codes", "int8 codes of x's shape")
    assert_exact(fraction, 64 / 2048, f"{what}'s clipped fraction", "exactly the 64 outlier values (2 channels × 32 tokens) saturate")
    assert_tensor_equal(codes[:, [5, 44]], torch.full((32, 2), 127, dtype=I8), f"{what}: codes of the outlier channels",
                        "values beyond 127 steps saturate at 127: their error is |x| - 127 × scale, up to 59 here")


@check("quantize_static", points=1)
@pytest.mark.parametrize(
    ("case", "x", "scale", "bits", "mention"),
    [
        ("scale=0", torch.ones(2, 3), 0.0, 8, (0.0,)),
        ("scale=-0.5", torch.ones(2, 3), -0.5, 8, (-0.5,)),
        ("scale=nan", torch.ones(2, 3), float("nan"), 8, ("nan",)),
        ("scale=inf", torch.ones(2, 3), float("inf"), 8, ("inf",)),
        ("scale=True (a bool)", torch.ones(2, 3), True, 8, (True,)),
        ("NaN in x", T([1.0, float("nan")]), 0.5, 8, ("nan",)),
        ("bits=9", torch.ones(2, 3), 0.5, 9, (9,)),
    ],
)
def test_quantize_static_rejects_bad_input(lab, case, x, scale, bits, mention):
    aq = lab.activation_quant
    expect_correct(aq.quantize_static, T(STATIC_X), 0.5, expected=(T(STATIC_CODES, dtype=I8), 0.4), what=f"quantize_static({STATIC_X}, 0.5)")
    expect_value_error(aq.quantize_static, x, scale, bits, what=f"quantize_static with {case}", must_mention=mention)


# --- int8_matmul -----------------------------------------------------------------------------


@check("int8_matmul", points=2)
def test_int8_matmul_worked_example(lab):
    got = lab.activation_quant.int8_matmul(T([[1, -2, 3]], dtype=I8), T([[4, 5, 6], [127, 127, 127]], dtype=I8))
    why = cause_of(got, ([[12, -2]], "the sums wrapped around in int8: accumulate in int32"))
    assert_tensor_equal(got, T([[12, 254]], dtype=I32), "int8_matmul([[1, -2, 3]], [[4, 5, 6], [127, 127, 127]])",
                        why or "a @ b.T with b an (N, K) weight: [4 - 10 + 18, 127 × (1 - 2 + 3)], as torch.int32")


@check("int8_matmul", points=2)
@pytest.mark.parametrize(("m", "k", "n"), [(1, 3, 5), (7, 13, 2), (17, 16, 8), (32, 64, 24), (6, 1, 4)])
def test_int8_matmul_is_exact(lab, seed, m, k, n):
    gen = torch_generator(seed)
    a = torch.randint(-127, 128, (m, k), generator=gen).to(I8)
    b = torch.randint(-127, 128, (n, k), generator=gen).to(I8)
    expected = (a.long() @ b.long().t()).to(I32)  # int64 sums, exact
    why = ("every int32 sum exact: a is (M, K), b is (N, K) like an nn.Linear weight, so the result is a @ b.T, (M, N)"
           + ("; with K = 1 PyTorch's CPU torch._int_mm returns wrong sums on some CPUs: take the exact path when int_mm_applies(a, b) is False" if k == 1 else ""))
    assert_tensor_equal(lab.activation_quant.int8_matmul(a, b), expected, f"int8_matmul(a ({m}, {k}), b ({n}, {k}))", why)


@check("int8_matmul", points=2)
def test_int8_matmul_sums_beyond_float32(lab, seed):
    gen = torch_generator(seed)
    a = torch.randint(100, 128, (4, 4096), generator=gen).to(I8)
    b = torch.randint(100, 128, (6, 4096), generator=gen).to(I8)
    b[1] = -b[1]
    expected = (a.long() @ b.long().t()).to(I32)  # about ±5.8e7, beyond 2^24
    assert_tensor_equal(lab.activation_quant.int8_matmul(a, b), expected, "int8_matmul(a (4, 4096), b (6, 4096)) with codes near ±127",
                        "sums near 5.8e7 exceed 2^24, where float32 can no longer hold every integer: accumulate in int32 "
                        "(torch._int_mm) or another exact type, never float32")


@check("int8_matmul", points=1)
@pytest.mark.parametrize(
    ("case", "a", "b", "mention"),
    [
        ("a float32 a", torch.ones(2, 4), torch.ones(3, 4, dtype=I8), ("float32",)),
        ("an int16 b", torch.ones(2, 4, dtype=I8), torch.ones(3, 4, dtype=torch.int16), ("int16",)),
        ("a 1-D a", torch.ones(4, dtype=I8), torch.ones(3, 4, dtype=I8), ((4,),)),
        ("K of 4 and 5", torch.ones(2, 4, dtype=I8), torch.ones(3, 5, dtype=I8), ((2, 4), (3, 5))),
    ],
)
def test_int8_matmul_rejects_bad_input(lab, case, a, b, mention):
    aq = lab.activation_quant
    expect_correct(aq.int8_matmul, T([[1, -2, 3]], dtype=I8), T([[4, 5, 6], [127, 127, 127]], dtype=I8),
                   expected=T([[12, 254]], dtype=I32), what="int8_matmul([[1, -2, 3]], [[4, 5, 6], [127, 127, 127]])")
    expect_value_error(aq.int8_matmul, a, b, what=f"int8_matmul with {case}", must_mention=mention)


# --- w8a8_linear -----------------------------------------------------------------------------

W8A8_X, W8A8_W, W8A8_Y = [[127.0, -63.5]], [[127.0, 0.0], [0.0, -0.5]], [[16129.0, 32.0]]


@check("w8a8_linear", points=2)
def test_w8a8_worked_example(lab):
    got = lab.activation_quant.w8a8_linear(T(W8A8_X), T(W8A8_W))
    assert_tensor_equal(got, T(W8A8_Y), f"w8a8_linear({W8A8_X}, {W8A8_W})",
                        "x codes [[127, -64]] (scale 1.0; -63.5 is a tie -> -64), weight codes [[127, 0], [0, -127]] (scales 1.0 and 0.5/127), "
                        "acc = [[16129, 8128]], y = acc × x_scale × w_scale = [[16129, 32]] (exact: [[16129, 31.75]])")


@check("w8a8_linear", points=2)
def test_w8a8_rescales_with_both_scales(lab):
    # Every step a power of two, so every float32 operation is exact.
    x = T([[[254.0, -127.0, 64.0], [31.75, 0.25, -15.875]]])  # steps 2 and 0.25: codes [[127, -64, 32], [127, 1, -64]] (-63.5 -> -64)
    w = T([[1.984375, 0.0, -0.9921875], [15.875, 8.0, 4.0]])  # steps 1/64 and 1/8: codes [[127, 0, -64], [127, 64, 32]]
    got = lab.activation_quant.w8a8_linear(x, w)
    acc = T([[[14081.0, 13057.0], [20225.0, 14145.0]]])  # e.g. 127·127 + (-64)·0 + 32·(-64) = 14081
    expected = acc * T([[[2.0], [0.25]]]) * T([[1 / 64, 1 / 8]])
    assert_tensor_equal(got, expected, "w8a8_linear(x of shape (1, 2, 3), weight (2, 3))",
                        "acc × x_scale (per token: 2 and 0.25) × w_scale (per output row: 1/64 and 1/8); "
                        "the output keeps x's leading dims: (1, 2, out)")


@check("w8a8_linear", points=3)
@pytest.mark.parametrize(("shape", "out_features"), [((5, 48), 24), ((2, 7, 96), 40), ((48,), 3)])
def test_w8a8_is_within_the_int8_error_bound(lab, seed, shape, out_features):
    gen = torch_generator(seed)
    hidden = shape[-1]
    x = outlier_activations(gen, 14, hidden).flatten()[: torch.Size(shape).numel()].reshape(shape)
    w = random_weight(gen, out_features, hidden)
    got = lab.activation_quant.w8a8_linear(x, w)
    tokens = x.reshape(-1, hidden)
    expected = (tokens.double() @ w.double().t()).reshape(*shape[:-1], out_features)
    assert_layout(got, shape[:-1] + (out_features,), torch.float32, f"w8a8_linear(x {shape}, weight ({out_features}, {hidden}))",
                   "float32 (..., out): x's leading dims, then the weight's output features")
    assert_tensor_close(got, expected.float(), f"w8a8_linear(x {shape}, weight ({out_features}, {hidden})) against x @ weight.T",
                        atol=w8a8_bound(tokens, w).reshape(expected.shape),
                        why="per-token x steps sx and per-output-row weight steps sw leave each product within sx/2·Σ|w| + sw/2·Σ|x| + "
                        "in·sx·sw/4 (+ 2^-20 of Σ|x||w| for float32). A scale per tensor, or along the wrong axis, breaks this bound")


@check("w8a8_linear", points=1)
def test_w8a8_returns_float32_for_bfloat16_input(lab, seed):
    gen = torch_generator(seed)
    x, w = outlier_activations(gen, 6, 48, BF16), random_weight(gen, 16, 48, BF16)
    got = lab.activation_quant.w8a8_linear(x, w)
    assert_layout(got, (6, 16), torch.float32, "w8a8_linear(bfloat16 x (6, 48), bfloat16 weight (16, 48))", "the rescaled int32 sums are float32")
    assert_tensor_close(got, (x.double() @ w.double().t()).float(), "w8a8_linear of bfloat16 inputs against x @ weight.T",
                        atol=w8a8_bound(x.float(), w.float()), why="the W8A8 bound of the float32 values of the inputs")


@check("w8a8_linear", points=1)
@pytest.mark.parametrize(
    ("case", "x", "w", "mention"),
    [
        ("a 1-D weight", torch.ones(2, 4), torch.ones(4), ((4,), (2, 4))),
        ("in_features 5 for x's 4", torch.ones(2, 4), torch.ones(3, 5), ((3, 5), (2, 4))),
        ("NaN in the weight", torch.ones(2, 4), T([[1.0, 0.0, float("nan"), 1.0]]), ("nan",)),
        ("an int8 x", torch.ones(2, 4, dtype=I8), torch.ones(3, 4), ("int8",)),
    ],
)
def test_w8a8_rejects_bad_input(lab, case, x, w, mention):
    aq = lab.activation_quant
    expect_correct(aq.w8a8_linear, T(W8A8_X), T(W8A8_W), expected=T(W8A8_Y), what=f"w8a8_linear({W8A8_X}, {W8A8_W})")
    expect_value_error(aq.w8a8_linear, x, w, what=f"w8a8_linear with {case}", must_mention=mention)


# --- smooth_scales ---------------------------------------------------------------------------

SMOOTH_X, SMOOTH_W = [[1.0, -16.0], [-4.0, 2.0]], [[1.0, 0.25], [-4.0, 0.5]]
SMOOTH_S = [1.0, 5.656854152679443]  # [4^0.5 / 4^0.5, 16^0.5 / 0.5^0.5] in float32
POW_RELATIVE = 2.0**-21
"""torch.pow, sqrt and a division each round once in float32 (2^-24 relative), and two ways of
writing the same power may differ by an ulp or two: 2^-21 relative covers them."""


@check("smooth_scales", points=2)
def test_smooth_scales_worked_example(lab):
    what = f"smooth_scales({SMOOTH_X}, {SMOOTH_W})"
    s = lab.activation_quant.smooth_scales(T(SMOOTH_X), T(SMOOTH_W))
    why = cause_of(s, ([1.0, 0.4419417381286621], "the weight's max was taken along each output row: max|W_j| is over the rows, per input column j"))
    assert_tensor_close(s, T(SMOOTH_S), what, atol=0.0, rtol=POW_RELATIVE,
                        why=why or f"s_j = max|X_j|^0.5 / max|W_j|^0.5 with max|X| = [4, 16] over tokens and max|W| = [4, 0.5] over output rows "
                        f"(within {POW_RELATIVE:.2g} relative for float32 pow)")


@check("smooth_scales", points=2)
@pytest.mark.parametrize(("alpha", "expected"), [(0.75, [8.0, 0.5]), (0.25, [2.0, 0.125]), (1.0, [16.0, 1.0]), (0.0, [1.0, 0.0625])])
def test_smooth_scales_migration_strength(lab, alpha, expected):
    x = T([[16.0, -1.0], [-2.0, 0.5]])  # max|X| = [16, 1]
    w = T([[1.0, 16.0], [-0.5, 2.0]])  # max|W| = [1, 16]
    s = lab.activation_quant.smooth_scales(x, w, alpha)
    swapped = [(16 ** (1 - alpha)) / (1**alpha), 1 ** (1 - alpha) / (16**alpha)]
    why = "alpha and 1 - alpha are swapped: s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)" if (
        isinstance(s, torch.Tensor) and s.shape == (2,) and torch.allclose(s.double(), T(swapped, dtype=torch.float64), rtol=1e-5)) else ""
    assert_tensor_close(s, T(expected), f"smooth_scales(max|X| = [16, 1], max|W| = [1, 16], alpha={alpha})", atol=0.0, rtol=POW_RELATIVE,
                        why=why or f"[16^{alpha} / 1^{1 - alpha}, 1^{alpha} / 16^{1 - alpha}] (within {POW_RELATIVE:.2g} relative)")


@check("smooth_scales", points=1)
def test_smooth_scales_reduce_over_every_token(lab, seed):
    gen = torch_generator(seed)
    x, w = torch.randn(2, 5, 24, generator=gen), random_weight(gen, 40, 24)
    x[1, 3, 7] = 50.0  # one token of the second batch holds channel 7's max
    s = lab.activation_quant.smooth_scales(x, w)
    assert_layout(s, (24,), torch.float32, "smooth_scales(x (2, 5, 24), weight (40, 24))", "one float32 factor per input channel: (in,)")
    ideal = (x.abs().amax(dim=(0, 1)).double() ** 0.5 / w.abs().amax(dim=0).double() ** 0.5).float()
    assert_tensor_close(s, ideal, "smooth_scales(x (2, 5, 24), weight (40, 24))", atol=0.0, rtol=POW_RELATIVE,
                        why="max|X_j| over every token of every batch (all leading dims), max|W_j| over the 40 output rows")


@check("smooth_scales", points=1)
def test_smooth_scales_floors(lab):
    x = T([[0.0, 4.0, 1.0], [0.0, -2.0, 1.0]])  # channel 0 is always 0
    w = T([[1.0, 0.0, 4.0], [-1.0, 0.0, 1.0]])  # column 1 is all zero
    s = lab.activation_quant.smooth_scales(x, w)
    expected = T([1e-5, (4.0 / 1e-5) ** 0.5, 0.5])
    assert_tensor_close(s, expected, "smooth_scales with an all-zero activation channel 0 and an all-zero weight column 1", atol=0.0, rtol=POW_RELATIVE,
                        why="SMOOTH_EPS = 1e-5 floors max|W_j| (column 1: 4^0.5 / 1e-5^0.5 = 632.46) and the factor itself (channel 0: 0 -> 1e-5), "
                        "so no factor is 0 or inf")


@check("smooth_scales", points=1)
def test_smoothing_balances_the_ranges(lab, seed):
    gen = torch_generator(seed)
    x, w = outlier_activations(gen, 32, 64), random_weight(gen, 48, 64)
    s = lab.activation_quant.smooth_scales(x, w)
    assert_layout(s, (64,), torch.float32, "smooth_scales(x (32, 64), weight (48, 64))", "one factor per input channel")
    act = (x.double() / s.double()).abs().amax(dim=0)
    wei = (w.double() * s.double()).abs().amax(dim=0)
    assert_tensor_close(act, wei, "max|X_j / s_j| against max|W_j · s_j| for every channel j (alpha = 0.5)", atol=0.0, rtol=2.0**-20,
                        why="with alpha = 0.5 both become sqrt(max|X_j| · max|W_j|): the outlier channels' range is shared equally")


@check("smooth_scales", points=1)
@pytest.mark.parametrize(
    ("case", "x", "w", "alpha", "mention"),
    [
        ("alpha=1.5", T(SMOOTH_X), T(SMOOTH_W), 1.5, (1.5,)),
        ("alpha=-0.1", T(SMOOTH_X), T(SMOOTH_W), -0.1, (-0.1,)),
        ("alpha=True (a bool)", T(SMOOTH_X), T(SMOOTH_W), True, (True,)),
        ("alpha=nan", T(SMOOTH_X), T(SMOOTH_W), float("nan"), ("nan",)),
        ("a weight with 3 input columns for x's 2", T(SMOOTH_X), torch.ones(2, 3), 0.5, ((2, 3), (2, 2))),
    ],
)
def test_smooth_scales_rejects_bad_input(lab, case, x, w, alpha, mention):
    aq = lab.activation_quant
    expect_correct(aq.smooth_scales, T([[4.0, -16.0]]), T([[4.0, 0.25], [1.0, 1.0]]), expected=T([1.0, 4.0]),
                   what="smooth_scales([[4, -16]], [[4, 0.25], [1, 1]])")
    expect_value_error(aq.smooth_scales, x, w, alpha, what=f"smooth_scales with {case}", must_mention=mention)


# --- apply_smoothing -------------------------------------------------------------------------


@check("apply_smoothing", points=2)
def test_apply_smoothing_worked_example(lab):
    x_s, w_s = lab.activation_quant.apply_smoothing(T([[1.0, -16.0]]), T([[1.0, 0.25]]), T([1.0, 4.0]))
    why = cause_of(x_s, ([[1.0, -64.0]], "x was MULTIPLIED by s: divide the activations (X / s), multiply the weight (W · s)"))
    assert_tensor_equal(x_s, T([[1.0, -4.0]]), "apply_smoothing([[1, -16]], [[1, 0.25]], s=[1, 4])[0]", why or "x / s along the channel (last) dim")
    assert_tensor_equal(w_s, T([[1.0, 1.0]]), "apply_smoothing([[1, -16]], [[1, 0.25]], s=[1, 4])[1]", "weight * s, column j times s_j")


@check("apply_smoothing", points=2)
def test_smoothing_keeps_the_product(lab, seed):
    gen = torch_generator(seed)
    x, w = outlier_activations(gen, 12, 48).reshape(3, 4, 48), random_weight(gen, 20, 48)
    s = torch.rand(48, generator=gen) * 8 + 0.1
    what = "apply_smoothing(x (3, 4, 48), weight (20, 48), s (48,))"
    x_s, w_s = lab.activation_quant.apply_smoothing(x, w, s)
    assert_layout(x_s, (3, 4, 48), torch.float32, f"{what}[0]", "x / s: float32 of x's shape")
    assert_layout(w_s, (20, 48), torch.float32, f"{what}[1]", "weight * s: float32 of the weight's shape, column j scaled by s_j")
    smoothed = x_s.double() @ w_s.double().t()
    exact = x.double() @ w.double().t()
    # x / s and w · s round once each in float32: each product moves by at most 2 × 2^-24 of |x_j · w_j|.
    assert_tensor_close(smoothed, exact, f"(x / s) @ (weight · s).T from {what}", atol=2.0**-22 * (x.double().abs() @ w.double().abs().t()),
                        why="the same product as x @ weight.T up to one float32 rounding of each factor (2^-22 of Σ|x·w|): "
                        "divide channel j of x and multiply input column j of the weight by the same s_j")


@check("apply_smoothing", points=1)
@pytest.mark.parametrize(
    ("case", "s", "mention"),
    [
        ("s of shape (3,), one per output row", torch.ones(3), ((3,), 2)),
        ("s of shape (1, 2)", torch.ones(1, 2), ((1, 2), 2)),
        ("a zero in s", T([1.0, 0.0]), ("positive",)),
        ("a negative s", T([1.0, -2.0]), ("positive",)),
        ("an Inf in s", T([float("inf"), 1.0]), ("positive",)),
    ],
)
def test_apply_smoothing_rejects_bad_input(lab, case, s, mention):
    aq = lab.activation_quant
    expect_correct(aq.apply_smoothing, T([[1.0, -16.0]]), T([[1.0, 0.25]]), T([1.0, 4.0]), expected=(T([[1.0, -4.0]]), T([[1.0, 1.0]])),
                   what="apply_smoothing([[1, -16]], [[1, 0.25]], [1, 4])")
    expect_value_error(aq.apply_smoothing, T([[1.0, -16.0]]), torch.ones(3, 2), s, what=f"apply_smoothing with {case}", must_mention=mention)


# --- smoothquant_linear ----------------------------------------------------------------------

SQ_Y = [[-2.9955978393554688, -12.026383399963379], [-3.5188305377960205, 16.98208236694336]]


@check("smoothquant_linear", points=2)
def test_smoothquant_worked_example(lab):
    got = lab.activation_quant.smoothquant_linear(T(SMOOTH_X), T(SMOOTH_W))
    assert_tensor_close(got, T(SQ_Y), f"smoothquant_linear({SMOOTH_X}, {SMOOTH_W})", atol=0.0, rtol=2.0**-18,
                        why="s = [1, 4·√2]; W8A8 of (x / s, weight · s) (within 2^-18 relative: s may differ by an ulp, and the "
                        "rescale's float32 multiplications may come in any order)")


@check("smoothquant_linear", points=3)
def test_smoothing_cuts_the_w8a8_error_on_outlier_activations(lab, seed):
    gen = torch_generator(seed)
    x, w = outlier_activations(gen, 64, 96), random_weight(gen, 80, 96)
    exact = x.double() @ w.double().t()
    got = lab.activation_quant.smoothquant_linear(x, w)
    assert_layout(got, (64, 80), torch.float32, "smoothquant_linear(x (64, 96), weight (80, 96))", "float32 (tokens, out)")
    plain, smoothed = relative_error(fake_w8a8(x, w), exact), relative_error(got, exact)
    assert smoothed * 2.5 <= plain, (
        f"relative error of W8A8 on activations with outlier channels {OUTLIER_CHANNELS}: without smoothing {plain:.3e}, "
        f"smoothquant_linear {smoothed:.3e} (ratio {plain / max(smoothed, 1e-300):.2f}); expected at least 2.5x lower (about 4-6x measured). "
        "Divide x by s and multiply the weight by s before quantizing both"
    )


# --- llm_int8_linear -------------------------------------------------------------------------

INT8_X, INT8_W = [[1.0, 6.0, -0.5], [0.5, 0.25, 2.0]], [[1.0, 2.0, 0.0]]
INT8_Y = [[13.0], [1.003937005996704]]


@check("llm_int8_linear", points=3)
def test_llm_int8_worked_example(lab):
    what = f"llm_int8_linear({INT8_X}, {INT8_W})"
    y, outliers = lab.activation_quant.llm_int8_linear(T(INT8_X), T(INT8_W))
    why = cause_of(outliers, ([], "column 1 holds 6.0, which equals the threshold: |x| >= 6.0 is an outlier (>=, not >)"))
    assert_tensor_equal(outliers, T([1]), f"{what}'s outlier columns", why or "column 1 reaches |x| = 6.0 >= threshold; sorted int64 indices")
    assert_tensor_close(y, T(INT8_Y), f"{what}'s y", atol=0.0, rtol=FLOAT32_SLACK,
                        why="outlier part [[12], [0.5]] in float32, plus W8A8 of columns 0 and 2 alone ([[1.0], [0.50394]]: x scales 1/127 "
                        "and 2/127 from those columns only) (within 2^-20 relative for the rescale's order)")


@check("llm_int8_linear", points=1)
def test_outlier_columns_come_from_any_token(lab, seed):
    x = torch.rand(2, 3, 10, generator=torch_generator(seed)) - 0.5
    x[1, 2, 7] = -6.5  # one token of the second sequence
    x[0, 0, 2] = 40.0
    w = random_weight(torch_generator(seed + 1), 4, 10)
    y, outliers = lab.activation_quant.llm_int8_linear(x, w)
    assert_tensor_equal(outliers, T([2, 7]), "llm_int8_linear(x (2, 3, 10) with |x| >= 6 at [0, 0, 2] and [1, 2, 7])'s outlier columns",
                        "a feature column is an outlier when ANY token of any sequence reaches the threshold; sorted torch.int64 indices")
    assert_layout(y, (2, 3, 4), torch.float32, "llm_int8_linear(x (2, 3, 10), weight (4, 10))'s y", "float32 (..., out)")


@check("llm_int8_linear", points=3)
def test_llm_int8_is_close_to_the_float_result(lab, seed):
    gen = torch_generator(seed)
    x, w = outlier_activations(gen, 64, 96), random_weight(gen, 80, 96)
    exact = x.double() @ w.double().t()
    y, outliers = lab.activation_quant.llm_int8_linear(x, w)
    assert_tensor_equal(outliers, T(list(OUTLIER_CHANNELS)), "llm_int8_linear(x (64, 96) with outlier channels, ...)'s outlier columns",
                        "exactly the channels with |x| >= 6.0; the bulk stays under 6")
    regular = [j for j in range(96) if j not in OUTLIER_CHANNELS]
    # Only the regular columns are quantized, with scales from those columns: their W8A8 bound, plus float32 for the outlier part.
    bound = w8a8_bound(x[:, regular], w[:, regular]) + FLOAT32_SLACK * (x.double().abs() @ w.double().abs().t())
    assert_tensor_close(y, exact.float(), "llm_int8_linear(x (64, 96), weight (80, 96)) against x @ weight.T", atol=bound,
                        why="the int8 error of the regular columns alone (per-token scales from those columns, not from the outliers) "
                        "plus float32 rounding of the outlier part")
    plain, decomposed = relative_error(fake_w8a8(x, w), exact), relative_error(y, exact)
    assert decomposed * 10 <= plain, (
        f"relative error: plain W8A8 {plain:.3e}, llm_int8_linear {decomposed:.3e} (ratio {plain / max(decomposed, 1e-300):.1f}); expected "
        "at least 10x lower (about 30x measured): the outliers must leave the int8 path"
    )


@check("llm_int8_linear", points=1)
def test_llm_int8_without_and_with_only_outliers(lab, seed):
    aq = lab.activation_quant
    gen = torch_generator(seed)
    x, w = torch.randn(5, 16, generator=gen), random_weight(gen, 6, 16)
    y, outliers = aq.llm_int8_linear(x, w, 1e6)
    assert_tensor_equal(outliers, torch.zeros(0, dtype=torch.int64), "llm_int8_linear(x, w, threshold=1e6)'s outlier columns", "none: an empty int64 tensor")
    assert_tensor_close(y, (x.double() @ w.double().t()).float(), "llm_int8_linear(x, w, threshold=1e6)", atol=w8a8_bound(x, w),
                        why="with no outlier every column is int8: the W8A8 bound")
    y, outliers = aq.llm_int8_linear(x, w, 1e-6)
    assert_tensor_equal(outliers, torch.arange(16), "llm_int8_linear(x, w, threshold=1e-6)'s outlier columns", "every column")
    exact = x.double() @ w.double().t()
    assert_tensor_close(y, exact.float(), "llm_int8_linear(x, w, threshold=1e-6)", atol=16 * 2.0**-23 * (x.double().abs() @ w.double().abs().t()),
                        why="every column is an outlier: a plain float32 matmul (16 × 2^-23 of Σ|x||w|), with no int8 part at all")


@check("llm_int8_linear", points=1)
@pytest.mark.parametrize(
    ("case", "x", "w", "threshold", "mention"),
    [
        ("threshold=0", T(INT8_X), T(INT8_W), 0.0, (0.0,)),
        ("threshold=-6", T(INT8_X), T(INT8_W), -6.0, (-6.0,)),
        ("threshold=True (a bool)", T(INT8_X), T(INT8_W), True, (True,)),
        ("threshold=inf", T(INT8_X), T(INT8_W), float("inf"), ("inf",)),
        ("a weight with 2 input columns for x's 3", T(INT8_X), torch.ones(1, 2), 6.0, ((1, 2), (2, 3))),
    ],
)
def test_llm_int8_rejects_bad_input(lab, case, x, w, threshold, mention):
    aq = lab.activation_quant
    expect_correct(aq.llm_int8_linear, T([[8.0, 0.5]]), T([[0.25, 2.0]]), expected=(T([[3.0]]), T([0])),
                   what="llm_int8_linear([[8, 0.5]], [[0.25, 2]])")
    expect_value_error(aq.llm_int8_linear, x, w, threshold, what=f"llm_int8_linear with {case}", must_mention=mention)


# --- activation_nbytes -----------------------------------------------------------------------


@check("activation_nbytes", points=2)
@pytest.mark.parametrize(
    ("args", "expected", "mistake"),
    [
        ((8, 4096, 4096, "bf16"), 268_435_456, {134_217_728: "bf16 is 2 bytes per element"}),
        ((8, 4096, 4096, "fp16"), 268_435_456, {}),
        ((1, 7, 5, "fp32"), 140, {}),
        ((8, 4096, 4096, "int8-per-token"), 134_348_800, {134_283_264: "one float32 scale per token is 4 bytes, not 2",
                                                        134_217_760: "one scale per TOKEN: batch × tokens of them, not one per sequence",
                                                        134_217_728: "the per-token float32 scales are stored too: + batch × tokens × 4"}),
        ((8, 4096, 4096, "int8-per-tensor"), 134_217_732, {134_217_728: "the single float32 scale is stored too: + 4 bytes"}),
        ((3, 5, 7, "int8-per-token"), 165, {}),
    ],
)
def test_activation_nbytes_table(lab, args, expected, mistake):
    got = lab.activation_quant.activation_nbytes(*args)
    assert_exact(got, expected, f"activation_nbytes{args}", mistake.get(got, "codes (or elements) × bytes each, plus every stored float32 scale"))


@check("activation_nbytes", points=1)
@pytest.mark.parametrize(
    ("args", "mention"),
    [((0, 16, 64, "bf16"), ("batch", 0)), ((1, -3, 64, "bf16"), ("tokens", -3)), ((1, 16, True, "bf16"), ("hidden", True)),
     ((1, 16.0, 64, "bf16"), ("tokens", 16.0)), ((1, 16, 64, "int4"), ("int4",))],
)
def test_activation_nbytes_rejects_bad_input(lab, args, mention):
    aq = lab.activation_quant
    expect_correct(aq.activation_nbytes, 1, 7, 5, "fp32", expected=140, what="activation_nbytes(1, 7, 5, 'fp32')")
    expect_value_error(aq.activation_nbytes, *args, what=f"activation_nbytes{args}", must_mention=mention)
