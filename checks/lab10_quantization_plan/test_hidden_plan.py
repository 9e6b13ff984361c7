"""Hidden checks for Lab 10: the learner against the reference, first on a fixed list of edge cases,
then on fresh random plans, models and workloads.

The edge cases (odd rows of 2-bit codes, groups of one, windows at the boundary, bools and floats
where ints are documented, every backend) run under every seed, so a grade never depends on it;
each check includes valid inputs, so a function that rejects everything fails. Random inputs come
from the run's seed (printed in the header, ``--seed`` to replay). Outcomes are compared as data,
type first: "both raise ValueError" agrees, and ``8.0`` never equals the int ``8``.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from infralens.checking import model_summary, outcome, random_dense_model, same_outcome
from infralens.models import ModelConfig, preset
from lab10_inputs import make_plan, make_workload

check = pytest.mark.check
CASES = 60
TARGETS = ("weights", "activations", "kv_cache")
PRESETS = ("llama-3-8b", "qwen2.5-7b", "gemma-2-9b", "mistral-7b-v0.1", "mixtral-8x7b", "deepseek-v3")
EDGE_PLANS = [
    (target, bits, group, scale_bits, zero_point_bits, "int")
    for target in TARGETS
    for bits in (2, 4, 8)
    for group in (None, -1, 1, 7, 64)
    for scale_bits, zero_point_bits in ((16, 0), (8, 32), (32, 8))
] + [(target, 8, group, scale_bits, 0, "fp8") for target in TARGETS for group in (None, -1, 32) for scale_bits in (16, 32)]
"""Plans as field tuples (target, bits, group_size, scale_bits, zero_point_bits, number_format)."""


def _odd_models():
    """Small dense models with awkward sizes, drawn once from a fixed seed: odd head_dim (2-bit rows
    that end mid-byte), MQA, every layer sliding, Gemma-2 style alternating windows."""
    rng = random.Random(10)
    sliding = random_dense_model(rng, head_dim=5, num_key_value_heads=1, num_attention_heads=4, hidden_size=40, sliding_window=64)
    alternating = dataclasses.replace(random_dense_model(rng, head_dim=7, sliding_window=64, num_hidden_layers=4), layer_types=("sliding_attention", "full_attention") * 2)
    return [random_dense_model(rng, head_dim=5), random_dense_model(rng, head_dim=7, num_key_value_heads=1), sliding, alternating]


def _random_fields(rng: random.Random, target: str | None = None) -> tuple:
    """Random valid plan fields; roughly a third of the group sizes do not tile every row."""
    fp8 = rng.random() < 0.15
    return (
        target or rng.choice(TARGETS),
        8 if fp8 else rng.choice([2, 4, 8]),
        rng.choice([None, -1, 8, 16, 32, 64, 128]),
        rng.choice([8, 16, 32]),
        0 if fp8 else rng.choice([0, 8, 16, 32]),
        "fp8" if fp8 else "int",
    )


def _plan_text(fields: tuple) -> str:
    target, bits, group, scale_bits, zero_point_bits, number_format = fields
    return f"QuantizationPlan({target}, bits={bits}, group_size={group}, scale_bits={scale_bits}, zero_point_bits={zero_point_bits}, number_format={number_format!r})"


class _Pairs:
    """The same valid plan, or workload, in the learner's module and in the reference, each built
    once per check: a check compares over a thousand cases made of a few dozen plans, and both
    classes are frozen dataclasses, safe to hand to every call."""

    def __init__(self, qp, ref):
        self.qp, self.ref = qp, ref
        self._plans: dict[tuple, tuple] = {}
        self._workloads: dict[tuple[int, int], tuple] = {}

    def plans(self, fields: tuple) -> tuple:
        """``(the learner's plan, the reference's)`` of these fields."""
        if fields not in self._plans:
            target, *rest = fields
            self._plans[fields] = make_plan(self.qp, target, *rest), self.ref.QuantizationPlan(self.ref.Target(target), *rest)
        return self._plans[fields]

    def workloads(self, batch: int, context: int) -> tuple:
        """``(the learner's Workload, the reference's)`` of these valid counts."""
        if (batch, context) not in self._workloads:
            self._workloads[batch, context] = make_workload(self.qp, batch, context), self.ref.Workload(batch, context)
        return self._workloads[batch, context]


def _agree_text(actual: tuple, expected: tuple, what: str) -> None:
    """Like :func:`_agree` for long strings: a mismatch shows the first differing place, not the whole text."""
    if actual[0] != expected[0] or type(actual[1]) is not str:
        same_outcome(actual, expected, what)
        return
    mine, theirs = actual[1], expected[1]
    if mine != theirs:
        at = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        start = max(0, at - 40)
        pytest.fail(
            f"{what} differs from character {at} on:\n  got      …{mine[start:at + 60]!r}\n  expected …{theirs[start:at + 60]!r}",
            pytrace=False,
        )


@check("Workload", points=1)
def test_workload_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    edges = [(1, 1), (1, 131072), (64, 8192), (0, 1), (1, 0), (-1, 8), (True, 8), (8, False), (1.0, 8), (8, 2.5), ("8", 8), (None, 8)]
    randoms = [(rng.choice([rng.randint(1, 256), rng.randint(-3, 0)]), rng.randint(1, 200000)) for _ in range(CASES)]
    as_data = lambda w: (w.batch, w.context_tokens, w.tokens)  # noqa: E731
    for batch, context in edges + randoms:
        expected = outcome(lambda: as_data(ref.Workload(batch, context)))
        actual = outcome(lambda: as_data(qp.Workload(batch, context)))
        same_outcome(actual, expected, f"Workload({batch!r}, {context!r}) as (batch, context_tokens, tokens)")


@check("QuantizationPlan", points=2)
def test_plan_validation_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    valid = dict(bits=4, group_size=128, scale_bits=16, zero_point_bits=8, number_format="int")
    bad_values = {
        "bits": [0, 1, 3, 16, True, 8.0, None],
        "group_size": [0, -2, -8, True, False, 64.0, 2.5],
        "scale_bits": [0, 12, 24, 64, True, 16.0],
        "zero_point_bits": [4, 24, 64, False, True, 8.0],
        "number_format": ["nf4", "FP8", None],
    }
    edges = [dict(valid)] + [{**valid, field: bad} for field, values in bad_values.items() for bad in values]
    edges += [dict(bits=b, group_size=g, scale_bits=s, zero_point_bits=z, number_format="int") for b, g, s, z in itertools.product((2, 4, 8), (None, -1, 1, 64), (8, 16, 32), (0, 8, 16, 32))]
    edges += [dict(bits=8, group_size=None, zero_point_bits=z, number_format="fp8") for z in (0, 8)] + [dict(bits=4, number_format="fp8")]
    randoms = [
        dict(
            bits=rng.choice([0, 1, 2, 3, 4, 8, 16, True, 8.0]),
            group_size=rng.choice([None, -1, -2, 0, 1, 64, 2.5, False]),
            scale_bits=rng.choice([8, 12, 16, 24, 32, 64, 16.0]),
            zero_point_bits=rng.choice([0, 4, 8, 16, 32, False]),
            number_format=rng.choice(["int", "int", "fp8", "nf4"]),
        )
        for _ in range(CASES * 2)
    ]
    as_data = lambda p: (p.target.value, p.bits, p.group_size, p.scale_bits, p.zero_point_bits, p.number_format, p.fmt, p.granularity)  # noqa: E731
    for index, kwargs in enumerate(edges + randoms):
        target = TARGETS[index % 3]
        expected = outcome(lambda: as_data(ref.QuantizationPlan(ref.Target(target), **kwargs)))
        actual = outcome(lambda: as_data(qp.QuantizationPlan(qp.Target(target), **kwargs)))
        shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        same_outcome(actual, expected, f"QuantizationPlan(Target({target!r}), {shown}) as (target, bits, group_size, scale_bits, zero_point_bits, number_format, fmt, granularity)")


@check("quantized_bytes", points=2)
def test_quantized_bytes_matches_reference(lab, oracle, rng, cases):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    shapes = [(1, 1), (3, 5), (5, 127), (4, 128), (1, 4096)]
    edges = [(fields, rows, row_length) for fields in EDGE_PLANS for rows, row_length in shapes]
    edges += [(("weights", 8, None, 16, 0, "int"), rows, row_length) for rows, row_length in ((0, 8), (-1, 8), (True, 8), (2.5, 8), (4.0, 8), (8, 0), (8, False), (8, 16.0))]
    randoms = [(_random_fields(rng), rng.randint(1, 5000), rng.choice([rng.randint(1, 300), 128 * rng.randint(1, 8)])) for _ in range(CASES)]
    pairs = _Pairs(qp, ref)
    for fields, rows, row_length in cases(edges, randoms):
        mine, theirs = pairs.plans(fields)
        expected = outcome(lambda: ref.quantized_bytes(theirs, rows, row_length))
        actual = outcome(lambda: qp.quantized_bytes(mine, rows, row_length))
        same_outcome(actual, expected, f"quantized_bytes({_plan_text(fields)}, rows={rows!r}, row_length={row_length!r})")


def _saved_memory_edges():
    plans = [(target, *rest) for target in TARGETS for rest in ((8, None, 16, 0, "int"), (4, 128, 16, 8, "int"), (2, -1, 32, 0, "int"), (8, -1, 16, 0, "fp8"), (2, 1, 8, 8, "int"), (4, 7, 16, 0, "int"))]
    workloads = [(1, 1), (2, 64), (1, 65), (2, 4096), (1, 4097), (32, 100000)]  # at and past the windows of 64 and 4096
    models = [preset(name) for name in PRESETS] + _odd_models()
    return [(model, fields, workload) for model in models for fields in plans for workload in workloads]


@check("saved_memory", points=3)
def test_saved_memory_matches_reference(lab, oracle, rng, cases):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    randoms = [(_random_model(rng, sliding=True), _random_fields(rng), (rng.randint(1, 32), rng.randint(1, 20000))) for _ in range(CASES)]
    pairs = _Pairs(qp, ref)
    for model, fields, (batch, context) in cases(_saved_memory_edges(), randoms):
        (mine, theirs), (my_workload, their_workload) = pairs.plans(fields), pairs.workloads(batch, context)
        expected = outcome(lambda: ref.saved_memory(theirs, model, their_workload))
        actual = outcome(lambda: qp.saved_memory(mine, model, my_workload))
        same_outcome(actual, expected, f"saved_memory({_plan_text(fields)}) on {model_summary(model)} at batch {batch} × {context} tokens")


def _random_model(rng: random.Random, sliding: bool = False) -> ModelConfig:
    model = random_dense_model(rng, sliding_window=rng.choice([None, 64, 1000]) if sliding else None)
    if model.sliding_window is not None and rng.random() < 0.5:  # Gemma-2 style: only some layers slide
        kinds = tuple(rng.choice(["full_attention", "sliding_attention"]) for _ in range(model.num_hidden_layers))
        model = dataclasses.replace(model, layer_types=kinds)
    return model


@check("risk", points=1)
def test_risk_matches_reference(lab, oracle, rng, cases):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    as_data = lambda r: (r.target.value, r.site.value, r.mechanism.value, r.mitigation.value, r.severity)  # noqa: E731
    pairs = _Pairs(qp, ref)
    for fields in cases(EDGE_PLANS, [_random_fields(rng) for _ in range(CASES)]):
        mine, theirs = pairs.plans(fields)
        same_outcome(outcome(lambda: as_data(qp.risk(mine))), outcome(lambda: as_data(ref.risk(theirs))), f"risk({_plan_text(fields)}) as (target, site, mechanism, mitigation, severity)")


@check("describe", points=2)
def test_describe_matches_reference(lab, oracle, rng, cases):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    plans = [(target, *rest) for target in TARGETS for rest in ((8, None, 16, 0, "int"), (4, 128, 16, 8, "int"), (2, -1, 32, 0, "int"), (8, -1, 16, 0, "fp8"), (2, 1, 8, 32, "int"))]
    edges = [(preset(name), fields, workload) for name in PRESETS[:4] for fields in plans for workload in ((1, 1), (8, 8192), (2, 32768))]
    edges += [(model, fields, (32, 100000)) for model in _odd_models() for fields in plans]
    randoms = [(_random_model(rng), _random_fields(rng), (rng.randint(1, 32), rng.randint(1, 20000))) for _ in range(CASES)]
    pairs = _Pairs(qp, ref)
    for model, fields, (batch, context) in cases(edges, randoms):
        (mine, theirs), (my_workload, their_workload) = pairs.plans(fields), pairs.workloads(batch, context)
        expected = outcome(lambda: ref.describe(theirs, model, their_workload))
        actual = outcome(lambda: qp.describe(mine, model, my_workload))
        _agree_text(actual, expected, f"describe({_plan_text(fields)}, {model.name}, batch {batch} × {context})")


@check("kernel_path", points=2)
def test_kernel_path_matches_reference_for_every_backend(lab, oracle, rng, cases):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    formats = [(2, "int"), (4, "int"), (8, "int"), (8, "fp8")]
    edges = [((target, bits, group, 16, 0, fmt), backend) for target in TARGETS for bits, fmt in formats for group in (None, -1) for backend in ref.BACKENDS + ("tensorrt", "VLLM")]
    randoms = [(_random_fields(rng), rng.choice(ref.BACKENDS)) for _ in range(CASES)]
    as_data = lambda p: (p.backend, p.kernel, p.speedup, type(p.reason) is str and bool(p.reason.strip()))  # noqa: E731
    pairs = _Pairs(qp, ref)
    for fields, backend in cases(edges, randoms):
        mine, theirs = pairs.plans(fields)
        expected = outcome(lambda: as_data(ref.kernel_path(theirs, backend)))
        actual = outcome(lambda: as_data(qp.kernel_path(mine, backend)))
        same_outcome(actual, expected, f"kernel_path({_plan_text(fields)}, {backend!r}) as (backend, kernel, speedup, has a reason)")


@check("compare_plans", points=2)
def test_compare_plans_matches_reference(lab, oracle, rng, cases):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    llama = preset("llama-3-8b")
    fixed = [("weights", 8, None, 16, 0, "int"), ("weights", 4, 128, 16, 8, "int"), ("kv_cache", 8, None, 16, 0, "int"), ("kv_cache", 8, -1, 16, 0, "fp8"), ("activations", 2, -1, 32, 0, "int")]
    edges = [(llama, plans, (8, 8192), backend) for plans in ([], fixed) for backend in ref.BACKENDS + ("TensorRT",)]
    two_bit = [("kv_cache", 2, None, 16, 0, "int"), ("weights", 2, None, 16, 0, "int"), ("activations", 2, -1, 8, 8, "int")]
    edges += [(model, two_bit, (3, 65), "transformers") for model in _odd_models()]  # rows that end mid-byte
    randoms = []
    for _ in range(CASES // 4):
        model = random_dense_model(rng)
        drawn = [_random_fields(rng) for _ in range(rng.randint(0, 5))]
        drawn = [f for f in drawn if outcome(lambda f=f: ref.saved_memory(ref.QuantizationPlan(ref.Target(f[0]), *f[1:]), model, ref.Workload(1, 64)))[0] == "value"]
        randoms.append((model, drawn, (rng.randint(1, 8), rng.randint(1, 8192)), rng.choice(ref.BACKENDS)))
    as_data = lambda rows: [(r.label, r.saved_bytes, r.kernel, r.speedup, r.severity) for r in rows]  # noqa: E731
    built = _Pairs(qp, ref)
    for model, plans, (batch, context), backend in cases(edges, randoms):
        pairs = [built.plans(fields) for fields in plans]
        my_workload, their_workload = built.workloads(batch, context)
        expected = outcome(lambda: as_data(ref.compare_plans([p for _, p in pairs], model, their_workload, backend)))
        actual = outcome(lambda: as_data(qp.compare_plans([p for p, _ in pairs], model, my_workload, backend)))
        same_outcome(actual, expected, f"compare_plans({len(plans)} plans, {model.name}, batch {batch} × {context}, {backend!r}) as (label, saved_bytes, kernel, speedup, severity) rows")
