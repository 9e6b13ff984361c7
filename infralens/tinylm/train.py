"""Train the Lab 07 model from the grammar's text, on CPU, reproducibly; write its weights.

    python -m infralens.tinylm.train            # writes infralens/tinylm/tiny_lm.pt
    python -m infralens.tinylm.train --out /tmp/tiny_lm.pt

Seeded and single-threaded with deterministic algorithms, so the same torch build on the same
kind of CPU writes the same weights bit for bit. Fresh training documents are drawn for every
step from ``TRAIN_SEED``; the held-out documents of :mod:`infralens.tinylm` come from other seeds
and are never trained on. Prints the loss as it goes, and the held-out perplexity at the end.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from infralens.tinylm import workload
from infralens.tinylm.grammar import document
from infralens.tinylm.model import TinyLM, TinyLMConfig, init_weights, parameter_count

TRAIN_SEED = 7
STEPS = 600
BATCH = 16
LENGTH = 256
PEAK_LR = 4e-3
WARMUP = 40
WEIGHTS = Path(__file__).with_name("tiny_lm.pt")


def learning_rate(step: int) -> float:
    """Linear warm-up to PEAK_LR, then cosine decay to a tenth of it."""
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(STEPS - WARMUP, 1)
    return PEAK_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(out: Path, steps: int = STEPS) -> TinyLM:
    torch.manual_seed(TRAIN_SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(TRAIN_SEED)
    model = TinyLM(TinyLMConfig())
    init_weights(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, betas=(0.9, 0.95), weight_decay=0.01)
    started = time.perf_counter()
    for step in range(steps):
        batch = torch.tensor([document(rng, LENGTH + 1) for _ in range(BATCH)])  # (B, T + 1)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.detach().clone() for name, tensor in model.state_dict().items()}, out)
    print(f"{parameter_count(model):,} parameters written to {out} ({out.stat().st_size:,} bytes) in {time.perf_counter() - started:.0f} s")
    held_out = workload("long")
    with torch.no_grad():
        logits = model(held_out[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), held_out[:, 1:].reshape(-1))
    print(f"held-out perplexity {math.exp(loss.item()):.3f} (a uniform guess: {model.config.vocab_size})")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infralens.tinylm.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"where to write the weights (default: {WEIGHTS})")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimizer steps (default {STEPS})")
    args = parser.parse_args(argv)
    train(args.out, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
