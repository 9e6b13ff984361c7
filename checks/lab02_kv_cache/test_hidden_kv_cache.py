"""Hidden checks for Lab 02: the learner against the reference on fresh random models, sizes and cache calls.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay). Outputs are
compared as data: integers, the kind of error, and tensor values, never object identity.
"""

from __future__ import annotations

import pytest

from infralens.checking import outcome
import torch

from lab02_inputs import describe, random_kv_model

check = pytest.mark.check
CASES = 80


def _maybe_bad(rng, good, bad):
    """``good`` most of the time, one of the ``bad`` values now and then."""
    return rng.choice(bad) if rng.random() < 0.1 else good


@check("kv_bytes_per_token", points=2)
def test_kv_bytes_per_token_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    for _ in range(CASES):
        model = random_kv_model(rng)
        size = _maybe_bad(rng, rng.choice([1, 2, 4]), [0, -1, 2.0, True])
        expected = outcome(lambda: ref.kv_bytes_per_token(model, size))
        actual = outcome(lambda: kv.kv_bytes_per_token(model, size))
        assert actual == expected, f"kv_bytes_per_token({describe(model)}, bytes_per_element={size!r}): got {actual}, expected {expected}"


@check("kv_cache_bytes", points=3)
def test_kv_cache_bytes_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    for _ in range(CASES):
        model = random_kv_model(rng)
        tokens = _maybe_bad(rng, rng.choice([0, 1, rng.randint(1, 20000), model.sliding_window or 7]), [-1, 3.0, None])
        batch = _maybe_bad(rng, rng.randint(1, 64), [0, -2, 1.0])
        size = rng.choice([1, 2, 4])
        expected = outcome(lambda: ref.kv_cache_bytes(model, tokens, batch, size))
        actual = outcome(lambda: kv.kv_cache_bytes(model, tokens, batch, size))
        assert actual == expected, f"kv_cache_bytes({describe(model)}, tokens={tokens!r}, batch={batch!r}, bytes_per_element={size}): got {actual}, expected {expected}"


@check("blocks_needed", points=1)
def test_blocks_needed_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    for _ in range(CASES):
        tokens = _maybe_bad(rng, rng.choice([0, rng.randint(1, 100), rng.randint(1, 10**20)]), [-3, 4.5])
        block_size = _maybe_bad(rng, rng.choice([1, 8, 16, 32, rng.randint(1, 1000)]), [0, -16, 16.0])
        expected = outcome(lambda: ref.blocks_needed(tokens, block_size))
        actual = outcome(lambda: kv.blocks_needed(tokens, block_size))
        assert actual == expected, f"blocks_needed({tokens!r}, block_size={block_size!r}): got {actual}, expected {expected}"


@check("paged_kv_bytes", points=2)
def test_paged_kv_bytes_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    for _ in range(CASES):
        model = random_kv_model(rng)
        tokens = _maybe_bad(rng, rng.choice([0, 1, rng.randint(1, 20000)]), [-1])
        batch = _maybe_bad(rng, rng.randint(1, 16), [0])
        block_size = _maybe_bad(rng, rng.choice([1, 16, 32, rng.randint(1, 300)]), [0, 16.0])
        expected = outcome(lambda: ref.paged_kv_bytes(model, tokens, batch, block_size))
        actual = outcome(lambda: kv.paged_kv_bytes(model, tokens, batch, block_size))
        assert actual == expected, f"paged_kv_bytes({describe(model)}, tokens={tokens}, batch={batch}, block_size={block_size!r}): got {actual}, expected {expected}"


@check("max_concurrent_sequences", points=2)
def test_max_concurrent_sequences_matches_reference(lab, oracle, rng):
    kv, ref = lab.kv_cache, oracle.kv_cache
    for _ in range(CASES):
        model = random_kv_model(rng)
        gpu = rng.choice([16, 24, 40, 80, 141]) * 2**30 + rng.randint(0, 2**20)
        weights = rng.randint(0, int(gpu * 1.1))
        tokens, block_size = rng.randint(1, 30000), rng.choice([8, 16, 32])
        utilization = _maybe_bad(rng, rng.choice([0.5, 0.8, 0.9, 0.95, 1.0]), [0.0, 1.01, -0.5])
        size = rng.choice([1, 2])
        expected = outcome(lambda: ref.max_concurrent_sequences(model, gpu, weights, tokens, block_size, utilization, size))
        actual = outcome(lambda: kv.max_concurrent_sequences(model, gpu, weights, tokens, block_size, utilization, size))
        assert actual == expected, (
            f"max_concurrent_sequences({describe(model)}, gpu={gpu}, weights={weights}, tokens={tokens}, block_size={block_size}, "
            f"gpu_memory_utilization={utilization}, bytes_per_element={size}): got {actual}, expected {expected}"
        )


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


@check("KVCache", points=3)
def test_cache_calls_match_reference(lab, oracle, rng, seed):
    kv, ref = lab.kv_cache, oracle.kv_cache
    generator = torch.Generator().manual_seed(seed)
    for _ in range(CASES // 8):
        dims = dict(num_layers=rng.randint(1, 4), batch=rng.randint(1, 3), num_kv_heads=rng.choice([1, 2, 4]), head_dim=rng.choice([3, 8, 16]), max_tokens=rng.randint(1, 24))
        dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16])
        mine, theirs = kv.KVCache(**dims, dtype=dtype), ref.KVCache(**dims, dtype=dtype)
        assert mine.nbytes == theirs.nbytes, f"KVCache({dims}, {dtype}).nbytes: got {mine.nbytes}, expected {theirs.nbytes}"
        for step in range(40):
            method, layer, k, v = _random_call(rng, generator, dims)
            expected = outcome(lambda: getattr(theirs, method)(layer, k, v))
            actual = outcome(lambda: getattr(mine, method)(layer, k, v))
            where = f"call {step} on KVCache({dims}, {dtype}): {method}(layer={layer}, k {tuple(k.shape)}, v {tuple(v.shape)}) with lengths {list(theirs.lengths)}"
            assert actual[0] == expected[0], f"{where}: got {actual[0]}, expected {expected[0]}"
            if expected[0] == "value":
                for name, got, want in zip("kv", actual[1], expected[1]):
                    assert got.shape == want.shape and torch.equal(got, want), f"{where}: the returned {name} differs (shape {tuple(got.shape)}, expected {tuple(want.shape)})"
            assert list(mine.lengths) == list(theirs.lengths), f"{where}: lengths is {list(mine.lengths)}, expected {list(theirs.lengths)}"
        assert torch.equal(mine.k_cache, theirs.k_cache) and torch.equal(mine.v_cache, theirs.v_cache), f"KVCache({dims}): the buffers differ after 40 calls"
