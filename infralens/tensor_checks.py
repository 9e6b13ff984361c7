"""Tensor comparisons for checks: exact and tolerant, shape and dtype first, bounded messages that
show the first wrong element and the largest error; and naming the usual mistake a wrong tensor shows.

Given tooling, like :mod:`infralens.checking` (which hands tensors here from :func:`~infralens.checking.assert_exact`).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from infralens.checking import summarize


def cause_of(actual: Any, *mistakes: tuple[list, str]) -> str:
    """The usual mistake whose wrong answer ``actual`` is, or "" when it matches none of them.

    Each of ``mistakes`` is ``(wrong answer as a nested list, the mistake that produces it)``, so a
    message names a cause only when the value shows it. Only small tensors are compared.
    """
    if not isinstance(actual, torch.Tensor) or actual.numel() > 64:
        return ""
    values = actual.tolist()
    return next((cause for wrong, cause in mistakes if values == wrong), "")


def assert_layout(actual: Any, shape: tuple[int, ...], dtype: torch.dtype, what: str, why: str) -> None:
    """Fail with a bounded message unless ``actual`` is a tensor of ``shape`` and ``dtype`` (values not compared)."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(shape) or actual.dtype != dtype:
        assert_tensor_equal(actual, torch.empty(shape, dtype=dtype), what, why)


def _tensor_header(actual: Any, expected: torch.Tensor, what: str, why: str) -> None:
    """Fail unless ``actual`` is a tensor of ``expected``'s shape and dtype (checked before any value:
    an empty tensor would otherwise broadcast to "equal")."""
    reason = f": {why}" if why else ""
    if not isinstance(actual, torch.Tensor):
        pytest.fail(f"{what} should be a torch.Tensor of shape {tuple(expected.shape)}, dtype {expected.dtype}; got {summarize(actual)}{reason}", pytrace=False)
    if tuple(actual.shape) != tuple(expected.shape):
        pytest.fail(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}{reason}", pytrace=False)
    if actual.dtype != expected.dtype:
        pytest.fail(f"{what} has dtype {actual.dtype}, expected {expected.dtype}{reason}", pytrace=False)


def _first_difference(actual: torch.Tensor, expected: torch.Tensor, wrong: torch.Tensor) -> str:
    count = int(wrong.sum())
    index = tuple(int(i) for i in torch.nonzero(wrong)[0])
    text = f"{count:,} of {wrong.numel():,} elements differ; the first at index {index}: got {actual[index].item()!r}, expected {expected[index].item()!r}"
    if actual.dtype != torch.bool:
        error = (actual.double() - expected.double()).abs()
        finite = error[torch.isfinite(error)]
        if finite.numel():
            text += f"; max |error| {float(finite.max()):.6g}"
    return text


def assert_tensor_equal(actual: Any, expected: torch.Tensor, what: str, why: str = "") -> None:
    """Exact comparison for what a format defines (integer codes, packed bytes): shape, then dtype,
    then every element (NaN equals NaN at the same place), summarized in a bounded message."""
    _tensor_header(actual, expected, what, why)
    same = (actual == expected) | (torch.isnan(actual) & torch.isnan(expected)) if actual.is_floating_point() else actual == expected
    if not bool(same.all()):
        pytest.fail(f"{what} is wrong: {_first_difference(actual, expected, ~same)}" + (f". {why}" if why else ""), pytrace=False)


def assert_tensor_close(actual: Any, expected: torch.Tensor, what: str, *, atol: float | torch.Tensor, rtol: float = 0.0, why: str) -> None:
    """Float comparison with a stated tolerance: ``|actual - expected| <= atol + rtol·|expected|``.

    ``why`` justifies the tolerance and appears in the message (e.g. "dequantized values may differ
    by half a step, scale/2"). ``atol`` may be a tensor broadcastable to the shape (a per-row bound).
    """
    _tensor_header(actual, expected, what, why)
    error = (actual.double() - expected.double()).abs()
    bound = torch.as_tensor(atol, dtype=torch.float64) + rtol * expected.double().abs()
    wrong = ~(error <= bound) & ~(torch.isnan(actual) & torch.isnan(expected))
    if bool(wrong.any()):
        pytest.fail(f"{what} is off by more than the tolerance: {_first_difference(actual, expected, wrong)}. Tolerance: {why}", pytrace=False)
