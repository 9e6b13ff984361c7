"""Inputs for the Lab 10 checks: valid plans and workloads, with the blame put where it belongs.

Given check tooling; it computes none of the lab's answers. A check of ``quantized_bytes``,
``saved_memory`` or ``describe`` needs a ``QuantizationPlan`` and a ``Workload``, which are
themselves exercises, built by the learner's own classes (the only objects learner code can be
handed, in this process or in an isolated one). When one of them refuses a valid input, the check
stops with a message that names that class, not the exercise under test.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from infralens.checking import bounded

ROW_WORDS = {"weights": "per-channel", "activations": "per-token", "kv_cache": "per-token-per-head"}
"""What ``group_size=None`` is called for each target, as the ``granularity`` docstring says."""

RISK_DIGESTS = {
    "weights": ("ebd51c517aed9ccf", "c2e115d089b120dd", "b32486ecb36fb529"),
    "activations": ("d398224b2de86ec3", "c2e791230b303654", "e68e7e2e0a0fb526"),
    "kv_cache": ("d616f1bceeb64359", "7b69233942fb3663", "c8206a272b657681"),
}
"""Digests of the ``ErrorSite``, ``Mechanism`` and ``Mitigation`` texts that fit each target: the
checks recognise the right members without naming them."""


def documented_granularity(target: str, group_size: int | None) -> str:
    """``granularity`` as its docstring spells it out: ``"per-tensor"``, ``"group-128"``, or the row's name."""
    if group_size == -1:
        return "per-tensor"
    return ROW_WORDS[target] if group_size is None else f"group-{group_size}"


def make_plan(qp: ModuleType, target: Any, bits: int, group_size: int | None = None, scale_bits: int = 16, zero_point_bits: int = 0, number_format: str = "int") -> Any:
    """``qp.QuantizationPlan`` of these valid fields; ``target`` is a ``Target`` or its value (``"weights"``).

    A ``ValueError`` here is the learner's ``QuantizationPlan`` rejecting a valid plan: the check
    fails naming ``QuantizationPlan``. ``NotImplementedError`` passes through as work not started.
    """
    fields = dict(group_size=group_size, scale_bits=scale_bits, zero_point_bits=zero_point_bits, number_format=number_format)
    value = getattr(target, "value", target)
    try:
        return qp.QuantizationPlan(qp.Target(value), bits, **fields)
    except ValueError as error:
        shown = ", ".join(f"{key}={item!r}" for key, item in fields.items())
        pytest.fail(
            f"this check needs the valid plan QuantizationPlan(Target({value!r}), bits={bits}, {shown}), but QuantizationPlan "
            f"rejected it: ValueError({bounded(str(error))!r}). Fix QuantizationPlan first (its checks say how)",
            pytrace=False,
        )


def make_workload(qp: ModuleType, batch: int, context_tokens: int) -> Any:
    """``qp.Workload(batch, context_tokens)`` of valid counts; a ``ValueError`` fails naming ``Workload``."""
    try:
        return qp.Workload(batch, context_tokens)
    except ValueError as error:
        pytest.fail(
            f"this check needs the valid Workload({batch}, {context_tokens}), but Workload rejected it: "
            f"ValueError({bounded(str(error))!r}). Fix Workload first (its checks say how)",
            pytrace=False,
        )


def plan_text(plan: Any) -> str:
    """A plan in a failure message, field by field (the learner's ``repr`` is never shown)."""
    return (
        f"QuantizationPlan({plan.target.value}, bits={plan.bits}, group_size={plan.group_size}, scale_bits={plan.scale_bits}, "
        f"zero_point_bits={plan.zero_point_bits}, number_format={plan.number_format!r})"
    )
