"""The model a config names: its transformers config, the checks before anything starts, and its shape.

The config comes from a shipped architecture (`model.architecture`: a name under run/architectures/ or a path to
a config.json) for random weights, or from the checkpoint (`model.name`, a Hub id or a save_pretrained directory)
for pretrained ones. Whatever the family, the shape is counted on the meta device: AutoModelForCausalLM builds
the model there without allocating a weight, so the count is exact (tied heads, grouped-query attention, biases,
norms) and does not depend on ZeRO-3 partitioning the weights a rank holds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonio import read_json
from .tune.memory_model import ModelSize

# Data, not code: the architectures a random-init model can be built from.
ARCHITECTURES_DIR = Path(__file__).resolve().parents[1] / "run" / "architectures"
# Config keys that give a mixture-of-experts model its experts (Mixtral/PhiMoE, Qwen2-MoE/OLMoE/Jamba, DeepSeek,
# others): only some experts' weights work per token, which the FLOP and memory accounting do not model yet.
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


class ModelError(ValueError):
    """A model that cannot run, with the config key at fault first."""


def shipped_architectures() -> list[str]:
    return sorted(path.stem for path in ARCHITECTURES_DIR.glob("*.json"))


def is_architecture_path(architecture: str) -> bool:
    """A path to a config.json (anything with a '/' or ending in .json) rather than a shipped name."""
    return "/" in architecture or architecture.endswith(".json") or architecture.startswith("~")


def architecture_file(architecture: str) -> Path:
    """The config.json `model.architecture` names: a shipped architecture's file, or the path given (relative
    paths from the working directory, where Snakemake and the ranks run)."""
    if is_architecture_path(architecture):
        path = Path(architecture).expanduser()
        if not path.is_file():
            raise ModelError(f"model.architecture: {architecture!r}: no such file (a config.json, or one of the "
                             f"shipped {shipped_architectures()})")
        return path
    path = ARCHITECTURES_DIR / f"{architecture}.json"
    if not path.is_file():
        raise ModelError(f"model.architecture: {architecture!r} is not shipped (weights: random builds one of "
                         f"{shipped_architectures()}, or give a path to a config.json)")
    return path


def is_local_path(name: str | None) -> bool:
    """A local directory (absolute, or starting with . or ~) rather than a Hub id."""
    return bool(name) and (str(name).startswith((".", "~")) or Path(str(name)).is_absolute())


def pretrained_source(name: str, required_file: str | None = "config.json") -> str:
    """model.name as from_pretrained takes it: a Hub id (`bigscience/bloom-560m`, served from the Hub cache under
    HF_HUB_OFFLINE=1) or a local directory written by save_pretrained (absolute, or starting with . or ~), which
    is checked here so that a typo is named instead of being looked up on the Hub."""
    if not is_local_path(name):
        return name
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"model.name {name!r}: no such directory (a directory written by save_pretrained)")
    if required_file and not (path / required_file).is_file():
        raise ModelError(f"model.name {name!r}: no {required_file} in it (a directory written by save_pretrained)")
    return str(path)


def model_label(model: Mapping[str, Any]) -> str:
    """The model as tables, plots, the tune recommendation and summary.md name it: a pretrained checkpoint by its
    `model.name`, random weights by the architecture they were built from ("bloom-560m (random init)")."""
    if model.get("weights") == "pretrained":
        return str(model["name"])
    architecture = str(model.get("architecture"))
    return f"{Path(architecture).stem if is_architecture_path(architecture) else architecture} (random init)"


def config_key(model: Mapping[str, Any]) -> str:
    """The config key the model's shape comes from."""
    return "model.architecture" if model["weights"] == "random" else "model.name"


def architecture_config(architecture: str) -> Any:
    """The transformers config of a shipped architecture or a config.json path."""
    from transformers import AutoConfig

    path = architecture_file(architecture)
    fields = dict(read_json(path, what="a model config"))
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise ModelError(f"model.architecture: {path} has no model_type (the transformers family, e.g. 'llama')")
    try:
        return AutoConfig.for_model(model_type, **fields)
    except ValueError as error:
        raise ModelError(f"model.architecture: {path}: model_type {model_type!r} is not one transformers "
                         f"knows ({error})") from error


def model_config(model: Mapping[str, Any], local_files_only: bool = False) -> Any:
    """The transformers config of a run's model (settings' `model` section), without building the model.
    local_files_only: a Hub id only from the Hub cache (the plan's checks never download)."""
    if model["weights"] == "random":
        return architecture_config(model["architecture"])
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(pretrained_source(model["name"]), local_files_only=local_files_only)
    except ValueError as error:  # a config.json transformers cannot read (no or an unknown model_type)
        raise ModelError(f"model.name {model['name']!r}: {error}") from error


def config_refusal(config: Any) -> str | None:
    """Why this config cannot be a run's model (not a causal LM AutoModelForCausalLM builds, a mixture of
    experts), or None."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return (f"model_type {config.model_type!r} is not a causal LM that AutoModelForCausalLM builds "
                "(fine-tuning here trains next-token prediction)")
    # the first key found: some are aliases of one another (Mixtral's num_experts is num_local_experts)
    experts = next(((key, count) for key in EXPERT_KEYS if (count := getattr(config, key, None))), None)
    if experts is not None and int(experts[1]) > 1:
        return (f"a mixture-of-experts model ({experts[0]} {experts[1]}): each token uses only some experts' "
                "weights, which the FLOP and memory accounting do not model yet")
    return None


def checked_config(model: Mapping[str, Any], local_files_only: bool = False) -> Any:
    """model_config, refused with the key at fault when config_refusal finds a reason."""
    config = model_config(model, local_files_only)
    reason = config_refusal(config)
    if reason is not None:
        raise ModelError(f"{config_key(model)}: {reason}")
    return config


def build_on_meta(config: Any, attention: str | None = None) -> Any:
    """The causal LM on the meta device: every parameter's shape, no memory."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():  # from_config would build it inside deepspeed.zero.Init
        raise RuntimeError("build the model on the meta device before TrainingArguments switch ZeRO-3 on")

    extra = {} if attention is None else {"attn_implementation": attention}
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, **extra)


def attention_refusal(config: Any, attention: str) -> str | None:
    """Why this model has no `attention` implementation (transformers' own reason: BLOOM has no SDPA path,
    flash_attention_2 needs the flash_attn package), or None."""
    try:
        build_on_meta(config, attention)
    except (ValueError, ImportError) as error:
        return str(error).split(". ")[0].rstrip(".")
    return None


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP and memory accounting need of a model, counted on the meta device."""

    model_type: str
    n_params: int  # every parameter once (a tied head is the embedding)
    matmul_params: int  # those that multiply every token: all but lookup-only embeddings (an untied input, positions)
    largest_layer_params: int  # one module's own parameters, the most of any (DeepSpeed's ZeRO-3 gathered layer)
    n_layers: int
    n_heads: int
    n_kv_heads: int  # grouped-query attention: fewer key/value heads (in the matmul parameters)
    head_dim: int
    vocab_size: int
    tied_head: bool

    @property
    def attention_width(self) -> int:
        """Query heads x head size: the width of the score and value products over the sequence."""
        return self.n_heads * self.head_dim

    def size(self) -> ModelSize:
        return ModelSize(n_params=self.n_params, largest_layer_params=self.largest_layer_params)


def _count(model: Any) -> tuple[int, int, int, bool]:
    """(parameters, matmul parameters, largest module's own parameters, tied head) of a built model."""
    from torch import nn

    unique = {id(parameter): parameter.numel() for parameter in model.parameters()}
    head = model.get_output_embeddings()
    head_weight = None if head is None else head.weight
    lookup = {id(parameter): parameter.numel() for module in model.modules() if isinstance(module, nn.Embedding)
              for parameter in module.parameters(recurse=False) if parameter is not head_weight}
    largest = max(sum(parameter.numel() for parameter in module.parameters(recurse=False))
                  for module in model.modules())
    tied = head_weight is not None and head_weight is model.get_input_embeddings().weight
    return sum(unique.values()), sum(unique.values()) - sum(lookup.values()), largest, tied


@functools.lru_cache(maxsize=32)
def _shape_of(config_json: str) -> ModelShape:
    from transformers import AutoConfig

    fields = json.loads(config_json)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    n_params, matmul_params, largest, tied = _count(build_on_meta(config))
    n_heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // n_heads
    return ModelShape(model_type=config.model_type, n_params=n_params, matmul_params=matmul_params,
                      largest_layer_params=largest, n_layers=int(config.num_hidden_layers), n_heads=n_heads,
                      n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
                      head_dim=int(head_dim), vocab_size=int(config.vocab_size), tied_head=tied)


def config_shape(config: Any) -> ModelShape:
    """The shape of a transformers config (refused first if it is no model this project can account for)."""
    reason = config_refusal(config)
    if reason is not None:
        raise ModelError(reason)
    return _shape_of(json.dumps(config.to_dict(), sort_keys=True, default=str))


def model_shape(model: Mapping[str, Any]) -> ModelShape:
    """The shape of a run's model (settings' `model` section)."""
    return config_shape(checked_config(model))


def model_size(model: Mapping[str, Any]) -> ModelSize:
    """What the memory model's model states need of a run's model."""
    return model_shape(model).size()
