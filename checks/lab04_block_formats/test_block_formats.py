"""Public checks for Lab 04 — block formats.

Stored bytes of small hand-made blocks (written here as hex, produced by llama.cpp's reference
quantizer), properties on random weights, and the usual mistakes turned into checks. A failing
check shows the first block that differs, byte by byte, with the layout of the format.
"""

from __future__ import annotations

import numpy as np
import pytest
from lab04_bytes import Q4_0_FIELDS, Q8_0_FIELDS, as_uint8, assert_blocks_equal, assert_floats_equal, random_weights

from infralens.checking import expect_value_error

check = pytest.mark.check


def block(*values: float) -> np.ndarray:
    """One block of 32 float32 values: ``values`` first, zeros after."""
    x = np.zeros(32, dtype=np.float32)
    x[: len(values)] = values
    return x


RAMP = np.arange(32, dtype=np.float32)
TIES = block(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5)  # amax 127: d = 1, so x·id = x exactly
PLUS_FIRST = block(0, 0, 0, 0, 1.0, *[0] * 15, -1.0)  # |max| tie: +1 at element 4 comes before -1 at element 20
MINUS_FIRST = -PLUS_FIRST

Q8_0_SNAPSHOTS = [
    (RAMP, "d0330004080c1014191d2125292d3135393d42464a4e52565a5e62666b6f73777b7f", "0..31: d = 31/127 stored as fp16 0x33d0, codes round(i × 127/31)"),
    (-RAMP, "d03300fcf8f4f0ece7e3dfdbd7d3cfcbc7c3bebab6b2aeaaa6a29e9a95918d898581", "0..-31: d stays positive (amax), codes are negative int8 bytes"),
    (TIES, "003c7f010203fffefd7f81" + "00" * 23, "x·id = k + 0.5 exactly: roundf goes away from zero (0.5 -> 1, 2.5 -> 3, -2.5 -> -3, 126.5 -> 127)"),
    (block(10.0, 3.74), "0a2d7f2f" + "00" * 30, "3.74 × (1/d) = 47.498 with the float32 d, but 47.50 with the fp16 one: codes use the float32 d"),
    (PLUS_FIRST, "0820000000007f" + "00" * 15 + "81" + "00" * 11, "±1: d = 1/127, codes 127 and -127"),
    (np.zeros(32, np.float32), "00" * 34, "all zeros: d = 0, codes 0"),
]

Q4_0_SNAPSHOTS = [
    (RAMP, "c0c348483737373726262626151515150404", "0..31: max = +31 so d = 31/-8 = -3.875 (fp16 c3c0); byte 0 holds element 0 (code 8) low and element 16 (code 4) high"),
    (-RAMP, "c04348483737373726262626151515150404", "0..-31: max = -31 keeps its sign, so d = +3.875 and the codes are the same as for 0..31"),
    (PLUS_FIRST, "00b088888888f0" + "88" * 11, "+1 comes first: max = +1, d = -0.125; element 4 gets code 0, element 20 code 15"),
    (MINUS_FIRST, "003088888888f0" + "88" * 11, "-1 comes first: max = -1, d = +0.125"),
    (TIES, "f0cb80888888888888808f" + "88" * 7, "max = 127, d = -15.875; 0.5·(1/d) + 8.5 = 8.47 truncates to 8"),
    (block(10.0, 3.74), "00bd8085" + "88" * 14, "max = 10, d = -1.25; 3.74·(1/d) + 8.5 = 5.508 truncates to 5"),
    (np.zeros(32, np.float32), "0080" + "88" * 16, "all zeros: d = +0.0 / -8 = -0.0 (fp16 8000), every code 8"),
]


# --- bits_per_weight --------------------------------------------------------------------------


@check("bits_per_weight", points=2)
@pytest.mark.parametrize(
    ("fmt", "expected", "story"),
    [
        ("Q8_0", 8.5, "34 bytes per 32 weights: 32 codes + a 2-byte fp16 d"),
        ("Q4_0", 4.5, "18 bytes per 32 weights: 16 bytes of nibbles + a 2-byte fp16 d"),
        ("Q4_1", 5.0, "20 bytes per 32 weights: d and a min m (fp16 each) + 16 bytes of nibbles"),
        ("Q4_K", 4.5, "144 bytes per 256 weights: d, dmin, 12 bytes of 6-bit sub-block scales and mins, 128 bytes of nibbles"),
        ("Q6_K", 6.5625, "210 bytes per 256 weights: 128 + 64 bytes of 6-bit codes, 16 int8 scales, a 2-byte d"),
    ],
)
def test_bits_per_weight_counts_every_byte_of_the_block(lab, fmt, expected, story):
    actual = lab.block_formats.bits_per_weight(fmt)
    assert actual == expected, f"bits_per_weight({fmt!r}) is {actual}, expected {expected} ({story}): every field of BLOCK_LAYOUTS[{fmt!r}] is stored"


@check("bits_per_weight", points=1)
def test_bits_per_weight_rejects_an_unknown_format(lab):
    expect_value_error(lab.block_formats.bits_per_weight, "Q3_X", what="bits_per_weight('Q3_X')", must_mention=("Q3_X",))


# --- quantize_q8_0 ----------------------------------------------------------------------------


@check("quantize_q8_0", points=3)
@pytest.mark.parametrize(("values", "expected", "story"), Q8_0_SNAPSHOTS, ids=["ramp", "negative-ramp", "ties", "fp32-d", "plus-minus", "zeros"])
def test_q8_0_stores_llama_cpp_bytes(lab, values, expected, story):
    actual = lab.block_formats.quantize_q8_0(values)
    assert_blocks_equal(actual, np.frombuffer(bytes.fromhex(expected), np.uint8), 34, f"quantize_q8_0 of one block ({story})", values, Q8_0_FIELDS)


@check("quantize_q8_0", points=2)
def test_q8_0_blocks_run_along_the_last_axis(lab, rng):
    bf = lab.block_formats
    snapshots = np.stack([np.frombuffer(bytes.fromhex(expected), np.uint8) for _, expected, _ in Q8_0_SNAPSHOTS])  # (6, 34)
    values = np.stack([v for v, _, _ in Q8_0_SNAPSHOTS])  # (6, 32)
    order = list(range(6))
    rng.shuffle(order)
    x = values[order].reshape(3, 64)  # 3 rows of 2 blocks each
    expected = snapshots[order].reshape(3, 68)
    assert_blocks_equal(bf.quantize_q8_0(x), expected, 34, "quantize_q8_0 of a (3, 64) matrix (each row holds 2 blocks)", x, Q8_0_FIELDS)
    batch = bf.quantize_q8_0(x.reshape(3, 1, 64))
    as_uint8(batch, "quantize_q8_0 of a (3, 1, 64) array", (3, 1, 68))


@check("quantize_q8_0", points=2)
def test_q8_0_properties_on_random_weights(lab, seed):
    np_rng = np.random.default_rng(seed)
    x = random_weights(np_rng, 64, 32 * int(np_rng.integers(1, 9)))
    stored = as_uint8(lab.block_formats.quantize_q8_0(x), f"quantize_q8_0 of a {x.shape} matrix", (x.shape[0], x.shape[1] // 32 * 34))
    blocks, values = stored.reshape(-1, 34), x.reshape(-1, 32)
    amax = np.abs(values).max(axis=1)
    d_stored = blocks[:, :2].copy().view("<f2")[:, 0]
    with np.errstate(over="ignore"):  # d above 65504 is stored as fp16 inf
        expected_d = (amax / np.float32(127)).astype(np.float16)
    wrong = np.flatnonzero(d_stored != expected_d)
    assert wrong.size == 0, (
        f"block {wrong[0]}: stored d is {d_stored[wrong[0]]!r}, expected fp16(amax / 127) = {expected_d[wrong[0]]!r} "
        f"(amax = {amax[wrong[0]]!r}); d goes first, as 2 little-endian fp16 bytes"
    )
    codes = blocks[:, 2:].view(np.int8)
    extreme = codes[np.arange(len(codes)), np.abs(values).argmax(axis=1)].astype(int)
    nonzero = amax > 0
    assert np.all(np.abs(extreme[nonzero]) == 127), (
        f"the element with the largest |x| should get code ±127 (d = amax/127); got {extreme[nonzero][np.abs(extreme[nonzero]) != 127][:5]}"
    )


@check("quantize_q8_0", points=1)
def test_q8_0_accepts_float16_exactly(lab, seed):
    x = np.random.default_rng(seed).standard_normal((4, 64)).astype(np.float16)
    bf = lab.block_formats
    assert_blocks_equal(bf.quantize_q8_0(x), np.asarray(bf.quantize_q8_0(x.astype(np.float32))), 34, "quantize_q8_0 of float16 input vs the same values in float32")


@check("quantize_q8_0", points=2)
@pytest.mark.parametrize(
    ("make", "bad", "why"),
    [
        (lambda: np.zeros((4, 48), np.float32), 48, "K=48 is not a multiple of the block size 32"),
        (lambda: np.zeros(31, np.float32), 31, "K=31 is not a multiple of 32"),
        (lambda: np.zeros((2, 64), np.float64), "float64", "float64 would be rounded to float32 silently: convert explicitly"),
        (lambda: np.arange(64, dtype=np.int32), "int32", "integers are not weights to quantize"),
        (lambda: block(1.0, np.nan), "nan", "NaN has no code"),
        (lambda: block(1.0, -np.inf), "inf", "Inf has no code"),
    ],
)
def test_q8_0_rejects_bad_input(lab, make, bad, why):
    expect_value_error(lab.block_formats.quantize_q8_0, make(), what=f"quantize_q8_0 ({why})", must_mention=(bad,))


# --- dequantize_q8_0 --------------------------------------------------------------------------


@check("dequantize_q8_0", points=2)
def test_q8_0_decodes_with_the_stored_fp16_scale(lab):
    stored = np.frombuffer(bytes.fromhex(Q8_0_SNAPSHOTS[0][1]), np.uint8)
    actual = np.asarray(lab.block_formats.dequantize_q8_0(stored))
    codes = np.array([0, 4, 8, 12, 16, 20, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 66, 70, 74, 78, 82, 86, 90, 94, 98, 102, 107, 111, 115, 119, 123, 127])
    # d is stored as fp16 0x33d0 = 0.244140625 (31/127 = 0.2440945 is not an fp16); code × d is exact in float32.
    expected = (codes * 0.244140625).astype(np.float32)
    assert_floats_equal(actual, expected, "dequantize_q8_0 of d0 33 00 04 08 ... 7f (d = fp16 0x33d0 = 0.244140625)")


@check("dequantize_q8_0", points=2)
def test_q8_0_decodes_many_blocks_and_negative_codes(lab):
    blocks = ("003c7f010203fffefd7f81" + "00" * 23, "00c0" + "81ff" * 16)
    stored = np.frombuffer(bytes.fromhex("".join(blocks)), np.uint8).reshape(1, 68)
    expected = np.zeros((1, 64), np.float32)
    expected[0, :9] = [127, 1, 2, 3, -1, -2, -3, 127, -127]  # d = 1.0 (fp16 3c00)
    expected[0, 32:] = np.tile([-127 * -2.0, -1 * -2.0], 16)  # d = -2.0 (fp16 c000); 0x81 is int8 -127, 0xff is -1
    assert_floats_equal(lab.block_formats.dequantize_q8_0(stored), expected, "dequantize_q8_0 of a (1, 68) row of 2 blocks")


@check("dequantize_q8_0", points=1)
@pytest.mark.parametrize(("make", "bad"), [(lambda: np.zeros((2, 35), np.uint8), 35), (lambda: np.zeros(34, np.int8), "int8")])
def test_q8_0_dequantize_rejects_bad_bytes(lab, make, bad):
    expect_value_error(lab.block_formats.dequantize_q8_0, make(), what=f"dequantize_q8_0 of {make().dtype} {make().shape} (34 bytes per block)", must_mention=(bad,))


# --- quantize_q4_0 ----------------------------------------------------------------------------


@check("quantize_q4_0", points=3)
@pytest.mark.parametrize(
    ("values", "expected", "story"), Q4_0_SNAPSHOTS, ids=["ramp", "negative-ramp", "plus-first", "minus-first", "ties", "fp32-d", "zeros"]
)
def test_q4_0_stores_llama_cpp_bytes(lab, values, expected, story):
    actual = lab.block_formats.quantize_q4_0(values)
    assert_blocks_equal(actual, np.frombuffer(bytes.fromhex(expected), np.uint8), 18, f"quantize_q4_0 of one block ({story})", values, Q4_0_FIELDS)


@check("quantize_q4_0", points=2)
def test_q4_0_truncates_after_adding_8_5(lab):
    # max = -8, so d = 1 and x·id + 8.5 is exact: -7.5 -> 1.0 -> 1, 0.49 -> 8.99 -> 8, 0.5 -> 9.0 -> 9, 7.5 -> 16 -> min(15, 16).
    x = block(-8.0, -7.5, -0.5, 0.49, 0.5, 6.4, 6.5, 7.5)
    codes = [0, 1, 8, 8, 9, 14, 15, 15] + [8] * 24
    expected = np.frombuffer(bytes.fromhex("003c") + bytes(codes[j] | codes[j + 16] << 4 for j in range(16)), np.uint8)
    assert_blocks_equal(lab.block_formats.quantize_q4_0(x), expected, 18, "quantize_q4_0 with d = 1 (codes min(15, trunc(x + 8.5)))", x, Q4_0_FIELDS)


@check("quantize_q4_0", points=2)
def test_q4_0_properties_on_random_weights(lab, seed):
    np_rng = np.random.default_rng(seed)
    x = random_weights(np_rng, 64, 32 * int(np_rng.integers(1, 9)))
    stored = as_uint8(lab.block_formats.quantize_q4_0(x), f"quantize_q4_0 of a {x.shape} matrix", (x.shape[0], x.shape[1] // 32 * 18))
    blocks, values = stored.reshape(-1, 18), x.reshape(-1, 32)
    signed_max = values[np.arange(len(values)), np.abs(values).argmax(axis=1)]
    d_stored = blocks[:, :2].copy().view("<f2")[:, 0]
    with np.errstate(over="ignore"):  # d above 65504 is stored as fp16 inf
        expected_d = (signed_max / np.float32(-8)).astype(np.float16)
    nonzero = signed_max != 0
    wrong = np.flatnonzero((d_stored != expected_d) & nonzero)
    assert wrong.size == 0, (
        f"block {wrong[0]}: stored d is {d_stored[wrong[0]]!r}, expected fp16(max / -8) = {expected_d[wrong[0]]!r} where max = "
        f"{signed_max[wrong[0]]!r} is the value with the largest |x|, sign kept"
    )
    extreme = np.abs(values).argmax(axis=1)
    low = np.where(extreme < 16, blocks[np.arange(len(blocks)), 2 + extreme % 16] & 0x0F, blocks[np.arange(len(blocks)), 2 + extreme % 16] >> 4)
    assert np.all(low[nonzero] == 0), "the element with the largest |x| should get code 0: it is max, and max · (1/d) + 8.5 = -8 + 8.5 = 0.5"


@check("quantize_q4_0", points=2)
@pytest.mark.parametrize(
    ("make", "bad", "why"),
    [
        (lambda: np.zeros((4, 40), np.float32), 40, "K=40 is not a multiple of 32"),
        (lambda: np.zeros((2, 64), np.float64), "float64", "float64 would be rounded silently"),
        (lambda: block(np.nan), "nan", "NaN has no code"),
    ],
)
def test_q4_0_rejects_bad_input(lab, make, bad, why):
    expect_value_error(lab.block_formats.quantize_q4_0, make(), what=f"quantize_q4_0 ({why})", must_mention=(bad,))


# --- dequantize_q4_0 --------------------------------------------------------------------------


@check("dequantize_q4_0", points=2)
def test_q4_0_decodes_low_nibbles_then_high_nibbles(lab):
    stored = np.frombuffer(bytes.fromhex(Q4_0_SNAPSHOTS[0][1]), np.uint8)  # the 0..31 block, d = -3.875
    codes = np.array([8, 8, 7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0])
    expected = ((codes - 8) * np.float32(-3.875)).astype(np.float32)
    assert_floats_equal(lab.block_formats.dequantize_q4_0(stored), expected, "dequantize_q4_0 of c0 c3 48 48 37 ... (element j: low nibble of byte j; element j+16: high nibble)")


@check("dequantize_q4_0", points=1)
def test_q4_0_dequantize_rejects_bad_bytes(lab):
    expect_value_error(lab.block_formats.dequantize_q4_0, np.zeros((2, 19), np.uint8), what="dequantize_q4_0 of shape (2, 19) (18 bytes per block)", must_mention=(19,))


# --- NF4 --------------------------------------------------------------------------------------


def nf4_codes(packed: np.ndarray) -> np.ndarray:
    packed = np.asarray(packed).reshape(-1)
    return np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1)


@check("quantize_nf4", points=2)
def test_nf4_worked_example(lab):
    x = np.zeros(64, np.float32)
    x[:3] = [1.0, -0.5, 0.25]
    qw = lab.block_formats.quantize_nf4(x)
    assert_blocks_equal(qw.packed, np.frombuffer(bytes.fromhex("f2a7" + "77" * 30), np.uint8), 32, "quantize_nf4([1, -0.5, 0.25, 0, ...]).packed")
    assert qw.absmax.dtype == np.float32 and qw.absmax.tolist() == [1.0], f"absmax is {qw.absmax!r}, expected float32 [1.0]: one fp32 absmax per block of 64"
    assert tuple(qw.shape) == (64,) and qw.block_size == 64, f"NF4Weight records shape {qw.shape} and block_size {qw.block_size}, expected (64,) and 64"


@check("quantize_nf4", points=2)
def test_nf4_packs_the_even_element_in_the_high_nibble(lab):
    x = np.tile(np.array([-1.0, 1.0], np.float32), 32)  # codes 0, 15, 0, 15, ...
    packed = lab.block_formats.quantize_nf4(x).packed
    assert_blocks_equal(packed, np.full(32, 0x0F, np.uint8), 32, "quantize_nf4 of [-1, 1, -1, 1, ...] (bitsandbytes: element 2i in the HIGH nibble, 2i+1 in the low one)")


@check("quantize_nf4", points=2)
def test_nf4_ties_on_a_midpoint_take_the_lower_code(lab):
    bf = lab.block_formats
    midpoints = (bf.NF4_CODE[:-1] + bf.NF4_CODE[1:]) / np.float32(2)  # float32, as the kernel's thresholds
    x = np.zeros(64, np.float32)
    x[0] = 1.0  # absmax 1: x · (1/absmax) is x itself
    x[1:16] = midpoints
    x[16:31] = np.nextafter(midpoints, np.float32(2))  # one ulp above: the upper code
    codes = nf4_codes(bf.quantize_nf4(x).packed)
    assert codes[1:16].tolist() == list(range(15)), (
        f"values exactly on the midpoint between codes i and i+1 got codes {codes[1:16].tolist()}, expected {list(range(15))}: "
        "bitsandbytes only moves up when x > midpoint"
    )
    assert codes[16:31].tolist() == list(range(1, 16)), f"values one ulp above each midpoint got {codes[16:31].tolist()}, expected {list(range(1, 16))}"


@check("quantize_nf4", points=2)
def test_nf4_blocks_follow_the_flattened_tensor(lab, seed):
    np_rng = np.random.default_rng(seed)
    x = (np_rng.standard_normal((8, 32)) * 0.02).astype(np.float32)  # 256 values: 4 blocks of 64 = 2 rows each
    x[6:] = 0.0  # the last block is all zeros
    qw = lab.block_formats.quantize_nf4(x)
    expected_absmax = np.abs(x.reshape(4, 64)).max(axis=1)
    assert np.asarray(qw.absmax).shape == (4,) and np.array_equal(qw.absmax, expected_absmax), (
        f"absmax is {np.asarray(qw.absmax)!r}, expected max |x| of each run of 64 values of the flattened (8, 32) tensor: {expected_absmax!r}"
    )
    as_uint8(qw.packed, "quantize_nf4(...).packed of 256 values", (128,))
    codes = nf4_codes(qw.packed).reshape(4, 64)
    assert np.all(codes[3] == 0), f"an all-zero block has codes {np.unique(codes[3]).tolist()}, expected all 0: 0 × (1/0) is NaN, above no midpoint (bitsandbytes' rule)"
    top = np.abs(x.reshape(4, 64)[:3]).argmax(axis=1)
    assert np.all(np.isin(codes[np.arange(3), top], (0, 15))), "each block's largest |x| normalizes to ±1: code 0 or 15"
    assert qw.bits_per_weight == 4.5, f"the NF4Weight stores {qw.bits_per_weight} bits per weight, expected 4.5 (packed uint8 of numel/2, float32 absmax of numel/64)"


@check("quantize_nf4", points=1)
@pytest.mark.parametrize(
    ("make", "kwargs", "bad"),
    [
        (lambda: np.zeros(100, np.float32), {}, 100),
        (lambda: np.zeros(126, np.float32), {"block_size": 63}, 63),
        (lambda: np.zeros(64, np.float64), {}, "float64"),
        (lambda: np.full(64, np.inf, np.float32), {}, "inf"),
    ],
)
def test_nf4_rejects_bad_input(lab, make, kwargs, bad):
    expect_value_error(lab.block_formats.quantize_nf4, make(), what=f"quantize_nf4 of {make().dtype} {make().shape} with {kwargs or 'block_size=64'}", must_mention=(bad,), **kwargs)


@check("dequantize_nf4", points=2)
def test_nf4_decodes_codebook_times_absmax(lab):
    bf = lab.block_formats
    packed = np.array([0x0F, 0x7A] + [0x00] * 30 + [0x77] * 32, np.uint8)
    qw = bf.NF4Weight(packed=packed, absmax=np.array([2.0, 0.5], np.float32), shape=(2, 64), block_size=64)
    expected = np.zeros((2, 64), np.float32)
    expected[0, :] = -1.0 * 2.0
    expected[0, :4] = [-2.0, 2.0, 0.0, np.float32(0.24611230194568634) * np.float32(2.0)]
    expected[1, :] = 0.0
    assert_floats_equal(bf.dequantize_nf4(qw), expected, "dequantize_nf4 of packed 0f 7a 00 ... with absmax [2, 0.5] (high nibble first)")


@check("dequantize_nf4", points=1)
def test_nf4_dequantize_rejects_sizes_that_do_not_fit(lab):
    bf = lab.block_formats
    qw = bf.NF4Weight(packed=np.zeros(32, np.uint8), absmax=np.ones(2, np.float32), shape=(64,), block_size=64)
    expect_value_error(bf.dequantize_nf4, qw, what="dequantize_nf4 with 2 absmax values for one block of 64", must_mention=(2,))


@check("nf4_bits_per_weight", points=2)
@pytest.mark.parametrize(
    ("kwargs", "expected", "story"),
    [
        ({}, 4.5, "4 bits + 32 bits of fp32 absmax / 64 weights"),
        ({"block_size": 128}, 4.25, "4 + 32/128"),
        ({"double_quant": True}, 4.126953125, "4 + 8/64 (8-bit absmax) + 32/(64 × 256) (one fp32 per 256 absmax values) — QLoRA's ≈4.127"),
        ({"block_size": 32, "double_quant": True, "double_quant_block_size": 128}, 4.2578125, "4 + 8/32 + 32/(32 × 128)"),
    ],
)
def test_nf4_bits_per_weight(lab, kwargs, expected, story):
    actual = lab.block_formats.nf4_bits_per_weight(**kwargs)
    assert actual == expected, f"nf4_bits_per_weight({kwargs}) is {actual}, expected {expected} ({story})"


@check("nf4_bits_per_weight", points=1)
def test_nf4_bits_per_weight_rejects_a_zero_block(lab):
    expect_value_error(lab.block_formats.nf4_bits_per_weight, 0, what="nf4_bits_per_weight(block_size=0)", must_mention=(0,))
