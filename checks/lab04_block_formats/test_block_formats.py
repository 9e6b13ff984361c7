"""Public checks for Lab 04 — block formats.

Stored bytes of small hand-made blocks (written here as hex, produced by llama.cpp's reference
quantizer), properties on random weights, and the usual mistakes turned into checks. A failing
check shows the first block that differs, byte by byte, with the layout of the format.
"""

from __future__ import annotations

import numpy as np
import pytest
from lab04_bytes import (
    EDGE_BLOCKS,
    Q4_0_FIELDS,
    Q8_0_FIELDS,
    as_array,
    as_uint8,
    assert_blocks_equal,
    assert_floats_equal,
    block,
    random_weights,
)

from infralens.checking import accepted, assert_exact, expect_correct, expect_value_error, summarize

check = pytest.mark.check


def stored(hex_bytes: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(hex_bytes), np.uint8)


RAMP = np.arange(32, dtype=np.float32)
TIES = block(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5)  # amax 127: d = 1, so x·id = x exactly
PLUS_FIRST = block(0, 0, 0, 0, 1.0, *[0] * 15, -1.0)  # |max| tie: +1 at element 4 comes before -1 at element 20
MINUS_FIRST = -PLUS_FIRST

Q8_0_SNAPSHOTS = {
    "ramp": (RAMP, "d0330004080c1014191d2125292d3135393d42464a4e52565a5e62666b6f73777b7f", "0..31: d = 31/127 stored as fp16 0x33d0, codes round(i × 127/31)"),
    "negative-ramp": (-RAMP, "d03300fcf8f4f0ece7e3dfdbd7d3cfcbc7c3bebab6b2aeaaa6a29e9a95918d898581", "0..-31: d stays positive (amax), codes are negative int8 bytes"),
    "ties": (TIES, "003c7f010203fffefd7f81" + "00" * 23, "x·id = k + 0.5 exactly: roundf goes away from zero (0.5 -> 1, 2.5 -> 3, -2.5 -> -3, 126.5 -> 127)"),
    "fp32-d": (block(10.0, 3.74), "0a2d7f2f" + "00" * 30, "3.74 × (1/d) = 47.498 with the float32 d, but 47.50 with the fp16 one: codes use the float32 d"),
    "plus-minus": (PLUS_FIRST, "0820000000007f" + "00" * 15 + "81" + "00" * 11, "±1: d = 1/127, codes 127 and -127"),
    "zeros": (EDGE_BLOCKS["zeros"], "00" * 34, "all zeros: d = 0, codes 0"),
}

Q8_0_EDGE_SNAPSHOTS = {
    "negative-zeros": ("00" * 34, "all -0.0: amax = |-0.0| = +0.0, so d is +0.0 (bytes 00 00), not -0.0 (00 80)"),
    "mixed-zeros": ("00" * 34, "-0.0 and +0.0 alternating: amax is +0.0, d = +0.0"),
    "tiny-1e-40": ("00" * 34, "amax 1e-40: 1/d overflows float32 to inf, and llama.cpp writes codes 0 (fp16 d is 0 too)"),
    "tiny-3e-37": ("00" * 34, "amax 3e-37 is below ~3.7e-37, so 1/d overflows: codes 0"),
    "small-1e-36": (
        "0000b4bac1c7ced5dbe2e8eff5fc020910161d232a30373d444b51585e656b72787f",
        "amax 1e-36: 1/d fits in float32, so the codes are the usual ones although the fp16 d underflows to 0",
    ),
    "negative-tiny-3e-38": ("00" * 34, "amax 3e-38: 1/d overflows, codes 0"),
    "huge-1e6": ("007c0004080c1014191d2125292d3135393d42464a4e52565a5e62666b6f73777b7f", "amax 3.1e7: d = 244094 is beyond fp16's 65504 and stored as inf (7c00); codes as usual"),
}

Q4_0_SNAPSHOTS = {
    "ramp": (RAMP, "c0c348483737373726262626151515150404", "0..31: max = +31 so d = 31/-8 = -3.875 (fp16 c3c0); byte 0 holds element 0 (code 8) low and element 16 (code 4) high"),
    "negative-ramp": (-RAMP, "c04348483737373726262626151515150404", "0..-31: max = -31 keeps its sign, so d = +3.875 and the codes are the same as for 0..31"),
    "plus-first": (PLUS_FIRST, "00b088888888f0" + "88" * 11, "+1 comes first: max = +1, d = -0.125; element 4 gets code 0, element 20 code 15"),
    "minus-first": (MINUS_FIRST, "003088888888f0" + "88" * 11, "-1 comes first: max = -1, d = +0.125"),
    "ties": (TIES, "f0cb80888888888888808f" + "88" * 7, "max = 127, d = -15.875; 0.5·(1/d) + 8.5 = 8.47 truncates to 8"),
    "fp32-d": (block(10.0, 3.74), "00bd8085" + "88" * 14, "max = 10, d = -1.25; 3.74·(1/d) + 8.5 = 5.508 truncates to 5"),
    "zeros": (EDGE_BLOCKS["zeros"], "0080" + "88" * 16, "all zeros: d = +0.0 / -8 = -0.0 (fp16 8000), every code 8"),
}

Q4_0_EDGE_SNAPSHOTS = {
    "negative-zeros": (
        "0080" + "88" * 16,
        "all -0.0: llama.cpp starts max at +0.0 and replaces it only on a strictly larger |x|, so max stays +0.0 "
        "and d = +0.0 / -8 = -0.0 (bytes 00 80), whatever the signs of the zeros; codes 8",
    ),
    "mixed-zeros": ("0080" + "88" * 16, "-0.0 and +0.0 alternating: max stays +0.0, d = -0.0 (00 80), codes 8"),
    "tiny-1e-40": ("0080" + "00" * 16, "max = +1e-40: d = -1.25e-41 (fp16 -0.0), 1/d overflows float32, and llama.cpp writes codes 0"),
    "tiny-3e-37": ("00806d6c5c5c5b4b4a3a3929292818170707", "max = +3e-37: 1/d fits, so the codes are the usual ones; the fp16 d underflows to -0.0"),
    "small-1e-36": ("00806d6c5c5c5b4b4a3a3929292818170707", "max = +1e-36: the same codes as 3e-37, d underflows to -0.0"),
    "negative-tiny-3e-38": ("00007070718182929293a3a4b4b5c5c5c6d6", "max = -3e-38 keeps its sign: d = +3.75e-39 underflows to +0.0; 1/d still fits"),
    "huge-1e6": ("00fc48483737373726262626151515150404", "max = +3.1e7: d = -3.875e6 is stored as fp16 -inf (fc00); codes as for 0..31"),
}


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
    ids=["Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"],
)
def test_bits_per_weight_counts_every_byte_of_the_block(lab, fmt, expected, story):
    actual = lab.block_formats.bits_per_weight(fmt)
    assert_exact(actual, expected, f"bits_per_weight({fmt!r})", f"{story}; every field of BLOCK_LAYOUTS[{fmt!r}] is stored, and the result is a Python float")


@check("bits_per_weight", points=1)
def test_bits_per_weight_rejects_an_unknown_format(lab):
    bf = lab.block_formats
    expect_correct(bf.bits_per_weight, "Q4_0", expected=4.5, what="bits_per_weight('Q4_0')")
    expect_value_error(bf.bits_per_weight, "Q3_X", what="bits_per_weight('Q3_X')", must_mention=("Q3_X", "Q4_0"))


# --- quantize_q8_0 ----------------------------------------------------------------------------


@check("quantize_q8_0", points=3)
@pytest.mark.parametrize("name", list(Q8_0_SNAPSHOTS))
def test_q8_0_stores_llama_cpp_bytes(lab, name):
    values, expected, story = Q8_0_SNAPSHOTS[name]
    actual = lab.block_formats.quantize_q8_0(values)
    assert_blocks_equal(actual, stored(expected), 34, f"quantize_q8_0 of one block ({story})", values, Q8_0_FIELDS)


@check("quantize_q8_0", points=2)
@pytest.mark.parametrize("name", list(Q8_0_EDGE_SNAPSHOTS))
def test_q8_0_edge_blocks_store_llama_cpp_bytes(lab, name):
    values = EDGE_BLOCKS[name]
    expected, story = Q8_0_EDGE_SNAPSHOTS[name]
    assert_blocks_equal(lab.block_formats.quantize_q8_0(values), stored(expected), 34, f"quantize_q8_0 of the {name} block ({story})", values, Q8_0_FIELDS)


@check("quantize_q8_0", points=2)
def test_q8_0_blocks_run_along_the_last_axis(lab, rng):
    bf = lab.block_formats
    snapshots = np.stack([stored(expected) for _, expected, _ in Q8_0_SNAPSHOTS.values()])  # (6, 34)
    values = np.stack([v for v, _, _ in Q8_0_SNAPSHOTS.values()])  # (6, 32)
    order = list(range(6))
    rng.shuffle(order)
    x = values[order].reshape(3, 64)  # 3 rows of 2 blocks each
    expected = snapshots[order].reshape(3, 68)
    assert_blocks_equal(bf.quantize_q8_0(x), expected, 34, "quantize_q8_0 of a (3, 64) matrix (each row holds 2 blocks)", x, Q8_0_FIELDS)
    batch = x.reshape(3, 1, 64)
    assert_blocks_equal(bf.quantize_q8_0(batch), expected.reshape(3, 1, 68), 34, "quantize_q8_0 of a (3, 1, 64) array (leading axes are kept)", batch, Q8_0_FIELDS)


@check("quantize_q8_0", points=2)
def test_q8_0_properties_on_random_weights(lab, seed):
    np_rng = np.random.default_rng(seed)
    x = random_weights(np_rng, 64, 32 * int(np_rng.integers(1, 9)))
    result = as_uint8(lab.block_formats.quantize_q8_0(x), f"quantize_q8_0 of a {x.shape} matrix", (x.shape[0], x.shape[1] // 32 * 34))
    blocks, values = result.reshape(-1, 34), x.reshape(-1, 32)
    amax = np.abs(values).max(axis=1)
    d_stored = blocks[:, :2].copy().view("<f2")[:, 0]
    with np.errstate(over="ignore"):  # d above 65504 is stored as fp16 inf
        expected_d = (amax / np.float32(127)).astype(np.float16)
    wrong = np.flatnonzero(d_stored != expected_d)
    assert wrong.size == 0, (
        f"block {wrong[0]}: stored d is {float(d_stored[wrong[0]])!r}, expected fp16(amax / 127) = {float(expected_d[wrong[0]])!r} "
        f"(amax = {float(amax[wrong[0]])!r}); d goes first, as 2 little-endian fp16 bytes"
    )
    codes = blocks[:, 2:].view(np.int8)
    extreme = codes[np.arange(len(codes)), np.abs(values).argmax(axis=1)].astype(int)
    off = np.flatnonzero((amax > 1e-36) & (np.abs(extreme) != 127))  # below ~3.7e-37, 1/d overflows and the codes are 0
    assert off.size == 0, (
        f"{off.size} blocks: the element with the largest |x| should get code ±127 (d = amax/127), but block {off[0]} "
        f"(amax {float(amax[off[0]])!r}) gave it code {extreme[off[0]]}"
    )


@check("quantize_q8_0", points=1)
def test_q8_0_accepts_float16_exactly(lab):
    names = ["ramp", "negative-ramp", "ties", "plus-minus", "zeros"]  # values every fp16 holds exactly
    x = np.stack([Q8_0_SNAPSHOTS[n][0] for n in names]).astype(np.float16)  # (5, 32)
    expected = np.stack([stored(Q8_0_SNAPSHOTS[n][1]) for n in names])
    assert_blocks_equal(lab.block_formats.quantize_q8_0(x), expected, 34, "quantize_q8_0 of float16 input (widened exactly to float32, then quantized)", x, Q8_0_FIELDS)


BAD_FLOAT_INPUTS = [
    (lambda: np.zeros((4, 48), np.float32), 48, "K=48 is not a multiple of the block size 32"),
    (lambda: np.zeros(31, np.float32), 31, "K=31 is not a multiple of 32"),
    (lambda: np.zeros((2, 64), np.float64), "float64", "float64 would be rounded to float32 silently: convert explicitly"),
    (lambda: np.arange(64, dtype=np.int32), "int32", "integers are not weights to quantize"),
    (lambda: np.ones(32, dtype=bool), "bool", "a bool array is not weights"),
    (lambda: np.array(1.0, np.float32), None, "a 0-d array has no last axis to cut into blocks"),
    (lambda: block(1.0, np.nan), "nan", "NaN has no code"),
    (lambda: block(1.0, -np.inf), "inf", "Inf has no code"),
    (lambda: np.stack([RAMP, block(np.inf)]), "inf", "Inf in the second row has no code"),
]
BAD_FLOAT_IDS = ["K48", "K31", "float64", "int32", "bool", "0-d", "nan", "-inf", "inf-row-1"]


@check("quantize_q8_0", points=2)
@pytest.mark.parametrize(("make", "bad", "why"), BAD_FLOAT_INPUTS, ids=BAD_FLOAT_IDS)
def test_q8_0_rejects_bad_input(lab, make, bad, why):
    bf = lab.block_formats
    values, expected, _ = Q8_0_SNAPSHOTS["ramp"]
    assert_blocks_equal(accepted(bf.quantize_q8_0, values, what="quantize_q8_0 of 0..31"), stored(expected), 34, "quantize_q8_0 of 0..31", values, Q8_0_FIELDS)
    expect_value_error(bf.quantize_q8_0, make(), what=f"quantize_q8_0 ({why})", must_mention=() if bad is None else (bad,))


# --- dequantize_q8_0 --------------------------------------------------------------------------


@check("dequantize_q8_0", points=2)
def test_q8_0_decodes_with_the_stored_fp16_scale(lab):
    actual = lab.block_formats.dequantize_q8_0(stored(Q8_0_SNAPSHOTS["ramp"][1]))
    codes = np.array([0, 4, 8, 12, 16, 20, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 66, 70, 74, 78, 82, 86, 90, 94, 98, 102, 107, 111, 115, 119, 123, 127])
    # d is stored as fp16 0x33d0 = 0.244140625 (31/127 = 0.2440945 is not an fp16); code × d is exact in float32.
    expected = (codes * 0.244140625).astype(np.float32)
    assert_floats_equal(actual, expected, "dequantize_q8_0 of d0 33 00 04 08 ... 7f (d = fp16 0x33d0 = 0.244140625)")


@check("dequantize_q8_0", points=2)
def test_q8_0_decodes_many_blocks_and_negative_codes(lab):
    blocks = ("003c7f010203fffefd7f81" + "00" * 23, "00c0" + "81ff" * 16)
    data = stored("".join(blocks)).reshape(1, 68)
    expected = np.zeros((1, 64), np.float32)
    expected[0, :9] = [127, 1, 2, 3, -1, -2, -3, 127, -127]  # d = 1.0 (fp16 3c00)
    expected[0, 32:] = np.tile([-127 * -2.0, -1 * -2.0], 16)  # d = -2.0 (fp16 c000); 0x81 is int8 -127, 0xff is -1
    assert_floats_equal(lab.block_formats.dequantize_q8_0(data), expected, "dequantize_q8_0 of a (1, 68) row of 2 blocks")
    batch = data.reshape(1, 1, 68)
    assert_floats_equal(lab.block_formats.dequantize_q8_0(batch), expected.reshape(1, 1, 64), "dequantize_q8_0 of a (1, 1, 68) array (leading axes are kept)")


@check("dequantize_q8_0", points=1)
def test_q8_0_decodes_zero_and_infinite_scales_as_ieee_products(lab):
    # d = -0.0 (00 80): code × -0.0 is -0.0 for positive codes, +0.0 for negative ones, -0.0 for code 0.
    # d = inf (00 7c): 0 × inf is NaN, ±1 × inf is ±inf — what llama.cpp's decoder computes.
    data = stored("0080" + "01ff00" + "00" * 29 + "007c" + "01ff00" + "00" * 29)
    expected = np.zeros(64, np.float32)
    expected[:32] = -0.0
    expected[1] = 0.0
    expected[32:] = np.nan
    expected[32:34] = [np.inf, -np.inf]
    with np.errstate(invalid="ignore"):  # 0 × inf
        actual = lab.block_formats.dequantize_q8_0(data)
    assert_floats_equal(actual, expected, "dequantize_q8_0 of a block with d = -0.0 and one with d = inf (codes 1, -1, 0, ...)")


@check("dequantize_q8_0", points=1)
@pytest.mark.parametrize(("make", "bad"), [(lambda: np.zeros((2, 35), np.uint8), 35), (lambda: np.zeros(34, np.int8), "int8"), (lambda: np.zeros(34, bool), "bool")], ids=["length-35", "int8", "bool"])
def test_q8_0_dequantize_rejects_bad_bytes(lab, make, bad):
    bf = lab.block_formats
    data = stored(Q8_0_SNAPSHOTS["ties"][1])
    expected = np.zeros(32, np.float32)
    expected[:9] = [127, 1, 2, 3, -1, -2, -3, 127, -127]
    assert_floats_equal(accepted(bf.dequantize_q8_0, data, what="dequantize_q8_0 of 00 3c 7f 01 ..."), expected, "dequantize_q8_0 of 00 3c 7f 01 02 03 ff ... (d = 1.0)")
    expect_value_error(bf.dequantize_q8_0, make(), what=f"dequantize_q8_0 of {make().dtype} {make().shape} (34 bytes per block)", must_mention=(bad,))


# --- quantize_q4_0 ----------------------------------------------------------------------------


@check("quantize_q4_0", points=3)
@pytest.mark.parametrize("name", list(Q4_0_SNAPSHOTS))
def test_q4_0_stores_llama_cpp_bytes(lab, name):
    values, expected, story = Q4_0_SNAPSHOTS[name]
    actual = lab.block_formats.quantize_q4_0(values)
    assert_blocks_equal(actual, stored(expected), 18, f"quantize_q4_0 of one block ({story})", values, Q4_0_FIELDS)


@check("quantize_q4_0", points=2)
@pytest.mark.parametrize("name", list(Q4_0_EDGE_SNAPSHOTS))
def test_q4_0_edge_blocks_store_llama_cpp_bytes(lab, name):
    values = EDGE_BLOCKS[name]
    expected, story = Q4_0_EDGE_SNAPSHOTS[name]
    assert_blocks_equal(lab.block_formats.quantize_q4_0(values), stored(expected), 18, f"quantize_q4_0 of the {name} block ({story})", values, Q4_0_FIELDS)


@check("quantize_q4_0", points=2)
def test_q4_0_blocks_run_along_the_last_axis(lab, rng):
    snapshots = np.stack([stored(expected) for _, expected, _ in Q4_0_SNAPSHOTS.values()])[:6]  # (6, 18)
    values = np.stack([v for v, _, _ in Q4_0_SNAPSHOTS.values()])[:6]  # (6, 32)
    order = list(range(6))
    rng.shuffle(order)
    x = values[order].reshape(2, 1, 96)  # 2 × 1 rows of 3 blocks each
    expected = snapshots[order].reshape(2, 1, 54)
    assert_blocks_equal(lab.block_formats.quantize_q4_0(x), expected, 18, "quantize_q4_0 of a (2, 1, 96) array (each row holds 3 blocks; leading axes are kept)", x, Q4_0_FIELDS)


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
    result = as_uint8(lab.block_formats.quantize_q4_0(x), f"quantize_q4_0 of a {x.shape} matrix", (x.shape[0], x.shape[1] // 32 * 18))
    blocks, values = result.reshape(-1, 18), x.reshape(-1, 32)
    signed_max = values[np.arange(len(values)), np.abs(values).argmax(axis=1)]
    d_stored = blocks[:, :2].copy().view("<f2")[:, 0]
    with np.errstate(over="ignore"):  # d above 65504 is stored as fp16 inf
        expected_d = (signed_max / np.float32(-8)).astype(np.float16)
    nonzero = signed_max != 0
    wrong = np.flatnonzero((d_stored != expected_d) & nonzero)
    assert wrong.size == 0, (
        f"block {wrong[0]}: stored d is {float(d_stored[wrong[0]])!r}, expected fp16(max / -8) = {float(expected_d[wrong[0]])!r} where max = "
        f"{float(signed_max[wrong[0]])!r} is the value with the largest |x|, sign kept"
    )
    extreme = np.abs(values).argmax(axis=1)
    byte = blocks[np.arange(len(blocks)), 2 + extreme % 16]
    code = np.where(extreme < 16, byte & 0x0F, byte >> 4)
    off = np.flatnonzero(nonzero & (code != 0))
    assert off.size == 0, (
        f"{off.size} blocks: the element with the largest |x| should get code 0 (it is max, and max · (1/d) + 8.5 = -8 + 8.5 = 0.5), "
        f"but block {off[0]} gave it code {code[off[0]]}"
    )


@check("quantize_q4_0", points=1)
def test_q4_0_accepts_float16_exactly(lab):
    names = ["ramp", "negative-ramp", "plus-first", "minus-first", "ties", "zeros"]  # values every fp16 holds exactly
    x = np.stack([Q4_0_SNAPSHOTS[n][0] for n in names]).astype(np.float16)
    expected = np.stack([stored(Q4_0_SNAPSHOTS[n][1]) for n in names])
    assert_blocks_equal(lab.block_formats.quantize_q4_0(x), expected, 18, "quantize_q4_0 of float16 input (widened exactly to float32, then quantized)", x, Q4_0_FIELDS)


@check("quantize_q4_0", points=2)
@pytest.mark.parametrize(("make", "bad", "why"), BAD_FLOAT_INPUTS, ids=BAD_FLOAT_IDS)
def test_q4_0_rejects_bad_input(lab, make, bad, why):
    bf = lab.block_formats
    values, expected, _ = Q4_0_SNAPSHOTS["ramp"]
    assert_blocks_equal(accepted(bf.quantize_q4_0, values, what="quantize_q4_0 of 0..31"), stored(expected), 18, "quantize_q4_0 of 0..31", values, Q4_0_FIELDS)
    expect_value_error(bf.quantize_q4_0, make(), what=f"quantize_q4_0 ({why})", must_mention=() if bad is None else (bad,))


# --- dequantize_q4_0 --------------------------------------------------------------------------

RAMP_Q4_0_CODES = np.array([8, 8, 7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0])


@check("dequantize_q4_0", points=2)
def test_q4_0_decodes_low_nibbles_then_high_nibbles(lab):
    data = stored(Q4_0_SNAPSHOTS["ramp"][1])  # the 0..31 block, d = -3.875
    expected = ((RAMP_Q4_0_CODES - 8) * np.float32(-3.875)).astype(np.float32)  # element 0: 0 × -3.875 = -0.0
    assert_floats_equal(lab.block_formats.dequantize_q4_0(data), expected, "dequantize_q4_0 of c0 c3 48 48 37 ... (element j: low nibble of byte j; element j+16: high nibble)")


@check("dequantize_q4_0", points=2)
def test_q4_0_decodes_many_blocks_with_signed_scales(lab):
    data = np.concatenate([stored(Q4_0_SNAPSHOTS[n][1]) for n in ("ramp", "negative-ramp", "zeros")]).reshape(1, 1, 54)
    expected = np.concatenate(
        [(RAMP_Q4_0_CODES - 8) * np.float32(-3.875), (RAMP_Q4_0_CODES - 8) * np.float32(3.875), np.full(32, -0.0)]  # zeros: (8 - 8) × -0.0 = -0.0
    ).astype(np.float32).reshape(1, 1, 96)
    assert_floats_equal(lab.block_formats.dequantize_q4_0(data), expected, "dequantize_q4_0 of a (1, 1, 54) array: the 0..31 block (d = -3.875), the 0..-31 block (d = +3.875), a zero block (d = -0.0)")


@check("dequantize_q4_0", points=1)
@pytest.mark.parametrize(("make", "bad"), [(lambda: np.zeros((2, 19), np.uint8), 19), (lambda: np.zeros(18, np.int8), "int8"), (lambda: np.zeros(18, bool), "bool")], ids=["length-19", "int8", "bool"])
def test_q4_0_dequantize_rejects_bad_bytes(lab, make, bad):
    bf = lab.block_formats
    expected = ((RAMP_Q4_0_CODES - 8) * np.float32(-3.875)).astype(np.float32)
    actual = accepted(bf.dequantize_q4_0, stored(Q4_0_SNAPSHOTS["ramp"][1]), what="dequantize_q4_0 of c0 c3 48 48 ...")
    assert_floats_equal(actual, expected, "dequantize_q4_0 of c0 c3 48 48 37 ...")
    expect_value_error(bf.dequantize_q4_0, make(), what=f"dequantize_q4_0 of {make().dtype} {make().shape} (18 bytes per block)", must_mention=(bad,))


# --- NF4 --------------------------------------------------------------------------------------


def nf4_codes(packed: np.ndarray) -> np.ndarray:
    """The 4-bit codes of packed bytes in bitsandbytes' order: the high nibble is the even element."""
    return np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1)


def nf4_packed(codes: list[int]) -> np.ndarray:
    return np.array([codes[i] << 4 | codes[i + 1] for i in range(0, len(codes), 2)], np.uint8)


def assert_nf4_fields(qw, what: str, numel: int, blocks: int, shape: tuple[int, ...], block_size: int) -> np.ndarray:
    """The fields of a learner's NF4Weight: packed uint8 (numel/2,), absmax float32 (blocks,), shape a
    tuple of ints, block_size an int; returns the packed codes' bytes."""
    packed = as_array(qw.packed, f"{what}.packed", np.uint8, (numel // 2,), "two 4-bit codes per byte of the flattened tensor")
    as_array(qw.absmax, f"{what}.absmax", np.float32, (blocks,), f"one fp32 absmax per block of {block_size}")
    assert_exact(qw.shape, shape, f"{what}.shape", "the original shape, as a tuple of ints")
    assert_exact(qw.block_size, block_size, f"{what}.block_size", "an int")
    return packed


@check("quantize_nf4", points=2)
def test_nf4_worked_example(lab):
    x = np.zeros(64, np.float32)
    x[:3] = [1.0, -0.5, 0.25]
    qw = lab.block_formats.quantize_nf4(x)
    packed = assert_nf4_fields(qw, "quantize_nf4([1, -0.5, 0.25, 0, ...])", 64, 1, (64,), 64)
    assert_blocks_equal(packed, stored("f2a7" + "77" * 30), 32, "quantize_nf4([1, -0.5, 0.25, 0, ...]).packed (codes 15, 2, 10, 7, ...)")
    assert_floats_equal(qw.absmax, np.array([1.0], np.float32), "quantize_nf4([1, -0.5, 0.25, 0, ...]).absmax", "max |x| of the block")


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
    packed = as_uint8(bf.quantize_nf4(x).packed, "quantize_nf4(...).packed of 64 values", (32,))
    codes = nf4_codes(packed)
    assert codes[1:16].tolist() == list(range(15)), (
        f"values exactly on the midpoint between codes i and i+1 got codes {codes[1:16].tolist()}, expected {list(range(15))}: "
        "bitsandbytes only moves up when x > midpoint"
    )
    assert codes[16:31].tolist() == list(range(1, 16)), f"values one ulp above each midpoint got {codes[16:31].tolist()}, expected {list(range(1, 16))}"


# Two blocks where the float32 product x × (1/absmax), bitsandbytes' normalization, and the
# quotient x / absmax (or a float64 computation) land on different sides of a midpoint.
RECIPROCAL_VALUES = [
    [3.0, -0.41373518, 0.11937045, 1.1679376, 1.9283608],  # absmax 3
    [0.7, -0.09653821, -0.03186751, 0.027853105, 0.14246488, 0.44995084],  # absmax 0.7
]
RECIPROCAL_CODES = [[15, 5, 8, 12, 14], [15, 5, 6, 7, 9, 13]]
DIVIDED_CODES = [[15, 6, 7, 11, 13], [15, 6, 6, 7, 9, 13]]  # x / absmax in float32
FLOAT64_CODES = [[15, 6, 8, 12, 14], [15, 6, 7, 8, 10, 14]]  # normalized in float64


@check("quantize_nf4", points=2)
def test_nf4_normalizes_with_a_reciprocal_then_a_multiply(lab):
    x = np.zeros((2, 64), np.float32)
    expected = np.full((2, 64), 7)  # zeros normalize to 0.0: code 7
    for row, (values, codes) in enumerate(zip(RECIPROCAL_VALUES, RECIPROCAL_CODES)):
        x[row, : len(values)] = np.array(values, np.float32)
        expected[row, : len(codes)] = codes
    what = "quantize_nf4 of 2 blocks of 64 with absmax 3.0 and 0.7 (values picked one ulp from a midpoint)"
    qw = lab.block_formats.quantize_nf4(x)
    packed = as_uint8(qw.packed, f"{what}.packed", (64,))
    codes = nf4_codes(packed).reshape(2, 64)
    for row in range(2):
        n = len(RECIPROCAL_CODES[row])
        got = codes[row, :n].tolist()
        if got == RECIPROCAL_CODES[row]:
            continue
        cause = ""
        if got == DIVIDED_CODES[row]:
            cause = " These are the codes of x / absmax: bitsandbytes computes 1/absmax once per block and multiplies, in float32, and the two differ by an ulp here."
        elif got == FLOAT64_CODES[row]:
            cause = " These are the codes of a float64 normalization: bitsandbytes normalizes in float32 (x × (1/absmax))."
        pytest.fail(
            f"{what}: block {row} (absmax {RECIPROCAL_VALUES[row][0]}) has codes {got} for its first {n} values "
            f"{RECIPROCAL_VALUES[row]}, expected {RECIPROCAL_CODES[row]}.{cause}",
            pytrace=False,
        )
    assert_blocks_equal(packed, nf4_packed(expected.reshape(-1).tolist()), 32, f"{what}.packed")


@check("quantize_nf4", points=2)
def test_nf4_all_zero_blocks_store_absmax_plus_zero(lab):
    x = np.zeros((3, 64), np.float32)
    x[1] = -0.0
    x[2, ::2] = -0.0
    what = "quantize_nf4 of 3 all-zero blocks (+0.0, -0.0, and alternating signs)"
    qw = lab.block_formats.quantize_nf4(x)
    packed = assert_nf4_fields(qw, what, 192, 3, (3, 64), 64)
    absmax = qw.absmax
    if not np.all(absmax == 0):
        pytest.fail(f"{what}: absmax is {summarize(absmax)}, expected [0.0, 0.0, 0.0]: max |x| of a block of zeros", pytrace=False)
    negative = np.flatnonzero(np.signbit(absmax))
    if negative.size:
        pytest.fail(
            f"{what}: absmax of block {negative[0]} is -0.0, expected +0.0 (sign bit clear): |x| is never -0.0, and bitsandbytes "
            "stores the max of fabsf(x). max(x.max(), -x.min()) can return -0.0 for a block of zeros; take np.abs first, or add +0.0",
            pytrace=False,
        )
    codes = nf4_codes(packed)
    assert np.all(codes == 0), (
        f"{what}: codes {sorted(set(codes.tolist()))}, expected all 0: 0 × (1/0) is NaN, which is above no midpoint (bitsandbytes' rule)"
    )


@check("quantize_nf4", points=2)
def test_nf4_blocks_follow_the_flattened_tensor(lab, seed):
    np_rng = np.random.default_rng(seed)
    x = (np_rng.standard_normal((8, 32)) * 0.02).astype(np.float32)  # 256 values: 4 blocks of 64 = 2 rows each
    x[6:] = 0.0  # the last block is all zeros
    what = "quantize_nf4 of an (8, 32) tensor"
    qw = lab.block_formats.quantize_nf4(x)
    packed = assert_nf4_fields(qw, what, 256, 4, (8, 32), 64)
    expected_absmax = np.abs(x.reshape(4, 64)).max(axis=1)
    assert_floats_equal(qw.absmax, expected_absmax, f"{what}.absmax", "max |x| of each run of 64 values of the flattened tensor (C order): here 2 rows of 32 per block")
    codes = nf4_codes(packed).reshape(4, 64)
    assert np.all(codes[3] == 0), f"an all-zero block has codes {sorted(set(codes[3].tolist()))}, expected all 0: 0 × (1/0) is NaN, above no midpoint (bitsandbytes' rule)"
    top = np.abs(x.reshape(4, 64)[:3]).argmax(axis=1)
    assert np.all(np.isin(codes[np.arange(3), top], (0, 15))), "each block's largest |x| normalizes to ±1: code 0 or 15"
    assert_exact(qw.bits_per_weight, 4.5, f"{what}.bits_per_weight", "packed uint8 of numel/2 bytes and float32 absmax of numel/64 values: 4.5 bits per weight")


NF4_BAD_INPUTS = [
    (lambda: np.zeros(100, np.float32), {}, (100,)),
    (lambda: np.zeros(126, np.float32), {"block_size": 63}, ("block_size", 63)),
    (lambda: np.zeros(64, np.float32), {"block_size": 0}, ("block_size",)),
    (lambda: np.zeros(64, np.float32), {"block_size": True}, ("block_size",)),
    (lambda: np.zeros(64, np.float32), {"block_size": 64.0}, ("block_size",)),
    (lambda: np.zeros(64, np.float64), {}, ("float64",)),
    (lambda: np.zeros(64, bool), {}, ("bool",)),
    (lambda: np.full(64, np.inf, np.float32), {}, ("inf",)),
    (lambda: block(np.nan, *[0.0] * 31).repeat(2), {}, ("nan",)),
]


@check("quantize_nf4", points=1)
@pytest.mark.parametrize(("make", "kwargs", "bad"), NF4_BAD_INPUTS, ids=["numel-100", "block-63", "block-0", "block-True", "block-64.0", "float64", "bool", "inf", "nan"])
def test_nf4_rejects_bad_input(lab, make, kwargs, bad):
    bf = lab.block_formats
    x = np.zeros(64, np.float32)
    x[:3] = [1.0, -0.5, 0.25]
    qw = accepted(bf.quantize_nf4, x, what="quantize_nf4([1, -0.5, 0.25, 0, ...])")
    packed = assert_nf4_fields(qw, "quantize_nf4([1, -0.5, 0.25, 0, ...])", 64, 1, (64,), 64)
    assert_blocks_equal(packed, stored("f2a7" + "77" * 30), 32, "quantize_nf4([1, -0.5, 0.25, 0, ...]).packed (codes 15, 2, 10, 7, ...)")
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "block_size=64"
    expect_value_error(bf.quantize_nf4, make(), what=f"quantize_nf4 of {make().dtype} {make().shape} with {shown}", must_mention=bad, **kwargs)


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
def test_nf4_decodes_an_all_zero_block_to_negative_zeros(lab):
    bf = lab.block_formats
    qw = bf.NF4Weight(packed=np.zeros(32, np.uint8), absmax=np.zeros(1, np.float32), shape=(64,), block_size=64)
    expected = np.full(64, -0.0, np.float32)  # NF4_CODE[0] × absmax = -1.0 × +0.0
    assert_floats_equal(bf.dequantize_nf4(qw), expected, "dequantize_nf4 of an all-zero block (codes 0, absmax +0.0)", "each value is NF4_CODE[code] × absmax in float32, and -1.0 × +0.0 is -0.0")


@check("dequantize_nf4", points=1)
@pytest.mark.parametrize(
    ("fields", "bad", "story"),
    [
        ({"packed": np.zeros(32, np.uint8), "absmax": np.ones(2, np.float32), "shape": (64,), "block_size": 64}, (2,), "2 absmax values for one block of 64"),
        ({"packed": np.zeros(31, np.uint8), "absmax": np.ones(1, np.float32), "shape": (64,), "block_size": 64}, (31, 64), "31 packed bytes for 64 elements"),
        ({"packed": np.zeros(32, np.int64), "absmax": np.ones(1, np.float32), "shape": (64,), "block_size": 64}, ("int64",), "packed codes as int64"),
        ({"packed": np.zeros(32, np.uint8), "absmax": np.ones(64, np.float32), "shape": (64,), "block_size": True}, ("block_size",), "block_size=True"),
    ],
    ids=["absmax-size", "packed-size", "packed-int64", "block-True"],
)
def test_nf4_dequantize_rejects_sizes_that_do_not_fit(lab, fields, bad, story):
    bf = lab.block_formats
    good = bf.NF4Weight(packed=np.array([0xF0] * 32, np.uint8), absmax=np.array([0.5], np.float32), shape=(64,), block_size=64)
    expected = np.tile(np.array([0.5, -0.5], np.float32), 32)
    assert_floats_equal(accepted(bf.dequantize_nf4, good, what="dequantize_nf4 of packed f0 f0 ... with absmax [0.5]"), expected, "dequantize_nf4 of packed f0 f0 ... with absmax [0.5]")
    expect_value_error(bf.dequantize_nf4, bf.NF4Weight(**fields), what=f"dequantize_nf4 with {story}", must_mention=bad)


@check("nf4_bits_per_weight", points=2)
@pytest.mark.parametrize(
    ("kwargs", "expected", "story"),
    [
        ({}, 4.5, "4 bits + 32 bits of fp32 absmax / 64 weights"),
        ({"block_size": 128}, 4.25, "4 + 32/128"),
        ({"block_size": 32}, 5.0, "4 + 32/32, still a float"),
        ({"double_quant": True}, 4.126953125, "4 + 8/64 (8-bit absmax) + 32/(64 × 256) (one fp32 per 256 absmax values) — QLoRA's ≈4.127"),
        ({"block_size": 32, "double_quant": True, "double_quant_block_size": 128}, 4.2578125, "4 + 8/32 + 32/(32 × 128)"),
    ],
    ids=["default", "block-128", "block-32", "double-quant", "double-quant-32-128"],
)
def test_nf4_bits_per_weight(lab, kwargs, expected, story):
    actual = lab.block_formats.nf4_bits_per_weight(**kwargs)
    assert_exact(actual, expected, f"nf4_bits_per_weight({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})", f"{story}; the result is a Python float")


@check("nf4_bits_per_weight", points=1)
@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"block_size": 0}, "block_size"),
        ({"block_size": True}, "block_size"),
        ({"block_size": 64.0}, "block_size"),
        ({"double_quant": True, "double_quant_block_size": 0}, "double_quant_block_size"),
        ({"double_quant": 1}, "double_quant"),
    ],
    ids=["block-0", "block-True", "block-64.0", "dq-block-0", "flag-1"],
)
def test_nf4_bits_per_weight_rejects_bad_arguments(lab, kwargs, bad):
    bf = lab.block_formats
    expect_correct(bf.nf4_bits_per_weight, 64, True, 256, expected=4.126953125, what="nf4_bits_per_weight(64, True, 256)")
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    expect_value_error(bf.nf4_bits_per_weight, what=f"nf4_bits_per_weight({shown})", must_mention=(bad,), **kwargs)
