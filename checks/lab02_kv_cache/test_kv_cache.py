"""Public checks for Lab 02 — the KV cache.

Exact byte counts on real model presets, properties on random models, the lab's misunderstandings
turned into checks, and the append contract of a real cache of tensors. Read a failing check's
message first: it names the quantity, the expected and actual values, and, when the wrong value
matches a known mistake, that mistake.

Every check calls only the exercise it names: inputs that an earlier exercise would compute (a
sequence's paged bytes, bytes per token) are worked out here from the model's config.
"""

from __future__ import annotations

import pytest
import torch

from infralens.checking import assert_exact, bounded, expect_correct, expect_value_error, random_dense_model, summarize
from infralens.models import ModelConfig, preset
from infralens.tensor_checks import assert_tensor_close, assert_tensor_equal
from lab02_inputs import attention_inputs, random_kv_model

check = pytest.mark.check
GIB = 2**30


def _with(model: ModelConfig, **changes) -> ModelConfig:
    return ModelConfig(**{**model.__dict__, **changes})


def _layer_token_bytes(model: ModelConfig, size: int = 2) -> int:
    """Bytes one layer holds per token of a plain (MHA/GQA/MQA) model, from its config: the given figure checks build on."""
    return 2 * model.num_key_value_heads * model.head_dim * size


def _count(actual, expected: int, what: str, story: str, mistakes: tuple[tuple[int, str], ...] = ()) -> None:
    """``actual`` must be the ``int`` ``expected``. A wrong value is explained by the first known
    mistake that gives exactly that value, and only then; otherwise the message gives the working."""
    if type(actual) is not int:
        pytest.fail(
            f"{what} returned {type(actual).__name__} {summarize(actual)}; counts of bytes, blocks and sequences are int "
            f"(expected {expected:,}): stay in integers, // rather than /",
            pytrace=False,
        )
    if actual != expected:
        cause = next((because for value, because in mistakes if value == actual and value != expected), "")
        pytest.fail(f"{what} is {actual:,}, expected {expected:,} = {story}" + (f". That is the value you get when {cause}" if cause else ""), pytrace=False)


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


def _per_token_mistakes(model: ModelConfig, expected: int) -> tuple[tuple[int, str], ...]:
    layers, per_head = model.num_hidden_layers, 2 * model.head_dim * 2
    mistakes = [
        (expected // 2, "K and V are counted once: each layer caches a key and a value"),
        (expected // layers, "one layer is counted: the cache grows in every layer"),
        (layers * model.num_attention_heads * per_head, "the query heads are counted: only the num_key_value_heads KV heads are cached"),
    ]
    if model.kv_lora_rank is not None:
        mistakes += [
            (layers * model.num_key_value_heads * per_head, "MLA is sized like GQA from num_key_value_heads × head_dim: MLA caches the kv_lora_rank latent and one RoPE key"),
            (layers * model.kv_lora_rank * 2, "the shared RoPE key (qk_rope_head_dim) is left out of the MLA latent"),
        ]
    return tuple(mistakes)


@check("kv_bytes_per_token", points=3)
@pytest.mark.parametrize(("name", "expected", "story"), PER_TOKEN)
def test_kv_bytes_per_token_of_real_models(lab, name, expected, story):
    kv = lab.kv_cache
    model = preset(name)
    _count(kv.kv_bytes_per_token(model), expected, f"kv_bytes_per_token({name}) in bf16", story, _per_token_mistakes(model, expected))


@check("kv_bytes_per_token", points=1)
def test_kv_bytes_per_token_scales_with_the_element_size(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng)
        per_element = (model.kv_lora_rank + model.qk_rope_head_dim if model.kv_lora_rank is not None else 2 * model.num_key_value_heads * model.head_dim) * model.num_hidden_layers
        for size, dtype in ((1, "fp8"), (2, "bf16"), (4, "fp32")):
            _count(
                kv.kv_bytes_per_token(model, bytes_per_element=size), per_element * size, f"kv_bytes_per_token({model.name}, bytes_per_element={size})",
                f"{per_element:,} cached numbers per token × {size} bytes each in {dtype}",
            )


@check("kv_bytes_per_token", points=2)
def test_gqa_divides_the_cache_by_queries_per_kv_head(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        mha = random_kv_model(rng, "mha")
        group = rng.choice([kv_heads for kv_heads in (1, 2, 4, 8) if mha.num_attention_heads % kv_heads == 0])
        gqa = _with(mha, num_key_value_heads=group)
        ratio = mha.num_attention_heads // group
        full = mha.num_hidden_layers * _layer_token_bytes(mha)
        _count(kv.kv_bytes_per_token(mha), full, f"kv_bytes_per_token of MHA {mha.name} ({mha.num_attention_heads} KV heads)", "2 × layers × KV heads × head_dim × 2 bytes")
        _count(
            kv.kv_bytes_per_token(gqa), full // ratio, f"kv_bytes_per_token of the same model with {group} KV heads",
            f"the MHA figure {full:,} / {ratio}: only KV heads are cached, and num_attention_heads / num_key_value_heads = {ratio} query heads read each",
        )


@check("kv_bytes_per_token", points=2)
def test_query_heads_do_not_count(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["gqa", "mqa"]))
        expected = model.num_hidden_layers * _layer_token_bytes(model)
        for heads in (model.num_attention_heads, 2 * model.num_attention_heads):
            _count(
                kv.kv_bytes_per_token(_with(model, num_attention_heads=heads)), expected,
                f"kv_bytes_per_token({model.name} with {heads} query heads, {model.num_key_value_heads} KV heads × head_dim {model.head_dim}, {model.num_hidden_layers} layers)",
                "2 (K and V) × layers × num_key_value_heads × head_dim × 2 bytes, whatever the number of query heads",
                ((model.num_hidden_layers * heads * 2 * model.head_dim * 2, "the query heads are counted instead of the KV heads"),),
            )


@check("kv_bytes_per_token", points=3)
def test_num_key_value_heads_is_the_wrong_number_for_mla(lab):
    kv = lab.kv_cache
    model = preset("deepseek-v3")
    per_head = model.num_hidden_layers * model.num_key_value_heads * (model.qk_nope_head_dim + model.qk_rope_head_dim + model.v_head_dim) * 2
    _count(
        kv.kv_bytes_per_token(model), 70_272, "kv_bytes_per_token(deepseek-v3)",
        f"(512 + 64) × 61 × 2. Its config.json says num_key_value_heads = 128, but MLA caches one latent of kv_lora_rank 512 and one "
        f"shared RoPE key of 64 per token per layer; per-head K (192) and V (128) would be {per_head:,} bytes, {per_head / 70_272:.0f}× too much",
        _per_token_mistakes(model, 70_272),
    )


@check("kv_bytes_per_token", points=2)
def test_mla_cache_follows_the_latent_only(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, "mla")
        expected = (model.kv_lora_rank + model.qk_rope_head_dim) * model.num_hidden_layers * 2
        heads = rng.choice([1, 2, 4]) * model.num_attention_heads
        other = _with(model, num_attention_heads=heads, num_key_value_heads=heads, head_dim=model.head_dim + 32, v_head_dim=model.v_head_dim * 2)
        for variant, what in ((model, model.name), (other, f"{model.name} with {heads} KV heads, head_dim {other.head_dim}, v_head_dim {other.v_head_dim}")):
            _count(
                kv.kv_bytes_per_token(variant), expected,
                f"kv_bytes_per_token(MLA {what}: {model.num_hidden_layers} layers, kv_lora_rank {model.kv_lora_rank}, qk_rope_head_dim {model.qk_rope_head_dim})",
                "(kv_lora_rank + qk_rope_head_dim) × layers × 2 bytes; MLA rebuilds per-head K and V from the cached latent, so "
                "num_key_value_heads, head_dim and v_head_dim play no part",
                _per_token_mistakes(variant, expected),
            )


@check("kv_bytes_per_token", points=1)
@pytest.mark.parametrize("bad", [0, -2, 1.5, 2.0, True, "2", None])
def test_kv_bytes_per_token_rejects_bad_element_sizes(lab, bad):
    kv = lab.kv_cache
    expect_correct(kv.kv_bytes_per_token, preset("llama-3-8b"), 1, expected=65_536, what="kv_bytes_per_token(llama-3-8b, bytes_per_element=1)")
    expect_value_error(kv.kv_bytes_per_token, preset("llama-3-8b"), bytes_per_element=bad, what=f"kv_bytes_per_token(llama-3-8b, bytes_per_element={bad!r})", must_mention=(bad,))


# --- kv_cache_bytes ----------------------------------------------------------------------------

CACHE = [
    ("llama-3-8b", 8192, 1, 1_073_741_824, "8192 tokens × 131,072 bytes = 1 GiB"),
    ("llama-2-7b", 4096, 1, 2_147_483_648, "4096 tokens × 524,288 bytes = 2 GiB: MHA at its full context"),
    ("llama-3-70b", 8192, 8, 21_474_836_480, "8 × 8192 tokens × 327,680 bytes = 20 GiB"),
    ("qwen2.5-7b", 32768, 4, 7_516_192_768, "4 × 32,768 tokens × 57,344 bytes: use_sliding_window is false, no window"),
    ("mistral-7b-v0.1", 1000, 1, 131_072_000, "1000 tokens × 131,072 bytes: below the window, every token is kept"),
    ("mistral-7b-v0.1", 4096, 1, 536_870_912, "4096 tokens × 131,072 bytes: exactly the window, every token is kept"),
    ("mistral-7b-v0.1", 32768, 1, 536_870_912, "every layer keeps only the last 4096 tokens: 4096 × 131,072, not 4 GiB"),
    ("phi-3-mini-4k", 4096, 1, 804_913_152, "sliding_window 2047 on every layer: 2047 × 393,216"),
    ("gemma-2-9b", 2048, 1, 704_643_072, "2048 × 344,064: below the 4096 window every layer keeps everything"),
    ("gemma-2-9b", 8192, 1, 2_113_929_216, "21 full layers keep 8192 tokens, 21 sliding layers 4096; 2 × 8 × 256 × 2 = 8192 bytes per token-layer"),
    ("deepseek-v3", 32768, 1, 2_302_672_896, "32,768 tokens × 70,272 bytes of latent + RoPE key"),
    ("gpt2", 0, 4, 0, "no tokens, no cache"),
]

CACHE_PER_TOKEN = dict((name, expected) for name, expected, _ in PER_TOKEN)


def _cache_mistakes(model: ModelConfig, tokens: int, batch: int) -> tuple[tuple[int, str], ...]:
    per_token = CACHE_PER_TOKEN[model.name]
    capped = min(tokens, model.sliding_window or tokens)
    return (
        (batch * tokens * per_token, "every layer keeps every token: a layer with a sliding window keeps only the last W"),
        (batch * capped * per_token, "every layer is capped at model.sliding_window: ask model.layer_window(layer), only sliding layers are capped"),
        (tokens * per_token, "batch is left out: every sequence holds its own cache"),
    )


@check("kv_cache_bytes", points=3)
@pytest.mark.parametrize(("name", "tokens", "batch", "expected", "story"), CACHE)
def test_kv_cache_bytes_of_real_models(lab, name, tokens, batch, expected, story):
    kv = lab.kv_cache
    model = preset(name)
    _count(
        kv.kv_cache_bytes(model, tokens, batch), expected, f"kv_cache_bytes({name}, tokens={tokens}, batch={batch}) in bf16",
        f"{expected / GIB:.3f} GiB; {story}", _cache_mistakes(model, tokens, batch),
    )


@check("kv_cache_bytes", points=2)
def test_kv_cache_grows_linearly_in_batch_times_tokens(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["mha", "gqa", "mqa"]))
        per_token = model.num_hidden_layers * _layer_token_bytes(model)
        batch, tokens = rng.randint(1, 8), rng.randint(1, 5000)
        for b, t in ((batch, tokens), (2 * batch, tokens), (batch, 3 * tokens)):
            _count(
                kv.kv_cache_bytes(model, t, b), b * t * per_token, f"kv_cache_bytes({model.name}, tokens={t}, batch={b})",
                f"batch × tokens × (2 × {model.num_hidden_layers} layers × {model.num_key_value_heads} KV heads × head_dim {model.head_dim} × 2 bytes) "
                f"= {b} × {t} × {per_token:,}: every token of every sequence holds its own K and V",
            )


@check("kv_cache_bytes", points=2)
def test_a_sliding_layer_holds_at_most_its_window(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, "sliding")
        window, per_token = model.sliding_window, model.num_hidden_layers * _layer_token_bytes(model)
        for tokens in (window - 1, window, window + rng.randint(1, 3 * window)):
            _count(
                kv.kv_cache_bytes(model, tokens), min(tokens, window) * per_token,
                f"kv_cache_bytes({model.name}, sliding_window {window} on all {model.num_hidden_layers} layers, tokens={tokens})",
                f"min({tokens}, {window}) × {per_token:,} bytes per token: a layer with window W keeps only the last W tokens",
                ((tokens * per_token, "the window is ignored"),),
            )


@check("kv_cache_bytes", points=2)
def test_windows_apply_layer_by_layer(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, "alternating")
        sliding = sum(kind == "sliding_attention" for kind in model.layer_types)
        full = model.num_hidden_layers - sliding
        tokens, window = rng.randint(1, 3 * model.sliding_window), model.sliding_window
        layer_token = _layer_token_bytes(model)
        _count(
            kv.kv_cache_bytes(model, tokens), (full * tokens + sliding * min(tokens, window)) * layer_token,
            f"kv_cache_bytes({model.name}: {full} full-attention and {sliding} sliding layers, window {window}, tokens={tokens})",
            f"({full} × {tokens} + {sliding} × {min(tokens, window)}) token-layers × {layer_token} bytes. Ask model.layer_window(layer) "
            "for each layer: only the sliding ones are capped",
            (
                (model.num_hidden_layers * min(tokens, window) * layer_token, "every layer is capped at model.sliding_window"),
                (model.num_hidden_layers * tokens * layer_token, "no layer is capped"),
            ),
        )


@check("kv_cache_bytes", points=1)
@pytest.mark.parametrize(
    ("tokens", "batch", "bytes_per_element", "name", "bad"),
    [
        (-1, 1, 2, "tokens", -1), (1.5, 1, 2, "tokens", 1.5), (128.0, 1, 2, "tokens", 128.0), (True, 1, 2, "tokens", True), (None, 1, 2, "tokens", None),
        (128, 0, 2, "batch", 0), (128, -3, 2, "batch", -3), (128, True, 2, "batch", True), (128, 2.0, 2, "batch", 2.0),
        (128, 1, 0, "bytes_per_element", 0), (128, 1, True, "bytes_per_element", True),
    ],
)
def test_kv_cache_bytes_rejects_bad_arguments(lab, tokens, batch, bytes_per_element, name, bad):
    kv = lab.kv_cache
    expect_correct(kv.kv_cache_bytes, preset("llama-3-8b"), 128, 3, 1, expected=25_165_824, what="kv_cache_bytes(llama-3-8b, tokens=128, batch=3, bytes_per_element=1)")
    what = f"kv_cache_bytes(llama-3-8b, tokens={tokens!r}, batch={batch!r}, bytes_per_element={bytes_per_element!r})"
    expect_value_error(kv.kv_cache_bytes, preset("llama-3-8b"), tokens, batch, bytes_per_element, what=what, must_mention=(name, bad))


# --- blocks_needed -----------------------------------------------------------------------------


@check("blocks_needed", points=2)
@pytest.mark.parametrize(
    ("tokens", "block_size", "expected"),
    [
        (0, 16, 0), (1, 16, 1), (15, 16, 1), (16, 16, 1), (17, 16, 2), (32, 16, 2), (1000, 16, 63), (4097, 16, 257), (5, 1, 5), (31, 32, 1), (7, 3, 3),
        (10**18 + 1, 16, 62_500_000_000_000_001), (2**53 + 1, 2, 2**52 + 1),
    ],
)
def test_blocks_needed_rounds_up_to_whole_blocks(lab, tokens, block_size, expected):
    kv = lab.kv_cache
    story = f"ceil({tokens:,} / {block_size}): a partly filled block is still a whole block"
    mistakes = ((tokens // block_size, "the division rounds down"), (tokens // block_size + 1, "a block is added even when the tokens fill whole blocks"))
    if tokens > 2**53:
        mistakes += ((int(tokens / block_size) + (1 if tokens / block_size % 1 else 0), "the division is done in floats, which lose exactness past 2**53: use -(-tokens // block_size)"),)
    _count(kv.blocks_needed(tokens, block_size), expected, f"blocks_needed({tokens:,}, block_size={block_size})", story, mistakes)


@check("blocks_needed", points=1)
def test_default_block_is_vllms_16_tokens(lab):
    kv = lab.kv_cache
    _count(kv.blocks_needed(17), 2, "blocks_needed(17) with the default block_size", "ceil(17 / 16): vLLM's default block holds 16 tokens")


@check("blocks_needed", points=1)
@pytest.mark.parametrize(
    ("tokens", "block_size", "name", "bad"),
    [(-1, 16, "tokens", -1), (2.5, 16, "tokens", 2.5), (32.0, 16, "tokens", 32.0), (True, 16, "tokens", True), (10, 0, "block_size", 0), (10, -16, "block_size", -16), (10, 16.0, "block_size", 16.0), (10, True, "block_size", True)],
)
def test_blocks_needed_rejects_bad_arguments(lab, tokens, block_size, name, bad):
    kv = lab.kv_cache
    expect_correct(kv.blocks_needed, 33, 16, expected=3, what="blocks_needed(33, block_size=16)")
    expect_value_error(kv.blocks_needed, tokens, block_size, what=f"blocks_needed({tokens!r}, block_size={block_size!r})", must_mention=(name, bad))


# --- paged_kv_bytes ----------------------------------------------------------------------------

PAGED = [
    ("llama-3-8b", 1000, 1, 16, 132_120_576, "63 blocks = 1008 token slots × 131,072 bytes"),
    ("llama-3-8b", 1024, 2, 16, 268_435_456, "1024 tokens fill 64 blocks exactly: 2 × 1024 × 131,072, nothing wasted"),
    ("llama-3-8b", 1, 1, 16, 2_097_152, "one token still takes a block of 16: 16 × 131,072"),
    ("llama-3-8b", 0, 3, 16, 0, "no tokens, no blocks"),
    ("mistral-7b-v0.1", 5000, 1, 16, 536_870_912, "the window keeps 4096 tokens: 256 blocks × 16 × 131,072"),
    ("gemma-2-9b", 1000, 1, 16, 346_816_512, "every layer rounds 1000 up to 1008 slots: 1008 × 344,064"),
    ("gemma-2-9b", 5000, 1, 16, 1_566_179_328, "(21 full layers × 5008 slots + 21 sliding layers × 4096) × 8192 bytes per token-layer"),
    ("deepseek-v3", 100, 3, 64, 26_984_448, "3 sequences × 2 blocks of 64 = 3 × 128 slots × 70,272"),
]


@check("paged_kv_bytes", points=3)
@pytest.mark.parametrize(("name", "tokens", "batch", "block_size", "expected", "story"), PAGED)
def test_paged_kv_bytes_of_real_models(lab, name, tokens, batch, block_size, expected, story):
    kv = lab.kv_cache
    model = preset(name)
    per_token = CACHE_PER_TOKEN[name]
    slots = -(-tokens // block_size) * block_size
    mistakes = (
        (batch * tokens * per_token, "the tokens are not rounded up to whole blocks"),
        (batch * slots * per_token, "the window is ignored: a sliding layer holds at most its window, in whole blocks"),
        (slots * per_token, "batch is left out"),
    )
    _count(kv.paged_kv_bytes(model, tokens, batch, block_size), expected, f"paged_kv_bytes({name}, tokens={tokens}, batch={batch}, block_size={block_size})", story, mistakes)


@check("paged_kv_bytes", points=2)
def test_paging_wastes_less_than_a_block_per_layer(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["mha", "gqa", "mqa"]))
        tokens, batch, block_size = rng.randint(1, 3000), rng.randint(1, 4), rng.choice([1, 3, 8, 16, 32])
        slots = -(-tokens // block_size) * block_size
        per_token = model.num_hidden_layers * _layer_token_bytes(model)
        _count(
            kv.paged_kv_bytes(model, tokens, batch, block_size), batch * slots * per_token,
            f"paged_kv_bytes({model.name}, tokens={tokens}, batch={batch}, block_size={block_size})",
            f"{batch} sequences × {slots} slots per layer (ceil({tokens} / {block_size}) blocks of {block_size}) × {per_token:,} bytes per token",
            ((batch * tokens * per_token, "the tokens are not rounded up to whole blocks"),),
        )


@check("paged_kv_bytes", points=1)
def test_default_paged_block_is_vllms_16_tokens(lab):
    kv = lab.kv_cache
    _count(kv.paged_kv_bytes(preset("llama-3-8b"), 17), 32 * 131_072, "paged_kv_bytes(llama-3-8b, 17) with the default block_size", "2 blocks of 16 = 32 slots × 131,072")


@check("paged_kv_bytes", points=1)
@pytest.mark.parametrize(
    ("tokens", "batch", "block_size", "name", "bad"),
    [(-5, 1, 16, "tokens", -5), (True, 1, 16, "tokens", True), (10, 0, 16, "batch", 0), (10, True, 16, "batch", True), (10, 1, 0, "block_size", 0), (10, 1, 2.0, "block_size", 2.0), (10, 1, True, "block_size", True)],
)
def test_paged_kv_bytes_rejects_bad_arguments(lab, tokens, batch, block_size, name, bad):
    kv = lab.kv_cache
    expect_correct(kv.paged_kv_bytes, preset("llama-3-8b"), 20, 2, 8, expected=6_291_456, what="paged_kv_bytes(llama-3-8b, tokens=20, batch=2, block_size=8)")
    what = f"paged_kv_bytes(llama-3-8b, tokens={tokens!r}, batch={batch!r}, block_size={block_size!r})"
    expect_value_error(kv.paged_kv_bytes, preset("llama-3-8b"), tokens, batch, block_size, what=what, must_mention=(name, bad))


# --- max_concurrent_sequences ------------------------------------------------------------------

LLAMA3_8B_BF16 = 8_030_261_248 * 2
LLAMA3_8B_INT4 = 8_030_261_248 // 2
GPU_80_GIB = 80 * GIB
USABLE_80_GIB = 77_309_411_328  # floor(0.9 × 85,899,345,920)
ONE_BLOCK = 16 * 131_072  # Llama-3-8B, a sequence of 16 tokens in one block of 16: 2,097,152 bytes


def _gate_concurrency(kv) -> None:
    expect_correct(kv.max_concurrent_sequences, preset("llama-3-8b"), GPU_80_GIB, LLAMA3_8B_BF16, 8192, expected=57, what="max_concurrent_sequences(llama-3-8b, 80 GiB, bf16 weights, 8192 tokens)")


@check("max_concurrent_sequences", points=3)
def test_llama_3_8b_on_an_80_gib_gpu(lab):
    kv = lab.kv_cache
    pool = USABLE_80_GIB - LLAMA3_8B_BF16
    _count(
        kv.max_concurrent_sequences(preset("llama-3-8b"), GPU_80_GIB, LLAMA3_8B_BF16, 8192), 57,
        f"max_concurrent_sequences(llama-3-8b, 80 GiB = {GPU_80_GIB:,} bytes, bf16 weights {LLAMA3_8B_BF16:,} bytes, 8192 tokens)",
        f"(usable − weights) // 1 GiB: usable = floor(0.9 × {GPU_80_GIB:,}) = {USABLE_80_GIB:,}; minus the weights leaves {pool:,} bytes; "
        "each sequence needs 8192 × 131,072 = 1 GiB of KV cache",
        (
            ((GPU_80_GIB - LLAMA3_8B_BF16) // GIB, "gpu_memory_utilization is ignored: the engine may use only 0.9 of the GPU"),
            (int(0.9 * (GPU_80_GIB - LLAMA3_8B_BF16)) // GIB, "gpu_memory_utilization is applied to the memory left after the weights; it is a fraction of the whole GPU"),
        ),
    )


@check("max_concurrent_sequences", points=3)
def test_weight_quantization_does_not_shrink_the_kv_cache(lab):
    kv = lab.kv_cache
    model = preset("llama-3-8b")
    _gate_concurrency(kv)
    _count(
        kv.max_concurrent_sequences(model, GPU_80_GIB, LLAMA3_8B_INT4, 8192), 68,
        f"max_concurrent_sequences(llama-3-8b, 80 GiB, int4 weights {LLAMA3_8B_INT4:,} bytes, 8192 tokens)",
        "(77,309,411,328 − 4,015,130,624) // 1 GiB. Quantizing the weights frees 12,045,391,872 bytes once, but every sequence still "
        "needs its full 1 GiB bf16 KV cache: 4× smaller weights do not give 4× the sequences",
        ((228, "the KV cache is shrunk along with the weights"),),
    )
    _count(
        kv.max_concurrent_sequences(model, GPU_80_GIB, LLAMA3_8B_BF16, 8192, bytes_per_element=1), 114,
        "max_concurrent_sequences(llama-3-8b, 80 GiB, bf16 weights, 8192 tokens, bytes_per_element=1)", "half a GiB per sequence with an fp8 KV cache",
    )


@check("max_concurrent_sequences", points=2)
def test_utilization_is_the_fraction_of_the_whole_gpu(lab, rng):
    kv = lab.kv_cache
    for _ in range(20):
        model = random_kv_model(rng, rng.choice(["mha", "gqa", "mqa"]))
        block_size = rng.choice([8, 16, 32])
        tokens = rng.randint(1, 4000)
        per_sequence = -(-tokens // block_size) * block_size * model.num_hidden_layers * _layer_token_bytes(model)
        weights, want = rng.randint(0, 10**9), rng.randint(0, 50)
        gpu = weights + want * per_sequence + rng.randint(0, per_sequence - 1)
        setting = f"{model.name}: GPU of {gpu:,} bytes, weights {weights:,}, {tokens} tokens per sequence in blocks of {block_size} = {per_sequence:,} paged bytes"
        _count(
            kv.max_concurrent_sequences(model, gpu, weights, tokens, block_size, gpu_memory_utilization=1.0), want,
            f"max_concurrent_sequences with gpu_memory_utilization=1.0 ({setting})", "(gpu − weights) // per_sequence",
            (((gpu - weights) // (tokens * model.num_hidden_layers * _layer_token_bytes(model)), "each sequence is sized by its tokens, not by its whole blocks"),),
        )
        usable = int(gpu * 0.9)
        if usable >= weights:
            _count(
                kv.max_concurrent_sequences(model, gpu, weights, tokens, block_size), (usable - weights) // per_sequence,
                f"max_concurrent_sequences with the default gpu_memory_utilization=0.9 ({setting})",
                f"(floor(0.9 × gpu) − weights) // per_sequence = ({usable:,} − {weights:,}) // {per_sequence:,}: the engine may use 0.9 of the GPU in total, weights included",
                ((int(0.9 * (gpu - weights)) // per_sequence, "0.9 is applied to the memory left after the weights"),),
            )


@check("max_concurrent_sequences", points=2)
@pytest.mark.parametrize(
    ("gpu", "utilization", "usable", "product"),
    [
        (80 * GIB + 1, 0.75, 64_424_509_440, "64,424,509,440.75"),
        (80 * GIB + 3, 0.5, 42_949_672_961, "42,949,672,961.5"),
    ],
)
def test_usable_memory_is_rounded_down_to_a_whole_byte(lab, gpu, utilization, usable, product):
    kv = lab.kv_cache
    model = preset("llama-3-8b")
    weights = usable - 5 * ONE_BLOCK + 1  # the pool is one byte short of 5 sequences of 16 tokens
    _count(
        kv.max_concurrent_sequences(model, gpu, weights, 16, gpu_memory_utilization=utilization), 4,
        f"max_concurrent_sequences(llama-3-8b, gpu {gpu:,} bytes, gpu_memory_utilization={utilization}, weights {weights:,}, 16 tokens)",
        f"(usable − weights) // {ONE_BLOCK:,} with usable = floor({gpu:,} × {utilization}) = floor({product}) = {usable:,}: the pool is "
        f"{usable - weights:,} bytes, one byte short of 5 sequences",
        ((5, "usable is rounded up or to nearest: the docstring's rule is math.floor, a fraction of a byte holds nothing"),),
    )
    _count(
        kv.max_concurrent_sequences(model, gpu, usable, 16, gpu_memory_utilization=utilization), 0,
        f"max_concurrent_sequences(llama-3-8b, gpu {gpu:,} bytes, gpu_memory_utilization={utilization}, weights of exactly usable = {usable:,} bytes)",
        "weights that fill the usable memory exactly still fit, and leave room for no sequence",
    )
    expect_value_error(
        kv.max_concurrent_sequences, model, gpu, usable + 1, 16, gpu_memory_utilization=utilization,
        what=f"max_concurrent_sequences with weights of {usable + 1:,} bytes, one more than usable = floor({product}) = {usable:,}",
        must_mention=(usable + 1, usable),
    )


@check("max_concurrent_sequences", points=2)
def test_weights_must_fit_in_the_usable_part_not_the_whole_gpu(lab):
    kv = lab.kv_cache
    model = preset("llama-3-8b")
    _gate_concurrency(kv)
    _count(
        kv.max_concurrent_sequences(model, GPU_80_GIB, USABLE_80_GIB, 8192), 0,
        f"max_concurrent_sequences(llama-3-8b, 80 GiB, weights of exactly usable = {USABLE_80_GIB:,} bytes, 8192 tokens)",
        "the weights fill the usable 0.9 of the GPU exactly: they fit, with no room for a sequence",
    )
    for weights in (USABLE_80_GIB + 1, GPU_80_GIB - 1):
        expect_value_error(
            kv.max_concurrent_sequences, model, GPU_80_GIB, weights, 8192,
            what=f"max_concurrent_sequences(llama-3-8b, 80 GiB, weights of {weights:,} bytes: more than usable = floor(0.9 × 80 GiB) = "
            f"{USABLE_80_GIB:,}, though less than the whole GPU)",
            must_mention=(weights, USABLE_80_GIB),
        )


@check("max_concurrent_sequences", points=1)
def test_weights_that_do_not_fit_are_an_error(lab):
    kv = lab.kv_cache
    _gate_concurrency(kv)
    weights = 70_553_706_496 * 2
    expect_value_error(
        kv.max_concurrent_sequences, preset("llama-3-70b"), GPU_80_GIB, weights, 4096,
        what="max_concurrent_sequences(llama-3-70b, 80 GiB, bf16 weights of 141 GB, 4096 tokens)", must_mention=(weights, USABLE_80_GIB),
    )


@check("max_concurrent_sequences", points=1)
@pytest.mark.parametrize(
    ("kwargs", "name", "bad"),
    [
        ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization", 0.0), ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization", 1.5),
        ({"gpu_memory_utilization": 0.0, "weight_bytes": 0}, "gpu_memory_utilization", 0.0), ({"gpu_memory_utilization": -0.5}, "gpu_memory_utilization", -0.5), ({"gpu_memory_utilization": True}, "gpu_memory_utilization", True),
        ({"gpu_memory_bytes": 0}, "gpu_memory_bytes", 0), ({"gpu_memory_bytes": float(GPU_80_GIB)}, "gpu_memory_bytes", float(GPU_80_GIB)),
        ({"weight_bytes": -1}, "weight_bytes", -1), ({"weight_bytes": 1.5e10}, "weight_bytes", 1.5e10),
        ({"tokens_per_sequence": 0}, "tokens_per_sequence", 0), ({"tokens_per_sequence": True}, "tokens_per_sequence", True),
        ({"block_size": 0}, "block_size", 0), ({"bytes_per_element": True}, "bytes_per_element", True),
    ],
)
def test_max_concurrent_sequences_rejects_bad_arguments(lab, kwargs, name, bad):
    kv = lab.kv_cache
    _gate_concurrency(kv)
    call = {"model": preset("llama-3-8b"), "gpu_memory_bytes": GPU_80_GIB, "weight_bytes": LLAMA3_8B_BF16, "tokens_per_sequence": 8192, **kwargs}
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    expect_value_error(kv.max_concurrent_sequences, what=f"max_concurrent_sequences(llama-3-8b, ..., {shown})", must_mention=(name, bad), **call)


# --- KVCache -------------------------------------------------------------------------------------


def _valid(what: str, call, *args, **kwargs):
    """``call(*args, **kwargs)``, a valid call: a ValueError from it fails the check (rejecting everything earns nothing)."""
    try:
        return call(*args, **kwargs)
    except ValueError as error:
        pytest.fail(f"{what} is valid, but raised ValueError: {bounded(str(error))}. Rejecting bad calls earns points only once valid calls work", pytrace=False)


def _tokens(batch: int = 2, kv_heads: int = 4, tokens: int = 4, head_dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 keys 1, 2, 3, ... and values -1, -2, -3, ..., ``(batch, kv_heads, tokens, head_dim)``: every slot distinct and non-zero."""
    k = torch.arange(1, batch * kv_heads * tokens * head_dim + 1, dtype=torch.float32).reshape(batch, kv_heads, tokens, head_dim)
    return k, -k


def _prefilled(kv):
    """A 2-layer fp32 cache (batch 2, 4 KV heads × 8, max_tokens 4) whose layer 0 holds a 3-token prompt, and the 4 tokens' k, v.

    Building it is the gate of the cache's "rejects bad calls" checks: the valid calls must work and
    return exactly the tokens written before a rejection earns anything.
    """
    k, v = _tokens()
    cache = _valid("KVCache(num_layers=2, batch=2, num_kv_heads=4, head_dim=8, max_tokens=4)", kv.KVCache, num_layers=2, batch=2, num_kv_heads=4, head_dim=8, max_tokens=4)
    cached = _valid("prefill(layer 0, a 3-token prompt) into an empty layer of max_tokens=4", cache.prefill, 0, k[:, :, :3], v[:, :, :3])
    for name, got, want in zip("kv", cached, (k[:, :, :3], v[:, :, :3])):
        assert_tensor_equal(got, want, f"the cached {name} that prefill(layer 0, a 3-token prompt) returned", "prefill returns the layer's (batch, num_kv_heads, T, head_dim) tokens, exactly as written")
    assert_exact(cache.lengths, [3, 0], "KVCache.lengths after prefill(layer 0, 3 tokens)")
    return cache, k, v


def _gate_cache(kv) -> None:
    """The valid calls of the cache work: prefill, then append one token, which returns all four."""
    cache, k, v = _prefilled(kv)
    cached = _valid("append(layer 0, one token) after a 3-token prompt into max_tokens=4", cache.append, 0, k[:, :, 3:], v[:, :, 3:])
    for name, got, want in zip("kv", cached, (k, v)):
        assert_tensor_equal(got, want, f"the cached {name} that append(layer 0, the 4th token) returned", "the prompt's 3 tokens, then the appended one")


@check("KVCache", points=2)
def test_cache_allocates_its_whole_capacity(lab, rng):
    kv = lab.kv_cache
    for _ in range(10):
        dims = dict(num_layers=rng.randint(1, 4), batch=rng.randint(1, 3), num_kv_heads=rng.choice([1, 2, 4]), head_dim=rng.choice([5, 16, 64]), max_tokens=rng.randint(1, 40))
        dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16])
        what = f"KVCache({', '.join(f'{key}={value}' for key, value in dims.items())}, dtype={dtype})"
        cache = _valid(what, kv.KVCache, **dims, dtype=dtype)
        shape = (dims["num_layers"], dims["batch"], dims["num_kv_heads"], dims["max_tokens"], dims["head_dim"])
        for name in ("k_cache", "v_cache"):
            assert_tensor_equal(getattr(cache, name), torch.zeros(shape, dtype=dtype), f"{what}.{name}", "zeros of (num_layers, batch, num_kv_heads, max_tokens, head_dim) in dtype")
        assert_exact(cache.lengths, [0] * dims["num_layers"], f"{what}.lengths", "a list of num_layers zeros: no layer holds a token yet")


@check("KVCache", points=3)
def test_cache_nbytes_equals_the_formula(lab, rng):
    kv = lab.kv_cache
    example = _valid("KVCache(2 layers, batch 1, 8 KV heads × 128, 8192 tokens, bf16)", kv.KVCache, num_layers=2, batch=1, num_kv_heads=8, head_dim=128, max_tokens=8192, dtype=torch.bfloat16)
    _count(example.nbytes, 67_108_864, "KVCache(2 layers, batch 1, 8 KV heads × 128, 8192 tokens, bf16).nbytes", "2 × 2 × 1 × 8 × 8192 × 128 × 2")
    for _ in range(10):
        model = random_dense_model(rng, num_hidden_layers=rng.randint(1, 4))
        batch, tokens = rng.randint(1, 3), rng.randint(1, 64)
        dtype, size = rng.choice([(torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)])
        what = f"KVCache({model.num_hidden_layers} layers, batch {batch}, {model.num_key_value_heads} KV heads × {model.head_dim}, {tokens} tokens, {dtype}).nbytes"
        cache = _valid(what, kv.KVCache, model.num_hidden_layers, batch, model.num_key_value_heads, model.head_dim, tokens, dtype)
        expected = 2 * model.num_hidden_layers * batch * model.num_key_value_heads * tokens * model.head_dim * size
        story = f"2 (K and V) × layers × batch × kv_heads × max_tokens × head_dim × {size} bytes, the same as kv_cache_bytes for that model"
        _count(cache.nbytes, expected, what, story, ((expected // 2, "only one of the two buffers is counted"), (0, "only filled tokens are counted")))
        token = torch.ones(batch, model.num_key_value_heads, 1, model.head_dim, dtype=dtype)
        _valid("prefill(layer 0, a 1-token prompt)", cache.prefill, 0, token, token)
        _count(cache.nbytes, expected, f"{what} after a prefill", "unchanged: the whole capacity is reserved up front", ((2 * batch * model.num_key_value_heads * model.head_dim * size, "only filled tokens are counted"),))


@check("KVCache", points=2)
def test_cache_stores_exactly_what_was_written(lab, seed):
    kv = lab.kv_cache
    generator = torch.Generator().manual_seed(seed)
    cache = _valid("KVCache(num_layers=2, batch=2, num_kv_heads=2, head_dim=8, max_tokens=6, dtype=torch.bfloat16)", kv.KVCache, num_layers=2, batch=2, num_kv_heads=2, head_dim=8, max_tokens=6, dtype=torch.bfloat16)
    _, k, v = attention_inputs(generator, 2, 2, 2, 5, 8)
    k, v = k.bfloat16(), v.bfloat16()
    _valid("prefill(layer 1, 3 tokens)", cache.prefill, 1, k[:, :, :3], v[:, :, :3])
    _valid("append(layer 1, the 4th token)", cache.append, 1, k[:, :, 3:4], v[:, :, 3:4])
    k_seen, v_seen = _valid("append(layer 1, the 5th token)", cache.append, 1, k[:, :, 4:5], v[:, :, 4:5])
    why = "after prefill(layer 1, 3 tokens) and two appends: the 5 tokens written, in order, unchanged (a cache copies values)"
    assert_tensor_equal(k_seen, k, "the cached k returned by the last append", why)
    assert_tensor_equal(v_seen, v, "the cached v returned by the last append", why)
    expected_k = torch.zeros(2, 2, 2, 6, 8, dtype=torch.bfloat16)
    expected_k[1, :, :, :5] = k
    assert_tensor_equal(cache.k_cache, expected_k, "k_cache", "layer 1's slots 0-4 hold the 5 keys written; layer 0 and the unused slot stay zero")
    assert_exact(cache.lengths, [0, 5], "KVCache.lengths", "each layer counts its own tokens")


@check("KVCache", points=2)
def test_a_prompt_may_fill_the_whole_cache(lab):
    kv = lab.kv_cache
    k, v = _tokens()
    cache = _valid("KVCache(num_layers=2, batch=2, num_kv_heads=4, head_dim=8, max_tokens=4)", kv.KVCache, num_layers=2, batch=2, num_kv_heads=4, head_dim=8, max_tokens=4)
    cached = _valid("prefill(layer 1, a prompt of 4 tokens) into max_tokens=4 (1 <= T <= max_tokens: a full-length prompt fits)", cache.prefill, 1, k, v)
    for name, got, want in zip("kv", cached, (k, v)):
        assert_tensor_equal(got, want, f"the cached {name} that prefill(layer 1, a full-length prompt) returned", "all 4 tokens of the prompt, as written")
    assert_exact(cache.lengths, [0, 4], "KVCache.lengths after a full-length prefill of layer 1")
    token = torch.zeros(2, 4, 1, 8)
    expect_value_error(cache.append, 1, token, token, what="append(layer 1) after a prompt that filled all max_tokens=4 slots", must_mention=(4,))
    assert_exact(cache.lengths, [0, 4], "KVCache.lengths after a rejected append", "a rejected call leaves the cache as it was")


@check("KVCache", points=1)
@pytest.mark.parametrize(
    ("field", "bad"), [("num_layers", 0), ("batch", -1), ("num_kv_heads", 2.0), ("head_dim", True), ("max_tokens", 0), ("max_tokens", True), ("dtype", torch.int8), ("dtype", "float32")]
)
def test_cache_rejects_bad_fields(lab, field, bad):
    kv = lab.kv_cache
    _gate_cache(kv)
    fields = {"num_layers": 2, "batch": 1, "num_kv_heads": 2, "head_dim": 8, "max_tokens": 16, "dtype": torch.float32, field: bad}
    expect_value_error(kv.KVCache, what=f"KVCache({field}={bad!r})", must_mention=(field, bad), **fields)


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
    _gate_cache(kv)
    cache, _, _ = _prefilled(kv)
    expect_value_error(cache.append, 0, torch.zeros(k_shape), torch.zeros(v_shape), what=f"append(layer 0, k {k_shape}, v {v_shape}) ({why})", must_mention=(mention,))
    assert_exact(cache.lengths, [3, 0], "KVCache.lengths after a rejected append", "a rejected call leaves the cache as it was")


@check("KVCache", points=2)
def test_append_past_capacity_and_out_of_order_are_errors(lab):
    kv = lab.kv_cache
    _gate_cache(kv)
    cache, k, v = _prefilled(kv)
    _valid("append(layer 0, the 4th token) into max_tokens=4", cache.append, 0, k[:, :, 3:], v[:, :, 3:])
    token = torch.zeros(2, 4, 1, 8)
    expect_value_error(cache.append, 0, token, token, what="append(layer 0) when it already holds max_tokens=4 tokens", must_mention=(4,))
    expect_value_error(cache.append, 1, token, token, what="append(layer 1) before layer 1 was prefilled", must_mention=(1,))
    expect_value_error(cache.prefill, 0, token, token, what="prefill(layer 0) a second time", must_mention=(0,))
    too_long = torch.zeros(2, 4, 5, 8)
    expect_value_error(cache.prefill, 1, too_long, too_long, what="prefill(layer 1) with a 5-token prompt into max_tokens=4", must_mention=(5, 4))
    assert_exact(cache.lengths, [4, 0], "KVCache.lengths after rejected calls", "a rejected call leaves the cache as it was")


@check("KVCache", points=1)
@pytest.mark.parametrize("method", ["prefill", "append"])
@pytest.mark.parametrize("layer", [-1, 2, True, 0.0, "0"])
def test_a_bad_layer_index_is_an_error(lab, method, layer):
    kv = lab.kv_cache
    _gate_cache(kv)
    cache, k, v = _prefilled(kv)
    tokens = k[:, :, :1], v[:, :, :1]
    expect_value_error(getattr(cache, method), layer, *tokens, what=f"{method}(layer={layer!r}) on a cache of num_layers=2 (0 <= layer < 2, an int, not a bool)", must_mention=(layer,))
    assert_exact(cache.lengths, [3, 0], "KVCache.lengths after a rejected call", "a rejected call leaves the cache as it was")


@check("KVCache", points=4)
def test_decoding_with_the_cache_equals_recomputing_attention(lab, rng, seed):
    kv = lab.kv_cache
    generator = torch.Generator().manual_seed(seed)
    for _ in range(4):
        kv_heads = rng.choice([1, 2, 4])
        heads, head_dim = kv_heads * rng.choice([1, 2, 4]), rng.choice([7, 16, 64])
        batch, layers, tokens = rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 24)
        prompt = rng.randint(1, tokens - 1)
        capacity = tokens + rng.randint(0, 8)
        setting = f"KVCache({layers} layers, batch {batch}, {kv_heads} KV heads × {head_dim}, max_tokens {capacity}) with a prompt of {prompt}"
        cache = _valid(setting, kv.KVCache, layers, batch, kv_heads, head_dim, capacity)
        inputs = [attention_inputs(generator, batch, heads, kv_heads, tokens, head_dim) for _ in range(layers)]
        outputs = []
        for layer, (q, k, v) in enumerate(inputs):
            k_seen, v_seen = _valid(f"{setting}: prefill(layer {layer})", cache.prefill, layer, k[:, :, :prompt], v[:, :, :prompt])
            for name, got, want in (("k", k_seen, k[:, :, :prompt]), ("v", v_seen, v[:, :, :prompt])):
                assert_tensor_equal(got, want, f"{setting}: the cached {name} that prefill(layer {layer}) returned", "the prompt's tokens as written, (batch, kv_heads, tokens so far, head_dim)")
            outputs.append([kv.causal_attention(q[:, :, :prompt], k_seen, v_seen)])
        for t in range(prompt, tokens):  # one decode step: every layer appends one token, then attends
            for layer, (q, k, v) in enumerate(inputs):
                k_seen, v_seen = _valid(f"{setting}: append(layer {layer}) at decode step {t - prompt + 1}", cache.append, layer, k[:, :, t : t + 1], v[:, :, t : t + 1])
                for name, got, want in (("k", k_seen, k[:, :, : t + 1]), ("v", v_seen, v[:, :, : t + 1])):
                    assert_tensor_equal(
                        got, want, f"{setting}: the cached {name} that append(layer {layer}) returned at decode step {t - prompt + 1}",
                        "every token so far, in order, (batch, kv_heads, tokens so far, head_dim)",
                    )
                outputs[layer].append(kv.causal_attention(q[:, :, t : t + 1], k_seen, v_seen))
        assert_exact(cache.lengths, [tokens] * layers, f"{setting}: KVCache.lengths after {tokens - prompt} decode steps", "each layer counts the tokens it holds")
        for layer, (q, k, v) in enumerate(inputs):
            decoded, recomputed = torch.cat(outputs[layer], dim=2), kv.causal_attention(q, k, v)  # (B, nh, T, hs)
            assert_tensor_close(
                decoded, recomputed, f"{setting}: layer {layer}'s attention outputs, decoded through the cache vs recomputed over all {tokens} tokens",
                atol=1e-5,
                # Both paths see bit-identical keys and values; only the reduction order of a (T, T)
                # versus a (1, T) product differs. Outputs are convex combinations of N(0, 1) values,
                # so fp32 rounding stays within a few dozen ulps of 1.0 (measured ≤ 2e-6); a wrong or
                # stale cached token moves outputs by ~0.1.
                why="1e-5 in fp32: the keys and values are identical, only the summation order differs (measured ≤ 2e-6)",
            )
