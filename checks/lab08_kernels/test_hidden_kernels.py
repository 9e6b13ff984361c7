"""Hidden checks for Lab 08: the learner against the float64 reference and the reference solution,
on the deterministic edge cases of ``lab08_inputs.edge_activations`` with fixed weights first, then
on fresh random inputs.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay). Weight-only linears
are held to the float64 product within the public checks' tolerance; W8A8 outputs to the
reference solution's within two roundings of the output dtype (the docstring fixes every step, so
only the order of the float32 rescale may differ); byte counts exactly. "Both raise ValueError"
counts as agreement; every check also holds valid inputs, so rejecting everything fails.
"""

from __future__ import annotations

import random

import pytest
import torch

from infralens.checking import assert_exact, outcome, same_outcome
from infralens.tensor_checks import assert_layout, assert_tensor_close
from lab08_inputs import (
    BF16,
    F16,
    F32,
    HALF_SUBNORMAL,
    I8,
    U8,
    UNIT_ROUNDOFF,
    activations,
    dequantize_int4,
    dequantize_int8,
    edge_activations,
    int4_weight,
    int8_weight,
    pack_nibbles,
    reference,
    torch_generator,
    w8a8_bound,
    weight_only_bound,
)

check = pytest.mark.check
T = torch.tensor
RANDOM_CASES = 8
EDGE_K = 16


def _fixed_int8_weights() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """int8 weights ``(N, 16)``: the code range's ends, zero rows, tiny and large scales, 16-bit scales."""
    gen = torch_generator(880)
    extremes = T([[-128, 127] * 8, [127] * 16, [0] * 16, [-127, 1, 0, -1] * 4], dtype=I8)
    qweight, scale = int8_weight(gen, 5, EDGE_K)
    return [
        ("codes -128, 127 and 0", extremes, T([0.5, 1e-3, 7.0, 0.25])),
        ("tiny and large scales", qweight, T([1e-6, 100.0, 0.01, 3.0, 0.5])),
        ("float16 scales", qweight, scale.to(F16)),
        ("bfloat16 scales", qweight, scale.to(BF16)),
    ]


def _fixed_int4_weights() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """int4 weights ``(N, 16)``: groups of 2, 4, 8 and 16, zero points 0 and 15, codes 0 and 15."""
    gen = torch_generator(881)
    ends = T([[0, 15] * 8, [15] * 16, [0] * 16], dtype=U8)
    cases = [("codes 0 and 15, zero points 0 and 15", ends, T([[0.5, 0.25], [1.0, 2.0], [4.0, 0.125]]), T([[0, 15], [15, 0], [0, 15]], dtype=U8), 8)]
    for group_size, dtype in ((2, F32), (4, BF16), (16, F16)):
        codes, _packed, scale, zero = int4_weight(gen, 6, EDGE_K, group_size, dtype)
        cases.append((f"groups of {group_size}, {dtype} scales", codes, scale, zero, group_size))
    return [(name, codes, pack_nibbles(codes), scale, zero, g) for name, codes, scale, zero, g in cases]


def _random_x(rng: random.Random, seed: int, k: int) -> tuple[str, torch.Tensor]:
    gen = torch_generator(seed)
    lead = rng.choice([(), (1,), (rng.randint(2, 20),), (rng.randint(1, 3), rng.randint(1, 6))])
    dtype = rng.choice([F32, F32, F16, BF16])
    x = activations(gen, (*lead, k), dtype, size=rng.choice([1e-3, 1.0, 30.0]))
    return f"random x {tuple(x.shape)} {dtype}", x


def _close(mine, x: torch.Tensor, weight: torch.Tensor, what: str) -> None:
    shape = tuple(x.shape[:-1]) + (weight.shape[0],)
    assert_layout(mine, shape, x.dtype, what, "(..., N) in x's dtype")
    assert_tensor_close(mine.double(), reference(x, weight), f"{what} against x @ Wᵀ", atol=weight_only_bound(x, weight),
                        why="3 roundings to x's dtype, the weight in x's dtype, float32 accumulation")


@check("int8_weight_only_linear", points=3)
def test_int8_weight_only_matches_reference(lab, oracle, rng, seed):
    calls = [(f"{xname}; {wname}", x, q, s) for (xname, x) in edge_activations() for (wname, q, s) in _fixed_int8_weights()]
    for i in range(RANDOM_CASES):
        k = rng.choice([1, 3, 16, 64, 200])
        name, x = _random_x(rng, seed + i, k)
        q, s = int8_weight(torch_generator(seed + 100 + i), rng.randint(1, 40), k, rng.choice([F32, F16, BF16]))
        calls.append((name, x, q, s))
    q, s = _fixed_int8_weights()[0][1:]
    calls += [("uint8 codes", torch.ones(2, EDGE_K), q.to(U8), s), ("x with 15 inputs", torch.ones(2, 15), q, s),
              ("scale (4, 1)", torch.ones(2, EDGE_K), q, s.unsqueeze(1)), ("an empty qweight", torch.ones(2, 0), q[:, :0], s)]
    valid = 0
    for name, x, q, s in calls:
        what = f"int8_weight_only_linear({name}, qweight {tuple(q.shape)} {q.dtype}, scale {tuple(s.shape)} {s.dtype})"
        valid += same_outcome(outcome(lambda: lab.kernels.int8_weight_only_linear(x, q, s)), outcome(lambda: oracle.kernels.int8_weight_only_linear(x, q, s)),
                              what, lambda mine, _theirs, x=x, q=q, s=s, what=what: _close(mine, x, dequantize_int8(q, s), what))
    assert valid, "no valid input was accepted"


@check("int4_weight_only_linear", points=3)
def test_int4_weight_only_matches_reference(lab, oracle, rng, seed):
    calls = [(f"{xname}; {wname}", x, codes, packed, scale, zero, g)
             for (xname, x) in edge_activations() for (wname, codes, packed, scale, zero, g) in _fixed_int4_weights()]
    for i in range(RANDOM_CASES):
        g = rng.choice([1, 2, 8, 32])
        k = g * rng.choice([2, 4]) if g > 1 else rng.choice([2, 6, 24])
        name, x = _random_x(rng, seed + i, k)
        codes, packed, scale, zero = int4_weight(torch_generator(seed + 100 + i), rng.randint(1, 40), k, g, rng.choice([F32, F16, BF16]))
        calls.append((name, x, codes, packed, scale, zero, g))
    _name, codes, packed, scale, zero, g = _fixed_int4_weights()[0]
    ones = torch.ones(2, EDGE_K)
    calls += [("int8 packed", ones, codes, packed.to(I8), scale, zero, g), ("group_size 5", ones, codes, packed, scale, zero, 5),
              ("group_size False", ones, codes, packed, scale, zero, False), ("float zero points", ones, codes, packed, scale, zero.float(), g),
              ("x with 8 inputs for K = 16", torch.ones(2, 8), codes, packed, scale, zero, g)]
    valid = 0
    for name, x, codes, packed, scale, zero, g in calls:
        what = f"int4_weight_only_linear({name}, packed {tuple(packed.shape)}, scale {tuple(scale.shape)} {scale.dtype}, group_size={g!r})"

        def compare(mine, _theirs, x=x, codes=codes, scale=scale, zero=zero, g=g, what=what):
            _close(mine, x, dequantize_int4(codes, scale, zero, g), what)

        valid += same_outcome(outcome(lambda: lab.kernels.int4_weight_only_linear(x, packed, scale, zero, g)),
                              outcome(lambda: oracle.kernels.int4_weight_only_linear(x, packed, scale, zero, g)), what, compare)
    assert valid, "no valid input was accepted"


@check("int8_dynamic_linear", points=3)
def test_int8_dynamic_matches_reference(lab, oracle, rng, seed):
    calls = [(f"{xname}; {wname}", x, q, s) for (xname, x) in edge_activations() for (wname, q, s) in _fixed_int8_weights()]
    for i in range(RANDOM_CASES):
        k = rng.choice([1, 3, 16, 64, 200])
        name, x = _random_x(rng, seed + i, k)
        q, s = int8_weight(torch_generator(seed + 100 + i), rng.choice([1, 8, 24, 40]), k, rng.choice([F32, F16, BF16]))
        calls.append((name, x, q, s))
    q, s = _fixed_int8_weights()[0][1:]
    calls += [("float64 x", torch.ones(2, EDGE_K, dtype=torch.float64), q, s), ("float32 codes", torch.ones(2, EDGE_K), q.float(), s),
              ("scale (3,) for 4 outputs", torch.ones(2, EDGE_K), q, s[:3])]
    valid = 0
    for name, x, q, s in calls:
        what = f"int8_dynamic_linear({name}, qweight {tuple(q.shape)} {q.dtype}, scale {tuple(s.shape)} {s.dtype})"

        def compare(mine, theirs, x=x, q=q, s=s, what=what):
            weight = dequantize_int8(q, s)
            assert_layout(mine, tuple(theirs.shape), theirs.dtype, what, "(..., N) in x's dtype")
            assert_tensor_close(mine.double(), reference(x, weight), f"{what} against x @ Wᵀ", atol=w8a8_bound(x, weight),
                                why="half a per-token activation step times Σ|W|, float32 rescaling, one rounding to x's dtype")
            slack = (2 * UNIT_ROUNDOFF[x.dtype] + 2.0**-21) * theirs.double().abs() + 2 * HALF_SUBNORMAL[x.dtype]
            assert_tensor_close(mine.double(), theirs.double(), f"{what} against the documented steps", atol=slack,
                                why="the same codes (amax / 127, round half to even, ±127, SCALE_EPS) and exact int32 sums leave only the order "
                                "of the float32 rescale and the final rounding: two roundings of the output dtype")

        valid += same_outcome(outcome(lambda: lab.kernels.int8_dynamic_linear(x, q, s)), outcome(lambda: oracle.kernels.int8_dynamic_linear(x, q, s)),
                              what, compare)
    assert valid, "no valid input was accepted"


TRAFFIC_FIXED = [
    (1, 4096, 14336, "dense", BF16, 128, True),
    (1, 4096, 14336, "int8", BF16, 128, False),
    (1, 4096, 14336, "int4", BF16, 128, False),
    (16, 8192, 28672, "int4", F16, 64, True),
    (7, 6, 5, "int4", F32, 2, False),
    (3, 6, 5, "int8", F32, 1, True),
    (2, 6, 5, "int4", F32, 6, False),
    (1, 1, 1, "dense", F32, 1, False),
    (0, 8, 8, "int8", BF16, 8, True),
    (1, 7, 8, "int4", BF16, 7, True),
    (1, 8, 8, "int4", BF16, 16, True),
    (1, 8, 8, "int8", torch.int8, 8, True),
    (1, 8, 8, "bf16", BF16, 8, True),
    (1, 8, 8, "int8", BF16, 8, None),
    (1, 8, 8, "int8", BF16, False, True),
]


@check("linear_traffic", points=3)
def test_linear_traffic_matches_reference(lab, oracle, rng, seed):
    calls = list(TRAFFIC_FIXED)
    for _ in range(RANDOM_CASES * 2):
        g = rng.choice([1, 2, 32, 64, 128])
        calls.append((rng.randint(1, 4096), g * 2 * rng.randint(1, 64), rng.randint(1, 30000), rng.choice(["dense", "int8", "int4"]),
                      rng.choice([F32, F16, BF16]), g, rng.choice([True, False])))

    def fields(result) -> tuple:
        return tuple(getattr(result, name, None) for name in ("weight_bytes", "activation_bytes", "materialized_bytes"))

    valid = 0
    for args in calls:
        what = f"linear_traffic{args}"
        valid += same_outcome(outcome(lambda: fields(lab.kernels.linear_traffic(*args))), outcome(lambda: fields(oracle.kernels.linear_traffic(*args))),
                              what, lambda mine, theirs, what=what: assert_exact(mine, theirs, f"{what}: (weight_bytes, activation_bytes, materialized_bytes)"))
    assert valid, "no valid input was accepted"
