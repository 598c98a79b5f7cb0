"""Refuse a workflow config before anything is scheduled, with messages that start with the key at fault.

Two layers: the JSON schema (schemas/config.schema.yaml: types, ranges, unknown keys, safe SLURM strings),
then settings that only mean something together (GPU-only lever values such as fp16 and the device, data
source and path, batch and samples, GPUs per node and the cluster's nodes). The matrix and its studies are
checked by plan.matrix.build_plan.
docs/config-errors.md lists every refusal the tests exercise, with its message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from zerosweep.plan import levers, models
from zerosweep.plan.matrix import ConfigError, deep_merge

SOURCES_WITH_PATH = ("file", "squad")


def key_name(path: Sequence[Any]) -> str:
    """['studies', 'zero_stages', 'zero_stage', 1] -> 'studies.zero_stages.zero_stage[1]'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text or "(top level)"


def schema_errors(config: Mapping[str, Any], schema_path: Path) -> list[str]:
    """Every schema violation as '<key>: <what is wrong>', in key order."""
    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda error: key_name(error.absolute_path))
    return [f"{key_name(error.absolute_path)}: {error.message}" for error in errors]


def _run_settings(config: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(key prefix, data, training) of the global settings and of each study that overrides them."""
    yield "", dict(config["data"]), dict(config["training"])
    for name, study in config["studies"].items():
        if "data" in study or "training" in study:
            yield (f"studies.{name}.", deep_merge(config["data"], study.get("data") or {}),
                   deep_merge(config["training"], study.get("training") or {}))


def setting_errors(data: Mapping[str, Any], training: Mapping[str, Any], device: str) -> list[str]:
    """One run's data and training settings that cannot work together (also checked again at launch)."""
    errors = []
    for name, value in levers.run_values(training).items():  # precision fp16, the fused loss
        reason = levers.device_refusal(name, value, device)
        if reason is not None:
            errors.append(f"training.{name}: {reason}")
    source, path = data["source"], data.get("path")
    if source == "file" and not path:
        errors.append("data.path: required when data.source is 'file' (a SQuAD-format JSON file)")
    if path and source not in SOURCES_WITH_PATH:
        errors.append(f"data.path: {path!r} is set, but data.source '{source}' reads no file "
                      f"(path applies to {', '.join(SOURCES_WITH_PATH)})")
    per_step = training["per_device_batch_size"] * training["gradient_accumulation_steps"]
    if data["samples_per_gpu"] < per_step:
        errors.append(f"data.samples_per_gpu: {data['samples_per_gpu']} samples per GPU make no optimizer "
                      f"step of training.per_device_batch_size x gradient_accumulation_steps = {per_step}")
    max_steps = training.get("max_steps")
    if max_steps is not None and training.get("warmup_steps", 0) >= max_steps:
        errors.append(f"training.warmup_steps: {training['warmup_steps']} warm-up steps leave no measured "
                      f"step of training.max_steps {max_steps}")
    return errors


def lever_axis_errors(config: Mapping[str, Any]) -> list[str]:
    """Values a study sweeps that cannot run on the config's device, as 'studies.<study>.<lever>[i]: <why>'."""
    errors = []
    for name, study in config["studies"].items():
        for lever in levers.LEVERS:
            for index, value in enumerate(study.get(lever) or ()):
                reason = levers.device_refusal(lever, value, config["runtime"]["device"])
                if reason is not None:
                    errors.append(f"{key_name(['studies', name, lever, index])}: {reason}")
    return errors


def attention_values(config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, value) of every attention implementation a run of this config may use."""
    yield "training.attention", levers.run_values(config["training"])["attention"]
    for name, study in config["studies"].items():
        if "attention" in (study.get("training") or {}):
            yield f"studies.{name}.training.attention", study["training"]["attention"]
        for index, value in enumerate(study.get("attention") or ()):
            yield key_name(["studies", name, "attention", index]), value


def model_errors(config: Mapping[str, Any]) -> list[str]:
    """The model and what it is asked to do: a causal LM AutoModelForCausalLM builds (not a mixture of experts),
    the checkpoint's own tokenizer for pretrained weights, and each attention implementation it has. A Hub id
    outside the Hub cache is checked by the run when it loads the config (planning never downloads)."""
    model = config["model"]
    errors = []
    if model["weights"] == "pretrained" and model["tokenizer"] == "local":
        errors.append(f"model.tokenizer: local trains a new tokenizer whose ids mean nothing to the pretrained "
                      f"weights of {model['name']!r}; use tokenizer: hub (the checkpoint's own)")
    attention = list(attention_values(config))
    if model["weights"] == "random" and not models.is_architecture_path(model["architecture"]) \
            and all(value == levers.LEVERS["attention"].default for _, value in attention):
        # A shipped shape with eager attention: nothing to refuse (tests/test_model_families.py checks each
        # shipped shape), so every Snakemake start skips importing transformers for it (about 3 s).
        try:
            models.architecture_file(model["architecture"])
        except models.ModelError as error:
            return [*errors, str(error)]
        return errors
    try:
        model_config = models.checked_config(model, local_files_only=True)
    except models.ModelError as error:
        return [*errors, str(error)]
    except OSError:  # a Hub id not in the cache
        return errors
    device = config["runtime"]["device"]
    for key, value in attention:
        if levers.device_refusal("attention", value, device) is not None:
            continue  # named by the device checks
        reason = models.attention_refusal(model_config, value)
        if reason is not None:
            errors.append(f"{key}: {value} is not available for {models.config_key(model)} "
                          f"({model_config.model_type}): {reason}")
    return errors


def semantic_errors(config: Mapping[str, Any]) -> list[str]:
    """Settings of a schema-valid config that contradict each other, as '<key>: <why>'."""
    errors = model_errors(config)
    errors += lever_axis_errors(config)
    shared: set[str] = set()
    for prefix, data, training in _run_settings(config):
        found = setting_errors(data, training, config["runtime"]["device"])
        if not prefix:
            shared = set(found)
        # a study repeats the global settings it does not override: name only what the study itself causes
        errors += [f"{prefix}{error}" for error in found if not prefix or error not in shared]
    node_gpus = config["slurm"].get("max_gpus_per_node")
    if node_gpus is not None:
        too_many = [count for count in config["matrix"]["gpus_per_node"] if count > node_gpus]
        if too_many:
            errors.append(f"matrix.gpus_per_node: {too_many} exceed slurm.max_gpus_per_node {node_gpus} "
                          "(the GPUs one node has)")
    return errors


def check_config(config: Mapping[str, Any], schema_path: Path) -> None:
    """Raise ConfigError listing every problem (one per line), schema first: meaning is only checked on a
    config of the right shape."""
    errors = schema_errors(config, schema_path) or semantic_errors(config)
    if errors:
        raise ConfigError("\n".join(errors))
