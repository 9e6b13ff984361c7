"""Hidden checks for Lab 05: the learner against the reference, on the deterministic edge cases of
``lab05_inputs.edge_activations`` and then on fresh random inputs.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay). Codes, int32 sums,
clipped fractions, outlier columns and byte counts are compared exactly, dtypes included; floats
that the docstrings let round in another order (pow, the rescale's two multiplications) within a
stated float32 tolerance. "Both raise ValueError" counts as agreement; every check also holds
valid inputs, so rejecting everything fails.
"""

from __future__ import annotations

import random

import pytest
import torch

from infralens.checking import assert_exact, outcome, same_outcome
from infralens.tensor_checks import assert_tensor_close, assert_tensor_equal
from lab05_inputs import FLOAT32_SLACK, edge_activations, outlier_activations, random_weight, torch_generator, w8a8_bound

check = pytest.mark.check
T = torch.tensor
RANDOM_CASES = 12
EDGE_CASES = len(edge_activations())
POW_RELATIVE = 2.0**-21  # torch.pow or sqrt, and a division: one or two float32 roundings each


def _random_activations(rng: random.Random, seed: int) -> tuple[str, torch.Tensor]:
    """Random shapes (1-D to 3-D, odd widths), dtypes, and outlier channels or a plain bulk."""
    gen = torch_generator(seed)
    hidden = rng.choice([1, 3, 17, 48, 64, 96, 131])
    lead = rng.choice([(), (1,), (rng.randint(2, 40),), (rng.randint(1, 3), rng.randint(1, 9))])
    dtype = rng.choice([torch.float32, torch.float32, torch.float16, torch.bfloat16])
    if hidden >= 48 and rng.random() < 0.6:
        x = outlier_activations(gen, max(1, torch.Size(lead).numel()), hidden).reshape(*lead, hidden)
    else:
        x = torch.randn(*lead, hidden, generator=gen) * rng.choice([1e-3, 1.0, 30.0])
    return f"random x {tuple(x.shape)} {dtype}", x.to(dtype)


def _cases(rng: random.Random, seed: int) -> list[tuple[str, torch.Tensor]]:
    return edge_activations() + [_random_activations(rng, seed + i) for i in range(RANDOM_CASES)]


def _weight_for(x: torch.Tensor, seed: int, out_features: int = 7) -> torch.Tensor:
    return random_weight(torch_generator(seed), out_features, x.shape[-1], x.dtype)


def _edge(index: int) -> bool:
    """True for the deterministic edge cases at the front of :func:`_cases`: their other arguments are fixed too."""
    return index < EDGE_CASES


@check("quantize_per_token", points=3)
def test_quantize_per_token_matches_reference(lab, oracle, rng, seed, cases):
    bad = [("NaN", T([[1.0, float("nan")]]), 8), ("bits=True", torch.ones(2, 3), True), ("bits=9", torch.ones(2, 3), 9), ("int32 x", torch.ones(2, dtype=torch.int32), 8)]
    built = [(name, x, bits) for i, (name, x) in enumerate(_cases(rng, seed)) for bits in (8, 4 if _edge(i) else rng.choice([2, 3, 5, 6, 7]))]
    for name, x, bits in cases(built[: 2 * EDGE_CASES] + bad, built[2 * EDGE_CASES :]):
        what = f"quantize_per_token({name}, bits={bits!r})"

        def same(mine, theirs, what=what):
            assert_exact(type(mine), tuple, f"{what}: return type")
            assert_tensor_equal(mine[0], theirs[0], f"{what}'s codes")
            assert_tensor_equal(mine[1], theirs[1], f"{what}'s scale")

        cases.count_valid(same_outcome(outcome(lambda: lab.activation_quant.quantize_per_token(x, bits)), outcome(lambda: oracle.activation_quant.quantize_per_token(x, bits)), what, same))
    cases.require_valid()


@check("calibrate_scale", points=2)
def test_calibrate_scale_matches_reference(lab, oracle, rng, seed):
    cases = _cases(rng, seed)
    calls = [([x], "absmax", 99.99, 8) for _, x in cases]
    calls += [([x], "percentile", p, bits) for (_, x), p, bits in zip(cases, [50, 99.9, 100, 12.5, 99.99, 1e-3, 75] * 4, [8, 4, 8, 2] * 7)]
    calls += [([cases[0][1], cases[3][1], cases[-1][1]], "percentile", 99.0, 8), ([], "absmax", 99.99, 8), ([torch.ones(2)], "median", 50, 8),
              ([torch.ones(2)], "percentile", True, 8), ([torch.ones(2)], "percentile", 0, 8)]
    valid = 0
    for batches, method, percentile, bits in calls:
        what = f"calibrate_scale({[tuple(b.shape) for b in batches]}, {method!r}, {percentile!r}, {bits})"

        def same(mine, theirs, what=what, method=method):
            if method == "absmax":
                assert_exact(mine, theirs, what, "max |x| / quant_max in float32, as a Python float")
            else:
                assert_exact(type(mine), float, f"{what}: return type")
                assert abs(mine - theirs) <= POW_RELATIVE * theirs, (
                    f"{what} returned {mine!r}, expected {theirs!r} (within {POW_RELATIVE:.2g} relative: the interpolation may run in float32 "
                    "or float64): linear interpolation of sorted |x| at position (n - 1) × percentile / 100"
                )

        valid += same_outcome(outcome(lambda: lab.activation_quant.calibrate_scale(batches, method, percentile, bits)),
                        outcome(lambda: oracle.activation_quant.calibrate_scale(batches, method, percentile, bits)), what, same)
    assert valid, "no valid input was accepted"


@check("quantize_static", points=2)
def test_quantize_static_matches_reference(lab, oracle, rng, seed):
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        amax = float(x.float().abs().max())
        for fraction in (1.0, 0.3 if _edge(i) else rng.choice([0.05, 0.7])):  # a scale that covers x, and one calibrated too small
            scale = max(oracle.activation_quant.calibrate_scale([x]) * fraction, 2.0**-100) if amax else 0.5
            calls.append((name, x, T(scale, dtype=torch.float32).item(), 8 if _edge(i) else rng.choice([8, 4])))
    calls += [("half-way ties", T([63.75, -63.75, 63.25, -0.25, 0.75, 126.5 / 2]), 0.5, 8), ("scale=0", torch.ones(3), 0.0, 8),
              ("scale=True", torch.ones(3), True, 8), ("NaN", T([float("nan")]), 0.5, 8)]
    valid = 0
    for name, x, scale, bits in calls:
        what = f"quantize_static({name}, scale={scale!r}, bits={bits})"

        def same(mine, theirs, what=what):
            assert_tensor_equal(mine[0], theirs[0], f"{what}'s codes")
            assert_exact(mine[1], theirs[1], f"{what}'s clipped fraction")

        valid += same_outcome(outcome(lambda: lab.activation_quant.quantize_static(x, scale, bits)),
                        outcome(lambda: oracle.activation_quant.quantize_static(x, scale, bits)), what, same)
    assert valid, "no valid input was accepted"


@check("int8_matmul", points=2)
def test_int8_matmul_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    fixed = [(1, 1, 1), (6, 1, 4), (1, 3, 5), (17, 16, 8), (16, 16, 8), (33, 40, 24), (2, 4096, 3)]  # K = 1, CUDA's M > 16 edge, sums past 2^24
    shapes = fixed + [(rng.randint(1, 40), rng.randint(1, 200), rng.randint(1, 40)) for _ in range(RANDOM_CASES)]
    valid = 0
    for index, (m, k, n) in enumerate(shapes):
        low = 100 if k == 4096 else -128  # same-sign codes near 127: sums near 5.8e7, beyond float32's exact integers
        source = torch_generator(index) if index < len(fixed) else gen
        a = torch.randint(low, 128, (m, k), generator=source).to(torch.int8)
        b = torch.randint(low, 128, (n, k), generator=source).to(torch.int8)
        what = f"int8_matmul(a ({m}, {k}), b ({n}, {k}))"
        valid += same_outcome(outcome(lambda: lab.activation_quant.int8_matmul(a, b)), outcome(lambda: oracle.activation_quant.int8_matmul(a, b)), what,
                        lambda mine, theirs, what=what: assert_tensor_equal(mine, theirs, what))
    bad = torch.ones(2, 3)
    what = "int8_matmul(a float32 (2, 3), b int8 (2, 3))"
    same_outcome(outcome(lambda: lab.activation_quant.int8_matmul(bad, bad.to(torch.int8))), outcome(lambda: oracle.activation_quant.int8_matmul(bad, bad.to(torch.int8))), what, None)
    assert valid, "no valid input was accepted"


def _rescaled(mine, theirs, what: str) -> None:
    """A W8A8 result: the same int32 sums and scales, rescaled by two float32 multiplications in any order."""
    assert_tensor_close(mine, theirs, what, atol=FLOAT32_SLACK * theirs.abs(), why="the same codes and scales; only the order of the rescale's "
                        "float32 multiplications may differ (2^-20 relative)")


@check("w8a8_linear", points=3)
def test_w8a8_linear_matches_reference(lab, oracle, rng, seed, cases):
    built = [(name, x, _weight_for(x, i if _edge(i) else seed + i, 7 if _edge(i) else rng.choice([1, 5, 8]))) for i, (name, x) in enumerate(_cases(rng, seed))]
    bad = [("weight of the wrong width", torch.ones(2, 4), torch.ones(3, 5)), ("NaN weight", torch.ones(2, 2), T([[1.0, float("nan")]]))]
    for name, x, w in cases(built[:EDGE_CASES] + bad, built[EDGE_CASES:]):
        what = f"w8a8_linear({name}, weight {tuple(w.shape)})"
        cases.count_valid(same_outcome(outcome(lambda: lab.activation_quant.w8a8_linear(x, w)), outcome(lambda: oracle.activation_quant.w8a8_linear(x, w)), what,
                                 lambda mine, theirs, what=what: _rescaled(mine, theirs, what)))
    cases.require_valid()


@check("smooth_scales", points=2)
def test_smooth_scales_matches_reference(lab, oracle, rng, seed, cases):
    built = [(name, x, _weight_for(x, i if _edge(i) else seed + i, 7 if _edge(i) else rng.randint(1, 9)), alpha)
             for i, (name, x) in enumerate(_cases(rng, seed)) for alpha in (0.5, 0.8 if _edge(i) else rng.choice([0.0, 0.25, 0.75, 1.0]))]
    zero_channel = torch.ones(3, 4)
    zero_channel[:, 1] = 0.0
    bad = [("an all-zero channel and weight column", zero_channel, zero_channel[:2], 0.5), ("alpha=2", torch.ones(2, 2), torch.ones(2, 2), 2.0),
           ("alpha=True", torch.ones(2, 2), torch.ones(2, 2), True)]
    for name, x, w, alpha in cases(built[: 2 * EDGE_CASES] + bad, built[2 * EDGE_CASES :]):
        what = f"smooth_scales({name}, weight {tuple(w.shape)}, alpha={alpha!r})"
        cases.count_valid(same_outcome(outcome(lambda: lab.activation_quant.smooth_scales(x, w, alpha)), outcome(lambda: oracle.activation_quant.smooth_scales(x, w, alpha)), what,
                                 lambda mine, theirs, what=what: assert_tensor_close(mine, theirs, what, atol=0.0, rtol=POW_RELATIVE,
                                                                                       why=f"float32 pow and division ({POW_RELATIVE:.2g} relative)")))
    cases.require_valid()


@check("apply_smoothing", points=1)
def test_apply_smoothing_matches_reference(lab, oracle, rng, seed):
    valid = 0
    gen = torch_generator(seed)
    cases = [(name, x, _weight_for(x, i if _edge(i) else seed + i), torch.rand(x.shape[-1], generator=torch_generator(i) if _edge(i) else gen) * 10 + 1e-3)
             for i, (name, x) in enumerate(_cases(rng, seed))]
    cases += [("s of the wrong length", torch.ones(2, 3), torch.ones(4, 3), torch.ones(4)), ("a zero in s", torch.ones(2, 2), torch.ones(1, 2), T([1.0, 0.0]))]
    for name, x, w, s in cases:
        what = f"apply_smoothing({name}, weight {tuple(w.shape)}, s {tuple(s.shape)})"

        def same(mine, theirs, what=what):
            assert_exact(type(mine), tuple, f"{what}: return type")
            for index, part in enumerate(("x / s", "weight * s")):
                assert_tensor_close(mine[index], theirs[index], f"{what}[{index}] ({part})", atol=2.0**-22 * theirs[index].abs(),
                                    why="one float32 division or multiplication per element (2^-22 relative)")

        valid += same_outcome(outcome(lambda: lab.activation_quant.apply_smoothing(x, w, s)), outcome(lambda: oracle.activation_quant.apply_smoothing(x, w, s)), what, same)
    assert valid, "no valid input was accepted"


@check("smoothquant_linear", points=2)
def test_smoothquant_linear_matches_reference(lab, oracle, rng, seed, cases):
    # alpha 0.5 throughout: smooth_scales' own check covers the other strengths.
    built = [(name, x, _weight_for(x, i if _edge(i) else seed + i, 7 if _edge(i) else rng.randint(1, 12)), 0.5) for i, (name, x) in enumerate(_cases(rng, seed))]
    edges = built[:EDGE_CASES] + [("alpha=1.5", torch.ones(2, 2), torch.ones(2, 2), 1.5)]
    for name, x, w, alpha in cases(edges, built[EDGE_CASES:]):
        what = f"smoothquant_linear({name}, weight {tuple(w.shape)}, alpha={alpha})"

        def same(mine, theirs, what=what, x=x, w=w, alpha=alpha):
            # s may differ from the reference's by an ulp (pow), which can move a code next to a tie by one step: hold the
            # result to the W8A8 bound of the reference's smoothed pair, measured against the exact product.
            s = oracle.activation_quant.smooth_scales(x, w, alpha)
            x_s, w_s = oracle.activation_quant.apply_smoothing(x, w, s)
            tokens = x_s.reshape(-1, x.shape[-1])
            exact = (x.double().reshape(-1, x.shape[-1]) @ w.double().t()).reshape(theirs.shape)
            assert_tensor_close(mine, exact.float(), f"{what} against x @ weight.T", atol=w8a8_bound(tokens, w_s).reshape(theirs.shape),
                                why="the W8A8 error bound of the smoothed activations and weight: smooth first, then quantize")

        cases.count_valid(same_outcome(outcome(lambda: lab.activation_quant.smoothquant_linear(x, w, alpha)),
                                 outcome(lambda: oracle.activation_quant.smoothquant_linear(x, w, alpha)), what, same))
    cases.require_valid()


@check("llm_int8_linear", points=3)
def test_llm_int8_linear_matches_reference(lab, oracle, rng, seed, cases):
    built = [(name, x, _weight_for(x, i if _edge(i) else seed + i, 7 if _edge(i) else rng.randint(1, 9)), 6.0 if _edge(i) else rng.choice([6.0, 1.0, 0.5, 100.0]))
             for i, (name, x) in enumerate(_cases(rng, seed))]
    edges = built[:EDGE_CASES] + [
        ("a value exactly at the threshold", T([[6.0, 1.0], [-5.99, 2.0]]), T([[1.0, 1.0]]), 6.0), ("threshold=0", torch.ones(2, 2), torch.ones(1, 2), 0.0),
        ("threshold=True", torch.ones(2, 2), torch.ones(1, 2), True),
    ]
    for name, x, w, threshold in cases(edges, built[EDGE_CASES:]):
        what = f"llm_int8_linear({name}, weight {tuple(w.shape)}, threshold={threshold!r})"

        def same(mine, theirs, what=what, x=x, w=w):
            assert_exact(type(mine), tuple, f"{what}: return type")
            assert_tensor_equal(mine[1], theirs[1], f"{what}'s outlier columns")
            hidden = x.shape[-1]
            magnitude = (x.float().abs().reshape(-1, hidden).double() @ w.float().abs().double().t()).reshape(theirs[0].shape)
            assert_tensor_close(mine[0], theirs[0], f"{what}'s y", atol=FLOAT32_SLACK * theirs[0].abs() + hidden * 2.0**-23 * magnitude,
                                why="the same codes and scales; the float32 outlier matmul and the rescale may round in another order")

        cases.count_valid(same_outcome(outcome(lambda: lab.activation_quant.llm_int8_linear(x, w, threshold)),
                                 outcome(lambda: oracle.activation_quant.llm_int8_linear(x, w, threshold)), what, same))
    cases.require_valid()


@check("activation_nbytes", points=1)
def test_activation_nbytes_matches_reference(lab, oracle, rng, seed):
    schemes = ("fp32", "bf16", "fp16", "int8-per-tensor", "int8-per-token")
    calls = [(1, 1, 1, scheme) for scheme in schemes] + [(3, 5, 7, scheme) for scheme in schemes]
    calls += [(0, 1, 1, "bf16"), (True, 2, 2, "bf16"), (1, 2, 2.0, "fp32"), (1, 1, 1, "int4")]
    calls += [(rng.randint(1, 64), rng.randint(1, 8192), rng.choice([768, 4096, 5120, 8192]), rng.choice(schemes)) for _ in range(RANDOM_CASES)]
    valid = 0
    for args in calls:
        what = f"activation_nbytes{args}"
        valid += same_outcome(outcome(lambda: lab.activation_quant.activation_nbytes(*args)), outcome(lambda: oracle.activation_quant.activation_nbytes(*args)), what,
                        lambda mine, theirs, what=what: assert_exact(mine, theirs, what))
    assert valid, "no valid input was accepted"
