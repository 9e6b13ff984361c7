"""Hidden checks for Lab 03: the learner against the reference, on deterministic edge cases first
and then on fresh random weights.

The edge cases (``lab03_inputs.edge_cases``: ties at .5, values next to a tie, negative zeros, odd
row lengths, boundary group sizes and bit widths, zero, tiny and huge weights) run under every
seed, so a verdict never depends on the seed; the random ones come from the run's seed (printed
in the header, ``--seed`` to replay): shapes, bit widths, granularities, symmetry, weight dtypes
(float32, float16, bfloat16) and scale dtypes. Codes, scales, zero points and packed bytes are
compared exactly, dtypes and shapes first: the lab's docstrings fix every rounding step, so there
is one right answer. Every check includes valid inputs, so a function that rejects everything fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infralens.checking import assert_exact, outcome, summarize
from infralens.tensor_checks import assert_tensor_close, assert_tensor_equal
from lab03_inputs import describe_case, edge_cases, random_case, random_weight, torch_generator

check = pytest.mark.check
CASES = 40


def _same(actual, expected, what: str) -> None:
    """Exact equality, shape and dtype first; or both ``None``."""
    if expected is None:
        if actual is not None:
            pytest.fail(f"{what} should be None, got {summarize(actual)}", pytrace=False)
        return
    assert_tensor_equal(actual, expected, what)


def _cases(rng, seed: int, count: int = CASES):
    """The edge cases, then ``count`` random ``(case, w)`` drawn from the run's seed."""
    yield from edge_cases()
    yield from _random_cases(rng, seed, count)


def _random_cases(rng, seed: int, count: int = CASES):
    """``count`` random ``(case, w)`` drawn from the run's seed, one at a time."""
    for i in range(count):
        case = random_case(rng)
        yield case, random_weight(torch_generator(seed + i), case["out_features"], case["in_features"], case["dtype"], std=rng.choice([0.02, 0.05, 1.0, 30.0]))


def _args(case: dict, w: torch.Tensor) -> tuple:
    return w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"]


def _pair(result, what: str) -> tuple:
    if type(result) is not tuple or len(result) != 2:
        pytest.fail(f"{what} returned {type(result).__name__} {summarize(result)}, expected a tuple (scale, zero_point)", pytrace=False)
    return result


@check("choose_qparams", points=3)
def test_choose_qparams_matches_reference(lab, oracle, rng, seed, cases):
    for case, w in cases(edge_cases(), _random_cases(rng, seed)):
        what = f"choose_qparams({describe_case(case)})"
        scale, zero_point = _pair(lab.weight_quant.choose_qparams(*_args(case, w)), what)
        ref_scale, ref_zero = oracle.weight_quant.choose_qparams(*_args(case, w))
        _same(scale, ref_scale, f"{what}'s scale")
        _same(zero_point, ref_zero, f"{what}'s zero_point")


@check("quantize", points=2)
def test_quantize_matches_reference(lab, oracle, rng, seed, cases):
    for case, w in cases(edge_cases(), _random_cases(rng, seed)):
        scale, zero_point = oracle.weight_quant.choose_qparams(*_args(case, w))
        codes = lab.weight_quant.quantize(w, scale, zero_point, case["bits"])
        _same(codes, oracle.weight_quant.quantize(w, scale, zero_point, case["bits"]), f"quantize codes ({describe_case(case)})")


@check("dequantize", points=1)
def test_dequantize_matches_reference(lab, oracle, rng, seed, cases):
    for case, w in cases(edge_cases(), _random_cases(rng, seed)):
        ref = oracle.weight_quant.quantize_weight(*_args(case, w))
        got = lab.weight_quant.dequantize(ref.qdata, ref.scale, ref.zero_point)
        _same(got, oracle.weight_quant.dequantize(ref.qdata, ref.scale, ref.zero_point), f"dequantize, float32 (q - zero_point) × scale ({describe_case(case)})")


@check("quantize_weight", points=3)
def test_quantize_weight_matches_reference(lab, oracle, rng, seed, cases):
    for case, w in cases(edge_cases(), _random_cases(rng, seed)):
        qw, ref = lab.weight_quant.quantize_weight(*_args(case, w)), oracle.weight_quant.quantize_weight(*_args(case, w))
        what = f"quantize_weight({describe_case(case)})"
        _same(qw.qdata, ref.qdata, f"{what}.qdata")
        _same(qw.scale, ref.scale, f"{what}.scale")
        _same(qw.zero_point, ref.zero_point, f"{what}.zero_point")
        assert_exact((qw.bits, qw.group_size), (ref.bits, ref.group_size), f"{what} (bits, group_size)")


@check("dequantize_weight", points=1)
def test_dequantize_weight_matches_reference(lab, oracle, rng, seed, cases):
    for case, w in cases(edge_cases(), _random_cases(rng, seed, CASES // 2)):
        ref = oracle.weight_quant.quantize_weight(*_args(case, w))
        qw = lab.weight_quant.QuantizedWeight(ref.qdata, ref.scale, ref.zero_point, ref.bits, ref.group_size)
        _same(lab.weight_quant.dequantize_weight(qw), oracle.weight_quant.dequantize_weight(ref), f"dequantize_weight ({describe_case(case)})")


@check("QuantizedWeight", points=2)
def test_nbytes_matches_reference(lab, oracle, rng, seed):
    for case, w in _cases(rng, seed):
        ref = oracle.weight_quant.quantize_weight(*_args(case, w))
        qw = lab.weight_quant.QuantizedWeight(ref.qdata, ref.scale, ref.zero_point, ref.bits, ref.group_size)
        assert_exact(qw.nbytes, ref.nbytes, f"QuantizedWeight.nbytes ({describe_case(case)})", "byte counts are int")
        assert_exact(qw.bits_per_weight, ref.bits_per_weight, f"QuantizedWeight.bits_per_weight ({describe_case(case)})")


def _pack_cases(rng, gen):
    """Valid and invalid codes for pack_int4: the deterministic ones, then random valid ones."""
    full = torch.arange(-8, 8, dtype=torch.int8)
    yield torch.stack((full, full.flip(0)))  # every int8 code, both nibbles
    yield torch.arange(16, dtype=torch.uint8).reshape(2, 2, 4)  # every uint8 code, 3-D
    yield torch.tensor([-8, 7], dtype=torch.int8)  # 1-D, the boundary codes
    yield torch.zeros(3, 0, dtype=torch.int8)  # no codes at all: an even count of zero
    yield torch.tensor([[1, 2, 3]], dtype=torch.int8)  # odd count
    yield torch.tensor([[8, 0]], dtype=torch.int8)
    yield torch.tensor([[-9, 0]], dtype=torch.int8)
    yield torch.tensor([[16, 0]], dtype=torch.uint8)
    yield torch.tensor([[1, 2]], dtype=torch.int32)
    yield torch.tensor([[True, False]])
    for _ in range(CASES):
        shape = tuple(rng.randint(1, 6) for _ in range(rng.randint(0, 2))) + (2 * rng.randint(1, 50),)
        signed = rng.random() < 0.5
        yield torch.randint(-8, 8, shape, generator=gen).to(torch.int8) if signed else torch.randint(0, 16, shape, generator=gen).to(torch.uint8)


@check("pack_int4", points=2)
def test_pack_int4_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    for codes in _pack_cases(rng, gen):
        what = f"pack_int4({summarize(codes)})"
        expected = outcome(lambda: oracle.weight_quant.pack_int4(codes))
        actual = outcome(lambda: lab.weight_quant.pack_int4(codes))
        assert actual[0] == expected[0], f"{what}: got {actual[0]}, expected {expected[0]}"
        if expected[0] == "value":
            _same(actual[1], expected[1], what)


@check("unpack_int4", points=2)
def test_unpack_int4_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    fixed = [
        (torch.arange(256, dtype=torch.uint8).reshape(4, 64), True),
        (torch.arange(256, dtype=torch.uint8).reshape(2, 2, 64), False),
        (torch.tensor([0x80, 0x08, 0xFF], dtype=torch.uint8), True),
        (torch.zeros(2, 0, dtype=torch.uint8), True),
        (torch.tensor([[57, 112]], dtype=torch.int8), True),
        (torch.tensor([[57, 112]], dtype=torch.int32), False),
    ]
    randoms = [(torch.randint(0, 256, (rng.randint(1, 6), rng.randint(1, 40)), generator=gen).to(torch.uint8), rng.random() < 0.5) for _ in range(CASES)]
    for packed, signed in fixed + randoms:
        what = f"unpack_int4({summarize(packed)}, signed={signed})"
        expected = outcome(lambda: oracle.weight_quant.unpack_int4(packed, signed=signed))
        actual = outcome(lambda: lab.weight_quant.unpack_int4(packed, signed=signed))
        assert actual[0] == expected[0], f"{what}: got {actual[0]}, expected {expected[0]}"
        if expected[0] == "value":
            _same(actual[1], expected[1], what)


def _validation_cases(rng, gen):
    """``(description, w, kwargs)`` for choose_qparams: fixed valid and invalid ones, then random."""
    w = torch.randn(4, 48, generator=gen)
    nan, inf, empty = w.clone(), w.clone(), torch.zeros(0, 48)
    nan[1, 2], inf[3, 47] = float("nan"), float("-inf")
    valid = dict(bits=8, group_size=None, symmetric=True, scale_dtype=torch.float16)
    fixed = [
        ("valid, per-channel", w, valid),
        ("valid, per-tensor, 2 bits", w, dict(valid, bits=2, group_size=-1)),
        ("valid, group_size = in_features", w, dict(valid, group_size=48, symmetric=False)),
        ("valid, group_size = 1", w, dict(valid, group_size=1, scale_dtype=torch.bfloat16)),
        ("valid, bfloat16 weight", w.to(torch.bfloat16), dict(valid, bits=4, group_size=16)),
        ("valid, huge weight with float32 scales", (w * 1e9).to(torch.bfloat16), dict(valid, scale_dtype=torch.float32)),
        ("valid, all zero", torch.zeros(2, 6), dict(valid, bits=3, group_size=3, symmetric=False)),
        ("valid, a single weight", torch.tensor([[-0.0]]), valid),
        ("bits=True", w, dict(valid, bits=True)),
        ("bits=1", w, dict(valid, bits=1)),
        ("bits=9", w, dict(valid, bits=9)),
        ("bits=8.0", w, dict(valid, bits=8.0)),
        ("group_size=True", w, dict(valid, group_size=True)),
        ("group_size=0", w, dict(valid, group_size=0)),
        ("group_size=-2", w, dict(valid, group_size=-2)),
        ("group_size=36 with in_features=48", w, dict(valid, group_size=36)),
        ("group_size=96 with in_features=48", w, dict(valid, group_size=96)),
        ("group_size=16.0", w, dict(valid, group_size=16.0)),
        ("scale_dtype=torch.float64", w, dict(valid, scale_dtype=torch.float64)),
        ("NaN in w", nan, valid),
        ("-Inf in w", inf, valid),
        ("an empty w", empty, valid),
        ("a 1-D w", w[0], valid),
        ("a 3-D w", w[None], valid),
        ("an int32 w", (w * 10).to(torch.int32), valid),
        ("a float64 w", w.double(), valid),
        ("a scale beyond float16", (w * 1e9).to(torch.bfloat16), valid),
    ]
    yield from fixed
    for _ in range(CASES):
        out_features, in_features = rng.randint(1, 12), rng.choice([6, 16, 24, 48, 100])
        w = torch.randn(out_features, in_features, generator=gen).to(rng.choice([torch.float32, torch.float16, torch.bfloat16]))
        spoil = rng.choice(["none", "none", "nan", "inf", "huge", "int", "3d"])
        if spoil in ("nan", "inf"):
            w[rng.randrange(out_features), rng.randrange(in_features)] = float(spoil)
        elif spoil == "huge":
            w = (w.float() * 1e9).to(torch.bfloat16)
        elif spoil == "int":
            w = w.to(torch.int32)
        elif spoil == "3d":
            w = w[None]
        kwargs = dict(
            bits=rng.choice([1, 2, 4, 8, 9, 16]),
            group_size=rng.choice([None, -1, -2, 0, 4, 8, 16, 32, 36]),
            symmetric=rng.random() < 0.5,
            scale_dtype=rng.choice([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
        )
        yield f"w {tuple(w.shape)} {w.dtype} ({spoil})", w, kwargs


@check("choose_qparams", points=1)
def test_validation_matches_reference(lab, oracle, rng, seed):
    for description, w, kwargs in _validation_cases(rng, torch_generator(seed)):
        expected = outcome(lambda: oracle.weight_quant.choose_qparams(w, **kwargs) and "accepted")
        actual = outcome(lambda: lab.weight_quant.choose_qparams(w, **kwargs) and "accepted")
        assert actual == expected, f"choose_qparams({description}, {kwargs}): got {actual[0]}, expected {expected[0]}"


def _error_cases(oracle, rng, seed):
    """``(description, w, w_hat)`` for quant_error: fixed edge cases, then random reconstructions."""
    yield "zero error", torch.tensor([[0.5, -1.0]]), torch.tensor([[0.5, -1.0]])
    yield "all-zero w, exact", torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.float16)
    yield "all-zero w with error", torch.zeros(3), torch.tensor([0.0, -0.5, 0.0])
    yield "negative error", torch.tensor([1.0, -2.0, 3.0, 4.0]), torch.tensor([1.0, -2.0, 3.0, 4.5])
    yield "negative zeros", torch.tensor([-0.0, 1.0]), torch.tensor([0.0, 0.75])
    yield "float32 rounding shows", torch.tensor([0.1, -0.7, 0.3, 1.9, -2.3]), torch.tensor([0.125, -0.6875, 0.25, 1.875, -2.3125])
    yield "bfloat16 against float32", torch.tensor([[1.5, -3.25]], dtype=torch.bfloat16), torch.tensor([[1.4, -3.3]])
    yield "different shapes", torch.zeros(2, 3), torch.zeros(3, 2)
    yield "different shapes, same numel", torch.zeros(6), torch.zeros(2, 3)
    for case, w in _cases(rng, seed, CASES // 2):
        ref = oracle.weight_quant.quantize_weight(*_args(case, w))
        yield describe_case(case), w, oracle.weight_quant.dequantize_weight(ref)


@check("quant_error", points=1)
def test_quant_error_matches_reference(lab, oracle, rng, seed):
    for description, w, w_hat in _error_cases(oracle, rng, seed):
        expected = outcome(lambda: oracle.weight_quant.quant_error(w, w_hat))
        actual = outcome(lambda: lab.weight_quant.quant_error(w, w_hat))
        assert actual[0] == expected[0], f"quant_error({description}): got {actual[0]}, expected {expected[0]}"
        if expected[0] != "value":
            continue
        # float64 sums over at most a few thousand terms: 1e-9 relative leaves room for any summation order;
        # float32 arithmetic is off by 1e-8 relative or more on these inputs.
        for field in ("mse", "max_abs", "sqnr_db"):
            a, b = getattr(actual[1], field, None), getattr(expected[1], field)
            if type(a) is not float:
                pytest.fail(f"quant_error({description}).{field} is {type(a).__name__} {summarize(a)}; expected a Python float", pytrace=False)
            assert a == b or abs(a - b) <= 1e-9 * abs(b), f"quant_error({description}).{field} is {a!r}, expected {b!r} (within 1e-9 relative, float64)"


@check("QuantizedLinear", points=2)
def test_quantized_linear_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    for case, w in _cases(rng, seed, CASES // 4):
        if case["in_features"] % 2:
            continue  # 4-bit layers need an even in_features; the others are covered by their own cases
        ref_qw = oracle.weight_quant.quantize_weight(*_args(case, w))
        what = f"QuantizedLinear({describe_case(case)})"
        qw = lab.weight_quant.QuantizedWeight(ref_qw.qdata, ref_qw.scale, ref_qw.zero_point, ref_qw.bits, ref_qw.group_size)
        layer, ref_layer = lab.weight_quant.QuantizedLinear(qw), oracle.weight_quant.QuantizedLinear(ref_qw)
        state, ref_state = layer.state_dict(), ref_layer.state_dict()
        assert set(state) == set(ref_state), f"{what}: state_dict keys are {sorted(state)[:8]}, expected {sorted(ref_state)}"
        for key in ref_state:
            _same(state[key], ref_state[key], f"{what}: buffer {key!r}")
        for x in (torch.randn(3, case["in_features"], generator=gen), torch.randn(2, 1, case["in_features"], generator=gen).to(torch.bfloat16)):
            ref_y = ref_layer(x)
            w_hat = oracle.weight_quant.dequantize_weight(ref_qw).to(x.dtype).float()
            # Any summation order of a dot product of length n is within n × eps of sum |x|·|w| (eps 2^-24 in float32, 2^-8 in bfloat16).
            eps = 2.0**-24 if x.dtype == torch.float32 else 2.0**-8
            bound = case["in_features"] * eps * F.linear(x.float().abs(), w_hat.abs()) + (0 if x.dtype == torch.float32 else ref_y.float().abs() * 2.0**-8)
            y = layer(x)
            if isinstance(y, torch.Tensor) and y.dtype == ref_y.dtype:
                assert_tensor_close(y.float(), ref_y.float(), f"{what}: forward of {summarize(x)}", atol=bound, why="rounding of a dot product in x.dtype, in any summation order")
            else:
                assert_tensor_equal(y, ref_y, f"{what}: forward of {summarize(x)}", "in x.dtype")
