"""Where a run's model comes from: the Hub (from_pretrained) or a random init of a shipped architecture.

Random weights give the real model's memory and compute without downloading it (the Hub may be out of
reach); their loss says nothing about quality, and the records say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..jsonio import read_json
from ..plan.tune.memory_model import ModelSize, bloom_largest_layer_params
from .flops import bloom_parameter_count

ARCHITECTURES_DIR = Path(__file__).resolve().parent / "architectures"
RANDOM_WEIGHTS_NOTE = "random-init weights: loss says nothing about quality"


def available_architectures() -> list[str]:
    return sorted(path.stem for path in ARCHITECTURES_DIR.glob("*.json"))


def load_architecture(name: str) -> dict[str, Any]:
    path = ARCHITECTURES_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"model.architecture {name!r}: no {path.name} in {ARCHITECTURES_DIR}; "
                         f"shipped: {available_architectures()}")
    architecture = read_json(path, what="a shipped architecture")
    model_type = architecture.pop("model_type", "bloom")
    if model_type != "bloom":
        raise ValueError(f"{path}: model_type {model_type!r}; only BLOOM architectures are supported")
    return architecture


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
        raise ValueError(f"model.name {name!r}: no such directory (a directory written by save_pretrained)")
    if required_file and not (path / required_file).is_file():
        raise ValueError(f"model.name {name!r}: no {required_file} in it (a directory written by save_pretrained)")
    return str(path)


def model_config_dict(model: Mapping[str, Any]) -> dict[str, Any]:
    """The model's architecture as a plain dict, without building the model (FLOPs, tokenizer vocab)."""
    if model["weights"] == "random":
        return load_architecture(model["architecture"])
    from transformers import AutoConfig

    config: dict[str, Any] = AutoConfig.from_pretrained(pretrained_source(model["name"])).to_dict()
    return config


def build_model(model: Mapping[str, Any], seed: int, init_device: str | None = None) -> Any:
    """The causal LM in fp32 master weights; the Trainer/DeepSpeed apply fp16/bf16 mixed precision.

    Built through from_config/from_pretrained so that under ZeRO-3 (set up by TrainingArguments before this
    call) the weights are partitioned by zero.Init while they are created instead of after. `init_device`
    creates random weights directly there: initialising BLOOM-560m on the host took ~10 s of every H100 run.
    """
    import torch
    from transformers import AutoModelForCausalLM, BloomConfig

    if model["weights"] == "pretrained":
        # fp32 explicitly: transformers 5 loads the checkpoint's dtype by default, and fp16 master weights
        # break AMP's gradient unscaling.
        return AutoModelForCausalLM.from_pretrained(pretrained_source(model["name"]), dtype=torch.float32)
    torch.manual_seed(seed)
    config = BloomConfig(**load_architecture(model["architecture"]))
    with torch.device(init_device or "cpu"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def model_size(model: Mapping[str, Any]) -> ModelSize:
    """The size of a run's model (settings' `model` section) that its model states need."""
    architecture = model_config_dict(model)
    return ModelSize(n_params=bloom_parameter_count(architecture),
                     largest_layer_params=bloom_largest_layer_params(int(architecture["vocab_size"]),
                                                                     int(architecture["hidden_size"])))
