"""Model configurations, with Hugging Face ``config.json`` field names, and a registry of real presets.

This is given data, not a lab answer: a :class:`ModelConfig` says what a model *is* (layers,
heads, sizes); what it *costs* (parameters, bytes, KV cache) is for the labs to compute.

    >>> from infralens.models import preset
    >>> cfg = preset("llama-3-8b")
    >>> cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
    (32, 8, 128)

Any real ``config.json`` loads with :meth:`ModelConfig.from_hf_config`; a missing or invalid field
raises ``ValueError`` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

REQUIRED_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")

# transformers' per-architecture default for ``tie_word_embeddings`` when config.json omits it
# (PretrainedConfig defaults to True; these architectures override it).
UNTIED_BY_DEFAULT = frozenset({"llama", "mistral", "mixtral", "qwen2", "phi3", "deepseek_v3"})


@dataclass(frozen=True)
class ModelConfig:
    """The architecture facts the labs need, named as in Hugging Face ``config.json``.

    ``head_dim`` is explicit in recent configs; when absent it is ``hidden_size // num_attention_heads``.
    ``num_key_value_heads`` equals ``num_attention_heads`` for MHA, is smaller for GQA and 1 for MQA.
    ``sliding_window`` is ``None`` when every layer attends to the whole context (a Qwen2 config
    with ``use_sliding_window: false`` loads as ``None``). ``published_parameters`` is the total a
    model card or paper reports, kept as data to check computations against; ``None`` if unknown.
    """

    name: str
    model_type: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    max_position_embeddings: int | None = None
    sliding_window: int | None = None
    published_parameters: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size"):
            _require_positive_int(self.name, field_name, getattr(self, field_name))
        for field_name in ("max_position_embeddings", "sliding_window", "published_parameters"):
            value = getattr(self, field_name)
            if value is not None:
                _require_positive_int(self.name, field_name, value)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"{self.name}: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}; each KV head must serve a whole group of query heads"
            )

    @property
    def queries_per_kv_head(self) -> int:
        """How many query heads share one KV head: 1 for MHA, num_attention_heads for MQA."""
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any] | str | Path, name: str | None = None) -> "ModelConfig":
        """Build a config from a ``config.json`` (a path to it, or the parsed dict).

        Raises ``ValueError`` naming the field when a required field is missing or has an
        invalid value, so a learner knows exactly what to fix in their file.
        """
        if isinstance(config, (str, Path)):
            path = Path(config)
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ValueError(f"no config file at {path}") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
            name = name or path.parent.name or path.stem
        if not isinstance(config, Mapping):
            raise ValueError(f"a model config must be a JSON object (a dict), got {type(config).__name__}")
        label = name or str(config.get("_name_or_path") or config.get("model_type") or "config")
        missing = [key for key in REQUIRED_FIELDS if key not in config]
        if missing:
            raise ValueError(f"{label}: config.json lacks {', '.join(missing)}; these fields are required to describe a decoder")
        heads = config["num_attention_heads"]
        _require_positive_int(label, "num_attention_heads", heads)
        _require_positive_int(label, "hidden_size", config["hidden_size"])
        head_dim = config.get("head_dim")
        if head_dim is None:
            if config["hidden_size"] % heads:
                raise ValueError(
                    f"{label}: config.json has no head_dim and hidden_size={config['hidden_size']} is not divisible by "
                    f"num_attention_heads={heads}; add head_dim"
                )
            head_dim = config["hidden_size"] // heads
        model_type = str(config.get("model_type", "unknown"))
        sliding_window = config.get("sliding_window")
        if config.get("use_sliding_window") is False:
            sliding_window = None
        return cls(
            name=label,
            model_type=model_type,
            num_hidden_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            intermediate_size=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            tie_word_embeddings=_require_bool(label, "tie_word_embeddings", config.get("tie_word_embeddings", model_type not in UNTIED_BY_DEFAULT)),
            attention_bias=_require_bool(label, "attention_bias", config.get("attention_bias", model_type == "qwen2")),
            max_position_embeddings=config.get("max_position_embeddings"),
            sliding_window=sliding_window,
        )


def _require_positive_int(label: str, field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{label}: {field_name} must be a positive integer, got {value!r}")


def _require_bool(label: str, field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{label}: {field_name} must be true or false, got {value!r}")
    return value


# Real configurations (values from each model's Hugging Face config.json) and published totals.
_PRESETS: dict[str, tuple[dict[str, Any], int]] = {
    "llama-3-8b": (
        {
            "model_type": "llama",
            "num_hidden_layers": 32,
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 14336,
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
        },
        8_030_261_248,
    ),
    "qwen2.5-7b": (
        {
            "model_type": "qwen2",
            "num_hidden_layers": 28,
            "hidden_size": 3584,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "intermediate_size": 18944,
            "vocab_size": 152064,
            "max_position_embeddings": 131072,
            "sliding_window": 131072,
            "use_sliding_window": False,
            "tie_word_embeddings": False,
        },
        7_615_616_512,
    ),
}


def preset_names() -> list[str]:
    """The names :func:`preset` accepts, sorted."""
    return sorted(_PRESETS)


def preset(name: str) -> ModelConfig:
    """A real model's configuration by name, e.g. ``preset("llama-3-8b")``; unknown names list the known ones."""
    try:
        config, published = _PRESETS[name]
    except KeyError:
        raise ValueError(f"no model preset {name!r}; presets: {', '.join(preset_names())}") from None
    model = ModelConfig.from_hf_config(config, name=name)
    return ModelConfig(**{**model.__dict__, "published_parameters": published})
