"""The Lab 04 reference against independent oracles.

* GGUF Q8_0 / Q4_0: the ``gguf`` package (gguf-py, llama.cpp's own Python port of the reference
  quantizers), byte for byte, on thousands of random blocks and on adversarial ones; plus
  hand-worked blocks and llama.cpp's C rule where gguf-py departs from it (the sign of ``d`` in a
  block of negative zeros).
* ``bits_per_weight``: gguf's ``GGML_QUANT_SIZES`` (block size, bytes per block).
* NF4: two transcriptions of bitsandbytes — the CUDA kernel's decision tree ``dQuantizeNF4``
  (its literal thresholds) and the pure-PyTorch ``quantize_4bit`` of its default backend (argmin
  over the codebook, even element in the high nibble) — and QLoRA's 0.127 bits of double-quantized
  constants per weight.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from infralens.loader import LabCode

gguf = pytest.importorskip("gguf", reason="the gguf package (dev extra) is the oracle for the GGUF formats")
torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
ref = LabCode(REPO / "solutions", "lab04_block_formats", "solutions").block_formats
Q8_0, Q4_0 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0


def oracle_bytes(x: np.ndarray, qtype) -> np.ndarray:
    """gguf-py's bytes, with llama.cpp's C rule restored in the one place gguf-py departs from it.

    For Q4_0, C starts ``max`` at +0.0, so every all-zero block stores ``d = +0.0 / -8 = -0.0``
    (fp16 ``00 80``); gguf-py takes the block's first element, which gives ``00 00`` when that
    element is -0.0 (see ``test_negative_zero_blocks_follow_llama_cpp_not_gguf_py``).
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # gguf-py casts inf to fp16 and NaN to int without silencing numpy
        expected = gguf.quants.quantize(x, qtype)
    if qtype == Q4_0:
        blocks = expected.reshape(-1, 18)
        blocks[(x.reshape(-1, 32) == 0).all(axis=1), :2] = (0x00, 0x80)
    return expected


def assert_same_bytes(x: np.ndarray, qtype, ours) -> None:
    expected, actual = oracle_bytes(x, qtype), ours(x)
    assert actual.dtype == np.uint8 and actual.shape == expected.shape, (actual.dtype, actual.shape, expected.shape)
    rows = x.reshape(-1, 32)
    different = np.flatnonzero((expected.reshape(len(rows), -1) != actual.reshape(len(rows), -1)).any(axis=1))
    assert different.size == 0, (
        f"{qtype.name}: {different.size} of {len(rows)} blocks differ from gguf; first block {rows[different[0]].tolist()}: "
        f"gguf {expected.reshape(len(rows), -1)[different[0]].tobytes().hex()} vs ours {actual.reshape(len(rows), -1)[different[0]].tobytes().hex()}"
    )


# --- random blocks: ~40,000 blocks per format -----------------------------------------------


def random_blocks(rng: np.random.Generator) -> np.ndarray:
    """Blocks of 32 from several distributions, each block at its own scale from 1e-30 to 1e30."""
    n = 2000
    parts = [
        rng.standard_normal((n, 32)),
        rng.uniform(-1, 1, (n, 32)),
        rng.standard_t(2, (n, 32)),  # heavy tails: one outlier sets the scale
        rng.standard_normal((n, 32)) * (rng.random((n, 32)) < 0.1),  # sparse
        rng.integers(-20, 21, (n, 32)) / 4,  # many exact ties after scaling
        np.abs(rng.standard_normal((n, 32))),  # all positive: d < 0 in Q4_0
        -np.abs(rng.standard_normal((n, 32))),  # all negative: d > 0 in Q4_0
    ]
    blocks = np.concatenate(parts)
    scale = 10.0 ** rng.uniform(-30, 30, (len(blocks), 1))
    return np.concatenate([blocks, blocks * scale]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("qtype", "name"), [(Q8_0, "quantize_q8_0"), (Q4_0, "quantize_q4_0")])
def test_random_blocks_match_gguf_byte_for_byte(seed, qtype, name):
    blocks = random_blocks(np.random.default_rng(seed))  # (28000, 32)
    assert_same_bytes(blocks, qtype, getattr(ref, name))
    # The same data as rows of a matrix (several blocks per row) and as a 3-D batch.
    assert_same_bytes(blocks.reshape(-1, 256), qtype, getattr(ref, name))
    assert_same_bytes(blocks.reshape(7, -1, 128), qtype, getattr(ref, name))


def test_a_real_sized_matrix_matches_gguf():
    x = np.random.default_rng(7).standard_normal((512, 4096), dtype=np.float32) * 0.02
    assert_same_bytes(x, Q8_0, ref.quantize_q8_0)
    assert_same_bytes(x, Q4_0, ref.quantize_q4_0)


# --- adversarial blocks ---------------------------------------------------------------------


def q8_tie_blocks() -> np.ndarray:
    """x·(1/d) lands exactly on k + 0.5 for every k: d = 2^e is exact, so is 1/d and the product."""
    blocks = []
    for e in (-20, -3, 0, 5):
        halves = (np.arange(-127, 127) + 0.5) * 2.0**e  # 254 exact ties
        for chunk in np.array_split(halves, 9):
            block = np.zeros(32)
            block[0] = 127 * 2.0**e  # amax: d = 127 · 2^e / 127 = 2^e
            block[1 : 1 + len(chunk)] = chunk
            blocks.append(block)
            blocks.append(-block)
    return np.array(blocks, dtype=np.float32)


def q4_tie_blocks() -> np.ndarray:
    """x·(1/d) + 8.5 lands exactly on integers (and one ulp either side): truncation vs rounding."""
    blocks = []
    for e in (-10, 0, 3):
        for sign in (1, -1):
            base = sign * np.concatenate([[-8.0], np.arange(-7.5, 8.0, 0.5)])  # 32 values: the extreme first
            values = (base * 2.0**e).astype(np.float32)
            blocks.append(values)
            blocks.append(np.nextafter(values, np.float32(np.inf)))
            blocks.append(np.nextafter(values, np.float32(-np.inf)))
    return np.array(blocks, dtype=np.float32)


def edge_blocks() -> np.ndarray:
    rows = []
    ramp = np.arange(32, dtype=np.float32)
    rows += [np.zeros(32), np.full(32, 3.0), np.full(32, -3.0), ramp, -ramp, ramp - 15.5]
    for first, second in ((1.0, -1.0), (-1.0, 1.0)):  # |max| tie: the first one decides the sign of d
        row = np.zeros(32)
        row[4], row[20] = first, second
        rows.append(row)
        rows.append(row * 0.37)
    one_hot = np.zeros(32)
    one_hot[31] = -2.5
    rows.append(one_hot)
    for magnitude in (1e-45, 1e-42, 1e-40, 1.2e-38, 2.3e-38, 2.4e-38, 3.6e-37, 3.8e-37, 1e-30, 6e-8, 1e-5, 65504.0, 8.3e6, 1e7, 1e30, 3.4e38):
        rows.append(np.linspace(-1, 1, 32) * magnitude)  # at ±amax, fp16 d underflows or overflows
        rows.append(np.linspace(-0.3, 1, 32) * magnitude)
        rows.append(np.full(32, magnitude))
    rows.append(np.nextafter(np.float32(1), np.float32(2)) * np.linspace(-1, 1, 32))
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize(
    ("qtype", "name", "blocks"),
    [
        (Q8_0, "quantize_q8_0", q8_tie_blocks()),
        (Q4_0, "quantize_q4_0", q4_tie_blocks()),
        (Q8_0, "quantize_q8_0", edge_blocks()),
        (Q4_0, "quantize_q4_0", edge_blocks()),
        (Q8_0, "quantize_q8_0", q4_tie_blocks()),
        (Q4_0, "quantize_q4_0", q8_tie_blocks()),
    ],
    ids=["q8-ties", "q4-ties", "q8-edges", "q4-edges", "q8-on-q4-ties", "q4-on-q8-ties"],
)
def test_adversarial_blocks_match_gguf(qtype, name, blocks):
    assert_same_bytes(blocks, qtype, getattr(ref, name))


def test_q8_ties_round_away_from_zero():
    blocks = q8_tie_blocks()
    codes = ref.quantize_q8_0(blocks).reshape(-1, 34)[:, 2:].view(np.int8).astype(int)
    exact = blocks.astype(np.float64) / (np.abs(blocks).max(axis=1, keepdims=True) / 127)
    assert np.array_equal(codes, np.sign(exact) * np.floor(np.abs(exact) + 0.5))


def test_negative_zero_blocks_follow_llama_cpp_not_gguf_py():
    """llama.cpp starts max at +0.0 and replaces it only on a strictly larger |x|, so every
    all-zero block stores d = +0.0 / -8 = -0.0 (fp16 bytes 00 80). gguf-py takes the first element
    instead, which gives +0.0 (00 00) when that element is -0.0: the one place the two differ."""
    blocks = np.zeros((3, 32), dtype=np.float32)
    blocks[1] = -0.0
    blocks[2, ::2] = -0.0
    expected = bytes.fromhex("0080" + "88" * 16) * 3
    assert ref.quantize_q4_0(blocks).tobytes() == expected
    assert ref.quantize_q8_0(blocks).tobytes() == bytes(34) * 3  # amax = MAX(0.0f, fabsf(-0.0f)) = +0.0


def test_hand_worked_blocks():
    ramp = np.arange(32, dtype=np.float32)
    # Q8_0: d = 31/127 -> fp16 0x33d0; codes round(i · 127/31): 0, 4, 8, 12, 16, 20, 25, ...
    q8 = ref.quantize_q8_0(ramp).tobytes()
    assert q8[:9].hex() == "d0330004080c101419"
    assert q8[-1] == 127
    # Q4_0: max = 31, d = -3.875 (fp16 0xc3c0); code(i) = min(15, trunc(-i/3.875 + 8.5)).
    q4 = ref.quantize_q4_0(ramp).tobytes()
    codes = [min(15, int(-i / 3.875 + 8.5)) for i in range(32)]
    assert q4 == bytes.fromhex("c0c3") + bytes(codes[j] | codes[j + 16] << 4 for j in range(16))


def test_dequantize_matches_gguf_on_any_bytes():
    rng = np.random.default_rng(3)
    x = random_blocks(rng)[:4000].reshape(-1, 128)
    for qtype, quantize, dequantize in ((Q8_0, ref.quantize_q8_0, ref.dequantize_q8_0), (Q4_0, ref.quantize_q4_0, ref.dequantize_q4_0)):
        stored = quantize(x)
        np.testing.assert_array_equal(dequantize(stored), gguf.quants.dequantize(stored, qtype))
        noise = rng.integers(0, 256, stored.shape, dtype=np.uint8)  # arbitrary bytes, inf/NaN scales included
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(dequantize(noise), gguf.quants.dequantize(noise, qtype))


def test_bits_per_weight_match_gguf_quant_sizes():
    for fmt in ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"):
        block_size, type_size = gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[fmt]]
        assert ref.BLOCK_LAYOUTS[fmt].block_size == block_size
        assert ref.bits_per_weight(fmt) == type_size * 8 / block_size
    assert [ref.bits_per_weight(f) for f in ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")] == [8.5, 4.5, 5.0, 4.5, 6.5625]


# --- NF4 against bitsandbytes ---------------------------------------------------------------

# csrc/kernels.cu, dQuantizeNF4: the decision tree's thresholds, copied as written there.
BNB_THRESHOLDS = [
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]


def bnb_tree_code(value: np.float32) -> int:
    """dQuantizeNF4, flattened: ``x > threshold`` in float32 walks up the tree (NaN never does)."""
    return sum(bool(value > np.float32(t)) for t in BNB_THRESHOLDS)


def bnb_kernel_quantize(x: np.ndarray, blocksize: int) -> tuple[bytes, np.ndarray]:
    """kQuantizeBlockwise for NF4, element by element: 1/absmax once per block, then x · (1/absmax)."""
    flat = x.reshape(-1).astype(np.float32)
    codes, absmax = [], []
    for block in flat.reshape(-1, blocksize):
        amax = np.float32(np.abs(block).max())
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = np.float32(1) / amax
            codes += [bnb_tree_code(np.float32(v * inverse)) for v in block]
        absmax.append(amax)
    return bytes(codes[i] << 4 | codes[i + 1] for i in range(0, len(codes), 2)), np.array(absmax, dtype=np.float32)


def bnb_default_backend_quantize(x: np.ndarray, blocksize: int) -> tuple[bytes, np.ndarray]:
    """bitsandbytes/backends/default/ops.py quantize_4bit (full blocks), in PyTorch."""
    A = torch.from_numpy(x.reshape(-1))
    blocks = A.reshape(-1, blocksize)
    absmax = torch.abs(blocks).max(dim=-1)[0]
    scaled = torch.clamp(blocks * (1 / absmax.view(-1, 1)), -1, 1).reshape(-1)
    code = torch.from_numpy(ref.NF4_CODE)
    quantized = torch.argmin(torch.abs(scaled.view(-1, 1) - code), dim=-1, keepdim=True).to(torch.uint8)
    packed = quantized[::2] << 4 | quantized[1::2]
    return packed.numpy().tobytes(), absmax.numpy()


def test_codebook_midpoints_are_bitsandbytes_thresholds():
    midpoints = (ref.NF4_CODE[:-1] + ref.NF4_CODE[1:]) / np.float32(2)
    assert np.array_equal(midpoints, np.array(BNB_THRESHOLDS, dtype=np.float32))


@pytest.mark.parametrize("blocksize", [64, 128, 32])
def test_nf4_matches_the_cuda_decision_tree(blocksize):
    rng = np.random.default_rng(blocksize)
    x = rng.standard_normal((24, 64)).astype(np.float32) * np.float32(0.03)
    x[3] = 0.0  # all-zero blocks: NaN falls through the tree to code 0
    x[5, :blocksize // 2] = 1e-40  # tiny absmax: 1/absmax overflows to inf
    qw = ref.quantize_nf4(x, blocksize)
    packed, absmax = bnb_kernel_quantize(x, blocksize)
    assert qw.packed.tobytes() == packed
    assert qw.absmax.tobytes() == absmax.tobytes()  # bit for bit: the zero blocks' absmax is +0.0
    assert qw.packed.shape == (x.size // 2,) and qw.absmax.dtype == np.float32


def test_nf4_all_zero_blocks_store_absmax_plus_zero():
    """bitsandbytes takes the max of fabsf(x) (kQuantizeBlockwise; torch.abs in the default backend), so a
    block of zeros, -0.0 included, stores absmax +0.0, and decodes to NF4_CODE[0] × +0.0 = -0.0."""
    x = np.zeros((3, 64), dtype=np.float32)
    x[1] = -0.0
    x[2, ::2] = -0.0
    qw = ref.quantize_nf4(x)
    assert qw.absmax.tobytes() == bytes(12)
    assert bnb_kernel_quantize(x, 64)[1].tobytes() == bytes(12)
    assert bnb_default_backend_quantize(x, 64)[1].tobytes() == bytes(12)
    assert qw.packed.tobytes() == bytes(96)  # NaN -> code 0
    decoded = ref.dequantize_nf4(qw)
    assert np.all(decoded == 0) and np.all(np.signbit(decoded))


def test_nf4_normalizes_with_a_reciprocal_as_the_kernel_does():
    """The public check's values: x · (1/absmax) and x / absmax round to neighbouring floats on either
    side of a midpoint, so the two give different codes; both bitsandbytes backends multiply by the
    reciprocal, and on these values the default backend's argmin agrees with the kernel's tree."""
    x = np.zeros((2, 64), dtype=np.float32)
    x[0, :5] = [3.0, -0.41373518, 0.11937045, 1.1679376, 1.9283608]
    x[1, :6] = [0.7, -0.09653821, -0.03186751, 0.027853105, 0.14246488, 0.44995084]
    qw = ref.quantize_nf4(x)
    packed, absmax = bnb_kernel_quantize(x, 64)
    assert qw.packed.tobytes() == packed and qw.absmax.tobytes() == absmax.tobytes()
    assert bnb_default_backend_quantize(x, 64)[0] == packed
    codes = np.stack([qw.packed >> 4, qw.packed & 15], axis=1).reshape(2, 64)
    assert codes[0, :5].tolist() == [15, 5, 8, 12, 14]
    assert codes[1, :6].tolist() == [15, 5, 6, 7, 9, 13]
    divided = [[bnb_tree_code(np.float32(v / row[0])) for v in row[:6]] for row in x]
    assert divided == [[15, 6, 7, 11, 13, 7], [15, 6, 6, 7, 9, 13]]


def test_nf4_ties_on_midpoints_take_the_lower_code():
    midpoints = np.array(BNB_THRESHOLDS, dtype=np.float32)
    block = np.concatenate([[1.0], midpoints, -midpoints, [0.0, -1.0], np.nextafter(midpoints, np.float32(2))[:14], [0.5] * 17])
    x = block.astype(np.float32)[None, :64]  # absmax 1: the normalized value is the value itself
    qw = ref.quantize_nf4(x)
    packed, _ = bnb_kernel_quantize(x, 64)
    assert qw.packed.tobytes() == packed
    codes = np.stack([qw.packed >> 4, qw.packed & 15], axis=1).reshape(-1)
    assert codes[1:16].tolist() == list(range(15)), "a value on the midpoint of codes i and i+1 takes code i"


def test_nf4_matches_the_default_backend_on_random_weights():
    x = (np.random.default_rng(11).standard_normal((256, 512)) * 0.02).astype(np.float32)
    qw = ref.quantize_nf4(x)
    packed, absmax = bnb_default_backend_quantize(x, 64)
    assert qw.packed.tobytes() == packed
    assert qw.absmax.tobytes() == absmax.tobytes()
    expected = (ref.NF4_CODE[np.stack([qw.packed >> 4, qw.packed & 15], 1).reshape(-1, 64)] * absmax[:, None]).reshape(x.shape)
    np.testing.assert_array_equal(ref.dequantize_nf4(qw), expected)


def test_nf4_bits_per_weight_is_qlora_figure():
    assert ref.nf4_bits_per_weight() == 4.5
    # QLoRA §3: double quantization cuts the constants from 32/64 = 0.5 to 8/64 + 32/(64·256) ≈ 0.127 bits.
    assert ref.nf4_bits_per_weight(64, double_quant=True) == 4 + 8 / 64 + 32 / (64 * 256) == 4.126953125
    assert round(ref.nf4_bits_per_weight(64, double_quant=True), 3) == 4.127
    qw = ref.quantize_nf4(np.ones((128, 256), dtype=np.float32))
    assert qw.nbytes == 128 * 256 // 2 + 128 * 256 // 64 * 4 and qw.bits_per_weight == 4.5
