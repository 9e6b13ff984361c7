"""The small trained language model of Lab 07, its language and its evaluation text: given data.

Lab 07 measures what fake quantization of each target (weights, activations, KV cache) does to a
real model's quality. This package is that model, shipped with the repository so nothing is
downloaded:

* :mod:`infralens.tinylm.grammar`: the procedural language it was trained on (records to recall
  from far back, agreement, sums), 60 word tokens;
* :mod:`infralens.tinylm.model`: the causal transformer, whose forward takes one fake-quantization
  hook per target;
* :mod:`infralens.tinylm.train`: the reproducible CPU training run that wrote ``tiny_lm.pt``.

Evaluation text is generated from seeds the training run never uses (:data:`WORKLOADS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from infralens.tinylm.grammar import VOCAB, decode, documents
from infralens.tinylm.model import TinyLM, TinyLMConfig

WEIGHTS = Path(__file__).with_name("tiny_lm.pt")

__all__ = ["VOCAB", "WEIGHTS", "WORKLOADS", "TinyLM", "TinyLMConfig", "Workload", "decode", "load_tiny_lm", "workload"]


@dataclass(frozen=True)
class Workload:
    """Held-out evaluation text: ``count`` documents of ``length`` tokens from ``seed``.

    :func:`workload` returns them as ``[count, length + 1]`` token ids: the model reads
    ``tokens[:, :-1]`` and is scored on predicting ``tokens[:, 1:]``.
    """

    seed: int
    count: int
    length: int
    about: str


WORKLOADS = {
    "long": Workload(1001, 8, 256, "8 documents of 256 tokens: facts repeated from up to 250 tokens back"),
    "short": Workload(2002, 64, 32, "64 prompts of 32 tokens: everything a query needs is recent"),
}
"""The held-out workloads, by name. Training draws from another seed (``train.TRAIN_SEED``)."""


def workload(name: str) -> Tensor:
    """The token ids ``[count, length + 1]`` (int64) of the workload called ``name``."""
    if name not in WORKLOADS:
        raise ValueError(f"no workload {name!r}; the workloads are {', '.join(WORKLOADS)}")
    spec = WORKLOADS[name]
    return torch.tensor(documents(spec.seed, spec.count, spec.length + 1), dtype=torch.int64)


def load_tiny_lm() -> TinyLM:
    """The trained model in eval mode, its parameters frozen, loaded with ``weights_only=True``."""
    model = TinyLM(TinyLMConfig())
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    model.eval()
    model.requires_grad_(False)
    return model
