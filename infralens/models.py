"""Model configurations, with Hugging Face ``config.json`` field names, and a registry of real presets.

This is given data, not a lab answer: a :class:`ModelConfig` says what a model *is* (layers,
heads, sizes, which tensors carry biases, how many norms, which layers slide, how experts are
routed); what it *costs* (parameters, bytes, KV cache) is for the labs to compute.

    >>> from infralens.models import preset
    >>> cfg = preset("llama-3-8b")
    >>> cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
    (32, 8, 128)
    >>> preset("gemma-2-9b").layer_window(0), preset("gemma-2-9b").layer_window(1)
    (4096, None)

Any real ``config.json`` loads with :meth:`ModelConfig.from_hf_config`; a missing or invalid field
raises ``ValueError`` naming it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

REQUIRED_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")

# transformers' ``attribute_map``: older configs (GPT-2, GPT-J) spell the standard fields differently.
# ``n_inner`` is GPT-2's MLP width; GPT2Config leaves it None and the MLP then uses 4 × n_embd.
ATTRIBUTE_MAP = {
    "num_hidden_layers": "n_layer",
    "hidden_size": "n_embd",
    "num_attention_heads": "n_head",
    "max_position_embeddings": "n_positions",
    "intermediate_size": "n_inner",
}

# transformers' per-architecture default for ``tie_word_embeddings`` when config.json omits it
# (PretrainedConfig defaults to True; these architectures override it).
UNTIED_BY_DEFAULT = frozenset({"llama", "mistral", "mixtral", "qwen2", "phi3", "deepseek_v3"})

LAYER_TYPES = ("full_attention", "sliding_attention")
NORM_TYPES = ("rms_norm", "layer_norm")

_POSITIVE_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "norms_per_layer")
_OPTIONAL_POSITIVE_FIELDS = (
    "max_position_embeddings", "sliding_window", "published_parameters",
    "num_local_experts", "n_routed_experts", "moe_intermediate_size", "num_experts_per_tok",
    "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
)
_BOOL_FIELDS = ("tie_word_embeddings", "attention_bias", "attention_output_bias", "mlp_bias", "gated_mlp", "learned_position_embeddings")
_MLA_FIELDS = ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture facts the labs need, named as in Hugging Face ``config.json``.

    Attention
      ``head_dim`` is explicit in recent configs; when absent it is ``hidden_size // num_attention_heads``
      (for MLA it is the query/key head width ``qk_nope_head_dim + qk_rope_head_dim``).
      ``num_key_value_heads`` equals ``num_attention_heads`` for MHA, is smaller for GQA and 1 for MQA;
      an MLA config keeps whatever its file says (DeepSeek-V3: 128), which is not what its cache holds.
      ``attention_bias``: the q, k and v projections carry a bias. ``attention_output_bias``: the
      output projection (o_proj, GPT-2's c_proj) carries one. Llama's ``attention_bias`` sets both;
      Qwen2 hard-codes q/k/v biases without an o_proj bias; GPT-2 has both.

    Sliding windows
      ``sliding_window`` is the window length W (a sliding layer attends to at most the last W tokens),
      ``None`` when no layer slides (a Qwen2 config with ``use_sliding_window: false`` loads as ``None``).
      ``layer_types`` names each layer "full_attention" or "sliding_attention" (transformers' names);
      ``None`` means every layer is the same. Ask :meth:`layer_window` rather than reading either field.

    MLP, norms, embeddings
      ``gated_mlp``: three matrices (gate_proj, up_proj, down_proj, as in Llama; Phi-3 fuses gate and
      up into one ``gate_up_proj`` of the same size) instead of two (GPT-2's c_fc, c_proj).
      ``mlp_bias``: every MLP matrix carries a bias. ``norm_type`` is "rms_norm" (a weight of
      ``hidden_size``) or "layer_norm" (weight and bias); ``norms_per_layer`` counts the norms over
      ``hidden_size`` in one decoder layer (2; Gemma-2 has 4), plus one final norm after the last layer.
      ``learned_position_embeddings``: a ``max_position_embeddings × hidden_size`` table (GPT-2's wpe)
      instead of RoPE. ``tie_word_embeddings``: lm_head reuses the input embedding matrix.

    Mixture of experts (``None`` for dense models)
      Mixtral names its experts ``num_local_experts`` (each expert an MLP of ``intermediate_size``);
      DeepSeek names them ``n_routed_experts`` (each of ``moe_intermediate_size``), adds
      ``n_shared_experts`` that every token uses, and keeps the first ``first_k_dense_replace`` layers
      dense (an MLP of ``intermediate_size``). ``num_experts_per_tok`` routed experts run per token.
      The router is a bias-free ``hidden_size → experts`` linear; ``topk_method == "noaux_tc"``
      (DeepSeek-V3) adds a per-expert routing bias (``e_score_correction_bias``, one number per expert).
      The properties :attr:`routed_experts`, :attr:`expert_intermediate_size` and :meth:`is_moe_layer`
      hide the two spellings.

    Multi-head latent attention (MLA, DeepSeek-V2/V3; ``None`` otherwise)
      ``q_lora_rank``: queries go through a low-rank bottleneck (``None``: a plain q_proj);
      ``kv_lora_rank``: keys and values are rebuilt from a shared latent of this width;
      ``qk_nope_head_dim`` + ``qk_rope_head_dim``: each query/key head's width without and with RoPE
      (the RoPE part of the key is shared by all heads); ``v_head_dim``: each value head's width.
      DeepSeek-V3's multi-token-prediction module (``num_nextn_predict_layers``) is not described.

    ``published_parameters`` is the total a model card or paper reports, kept as data to check
    computations against; ``None`` if unknown (DeepSeek-V3's is the rounded "671B").
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
    layer_types: tuple[str, ...] | None = None
    attention_output_bias: bool = False
    mlp_bias: bool = False
    gated_mlp: bool = True
    norm_type: str = "rms_norm"
    norms_per_layer: int = 2
    learned_position_embeddings: bool = False
    num_local_experts: int | None = None
    n_routed_experts: int | None = None
    n_shared_experts: int | None = None
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int | None = None
    num_experts_per_tok: int | None = None
    topk_method: str | None = None
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None

    def __post_init__(self) -> None:
        for field_name in _POSITIVE_FIELDS:
            _require_positive_int(self.name, field_name, getattr(self, field_name))
        for field_name in _OPTIONAL_POSITIVE_FIELDS:
            value = getattr(self, field_name)
            if value is not None:
                _require_positive_int(self.name, field_name, value)
        for field_name in _BOOL_FIELDS:
            _require_bool(self.name, field_name, getattr(self, field_name))
        for field_name in ("n_shared_experts", "first_k_dense_replace"):
            value = getattr(self, field_name)
            if value is not None:
                _require_non_negative_int(self.name, field_name, value)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"{self.name}: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}; each KV head must serve a whole group of query heads"
            )
        if self.norm_type not in NORM_TYPES:
            raise ValueError(f"{self.name}: norm_type must be one of {', '.join(NORM_TYPES)}, got {self.norm_type!r}")
        if self.learned_position_embeddings and self.max_position_embeddings is None:
            raise ValueError(f"{self.name}: learned_position_embeddings needs max_position_embeddings, the number of rows of the position table")
        self._check_layer_types()
        self._check_experts()
        if self.kv_lora_rank is not None:
            missing = [field_name for field_name in _MLA_FIELDS if getattr(self, field_name) is None]
            if missing:
                raise ValueError(f"{self.name}: kv_lora_rank={self.kv_lora_rank} (MLA) also needs {', '.join(missing)}")

    def _check_layer_types(self) -> None:
        if self.layer_types is None:
            return
        if isinstance(self.layer_types, (str, bytes)) or not isinstance(self.layer_types, (list, tuple)):
            raise ValueError(f"{self.name}: layer_types must be a list of strings, got {self.layer_types!r}")
        object.__setattr__(self, "layer_types", tuple(self.layer_types))  # a list from JSON becomes hashable
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"{self.name}: layer_types has {len(self.layer_types)} entries but num_hidden_layers={self.num_hidden_layers}; "
                "one entry per layer"
            )
        unknown = sorted({kind for kind in self.layer_types if kind not in LAYER_TYPES}, key=str)
        if unknown:
            raise ValueError(f"{self.name}: layer_types holds {', '.join(map(repr, unknown))}; each entry must be one of {', '.join(LAYER_TYPES)}")
        if "sliding_attention" in self.layer_types and self.sliding_window is None:
            raise ValueError(f"{self.name}: layer_types has sliding_attention layers but sliding_window is None; give the window length")

    def _check_experts(self) -> None:
        if self.num_local_experts is not None and self.n_routed_experts is not None:
            raise ValueError(
                f"{self.name}: both num_local_experts={self.num_local_experts} and n_routed_experts={self.n_routed_experts} are set; "
                "a config names its experts one way"
            )
        experts = self.routed_experts
        if experts is None:
            return
        if self.num_experts_per_tok is None:
            raise ValueError(f"{self.name}: a model with {experts} experts needs num_experts_per_tok (experts used per token)")
        if self.num_experts_per_tok > experts:
            raise ValueError(f"{self.name}: num_experts_per_tok={self.num_experts_per_tok} exceeds the {experts} routed experts")
        if self.first_k_dense_replace is not None and self.first_k_dense_replace > self.num_hidden_layers:
            raise ValueError(
                f"{self.name}: first_k_dense_replace={self.first_k_dense_replace} exceeds num_hidden_layers={self.num_hidden_layers}"
            )

    @property
    def queries_per_kv_head(self) -> int:
        """How many query heads share one KV head: 1 for MHA, num_attention_heads for MQA."""
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def is_mla(self) -> bool:
        """Whether attention is multi-head latent attention (keys and values rebuilt from ``kv_lora_rank``)."""
        return self.kv_lora_rank is not None

    @property
    def routed_experts(self) -> int | None:
        """Routed experts per MoE layer (Mixtral's ``num_local_experts`` or DeepSeek's ``n_routed_experts``); ``None`` if dense."""
        return self.num_local_experts if self.num_local_experts is not None else self.n_routed_experts

    @property
    def expert_intermediate_size(self) -> int | None:
        """Each routed (and shared) expert's MLP width: ``moe_intermediate_size``, else ``intermediate_size`` (Mixtral); ``None`` if dense."""
        if self.routed_experts is None:
            return None
        return self.moe_intermediate_size if self.moe_intermediate_size is not None else self.intermediate_size

    def is_moe_layer(self, layer_index: int) -> bool:
        """Whether layer ``layer_index`` (0-based) has experts; DeepSeek keeps its first ``first_k_dense_replace`` layers dense."""
        self._check_layer_index(layer_index)
        return self.routed_experts is not None and layer_index >= (self.first_k_dense_replace or 0)

    def layer_window(self, layer_index: int) -> int | None:
        """The attention window of layer ``layer_index`` (0-based): ``sliding_window`` if it slides, ``None`` for full attention.

        ``layer_types`` decides when present (Gemma-2: even layers slide); otherwise every layer slides
        when ``sliding_window`` is set (Mistral-7B-v0.1, Phi-3) and none does when it is ``None``.
        """
        self._check_layer_index(layer_index)
        if self.layer_types is not None:
            return self.sliding_window if self.layer_types[layer_index] == "sliding_attention" else None
        return self.sliding_window

    def _check_layer_index(self, layer_index: int) -> None:
        if type(layer_index) is int and 0 <= layer_index < self.num_hidden_layers:  # the common case, first: labs ask per layer
            return
        if isinstance(layer_index, bool) or not isinstance(layer_index, int) or not 0 <= layer_index < self.num_hidden_layers:
            raise ValueError(f"{self.name}: layer_index must be an integer in [0, {self.num_hidden_layers}), got {layer_index!r}")

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any] | str | Path, name: str | None = None) -> "ModelConfig":
        """Build a config from a ``config.json`` (a path to it, or the parsed dict).

        Older spellings load through transformers' attribute map (GPT-2's ``n_layer``, ``n_embd``,
        ``n_head``, ``n_positions``, ``n_inner``). Facts that transformers hard-codes per architecture
        rather than storing in the file (GPT-2's biases and LayerNorm, Qwen2's q/k/v biases, Gemma-2's
        four norms and alternating windows) are derived from ``model_type``; a dict may also name
        them with this class's field names (``attention_output_bias``, ``gated_mlp``, ``norm_type``,
        ``norms_per_layer``, ``learned_position_embeddings``), so ``dataclasses.asdict`` round-trips.
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
        model_type = str(config.get("model_type", "unknown"))
        config = {**{field: config[alias] for field, alias in ATTRIBUTE_MAP.items() if config.get(alias) is not None}, **config}
        if model_type == "gpt2" and config.get("intermediate_size") is None:
            config["intermediate_size"] = 4 * config["hidden_size"] if isinstance(config.get("hidden_size"), int) else None
        missing = [key if key not in ATTRIBUTE_MAP else f"{key} (or {ATTRIBUTE_MAP[key]})" for key in REQUIRED_FIELDS if config.get(key) is None]
        if missing:
            raise ValueError(f"{label}: config.json lacks {', '.join(missing)}; these fields are required to describe a decoder")
        heads = config["num_attention_heads"]
        _require_positive_int(label, "num_attention_heads", heads)
        _require_positive_int(label, "hidden_size", config["hidden_size"])
        head_dim = config.get("head_dim")
        if head_dim is None and config.get("kv_lora_rank") is not None:
            # MLA: a query/key head is its no-RoPE part plus its RoPE part (DeepSeek-V3: 128 + 64)
            _require_positive_int(label, "qk_nope_head_dim", config.get("qk_nope_head_dim"))
            _require_positive_int(label, "qk_rope_head_dim", config.get("qk_rope_head_dim"))
            head_dim = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
        if head_dim is None:
            if config["hidden_size"] % heads:
                raise ValueError(
                    f"{label}: config.json has no head_dim and hidden_size={config['hidden_size']} is not divisible by "
                    f"num_attention_heads={heads}; add head_dim"
                )
            head_dim = config["hidden_size"] // heads
        gpt2 = model_type == "gpt2"
        sliding_window = config.get("sliding_window")
        layer_types = config.get("layer_types")
        if model_type == "qwen2":
            # Qwen2Config: the window exists only with use_sliding_window, and then only from layer max_window_layers on
            if config.get("use_sliding_window") is not True:
                sliding_window = None
            elif layer_types is None and isinstance(config.get("max_window_layers"), int):
                layer_types = ["sliding_attention" if i >= config["max_window_layers"] else "full_attention" for i in range(config["num_hidden_layers"])]
        elif config.get("use_sliding_window") is False:
            sliding_window = None
        if model_type == "gemma2" and layer_types is None and isinstance(config["num_hidden_layers"], int):
            # Gemma2Config: layer i slides when (i + 1) % 2 == 1, i.e. layers 0, 2, 4, ...
            layer_types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(config["num_hidden_layers"])]
        if isinstance(layer_types, (list, tuple)) and "sliding_attention" not in layer_types:
            sliding_window = None  # no layer slides (Qwen2 with max_window_layers = every layer): no window at all
        # q/k/v biases: Llama-style configs say so in attention_bias; GPT-2 and Qwen2 hard-code them
        attention_bias = config.get("attention_bias", gpt2 or model_type == "qwen2")
        attention_output_bias = config.get("attention_output_bias", False if model_type == "qwen2" else config.get("attention_bias", gpt2))
        norm_type = config.get("norm_type")
        if norm_type is None:
            layer_norm_keys = "rms_norm_eps" not in config and ("layer_norm_epsilon" in config or "layer_norm_eps" in config)
            norm_type = "layer_norm" if gpt2 or layer_norm_keys else "rms_norm"
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
            tie_word_embeddings=config.get("tie_word_embeddings", model_type not in UNTIED_BY_DEFAULT),
            attention_bias=attention_bias,
            max_position_embeddings=config.get("max_position_embeddings"),
            sliding_window=sliding_window,
            layer_types=layer_types,
            attention_output_bias=attention_output_bias,
            mlp_bias=config.get("mlp_bias", gpt2),
            gated_mlp=config.get("gated_mlp", not gpt2),
            norm_type=norm_type,
            # Gemma-2 wraps attention and MLP each in a pre- and a post-norm
            norms_per_layer=config.get("norms_per_layer", 4 if model_type == "gemma2" else 2),
            learned_position_embeddings=config.get("learned_position_embeddings", gpt2),
            num_local_experts=config.get("num_local_experts"),
            n_routed_experts=config.get("n_routed_experts"),
            n_shared_experts=config.get("n_shared_experts"),
            moe_intermediate_size=config.get("moe_intermediate_size"),
            first_k_dense_replace=config.get("first_k_dense_replace"),
            num_experts_per_tok=config.get("num_experts_per_tok"),
            topk_method=config.get("topk_method"),
            q_lora_rank=config.get("q_lora_rank"),
            kv_lora_rank=config.get("kv_lora_rank"),
            qk_rope_head_dim=config.get("qk_rope_head_dim"),
            qk_nope_head_dim=config.get("qk_nope_head_dim"),
            v_head_dim=config.get("v_head_dim"),
        )


def _require_positive_int(label: str, field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{label}: {field_name} must be a positive integer, got {value!r}")


def _require_non_negative_int(label: str, field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{label}: {field_name} must be a non-negative integer, got {value!r}")


def _require_bool(label: str, field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{label}: {field_name} must be true or false, got {value!r}")
    return value


# Real configurations (the architecture fields of each model's Hugging Face config.json, verbatim
# names and values) and published parameter totals (model cards and papers).
_PRESETS: dict[str, tuple[dict[str, Any], int]] = {
    "gpt2": (
        # openai-community/gpt2: no n_inner in the file, so the MLP is 4 × n_embd = 3072 wide
        {
            "model_type": "gpt2",
            "n_layer": 12,
            "n_embd": 768,
            "n_head": 12,
            "n_positions": 1024,
            "n_ctx": 1024,
            "vocab_size": 50257,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-05,
        },
        124_439_808,
    ),
    "llama-2-7b": (
        {
            "model_type": "llama",
            "num_hidden_layers": 32,
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "intermediate_size": 11008,
            "vocab_size": 32000,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": False,
        },
        6_738_415_616,
    ),
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
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": False,
        },
        8_030_261_248,
    ),
    "llama-3-70b": (
        {
            "model_type": "llama",
            "num_hidden_layers": 80,
            "hidden_size": 8192,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "intermediate_size": 28672,
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": False,
        },
        70_553_706_496,
    ),
    "mistral-7b-v0.1": (
        {
            "model_type": "mistral",
            "num_hidden_layers": 32,
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "vocab_size": 32000,
            "max_position_embeddings": 32768,
            "sliding_window": 4096,
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": False,
        },
        7_241_732_096,
    ),
    "mixtral-8x7b": (
        {
            "model_type": "mixtral",
            "num_hidden_layers": 32,
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "vocab_size": 32000,
            "max_position_embeddings": 32768,
            "sliding_window": None,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": False,
        },
        46_702_792_704,
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
            "max_window_layers": 28,
            "rms_norm_eps": 1e-06,
            "tie_word_embeddings": False,
        },
        7_615_616_512,
    ),
    "gemma-2-9b": (
        {
            "model_type": "gemma2",
            "num_hidden_layers": 42,
            "hidden_size": 3584,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 256,
            "intermediate_size": 14336,
            "vocab_size": 256000,
            "max_position_embeddings": 8192,
            "sliding_window": 4096,
            # transformers' Gemma2Config: layer i slides when (i + 1) % 2 == 1
            "layer_types": ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(42)],
            "rms_norm_eps": 1e-06,
            "tie_word_embeddings": True,
        },
        9_241_705_984,
    ),
    "phi-3-mini-4k": (
        # microsoft/Phi-3-mini-4k-instruct: qkv_proj and gate_up_proj are fused, same sizes as separate ones
        {
            "model_type": "phi3",
            "num_hidden_layers": 32,
            "hidden_size": 3072,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "intermediate_size": 8192,
            "vocab_size": 32064,
            "max_position_embeddings": 4096,
            "sliding_window": 2047,
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": False,
        },
        3_821_079_552,
    ),
    "deepseek-v3": (
        {
            "model_type": "deepseek_v3",
            "num_hidden_layers": 61,
            "hidden_size": 7168,
            "num_attention_heads": 128,
            "num_key_value_heads": 128,
            "intermediate_size": 18432,
            "moe_intermediate_size": 2048,
            "vocab_size": 129280,
            "max_position_embeddings": 163840,
            "n_routed_experts": 256,
            "n_shared_experts": 1,
            "num_experts_per_tok": 8,
            "first_k_dense_replace": 3,
            "moe_layer_freq": 1,
            "topk_method": "noaux_tc",
            "q_lora_rank": 1536,
            "kv_lora_rank": 512,
            "qk_rope_head_dim": 64,
            "qk_nope_head_dim": 128,
            "v_head_dim": 128,
            "num_nextn_predict_layers": 1,
            "attention_bias": False,
            "rms_norm_eps": 1e-06,
            "tie_word_embeddings": False,
        },
        671_000_000_000,  # published as "671B" (without the multi-token-prediction module): rounded
    ),
}


def preset_names() -> list[str]:
    """The names :func:`preset` accepts, sorted."""
    return sorted(_PRESETS)


@functools.cache
def preset(name: str) -> ModelConfig:
    """A real model's configuration by name, e.g. ``preset("llama-3-8b")``; unknown names list the known ones.

    Built once per name and process (a config is frozen): checks ask for presets thousands of times.
    """
    try:
        config, published = _PRESETS[name]
    except KeyError:
        raise ValueError(f"no model preset {name!r}; presets: {', '.join(preset_names())}") from None
    model = ModelConfig.from_hf_config(config, name=name)
    return ModelConfig(**{**model.__dict__, "published_parameters": published})


def describe_preset(name: str) -> str:
    """One line for listings, e.g. ``infralens models``: the shape of a preset and its published size."""
    model = preset(name)
    attention = f"{model.num_attention_heads} heads / {model.num_key_value_heads} KV heads × {model.head_dim}"
    if model.is_mla:
        attention = f"MLA, {model.num_attention_heads} heads, kv_lora_rank {model.kv_lora_rank} + rope {model.qk_rope_head_dim}"
    parts = [f"{model.num_hidden_layers} layers", f"hidden {model.hidden_size}", attention, f"vocab {model.vocab_size}"]
    if model.routed_experts is not None:
        parts.append(f"{model.routed_experts} experts, {model.num_experts_per_tok} per token")
    if model.sliding_window is not None:
        parts.append(f"window {model.sliding_window}" + (" on alternate layers" if model.layer_types else ""))
    return f"{name} ({model.model_type}): " + ", ".join(parts) + f"; published {model.published_parameters / 1e9:.3g}B parameters"
