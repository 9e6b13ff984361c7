"""Public checks for Lab 02 — the KV cache.

Exact byte counts on real model presets, properties on random models, the lab's misunderstandings
turned into checks, and the append contract of a real cache of tensors. Read a failing check's
message first: it names the quantity, the expected and actual values, and the usual cause.
"""

from __future__ import annotations

import pytest
import torch

from infralens.checking import expect_value_error, random_dense_model
from infralens.models import ModelConfig, preset
from lab02_inputs import attention_inputs, random_kv_model

check = pytest.mark.check
GIB = 2**30


def _with(model: ModelConfig, **changes) -> ModelConfig:
    return ModelConfig(**{**model.__dict__, **changes})


# --- kv_bytes_per_token ------------------------------------------------------------------------

PER_TOKEN = [
    ("gpt2", 36_864, "2 (K and V) × 12 layers × 12 KV heads × 64 × 2 bytes: MHA, every head has its own K and V"),
    ("llama-2-7b", 524_288, "2 × 32 layers × 32 KV heads × 128 × 2 bytes: MHA"),
    ("llama-3-8b", 131_072, "2 × 32 layers × 8 KV heads × 128 × 2 bytes: GQA, 4 query heads share each KV head"),
    ("llama-3-70b", 327_680, "2 × 80 layers × 8 KV heads × 128 × 2 bytes: GQA, 8 query heads per KV head"),
    ("mistral-7b-v0.1", 131_072, "2 × 32 × 8 × 128 × 2 bytes: the sliding window caps the total, not the per-token rate"),
    ("mixtral-8x7b", 131_072, "2 × 32 × 8 × 128 × 2 bytes: experts are MLPs, attention (and its cache) is dense"),
    ("qwen2.5-7b", 57_344, "2 × 28 layers × 4 KV heads × 128 × 2 bytes: GQA, 7 query heads per KV head"),
    ("gemma-2-9b", 344_064, "2 × 42 layers × 8 KV heads × 256 × 2 bytes, before any window fills"),
    ("phi-3-mini-4k", 393_216, "2 × 32 layers × 32 KV heads × 96 × 2 bytes: MHA"),
    ("deepseek-v3", 70_272, "(kv_lora_rank 512 + qk_rope_head_dim 64) × 61 layers × 2 bytes: MLA caches a latent, not per-head K and V"),
]


@check("kv_bytes_per_token", points=3)
@pytest.mark.parametrize(("name", "expected", "story"), PER_TOKEN)
def test_kv_bytes_per_token_of_real_models(lab, name, expected, story):
    kv = lab.kv_cache
    actual = kv.kv_bytes_per_token(preset(name))
    assert actual == expected, f"kv_bytes_per_token({name}) in bf16 is {actual:,} bytes, expected {expected:,} = {story}"


@check("kv_bytes_per_token", points=1)
def test_kv_bytes_per_token_scales_with_the_element_size(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng)
        bf16 = kv.kv_bytes_per_token(model)
        for size, dtype in ((1, "fp8"), (4, "fp32")):
            actual = kv.kv_bytes_per_token(model, bytes_per_element=size)
            assert actual * 2 == bf16 * size, (
                f"kv_bytes_per_token({model.name}) is {bf16:,} bytes in bf16 (2 bytes per element) but {actual:,} in {dtype} "
                f"({size} per element), expected {bf16 * size // 2:,}: every cached number takes bytes_per_element bytes"
            )


@check("kv_bytes_per_token", points=2)
def test_gqa_divides_the_cache_by_queries_per_kv_head(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        mha = random_kv_model(rng, "mha")
        group = rng.choice([kv_heads for kv_heads in (1, 2, 4, 8) if mha.num_attention_heads % kv_heads == 0])
        gqa = _with(mha, num_key_value_heads=group)
        full, shared = kv.kv_bytes_per_token(mha), kv.kv_bytes_per_token(gqa)
        ratio = mha.num_attention_heads // group
        assert full == ratio * shared, (
            f"{mha.num_attention_heads} query heads: kv_bytes_per_token is {full:,} with {mha.num_attention_heads} KV heads (MHA) "
            f"and {shared:,} with {group} KV heads, expected exactly {ratio}× less: only KV heads are cached, and "
            f"num_attention_heads / num_key_value_heads = {ratio} query heads read each of them"
        )


@check("kv_bytes_per_token", points=2)
def test_query_heads_do_not_count(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["gqa", "mqa"]))
        more_queries = _with(model, num_attention_heads=model.num_attention_heads * 2)
        a, b = kv.kv_bytes_per_token(model), kv.kv_bytes_per_token(more_queries)
        expected = 2 * model.num_hidden_layers * model.num_key_value_heads * model.head_dim * 2
        assert a == b == expected, (
            f"{model.name}: {model.num_hidden_layers} layers, {model.num_key_value_heads} KV heads × head_dim {model.head_dim}; "
            f"kv_bytes_per_token is {a:,} with {model.num_attention_heads} query heads and {b:,} with twice as many, "
            f"expected {expected:,} both times = 2 (K and V) × layers × num_key_value_heads × head_dim × 2 bytes"
        )


@check("kv_bytes_per_token", points=3)
def test_num_key_value_heads_is_the_wrong_number_for_mla(lab):
    kv = lab.kv_cache
    model = preset("deepseek-v3")
    actual = kv.kv_bytes_per_token(model)
    per_head = model.num_hidden_layers * model.num_key_value_heads * (model.qk_nope_head_dim + model.qk_rope_head_dim + model.v_head_dim) * 2
    assert actual == 70_272, (
        f"kv_bytes_per_token(deepseek-v3) is {actual:,} bytes, expected (512 + 64) × 61 × 2 = 70,272. Its config.json says "
        f"num_key_value_heads = 128, but MLA caches one latent of kv_lora_rank 512 and one shared RoPE key of 64 per token "
        f"per layer; per-head K (192) and V (128) would be {per_head:,} bytes, {per_head / 70_272:.0f}× too much"
    )


@check("kv_bytes_per_token", points=2)
def test_mla_cache_follows_the_latent_only(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, "mla")
        base = kv.kv_bytes_per_token(model)
        expected = (model.kv_lora_rank + model.qk_rope_head_dim) * model.num_hidden_layers * 2
        assert base == expected, (
            f"MLA model with {model.num_hidden_layers} layers, kv_lora_rank {model.kv_lora_rank}, qk_rope_head_dim "
            f"{model.qk_rope_head_dim}: kv_bytes_per_token is {base:,}, expected (kv_lora_rank + qk_rope_head_dim) × layers × 2 "
            f"= {expected:,}"
        )
        heads = rng.choice([1, 2, 4]) * model.num_attention_heads
        other = _with(model, num_attention_heads=heads, num_key_value_heads=heads, head_dim=model.head_dim + 32, v_head_dim=model.v_head_dim * 2)
        changed = kv.kv_bytes_per_token(other)
        assert changed == base, (
            f"an MLA model's kv_bytes_per_token changed from {base:,} to {changed:,} when only num_key_value_heads "
            f"({model.num_key_value_heads} -> {heads}), head_dim and v_head_dim changed: MLA rebuilds per-head K and V "
            "from the cached latent, so none of those are stored"
        )


@check("kv_bytes_per_token", points=1)
@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_kv_bytes_per_token_rejects_bad_element_sizes(lab, bad):
    kv = lab.kv_cache
    expect_value_error(kv.kv_bytes_per_token, preset("llama-3-8b"), bytes_per_element=bad, what=f"kv_bytes_per_token(llama-3-8b, bytes_per_element={bad!r})", must_mention=(bad,))


# --- kv_cache_bytes ----------------------------------------------------------------------------

CACHE = [
    ("llama-3-8b", 8192, 1, 1_073_741_824, "8192 tokens × 131,072 bytes = 1 GiB"),
    ("llama-2-7b", 4096, 1, 2_147_483_648, "4096 tokens × 524,288 bytes = 2 GiB: MHA at its full context"),
    ("llama-3-70b", 8192, 8, 21_474_836_480, "8 × 8192 tokens × 327,680 bytes = 20 GiB"),
    ("qwen2.5-7b", 32768, 4, 7_516_192_768, "4 × 32,768 tokens × 57,344 bytes: use_sliding_window is false, no window"),
    ("mistral-7b-v0.1", 1000, 1, 131_072_000, "1000 tokens × 131,072 bytes: below the window, every token is kept"),
    ("mistral-7b-v0.1", 32768, 1, 536_870_912, "every layer keeps only the last 4096 tokens: 4096 × 131,072, not 4 GiB"),
    ("phi-3-mini-4k", 4096, 1, 804_913_152, "sliding_window 2047 on every layer: 2047 × 393,216"),
    ("gemma-2-9b", 2048, 1, 704_643_072, "2048 × 344,064: below the 4096 window every layer keeps everything"),
    ("gemma-2-9b", 8192, 1, 2_113_929_216, "21 full layers keep 8192 tokens, 21 sliding layers 4096; 2 × 8 × 256 × 2 = 8192 bytes per token-layer"),
    ("deepseek-v3", 32768, 1, 2_302_672_896, "32,768 tokens × 70,272 bytes of latent + RoPE key"),
    ("gpt2", 0, 4, 0, "no tokens, no cache"),
]


@check("kv_cache_bytes", points=3)
@pytest.mark.parametrize(("name", "tokens", "batch", "expected", "story"), CACHE)
def test_kv_cache_bytes_of_real_models(lab, name, tokens, batch, expected, story):
    kv = lab.kv_cache
    actual = kv.kv_cache_bytes(preset(name), tokens, batch)
    assert actual == expected, (
        f"kv_cache_bytes({name}, tokens={tokens}, batch={batch}) in bf16 is {actual:,} bytes, expected {expected:,} "
        f"({expected / GIB:.3f} GiB; {story}); off by {actual - expected:+,}"
    )


@check("kv_cache_bytes", points=2)
def test_kv_cache_grows_linearly_in_batch_times_tokens(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["mha", "gqa", "mqa", "mla"]))
        batch, tokens = rng.randint(1, 8), rng.randint(1, 5000)
        one = kv.kv_cache_bytes(model, tokens, batch)
        per_token = kv.kv_bytes_per_token(model)
        assert one == batch * tokens * per_token, (
            f"{model.name}: kv_cache_bytes(tokens={tokens}, batch={batch}) is {one:,}, expected batch × tokens × "
            f"kv_bytes_per_token = {batch} × {tokens} × {per_token:,} = {batch * tokens * per_token:,}"
        )
        for b, t in ((2 * batch, tokens), (batch, 3 * tokens)):
            grown = kv.kv_cache_bytes(model, t, b)
            factor = (b * t) // (batch * tokens)
            assert grown == factor * one, (
                f"{model.name}: the cache is {one:,} bytes at batch {batch} × {tokens} tokens and {grown:,} at batch {b} × {t}, "
                f"expected exactly {factor}× ({factor * one:,}): every token of every sequence holds its own K and V"
            )


@check("kv_cache_bytes", points=2)
def test_a_sliding_layer_holds_at_most_its_window(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, "sliding")
        window, per_token = model.sliding_window, 2 * model.num_key_value_heads * model.head_dim * 2 * model.num_hidden_layers
        at_window = kv.kv_cache_bytes(model, window)
        past = kv.kv_cache_bytes(model, window + rng.randint(1, 3 * window))
        assert at_window == past == window * per_token, (
            f"{model.name} (sliding_window {window} on all {model.num_hidden_layers} layers): kv_cache_bytes is {at_window:,} at "
            f"{window} tokens and {past:,} past it, expected {window * per_token:,} both times: a layer with window W keeps only "
            "the last W tokens"
        )


@check("kv_cache_bytes", points=2)
def test_windows_apply_layer_by_layer(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, "alternating")
        sliding = sum(kind == "sliding_attention" for kind in model.layer_types)
        full = model.num_hidden_layers - sliding
        tokens, window = rng.randint(1, 3 * model.sliding_window), model.sliding_window
        layer_token = 2 * model.num_key_value_heads * model.head_dim * 2
        expected = (full * tokens + sliding * min(tokens, window)) * layer_token
        actual = kv.kv_cache_bytes(model, tokens)
        assert actual == expected, (
            f"{model.name}: {full} full-attention and {sliding} sliding layers (window {window}) at {tokens} tokens hold "
            f"{full} × {tokens} + {sliding} × {min(tokens, window)} token-layers of {layer_token} bytes = {expected:,}, got {actual:,}. "
            "Ask model.layer_window(layer) for each layer: only the sliding ones are capped"
        )


@check("kv_cache_bytes", points=1)
@pytest.mark.parametrize(
    ("tokens", "batch", "bytes_per_element", "bad"),
    [(-1, 1, 2, -1), (1.5, 1, 2, 1.5), (128, 0, 2, 0), (128, -3, 2, -3), (128, 1, 0, 0), (True, 1, 2, True)],
)
def test_kv_cache_bytes_rejects_bad_arguments(lab, tokens, batch, bytes_per_element, bad):
    kv = lab.kv_cache
    what = f"kv_cache_bytes(llama-3-8b, tokens={tokens!r}, batch={batch!r}, bytes_per_element={bytes_per_element!r})"
    expect_value_error(kv.kv_cache_bytes, preset("llama-3-8b"), tokens, batch, bytes_per_element, what=what, must_mention=(bad,))


# --- blocks_needed -----------------------------------------------------------------------------


@check("blocks_needed", points=2)
@pytest.mark.parametrize(
    ("tokens", "block_size", "expected"),
    [(0, 16, 0), (1, 16, 1), (16, 16, 1), (17, 16, 2), (1000, 16, 63), (4097, 16, 257), (5, 1, 5), (31, 32, 1), (10**18 + 1, 16, 62_500_000_000_000_001)],
)
def test_blocks_needed_rounds_up_to_whole_blocks(lab, tokens, block_size, expected):
    kv = lab.kv_cache
    actual = kv.blocks_needed(tokens, block_size)
    assert actual == expected, (
        f"blocks_needed({tokens}, block_size={block_size}) is {actual!r}, expected {expected}: a partly filled block is still a "
        "whole block (round up, in integers: float division loses exactness past 2**53)"
    )


@check("blocks_needed", points=1)
@pytest.mark.parametrize(("tokens", "block_size", "bad"), [(-1, 16, -1), (10, 0, 0), (10, -16, -16), (2.5, 16, 2.5), (10, 16.0, 16.0)])
def test_blocks_needed_rejects_bad_arguments(lab, tokens, block_size, bad):
    kv = lab.kv_cache
    expect_value_error(kv.blocks_needed, tokens, block_size, what=f"blocks_needed({tokens!r}, block_size={block_size!r})", must_mention=(bad,))


# --- paged_kv_bytes ----------------------------------------------------------------------------

PAGED = [
    ("llama-3-8b", 1000, 1, 16, 132_120_576, "63 blocks = 1008 token slots × 131,072 bytes"),
    ("llama-3-8b", 1024, 2, 16, 268_435_456, "1024 tokens fill 64 blocks exactly: 2 × 1024 × 131,072, nothing wasted"),
    ("llama-3-8b", 1, 1, 16, 2_097_152, "one token still takes a block of 16: 16 × 131,072"),
    ("mistral-7b-v0.1", 5000, 1, 16, 536_870_912, "the window keeps 4096 tokens: 256 blocks × 16 × 131,072"),
    ("gemma-2-9b", 1000, 1, 16, 346_816_512, "every layer rounds 1000 up to 1008 slots: 1008 × 344,064"),
    ("deepseek-v3", 100, 3, 64, 26_984_448, "3 sequences × 2 blocks of 64 = 3 × 128 slots × 70,272"),
]


@check("paged_kv_bytes", points=3)
@pytest.mark.parametrize(("name", "tokens", "batch", "block_size", "expected", "story"), PAGED)
def test_paged_kv_bytes_of_real_models(lab, name, tokens, batch, block_size, expected, story):
    kv = lab.kv_cache
    actual = kv.paged_kv_bytes(preset(name), tokens, batch, block_size)
    assert actual == expected, (
        f"paged_kv_bytes({name}, tokens={tokens}, batch={batch}, block_size={block_size}) is {actual:,} bytes, "
        f"expected {expected:,} ({story})"
    )


@check("paged_kv_bytes", points=2)
def test_paging_wastes_less_than_a_block_per_layer(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["mha", "gqa", "mqa", "mla"]))
        tokens, batch, block_size = rng.randint(1, 3000), rng.randint(1, 4), rng.choice([1, 8, 16, 32])
        exact = kv.kv_cache_bytes(model, tokens, batch)
        paged = kv.paged_kv_bytes(model, tokens, batch, block_size)
        slots = -(-tokens // block_size) * block_size
        expected = exact // tokens * slots
        assert paged == expected, (
            f"{model.name}: {tokens} tokens in blocks of {block_size} occupy {slots} slots per layer per sequence, so "
            f"paged_kv_bytes should be {expected:,} (the unpaged {exact:,} × {slots}/{tokens}), got {paged:,}"
        )


@check("paged_kv_bytes", points=1)
def test_default_block_is_vllms_16_tokens(lab):
    kv = lab.kv_cache
    model = preset("llama-3-8b")
    actual = kv.paged_kv_bytes(model, 17)
    assert actual == 32 * 131_072, f"paged_kv_bytes(llama-3-8b, 17) with the default block_size is {actual:,}, expected 2 blocks of 16 = 32 × 131,072 = 4,194,304"


@check("paged_kv_bytes", points=1)
@pytest.mark.parametrize(("tokens", "batch", "block_size", "bad"), [(-5, 1, 16, -5), (10, 0, 16, 0), (10, 1, 0, 0), (10, 1, 2.0, 2.0)])
def test_paged_kv_bytes_rejects_bad_arguments(lab, tokens, batch, block_size, bad):
    kv = lab.kv_cache
    what = f"paged_kv_bytes(llama-3-8b, tokens={tokens!r}, batch={batch!r}, block_size={block_size!r})"
    expect_value_error(kv.paged_kv_bytes, preset("llama-3-8b"), tokens, batch, block_size, what=what, must_mention=(bad,))


# --- max_concurrent_sequences ------------------------------------------------------------------

LLAMA3_8B_BF16 = 8_030_261_248 * 2
LLAMA3_8B_INT4 = 8_030_261_248 // 2
GPU_80_GIB = 80 * GIB


@check("max_concurrent_sequences", points=3)
def test_llama_3_8b_on_an_80_gib_gpu(lab):
    kv = lab.kv_cache
    model = preset("llama-3-8b")
    actual = kv.max_concurrent_sequences(model, GPU_80_GIB, LLAMA3_8B_BF16, 8192)
    assert actual == 57, (
        f"max_concurrent_sequences(llama-3-8b, 80 GiB, bf16 weights {LLAMA3_8B_BF16:,} bytes, 8192 tokens) is {actual}, expected 57: "
        f"usable = floor(0.9 × {GPU_80_GIB:,}) = 77,309,411,328; minus the weights leaves 61,248,888,832 bytes; "
        "each sequence needs 8192 × 131,072 = 1 GiB of KV cache"
    )


@check("max_concurrent_sequences", points=3)
def test_weight_quantization_does_not_shrink_the_kv_cache(lab):
    kv = lab.kv_cache
    model = preset("llama-3-8b")
    bf16 = kv.max_concurrent_sequences(model, GPU_80_GIB, LLAMA3_8B_BF16, 8192)
    int4 = kv.max_concurrent_sequences(model, GPU_80_GIB, LLAMA3_8B_INT4, 8192)
    assert (bf16, int4) == (57, 68), (
        f"llama-3-8b on 80 GiB at 8192 tokens per sequence: {bf16} sequences with bf16 weights and {int4} with int4 weights "
        f"({LLAMA3_8B_INT4:,} bytes), expected 57 and 68. Quantizing the weights frees 12,045,391,872 bytes once, but every "
        "sequence still needs its full 1 GiB bf16 KV cache: 4× smaller weights do not give 4× the sequences"
    )
    fp8_kv = kv.max_concurrent_sequences(model, GPU_80_GIB, LLAMA3_8B_BF16, 8192, bytes_per_element=1)
    assert fp8_kv == 114, f"with bf16 weights and an fp8 KV cache (bytes_per_element=1) the answer is {fp8_kv}, expected 114: half a GiB per sequence"


@check("max_concurrent_sequences", points=2)
def test_utilization_is_the_fraction_of_the_whole_gpu(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng)
        tokens, block_size = rng.randint(1, 4000), rng.choice([8, 16, 32])
        per_sequence = kv.paged_kv_bytes(model, tokens, 1, block_size)
        weights = rng.randint(0, 10**9)
        want = rng.randint(0, 50)
        gpu = weights + want * per_sequence + rng.randint(0, per_sequence - 1)
        everything = kv.max_concurrent_sequences(model, gpu, weights, tokens, block_size, gpu_memory_utilization=1.0)
        assert everything == want, (
            f"{model.name}: GPU of {gpu:,} bytes, weights {weights:,}, {per_sequence:,} paged bytes per sequence of {tokens} tokens: "
            f"with gpu_memory_utilization=1.0 the answer is (gpu - weights) // per_sequence = {want}, got {everything}"
        )
        usable = int(gpu * 0.9)
        if usable >= weights:
            default = kv.max_concurrent_sequences(model, gpu, weights, tokens, block_size)
            assert default == (usable - weights) // per_sequence, (
                f"{model.name}: with the default gpu_memory_utilization=0.9 the engine may use {usable:,} of {gpu:,} bytes in total "
                f"(weights included), expected {(usable - weights) // per_sequence} sequences, got {default}"
            )


@check("max_concurrent_sequences", points=1)
def test_weights_that_do_not_fit_are_an_error(lab):
    kv = lab.kv_cache
    weights = 70_553_706_496 * 2
    expect_value_error(
        kv.max_concurrent_sequences, preset("llama-3-70b"), GPU_80_GIB, weights, 4096,
        what="max_concurrent_sequences(llama-3-70b, 80 GiB, bf16 weights of 141 GB, 4096 tokens)", must_mention=(weights,),
    )


@check("max_concurrent_sequences", points=1)
@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [({"gpu_memory_utilization": 0.0}, 0.0), ({"gpu_memory_utilization": 1.5}, 1.5), ({"gpu_memory_utilization": True}, True), ({"tokens_per_sequence": 0}, 0), ({"block_size": 0}, 0), ({"weight_bytes": -1}, -1)],
)
def test_max_concurrent_sequences_rejects_bad_arguments(lab, kwargs, bad):
    kv = lab.kv_cache
    call = {"model": preset("llama-3-8b"), "gpu_memory_bytes": GPU_80_GIB, "weight_bytes": LLAMA3_8B_BF16, "tokens_per_sequence": 8192, **kwargs}
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    expect_value_error(kv.max_concurrent_sequences, what=f"max_concurrent_sequences(llama-3-8b, ..., {shown})", must_mention=(bad,), **call)


# --- KVCache -------------------------------------------------------------------------------------


@check("KVCache", points=2)
def test_cache_allocates_its_whole_capacity(lab, rng):
    kv = lab.kv_cache
    for _ in range(10):
        dims = dict(num_layers=rng.randint(1, 4), batch=rng.randint(1, 3), num_kv_heads=rng.choice([1, 2, 4]), head_dim=rng.choice([5, 16, 64]), max_tokens=rng.randint(1, 40))
        dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16])
        cache = kv.KVCache(**dims, dtype=dtype)
        shape = (dims["num_layers"], dims["batch"], dims["num_kv_heads"], dims["max_tokens"], dims["head_dim"])
        for name in ("k_cache", "v_cache"):
            buffer = getattr(cache, name)
            assert tuple(buffer.shape) == shape and buffer.dtype == dtype, (
                f"KVCache({dims}, dtype={dtype}).{name} has shape {tuple(buffer.shape)} and dtype {buffer.dtype}, expected "
                f"(num_layers, batch, num_kv_heads, max_tokens, head_dim) = {shape} in {dtype}"
            )
            assert not buffer.any(), f"KVCache.{name} must start as zeros"
        assert list(cache.lengths) == [0] * dims["num_layers"], f"KVCache.lengths starts as {cache.lengths}, expected {[0] * dims['num_layers']}"


@check("KVCache", points=3)
def test_cache_nbytes_equals_the_formula(lab, rng):
    kv = lab.kv_cache
    example = kv.KVCache(num_layers=2, batch=1, num_kv_heads=8, head_dim=128, max_tokens=8192, dtype=torch.bfloat16).nbytes
    assert example == 67_108_864, f"KVCache(2 layers, batch 1, 8 KV heads × 128, 8192 tokens, bf16).nbytes is {example:,}, expected 2 × 2 × 1 × 8 × 8192 × 128 × 2 = 67,108,864"
    for _ in range(10):
        model = random_dense_model(rng, num_hidden_layers=rng.randint(1, 4))
        batch, tokens = rng.randint(1, 3), rng.randint(1, 64)
        dtype, size = rng.choice([(torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)])
        cache = kv.KVCache(model.num_hidden_layers, batch, model.num_key_value_heads, model.head_dim, tokens, dtype)
        expected = 2 * model.num_hidden_layers * batch * model.num_key_value_heads * tokens * model.head_dim * size
        assert cache.nbytes == expected, (
            f"KVCache({model.num_hidden_layers} layers, batch {batch}, {model.num_key_value_heads} KV heads × {model.head_dim}, "
            f"{tokens} tokens, {dtype}).nbytes is {cache.nbytes:,}, expected 2 (K and V) × layers × batch × kv_heads × tokens × "
            f"head_dim × {size} bytes = {expected:,}, the same as kv_cache_bytes for that model"
        )
        cache.prefill(0, torch.ones(batch, model.num_key_value_heads, 1, model.head_dim), torch.ones(batch, model.num_key_value_heads, 1, model.head_dim))
        assert cache.nbytes == expected, f"nbytes changed from {expected:,} to {cache.nbytes:,} after a prefill: the capacity is reserved up front"


@check("KVCache", points=4)
def test_decoding_with_the_cache_equals_recomputing_attention(lab, rng, seed):
    kv = lab.kv_cache
    generator = torch.Generator().manual_seed(seed)
    for _ in range(8):
        kv_heads = rng.choice([1, 2, 4])
        heads, head_dim = kv_heads * rng.choice([1, 2, 4]), rng.choice([7, 16, 64])
        batch, layers, tokens = rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 40)
        prompt = rng.randint(1, tokens - 1)
        cache = kv.KVCache(layers, batch, kv_heads, head_dim, tokens + rng.randint(0, 8))
        inputs = [attention_inputs(generator, batch, heads, kv_heads, tokens, head_dim) for _ in range(layers)]
        outputs = []
        for layer, (q, k, v) in enumerate(inputs):
            k_seen, v_seen = cache.prefill(layer, k[:, :, :prompt], v[:, :, :prompt])
            assert tuple(k_seen.shape) == tuple(v_seen.shape) == (batch, kv_heads, prompt, head_dim), (
                f"prefill(layer {layer}) of a {prompt}-token prompt returned cached k {tuple(k_seen.shape)} and v {tuple(v_seen.shape)}, "
                f"expected (batch, kv_heads, tokens so far, head_dim) = {(batch, kv_heads, prompt, head_dim)} for both"
            )
            outputs.append([kv.causal_attention(q[:, :, :prompt], k_seen, v_seen)])
        for t in range(prompt, tokens):  # one decode step: every layer appends one token, then attends
            for layer, (q, k, v) in enumerate(inputs):
                k_seen, v_seen = cache.append(layer, k[:, :, t : t + 1], v[:, :, t : t + 1])
                assert tuple(k_seen.shape) == tuple(v_seen.shape) == (batch, kv_heads, t + 1, head_dim), (
                    f"append at decode step {t - prompt + 1} returned cached k {tuple(k_seen.shape)} and v {tuple(v_seen.shape)}, expected "
                    f"(batch, kv_heads, tokens so far, head_dim) = {(batch, kv_heads, t + 1, head_dim)}"
                )
                outputs[layer].append(kv.causal_attention(q[:, :, t : t + 1], k_seen, v_seen))
        assert list(cache.lengths) == [tokens] * layers, f"after the prompt of {prompt} and {tokens - prompt} decode steps, lengths is {cache.lengths}, expected {[tokens] * layers}"
        for layer, (q, k, v) in enumerate(inputs):
            decoded, recomputed = torch.cat(outputs[layer], dim=2), kv.causal_attention(q, k, v)  # (B, nh, T, hs)
            # Both paths see bit-identical keys and values; only the reduction order of a (T, T)
            # versus a (1, T) product differs. Outputs are convex combinations of N(0, 1) values,
            # so fp32 rounding stays within a few dozen ulps of 1.0 (measured ≤ 2e-6); a wrong or
            # stale cached token moves outputs by ~0.1.
            error = (decoded - recomputed).abs().max().item()
            assert error <= 1e-5, (
                f"layer {layer}: attention over the cache differs from recomputing attention over all {tokens} tokens by up to "
                f"{error:.3g} (tolerance 1e-5, fp32) with a prompt of {prompt}, batch {batch}, {heads} query / {kv_heads} KV heads × "
                f"{head_dim}. Usually a token written to the wrong slot, a layer's buffers mixed up, or a returned view that stops short"
            )


@check("KVCache", points=2)
def test_cache_stores_exactly_what_was_written(lab, seed):
    kv = lab.kv_cache
    generator = torch.Generator().manual_seed(seed)
    cache = kv.KVCache(num_layers=2, batch=2, num_kv_heads=2, head_dim=8, max_tokens=6, dtype=torch.bfloat16)
    _, k, v = attention_inputs(generator, 2, 2, 2, 5, 8)
    k, v = k.bfloat16(), v.bfloat16()
    cache.prefill(1, k[:, :, :3], v[:, :, :3])
    cache.append(1, k[:, :, 3:4], v[:, :, 3:4])
    k_seen, v_seen = cache.append(1, k[:, :, 4:5], v[:, :, 4:5])
    assert torch.equal(k_seen, k) and torch.equal(v_seen, v), (
        "after prefill(layer 1, 3 tokens) and two appends, the returned (k, v) are not the 5 tokens written, in order "
        f"(shapes {tuple(k_seen.shape)} vs {tuple(k.shape)}): a cache copies values, it must not change them"
    )
    assert torch.equal(cache.k_cache[1, :, :, :5], k) and not cache.k_cache[0].any() and not cache.k_cache[1, :, :, 5:].any(), (
        "k_cache[1, :, :, :5] must hold the 5 keys written to layer 1, and layer 0 and the unused slot must stay zero"
    )
    assert list(cache.lengths) == [0, 5], f"lengths is {cache.lengths}, expected [0, 5]: each layer counts its own tokens"


@check("KVCache", points=1)
@pytest.mark.parametrize(
    ("field", "bad"), [("num_layers", 0), ("batch", -1), ("num_kv_heads", 2.0), ("head_dim", True), ("max_tokens", 0), ("dtype", torch.int8)]
)
def test_cache_rejects_bad_fields(lab, field, bad):
    kv = lab.kv_cache
    fields = {"num_layers": 2, "batch": 1, "num_kv_heads": 2, "head_dim": 8, "max_tokens": 16, "dtype": torch.float32, field: bad}
    expect_value_error(kv.KVCache, what=f"KVCache({field}={bad!r})", must_mention=(bad,), **fields)


def _fresh(kv):
    """A small fp32 cache: 2 layers, batch 2, 4 KV heads × 8, room for 4 tokens; layer 0 holds a 3-token prompt."""
    cache = kv.KVCache(num_layers=2, batch=2, num_kv_heads=4, head_dim=8, max_tokens=4)
    cache.prefill(0, torch.zeros(2, 4, 3, 8), torch.zeros(2, 4, 3, 8))
    return cache


@check("KVCache", points=2)
@pytest.mark.parametrize(
    ("k_shape", "v_shape", "mention", "why"),
    [
        ((2, 4, 2, 8), (2, 4, 2, 8), "(2, 4, 2, 8)", "two tokens in one decode step: append takes exactly one"),
        ((2, 2, 1, 8), (2, 2, 1, 8), "(2, 2, 1, 8)", "2 heads instead of the cache's 4 KV heads (query heads are not cached)"),
        ((2, 4, 1, 16), (2, 4, 1, 16), "(2, 4, 1, 16)", "head_dim 16 instead of 8"),
        ((1, 4, 1, 8), (1, 4, 1, 8), "(1, 4, 1, 8)", "batch 1 instead of 2"),
        ((2, 4, 1, 8), (2, 4, 8), "(2, 4, 8)", "v without its token axis"),
        ((2, 1, 4, 8), (2, 1, 4, 8), "(2, 1, 4, 8)", "tokens and heads swapped: the layout is (B, kv_heads, T, head_dim)"),
    ],
)
def test_append_rejects_bad_shapes(lab, k_shape, v_shape, mention, why):
    kv = lab.kv_cache
    cache = _fresh(kv)
    expect_value_error(cache.append, 0, torch.zeros(k_shape), torch.zeros(v_shape), what=f"append(layer 0, k {k_shape}, v {v_shape}) ({why})", must_mention=(mention,))
    assert list(cache.lengths) == [3, 0], f"a rejected append changed lengths to {cache.lengths}; it must leave the cache as it was ([3, 0])"


@check("KVCache", points=2)
def test_append_past_capacity_and_out_of_order_are_errors(lab):
    kv = lab.kv_cache
    cache = _fresh(kv)
    token = torch.zeros(2, 4, 1, 8)
    cache.append(0, token, token)
    expect_value_error(cache.append, 0, token, token, what="append(layer 0) when it already holds max_tokens=4 tokens", must_mention=(4,))
    expect_value_error(cache.append, 1, token, token, what="append(layer 1) before layer 1 was prefilled", must_mention=(1,))
    expect_value_error(cache.prefill, 0, token, token, what="prefill(layer 0) a second time", must_mention=(0,))
    expect_value_error(cache.append, 2, token, token, what="append(layer 2) on a 2-layer cache", must_mention=(2,))
    too_long = torch.zeros(2, 4, 5, 8)
    expect_value_error(cache.prefill, 1, too_long, too_long, what="prefill(layer 1) with a 5-token prompt into max_tokens=4", must_mention=(5, 4))
    assert list(cache.lengths) == [4, 0], f"rejected calls changed lengths to {cache.lengths}; expected [4, 0]"
