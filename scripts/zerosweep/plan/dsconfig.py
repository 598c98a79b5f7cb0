"""Render a run's DeepSpeed config from the one template, `ds_template.json` beside this module (package data).

Every value the Hugging Face Trainer also sets (batch sizes, optimizer hyper-parameters, precision,
clipping) stays "auto", so the Trainer fills it from TrainingArguments and its ds_config/argument
mismatch check can never fire. Only the ZeRO section comes from the matrix point, and the optimizer lever
(plan.levers) decides whether the "optimizer" section stays: with `torch_fused` DeepSpeed wraps the Trainer's.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ..jsonio import write_json
from . import levers
from .matrix import MatrixPoint

# Package data, so that an installed (not editable) zerosweep finds it too; rules/common.smk names the same file.
TEMPLATE = resources.files("zerosweep.plan").joinpath("ds_template.json")
NAMED_CONFIG_DIR = Path("ds_configs")  # where `zerosweep ds-configs` writes, from the repository root

# The workshop's hand-run configs, by file name, and the matrix point each one is.
NAMED_CONFIGS: dict[str, tuple[int, str, bool]] = {
    "zero0": (0, "none", False),
    "zero1": (1, "none", False),
    "zero1_cpu_offload": (1, "cpu", False),
    "zero2": (2, "none", False),
    "zero2_cpu_offload": (2, "cpu", False),
    "zero2_cpu_offload_pinned_memory": (2, "cpu", True),
    "zero3": (3, "none", False),
    "zero3_cpu_offload": (3, "cpu", False),
}


def load_template() -> dict[str, Any]:
    """The DeepSpeed template every run's config is rendered from."""
    loaded: dict[str, Any] = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    return loaded


def zero_section(stage: int, offload: str, pin_memory: bool) -> dict[str, Any]:
    section: dict[str, Any] = {"stage": stage}
    if offload == "cpu":
        target = {"device": "cpu", "pin_memory": pin_memory}
        section["offload_optimizer"] = dict(target)
        if stage == 3:  # as in the workshop, stage 3 offloads the parameters too
            section["offload_param"] = dict(target)
    if stage == 3:
        # lets save_pretrained write a consolidated 16-bit model when the config asks to save it
        section["stage3_gather_16bit_weights_on_model_save"] = True
    return section


def render(point: MatrixPoint, template: dict[str, Any] | None = None,
           training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The DeepSpeed config of one matrix point run with these training settings (the run spec's `training`;
    None: the workshop's); the baseline has none."""
    if not point.deepspeed or point.zero_stage is None:
        raise ValueError(f"{point.point_id}: the no-DeepSpeed baseline has no DeepSpeed config")
    config = copy.deepcopy(template if template is not None else load_template())
    config["zero_optimization"] = zero_section(point.zero_stage, point.offload, point.pin_memory)
    if levers.run_values(training or {})["optimizer"] == "torch_fused":
        # no optimizer section: DeepSpeed wraps the client optimizer the Trainer made (optim adamw_torch_fused)
        config.pop("optimizer", None)
    return config


def render_named(name: str) -> dict[str, Any]:
    stage, offload, pin = NAMED_CONFIGS[name]
    point = MatrixPoint(True, stage, offload, pin, gpus_per_node=1, nodes=1)
    return render(point)


def write_named_configs(directory: Path = NAMED_CONFIG_DIR) -> list[Path]:
    """Regenerate <directory>/<name>.json for people who run by hand (`zerosweep ds-configs`)."""
    paths = []
    for name in NAMED_CONFIGS:
        path = directory / f"{name}.json"
        write_json(path, render_named(name), sort_keys=False)  # the template's key order
        paths.append(path)
    return paths


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """`python -m zerosweep ds-configs [--out-dir DIR]`."""
    parser.add_argument("--out-dir", type=Path, default=NAMED_CONFIG_DIR,
                        help="directory for the named configs (default: ds_configs, run from the repository root)")


def run(args: argparse.Namespace) -> int:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in write_named_configs(args.out_dir):
        print(path)
    return 0
