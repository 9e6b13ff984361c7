"""Hidden checks for Lab 07: the learner against the reference, on the deterministic edge cases of
``lab07_inputs.edge_tensors`` first, then on fresh random inputs from the run's seed (printed in
the header, ``--seed`` to replay).

Fake-quantized tensors are compared exactly, dtypes included: the docstrings fix every float32
operation and its order. Perplexities are float64 means and are compared within
``PERPLEXITY_RTOL``; agreements and verdicts exactly. "Both raise ValueError" counts as
agreement; every check also holds valid inputs, so rejecting everything fails.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from infralens.checking import assert_exact, outcome, same_outcome
from infralens.tensor_checks import assert_tensor_equal
from lab07_inputs import BF16, F16, PERPLEXITY_RTOL, edge_tensors, tokens, torch_generator

check = pytest.mark.check
T = torch.tensor
RANDOM_CASES = 6


def _random_tensor(rng: random.Random, seed: int) -> tuple[str, torch.Tensor]:
    """Random ``[..., rows, columns]`` values, columns a multiple of 4, 2-D to 4-D, any float dtype."""
    gen = torch_generator(seed)
    lead = rng.choice([(), (2,), (rng.randint(1, 2), rng.randint(1, 3))])
    shape = (*lead, rng.randint(1, 12), 4 * rng.randint(1, 8))
    dtype = rng.choice([torch.float32, torch.float32, F16, BF16])
    x = torch.randn(shape, generator=gen) * rng.choice([1e-3, 1.0, 30.0]) + rng.choice([0.0, 2.0])
    return f"random {tuple(shape)} {dtype}", x.to(dtype)


def _cases(rng: random.Random, seed: int) -> list[tuple[str, torch.Tensor]]:
    return edge_tensors() + [_random_tensor(rng, seed + i) for i in range(RANDOM_CASES)]


def _same_tensor(what: str):
    return lambda mine, theirs: assert_tensor_equal(mine, theirs, what, "the docstring fixes every float32 operation and its order")


@check("fake_quantize", points=3)
def test_fake_quantize_matches_reference(lab, oracle, rng, seed):
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        edge = i < len(edge_tensors())
        calls.append((name, x, (2, 3, 4, 8)[i % 4] if edge else rng.choice([2, 3, 4, 5, 8]), -1, 4 if edge else rng.choice([None, 1, 2, 4])))
        calls.append((name, x, (8, 4, 2)[i % 3] if edge else rng.choice([2, 4, 8]), 0, None))
    calls += [("bits=1", torch.ones(8), 1, -1, None), ("bits=True", torch.ones(8), True, -1, None), ("group 3 of 8", torch.ones(8), 2, -1, 3),
              ("axis=True", torch.ones(4, 4), 2, True, None), ("NaN", T([1.0, math.nan]), 2, -1, None), ("group_size=True", torch.ones(4), 2, -1, True)]
    valid = 0
    for name, x, bits, axis, group_size in calls:
        what = f"fake_quantize({name}, bits={bits!r}, axis={axis!r}, group_size={group_size!r})"
        valid += same_outcome(outcome(lambda: lab.quality_risk.fake_quantize(x, bits, axis, group_size)),
                              outcome(lambda: oracle.quality_risk.fake_quantize(x, bits, axis, group_size)), what, _same_tensor(what))
    assert valid, "no valid input was accepted"


@check("quantize_weight", points=2)
def test_quantize_weight_matches_reference(lab, oracle, rng, seed):
    calls = []
    for i, (name, x) in enumerate(_cases(rng, seed)):
        w = x.reshape(-1, x.shape[-1])
        for granularity in ("per-channel", "per-group"):
            calls.append((name, w, (2, 3, 4, 8)[i % 4] if i < len(edge_tensors()) else rng.choice([2, 3, 4, 8]), granularity, 4))
    calls += [("1-D", torch.ones(8), 4, "per-channel", 4), ("per-token", torch.ones(2, 4), 4, "per-token", 4), ("group 3 of 4", torch.ones(2, 4), 4, "per-group", 3),
              ("group 3 of 4, per channel", torch.ones(2, 4), 4, "per-channel", 3)]
    valid = 0
    for name, w, bits, granularity, group_size in calls:
        what = f"quantize_weight({name}, bits={bits}, {granularity!r}, group_size={group_size})"
        valid += same_outcome(outcome(lambda: lab.quality_risk.quantize_weight(w, bits, granularity, group_size)),
                              outcome(lambda: oracle.quality_risk.quantize_weight(w, bits, granularity, group_size)), what, _same_tensor(what))
    assert valid, "no valid input was accepted"


@check("quantize_activation", points=2)
def test_quantize_activation_matches_reference(lab, oracle, rng, seed):
    calls = [(name, x, bits, granularity) for i, (name, x) in enumerate(_cases(rng, seed)) for bits in ((4,) if i % 2 else (8, 4, 3))
             for granularity in ("per-token", "per-tensor")]
    calls += [("per-channel", torch.ones(2, 4), 4, "per-channel"), ("Inf", T([[1.0, math.inf]]), 4, "per-token")]
    valid = 0
    for name, x, bits, granularity in calls:
        what = f"quantize_activation({name}, bits={bits}, {granularity!r})"
        valid += same_outcome(outcome(lambda: lab.quality_risk.quantize_activation(x, bits, granularity)),
                              outcome(lambda: oracle.quality_risk.quantize_activation(x, bits, granularity)), what, _same_tensor(what))
    assert valid, "no valid input was accepted"


@check("quantize_kv", points=3)
def test_quantize_kv_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    calls = []
    for name, x in edge_tensors():  # the edge cases as one head's keys, with values from another edge case
        k = x.reshape(1, 1, *x.shape)
        calls += [(name, k, -k, bits, granularity, window) for bits, granularity, window in ((2, "per-channel-keys", 3), (4, "per-token", 0), (3, "per-channel-keys", 8))]
    for _ in range(RANDOM_CASES):
        shape = (rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 40), rng.choice([4, 8, 16]))
        dtype = rng.choice([torch.float32, F16, BF16])
        k = (torch.randn(shape, generator=gen) + torch.linspace(-3, 3, shape[-1])).to(dtype)
        v = torch.randn(shape, generator=gen).to(dtype)
        calls.append((f"random {shape} {dtype}", k, v, rng.choice([2, 3, 4, 8]), rng.choice(["per-token", "per-channel-keys"]), rng.choice([0, 1, 8, 32])))
    calls += [("3-D", torch.ones(2, 4, 8), torch.ones(2, 4, 8), 2, "per-token", 0), ("window -1", torch.ones(1, 1, 4, 8), torch.ones(1, 1, 4, 8), 2, "per-token", -1)]
    valid = 0
    for name, k, v, bits, granularity, window in calls:
        what = f"quantize_kv({name}, bits={bits}, {granularity!r}, residual_length={window})"

        def same(mine, theirs, what=what):
            assert_exact(type(mine), tuple, f"{what}: return type")
            assert_exact(len(mine), 2, f"{what}: number of items returned")
            assert_tensor_equal(mine[0], theirs[0], f"{what}'s keys")
            assert_tensor_equal(mine[1], theirs[1], f"{what}'s values")

        valid += same_outcome(outcome(lambda: lab.quality_risk.quantize_kv(k, v, bits, granularity, window)),
                              outcome(lambda: oracle.quality_risk.quantize_kv(k, v, bits, granularity, window)), what, same)
    assert valid, "no valid input was accepted"


def _close(what: str):
    def same(mine, theirs):
        assert_exact(type(mine), float, f"{what}: return type")
        assert math.isclose(mine, theirs, rel_tol=PERPLEXITY_RTOL), f"{what} returned {mine!r}, the reference {theirs!r} (float64: within {PERPLEXITY_RTOL:g} relative)"

    return same


@check("perplexity", points=2)
def test_perplexity_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    calls = [("uniform", torch.zeros(3, 60), T([0, 59, 7])), ("certain", T([[100.0, 0.0], [0.0, 100.0]]), T([0, 1])),
             ("float16", (torch.randn(2, 5, 9, generator=torch_generator(1)) * 4).half(), torch.randint(0, 9, (2, 5), generator=torch_generator(2)))]
    for _ in range(RANDOM_CASES):
        vocab = rng.randint(2, 70)
        lead = rng.choice([(rng.randint(1, 9),), (rng.randint(1, 3), rng.randint(1, 9))])
        calls.append((f"random {(*lead, vocab)}", torch.randn(*lead, vocab, generator=gen) * rng.choice([0.1, 2.0, 20.0]), torch.randint(0, vocab, lead, generator=gen)))
    calls += [("int32 targets", torch.zeros(2, 4), T([0, 1], dtype=torch.int32)), ("target 4 of 4", torch.zeros(2, 4), T([0, 4]))]
    valid = 0
    for name, logits, targets in calls:
        what = f"perplexity({name})"
        valid += same_outcome(outcome(lambda: lab.quality_risk.perplexity(logits, targets)), outcome(lambda: oracle.quality_risk.perplexity(logits, targets)), what, _close(what))
    assert valid, "no valid input was accepted"


@check("top1_agreement", points=2)
def test_top1_agreement_matches_reference(lab, oracle, rng, seed):
    gen = torch_generator(seed)
    calls = [("identical", torch.ones(2, 3), torch.ones(2, 3)), ("ties", T([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]), T([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))]
    for _ in range(RANDOM_CASES):
        shape = (rng.randint(1, 3), rng.randint(1, 20), rng.randint(2, 30))
        reference = torch.randn(shape, generator=gen)
        calls.append((f"random {shape}", reference + rng.choice([0.1, 1.0, 5.0]) * torch.randn(shape, generator=gen), reference))
    calls += [("shapes differ", torch.ones(2, 3), torch.ones(3, 3))]
    valid = 0
    for name, logits, reference in calls:
        what = f"top1_agreement({name})"
        valid += same_outcome(outcome(lambda: lab.quality_risk.top1_agreement(logits, reference)),
                              outcome(lambda: oracle.quality_risk.top1_agreement(logits, reference)), what)
    assert valid, "no valid input was accepted"


@check("verdict", points=1)
def test_verdict_matches_reference(lab, oracle, rng):
    values = [0.0, 0.01, 0.2, -0.3, -1.0, 1e9, math.inf, 0.0099999, 0.20000001, math.nan, True, -1.01]
    values += [rng.uniform(-0.05, 0.5) for _ in range(RANDOM_CASES)]
    valid = 0
    for value in values:
        valid += same_outcome(outcome(lambda: lab.quality_risk.verdict(value)), outcome(lambda: oracle.quality_risk.verdict(value)), f"verdict({value!r})")
    assert valid, "no valid input was accepted"


def _rows_as_data(rows) -> list[tuple]:
    return [(row.config.label, row.perplexity, row.increase, row.agreement, row.verdict) for row in rows]


# {(the reference module, configurations as fields): its rows}: the reference is deterministic and
# the documents are fixed, so a process measures each ordering once, however many trees it checks.
_REFERENCE_TABLES: dict[tuple, list[tuple]] = {}


def _reference_rows(reference, documents, fields_read: tuple) -> list[tuple]:
    """The reference's ``risk_table`` rows, as data, for configurations with these fields."""
    key = (reference, fields_read)
    try:
        if key in _REFERENCE_TABLES:
            return _REFERENCE_TABLES[key]
    except TypeError:  # unhashable fields read from the learner's QuantConfig: measure without keeping
        key = None
    rows = _rows_as_data(reference.risk_table(documents, [reference.QuantConfig(*fields) for fields in fields_read]))
    if key is not None:
        _REFERENCE_TABLES[key] = rows
    return rows


@check("risk_table", points=3)
def test_risk_table_matches_reference(lab, oracle, rng, cases):
    """The given model on two 'long' documents: each of six configurations (one per granularity) alone,
    then all six in an order drawn from the seed."""
    configurations = [("weights", "per-channel", 2, 32, 0), ("weights", "per-group", 3, 16, 0), ("activations", "per-token", 4, 32, 0),
                      ("activations", "per-tensor", 6, 32, 0), ("kv", "per-token", 3, 32, 16), ("kv", "per-channel-keys", 2, 32, 64)]
    shuffled = rng.sample(configurations, len(configurations))  # the seed decides the order only: a row's figures never depend on luck
    documents = tokens("long")[:2]  # two of the 256-token documents: every row is one forward pass, twice
    for table in cases([[fields] for fields in configurations], [shuffled]):
        mine_configs = [lab.quality_risk.QuantConfig(*fields) for fields in table]
        fields_read = tuple((c.target, c.granularity, c.bits, c.group_size, c.residual_length) for c in mine_configs)
        mine = _rows_as_data(lab.quality_risk.risk_table(documents, mine_configs))
        theirs = _reference_rows(oracle.quality_risk, documents, fields_read)
        asked = f"risk_table(two 'long' documents, {len(table)} configuration{'s' if len(table) > 1 else ''})"
        assert_exact(len(mine), len(theirs), f"{asked}: number of rows")
        for (label, perplexity, increase, agreement, verdict), (_, p, inc, agr, ver) in zip(mine, theirs):
            what = f"{asked}: the row of {label}"
            assert math.isclose(perplexity, p, rel_tol=PERPLEXITY_RTOL), f"{what}: perplexity {perplexity!r}, the reference {p!r}"
            assert math.isclose(increase, inc, rel_tol=1e-6, abs_tol=1e-9), f"{what}: increase {increase!r}, the reference {inc!r}"
            assert_exact(agreement, agr, f"{what}: agreement")
            assert_exact(verdict, ver, f"{what}: verdict")
