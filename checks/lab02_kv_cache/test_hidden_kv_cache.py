"""Hidden checks for Lab 02: the learner against the reference, first on fixed edge cases, then on fresh random ones.

Every check runs the same deterministic cases under any seed (every preset and KV family, empty and
full-length sequences, window and block boundaries, the rounding boundary of the usable memory,
bools, floats and out-of-range values), then random ones drawn from the run's seed (printed in the
header, ``--seed`` to replay). So a grade never depends on the seed, and a function that rejects
everything fails on the valid cases. Outcomes are compared as data and strictly: "both raise
ValueError" agrees, and a returned value must have the reference's type (an ``int`` byte count is
never a ``float``) and value.
"""

from __future__ import annotations

import math

import pytest
import torch

from infralens.checking import assert_exact, bounded, outcome, same_outcome, summarize
from infralens.models import preset
from infralens.tensor_checks import assert_tensor_equal
from lab02_inputs import describe, fixed_kv_models, random_kv_model

check = pytest.mark.check
CASES = 80
GIB = 2**30


FIXED = fixed_kv_models()
LLAMA = preset("llama-3-8b")


def _agree(call, reference, what: str) -> None:
    """The learner's ``call()`` must have the outcome of ``reference()``: both ValueError, or the same type and value."""
    same_outcome(outcome(call), outcome(reference), bounded(what, 300))


def _maybe_bad(rng, good, bad):
    """``good`` most of the time, one of the ``bad`` values now and then (the fixed cases cover every bad value anyway)."""
    return rng.choice(bad) if rng.random() < 0.1 else good


def _token_counts(model) -> list[int]:
    """Empty, tiny, odd and long contexts, and both sides of the model's window when it has one."""
    window = model.sliding_window
    return [0, 1, 7, 5000] + ([window - 1, window, window + 1] if window else [])


@check("kv_bytes_per_token", points=2)
def test_kv_bytes_per_token_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    cases = [(model, size) for model in FIXED for size in (1, 2, 4)]
    cases += [(model, bad) for model in (LLAMA, FIXED[0]) for bad in (0, -1, 2.0, True, False, "2", None)]
    for _ in range(CASES):
        cases.append((random_kv_model(rng), _maybe_bad(rng, rng.choice([1, 2, 4]), [0, -1, 2.0, True])))
    for model, size in cases:
        _agree(lambda: kv.kv_bytes_per_token(model, size), lambda: ref.kv_bytes_per_token(model, size), f"kv_bytes_per_token({describe(model)}, bytes_per_element={size!r})")


@check("kv_cache_bytes", points=3)
def test_kv_cache_bytes_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    cases = [(model, tokens, batch, size) for model in FIXED for tokens in _token_counts(model) for batch, size in ((1, 2), (3, 2), (2, 1))]
    cases += [(LLAMA, tokens, 1, 2) for tokens in (-1, 3.0, None, True, False)]
    cases += [(LLAMA, 128, batch, 2) for batch in (0, -2, 1.0, True)]
    cases += [(LLAMA, 128, 1, size) for size in (0, True, 2.0)]
    for _ in range(CASES):
        model = random_kv_model(rng)
        tokens = _maybe_bad(rng, rng.choice([0, 1, rng.randint(1, 20000), model.sliding_window or 7]), [-1, 3.0, None])
        cases.append((model, tokens, _maybe_bad(rng, rng.randint(1, 64), [0, -2, 1.0]), rng.choice([1, 2, 4])))
    for model, tokens, batch, size in cases:
        _agree(
            lambda: kv.kv_cache_bytes(model, tokens, batch, size), lambda: ref.kv_cache_bytes(model, tokens, batch, size),
            f"kv_cache_bytes({describe(model)}, tokens={tokens!r}, batch={batch!r}, bytes_per_element={size!r})",
        )


@check("blocks_needed", points=1)
def test_blocks_needed_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    cases = [(tokens, block) for tokens in (0, 1, 2, 15, 16, 17, 31, 1000, 2**53 + 1, 10**18 + 1, 2**64 + 3) for block in (1, 2, 3, 16, 32)]
    cases += [(tokens, 16) for tokens in (-3, 4.5, 32.0, True, False, None)] + [(10, block) for block in (0, -16, 16.0, True)]
    for _ in range(CASES):
        tokens = _maybe_bad(rng, rng.choice([0, rng.randint(1, 100), rng.randint(1, 10**20)]), [-3, 4.5])
        cases.append((tokens, _maybe_bad(rng, rng.choice([1, 8, 16, 32, rng.randint(1, 1000)]), [0, -16, 16.0])))
    for tokens, block in cases:
        _agree(lambda: kv.blocks_needed(tokens, block), lambda: ref.blocks_needed(tokens, block), f"blocks_needed({tokens!r}, block_size={block!r})")


@check("paged_kv_bytes", points=2)
def test_paged_kv_bytes_matches_reference(lab, oracle, rng, cases):
    kv, ref = lab.kv_cache, oracle.kv_cache
    edges = [(model, tokens, batch, block) for model in FIXED for tokens in _token_counts(model) + [16, 17] for batch in (1, 2) for block in (1, 16, 64)]
    edges += [(LLAMA, tokens, 1, 16) for tokens in (-1, 2.0, True)] + [(LLAMA, 10, batch, 16) for batch in (0, True)] + [(LLAMA, 10, 1, block) for block in (0, 16.0, True)]
    randoms = []
    for _ in range(CASES):
        model = random_kv_model(rng)
        tokens = _maybe_bad(rng, rng.choice([0, 1, rng.randint(1, 20000)]), [-1])
        randoms.append((model, tokens, _maybe_bad(rng, rng.randint(1, 16), [0]), _maybe_bad(rng, rng.choice([1, 16, 32, rng.randint(1, 300)]), [0, 16.0])))
    for model, tokens, batch, block in cases(edges, randoms):
        _agree(
            lambda: kv.paged_kv_bytes(model, tokens, batch, block), lambda: ref.paged_kv_bytes(model, tokens, batch, block),
            f"paged_kv_bytes({describe(model)}, tokens={tokens!r}, batch={batch!r}, block_size={block!r})",
        )


def _rounding_boundaries(ref, model):
    """Calls where rounding the usable memory up, to nearest, or not at all changes the answer, and
    weights at the edge of fitting: ``usable`` is a whole number plus .75, .5 or .25 of a byte."""
    per_sequence = ref.paged_kv_bytes(model, 16, 1, 16, 2)
    for gpu, utilization in ((80 * GIB + 1, 0.75), (80 * GIB + 3, 0.5), (24 * GIB + 3, 0.75), (40 * GIB + 1, 0.25)):
        usable = math.floor(gpu * utilization)
        for weights in (usable - 3 * per_sequence + 1, usable - 3 * per_sequence, usable, usable + 1, gpu - 1, 0):
            yield gpu, weights, 16, 16, utilization, 2


@check("max_concurrent_sequences", points=2)
def test_max_concurrent_sequences_matches_reference(lab, oracle, rng, cases):
    kv, ref = lab.kv_cache, oracle.kv_cache
    edges = [(model, call) for model in FIXED for call in _rounding_boundaries(ref, model)]
    edges += [(LLAMA, (80 * GIB, weights, 8192, 16, 0.9, size)) for weights in (8_030_261_248 * 2, 8_030_261_248 // 2) for size in (1, 2)]
    edges += [(LLAMA, (80 * GIB, 16 * 10**9, 8192, 16, utilization, 2)) for utilization in (1, 1.0, 0.5, 0.0, 1.01, -0.5, True, "0.9", None)]
    edges += [(LLAMA, (80 * GIB, 0, 8192, 16, 0.0, 2))]
    good = [80 * GIB, 16 * 10**9, 8192, 16, 0.9, 2]
    for position, bads in enumerate(([0, True, 80.0 * GIB], [-1, True, 1.6e10], [0, True, 8192.0], [0, True, 16.0], [], [0, True])):
        edges += [(LLAMA, tuple(good[:position] + [bad] + good[position + 1 :])) for bad in bads]
    randoms = []
    for _ in range(CASES):
        model = random_kv_model(rng)
        gpu = rng.choice([16, 24, 40, 80, 141]) * GIB + rng.randint(0, 2**20)
        weights = rng.randint(0, int(gpu * 1.1))
        utilization = _maybe_bad(rng, rng.choice([0.5, 0.8, 0.9, 0.95, 1.0]), [0.0, 1.01, -0.5])
        randoms.append((model, (gpu, weights, rng.randint(1, 30000), rng.choice([8, 16, 32]), utilization, rng.choice([1, 2]))))
    for model, call in cases(edges, randoms):
        gpu, weights, tokens, block, utilization, size = call
        _agree(
            lambda: kv.max_concurrent_sequences(model, *call), lambda: ref.max_concurrent_sequences(model, *call),
            f"max_concurrent_sequences({describe(model)}, gpu_memory_bytes={gpu!r}, weight_bytes={weights!r}, tokens_per_sequence={tokens!r}, "
            f"block_size={block!r}, gpu_memory_utilization={utilization!r}, bytes_per_element={size!r})",
        )


# --- KVCache -------------------------------------------------------------------------------------


def _same_cache_call(mine, theirs, method: str, layer, k, v, where: str) -> None:
    """One prefill/append on both caches: the same outcome, the same returned tensors, the same lengths."""
    expected = outcome(lambda: getattr(theirs, method)(layer, k, v))
    actual = outcome(lambda: getattr(mine, method)(layer, k, v))
    where = bounded(f"{where}: {method}(layer={layer!r}, k {tuple(k.shape)}, v {tuple(v.shape)})", 300)
    if same_outcome(actual, expected, where, compare=lambda got, want: None):
        if not isinstance(actual[1], tuple) or len(actual[1]) != 2:
            pytest.fail(f"{where} returned {summarize(actual[1])}, expected a tuple (k, v) of the layer's cached tokens", pytrace=False)
        for name, got, want in zip("kv", actual[1], expected[1]):
            assert_tensor_equal(got, want, f"{where}: the returned {name}", "the layer's cached tokens so far")
    assert_exact(mine.lengths, list(theirs.lengths), f"{where}: lengths afterwards", "a rejected call leaves the cache as it was")


def _scripted_calls(batch: int, kv_heads: int, head_dim: int, max_tokens: int):
    """A fixed sequence of calls on a 2-layer cache: a full-length prompt, a shorter one, appends up to and past
    capacity, prefills into filled layers, appends into empty ones, bad layer indices and bad shapes."""
    def kv(tokens, shape=None):
        k = torch.arange(1, batch * kv_heads * tokens * head_dim + 1, dtype=torch.float32).reshape(batch, kv_heads, tokens, head_dim)
        return (k, -k) if shape is None else (torch.ones(shape), torch.ones(shape))

    one = kv(1)
    yield "append", 0, *one  # into an empty layer
    yield "prefill", 0, *kv(max_tokens + 1)  # longer than the cache
    yield "prefill", 0, *kv(max_tokens)  # a full-length prompt fits
    yield "append", 0, *one  # past capacity
    yield "prefill", 0, *kv(1)  # a second prefill
    for layer in (-1, 2, True, 0.0):
        yield "prefill", layer, *one
        yield "append", layer, *one
    yield "prefill", 1, *kv(max(1, max_tokens - 2))
    for shape in ((batch, kv_heads, 2, head_dim), (batch, kv_heads + 1, 1, head_dim), (batch, kv_heads, 1, head_dim + 1), (batch + 1, kv_heads, 1, head_dim), (batch, 1, kv_heads, head_dim) if kv_heads > 1 else (batch, kv_heads, 1, head_dim, 1)):
        yield "append", 1, *kv(1, shape)
    yield "append", 1, one[0], one[1][:, :, 0]  # v without its token axis
    for _ in range(3):
        yield "append", 1, *one


@check("KVCache", points=3)
def test_cache_calls_match_reference(lab, oracle, rng, seed):
    kv, ref = lab.kv_cache, oracle.kv_cache
    fields = dict(num_layers=2, batch=1, num_kv_heads=2, head_dim=8, max_tokens=16, dtype=torch.float32)
    for field, bads in (("num_layers", (0, -1, 2.0, True)), ("batch", (0, True)), ("num_kv_heads", (0, 2.0)), ("head_dim", (-8, True)), ("max_tokens", (0, True, 16.0)), ("dtype", (torch.int8, torch.bool, "float32"))):
        for bad in bads:
            call = {**fields, field: bad}
            _agree(lambda: kv.KVCache(**call).nbytes, lambda: ref.KVCache(**call).nbytes, f"KVCache({field}={bad!r}).nbytes")
    fixed = [dict(num_layers=2, batch=2, num_kv_heads=4, head_dim=8, max_tokens=4), dict(num_layers=2, batch=1, num_kv_heads=1, head_dim=3, max_tokens=1), dict(num_layers=2, batch=3, num_kv_heads=2, head_dim=5, max_tokens=7)]
    for dims in fixed:
        for dtype in (torch.float32, torch.bfloat16):
            mine, theirs = kv.KVCache(**dims, dtype=dtype), ref.KVCache(**dims, dtype=dtype)
            name = f"KVCache({', '.join(f'{key}={value}' for key, value in dims.items())}, dtype={dtype})"
            assert_exact(mine.nbytes, theirs.nbytes, f"{name}.nbytes")
            for step, (method, layer, k, v) in enumerate(_scripted_calls(dims["batch"], dims["num_kv_heads"], dims["head_dim"], dims["max_tokens"])):
                _same_cache_call(mine, theirs, method, layer, k.to(dtype), v.to(dtype), f"call {step} on {name}")
            assert_tensor_equal(mine.k_cache, theirs.k_cache, f"{name}.k_cache after the fixed calls")
            assert_tensor_equal(mine.v_cache, theirs.v_cache, f"{name}.v_cache after the fixed calls")
    generator = torch.Generator().manual_seed(seed)
    for _ in range(CASES // 8):
        dims = dict(num_layers=rng.randint(1, 4), batch=rng.randint(1, 3), num_kv_heads=rng.choice([1, 2, 4]), head_dim=rng.choice([3, 8, 16]), max_tokens=rng.randint(1, 24))
        dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16])
        mine, theirs = kv.KVCache(**dims, dtype=dtype), ref.KVCache(**dims, dtype=dtype)
        name = f"KVCache({', '.join(f'{key}={value}' for key, value in dims.items())}, dtype={dtype})"
        assert_exact(mine.nbytes, theirs.nbytes, f"{name}.nbytes")
        for step in range(40):
            method, layer, k, v = _random_call(rng, generator, dims)
            _same_cache_call(mine, theirs, method, layer, k.to(dtype), v.to(dtype), f"call {step} on {name} with lengths {list(theirs.lengths)}")
        assert_tensor_equal(mine.k_cache, theirs.k_cache, f"{name}.k_cache after 40 random calls")
        assert_tensor_equal(mine.v_cache, theirs.v_cache, f"{name}.v_cache after 40 random calls")


def _random_call(rng, generator, dims):
    """One prefill or append call on a random layer, with a valid shape most of the time."""
    method = rng.choice(["prefill", "append", "append", "append"])
    layer = _maybe_bad(rng, rng.randrange(dims["num_layers"]), [-1, dims["num_layers"]])
    tokens = rng.randint(1, dims["max_tokens"] + 1) if method == "prefill" else _maybe_bad(rng, 1, [2, 3])
    shape = [dims["batch"], dims["num_kv_heads"], tokens, dims["head_dim"]]
    if rng.random() < 0.1:
        shape[rng.choice([0, 1, 3])] += 1
    k = torch.randn(*shape, generator=generator)
    v = torch.randn(*shape, generator=generator) if rng.random() > 0.05 else torch.randn(*shape[:-1], generator=generator)
    return method, layer, k, v
