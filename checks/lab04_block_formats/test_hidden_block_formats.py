"""Hidden checks for Lab 04: the learner against the reference, byte for byte.

Every check runs a fixed list of deterministic cases first (the edge blocks, exact ties, signed
zeros, boundary sizes, valid and invalid inputs), then fresh random inputs from the run's seed
(printed in the header, ``--seed`` to replay), so a grade never depends on the seed.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from lab04_bytes import EDGE_BLOCKS, Q4_0_FIELDS, Q8_0_FIELDS, as_array, assert_blocks_equal, assert_floats_equal, block, random_weights

from infralens.checking import assert_exact, bounded, outcome, summarize

check = pytest.mark.check
FIXED_SEEDS = (0, 1)  # the deterministic random inputs every run checks before the run's own seed


def agree(mine: Callable[[], Any], theirs: Callable[[], Any], what: str, compare: Callable[[Any, Any, str], None]) -> None:
    """The learner's outcome must be the reference's: both raise ValueError, or both return and ``compare`` agrees."""
    expected = outcome(theirs)
    try:
        actual = outcome(mine)
    except NotImplementedError:
        raise
    except Exception as error:  # any other exception is a wrong answer: say which, without a traceback
        pytest.fail(f"{what} raised {type(error).__name__}: {bounded(str(error))}", pytrace=False)
    if expected[0] == "ValueError" and actual[0] != "ValueError":
        pytest.fail(f"{what} should raise ValueError, but returned {summarize(actual[1])}", pytrace=False)
    if expected[0] == "value" and actual[0] == "ValueError":
        pytest.fail(f"{what} is a valid input, but raised ValueError", pytrace=False)
    if expected[0] == "value":
        compare(actual[1], expected[1], what)


def random_shape(np_rng: np.random.Generator, multiple: int = 32) -> tuple[int, ...]:
    k = multiple * int(np_rng.integers(1, 12))
    return (*[int(n) for n in np_rng.integers(1, 6, size=int(np_rng.integers(0, 3)))], int(np_rng.integers(1, 40)), k)


def tie_blocks(np_rng: np.random.Generator, n: int) -> np.ndarray:
    """Blocks whose scaled values land exactly on .5 ties (Q8_0: amax 127·2^e) and on Q4_0's integer grid (max ±8·2^e)."""
    e = np_rng.integers(-12, 12, size=(n, 1)).astype(np.float64)
    q8 = (np_rng.integers(-127, 127, size=(n, 32)) + 0.5) * 2.0**e
    q8[:, 0] = np_rng.choice([-127.0, 127.0], size=n) * 2.0 ** e[:, 0]
    q4 = np_rng.integers(-16, 17, size=(n, 32)) / 2 * 2.0**e
    q4[:, 0] = np_rng.choice([-8.0, 8.0], size=n) * 2.0 ** e[:, 0]
    q4[:, 1] = -q4[:, 0]  # a |max| tie right behind the first extreme
    return np.concatenate([q8, q4]).astype(np.float32)


def edge_blocks() -> np.ndarray:
    """Fixed blocks: llama.cpp's edge rules, worked examples, |max| ties both ways, every magnitude."""
    ramp = np.arange(32, dtype=np.float32)
    plus_first = block(0, 0, 0, 0, 1.0, *[0] * 15, -1.0)
    rows = [*EDGE_BLOCKS.values(), ramp, -ramp, ramp - 15.5, plus_first, -plus_first, 0.37 * plus_first, np.full(32, 2.5), np.full(32, -1e-3)]
    rows += [block(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5), block(10.0, 3.74), block(-8.0, -7.5, -0.5, 0.49, 0.5, 6.4, 6.5, 7.5)]
    for magnitude in (1e-45, 1e-40, 1e-38, 2.4e-38, 3e-37, 3.8e-37, 1e-20, 5e-8, 1.0, 7e4, 1e7, 1e20, 3e38):
        rows.append(np.linspace(-1.0, 0.6, 32) * magnitude)
        rows.append(np.linspace(-0.6, 1.0, 32) * magnitude)
    return np.array(rows, dtype=np.float32)


def fixed_blocks() -> np.ndarray:
    """The deterministic blocks every GGUF check starts with: the edge blocks and 600 tie blocks from a fixed seed, padded to a multiple of 4."""
    x = np.concatenate([edge_blocks(), tie_blocks(np.random.default_rng(FIXED_SEEDS[0]), 300)])
    return np.concatenate([x, np.zeros((-len(x) % 4, 32), np.float32)])


def fixed_rngs() -> list[np.random.Generator]:
    """A generator per fixed seed: the deterministic random inputs, the same under every run's seed."""
    return [np.random.default_rng(s) for s in FIXED_SEEDS]


def fixed_then_seeded(seed: int) -> list[np.random.Generator]:
    return fixed_rngs() + [np.random.default_rng(seed)]


# Inputs every float quantizer must accept (boundary sizes included) or reject, in a fixed order.
QUANTIZER_INPUTS: list[tuple[str, Callable[[], np.ndarray]]] = [
    ("one block of 32", lambda: np.arange(32, dtype=np.float32) - 7.5),
    ("a float16 (2, 64) array", lambda: (np.arange(128, dtype=np.float16) - 60).reshape(2, 64)),
    ("a (1, 1, 1, 32) array", lambda: np.linspace(-3, 2, 32, dtype=np.float32).reshape(1, 1, 1, 32)),
    ("a (5, 96) array of -0.0", lambda: np.full((5, 96), -0.0, np.float32)),
    ("K=33", lambda: np.zeros((2, 33), np.float32)),
    ("K=16", lambda: np.zeros(16, np.float32)),
    ("a 0-d array", lambda: np.array(3.0, np.float32)),
    ("float64", lambda: np.zeros((1, 32), np.float64)),
    ("int8", lambda: np.zeros(32, np.int8)),
    ("bool", lambda: np.zeros(32, bool)),
    ("NaN in the last block", lambda: np.concatenate([np.ones(32, np.float32), block(0.0, np.nan)])),
    ("+inf", lambda: block(np.inf)),
    ("float16 -inf", lambda: block(-np.inf).astype(np.float16)),
]


# --- GGUF quantizers --------------------------------------------------------------------------


def _bytes_compare(block_bytes: int, fields: str) -> Callable[[Any, Any, str], None]:
    return lambda actual, expected, what: assert_blocks_equal(actual, expected, block_bytes, what, None, fields)


@check("quantize_q8_0", points=4)
def test_q8_0_matches_reference_on_random_weights(lab, oracle, seed):
    fixed = fixed_blocks().reshape(-1, 4, 32)  # (n, 4, 32): 4 blocks per row
    assert_blocks_equal(lab.block_formats.quantize_q8_0(fixed.reshape(-1, 128)), oracle.block_formats.quantize_q8_0(fixed.reshape(-1, 128)), 34, "quantize_q8_0 of fixed edge and tie blocks, 4 per row", fixed, Q8_0_FIELDS)
    for np_rng in fixed_then_seeded(seed):
        for _ in range(6):
            shape = random_shape(np_rng)
            x = random_weights(np_rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape)
            assert_blocks_equal(lab.block_formats.quantize_q8_0(x), oracle.block_formats.quantize_q8_0(x), 34, f"quantize_q8_0 of a {shape} array", x, Q8_0_FIELDS)


@check("quantize_q8_0", points=3)
def test_q8_0_matches_reference_on_ties_and_edges(lab, oracle, seed):
    for np_rng in fixed_then_seeded(seed):
        x = np.concatenate([edge_blocks(), tie_blocks(np_rng, 300)])
        assert_blocks_equal(lab.block_formats.quantize_q8_0(x), oracle.block_formats.quantize_q8_0(x), 34, "quantize_q8_0 of blocks with exact ties, zeros, tiny and huge values", x, Q8_0_FIELDS)


@check("quantize_q8_0", points=2)
def test_q8_0_accepts_and_rejects_what_the_reference_does(lab, oracle):
    for name, make in QUANTIZER_INPUTS:
        agree(lambda: lab.block_formats.quantize_q8_0(make()), lambda: oracle.block_formats.quantize_q8_0(make()), f"quantize_q8_0 of {name}", _bytes_compare(34, Q8_0_FIELDS))


@check("quantize_q4_0", points=4)
def test_q4_0_matches_reference_on_random_weights(lab, oracle, seed):
    fixed = fixed_blocks().reshape(-1, 4, 32)  # (n, 4, 32): 4 blocks per row
    assert_blocks_equal(lab.block_formats.quantize_q4_0(fixed.reshape(-1, 128)), oracle.block_formats.quantize_q4_0(fixed.reshape(-1, 128)), 18, "quantize_q4_0 of fixed edge and tie blocks, 4 per row", fixed, Q4_0_FIELDS)
    for np_rng in fixed_then_seeded(seed):
        for _ in range(6):
            shape = random_shape(np_rng)
            x = random_weights(np_rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape)
            assert_blocks_equal(lab.block_formats.quantize_q4_0(x), oracle.block_formats.quantize_q4_0(x), 18, f"quantize_q4_0 of a {shape} array", x, Q4_0_FIELDS)


@check("quantize_q4_0", points=3)
def test_q4_0_matches_reference_on_ties_and_edges(lab, oracle, seed):
    for np_rng in fixed_then_seeded(seed):
        x = np.concatenate([edge_blocks(), tie_blocks(np_rng, 300)])
        assert_blocks_equal(lab.block_formats.quantize_q4_0(x), oracle.block_formats.quantize_q4_0(x), 18, "quantize_q4_0 of blocks with exact ties, |max| ties, zeros, tiny and huge values", x, Q4_0_FIELDS)


@check("quantize_q4_0", points=2)
def test_q4_0_accepts_and_rejects_what_the_reference_does(lab, oracle):
    for name, make in QUANTIZER_INPUTS:
        agree(lambda: lab.block_formats.quantize_q4_0(make()), lambda: oracle.block_formats.quantize_q4_0(make()), f"quantize_q4_0 of {name}", _bytes_compare(18, Q4_0_FIELDS))


# --- GGUF decoders ----------------------------------------------------------------------------

# fp16 scales with defined IEEE products: ±0, the smallest subnormal, 1, -2, 65504, ±inf, NaN.
SPECIAL_D = ["0000", "0080", "0100", "003c", "00c0", "ff7b", "007c", "00fc", "007e"]


def every_code_blocks(block_bytes: int) -> np.ndarray:
    """Each special d with every byte value 0..255 among its codes: (len(SPECIAL_D) × blocks, block_bytes)."""
    code_bytes = block_bytes - 2
    codes = np.resize(np.arange(256, dtype=np.uint8), (-(-256 // code_bytes) * code_bytes,)).reshape(-1, code_bytes)
    rows = [np.concatenate([np.broadcast_to(np.frombuffer(bytes.fromhex(d), np.uint8), (len(codes), 2)), codes], axis=1) for d in SPECIAL_D]
    return np.concatenate(rows)


DECODER_INPUTS: list[tuple[str, Callable[[int], np.ndarray]]] = [
    ("a (2, 1, n) array", lambda b: np.tile(np.arange(b, dtype=np.uint8), 4).reshape(2, 1, 2 * b)),
    ("one byte too many", lambda b: np.zeros(b + 1, np.uint8)),
    ("int8 bytes", lambda b: np.zeros(b, np.int8)),
    ("bool bytes", lambda b: np.zeros(b, bool)),
    ("a 0-d array", lambda b: np.array(7, np.uint8)),
]


def _decoder_check(lab_decode: Callable, oracle_decode: Callable, name: str, block_bytes: int, seed: int) -> None:
    with np.errstate(all="ignore"):  # inf and NaN scales
        data = every_code_blocks(block_bytes)
        assert_floats_equal(lab_decode(data), oracle_decode(data), f"{name} of blocks with d = ±0, a subnormal, 1, -2, 65504, ±inf, NaN and every code byte")
        for label, make in DECODER_INPUTS:
            agree(lambda: lab_decode(make(block_bytes)), lambda: oracle_decode(make(block_bytes)), f"{name} of {label}", assert_floats_equal)
        for np_rng in fixed_then_seeded(seed):
            data = np_rng.integers(0, 256, size=(int(np_rng.integers(1, 30)), block_bytes * int(np_rng.integers(1, 8))), dtype=np.uint8)
            assert_floats_equal(lab_decode(data), oracle_decode(data), f"{name} of random bytes {data.shape}")


@check("dequantize_q8_0", points=2)
def test_q8_0_dequantize_matches_reference_on_any_bytes(lab, oracle, seed):
    _decoder_check(lab.block_formats.dequantize_q8_0, oracle.block_formats.dequantize_q8_0, "dequantize_q8_0", 34, seed)


@check("dequantize_q4_0", points=2)
def test_q4_0_dequantize_matches_reference_on_any_bytes(lab, oracle, seed):
    _decoder_check(lab.block_formats.dequantize_q4_0, oracle.block_formats.dequantize_q4_0, "dequantize_q4_0", 18, seed)


# --- bits per weight --------------------------------------------------------------------------


@check("bits_per_weight", points=1)
def test_bits_per_weight_matches_reference(lab, oracle):
    for fmt in (*oracle.block_formats.BLOCK_LAYOUTS, "Q3_X", "q4_0", "NF4", ""):
        agree(lambda: lab.block_formats.bits_per_weight(fmt), lambda: oracle.block_formats.bits_per_weight(fmt), f"bits_per_weight({fmt!r})", assert_exact)


@check("nf4_bits_per_weight", points=1)
def test_nf4_bits_per_weight_matches_reference(lab, oracle, rng):
    fixed = [(b, dq, dqb) for b in (2, 16, 32, 64, 128, 256, 4096) for dq in (False, True) for dqb in (1, 64, 256, 512)]
    invalid = [(0, False, 256), (-64, True, 256), (True, False, 256), (64.0, False, 256), (64, True, 0), (64, True, False), (64, 1, 256), (64, None, 256)]
    drawn = [(rng.choice([16, 32, 64, 128, 256, 4096]), rng.random() < 0.5, rng.choice([64, 128, 256, 512])) for _ in range(20)]
    for args in (*fixed, *invalid, *drawn):
        agree(lambda: lab.block_formats.nf4_bits_per_weight(*args), lambda: oracle.block_formats.nf4_bits_per_weight(*args), f"nf4_bits_per_weight{args}", assert_exact)


# --- NF4 --------------------------------------------------------------------------------------


def _nf4_compare(actual: Any, expected: Any, what: str) -> None:
    """Every field of the learner's NF4Weight against the reference's: types, dtypes and shapes first."""
    assert_exact(actual.shape, expected.shape, f"{what}: shape", "the original shape, as a tuple of ints")
    assert_exact(actual.block_size, expected.block_size, f"{what}: block_size", "an int")
    assert_floats_equal(actual.absmax, expected.absmax, f"{what}: absmax", "max |x| per block, bit for bit: an all-zero block stores +0.0")
    as_array(actual.packed, f"{what}: packed", np.uint8, expected.packed.shape, "two 4-bit codes per byte of the flattened tensor")
    assert_blocks_equal(actual.packed, expected.packed, max(1, expected.block_size // 2), f"{what}: packed (one row here = one block)")


def nf4_edge_inputs() -> list[tuple[np.ndarray, int]]:
    """Fixed NF4 inputs: the public worked examples, exact midpoints and one ulp around them, values
    whose x/absmax and x·(1/absmax) differ, signed zeros, tiny and huge blocks, odd block sizes."""
    code = np.array(
        [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
         -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
         0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0],
        dtype=np.float32,
    )
    midpoints = (code[:-1] + code[1:]) / np.float32(2)
    around = np.concatenate([[1.0], midpoints, np.nextafter(midpoints, np.float32(2)), np.nextafter(midpoints, np.float32(-2)), -midpoints, [0.5] * 3])
    reciprocal = np.zeros((2, 64), np.float32)
    reciprocal[0, :5] = [3.0, -0.41373518, 0.11937045, 1.1679376, 1.9283608]
    reciprocal[1, :6] = [0.7, -0.09653821, -0.03186751, 0.027853105, 0.14246488, 0.44995084]
    zeros = np.zeros((3, 64), np.float32)
    zeros[1] = -0.0
    zeros[2, ::2] = -0.0
    scaled = np.outer(np.array([1e-40, 1e-38, 3e-37, 1e-20, 7e4, 3e38], np.float32), np.linspace(-1, 0.6, 64, dtype=np.float32))
    return [
        (around.astype(np.float32)[:64], 64),
        (reciprocal, 64),
        (zeros, 64),
        (zeros, 2),
        (scaled.astype(np.float32), 64),
        (np.tile(np.array([-1.0, 1.0], np.float32), 48).reshape(3, 32), 32),
        (np.arange(-24, 24, dtype=np.float16).reshape(2, 24), 6),
        (np.linspace(-2, 3, 16, dtype=np.float32), 16),
    ]


def _nf4_random_inputs(np_rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """Four random weight arrays, each with exact ties and an absmax of 1 in its first block, and their block sizes."""
    inputs = []
    for _ in range(4):
        block_size = int(np_rng.choice([32, 64, 128, 256]))
        shape = random_shape(np_rng, multiple=block_size)
        x = random_weights(np_rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape)
        x.reshape(-1)[: 3 * block_size : 7] = np.float32(0.5)  # exact ties are likely once absmax is 1 ...
        x.reshape(-1)[block_size // 2] = np.float32(1.0)  # ... so make it 1 in the first block
        inputs.append((x, block_size))
    return inputs


@check("quantize_nf4", points=4)
def test_nf4_matches_reference_on_edges_then_random_weights(lab, oracle, seed, cases):
    edges = nf4_edge_inputs() + [case for np_rng in fixed_rngs() for case in _nf4_random_inputs(np_rng)]
    for x, block_size in cases(edges, _nf4_random_inputs(np.random.default_rng(seed))):
        what = f"quantize_nf4 of a {x.dtype} {x.shape} array with block_size={block_size}"
        agree(lambda: lab.block_formats.quantize_nf4(x, block_size), lambda: oracle.block_formats.quantize_nf4(x, block_size), what, _nf4_compare)


NF4_INPUTS = [
    ("100 values", lambda: np.zeros(100, np.float32), 64),
    ("block_size=63", lambda: np.zeros(126, np.float32), 63),
    ("block_size=0", lambda: np.zeros(64, np.float32), 0),
    ("block_size=-64", lambda: np.zeros(64, np.float32), -64),
    ("block_size=True", lambda: np.zeros(64, np.float32), True),
    ("block_size=64.0", lambda: np.zeros(64, np.float32), 64.0),
    ("float64", lambda: np.zeros(64, np.float64), 64),
    ("bool", lambda: np.zeros(64, bool), 64),
    ("int32", lambda: np.zeros(64, np.int32), 64),
    ("NaN", lambda: block(0.5, np.nan).repeat(2), 64),
    ("-inf", lambda: np.full(64, -np.inf, np.float32), 64),
    ("a 0-d array", lambda: np.array(1.0, np.float32), 2),
    ("one block of 64", lambda: np.linspace(-1, 1, 64, dtype=np.float32), 64),
    ("a (2, 2, 16) array in blocks of 4", lambda: np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 2, 16), 4),
]


@check("quantize_nf4", points=1)
def test_nf4_accepts_and_rejects_what_the_reference_does(lab, oracle):
    for name, make, block_size in NF4_INPUTS:
        agree(lambda: lab.block_formats.quantize_nf4(make(), block_size), lambda: oracle.block_formats.quantize_nf4(make(), block_size), f"quantize_nf4 of {name}", _nf4_compare)


@check("dequantize_nf4", points=2)
def test_nf4_dequantize_matches_reference(lab, oracle, seed):
    def both(packed, absmax, shape, block_size, what):
        agree(
            lambda: lab.block_formats.dequantize_nf4(lab.block_formats.NF4Weight(packed, absmax, shape, block_size)),
            lambda: oracle.block_formats.dequantize_nf4(oracle.block_formats.NF4Weight(packed, absmax, shape, block_size)),
            what,
            assert_floats_equal,
        )

    every_byte = np.arange(256, dtype=np.uint8)
    both(every_byte, np.array([0.0, -0.0, 1.0, 2.5, 1e-40, 3e38, np.inf, 0.5], np.float32), (8, 64), 64, "dequantize_nf4 of every byte value, absmax ±0, 1, 2.5, tiny, huge, inf")
    both(every_byte, np.linspace(0.5, 2, 256, dtype=np.float32), (2, 256), 2, "dequantize_nf4 of every byte value in blocks of 2")
    both(np.zeros(32, np.uint8), np.ones(2, np.float32), (64,), 64, "dequantize_nf4 with 2 absmax values for one block")
    both(np.zeros(31, np.uint8), np.ones(1, np.float32), (64,), 64, "dequantize_nf4 with 31 packed bytes for 64 elements")
    both(np.zeros(32, np.int64), np.ones(1, np.float32), (64,), 64, "dequantize_nf4 of int64 codes")
    both(np.zeros(32, np.uint8), np.ones(64, np.float32), (64,), True, "dequantize_nf4 with block_size=True")
    both(np.zeros(32, np.uint8), np.ones(1, np.float32), (64,), 0, "dequantize_nf4 with block_size=0")
    for np_rng in fixed_then_seeded(seed):
        block_size = int(np_rng.choice([32, 64, 128]))
        n_blocks = int(np_rng.integers(1, 50))
        packed = np_rng.integers(0, 256, size=n_blocks * block_size // 2, dtype=np.uint8)
        absmax = (np_rng.random(n_blocks) * 10).astype(np.float32)
        both(packed, absmax, (n_blocks, block_size), block_size, f"dequantize_nf4 of random bytes, {n_blocks} blocks of {block_size}")
