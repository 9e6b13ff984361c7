"""Hidden checks for Lab 01: the learner against the reference on fresh random models and clusters.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay); every family of
architecture switches is drawn (biases, norms, tying, learned positions, experts, MLA).
"""

from __future__ import annotations

import pytest

from infralens.checking import outcome

from lab01_memory_ledger_inputs import FAMILIES, describe, random_model

check = pytest.mark.check
CASES = 40
FIELDS = ("embeddings", "attention", "mlp", "router", "norms", "lm_head")


@check("attention_parameters", points=2)
@pytest.mark.parametrize("family", FAMILIES)
def test_attention_parameters_match_reference(lab, oracle, rng, family):
    for _ in range(CASES):
        model = random_model(rng, family)
        expected, actual = oracle.ledger.attention_parameters(model), lab.ledger.attention_parameters(model)
        assert actual == expected, f"attention_parameters({describe(model)}) = {actual:_}, expected {expected:_}"


@check("mlp_parameters", points=2)
@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_parameters_match_reference(lab, oracle, rng, family):
    for _ in range(CASES):
        model = random_model(rng, family)
        layer_index = rng.randrange(model.num_hidden_layers)
        expected, actual = oracle.ledger.mlp_parameters(model, layer_index), lab.ledger.mlp_parameters(model, layer_index)
        assert actual == expected, f"mlp_parameters({describe(model)}, layer_index={layer_index}) = {actual:_}, expected {expected:_}"


@check("parameter_breakdown", points=3)
@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_breakdown_matches_reference(lab, oracle, rng, family):
    for _ in range(CASES):
        model = random_model(rng, family)
        expected, actual = oracle.ledger.parameter_breakdown(model), lab.ledger.parameter_breakdown(model)
        wrong = [f"{field}: {getattr(actual, field):_}, expected {getattr(expected, field):_}" for field in FIELDS if getattr(actual, field) != getattr(expected, field)]
        assert not wrong, f"parameter_breakdown({describe(model)}): " + "; ".join(wrong)


@check("active_parameters", points=2)
@pytest.mark.parametrize("family", ["mixtral", "deepseek", "llama"])
def test_active_parameters_match_reference(lab, oracle, rng, family):
    for _ in range(CASES):
        model = random_model(rng, family)
        expected, actual = oracle.ledger.active_parameters(model), lab.ledger.active_parameters(model)
        assert actual == expected, f"active_parameters({describe(model)}) = {actual:_}, expected {expected:_}"


@check("weight_bytes", points=1)
def test_weight_bytes_match_reference(lab, oracle, rng):
    dtypes = list(oracle.ledger.BITS_PER_PARAMETER) + ["fp4", "float32", "int2"]
    for _ in range(CASES):
        model, dtype = random_model(rng), rng.choice(dtypes)
        expected = outcome(lambda: oracle.ledger.weight_bytes(model, dtype))
        actual = outcome(lambda: lab.ledger.weight_bytes(model, dtype))
        assert actual == expected, f"weight_bytes({describe(model)}, {dtype!r}): got {actual}, expected {expected}"


@check("training_memory_per_rank", points=2)
def test_training_memory_matches_reference(lab, oracle, rng):
    for _ in range(CASES * 3):
        parameters = rng.choice([0, 1, rng.randint(2, 10**6), rng.randint(10**9, 10**12), -rng.randint(1, 9)])
        world_size = rng.choice([1, 2, 3, 7, 8, 64, 1000, 0, -2])
        zero_stage = rng.choice([0, 1, 2, 3, 3, 4, -1])
        sizes = {"param_bytes": rng.choice([2, 4]), "grad_bytes": rng.choice([2, 4]), "optimizer_bytes": rng.choice([8, 12, 16, 0])}
        call = f"training_memory_per_rank({parameters}, {world_size}, {zero_stage}, {sizes})"
        expected = outcome(lambda: oracle.ledger.training_memory_per_rank(parameters, world_size, zero_stage, **sizes))
        actual = outcome(lambda: lab.ledger.training_memory_per_rank(parameters, world_size, zero_stage, **sizes))
        if expected[0] == "value" and actual[0] == "value":
            expected = ("value", (expected[1].parameters, expected[1].gradients, expected[1].optimizer_states))
            actual = ("value", (actual[1].parameters, actual[1].gradients, actual[1].optimizer_states))
        assert actual == expected, f"{call}: got {actual}, expected {expected} (parameters, gradients, optimizer_states bytes)"


@check("ring_allreduce_bytes_per_rank", points=1)
def test_ring_allreduce_matches_reference(lab, oracle, rng):
    for _ in range(CASES * 3):
        payload = rng.choice([rng.randint(0, 10**12), rng.uniform(0, 1e10), -rng.uniform(0.5, 10)])
        world_size = rng.choice([1, 2, 3, 8, 12, 1024, 0, -1])
        expected = outcome(lambda: oracle.ledger.ring_allreduce_bytes_per_rank(payload, world_size))
        actual = outcome(lambda: lab.ledger.ring_allreduce_bytes_per_rank(payload, world_size))
        if expected[0] == actual[0] == "value":
            # the same formula in another order differs by a few ulps: 1e-12 relative
            assert abs(actual[1] - expected[1]) <= 1e-12 * abs(expected[1]), f"ring_allreduce_bytes_per_rank({payload!r}, {world_size}) = {actual[1]!r}, expected {expected[1]!r}"
        else:
            assert actual[0] == expected[0], f"ring_allreduce_bytes_per_rank({payload!r}, {world_size}): got {actual}, expected {expected}"


@check("pipeline_bubble_fraction", points=1)
def test_pipeline_bubble_matches_reference(lab, oracle, rng):
    for _ in range(CASES * 3):
        stages, microbatches = rng.choice([1, 2, 4, 8, 64, 0, -3]), rng.choice([1, 3, 16, 100, 0, -1])
        expected = outcome(lambda: oracle.ledger.pipeline_bubble_fraction(stages, microbatches))
        actual = outcome(lambda: lab.ledger.pipeline_bubble_fraction(stages, microbatches))
        if expected[0] == actual[0] == "value":
            assert abs(actual[1] - expected[1]) <= 1e-12 * max(expected[1], 1e-300), f"pipeline_bubble_fraction({stages}, {microbatches}) = {actual[1]!r}, expected {expected[1]!r}"
        else:
            assert actual[0] == expected[0], f"pipeline_bubble_fraction({stages}, {microbatches}): got {actual}, expected {expected}"
