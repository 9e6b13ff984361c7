"""Hidden checks for Lab 03: the learner against the reference on fresh random weights.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay): shapes, bit
widths, granularities, symmetry, weight dtypes (float32, float16, bfloat16) and scale dtypes.
Codes, scales, zero points and packed bytes are compared exactly, dtypes included: the lab's
docstrings fix every rounding step, so there is one right answer.
"""

from __future__ import annotations

import pytest

from infralens.checking import outcome
import torch
import torch.nn.functional as F

from lab03_inputs import describe_case, random_case, random_weight, torch_generator

check = pytest.mark.check
CASES = 40


def _same(actual, expected, what, case):
    """Exact tensor equality with dtype and shape, or both None."""
    if expected is None:
        assert actual is None, f"{what} is a tensor, expected None ({case})"
        return
    assert actual is not None, f"{what} is None, expected a {expected.dtype} tensor of shape {tuple(expected.shape)} ({case})"
    assert actual.dtype == expected.dtype, f"{what} has dtype {actual.dtype}, expected {expected.dtype} ({case})"
    assert tuple(actual.shape) == tuple(expected.shape), f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)} ({case})"
    if not torch.equal(actual, expected):
        where = tuple((actual != expected).nonzero()[0].tolist())
        pytest.fail(f"{what} differs at {where}: got {actual[where].item()!r}, expected {expected[where].item()!r} ({case})", pytrace=False)


def _draw(rng, seed_offset, seed):
    case = random_case(rng)
    w = random_weight(torch_generator(seed + seed_offset), case["out_features"], case["in_features"], case["dtype"], std=rng.choice([0.02, 0.05, 1.0, 30.0]))
    return case, w


@check("choose_qparams", points=3)
def test_choose_qparams_matches_reference(lab, oracle, rng, seed):
    for i in range(CASES):
        case, w = _draw(rng, i, seed)
        args = (w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        scale, zero_point = lab.weight_quant.choose_qparams(*args)
        ref_scale, ref_zero = oracle.weight_quant.choose_qparams(*args)
        _same(scale, ref_scale, "scale", describe_case(case))
        _same(zero_point, ref_zero, "zero_point", describe_case(case))


@check("quantize", points=2)
def test_quantize_matches_reference(lab, oracle, rng, seed):
    for i in range(CASES):
        case, w = _draw(rng, i, seed)
        scale, zero_point = oracle.weight_quant.choose_qparams(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        codes = lab.weight_quant.quantize(w, scale, zero_point, case["bits"])
        _same(codes, oracle.weight_quant.quantize(w, scale, zero_point, case["bits"]), "quantize codes", describe_case(case))


@check("dequantize", points=1)
def test_dequantize_matches_reference(lab, oracle, rng, seed):
    for i in range(CASES):
        case, w = _draw(rng, i, seed)
        ref = oracle.weight_quant.quantize_weight(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        got = lab.weight_quant.dequantize(ref.qdata, ref.scale, ref.zero_point)
        _same(got, oracle.weight_quant.dequantize(ref.qdata, ref.scale, ref.zero_point), "dequantize (float32, (q - zero_point) × scale)", describe_case(case))


@check("quantize_weight", points=3)
def test_quantize_weight_matches_reference(lab, oracle, rng, seed):
    for i in range(CASES):
        case, w = _draw(rng, i, seed)
        args = (w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        qw, ref = lab.weight_quant.quantize_weight(*args), oracle.weight_quant.quantize_weight(*args)
        what = describe_case(case)
        _same(qw.qdata, ref.qdata, "qdata", what)
        _same(qw.scale, ref.scale, "scale", what)
        _same(qw.zero_point, ref.zero_point, "zero_point", what)
        assert (qw.bits, qw.group_size) == (ref.bits, ref.group_size), f"bits, group_size are {(qw.bits, qw.group_size)}, expected {(ref.bits, ref.group_size)} ({what})"
        _same(lab.weight_quant.dequantize_weight(qw), oracle.weight_quant.dequantize_weight(ref), "dequantize_weight", what)


@check("QuantizedWeight", points=2)
def test_nbytes_matches_reference(lab, oracle, rng, seed):
    for i in range(CASES):
        case, w = _draw(rng, i, seed)
        ref = oracle.weight_quant.quantize_weight(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        qw = lab.weight_quant.QuantizedWeight(ref.qdata, ref.scale, ref.zero_point, ref.bits, ref.group_size)
        assert qw.nbytes == ref.nbytes, f"nbytes is {qw.nbytes:,}, expected {ref.nbytes:,} ({describe_case(case)})"
        assert qw.bits_per_weight == ref.bits_per_weight, f"bits_per_weight is {qw.bits_per_weight}, expected {ref.bits_per_weight} ({describe_case(case)})"


@check("pack_int4", points=2)
def test_pack_unpack_match_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    for _ in range(CASES):
        shape = tuple(rng.randint(1, 6) for _ in range(rng.randint(0, 2))) + (2 * rng.randint(1, 50),)
        signed = rng.random() < 0.5
        codes = torch.randint(-8, 8, shape, generator=gen).to(torch.int8) if signed else torch.randint(0, 16, shape, generator=gen).to(torch.uint8)
        packed = lab.weight_quant.pack_int4(codes)
        expected = oracle.weight_quant.pack_int4(codes)
        _same(packed, expected, "pack_int4", f"{codes.dtype} codes of shape {shape}")
        _same(lab.weight_quant.unpack_int4(expected, signed=signed), codes, "unpack_int4", f"signed={signed}, shape {tuple(expected.shape)}")


@check("choose_qparams", points=1)
def test_validation_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    for _ in range(CASES):
        out_features, in_features = rng.randint(1, 12), rng.choice([6, 16, 24, 48, 100])
        w = torch.randn(out_features, in_features, generator=gen).to(rng.choice([torch.float32, torch.float16, torch.bfloat16]))
        spoil = rng.choice(["none", "nan", "inf", "huge", "int", "3d"])
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
        expected = outcome(lambda: oracle.weight_quant.choose_qparams(w, **kwargs) and "accepted")
        actual = outcome(lambda: lab.weight_quant.choose_qparams(w, **kwargs) and "accepted")
        assert actual == expected, f"choose_qparams(w {tuple(w.shape)} {w.dtype} ({spoil}), {kwargs}): got {actual[0]}, expected {expected[0]}"


@check("quant_error", points=1)
def test_quant_error_matches_reference(lab, oracle, rng, seed):
    for i in range(CASES // 2):
        case, w = _draw(rng, i, seed)
        w_hat = oracle.weight_quant.dequantize_weight(oracle.weight_quant.quantize_weight(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"]))
        got, ref = lab.weight_quant.quant_error(w, w_hat), oracle.weight_quant.quant_error(w, w_hat)
        # float64 sums over at most a few thousand terms: 1e-9 relative leaves room for any summation order.
        for field in ("mse", "max_abs", "sqnr_db"):
            a, b = getattr(got, field), getattr(ref, field)
            assert a == b or abs(a - b) <= 1e-9 * abs(b), f"quant_error.{field} is {a!r}, expected {b!r} ({describe_case(case)})"


@check("QuantizedLinear", points=2)
def test_quantized_linear_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    for i in range(CASES // 4):
        case, w = _draw(rng, i, seed)
        if case["in_features"] % 2:
            continue
        ref_qw = oracle.weight_quant.quantize_weight(w, case["bits"], case["group_size"], case["symmetric"], case["scale_dtype"])
        qw = lab.weight_quant.QuantizedWeight(ref_qw.qdata, ref_qw.scale, ref_qw.zero_point, ref_qw.bits, ref_qw.group_size)
        layer, ref_layer = lab.weight_quant.QuantizedLinear(qw), oracle.weight_quant.QuantizedLinear(ref_qw)
        state, ref_state = layer.state_dict(), ref_layer.state_dict()
        assert set(state) == set(ref_state), f"state_dict keys are {sorted(state)}, expected {sorted(ref_state)} ({describe_case(case)})"
        for key in ref_state:
            _same(state[key], ref_state[key], f"buffer {key!r}", describe_case(case))
        x = torch.randn(3, case["in_features"], generator=gen)
        y, ref_y = layer(x), ref_layer(x)
        w_hat = oracle.weight_quant.dequantize_weight(ref_qw)
        # Any summation order of a float32 dot product of length n is within n × 2^-24 of sum |x|·|w|.
        tolerance = case["in_features"] * 2.0**-24 * F.linear(x.abs(), w_hat.abs())
        assert y.dtype == ref_y.dtype and bool(((y - ref_y).abs() <= tolerance).all()), f"forward differs from the reference by more than float32 rounding ({describe_case(case)})"
