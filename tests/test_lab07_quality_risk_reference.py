"""The Lab 07 reference solution against independent oracles, and the given model's promises.

Never the reference against itself. The oracles: NumPy float32 loops over the documented
quantizer, one group at a time (``np.round`` rounds half to even, as ``torch.round``); torch's own
``F.cross_entropy`` for perplexity; NumPy argmax for agreement; and the shipped model itself: its
size on disk, its perplexity against a uniform guess, and the exact identity of a KV cache that
nothing was quantized in.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from infralens.loader import LabCode
from infralens.tinylm import VOCAB, WEIGHTS, load_tiny_lm, workload

REPO = Path(__file__).resolve().parent.parent
qr = LabCode(REPO / "solutions", "lab07_quality_risk", "solutions").quality_risk


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_rows(x: np.ndarray, bits: int, size: int) -> np.ndarray:
    """The documented quantizer over consecutive groups of ``size`` along the last axis of a 2-D float32 array."""
    q_max = np.float32(2**bits - 1)
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for start in range(0, x.shape[1], size):
            group = x[r, start : start + size]
            low = group.min()
            step = max(np.float32(group.max() - low) / q_max, np.finfo(np.float32).tiny)
            codes = np.clip(np.round((group - low) / np.float32(step)), 0, q_max).astype(np.float32)
            out[r, start : start + size] = codes * np.float32(step) + low
    return out


@pytest.mark.parametrize(("bits", "size"), [(2, 4), (3, 16), (4, 64), (8, 8)])
def test_fake_quantize_matches_a_numpy_loop_per_group(bits, size):
    x = (torch.randn(9, 64, generator=_gen(bits)) * torch.exp(torch.randn(9, 1, generator=_gen(size)))).float()
    assert np.array_equal(qr.fake_quantize(x, bits, -1, size).numpy(), _numpy_rows(x.numpy(), bits, size))
    assert np.array_equal(qr.fake_quantize(x, bits, 0, None).numpy(), _numpy_rows(x.T.contiguous().numpy(), bits, 9).T)


def test_ties_go_to_the_even_code_and_constant_groups_survive():
    x = torch.tensor([0.0, 0.5, 1.5, 3.0, -2.0, -1.0, 0.5, 4.0])  # step 1: ratios 0.5 and 1.5 tie; step 2: 0.5 ties
    assert qr.fake_quantize(x, 2, -1, 4).tolist() == [0.0, 0.0, 2.0, 3.0, -2.0, -2.0, 0.0, 4.0]
    assert torch.equal(qr.fake_quantize(torch.full((2, 4), 0.3), 2), torch.full((2, 4), 0.3))


def test_weights_and_activations_group_as_named():
    w = torch.randn(12, 32, generator=_gen(3))
    assert np.array_equal(qr.quantize_weight(w, 3).numpy(), _numpy_rows(w.numpy(), 3, 32))
    assert np.array_equal(qr.quantize_weight(w, 3, "per-group", 8).numpy(), _numpy_rows(w.numpy(), 3, 8))
    x = torch.randn(2, 5, 16, generator=_gen(4))
    assert np.array_equal(qr.quantize_activation(x, 4).numpy(), _numpy_rows(x.reshape(10, 16).numpy(), 4, 16).reshape(2, 5, 16))
    assert np.array_equal(qr.quantize_activation(x, 4, "per-tensor").numpy(), _numpy_rows(x.reshape(1, 160).numpy(), 4, 160).reshape(2, 5, 16))


def test_kv_keys_per_channel_values_per_token_and_the_window_untouched():
    k = torch.randn(1, 2, 20, 8, generator=_gen(5)) + torch.linspace(-5, 5, 8)
    v = torch.randn(1, 2, 20, 8, generator=_gen(6))
    k_hat, v_hat = qr.quantize_kv(k, v, 2, "per-channel-keys", 6)
    for head in range(2):
        keys = k[0, head, :14].T.contiguous().numpy()  # channels as rows: statistics over the 14 old tokens
        assert np.array_equal(k_hat[0, head, :14].numpy(), _numpy_rows(keys, 2, 14).T)
        assert np.array_equal(v_hat[0, head, :14].numpy(), _numpy_rows(v[0, head, :14].numpy(), 2, 8))
    assert torch.equal(k_hat[:, :, 14:], k[:, :, 14:]) and torch.equal(v_hat[:, :, 14:], v[:, :, 14:])
    k_tok, _ = qr.quantize_kv(k, v, 2, "per-token", 0)
    assert np.array_equal(k_tok[0, 1].numpy(), _numpy_rows(k[0, 1].numpy(), 2, 8))


def test_perplexity_is_torchs_cross_entropy_exponentiated():
    logits = torch.randn(3, 11, 61, generator=_gen(7)) * 4
    targets = torch.randint(0, 61, (3, 11), generator=_gen(8))
    expected = math.exp(F.cross_entropy(logits.double().reshape(-1, 61), targets.reshape(-1)).item())
    assert math.isclose(qr.perplexity(logits, targets), expected, rel_tol=1e-12)
    assert math.isclose(qr.perplexity(torch.zeros(5, 61), torch.arange(5)), 61.0, rel_tol=1e-12)  # a uniform guess scores the vocabulary size


def test_agreement_is_numpys_argmax_match_rate():
    a, b = torch.randn(4, 7, 9, generator=_gen(9)), torch.randn(4, 7, 9, generator=_gen(10))
    assert qr.top1_agreement(a, b) == float(np.mean(np.argmax(a.numpy(), -1) == np.argmax(b.numpy(), -1)))


def test_the_shipped_model_is_small_and_far_better_than_uniform():
    assert WEIGHTS.stat().st_size <= 5 * 2**20
    model = load_tiny_lm()
    assert sum(p.numel() for p in model.parameters()) == 123_136
    tokens = workload("long")
    with torch.no_grad():
        logits = model(tokens[:, :-1])
    float_perplexity = math.exp(F.cross_entropy(logits.reshape(-1, len(VOCAB)), tokens[:, 1:].reshape(-1)).item())
    assert float_perplexity < len(VOCAB) / 10, f"float perplexity {float_perplexity:.3f} against {len(VOCAB)} for a uniform guess"


def test_risk_table_figures_on_the_given_model():
    tokens = workload("long")
    configs = [qr.QuantConfig("weights", "per-channel", 8), qr.QuantConfig("activations", "per-tensor", 3), qr.QuantConfig("kv", "per-token", 2, residual_length=256)]
    rows = qr.risk_table(tokens, configs)
    assert abs(rows[0].increase) < 1e-3 and rows[0].verdict == "safe"
    assert rows[1].increase > 0.2 and rows[1].verdict == "breaks"
    assert (rows[2].increase, rows[2].agreement) == (0.0, 1.0), "a window as long as the documents quantizes nothing"
