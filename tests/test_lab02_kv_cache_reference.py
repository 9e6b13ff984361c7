"""Lab 02's reference against figures worked by hand from the published model configurations.

Every expected number below is written out as arithmetic on the config.json values (layers, KV
heads, head_dim, MLA ranks, windows), independently of the reference; the reference is never
used to produce an expected value. The attention check compares the reference cache with
PyTorch's own ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import pytest
import torch

from infralens.loader import LabCode
from infralens.models import preset, preset_names

from conftest import REPO

BF16 = 2
GIB = 2**30


@pytest.fixture(scope="module")
def kv():
    return LabCode(REPO / "solutions", "lab02_kv_cache", "solutions").kv_cache


# bf16 bytes per token, from each model's config.json: 2 (K and V) × layers × KV heads × head_dim × 2 bytes.
BY_HAND_PER_TOKEN = {
    "gpt2": 2 * 12 * 12 * 64 * BF16,  # n_layer 12, n_head 12 (MHA), 768 / 12 = 64
    "llama-2-7b": 2 * 32 * 32 * 128 * BF16,  # MHA: 32 KV heads
    "llama-3-8b": 2 * 32 * 8 * 128 * BF16,  # GQA: 8 KV heads
    "llama-3-70b": 2 * 80 * 8 * 128 * BF16,  # 80 layers, 8 KV heads, 8192 / 64 = 128
    "mistral-7b-v0.1": 2 * 32 * 8 * 128 * BF16,
    "mixtral-8x7b": 2 * 32 * 8 * 128 * BF16,  # the experts are MLPs; attention is Mistral's
    "qwen2.5-7b": 2 * 28 * 4 * 128 * BF16,  # 3584 / 28 = 128, 4 KV heads
    "gemma-2-9b": 2 * 42 * 8 * 256 * BF16,  # head_dim 256 (explicit in the config)
    "phi-3-mini-4k": 2 * 32 * 32 * 96 * BF16,  # 3072 / 32 = 96, MHA
    "deepseek-v3": (512 + 64) * 61 * BF16,  # MLA: kv_lora_rank + qk_rope_head_dim per layer, 61 layers
}


def test_every_preset_has_a_worked_figure():
    assert sorted(BY_HAND_PER_TOKEN) == preset_names()


@pytest.mark.parametrize("name", sorted(BY_HAND_PER_TOKEN))
def test_bytes_per_token_by_hand(kv, name):
    assert kv.kv_bytes_per_token(preset(name)) == BY_HAND_PER_TOKEN[name]


def test_headline_figures():
    # the figures the lab quotes, as literal numbers
    assert BY_HAND_PER_TOKEN["llama-3-8b"] == 131_072
    assert BY_HAND_PER_TOKEN["llama-2-7b"] == 524_288
    assert BY_HAND_PER_TOKEN["deepseek-v3"] == 70_272
    assert BY_HAND_PER_TOKEN["gemma-2-9b"] == 344_064


def test_deepseek_v3_naive_formula_overstates_by_about_70x(kv):
    # Per-head K (qk_nope 128 + qk_rope 64 = 192) and V (v_head_dim 128) for 128 heads, 61 layers, bf16:
    per_head = 61 * 128 * (192 + 128) * BF16
    assert per_head == 4_997_120
    ratio = per_head / kv.kv_bytes_per_token(preset("deepseek-v3"))
    assert 71 < ratio < 71.2  # 4,997,120 / 70,272 = 71.11
    # The plain 2 × layers × num_key_value_heads × head_dim formula with head_dim 192 is worse still: 85×.
    assert 2 * 61 * 128 * 192 * BF16 / 70_272 == pytest.approx(85.33, abs=0.01)


def test_full_context_caches_by_hand(kv):
    assert kv.kv_cache_bytes(preset("llama-3-8b"), 8192) == 8192 * 2 * 32 * 8 * 128 * 2 == GIB
    assert kv.kv_cache_bytes(preset("llama-2-7b"), 4096) == 4096 * 2 * 32 * 32 * 128 * 2 == 2 * GIB
    assert kv.kv_cache_bytes(preset("llama-3-70b"), 8192, batch=8) == 8 * 8192 * 2 * 80 * 8 * 128 * 2 == 20 * GIB
    # Qwen2.5-7B's config has sliding_window 131072 but use_sliding_window false: no window at all.
    assert kv.kv_cache_bytes(preset("qwen2.5-7b"), 32768, batch=4) == 4 * 32768 * 2 * 28 * 4 * 128 * 2 == 7 * GIB
    assert kv.kv_cache_bytes(preset("deepseek-v3"), 32768) == 32768 * (512 + 64) * 61 * 2 == 2_302_672_896


def test_mistral_window_caps_a_32k_context(kv):
    # Every one of Mistral-7B-v0.1's 32 layers slides with W = 4096: past 4096 tokens nothing grows.
    capped = 4096 * 2 * 32 * 8 * 128 * 2
    assert capped == 512 * 2**20
    assert kv.kv_cache_bytes(preset("mistral-7b-v0.1"), 32768) == capped
    assert kv.kv_cache_bytes(preset("mistral-7b-v0.1"), 4096) == capped
    assert kv.kv_cache_bytes(preset("mistral-7b-v0.1"), 4095) == 4095 * 2 * 32 * 8 * 128 * 2


def test_phi3_window_of_2047(kv):
    # Phi-3-mini-4k's config.json sets sliding_window 2047 (on every layer): at 4096 tokens each layer keeps 2047.
    assert kv.kv_cache_bytes(preset("phi-3-mini-4k"), 4096) == 2047 * 2 * 32 * 32 * 96 * 2 == 804_913_152


def test_gemma2_alternating_layers(kv):
    # Gemma-2-9B: 42 layers, layers 0, 2, 4, ... slide with W = 4096 (21 of them), the other 21 attend fully.
    per_layer_token = 2 * 8 * 256 * 2  # 8192 bytes
    assert kv.kv_cache_bytes(preset("gemma-2-9b"), 8192) == (21 * 8192 + 21 * 4096) * per_layer_token == 2_113_929_216
    assert kv.kv_cache_bytes(preset("gemma-2-9b"), 2048) == 42 * 2048 * per_layer_token
    assert kv.kv_cache_bytes(preset("gemma-2-9b"), 8192) < 8192 * BY_HAND_PER_TOKEN["gemma-2-9b"]


def test_paged_figures_by_hand(kv):
    # 1000 tokens in blocks of 16: ceil(1000 / 16) = 63 blocks = 1008 slots.
    assert kv.blocks_needed(1000) == 63
    assert kv.paged_kv_bytes(preset("llama-3-8b"), 1000) == 1008 * 131_072 == 132_120_576
    # Mistral at 5000 tokens keeps 4096 per layer = 256 whole blocks.
    assert kv.paged_kv_bytes(preset("mistral-7b-v0.1"), 5000) == 256 * 16 * 131_072
    # DeepSeek-V3, 3 sequences of 100 tokens in blocks of 64: 2 blocks = 128 slots each.
    assert kv.paged_kv_bytes(preset("deepseek-v3"), 100, batch=3, block_size=64) == 3 * 128 * 70_272


def test_concurrency_on_an_80_gib_gpu_by_hand(kv):
    gpu = 80 * GIB  # 85,899,345,920 bytes
    usable = 77_309_411_328  # 0.9 × 85,899,345,920
    weights_bf16 = 8_030_261_248 * 2  # Llama-3-8B's published parameter count × 2 bytes
    weights_int4 = 8_030_261_248 // 2
    per_sequence = 8192 * 131_072  # 8192 tokens fill 512 blocks exactly: 1 GiB
    assert (usable - weights_bf16) // per_sequence == 57
    assert (usable - weights_int4) // per_sequence == 68
    assert (usable - weights_bf16) // (per_sequence // 2) == 114  # fp8 KV cache
    model = preset("llama-3-8b")
    assert kv.max_concurrent_sequences(model, gpu, weights_bf16, 8192) == 57
    assert kv.max_concurrent_sequences(model, gpu, weights_int4, 8192) == 68
    assert kv.max_concurrent_sequences(model, gpu, weights_bf16, 8192, bytes_per_element=1) == 114


def test_cache_matches_pytorch_attention(kv):
    """Prefill + one-token appends through the reference cache reproduce torch's SDPA over the whole sequence."""
    generator = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, tokens, head_dim, prompt = 2, 8, 2, 24, 32, 10
    q = torch.randn(batch, heads, tokens, head_dim, generator=generator, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, tokens, head_dim, generator=generator, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, tokens, head_dim, generator=generator, dtype=torch.float64)
    # torch's SDPA with the KV heads expanded the way transformers' repeat_kv does it
    group = heads // kv_heads
    expected = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), is_causal=True)
    cache = kv.KVCache(num_layers=1, batch=batch, num_kv_heads=kv_heads, head_dim=head_dim, max_tokens=tokens, dtype=torch.float64)
    assert cache.nbytes == 2 * batch * kv_heads * tokens * head_dim * 8
    k_seen, v_seen = cache.prefill(0, k[:, :, :prompt], v[:, :, :prompt])
    outputs = [kv.causal_attention(q[:, :, :prompt], k_seen, v_seen)]
    for t in range(prompt, tokens):
        k_seen, v_seen = cache.append(0, k[:, :, t : t + 1], v[:, :, t : t + 1])
        outputs.append(kv.causal_attention(q[:, :, t : t + 1], k_seen, v_seen))
    torch.testing.assert_close(torch.cat(outputs, dim=2), expected, rtol=0, atol=1e-12)  # float64: only rounding differs


def test_usable_memory_is_rounded_down_by_hand(kv):
    model = preset("llama-3-8b")
    per_sequence = 16 * 131_072  # 16 tokens fill one block of 16
    gpu = 80 * GIB + 1
    assert gpu * 0.75 == 64_424_509_440.75  # exact in binary floating point: 0.75 = 3/4
    usable = 64_424_509_440
    assert kv.max_concurrent_sequences(model, gpu, usable - 5 * per_sequence, 16, gpu_memory_utilization=0.75) == 5
    assert kv.max_concurrent_sequences(model, gpu, usable - 5 * per_sequence + 1, 16, gpu_memory_utilization=0.75) == 4
    assert kv.max_concurrent_sequences(model, gpu, usable, 16, gpu_memory_utilization=0.75) == 0  # weights that fill usable still fit
    with pytest.raises(ValueError, match=f"{usable + 1}.*{usable}"):
        kv.max_concurrent_sequences(model, gpu, usable + 1, 16, gpu_memory_utilization=0.75)
    # The docstring's example: 1,000,001 bytes at 0.5 leave 500,000 usable bytes, not 500,001.
    assert kv.max_concurrent_sequences(model, 1_000_001, 500_000, 16, gpu_memory_utilization=0.5) == 0
    with pytest.raises(ValueError, match="500000"):
        kv.max_concurrent_sequences(model, 1_000_001, 500_001, 16, gpu_memory_utilization=0.5)


def test_counts_are_ints_and_bools_are_not(kv):
    model = preset("llama-3-8b")
    results = [kv.kv_bytes_per_token(model), kv.kv_cache_bytes(model, 100), kv.blocks_needed(100), kv.paged_kv_bytes(model, 100),
               kv.max_concurrent_sequences(model, 80 * GIB, 16 * 10**9, 8192, gpu_memory_utilization=1),
               kv.KVCache(1, 1, 1, 1, 1).nbytes]
    assert [type(result) for result in results] == [int] * 6
    calls = [lambda: kv.kv_bytes_per_token(model, True), lambda: kv.kv_cache_bytes(model, True), lambda: kv.kv_cache_bytes(model, 8, True),
             lambda: kv.blocks_needed(True), lambda: kv.blocks_needed(8, True), lambda: kv.paged_kv_bytes(model, 8, 1, True),
             lambda: kv.max_concurrent_sequences(model, 80 * GIB, 0, 8, gpu_memory_utilization=True), lambda: kv.KVCache(True, 1, 1, 1, 1)]
    for call in calls:
        with pytest.raises(ValueError, match="True"):
            call()


def test_a_full_length_prompt_fills_the_cache(kv):
    cache = kv.KVCache(num_layers=1, batch=1, num_kv_heads=2, head_dim=4, max_tokens=3)
    k = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    k_seen, v_seen = cache.prefill(0, k, -k)
    assert torch.equal(k_seen, k) and torch.equal(v_seen, -k) and cache.lengths == [3]
    with pytest.raises(ValueError, match="max_tokens=3"):
        cache.append(0, k[:, :, :1], k[:, :, :1])
    with pytest.raises(ValueError, match="4 tokens"):
        kv.KVCache(num_layers=1, batch=1, num_kv_heads=2, head_dim=4, max_tokens=3).prefill(0, torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
