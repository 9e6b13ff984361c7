"""Helpers for the Lab 04 checks: compare stored bytes block by block and say where they differ.

Given tooling: formatting and input makers only, no quantizer.
"""

from __future__ import annotations

import numpy as np
import pytest

Q8_0_FIELDS = "bytes 0-1: fp16 d (little-endian); bytes 2-33: int8 codes of elements 0-31"
Q4_0_FIELDS = "bytes 0-1: fp16 d (little-endian); byte 2+j: element j in the low nibble, element j+16 in the high nibble"


def as_uint8(actual, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's result as a uint8 array of ``shape``, or a failure that names dtype and shape."""
    array = np.asarray(actual)
    if array.dtype != np.uint8:
        pytest.fail(f"{what} returned dtype {array.dtype}, expected uint8: the result is the stored bytes", pytrace=False)
    if array.shape != shape:
        pytest.fail(f"{what} returned shape {array.shape}, expected {shape}: blocks of 32 run along the last axis", pytrace=False)
    return array


def assert_blocks_equal(actual, expected: np.ndarray, block_bytes: int, what: str, values: np.ndarray | None = None, fields: str = "") -> None:
    """Byte-exact comparison; on failure, show the first differing block, its bytes and its inputs."""
    actual = as_uint8(actual, what, expected.shape)
    got, want = actual.reshape(-1, block_bytes), expected.reshape(-1, block_bytes)
    bad = np.flatnonzero((got != want).any(axis=1))
    if bad.size == 0:
        return
    block = int(bad[0])
    first = int(np.flatnonzero(got[block] != want[block])[0])
    shown = "" if values is None else f"\n  its 32 input values: {np.array2string(values.reshape(-1, 32)[block], precision=9, max_line_width=200)}"
    pytest.fail(
        f"{what}: {bad.size} of {len(want)} blocks differ; block {block} first differs at byte {first} "
        f"(expected 0x{want[block, first]:02x}, got 0x{got[block, first]:02x})\n"
        f"  expected {want[block].tobytes().hex(' ')}\n  got      {got[block].tobytes().hex(' ')}{shown}"
        + (f"\n  layout: {fields}" if fields else ""),
        pytrace=False,
    )


def assert_floats_equal(actual, expected: np.ndarray, what: str) -> None:
    """Exact float32 comparison (decoding a block format is exact), NaN equal to NaN."""
    array = np.asarray(actual)
    if array.dtype != np.float32 or array.shape != expected.shape:
        pytest.fail(f"{what} returned {array.dtype} {array.shape}, expected float32 {expected.shape}", pytrace=False)
    same = (array == expected) | (np.isnan(array) & np.isnan(expected))
    if not same.all():
        index = tuple(int(i) for i in np.argwhere(~same)[0])
        pytest.fail(
            f"{what}: {int((~same).sum())} values differ; first at index {index}: expected {expected[index]!r}, got {array[index]!r} "
            "(decoding multiplies an integer code by the stored scale, which is exact in float32: no tolerance)",
            pytrace=False,
        )


def random_weights(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    """float32 ``(rows, k)``: mixed distributions and magnitudes, exact ties and zero blocks included."""
    kind = rng.integers(0, 5, size=(rows, 1))
    normal = rng.standard_normal((rows, k))
    values = np.where(kind == 0, normal, 0.0)
    values = np.where(kind == 1, rng.standard_t(2, (rows, k)), values)  # heavy tails
    values = np.where(kind == 2, rng.integers(-16, 17, (rows, k)) / 2, values)  # exact halves: ties
    values = np.where(kind == 3, np.abs(normal), values)  # one-signed rows
    values = np.where(kind == 4, -np.abs(normal) * (rng.random((rows, k)) < 0.3), values)  # sparse, negative
    scale = np.where(kind == 2, 2.0 ** rng.integers(-20, 20, size=(rows, 1)), 10.0 ** rng.uniform(-8, 8, size=(rows, 1)))
    values = values * scale
    values[rng.random(rows) < 0.05] = 0.0
    return values.astype(np.float32)
