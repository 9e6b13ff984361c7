"""Helpers for the Lab 04 checks: compare stored bytes block by block and say where they differ.

Given tooling: formatting, input makers and hand-picked edge blocks only, no quantizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from infralens.checking import bounded, summarize

Q8_0_FIELDS = "bytes 0-1: fp16 d (little-endian); bytes 2-33: int8 codes of elements 0-31"
Q4_0_FIELDS = "bytes 0-1: fp16 d (little-endian); byte 2+j: element j in the low nibble, element j+16 in the high nibble"
EXACT_DECODE = "decoding multiplies an integer code by the stored scale, which is exact in float32: no tolerance, and the sign of a zero counts"


def block(*values: float) -> np.ndarray:
    """One block of 32 float32 values: ``values`` first, zeros after."""
    x = np.zeros(32, dtype=np.float32)
    x[: len(values)] = values
    return x


def _ramp(low: float, high: float, magnitude: float) -> np.ndarray:
    return (np.linspace(low, high, 32) * magnitude).astype(np.float32)


def _alternating_zeros() -> np.ndarray:
    x = np.zeros(32, dtype=np.float32)
    x[::2] = -0.0
    return x


# Blocks whose bytes are defined by llama.cpp's edge rules: signed zeros, a 1/d that overflows,
# an fp16 d that underflows to 0 or overflows to inf. The public checks hold their stored bytes;
# the hidden checks run them before any random input.
EDGE_BLOCKS: dict[str, np.ndarray] = {
    "zeros": np.zeros(32, dtype=np.float32),
    "negative-zeros": -np.zeros(32, dtype=np.float32),
    "mixed-zeros": _alternating_zeros(),
    "tiny-1e-40": _ramp(-0.6, 1.0, 1e-40),  # 1/d overflows float32 in both formats: codes 0
    "tiny-3e-37": _ramp(-0.6, 1.0, 3e-37),  # Q8_0: 1/d overflows (amax below ~3.7e-37); Q4_0 does not
    "small-1e-36": _ramp(-0.6, 1.0, 1e-36),  # fp16 d underflows to 0, the codes do not
    "negative-tiny-3e-38": _ramp(-1.0, 0.6, 3e-38),  # Q4_0: max is negative and 1/d just fits
    "huge-1e6": np.arange(32, dtype=np.float32) * np.float32(1e6),  # d beyond 65504: fp16 inf
}


def as_array(actual: Any, what: str, dtype: type, shape: tuple[int, ...], why: str) -> np.ndarray:
    """The learner's result as a NumPy array of ``dtype`` and ``shape`` (type, then dtype, then shape),
    or a failure that names what came back."""
    if not isinstance(actual, np.ndarray):
        pytest.fail(f"{what} returned {type(actual).__name__} {summarize(actual)}, expected a NumPy {np.dtype(dtype)} array of shape {shape}", pytrace=False)
    if actual.dtype != dtype:
        pytest.fail(f"{what} returned dtype {actual.dtype}, expected {np.dtype(dtype)}: {why}", pytrace=False)
    if actual.shape != shape:
        pytest.fail(f"{what} returned shape {actual.shape}, expected {shape}: {why}", pytrace=False)
    return actual


def as_uint8(actual: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's result as a uint8 array of ``shape``, or a failure that names type, dtype and shape."""
    return as_array(actual, what, np.uint8, shape, "the result is the stored bytes, blocks along the last axis")


def assert_blocks_equal(actual: Any, expected: np.ndarray, block_bytes: int, what: str, values: np.ndarray | None = None, fields: str = "") -> None:
    """Byte-exact comparison; on failure, show the first differing block, its bytes and its inputs."""
    actual = as_uint8(actual, what, expected.shape)
    got, want = actual.reshape(-1, block_bytes), expected.reshape(-1, block_bytes)
    bad = np.flatnonzero((got != want).any(axis=1))
    if bad.size == 0:
        return
    index = int(bad[0])
    first = int(np.flatnonzero(got[index] != want[index])[0])
    shown = ""
    if values is not None:
        inputs = values.reshape(len(want), -1)[index]
        shown = f"\n  its {inputs.size} input values: {bounded(np.array2string(inputs, precision=9, max_line_width=200, threshold=64), 1200)}"
    pytest.fail(
        f"{what}: {bad.size} of {len(want)} blocks differ; block {index} first differs at byte {first} "
        f"(expected 0x{want[index, first]:02x}, got 0x{got[index, first]:02x})\n"
        f"  expected {bounded(want[index].tobytes().hex(' '), 200)}\n  got      {bounded(got[index].tobytes().hex(' '), 200)}{shown}"
        + (f"\n  layout: {fields}" if fields else ""),
        pytrace=False,
    )


def assert_floats_equal(actual: Any, expected: np.ndarray, what: str, why: str = EXACT_DECODE) -> None:
    """Bit-exact float32 comparison (``-0.0`` is not ``+0.0``), any NaN equal to any NaN."""
    array = as_array(actual, what, np.float32, expected.shape, "float32 values of the original shape")
    same = (array.view(np.uint32) == expected.view(np.uint32)) | (np.isnan(array) & np.isnan(expected))
    if not same.all():
        index = tuple(int(i) for i in np.argwhere(~same)[0])
        pytest.fail(
            f"{what}: {int((~same).sum()):,} of {same.size:,} values differ; first at index {index}: expected {float(expected[index])!r}, got {float(array[index])!r} ({why})",
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
