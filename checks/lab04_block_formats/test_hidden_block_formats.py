"""Hidden checks for Lab 04: the learner against the reference, byte for byte, on fresh random inputs.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay): random shapes,
mixed distributions and magnitudes, exact ties, zero and tiny blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from lab04_bytes import Q4_0_FIELDS, Q8_0_FIELDS, assert_blocks_equal, assert_floats_equal, random_weights

check = pytest.mark.check


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
    rows = [np.zeros(32), -np.zeros(32), np.full(32, 2.5), np.full(32, -1e-3)]
    for magnitude in (1e-45, 1e-40, 1e-38, 3e-37, 1e-20, 5e-8, 1.0, 7e4, 1e7, 1e20, 3e38):
        rows.append(np.linspace(-1.0, 0.6, 32) * magnitude)
        rows.append(np.linspace(-0.6, 1.0, 32) * magnitude)
    return np.array(rows, dtype=np.float32)


@check("quantize_q8_0", points=4)
def test_q8_0_matches_reference_on_random_weights(lab, oracle, seed):
    np_rng = np.random.default_rng(seed)
    for _ in range(8):
        shape = random_shape(np_rng)
        x = random_weights(np_rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape)
        assert_blocks_equal(lab.block_formats.quantize_q8_0(x), oracle.block_formats.quantize_q8_0(x), 34, f"quantize_q8_0 of a {shape} array", x, Q8_0_FIELDS)


@check("quantize_q8_0", points=3)
def test_q8_0_matches_reference_on_ties_and_edges(lab, oracle, seed):
    x = np.concatenate([tie_blocks(np.random.default_rng(seed), 300), edge_blocks()])
    assert_blocks_equal(lab.block_formats.quantize_q8_0(x), oracle.block_formats.quantize_q8_0(x), 34, "quantize_q8_0 of blocks with exact ties, zeros, tiny and huge values", x, Q8_0_FIELDS)


@check("dequantize_q8_0", points=2)
def test_q8_0_dequantize_matches_reference_on_any_bytes(lab, oracle, seed):
    np_rng = np.random.default_rng(seed)
    stored = np_rng.integers(0, 256, size=(int(np_rng.integers(1, 30)), 34 * int(np_rng.integers(1, 8))), dtype=np.uint8)
    with np.errstate(all="ignore"):  # random d bytes include fp16 inf and NaN
        assert_floats_equal(lab.block_formats.dequantize_q8_0(stored), oracle.block_formats.dequantize_q8_0(stored), f"dequantize_q8_0 of random bytes {stored.shape}")


@check("quantize_q4_0", points=4)
def test_q4_0_matches_reference_on_random_weights(lab, oracle, seed):
    np_rng = np.random.default_rng(seed)
    for _ in range(8):
        shape = random_shape(np_rng)
        x = random_weights(np_rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape)
        assert_blocks_equal(lab.block_formats.quantize_q4_0(x), oracle.block_formats.quantize_q4_0(x), 18, f"quantize_q4_0 of a {shape} array", x, Q4_0_FIELDS)


@check("quantize_q4_0", points=3)
def test_q4_0_matches_reference_on_ties_and_edges(lab, oracle, seed):
    x = np.concatenate([tie_blocks(np.random.default_rng(seed), 300), edge_blocks()])
    assert_blocks_equal(lab.block_formats.quantize_q4_0(x), oracle.block_formats.quantize_q4_0(x), 18, "quantize_q4_0 of blocks with exact ties, |max| ties, zeros, tiny and huge values", x, Q4_0_FIELDS)


@check("dequantize_q4_0", points=2)
def test_q4_0_dequantize_matches_reference_on_any_bytes(lab, oracle, seed):
    np_rng = np.random.default_rng(seed)
    stored = np_rng.integers(0, 256, size=(int(np_rng.integers(1, 30)), 18 * int(np_rng.integers(1, 8))), dtype=np.uint8)
    with np.errstate(all="ignore"):
        assert_floats_equal(lab.block_formats.dequantize_q4_0(stored), oracle.block_formats.dequantize_q4_0(stored), f"dequantize_q4_0 of random bytes {stored.shape}")


@check("bits_per_weight", points=1)
def test_bits_per_weight_matches_reference(lab, oracle):
    for fmt in oracle.block_formats.BLOCK_LAYOUTS:
        expected, actual = oracle.block_formats.bits_per_weight(fmt), lab.block_formats.bits_per_weight(fmt)
        assert actual == expected, f"bits_per_weight({fmt!r}) is {actual}, expected {expected}"


@check("quantize_nf4", points=4)
def test_nf4_matches_reference_on_random_weights(lab, oracle, seed):
    np_rng = np.random.default_rng(seed)
    for _ in range(6):
        block_size = int(np_rng.choice([32, 64, 128, 256]))
        shape = random_shape(np_rng, multiple=block_size)
        x = random_weights(np_rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape)
        x.reshape(-1)[: 3 * block_size : 7] = np.float32(0.5)  # exact ties are likely once absmax is 1 ...
        x.reshape(-1)[block_size // 2] = np.float32(1.0)  # ... so make it 1 in the first block
        expected, actual = oracle.block_formats.quantize_nf4(x, block_size), lab.block_formats.quantize_nf4(x, block_size)
        what = f"quantize_nf4 of a {shape} array with block_size={block_size}"
        assert_floats_equal(np.asarray(actual.absmax), expected.absmax, f"{what}: absmax")
        assert_blocks_equal(actual.packed, expected.packed, block_size // 2, f"{what}: packed (one row here = one block)")
        assert (tuple(actual.shape), actual.block_size) == (tuple(expected.shape), expected.block_size), f"{what}: shape/block_size recorded as {actual.shape}, {actual.block_size}"


@check("dequantize_nf4", points=2)
def test_nf4_dequantize_matches_reference(lab, oracle, seed):
    np_rng = np.random.default_rng(seed)
    block_size = int(np_rng.choice([32, 64, 128]))
    n_blocks = int(np_rng.integers(1, 50))
    packed = np_rng.integers(0, 256, size=n_blocks * block_size // 2, dtype=np.uint8)
    absmax = (np_rng.random(n_blocks) * 10).astype(np.float32)
    shape = (n_blocks, block_size)
    expected = oracle.block_formats.dequantize_nf4(oracle.block_formats.NF4Weight(packed, absmax, shape, block_size))
    actual = lab.block_formats.dequantize_nf4(lab.block_formats.NF4Weight(packed, absmax, shape, block_size))
    assert_floats_equal(actual, expected, f"dequantize_nf4 of random bytes, {n_blocks} blocks of {block_size}")


@check("nf4_bits_per_weight", points=1)
def test_nf4_bits_per_weight_matches_reference(lab, oracle, rng):
    for _ in range(20):
        args = (rng.choice([16, 32, 64, 128, 256, 4096]), rng.random() < 0.5, rng.choice([64, 128, 256, 512]))
        expected, actual = oracle.block_formats.nf4_bits_per_weight(*args), lab.block_formats.nf4_bits_per_weight(*args)
        assert actual == expected, f"nf4_bits_per_weight{args} is {actual}, expected {expected}"
