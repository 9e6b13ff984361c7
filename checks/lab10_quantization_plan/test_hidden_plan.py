"""Hidden checks for Lab 10: the learner against the reference on fresh random plans, models and workloads.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay). Outputs are
compared as data: numbers, strings and enum values, never object identity.
"""

from __future__ import annotations

import dataclasses

import pytest

from infralens.checking import model_summary, outcome, random_dense_model

check = pytest.mark.check
CASES = 60


def _random_plan(qp, rng, target=None):
    """A random plan of the lab's own module ``qp``; roughly a third of group sizes do not tile every row."""
    target = target or rng.choice(list(qp.Target))
    fp8 = rng.random() < 0.15
    return qp.QuantizationPlan(
        target=target,
        bits=8 if fp8 else rng.choice([2, 4, 8]),
        group_size=rng.choice([None, qp.PER_TENSOR, 8, 16, 32, 64, 128]),
        scale_bits=rng.choice([8, 16, 32]),
        zero_point_bits=0 if fp8 else rng.choice([0, 8, 16, 32]),
        number_format="fp8" if fp8 else "int",
    )


def _plan_text(plan):
    return (
        f"QuantizationPlan({plan.target.value}, bits={plan.bits}, group_size={plan.group_size}, scale_bits={plan.scale_bits}, "
        f"zero_point_bits={plan.zero_point_bits}, number_format={plan.number_format!r})"
    )


def _same_plan(qp, plan):
    return qp.QuantizationPlan(qp.Target(plan.target.value), plan.bits, plan.group_size, plan.scale_bits, plan.zero_point_bits, plan.number_format)


def _random_case(oracle, rng, sliding=False):
    ref = oracle.quantization_plan
    model = random_dense_model(rng, sliding_window=rng.choice([None, 64, 1000]) if sliding else None)
    if model.sliding_window is not None and rng.random() < 0.5:  # Gemma-2 style: only some layers slide
        kinds = tuple(rng.choice(["full_attention", "sliding_attention"]) for _ in range(model.num_hidden_layers))
        model = dataclasses.replace(model, layer_types=kinds)
    plan = _random_plan(ref, rng)
    return model, plan, (rng.randint(1, 32), rng.randint(1, 20000))


@check("quantized_bytes", points=2)
def test_quantized_bytes_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES):
        plan = _random_plan(ref, rng)
        rows, row_length = rng.randint(1, 5000), rng.choice([rng.randint(1, 300), 128 * rng.randint(1, 8)])
        expected = outcome(lambda: ref.quantized_bytes(plan, rows, row_length))
        actual = outcome(lambda: qp.quantized_bytes(_same_plan(qp, plan), rows, row_length))
        assert actual == expected, f"quantized_bytes({_plan_text(plan)}, rows={rows}, row_length={row_length}): got {actual}, expected {expected}"


@check("saved_memory", points=3)
def test_saved_memory_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES):
        model, plan, (batch, context) = _random_case(oracle, rng, sliding=True)
        expected = outcome(lambda: ref.saved_memory(plan, model, ref.Workload(batch, context)))
        actual = outcome(lambda: qp.saved_memory(_same_plan(qp, plan), model, qp.Workload(batch, context)))
        assert actual == expected, f"saved_memory({_plan_text(plan)}) on {model_summary(model)} at batch {batch} × {context} tokens: got {actual}, expected {expected}"


@check("risk", points=1)
def test_risk_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES):
        plan = _random_plan(ref, rng)
        expected, actual = ref.risk(plan), qp.risk(_same_plan(qp, plan))
        as_data = lambda r: (r.target.value, r.site.value, r.mechanism.value, r.mitigation.value, r.severity)  # noqa: E731
        assert as_data(actual) == as_data(expected), f"risk({_plan_text(plan)}): got {as_data(actual)}, expected {as_data(expected)}"


@check("describe", points=2)
def test_describe_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES):
        model, plan, (batch, context) = _random_case(oracle, rng)
        expected = outcome(lambda: ref.describe(plan, model, ref.Workload(batch, context)))
        actual = outcome(lambda: qp.describe(_same_plan(qp, plan), model, qp.Workload(batch, context)))
        assert actual == expected, f"describe({_plan_text(plan)}, {model.name}, batch {batch} × {context}):\n  got      {actual}\n  expected {expected}"


@check("kernel_path", points=2)
def test_kernel_path_matches_reference_for_every_backend(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES):
        plan, backend = _random_plan(ref, rng), rng.choice(ref.BACKENDS)
        expected, actual = ref.kernel_path(plan, backend), qp.kernel_path(_same_plan(qp, plan), backend)
        assert (actual.backend, actual.kernel, actual.speedup) == (expected.backend, expected.kernel, expected.speedup), (
            f"kernel_path({_plan_text(plan)}, {backend!r}): got kernel={actual.kernel!r}, speedup={actual.speedup}; "
            f"expected kernel={expected.kernel!r}, speedup={expected.speedup}"
        )


@check("compare_plans", points=2)
def test_compare_plans_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES // 4):
        model = random_dense_model(rng)
        plans = [_random_plan(ref, rng) for _ in range(rng.randint(0, 5))]
        plans = [p for p in plans if outcome(lambda p=p: ref.saved_memory(p, model, ref.Workload(1, 64)))[0] == "value"]
        batch, context, backend = rng.randint(1, 8), rng.randint(1, 8192), rng.choice(ref.BACKENDS)
        as_data = lambda rows: [(r.label, r.saved_bytes, r.kernel, r.speedup, r.severity) for r in rows]  # noqa: E731
        expected = as_data(ref.compare_plans(plans, model, ref.Workload(batch, context), backend))
        actual = as_data(qp.compare_plans([_same_plan(qp, p) for p in plans], model, qp.Workload(batch, context), backend))
        assert actual == expected, f"compare_plans on {model_summary(model)}, {backend}:\n  got      {actual}\n  expected {expected}"


@check("QuantizationPlan", points=2)
def test_plan_validation_matches_reference(lab, oracle, rng):
    qp, ref = lab.quantization_plan, oracle.quantization_plan
    for _ in range(CASES * 2):
        kwargs = dict(
            bits=rng.choice([0, 1, 2, 3, 4, 8, 16, True]),
            group_size=rng.choice([None, -1, -2, 0, 1, 64, 2.5, False]),
            scale_bits=rng.choice([8, 12, 16, 32, 64]),
            zero_point_bits=rng.choice([0, 4, 8, 16, 32]),
            number_format=rng.choice(["int", "int", "fp8", "nf4"]),
        )
        target = rng.choice(["weights", "activations", "kv_cache"])
        expected = outcome(lambda: ref.QuantizationPlan(ref.Target(target), **kwargs) and "accepted")
        actual = outcome(lambda: qp.QuantizationPlan(qp.Target(target), **kwargs) and "accepted")
        assert actual == expected, f"QuantizationPlan(Target.{target.upper()}, {kwargs}): got {actual}, expected {expected}"
