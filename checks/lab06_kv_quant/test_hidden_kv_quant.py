"""Hidden checks for Lab 06: the learner against the reference, on the deterministic edge cases of
``lab06_inputs.edge_tensors`` and fixed cache scenarios first, then on fresh random inputs.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay). Codes, scales,
zero points, dequantized values, FP8 tensors, cache contents and byte counts are compared
exactly, dtypes included: the docstrings fix every float32 operation and its order. The one float
that may round in another order, the attention-score error (matmul and softmax), is compared
within a stated float32 tolerance. "Both raise ValueError" counts as agreement; every check also
holds valid inputs, so rejecting everything fails.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from infralens.checking import assert_exact, outcome, same_outcome
from infralens.tensor_checks import assert_tensor_equal
from lab06_inputs import BF16, E4M3, E5M2, F16, edge_tensors, outlier_keys, plain_values, queries, torch_generator

check = pytest.mark.check
T = torch.tensor
RANDOM_CASES = 10
CACHE_FIELDS = ("k_codes", "k_scale", "k_zero_point", "v_codes", "v_scale", "v_zero_point", "k_residual", "v_residual")


def _same_tensors(names: tuple[str, ...]):
    def same(mine, theirs, what: str) -> None:
        assert_exact(type(mine), tuple, f"{what}: return type")
        assert_exact(len(mine), len(names), f"{what}: number of items returned")
        for index, name in enumerate(names):
            assert_tensor_equal(mine[index], theirs[index], f"{what}'s {name}")

    return same


TRIPLE = _same_tensors(("codes", "scale", "zero_point"))


def _random_kv(rng: random.Random, seed: int) -> tuple[str, torch.Tensor]:
    """Random ``(..., tokens, head_dim)`` keys or values: tokens and head_dim multiples of 4 (so
    groups of 4 fit), 2-D to 4-D, any of the three dtypes, outlier channels or a plain bulk."""
    gen = torch_generator(seed)
    lead = rng.choice([(), (2,), (rng.randint(1, 3), rng.randint(1, 4))])
    shape = (*lead, 4 * rng.randint(1, 24), rng.choice([4, 8, 16, 48, 64, 128]))
    dtype = rng.choice([torch.float32, torch.float32, F16, BF16])
    x = outlier_keys(gen, shape) if shape[-1] >= 48 and rng.random() < 0.6 else plain_values(gen, shape) * rng.choice([1e-3, 1.0, 40.0])
    return f"random {tuple(x.shape)} {dtype}", x.to(dtype)


def _cases(rng: random.Random, seed: int) -> list[tuple[str, torch.Tensor]]:
    return edge_tensors() + [_random_kv(rng, seed + i) for i in range(RANDOM_CASES)]


EDGE_CASES = len(edge_tensors())


def _edge(index: int) -> bool:
    """True for the deterministic edge cases at the front of :func:`_cases`: their other arguments are fixed too."""
    return index < EDGE_CASES


@check("quantize_groups", points=3)
def test_quantize_groups_matches_reference(lab, oracle, rng, seed, cases):
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        for axis in (-1, -2):
            group_size = 4 if _edge(i) else rng.choice([1, 2, 4])
            bits = (2, 4, 8)[i % 3] if _edge(i) else rng.choice([2, 4, 8])
            calls.append((name, x, bits, group_size, axis))
    bad = [("bits=3", torch.ones(8), 3, 4, -1), ("bits=True", torch.ones(8), True, 4, -1), ("10 in groups of 4", torch.ones(10), 2, 4, -1),
           ("axis=True", torch.ones(4, 4), 2, 4, True), ("NaN", T([1.0, float("nan")]), 2, 2, -1), ("group_size=0", torch.ones(4), 2, 0, -1)]
    for name, x, bits, group_size, axis in cases(calls[: 2 * EDGE_CASES] + bad, calls[2 * EDGE_CASES :]):
        what = f"quantize_groups({name}, bits={bits!r}, group_size={group_size}, axis={axis!r})"
        cases.count_valid(same_outcome(outcome(lambda: lab.kv_quant.quantize_groups(x, bits, group_size, axis)),
                                 outcome(lambda: oracle.kv_quant.quantize_groups(x, bits, group_size, axis)), what, lambda m, t, what=what: TRIPLE(m, t, what)))
    cases.require_valid()


@check("dequantize_groups", points=2)
def test_dequantize_groups_matches_reference(lab, oracle, rng, seed):
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        axis = -1 if i % 2 else -2
        codes, scale, zero = oracle.kv_quant.quantize_groups(x, (2, 4, 8)[i % 3], 4, axis)
        calls.append((name, codes, scale, zero, axis))
    gen = torch_generator(seed)
    for _ in range(RANDOM_CASES):  # parameters no quantizer would produce: wide scales, large offsets
        groups, size = rng.randint(1, 6), rng.choice([1, 3, 32])
        codes = torch.randint(0, 256, (rng.randint(1, 5), groups * size), generator=gen).to(torch.uint8)
        scale = torch.rand(codes.shape[0], groups, generator=gen) * 10 ** rng.uniform(-6, 3)
        calls.append((f"random codes {tuple(codes.shape)}", codes, scale, torch.randn(scale.shape, generator=gen) * 1e3, -1))
    calls += [("int8 codes", torch.zeros(4, dtype=torch.int8), torch.ones(1), torch.zeros(1), -1),
              ("scale (3,) for 4 codes", torch.zeros(4, dtype=torch.uint8), torch.ones(3), torch.zeros(3), -1)]
    valid = 0
    for name, codes, scale, zero, axis in calls:
        what = f"dequantize_groups({name}: codes {tuple(codes.shape)}, scale {tuple(scale.shape)}, axis={axis})"
        valid += same_outcome(outcome(lambda: lab.kv_quant.dequantize_groups(codes, scale, zero, axis)),
                        outcome(lambda: oracle.kv_quant.dequantize_groups(codes, scale, zero, axis)), what,
                        lambda m, t, what=what: assert_tensor_equal(m, t, what, "codes × scale + zero_point in float32, in that order"))
    assert valid, "no valid input was accepted"


def _kv_calls(rng: random.Random, seed: int) -> tuple[list, list]:
    """``(edges, randoms)``: calls ``(name, tensor, bits, group_size)`` on the edge cases and the bad inputs, then on the random tensors."""
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        calls.append((name, x, 4 if _edge(i) else 2, 4))
        calls.append((name, x, (4, 8, 2)[i % 3] if _edge(i) else rng.choice([2, 4, 8]), 8 if _edge(i) else rng.choice([1, 2, 4])))
    bad = [("a 1-D tensor", torch.ones(8), 2, 4), ("6 tokens, head_dim 6, groups of 4", torch.ones(6, 6), 2, 4), ("NaN", T([[float("nan"), 1.0]]), 2, 1)]
    return calls[: 2 * EDGE_CASES] + bad, calls[2 * EDGE_CASES :]


@check("quantize_keys", points=2)
def test_quantize_keys_matches_reference(lab, oracle, rng, seed, cases):
    edges, randoms = _kv_calls(rng, seed)
    for name, k, bits, group_size in cases(edges, randoms):
        what = f"quantize_keys({name}, bits={bits}, group_size={group_size})"
        cases.count_valid(same_outcome(outcome(lambda: lab.kv_quant.quantize_keys(k, bits, group_size)), outcome(lambda: oracle.kv_quant.quantize_keys(k, bits, group_size)),
                                 what, lambda m, t, what=what: TRIPLE(m, t, what)))
    cases.require_valid()


@check("quantize_values", points=2)
def test_quantize_values_matches_reference(lab, oracle, rng, seed, cases):
    edges, randoms = _kv_calls(rng, seed)
    for name, v, bits, group_size in cases(edges, randoms):
        what = f"quantize_values({name}, bits={bits}, group_size={group_size})"
        cases.count_valid(same_outcome(outcome(lambda: lab.kv_quant.quantize_values(v, bits, group_size)), outcome(lambda: oracle.kv_quant.quantize_values(v, bits, group_size)),
                                 what, lambda m, t, what=what: TRIPLE(m, t, what)))
    cases.require_valid()


TIES_SCENARIO = (1, 1, 4, 2, 4, 0, torch.float32, 4, 4)
"""Every group of keys (4 tokens of a channel) and of values (4 channels of a token) holds 0, 0.5,
1.5 and 3: scale 1 at 2 bits, so 0.5 is an exact tie, code 0 by round half to even."""
EDGE_SCENARIOS = [
    # (batch, heads, head_dim, bits, group_size, residual_length, dtype, prompt, steps)
    (1, 1, 4, 2, 4, 1, torch.float32, 6, 9),
    (1, 2, 8, 4, 4, 0, torch.float32, 1, 12),
    (2, 1, 16, 8, 16, 3, F16, 20, 20),
    (1, 1, 12, 2, 4, 4, BF16, 7, 13),  # 12 × 2 bits: packed rows of 3 bytes
    (1, 1, 6, 4, 2, 2, torch.float32, 3, 6),  # 6 × 4 bits: 3 bytes, pairs of channels per value group
    (1, 1, 4, 2, 1, 0, BF16, 2, 3),  # groups of 1: every token is quantized at once
    TIES_SCENARIO,
]
TIES = torch.tensor([[0.0, 0.5, 3.0, 1.5], [0.5, 3.0, 1.5, 0.0], [3.0, 1.5, 0.0, 0.5], [1.5, 0.0, 0.5, 3.0]])  # (tokens, head_dim)


def _scenario_tokens(scenario, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, head_dim, bits, *_, prompt, steps = scenario
    gen = torch_generator(seed)
    shape = (batch, heads, prompt + steps, head_dim)
    k = outlier_keys(gen, shape) if head_dim >= 48 else plain_values(gen, shape) + torch.linspace(-3, 3, head_dim)
    k[..., 0, :] = 0.0  # an all-zero token in the first group: constant channels
    v = plain_values(gen, shape) * 2
    if scenario == TIES_SCENARIO:
        k[...] = v[...] = TIES.repeat(2, 1)
    if head_dim == 8 and bits == 4 and prompt + steps >= 8:  # the first 8 tokens next to the ties of 4-bit steps, along both axes
        k[..., :8, :] = v[..., :8, :] = dict(edge_tensors())["next to a tie (scale 1/15 at 4 bits)"]
    return k, v


def _run_cache(module, scenario, k: torch.Tensor, v: torch.Tensor) -> list:
    """Each call's outcome, then the stored fields, for one scenario."""
    batch, heads, head_dim, bits, group_size, residual_length, dtype, prompt, steps = scenario
    results = []
    made = outcome(lambda: module.QuantizedKVCache(batch, heads, head_dim, bits, group_size, residual_length, dtype))
    if made[0] != "value":
        return [made]
    cache = made[1]
    results.append(outcome(lambda: cache.append(k[:, :, :1], v[:, :, :1])))  # into an empty cache: rejected
    results.append(outcome(lambda: cache.prefill(k[:, :, :prompt], v[:, :, :prompt])))
    results.append(outcome(lambda: cache.prefill(k[:, :, :1], v[:, :, :1])))  # a second prefill: rejected
    for t in range(prompt, prompt + steps):
        results.append(outcome(lambda t=t: cache.append(k[:, :, t : t + 1], v[:, :, t : t + 1])))
        results.append(("value", (cache.tokens, cache.quantized_tokens, cache.nbytes)))
    results.append(("value", tuple(getattr(cache, name) for name in CACHE_FIELDS)))
    return results


@check("QuantizedKVCache", points=4)
def test_quantized_kv_cache_matches_reference(lab, oracle, rng, seed, cases):
    rejected = [(1, 1, 6, 2, 4, 1, torch.float32, 2, 1), (1, 1, 4, True, 4, 1, torch.float32, 2, 1), (1, 1, 4, 2, 4, -1, torch.float32, 2, 1)]
    edges = [(scenario, index) for index, scenario in enumerate(EDGE_SCENARIOS + rejected)]  # (scenario, the seed of its tokens)
    randoms = []
    for index in range(4):
        group_size = rng.choice([1, 2, 4, 8, 16])
        head_dim = group_size * rng.randint(1, 6)
        randoms.append(((rng.randint(1, 2), rng.randint(1, 3), head_dim, rng.choice([2, 4, 8]), group_size, rng.choice([0, 1, 5, 16]),
                         rng.choice([torch.float32, F16, BF16]), rng.randint(1, 40), rng.randint(1, 40)), seed + len(EDGE_SCENARIOS) + index))
    for scenario, tokens_seed in cases(edges, randoms):
        k, v = _scenario_tokens(scenario, tokens_seed)
        what = f"QuantizedKVCache{tuple(str(field) for field in scenario[:7])}, prefill({scenario[7]}) and {scenario[8]} appends"
        mine, theirs = _run_cache(lab.kv_quant, scenario, k, v), _run_cache(oracle.kv_quant, scenario, k, v)
        for step, (a, b) in enumerate(zip(mine, theirs)):
            def same(m, t, what=f"{what}, call #{step}"):
                if isinstance(t, tuple) and t and isinstance(t[0], int):
                    assert_exact(m, t, f"{what}: (tokens, quantized_tokens, nbytes)")
                elif isinstance(t, tuple) and len(t) == len(CACHE_FIELDS):
                    for name, mm, tt in zip(CACHE_FIELDS, m, t):
                        assert_tensor_equal(mm, tt, f"{what}: stored {name}")
                else:
                    _same_tensors(("keys", "values"))(m, t, what)

            cases.count_valid(same_outcome(a, b, f"{what}, call #{step}", same))
        assert_exact(len(mine), len(theirs), f"{what}: number of calls that ran")
    cases.require_valid()


@check("fp8_scale", points=2)
def test_fp8_scale_matches_reference(lab, oracle, rng, seed):
    calls = [(name, x, dtype) for name, x in _cases(rng, seed) for dtype in (E4M3, E5M2)]
    calls += [("all zero", torch.zeros(5), E4M3), ("float16 dtype", torch.ones(3), F16), ("NaN", T([float("nan")]), E4M3)]
    valid = 0
    for name, x, dtype in calls:
        what = f"fp8_scale({name}, {dtype})"
        valid += same_outcome(outcome(lambda: lab.kv_quant.fp8_scale(x, dtype)), outcome(lambda: oracle.kv_quant.fp8_scale(x, dtype)), what,
                        lambda m, t, what=what: assert_exact(m, t, what, "max |x| / FP8_MAX in float32, floored at SCALE_EPS, as a Python float"))
    assert valid, "no valid input was accepted"


@check("quantize_fp8", points=2)
def test_quantize_fp8_matches_reference(lab, oracle, rng, seed):
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        for dtype in (E4M3, E5M2):
            fitted = oracle.kv_quant.fp8_scale(x, dtype)
            calls += [(name, x, fitted, dtype), (name, x, 1.0 if _edge(i) else rng.choice([1.0, 0.5, fitted * 0.1]), dtype)]
    calls += [("beyond e5m2", T([1e5, -7e4, 57344.0, 61440.0]), 1.0, E5M2), ("ties", T([464.0, 17.0, 0.3125, -2.25]), 1.0, E4M3),
              ("scale=0", torch.ones(2), 0.0, E4M3), ("scale=True", torch.ones(2), True, E4M3), ("bf16 dtype", torch.ones(2), 1.0, BF16)]
    valid = 0
    for name, x, scale, dtype in calls:
        what = f"quantize_fp8({name}, scale={scale!r}, {dtype})"
        valid += same_outcome(outcome(lambda: lab.kv_quant.quantize_fp8(x, scale, dtype)), outcome(lambda: oracle.kv_quant.quantize_fp8(x, scale, dtype)), what,
                        lambda m, t, what=what: assert_tensor_equal(m, t, what, "x / scale in float32, clamped to ±FP8_MAX, cast to the FP8 dtype"))
    assert valid, "no valid input was accepted"


def _score_tolerance(q: torch.Tensor, k: torch.Tensor, k_hat: torch.Tensor) -> float:
    """float32 dot products summed in any order differ by up to ``head_dim × 2^-24`` of ``sum |q|·|k|``,
    which moves each probability by that much relative; the softmax and the sums add a few ulps (2^-20)."""
    magnitude = float((q.float().abs() @ torch.maximum(k.float().abs(), k_hat.float().abs()).transpose(-2, -1)).max()) / math.sqrt(q.shape[-1])
    return 2.0**-20 + 4 * q.shape[-1] * 2.0**-24 * magnitude


@check("attention_score_error", points=2)
def test_attention_score_error_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    calls = [("identical keys", T([[2.0, 0.0, 0.0, 0.0]]), torch.ones(3, 4), torch.ones(3, 4)),
             ("one key", torch.randn(4, 8, generator=torch_generator(1)), torch.randn(1, 8, generator=torch_generator(2)), torch.zeros(1, 8)),
             ("float16 inputs", queries(torch_generator(3), (2, 5, 48)).half(), outlier_keys(torch_generator(4), (2, 9, 48), F16), outlier_keys(torch_generator(5), (2, 9, 48), F16))]
    for name, k in _cases(rng, seed):
        k_hat = (k.float() + 0.1 * torch.randn(k.shape, generator=gen) * k.float().abs().amax().clamp(min=1e-30)).to(k.dtype)
        q = queries(gen, (*k.shape[:-2], rng.choice([1, 3]), k.shape[-1])).to(k.dtype)
        calls.append((name, q, k, k_hat))
    calls += [("k_hat of another shape", torch.ones(1, 4), torch.ones(2, 4), torch.ones(3, 4)), ("NaN q", T([[float("nan"), 1.0]]), torch.ones(2, 2), torch.ones(2, 2))]
    valid = 0
    for name, q, k, k_hat in calls:
        what = f"attention_score_error({name}: q {tuple(q.shape)}, k {tuple(k.shape)})"

        def same(mine, theirs, what=what, q=q, k=k, k_hat=k_hat):
            assert_exact(type(mine), float, f"{what}: return type")
            tolerance = _score_tolerance(q, k, k_hat)
            assert abs(mine - theirs) <= tolerance, (
                f"{what} returned {mine!r}, expected {theirs!r} within {tolerance:.3g} (float32 scores summed in any order, and softmax rounding): "
                "the mean over query rows of half the L1 distance between softmax(q @ k^T / sqrt(d)) and the same with k_hat"
            )

        valid += same_outcome(outcome(lambda: lab.kv_quant.attention_score_error(q, k, k_hat)), outcome(lambda: oracle.kv_quant.attention_score_error(q, k, k_hat)),
                        what, same)
    assert valid, "no valid input was accepted"


@check("quantized_kv_bytes", points=2)
def test_quantized_kv_bytes_matches_reference(lab, oracle, rng, seed):
    calls = [(1, 1, 4, 1, 1, 2, 4, 0), (1, 1, 4, 4, 1, 2, 4, 0), (1, 1, 12, 40, 1, 2, 4, 3), (32, 8, 128, 8192, 1, 2, 32, 128), (80, 8, 128, 131072, 4, 4, 64, 128),
             (1, 1, 6, 10, 2, 4, 2, 2), (2, 2, 64, 159, 1, 8, 32, 128), (2, 2, 64, 160, 1, 8, 32, 128)]
    calls += [(0, 1, 4, 1, 1, 2, 4, 0), (1, 1, 4, True, 1, 2, 4, 0), (1, 1, 6, 8, 1, 2, 4, 0), (1, 1, 4, 8, 1, 2, 4, -2), (1, 1, 4, 8, 1, 1, 4, 0)]
    for _ in range(RANDOM_CASES):
        group_size = rng.choice([1, 8, 32, 64, 128])
        calls.append((rng.randint(1, 80), rng.choice([1, 2, 8]), group_size * rng.randint(1, 4), rng.randint(1, 200_000), rng.randint(1, 16),
                      rng.choice([2, 4, 8]), group_size, rng.choice([0, 32, 128, 256])))
    valid = 0
    for args in calls:
        what = f"quantized_kv_bytes{args}"
        valid += same_outcome(outcome(lambda: lab.kv_quant.quantized_kv_bytes(*args)), outcome(lambda: oracle.kv_quant.quantized_kv_bytes(*args)), what,
                        lambda m, t, what=what: assert_exact(m, t, what))
    assert valid, "no valid input was accepted"
