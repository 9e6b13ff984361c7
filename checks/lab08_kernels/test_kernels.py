"""Public checks for Lab 08 — kernel support and speedups.

Worked examples with exact outputs; every linear against the float64 reference ``x @ Wᵀ`` within a
tolerance stated from the format (roundings to the activations' dtype, float32 accumulation, half
an activation step for W8A8); exact int32 sums past 2^24; byte counts against what the tensors
hold and what the naive dequantize-then-matmul path is measured to allocate; speed against that
naive path, measured in the same run. Every check builds its own inputs and uses only the
exercise it names.

What the speed and memory checks trust (the lab's README has the whole threat model): every
figure they judge is either computed by your code and checked for correctness, or measured here,
in the checking process, on code that is not yours. The naive baseline is trusted code timed by
this process's own CPU time, which load from another process cannot inflate. Your functions are
timed from here too: when graded, your code runs in a sandboxed worker and each call is timed by
this process's wall clock, the pipe included, which nothing running there can reach; in your own
runs, by the same CPU clock as the baseline, so a busy machine slows neither. Each timed call gets
fresh activations and its result is checked, so neither a cached nor a wrong answer counts as fast. Memory is never measured in your code: you predict the bytes, and the
checks measure the naive path, which is not yours.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infralens.allocations import record_allocations
from infralens.checking import accepted, assert_exact, expect_correct, expect_value_error
from infralens.tensor_checks import assert_layout, assert_tensor_close, assert_tensor_equal, cause_of
from infralens.timing import compare, peak_memory_bandwidth
from lab08_inputs import (
    BF16,
    F16,
    F32,
    I8,
    U8,
    activations,
    dequantize_int4,
    dequantize_int8,
    int4_weight,
    int8_weight,
    naive_int4_linear,
    naive_int8_linear,
    pack_nibbles,
    reference,
    torch_generator,
    w8a8_bound,
    weight_only_bound,
)

check = pytest.mark.check
T = torch.tensor

WEIGHT_ONLY_WHY = ("within 3 roundings to x's dtype of |x @ Wᵀ|, 1 rounding of each weight to x's dtype, and float32 accumulation of K "
                   "products (2^-24 each) of Σ|x|·|W|; below the dtype's normal range, half its smallest subnormal per rounding")

SPEED_SHAPE = (16, 128, 8192)  # (M, K, N): 16 tokens, a 1 MiB int8 weight; computing dominates the pipe to a grading worker
SPEED_GROUP = 32
SPEED_RUNS = 7
SPEED_RATIO = 8.0
"""How much slower than the naive dequantize-then-matmul path a learner's linear may be. Measured on
two busy cores (load average 4-5): the reference solution 0.6-1.3× in process and 1.3-4.4× graded
through the sandbox's pipe; a Python loop over output rows 18-28× (int4) and 90-120× (int8)."""

GPU_DECODE_FEATURES = 16384  # K = N: a 256 MiB int8 weight, larger than any GPU's L2 cache
GPU_DECODE_FLOOR = 1.3
"""Batch-1 speedup over bf16 that int8 weight-only must reach on a GPU: it reads half the bytes
(2× is the ceiling); gpt-fast reports 1.48× for a whole Llama-2-7B decode step on an A100."""
GPU_PREFILL_TOKENS = 8192  # M = K = N: compute-bound, where int8 tensor cores do twice bf16's work
GPU_PREFILL_FLOOR = 1.15
"""Large-batch speedup over bf16 that W8A8 must reach: the int8 GEMM's peak is 2× bf16's, minus
quantizing the activations and rescaling the sums on every call."""
GPU_RUNS = 10
GPU_CHECKED_OUTPUTS = 256  # outputs compared with the float64 reference (each depends on one weight row)


def _linear_close(y, x: torch.Tensor, weight: torch.Tensor, what: str, why: str = WEIGHT_ONLY_WHY) -> None:
    """``y`` has the documented layout and is within :func:`weight_only_bound` of ``x @ weightᵀ``."""
    shape = tuple(x.shape[:-1]) + (weight.shape[0],)
    assert_layout(y, shape, x.dtype, what, f"(..., N) = {shape} in x's dtype {x.dtype}: the output is rounded to the activations' dtype")
    assert_tensor_close(y.double(), reference(x, weight), f"{what} against x @ Wᵀ in float64", atol=weight_only_bound(x, weight), why=why)


# --- int8_weight_only_linear -------------------------------------------------------------------

INT8_X = [[2.0, 1.0, 0.5]]
INT8_Q = [[1, -2, 127], [0, 64, -127]]
INT8_SCALE = [0.5, 0.25]
INT8_Y = [[31.75, 0.125]]


@check("int8_weight_only_linear", points=3)
def test_int8_weight_only_worked_example(lab):
    what = f"int8_weight_only_linear({INT8_X}, qweight={INT8_Q}, scale={INT8_SCALE})"
    y = lab.kernels.int8_weight_only_linear(T(INT8_X), T(INT8_Q, dtype=I8), T(INT8_SCALE))
    why = cause_of(y, ([[63.5, 0.5]], "those are the sums without the scale: multiply output n by scale[n]"),
                   ([[127.0, 0.5]], "that multiplies every output by scale[0]: output n takes scale[n]"))
    assert_tensor_equal(y, T(INT8_Y), what, why or "y[n] = scale[n] × Σ_k x[k] × qweight[n, k]: (2 - 2 + 63.5) × 0.5 and (64 - 63.5) × 0.25")


@check("int8_weight_only_linear", points=2)
@pytest.mark.parametrize(("x_shape", "x_dtype", "scale_dtype"),
                         [((48,), F32, F32), ((3, 48), BF16, F32), ((2, 3, 48), F16, F16), ((5, 48), F32, BF16), ((1, 1, 1, 48), BF16, BF16)])
def test_int8_weight_only_shapes_and_dtypes(lab, x_shape, x_dtype, scale_dtype):
    gen = torch_generator(81)
    x = activations(gen, x_shape, x_dtype)
    qweight, scale = int8_weight(gen, 24, 48, scale_dtype)
    what = f"int8_weight_only_linear(x {x_shape} {x_dtype}, qweight (24, 48), scale (24,) {scale_dtype})"
    _linear_close(lab.kernels.int8_weight_only_linear(x, qweight, scale), x, dequantize_int8(qweight, scale), what)


@check("int8_weight_only_linear", points=3)
@pytest.mark.parametrize("dtype", [F32, BF16, F16])
def test_int8_weight_only_matches_the_float_reference(lab, seed, dtype):
    gen = torch_generator(seed)
    x = activations(gen, (7, 256), dtype)
    qweight, scale = int8_weight(gen, 40, 256)
    what = f"int8_weight_only_linear(x (7, 256) {dtype}, qweight (40, 256), scale (40,))"
    _linear_close(lab.kernels.int8_weight_only_linear(x, qweight, scale), x, dequantize_int8(qweight, scale), what)


@check("int8_weight_only_linear", points=2)
def test_int8_weight_only_scales_the_sums_before_rounding_to_float16(lab):
    gen = torch_generator(82)
    x = (0.5 + torch.rand(3, 1024, generator=gen)).to(F16)  # positive activations of magnitude 1
    qweight = torch.randint(100, 128, (8, 1024), generator=gen, dtype=I8)  # sums of x × code near 115,000 > 65,504
    scale = torch.full((8,), 1e-3)
    what = "int8_weight_only_linear(float16 x (3, 1024) in [0.5, 1.5), qweight (8, 1024) in [100, 127], scale 0.001)"
    y = lab.kernels.int8_weight_only_linear(x, qweight, scale)
    overflowed = isinstance(y, torch.Tensor) and y.is_floating_point() and bool(torch.isinf(y).any())
    why = ("an Inf: the unscaled sums (about 115,000) were rounded to float16, whose largest value is 65,504. "
           "Sum in float32 and apply the scale before the one rounding to x's dtype") if overflowed else WEIGHT_ONLY_WHY
    _linear_close(y, x, dequantize_int8(qweight, scale), what, why)


@check("int8_weight_only_linear", points=2)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("qweight of dtype uint8", (T(INT8_X), T(INT8_Q).to(U8), T(INT8_SCALE)), ("uint8",)),
        ("a 1-D qweight", (T(INT8_X), T([1, 2, 3], dtype=I8), T(INT8_SCALE)), ((3,),)),
        ("x of dtype float64", (T(INT8_X, dtype=torch.float64), T(INT8_Q, dtype=I8), T(INT8_SCALE)), ("float64",)),
        ("x with 4 inputs for a weight of 3", (torch.ones(1, 4), T(INT8_Q, dtype=I8), T(INT8_SCALE)), ((1, 4), 3)),
        ("scale of shape (2, 1)", (T(INT8_X), T(INT8_Q, dtype=I8), T([[0.5], [0.25]])), ((2, 1), (2,))),
        ("scale of dtype int64", (T(INT8_X), T(INT8_Q, dtype=I8), T([1, 2])), ("int64",)),
    ],
)
def test_int8_weight_only_rejects_bad_input(lab, case, args, mention):
    k = lab.kernels
    expect_correct(k.int8_weight_only_linear, T(INT8_X), T(INT8_Q, dtype=I8), T(INT8_SCALE), expected=T(INT8_Y), what="the worked example")
    expect_value_error(k.int8_weight_only_linear, *args, what=f"int8_weight_only_linear with {case}", must_mention=mention)


# --- int4_weight_only_linear -------------------------------------------------------------------

INT4_CODES = [[3, 12, 0, 15]]
INT4_PACKED = [[195, 240]]
INT4_SCALE = [[0.5, 0.25]]
INT4_ZERO = [[4, 8]]
INT4_X = [[1.0, 2.0, 3.0, 4.0]]


def _int4_example() -> tuple[torch.Tensor, ...]:
    return T(INT4_X), T(INT4_PACKED, dtype=U8), T(INT4_SCALE), T(INT4_ZERO, dtype=U8), 2


@check("int4_weight_only_linear", points=3)
def test_int4_worked_example(lab):
    what = f"int4_weight_only_linear({INT4_X}, packed={INT4_PACKED} (codes {INT4_CODES}), scale={INT4_SCALE}, zero_point={INT4_ZERO}, group_size=2)"
    y = lab.kernels.int4_weight_only_linear(*_int4_example())
    why = cause_of(y, ([[0.25]], "that reads the high nibble first: byte j holds element 2j in its LOW nibble (195 = 3 + 12 × 16)"),
                   ([[28.5]], "the zero points were not subtracted: W = (code - zero_point) × scale"),
                   ([[48.5]], "the zero points were added: W = (code - zero_point) × scale"),
                   ([[-23.5]], "nibbles 8..15 were read as negative (two's complement): int4 codes here are unsigned, 0..15"),
                   ([[4.5]], "group 0's scale and zero point were used for every input: groups of group_size run along the inputs"))
    assert_tensor_equal(y, T([[8.5]]), what, why or "codes [3, 12, 0, 15], W = [(3-4)·0.5, (12-4)·0.5, (0-8)·0.25, (15-8)·0.25] = "
                        "[-0.5, 4, -2, 1.75], y = -0.5 + 8 - 6 + 7 = 8.5")


@check("int4_weight_only_linear", points=2)
def test_int4_groups_run_along_the_inputs(lab):
    codes = T([[1, 2, 3, 4, 5, 6, 7, 8], [15, 14, 13, 12, 11, 10, 9, 8]], dtype=U8)
    scale, zero = T([[1.0, 2.0, 4.0, 8.0], [0.5, 0.25, 0.125, 1.0]]), T([[0, 1, 2, 3], [8, 7, 6, 5]], dtype=U8)
    what = "int4_weight_only_linear(x = the 8 × 8 identity, 2 rows of 8 codes, 4 groups of 2 per row)"
    y = lab.kernels.int4_weight_only_linear(torch.eye(8), pack_nibbles(codes), scale, zero, 2)
    expected = dequantize_int4(codes, scale, zero, 2).t().float()  # the identity's outputs are Wᵀ
    tiled = ((codes.double() - zero.double().repeat(1, 2)) * scale.double().repeat(1, 2)).t().float()
    why = cause_of(y, (tiled.tolist(), "that tiles the groups (repeat): input k belongs to group k // group_size (repeat_interleave)"))
    assert_tensor_equal(y, expected, what, why or "with x = I the outputs are Wᵀ: W[n, k] = (code - zero_point[n, k // 2]) × scale[n, k // 2]")


@check("int4_weight_only_linear", points=3)
@pytest.mark.parametrize(("dtype", "scale_dtype", "group_size"), [(F32, F32, 32), (BF16, BF16, 64), (F16, F16, 128), (F32, BF16, 2), (BF16, F32, 128)])
def test_int4_matches_the_float_reference(lab, seed, dtype, scale_dtype, group_size):
    gen = torch_generator(seed)
    x = activations(gen, (2, 3, 128), dtype)
    codes, packed, scale, zero = int4_weight(gen, 24, 128, group_size, scale_dtype)
    what = f"int4_weight_only_linear(x (2, 3, 128) {dtype}, packed (24, 64), {scale_dtype} scales, group_size={group_size})"
    y = lab.kernels.int4_weight_only_linear(x, packed, scale, zero, group_size)
    _linear_close(y, x, dequantize_int4(codes, scale, zero, group_size), what)


@check("int4_weight_only_linear", points=2)
@pytest.mark.parametrize(
    ("case", "change", "mention"),
    [
        ("packed of dtype int8", {1: T(INT4_PACKED).to(I8)}, ("int8",)),
        ("x with 3 inputs for packed (1, 2) (K = 4)", {0: torch.ones(1, 3)}, ((1, 3), 4)),
        ("group_size=3 for K = 4", {4: 3}, (3, 4)),
        ("group_size=True", {4: True}, (True,)),
        ("scale of shape (1, 1) for 2 groups", {2: T([[0.5]])}, ((1, 1), (1, 2))),
        ("zero_point of dtype int32", {3: T(INT4_ZERO, dtype=torch.int32)}, ("int32",)),
        ("zero_point of shape (1, 4)", {3: T([[4, 8, 0, 0]], dtype=U8)}, ((1, 4), (1, 2))),
    ],
)
def test_int4_rejects_bad_input(lab, case, change, mention):
    k = lab.kernels
    expect_correct(k.int4_weight_only_linear, *_int4_example(), expected=T([[8.5]]), what="the worked example")
    args = [change.get(i, arg) for i, arg in enumerate(_int4_example())]
    expect_value_error(k.int4_weight_only_linear, *args, what=f"int4_weight_only_linear with {case}", must_mention=mention)


# --- int8_dynamic_linear -----------------------------------------------------------------------

W8A8_X = [[127.0, -62.5, 0.25]]
W8A8_Q = [[1, 2, 3], [-127, 0, 127]]
W8A8_SCALE = [0.5, 2.0]
W8A8_Y = [[1.5, -32258.0]]


@check("int8_dynamic_linear", points=3)
def test_int8_dynamic_worked_example(lab):
    what = f"int8_dynamic_linear({W8A8_X}, qweight={W8A8_Q}, scale={W8A8_SCALE})"
    y = lab.kernels.int8_dynamic_linear(T(W8A8_X), T(W8A8_Q, dtype=I8), T(W8A8_SCALE))
    why = cause_of(y, ([[0.5, -32258.0]], "that rounds the tie -62.5 away from zero (to -63): torch.round sends it to the even -62"),
                   ([[0.49609375, -32006.0]], "x_scale = amax / 128: the restricted int8 range is ±127, so x_scale = amax / 127"),
                   ([[0.49803921580314636, -32131.451171875]], "x_scale = amax / 127.5 (torchao's full range): this lab's codes are ±127, amax / 127"),
                   ([[1.375, -32194.5]], "that is the unquantized product: quantize x per token to int8 first"),
                   ([[1.5, -16129.0]], "the weight's scale is missing: y = acc × x_scale × scale"))
    assert_tensor_equal(y, T(W8A8_Y), what, why or "x_scale = 127 / 127 = 1, codes [127, -62, 0] (-62.5 is a tie: half to even), "
                        "acc = [3, -16129], y = acc × 1.0 × [0.5, 2.0]")


@check("int8_dynamic_linear", points=2)
def test_int8_dynamic_sums_are_exact_beyond_float32(lab, seed):
    gen = torch_generator(seed)
    x = torch.randint(90, 128, (4, 4096), generator=gen).float()
    x[:, 0] = 127.0  # every token's amax is 127: x_scale = 1.0 and the codes are x itself
    qweight = torch.randint(90, 128, (6, 4096), generator=gen, dtype=I8)
    exact = x.long() @ qweight.long().t()  # Python-exact sums, near 5e7 > 2^24
    what = "int8_dynamic_linear(x (4, 4096) of integers 90..127, qweight (6, 4096) in 90..127, scale 1.0)"
    y = lab.kernels.int8_dynamic_linear(x, qweight, torch.ones(6))
    assert_tensor_equal(y, exact.float(), what, "x_scale = 1 and scale = 1, so y is the int32 sum rounded once to float32; sums near 5e7 "
                        "exceed 2^24, where float32 accumulation drops low bits: torch._int_mm (or float64) sums exactly")


@check("int8_dynamic_linear", points=1)
def test_int8_dynamic_all_zero_token(lab):
    x = T([[0.0, 0.0, 0.0], [127.0, 1.0, -2.0]])
    what = f"int8_dynamic_linear([[0, 0, 0], [127, 1, -2]], qweight={W8A8_Q}, scale={W8A8_SCALE})"
    y = lab.kernels.int8_dynamic_linear(x, T(W8A8_Q, dtype=I8), T(W8A8_SCALE))
    assert_tensor_equal(y, T([[0.0, 0.0], [61.5, -32766.0]]), what,
                        "an all-zero token gets x_scale = SCALE_EPS and codes 0, so its outputs are 0 (never 0 / 0 = NaN); token 1: "
                        "x_scale = 1, acc = [123, -16383]")


@check("int8_dynamic_linear", points=3)
@pytest.mark.parametrize(("x_shape", "dtype", "scale_dtype"), [((9, 96), F32, F32), ((2, 5, 96), BF16, BF16), ((96,), F16, F32), ((6, 96), F32, F16)])
def test_int8_dynamic_is_within_half_an_activation_step(lab, seed, x_shape, dtype, scale_dtype):
    gen = torch_generator(seed)
    x = activations(gen, x_shape, dtype)
    if x.dim() > 1:
        x.view(-1, 96)[0] *= 1e-3  # a token 1000× smaller than the rest: it needs a step of its own
    qweight, scale = int8_weight(gen, 32, 96, scale_dtype)
    weight = dequantize_int8(qweight, scale)
    what = f"int8_dynamic_linear(x {x_shape} {dtype}, qweight (32, 96), scale (32,) {scale_dtype})"
    y = lab.kernels.int8_dynamic_linear(x, qweight, scale)
    shape = tuple(x_shape[:-1]) + (32,)
    assert_layout(y, shape, dtype, what, f"(..., N) = {shape} in x's dtype")
    assert_tensor_close(y.double(), reference(x, weight), f"{what} against x @ Wᵀ in float64", atol=w8a8_bound(x, weight),
                        why="each token's codes are off by at most half its own step (amax / 127) / 2, so output n by x_scale / 2 × Σ_k |W[n, k]|, "
                        "plus float32 rescaling and one rounding to x's dtype; a per-tensor step would break it for the small token")


@check("int8_dynamic_linear", points=2)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("qweight of dtype float32", (T(W8A8_X), T(W8A8_Q).float(), T(W8A8_SCALE)), ("float32",)),
        ("x of dtype int8", (T(W8A8_X).to(I8), T(W8A8_Q, dtype=I8), T(W8A8_SCALE)), ("int8",)),
        ("x with 2 inputs for a weight of 3", (torch.ones(4, 2), T(W8A8_Q, dtype=I8), T(W8A8_SCALE)), ((4, 2), 3)),
        ("scale of shape (3,) for 2 outputs", (T(W8A8_X), T(W8A8_Q, dtype=I8), T([1.0, 1.0, 1.0])), ((3,), (2,))),
    ],
)
def test_int8_dynamic_rejects_bad_input(lab, case, args, mention):
    k = lab.kernels
    expect_correct(k.int8_dynamic_linear, T(W8A8_X), T(W8A8_Q, dtype=I8), T(W8A8_SCALE), expected=T(W8A8_Y), what="the worked example")
    expect_value_error(k.int8_dynamic_linear, *args, what=f"int8_dynamic_linear with {case}", must_mention=mention)


# --- linear_traffic ----------------------------------------------------------------------------

LLAMA3_8B_UP = (1, 4096, 14336)  # one decode token through Llama-3-8B's MLP up projection (hidden 4096, intermediate 14336)
UP_CASES = {
    ("dense", True): (117_440_512, 36_864, 0),
    ("int8", True): (58_748_928, 36_864, 0),
    ("int8", False): (58_748_928, 36_864, 117_440_512),
    ("int4", True): (30_736_384, 36_864, 0),
    ("int4", False): (30_736_384, 36_864, 117_440_512),
}


WEIGHT_MISTAKES = {
    ("int8", 58_720_256): "that is the codes alone: the 14336 per-channel scales are stored too",
    ("int8", 58_777_600): "that counts float32 scales: scales are stored in the compute dtype, bf16 (2 bytes)",
    ("int4", 60_096_512): "that is one byte per int4 code: two codes pack into a byte",
    ("int4", 29_360_128): "that is the packed codes alone: a scale and a zero point per group of 128 are stored too",
    ("int4", 30_277_632): "that leaves out the zero points: one uint8 per group",
    ("int4", 31_653_888): "that counts float32 scales: scales are stored in the compute dtype, bf16 (2 bytes)",
}


def _traffic(result, what: str) -> tuple[int, int, int]:
    """``(weight_bytes, activation_bytes, materialized_bytes)`` of a LinearTraffic, each an int."""
    fields = tuple(getattr(result, name, None) for name in ("weight_bytes", "activation_bytes", "materialized_bytes"))
    for name, value in zip(("weight_bytes", "activation_bytes", "materialized_bytes"), fields):
        assert_exact(type(value), int, f"{what}.{name}: type", "a byte count is an int (a LinearTraffic field)")
    return fields


@check("linear_traffic", points=3)
@pytest.mark.parametrize(("weight_format", "fused"), list(UP_CASES))
def test_linear_traffic_of_a_llama3_8b_decode_step(lab, weight_format, fused):
    what = f"linear_traffic(1 token, 4096 → 14336, {weight_format!r}, bf16, group_size=128, fused={fused})"
    actual = _traffic(lab.kernels.linear_traffic(*LLAMA3_8B_UP, weight_format, BF16, 128, fused), what)
    weight, activations_, materialized = UP_CASES[(weight_format, fused)]
    weight_why = {"dense": "4096 × 14336 × 2 bytes", "int8": "4096 × 14336 one-byte codes + 14336 bf16 scales",
                  "int4": "4096 × 14336 / 2 bytes of packed codes + 14336 × 32 groups × (2-byte scale + 1-byte zero point)"}[weight_format]
    assert_exact(actual[0], weight, f"{what}.weight_bytes", WEIGHT_MISTAKES.get((weight_format, actual[0]), weight_why))
    assert_exact(actual[1], activations_, f"{what}.activation_bytes", "x read and y written: 4096 × 2 + 14336 × 2 bytes in bf16")
    why = ("a dequantize-then-matmul path writes the whole weight in bf16, 4096 × 14336 × 2 bytes" if materialized else
           "a fused kernel widens codes in registers and a dense weight needs no copy: nothing is materialized")
    assert_exact(actual[2], materialized, f"{what}.materialized_bytes", why)


@check("linear_traffic", points=3)
@pytest.mark.parametrize(("weight_format", "dtype"), [("int8", BF16), ("int8", F32), ("int4", F16), ("int4", BF16), ("dense", F32)])
def test_linear_traffic_matches_what_is_stored_and_what_the_naive_path_allocates(lab, weight_format, dtype):
    m, k, n, group_size = 3, 128, 96, 32
    gen = torch_generator(83)
    x = activations(gen, (m, k), dtype)
    if weight_format == "int8":
        qweight, scale = int8_weight(gen, n, k, dtype)  # scales stored in the compute dtype
        stored, naive = (qweight, scale), lambda: naive_int8_linear(x, qweight, scale)
    elif weight_format == "int4":
        _codes, packed, scale, zero = int4_weight(gen, n, k, group_size, dtype)
        stored, naive = (packed, scale, zero), lambda: naive_int4_linear(x, packed, scale, zero, group_size)
    else:
        weight = activations(gen, (n, k), dtype)
        stored, naive = (weight,), lambda: F.linear(x, weight)
    y, allocations = record_allocations(naive)  # measured here, on the trusted naive path
    largest = allocations.largest
    what = f"linear_traffic({m}, {k}, {n}, {weight_format!r}, {dtype}, group_size={group_size}, fused=False)"
    weight_bytes, activation_bytes, materialized = _traffic(lab.kernels.linear_traffic(m, k, n, weight_format, dtype, group_size, False), what)
    layout = " + ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in stored)
    assert_exact(weight_bytes, sum(t.nbytes for t in stored), f"{what}.weight_bytes", f"the bytes of the stored tensors, {layout}")
    assert_exact(activation_bytes, x.nbytes + y.nbytes, f"{what}.activation_bytes", f"x {tuple(x.shape)} read and y {tuple(y.shape)} written")
    if weight_format == "dense":
        assert largest.nbytes < sum(t.nbytes for t in stored), f"measured: F.linear on a dense weight allocates only its output ({largest})"
        expected, why = 0, f"a dense weight is used as stored: F.linear's largest allocation is its output, measured: {largest}"
    else:
        expected = largest.nbytes
        why = (f"measured here, the naive dequantize-then-matmul path's largest allocation is {largest}: the whole (N, K) weight in {dtype}, "
               f"{largest.nbytes / sum(t.nbytes for t in stored):.1f}× the {sum(t.nbytes for t in stored):,} bytes stored")
    assert_exact(materialized, expected, f"{what}.materialized_bytes", why)
    fused = _traffic(lab.kernels.linear_traffic(m, k, n, weight_format, dtype, group_size, True), what.replace("fused=False", "fused=True"))
    assert_exact(fused, (weight_bytes, activation_bytes, 0), what.replace("fused=False", "fused=True"),
                 "a fused kernel reads the same stored weight and activations and materializes nothing")


@check("linear_traffic", points=1)
@pytest.mark.parametrize(
    ("case", "args", "mention"),
    [
        ("tokens=0", (0, 4096, 14336, "int8"), (0,)),
        ("in_features=True", (1, True, 14336, "int8"), (True,)),
        ("out_features=14336.0", (1, 4096, 14336.0, "int8"), (14336.0,)),
        ("weight_format='fp8'", (1, 4096, 14336, "fp8"), ("fp8",)),
        ("dtype=torch.float64", (1, 4096, 14336, "int8", torch.float64), ("float64",)),
        ("fused=1", (1, 4096, 14336, "int8", BF16, 128, 1), ("fused",)),
        ("int4 with in_features=4096 in groups of 96", (1, 4096, 14336, "int4", BF16, 96), (4096, 96)),
        ("group_size=0", (1, 4096, 14336, "int4", BF16, 0), (0,)),
    ],
)
def test_linear_traffic_rejects_bad_input(lab, case, args, mention):
    k = lab.kernels
    what = "linear_traffic(1, 4096, 14336, 'int8', bf16, 128, fused=False)"
    assert_exact(_traffic(accepted(k.linear_traffic, *LLAMA3_8B_UP, "int8", BF16, 128, False, what=what), what), UP_CASES[("int8", False)], what)
    expect_value_error(k.linear_traffic, *args, what=f"linear_traffic with {case}", must_mention=mention)


# --- speed on CPU: against the naive path, measured in the same run -------------------------------


def _speed_inputs(dtype: torch.dtype = F32) -> list[tuple[torch.Tensor]]:
    gen = torch_generator(84)
    m, k, _n = SPEED_SHAPE
    return [(activations(gen, (m, k), dtype),) for _ in range(SPEED_RUNS)]


def _assert_not_pathologically_slower(function, baseline, weight: torch.Tensor, what: str, config: pytest.Config) -> None:
    inputs = _speed_inputs()
    # The naive path by this process's CPU time; yours by the wall clock when it runs in a worker
    # (the pipe included), by the same CPU clock when it runs here (a busy machine slows neither).
    clock = "wall" if config.getoption("isolate") else "cpu"
    comparison = compare(function, baseline, inputs, candidate_clock=clock, baseline_clock="cpu", warmup=2, stop_above=SPEED_RATIO)
    for (x,), y in zip(inputs, comparison.results):
        _linear_close(y, x, weight, what + " (a timed call)")
    assert comparison.ratio <= SPEED_RATIO, (
        f"{what} took {comparison.candidate} per call, {comparison.ratio:.1f}× the {comparison.baseline} of the naive dequantize-then-matmul "
        f"path measured in the same run (allowed: {SPEED_RATIO:g}×). Usual cause: a Python loop over tokens, output rows, groups or nibbles; "
        "one vectorized unpack, one dequantization and one F.linear over all tokens is enough"
    )


@check("int8_weight_only_linear", points=2)
def test_int8_weight_only_is_not_pathologically_slower_than_dequantize_then_matmul(lab, pytestconfig):
    m, k, n = SPEED_SHAPE
    qweight, scale = int8_weight(torch_generator(85), n, k)
    what = f"int8_weight_only_linear(x ({m}, {k}) float32, qweight ({n}, {k}), scale ({n},))"
    _assert_not_pathologically_slower(lambda x: lab.kernels.int8_weight_only_linear(x, qweight, scale),
                                      lambda x: naive_int8_linear(x, qweight, scale), dequantize_int8(qweight, scale), what, pytestconfig)


@check("int4_weight_only_linear", points=2)
def test_int4_is_not_pathologically_slower_than_dequantize_then_matmul(lab, pytestconfig):
    m, k, n = SPEED_SHAPE
    codes, packed, scale, zero = int4_weight(torch_generator(86), n, k, SPEED_GROUP)
    what = f"int4_weight_only_linear(x ({m}, {k}) float32, packed ({n}, {k // 2}), group_size={SPEED_GROUP})"
    _assert_not_pathologically_slower(lambda x: lab.kernels.int4_weight_only_linear(x, packed, scale, zero, SPEED_GROUP),
                                      lambda x: naive_int4_linear(x, packed, scale, zero, SPEED_GROUP),
                                      dequantize_int4(codes, scale, zero, SPEED_GROUP), what, pytestconfig)


# --- speed on a GPU: what kernel support buys ------------------------------------------------------


def _compiled(function):
    """Your function itself (not the call-limit wrapper around it) compiled by TorchInductor.

    Eager PyTorch has no int8 × bf16 GEMV: ``qweight.float()`` writes a full copy before the
    matmul reads it. Inductor fuses the widening into the matmul, as gpt-fast and torchao rely
    on; with coordinate-descent tuning it turns a one-token ``mm`` into one reduction kernel that
    reads each int8 code once. Compilation takes tens of seconds, hence no call limit here.
    """
    return torch.compile(getattr(function, "__wrapped__", function), dynamic=False)


def _bandwidth_report(bytes_moved: int, seconds: float) -> str:
    achieved = bytes_moved / seconds
    peak = peak_memory_bandwidth()
    share = f", {achieved / peak:.0%} of this GPU's peak {peak / 1e9:,.0f} GB/s" if peak else ""
    return f"{achieved / 1e9:,.0f} GB/s{share}"


@pytest.mark.gpu
@pytest.mark.timeout(900)
@check("int8_weight_only_linear", points=2)
def test_int8_weight_only_is_faster_than_bf16_at_decode_on_a_gpu(lab):
    k = n = GPU_DECODE_FEATURES
    gen = torch.Generator(device="cuda").manual_seed(87)
    qweight = torch.randint(-127, 128, (n, k), generator=gen, device="cuda", dtype=I8)
    scale = (0.005 + 0.02 * torch.rand(n, generator=gen, device="cuda")).to(BF16)
    dense = qweight.to(BF16) * scale.unsqueeze(1)  # the bf16 layer that the int8 one replaces
    inputs = [(torch.randn(1, k, generator=gen, device="cuda", dtype=BF16),) for _ in range(GPU_RUNS)]
    rows = dequantize_int8(qweight[:GPU_CHECKED_OUTPUTS].cpu(), scale[:GPU_CHECKED_OUTPUTS].cpu())
    what = f"int8_weight_only_linear(x (1, {k}) bf16, qweight ({n}, {k}) on {torch.cuda.get_device_name()})"
    eager = lab.kernels.int8_weight_only_linear(inputs[0][0], qweight, scale)  # correct and within the call limit first
    _linear_close(eager[:, :GPU_CHECKED_OUTPUTS].cpu(), inputs[0][0].cpu(), rows, what + " (eager)")
    with torch._inductor.config.patch(coordinate_descent_tuning=True):
        fused = _compiled(lab.kernels.int8_weight_only_linear)
        fused(inputs[0][0], qweight, scale)  # compiles here, untimed
    comparison = compare(lambda x: fused(x, qweight, scale), lambda x: F.linear(x, dense), inputs,
                         candidate_clock="cuda", baseline_clock="cuda", warmup=3)
    for (x,), y in zip(inputs, comparison.results):
        _linear_close(y[:, :GPU_CHECKED_OUTPUTS].cpu(), x.cpu(), rows, what + " (compiled, a timed call)")
    speedup = 1 / comparison.ratio
    moved = n * k + 2 * n + 2 * k + 2 * n  # int8 codes, bf16 scales, x and y
    assert speedup >= GPU_DECODE_FLOOR, (
        f"{what}, compiled: {comparison.candidate} against bf16 F.linear's {comparison.baseline}, a speedup of {speedup:.2f}× at "
        f"{_bandwidth_report(moved, comparison.candidate.median)}; expected at least {GPU_DECODE_FLOOR}× (2× is the bound: half the bytes). "
        "Sum against qweight widened inside the matmul (F.linear(x.float(), qweight.float()) * scale) and let the compiler fuse it; "
        "a dequantized weight written to memory first moves more bytes than bf16"
    )


@pytest.mark.gpu
@pytest.mark.timeout(900)
@check("int8_dynamic_linear", points=2)
def test_int8_dynamic_is_faster_than_bf16_at_large_batch_on_a_gpu(lab):
    m = k = n = GPU_PREFILL_TOKENS
    gen = torch.Generator(device="cuda").manual_seed(88)
    qweight = torch.randint(-127, 128, (n, k), generator=gen, device="cuda", dtype=I8)
    scale = (0.005 + 0.02 * torch.rand(n, generator=gen, device="cuda")).to(BF16)
    dense = qweight.to(BF16) * scale.unsqueeze(1)
    inputs = [(torch.randn(m, k, generator=gen, device="cuda", dtype=BF16),) for _ in range(GPU_RUNS)]
    rows = dequantize_int8(qweight[:GPU_CHECKED_OUTPUTS].cpu(), scale[:GPU_CHECKED_OUTPUTS].cpu())
    what = f"int8_dynamic_linear(x ({m}, {k}) bf16, qweight ({n}, {k}) on {torch.cuda.get_device_name()})"

    def verify(x: torch.Tensor, y: torch.Tensor, label: str) -> None:
        head = x[:64].cpu()  # 64 tokens × 256 outputs against the float64 reference
        assert_tensor_close(y[:64, :GPU_CHECKED_OUTPUTS].cpu().double(), reference(head, rows), f"{what} ({label})", atol=w8a8_bound(head, rows),
                            why="half an activation step per code, float32 rescaling and one rounding to bf16")

    verify(inputs[0][0], lab.kernels.int8_dynamic_linear(inputs[0][0], qweight, scale), "eager")
    fused = _compiled(lab.kernels.int8_dynamic_linear)
    fused(inputs[0][0], qweight, scale)  # compiles here, untimed
    comparison = compare(lambda x: fused(x, qweight, scale), lambda x: F.linear(x, dense), inputs,
                         candidate_clock="cuda", baseline_clock="cuda", warmup=3)
    for (x,), y in zip(inputs, comparison.results):
        verify(x, y, "compiled, a timed call")
    codes = torch.randint(-127, 128, (m, k), generator=gen, device="cuda", dtype=I8)
    kernels = compare(lambda a: torch._int_mm(a, qweight.t()), lambda a: torch.mm(inputs[0][0], dense.t()), [(codes,)] * GPU_RUNS,
                      candidate_clock="cuda", baseline_clock="cuda", warmup=3)
    speedup = 1 / comparison.ratio
    assert speedup >= GPU_PREFILL_FLOOR, (
        f"{what}, compiled: {comparison.candidate} against bf16 F.linear's {comparison.baseline}, a speedup of {speedup:.2f}×; expected at least "
        f"{GPU_PREFILL_FLOOR}×. The bare kernels: torch._int_mm {kernels.candidate} against bf16 mm {kernels.baseline} "
        f"({1 / kernels.ratio:.2f}×). Use torch._int_mm where int_mm_applies (M > 16 here) and keep quantization and rescaling elementwise, "
        "so the compiler fuses them"
    )
