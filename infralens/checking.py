"""Helpers for writing checks: random real-looking models, strict comparisons with bounded messages,
ValueError expectations gated on a correct answer, answer digests.

Given tooling, shared by the labs' checks; none of it computes a lab's answer. Plain Python: a lab
whose checks and code never touch torch runs without importing it (seconds saved on every run).
Tensors are compared by :mod:`infralens.tensor_checks`, where :func:`assert_exact` hands them.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from typing import Any, Callable

import pytest

from infralens.models import ModelConfig


def random_dense_model(rng: random.Random, **overrides: Any) -> ModelConfig:
    """A random Llama-style dense decoder, small enough to reason about and with awkward sizes.

    Head counts, head_dim (odd ones included) and the MLP width vary; GQA, MQA and MHA all occur.
    ``overrides`` replace any field, e.g. ``random_dense_model(rng, sliding_window=64)``.
    """
    kv_heads = rng.choice([1, 2, 4, 8])
    heads = kv_heads * rng.choice([1, 2, 4])
    head_dim = rng.choice([16, 24, 40, 64, 80, 128, 5, 7])
    hidden = heads * head_dim * rng.choice([1, 2])
    fields = dict(
        name=f"random-dense-{rng.randrange(10**6)}",
        model_type="llama",
        num_hidden_layers=rng.randint(1, 12),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=rng.choice([2, 3, 4]) * hidden + rng.choice([0, 8, 40]),
        vocab_size=rng.randint(100, 5000),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def model_summary(model: ModelConfig) -> str:
    """``"random-dense-1 (10 layers, hidden 28, 4 heads / 2 KV heads × head_dim 7, intermediate 56)"``: a model in a failure message."""
    window = f", sliding_window {model.sliding_window}" if model.sliding_window else ""
    return (
        f"{model.name} ({model.num_hidden_layers} layers, hidden {model.hidden_size}, {model.num_attention_heads} heads / "
        f"{model.num_key_value_heads} KV heads × head_dim {model.head_dim}, intermediate {model.intermediate_size}{window})"
    )


MESSAGE_VALUE_CHARS = 120


def _is_torch(value: Any, kind: str) -> bool:
    """``isinstance(value, torch.<kind>)``, without importing torch: where it is not loaded, nothing is a tensor."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, getattr(torch, kind))


def _comparable(text: str) -> str:
    """Message text as the checks compare it: case-folded, ``65,504``/``65_504`` → ``65504``,
    ``torch.Size([2, 4])`` → ``(2, 4)``, and whitespace collapsed, so reasonable wordings match."""
    text = text.lower()
    text = re.sub(r"torch\.size\(\[([^\]]*)\]\)", r"(\1)", text)
    text = re.sub(r"(?<=\d)[,_](?=(?:\d{3}[,_])*\d{3}\b)", "", text)
    text = re.sub(r"\(\s*([^()]*?),?\s*\)", lambda m: "(" + ", ".join(p.strip() for p in m.group(1).split(",") if p.strip()) + ")", text)
    return re.sub(r"\s+", " ", text)


def mentions(text: str, value: Any) -> bool:
    """True when ``text`` names ``value``, leniently: case-insensitive, numbers with or without
    thousands separators, shapes as a tuple or a ``torch.Size`` (``(2, 4)`` matches ``torch.Size([2, 4])``)."""
    wanted = tuple(value) if _is_torch(value, "Size") else value
    return _comparable(str(wanted)) in _comparable(text)


def expect_value_error(call: Callable[..., Any], *args: Any, what: str, must_mention: tuple[Any, ...] = (), **kwargs: Any) -> ValueError:
    """Call ``call(*args, **kwargs)`` and fail with a learner-facing message unless it raises ``ValueError``.

    ``what`` describes the call for the learner (``"Workload(batch=-2, context_tokens=8)"``);
    ``must_mention`` lists values the error message has to contain, so errors stay actionable. They
    are matched leniently (see :func:`mentions`): ``NaN`` matches ``nan``, ``65,504`` matches ``65504``.
    ``NotImplementedError`` passes through untouched: that is work not started, not a failure.

    A check that expects ``ValueError`` must also call :func:`expect_correct` on a valid input of
    the same exercise, so a function that rejects everything earns nothing.
    """
    try:
        result = call(*args, **kwargs)
    except ValueError as error:
        text = str(error)
        missing = [str(value) for value in must_mention if not mentions(text, value)]
        if missing:
            pytest.fail(
                f"{what} raised ValueError({bounded(text)!r}), but the message should name {', '.join(repr(m) for m in missing)} "
                "so the caller knows what to fix",
                pytrace=False,
            )
        return error
    except NotImplementedError:
        raise
    except Exception as error:
        pytest.fail(f"{what} should raise ValueError, but raised {type(error).__name__}: {bounded(str(error))}", pytrace=False)
    pytest.fail(f"{what} should raise ValueError, but returned {summarize(result)}", pytrace=False)


def accepted(call: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    """The gate of every "rejects bad input" check: a valid worked example must not raise ``ValueError``.

    Returns the result for the caller to compare with the worked example's answer (see
    :func:`expect_correct`). Rejecting bad input only earns points once the same exercise accepts
    valid input, so a starter that raises ``ValueError`` for everything earns nothing.
    ``NotImplementedError`` passes through as work not started.
    """
    try:
        return call(*args, **kwargs)
    except NotImplementedError:
        raise
    except ValueError as error:
        pytest.fail(
            f"{what} is a valid input, but raised ValueError: {bounded(str(error))}. Rejecting bad input earns points only "
            "once valid input is accepted and computed correctly",
            pytrace=False,
        )


def expect_correct(call: Callable[..., Any], *args: Any, expected: Any, what: str, **kwargs: Any) -> Any:
    """:func:`accepted`, then :func:`assert_exact` against ``expected`` (type first, then value)."""
    actual = accepted(call, *args, what=what, **kwargs)
    assert_exact(actual, expected, what)
    return actual


def same_outcome(actual: tuple[str, Any], expected: tuple[str, Any], what: str, compare: Callable[[Any, Any], None] | None = None) -> bool:
    """A hidden check's verdict on one input: the learner's :func:`outcome` must be the reference's.

    Both raise ``ValueError``, or both return; returned values are compared with ``compare(actual,
    expected)`` (default: :func:`assert_exact`). Returns True when both returned a value, so a check
    can count the valid cases it compared and insist on some (a function that rejects everything
    must not pass a hidden check).
    """
    (kind, value), (expected_kind, expected_value) = actual, expected
    if kind != expected_kind:
        if expected_kind == "ValueError":
            pytest.fail(f"{what} returned {summarize(value)}, but the input is invalid: it should raise ValueError", pytrace=False)
        pytest.fail(f"{what} raised ValueError, but the input is valid: expected {summarize(expected_value)}", pytrace=False)
    if kind != "value":
        return False
    if compare is None:
        assert_exact(value, expected_value, what)
    else:
        compare(value, expected_value)
    return True


def summarize(value: Any, limit: int = MESSAGE_VALUE_CHARS) -> str:
    """A value as a failure message shows it: a tensor or array as its shape and dtype (its few
    values when tiny), anything else as a ``repr`` capped at ``limit`` characters."""
    if _is_torch(value, "Tensor"):
        head = f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
        return f"{head}: {value.flatten().tolist()}" if value.numel() <= 8 else head
    if type(value).__module__ == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"numpy array of shape {tuple(value.shape)}, dtype {value.dtype}"
    if type(value) in (tuple, list) and any(_is_torch(item, "Tensor") for item in value):
        open_, close = "()" if type(value) is tuple else "[]"
        return bounded(open_ + ", ".join(summarize(item, limit) for item in value) + close, limit)
    return bounded(repr(value), limit)


def bounded(text: str, limit: int = MESSAGE_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def assert_exact(actual: Any, expected: Any, what: str, why: str = "") -> None:
    """``actual`` must equal ``expected`` and have its exact type: an ``int`` byte count is never a
    ``float`` or a ``bool``, and a tuple is never a list. Containers are compared element by element."""
    def kind(value: Any) -> str:
        return type(value).__name__ if type(value).__module__ == "builtins" else f"{type(value).__module__}.{type(value).__name__}"

    if type(actual) is not type(expected):
        pytest.fail(
            f"{what} returned {kind(actual)} {summarize(actual)}, expected {kind(expected)} {summarize(expected)}"
            + (f": {why}" if why else ""),
            pytrace=False,
        )
    if isinstance(expected, (tuple, list)):
        if len(actual) != len(expected):
            pytest.fail(f"{what} returned {len(actual)} items, expected {len(expected)}: {summarize(expected)}", pytrace=False)
        for index, (mine, theirs) in enumerate(zip(actual, expected)):
            assert_exact(mine, theirs, f"{what}[{index}]", why)
        return
    if _is_torch(expected, "Tensor"):
        from infralens.tensor_checks import assert_tensor_equal

        assert_tensor_equal(actual, expected, what, why)
        return
    if not actual == expected:
        shown = (lambda v: f"{v:,}") if type(expected) is int else summarize
        pytest.fail(f"{what} returned {shown(actual)}, expected {shown(expected)}" + (f": {why}" if why else ""), pytrace=False)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """``("value", call())``, or ``("ValueError", None)`` when it raises ``ValueError``.

    Hidden checks compare the learner's outcome with the reference's, so "both reject this input"
    counts as agreement. ``NotImplementedError`` and every other exception propagate.
    """
    try:
        return "value", call()
    except ValueError:
        return "ValueError", None


def digest(value: Any) -> str:
    """A short SHA-256 of ``str(value)``: lets a public check hold an answer without revealing it."""
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:16]
