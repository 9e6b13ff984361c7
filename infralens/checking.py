"""Helpers for writing checks: random real-looking models, ValueError expectations, answer digests.

Given tooling, shared by the labs' checks; none of it computes a lab's answer.
"""

from __future__ import annotations

import hashlib
import random
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


def expect_value_error(call: Callable[..., Any], *args: Any, what: str, must_mention: tuple[Any, ...] = (), **kwargs: Any) -> ValueError:
    """Call ``call(*args, **kwargs)`` and fail with a learner-facing message unless it raises ``ValueError``.

    ``what`` describes the call for the learner (``"Workload(batch=-2, context_tokens=8)"``);
    ``must_mention`` lists values the error message has to contain, so errors stay actionable.
    ``NotImplementedError`` passes through untouched: that is work not started, not a failure.
    """
    try:
        result = call(*args, **kwargs)
    except ValueError as error:
        text = str(error)
        missing = [str(value) for value in must_mention if str(value) not in text]
        if missing:
            pytest.fail(
                f"{what} raised ValueError({text!r}), but the message should name {', '.join(repr(m) for m in missing)} "
                "so the caller knows what to fix",
                pytrace=False,
            )
        return error
    except NotImplementedError:
        raise
    except Exception as error:
        pytest.fail(f"{what} should raise ValueError, but raised {type(error).__name__}: {error}", pytrace=False)
    pytest.fail(f"{what} should raise ValueError, but returned {result!r}", pytrace=False)


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
