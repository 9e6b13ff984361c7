"""The Lab 07 model: a two-layer causal transformer whose forward takes fake-quantization hooks.

nanoGPT-shaped and small (123,136 parameters): token and learned position embeddings, then
``num_layers`` pre-LayerNorm blocks (multi-head causal self-attention, a GELU MLP), a final
LayerNorm and an output head. The quantization targets of Lab 07 are the four ``nn.Linear``
layers of every block; the embeddings, LayerNorms and output head stay in float32, as weight-only
schemes such as GPTQ and AWQ leave them.

``forward(tokens, weight=..., activation=..., kv=...)`` takes three optional hooks, each one
target of quantization:

* ``weight(name, w)``: the weight ``[out_features, in_features]`` of the Linear called ``name``
  (``"blocks.0.attn.qkv"``, ``"blocks.0.attn.out"``, ``"blocks.0.mlp.up"``,
  ``"blocks.0.mlp.down"``, then ``"blocks.1...."``), returns the weight to use;
* ``activation(name, x)``: the input ``[batch, tokens, in_features]`` entering that Linear,
  returns the input to use;
* ``kv(layer, k, v)``: the keys and values of every token of the sequence, ``[batch, heads,
  tokens, head_dim]`` each, as a prefill writes them into the cache of block ``layer``; returns
  ``(k, v)`` as the cache holds them. Every query then attends (causally) to those keys and
  values: the cache as the prompt left it.

Without hooks the forward is the float model. ``TinyLMConfig`` names its sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

WeightHook = Callable[[str, Tensor], Tensor]
ActivationHook = Callable[[str, Tensor], Tensor]
KVHook = Callable[[int, Tensor, Tensor], "tuple[Tensor, Tensor]"]


@dataclass(frozen=True)
class TinyLMConfig:
    vocab_size: int = 61
    max_positions: int = 256
    hidden_size: int = 64
    num_heads: int = 4
    num_layers: int = 2
    intermediate_size: int = 256

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class Block(nn.Module):
    """One pre-LayerNorm transformer block; every Linear runs through :meth:`linear` so hooks see it."""

    def __init__(self, config: TinyLMConfig, index: int):
        super().__init__()
        self.index, self.config = index, config
        d = config.hidden_size
        self.ln_1 = nn.LayerNorm(d)
        self.ln_2 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.up = nn.Linear(d, config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, d, bias=False)

    def names(self) -> dict[str, nn.Linear]:
        """The block's Linears under the names the hooks receive."""
        prefix = f"blocks.{self.index}"
        return {f"{prefix}.attn.qkv": self.qkv, f"{prefix}.attn.out": self.out, f"{prefix}.mlp.up": self.up, f"{prefix}.mlp.down": self.down}

    def forward(self, x: Tensor, weight: WeightHook | None, activation: ActivationHook | None, kv: KVHook | None) -> Tensor:
        linears = self.names()
        names = list(linears)

        def linear(name: str, inputs: Tensor) -> Tensor:
            w = linears[name].weight
            if weight is not None:
                w = weight(name, w.detach())  # a plain tensor, not the Parameter: hooks get data
            if activation is not None:
                inputs = activation(name, inputs)
            return F.linear(inputs, w)

        batch, tokens, d = x.shape
        heads, head_dim = self.config.num_heads, self.config.head_dim
        qkv = linear(names[0], self.ln_1(x))  # (B, T, 3d)
        q, k, v = (part.view(batch, tokens, heads, head_dim).transpose(1, 2) for part in qkv.split(d, dim=2))  # (B, nh, T, hd)
        if kv is not None:
            k, v = kv(self.index, k, v)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
        x = x + linear(names[1], attended.transpose(1, 2).reshape(batch, tokens, d))
        return x + linear(names[3], F.gelu(linear(names[2], self.ln_2(x))))


class TinyLM(nn.Module):
    """The causal LM: ``model(tokens)`` -> logits ``[batch, tokens, vocab_size]`` for the next token."""

    def __init__(self, config: TinyLMConfig = TinyLMConfig()):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.hidden_size)
        self.pos_emb = nn.Embedding(config.max_positions, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def linear_names(self) -> list[str]:
        """Every quantizable Linear, in forward order: ``["blocks.0.attn.qkv", ..., "blocks.1.mlp.down"]``."""
        return [name for block in self.blocks for name in block.names()]

    def linear_weight(self, name: str) -> Tensor:
        """The float weight ``[out_features, in_features]`` of the Linear called ``name``."""
        for block in self.blocks:
            if name in block.names():
                return block.names()[name].weight
        raise KeyError(f"no Linear called {name!r}; the model's Linears are {self.linear_names()}")

    def forward(self, tokens: Tensor, weight: WeightHook | None = None, activation: ActivationHook | None = None, kv: KVHook | None = None) -> Tensor:
        batch, length = tokens.shape
        if length > self.config.max_positions:
            raise ValueError(f"sequences of {length} tokens are longer than the model's {self.config.max_positions} positions")
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(length, device=tokens.device))  # (B, T, d)
        for block in self.blocks:
            x = block(x, weight, activation, kv)
        return self.head(self.ln_f(x))  # (B, T, vocab)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def init_weights(model: TinyLM) -> None:
    """GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 × layers)."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * model.config.num_layers) if name.endswith(("out.weight", "down.weight")) else 0.02
            nn.init.normal_(p, 0.0, std)
