"""Hidden checks for Lab 01: the learner against the reference, first on fixed edge cases, then on
fresh random models and clusters.

The fixed cases (every preset, tiny MLA layers with and without biases, odd sizes, bools, boundary
ranks and stages, remainders that floor division would drop) run under every seed, so a verdict
never depends on the seed; the random ones come from the run's seed (printed in the header,
``--seed`` to replay), drawing every family of architecture switches (biases, norms, tying, learned
positions, experts, MLA). Outcomes are compared with their types: counts and bytes are ``int``,
the all-reduce bytes and the bubble floats (an ``int`` is accepted, a ``bool`` never). On invalid
input both sides must raise ``ValueError``; every check also holds valid cases, so a function that
rejects everything fails it.
"""

from __future__ import annotations

import functools
import math

import pytest

from infralens.checking import bounded, outcome, summarize
from infralens.models import ModelConfig, preset, preset_names

from lab01_memory_ledger_inputs import FAMILIES, describe, random_model

check = pytest.mark.check
CASES = 40
FIELDS = ("embeddings", "attention", "mlp", "router", "norms", "lm_head")
NAN, INF = float("nan"), float("inf")


def _same(actual, expected) -> bool:
    """Equal outcomes with equal types: ints exactly and as ``int``; floats within 1e-12 relative (the same formula
    in another order differs by a few ulps; an int is accepted, a bool never); tuples field by field."""
    if isinstance(expected, tuple):
        return isinstance(actual, tuple) and len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected))
    if type(expected) is float:
        return type(actual) in (int, float) and math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-300)
    return type(actual) is type(expected) and actual == expected


def _fail(call: str, actual, expected) -> str:
    return bounded(f"{call}: got {summarize(actual, 300)}, expected {summarize(expected, 300)}", 900)


def _tiny_mla(**changes) -> ModelConfig:
    fields = dict(name="tiny-mla", model_type="deepseek_v3", num_hidden_layers=2, hidden_size=8, num_attention_heads=2, num_key_value_heads=2,
                  head_dim=5, intermediate_size=16, vocab_size=10, attention_bias=True, q_lora_rank=4, kv_lora_rank=7,
                  qk_nope_head_dim=3, qk_rope_head_dim=2, v_head_dim=5, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=6,
                  n_shared_experts=1, first_k_dense_replace=1, topk_method="noaux_tc")
    return ModelConfig(**{**fields, **changes})


@functools.cache
def _fixed_models() -> tuple[ModelConfig, ...]:
    """Every preset, tiny MLA layers with every bias switch, and odd small models (built once: configs are frozen)."""
    return tuple([preset(name) for name in preset_names()] + [
        _tiny_mla(), _tiny_mla(q_lora_rank=None), _tiny_mla(attention_bias=False), _tiny_mla(attention_output_bias=True),
        _tiny_mla(n_shared_experts=None, topk_method="greedy", first_k_dense_replace=0),
        ModelConfig("odd", "llama", 1, 3, 1, 1, 3, 5, 7, tie_word_embeddings=True),
        ModelConfig("odd-layernorm", "gpt2", 3, 10, 2, 2, 5, 30, 11, attention_bias=True, attention_output_bias=True, mlp_bias=True, gated_mlp=False,
                    norm_type="layer_norm", learned_position_embeddings=True, max_position_embeddings=13),
    ])


def _fixed_of(family) -> list[ModelConfig]:
    """The fixed models of this family (every one when ``family`` is None; MLA models count as
    deepseek): the edge cases of a check."""
    return [m for m in _fixed_models() if family is None or _family(m) == family]


def _random_models(rng, family) -> list[ModelConfig]:
    """``CASES`` random models of this family, drawn from the check's ``rng``."""
    return [random_model(rng, family) for _ in range(CASES)]


def _family(model: ModelConfig) -> str:
    return "deepseek" if model.is_mla else "mixtral" if model.routed_experts is not None else model.model_type if model.model_type in FAMILIES else "llama"


@check("attention_parameters", points=2)
@pytest.mark.parametrize("family", FAMILIES)
def test_attention_parameters_match_reference(lab, oracle, rng, family, cases):
    for model in cases(_fixed_of(family), _random_models(rng, family)):
        expected, actual = outcome(lambda: oracle.ledger.attention_parameters(model)), outcome(lambda: lab.ledger.attention_parameters(model))
        assert _same(actual, expected), _fail(f"attention_parameters({describe(model)})", actual, expected)


@check("mlp_parameters", points=2)
@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_parameters_match_reference(lab, oracle, rng, family):
    cases = []
    for model in _fixed_of(family) + _random_models(rng, family):
        layers = model.num_hidden_layers
        cases += [(model, 0), (model, layers - 1), (model, rng.randrange(layers))]
    cases += [(preset("llama-3-8b"), bad) for bad in (-1, 32, True, False, 1.0, None)]
    for model, layer_index in cases:
        expected = outcome(lambda: oracle.ledger.mlp_parameters(model, layer_index))
        actual = outcome(lambda: lab.ledger.mlp_parameters(model, layer_index))
        assert _same(actual, expected), _fail(f"mlp_parameters({describe(model)}, layer_index={layer_index!r})", actual, expected)


def _breakdown(ledger, model):
    breakdown = ledger.parameter_breakdown(model)
    return tuple(getattr(breakdown, field) for field in FIELDS)


@check("parameter_breakdown", points=3)
@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_breakdown_matches_reference(lab, oracle, rng, family, cases):
    for model in cases(_fixed_of(family), _random_models(rng, family)):
        expected, actual = outcome(lambda: _breakdown(oracle.ledger, model)), outcome(lambda: _breakdown(lab.ledger, model))
        assert _same(actual, expected), _fail(f"parameter_breakdown({describe(model)}) as {FIELDS}", actual, expected)


@check("active_parameters", points=2)
@pytest.mark.parametrize("family", ["mixtral", "deepseek", "llama"])
def test_active_parameters_match_reference(lab, oracle, rng, family, cases):
    for model in cases(_fixed_of(family), _random_models(rng, family)):
        expected, actual = outcome(lambda: oracle.ledger.active_parameters(model)), outcome(lambda: lab.ledger.active_parameters(model))
        assert _same(actual, expected), _fail(f"active_parameters({describe(model)})", actual, expected)


@check("weight_bytes", points=1)
def test_weight_bytes_match_reference(lab, oracle, rng, cases):
    dtypes = list(oracle.ledger.BITS_PER_PARAMETER)
    bad = ["fp4", "float32", "int2", "BF16", ""]
    edges = [(model, dtype) for model in _fixed_models() for dtype in dtypes] + [(preset("gpt2"), dtype) for dtype in bad]
    for model, dtype in cases(edges, [(random_model(rng), rng.choice(dtypes + bad)) for _ in range(CASES)]):
        expected = outcome(lambda: oracle.ledger.weight_bytes(model, dtype))
        actual = outcome(lambda: lab.ledger.weight_bytes(model, dtype))
        assert _same(actual, expected), _fail(f"weight_bytes({describe(model)}, {dtype!r})", actual, expected)


def _memory(ledger, args, sizes):
    memory = ledger.training_memory_per_rank(*args, **sizes)
    return memory.parameters, memory.gradients, memory.optimizer_states


TRAINING_FIXED = [
    ((7 * 10**9, 8, stage), {"param_bytes": 2, "grad_bytes": 2, "optimizer_bytes": 8}) for stage in (0, 1, 2, 3)
] + [
    ((7_500_000_000, 64, stage), {}) for stage in (0, 1, 2, 3)
] + [
    ((10, 4, 3), {}), ((10, 4, 2), {}), ((10, 4, 1), {}), ((1, 3, 3), {}), ((0, 5, 3), {}), ((1000, 1, 3), {}), ((999, 1000, 3), {}),
    ((7 * 10**9, 8, True), {}), ((7 * 10**9, 8, False), {}), ((7 * 10**9, True, 3), {}), ((True, 8, 3), {}), ((10, 4, 3), {"param_bytes": True}),
    ((10, 4, 3), {"optimizer_bytes": False}), ((10, 0, 3), {}), ((10, -2, 0), {}), ((10, 4, 4), {}), ((10, 4, -1), {}), ((-1, 4, 0), {}),
    ((10, 2.0, 1), {}), ((10.0, 2, 1), {}), ((10, 4, "3"), {}), ((10, 4, 1.0), {}), ((10, 4, 0), {"grad_bytes": -2}),
]


@check("training_memory_per_rank", points=2)
def test_training_memory_matches_reference(lab, oracle, rng):
    cases = list(TRAINING_FIXED)
    for _ in range(CASES * 3):
        parameters = rng.choice([0, 1, rng.randint(2, 10**6), rng.randint(10**9, 10**12), -rng.randint(1, 9)])
        world_size = rng.choice([1, 2, 3, 7, 8, 64, 1000, 0, -2])
        zero_stage = rng.choice([0, 1, 2, 3, 3, 4, -1])
        sizes = {"param_bytes": rng.choice([2, 4]), "grad_bytes": rng.choice([2, 4]), "optimizer_bytes": rng.choice([8, 12, 16, 0])}
        cases.append(((parameters, world_size, zero_stage), sizes))
    for args, sizes in cases:
        expected = outcome(lambda: _memory(oracle.ledger, args, sizes))
        actual = outcome(lambda: _memory(lab.ledger, args, sizes))
        assert _same(actual, expected), _fail(f"training_memory_per_rank{args!r} with {sizes} as (parameters, gradients, optimizer_states) bytes", actual, expected)


RING_FIXED = [(2e9, 8), (2e9, 1), (2e9, 2), (1024, 1024), (1000, 3), (1, 3), (0, 5), (7, 7), (2e9, 3), (12.5, 4), (10**15 + 1, 3),
              (2e9, 0), (2e9, -1), (-1, 8), (2e9, 8.0), (2e9, True), (True, 8), (False, 8), (NAN, 8), (INF, 8), ("2e9", 8), (None, 8)]


@check("ring_allreduce_bytes_per_rank", points=1)
def test_ring_allreduce_matches_reference(lab, oracle, rng):
    cases = RING_FIXED + [
        (rng.choice([rng.randint(0, 10**12), rng.uniform(0, 1e10), -rng.uniform(0.5, 10)]), rng.choice([1, 2, 3, 8, 12, 1024, 0, -1]))
        for _ in range(CASES * 3)
    ]
    for payload, world_size in cases:
        expected = outcome(lambda: float(oracle.ledger.ring_allreduce_bytes_per_rank(payload, world_size)))
        actual = outcome(lambda: lab.ledger.ring_allreduce_bytes_per_rank(payload, world_size))
        assert _same(actual, expected), _fail(f"ring_allreduce_bytes_per_rank({payload!r}, {world_size!r})", actual, expected)


BUBBLE_FIXED = [(4, 16), (1, 8), (8, 1), (16, 64), (2, 3), (1, 1), (0, 16), (4, 0), (-2, 16), (4, 1.5), (True, 16), (4, True), (4.0, 16), (None, 1)]


@check("pipeline_bubble_fraction", points=1)
def test_pipeline_bubble_matches_reference(lab, oracle, rng):
    cases = BUBBLE_FIXED + [(rng.choice([1, 2, 4, 8, 64, 0, -3]), rng.choice([1, 3, 16, 100, 0, -1])) for _ in range(CASES * 3)]
    for stages, microbatches in cases:
        expected = outcome(lambda: float(oracle.ledger.pipeline_bubble_fraction(stages, microbatches)))
        actual = outcome(lambda: lab.ledger.pipeline_bubble_fraction(stages, microbatches))
        assert _same(actual, expected), _fail(f"pipeline_bubble_fraction({stages!r}, {microbatches!r})", actual, expected)
