"""The catalogue of refused configs: each malformed or meaningless config is refused before anything is scheduled,
with a message that names the key at fault. docs/config-errors.md is generated from BAD_CONFIGS and must match
(regenerate: ZEROSWEEP_WRITE_DOCS=1 python -m pytest tests/test_config.py -k doc)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, run_snakemake, shipped_config
from zerosweep.plan.checks import check_config
from zerosweep.plan.matrix import ConfigError, build_plan

SCHEMA = REPO / "schemas" / "config.schema.yaml"
DOC = REPO / "docs" / "config-errors.md"
DELETE = object()  # a change that removes the key


def check(config: dict[str, Any]) -> None:
    """What rules/common.smk does before anything is scheduled."""
    check_config(config, SCHEMA)
    build_plan(config)


@dataclass(frozen=True)
class BadConfig:
    what: str
    changes: dict[str, Any]  # dotted key -> new value (or DELETE), applied to the shipped config
    expected: list[str]  # the message must contain each, the key at fault first
    layer: str = "schema"  # schema | settings (plan.checks) | matrix (plan.matrix)
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        config = copy.deepcopy(config)
        for path, value in self.changes.items():
            *parents, last = path.split(".")
            node = config
            for key in parents:
                node = node[key]
            if value is DELETE:
                del node[last]
            else:
                node[last] = value
        return config


def _case(what: str, changes: dict[str, Any], *expected: str, layer: str = "schema") -> BadConfig:
    return BadConfig(what, changes, list(expected), layer)


BAD_CONFIGS: list[BadConfig] = [
    # --- shapes: the JSON schema ------------------------------------------------------------------------
    _case("unknown top-level key", {"mystery": 1}, "(top level)", "'mystery' was unexpected"),
    _case("unknown key in model", {"model.revision": "main"}, "model:", "'revision' was unexpected"),
    _case("unknown key in a study", {"studies.zero_stages.colour": "red"}, "studies.zero_stages:",
          "'colour' was unexpected"),
    _case("unknown training field in a study", {"studies.zero_stages.training": {"lr": 1}},
          "studies.zero_stages.training:", "'lr' was unexpected"),
    _case("unknown key in slurm", {"slurm.gpus": 4}, "slurm:", "'gpus' was unexpected"),
    _case("missing section", {"training": DELETE}, "(top level)", "'training' is a required property"),
    _case("missing field", {"data.max_length": DELETE}, "data:", "'max_length' is a required property"),
    _case("ZeRO stage out of range", {"studies.zero_stages.zero_stage": [0, 4]},
          "studies.zero_stages.zero_stage[1]:", "4 is not one of [0, 1, 2, 3]"),
    _case("offload device unknown", {"studies.zero_offload.offload": ["nvme"]}, "studies.zero_offload.offload[0]:",
          "'nvme' is not one of"),
    _case("zero GPUs per node", {"studies.zero_stages.gpus_per_node": [0]}, "studies.zero_stages.gpus_per_node[0]:",
          "0 is less than the minimum of 1"),
    _case("negative nodes", {"studies.multi_node_scaling.nodes": [-2]}, "studies.multi_node_scaling.nodes[0]:",
          "-2 is less than the minimum"),
    _case("matrix axis below 1", {"matrix.nodes": [0, 1]}, "matrix.nodes[0]:", "0 is less than the minimum"),
    _case("matrix axis value twice", {"matrix.zero_stage": [1, 1]}, "matrix.zero_stage:", "non-unique"),
    _case("empty matrix axis", {"matrix.offload": []}, "matrix.offload:", "should be non-empty"),
    _case("precision unknown", {"training.precision": "fp8"}, "training.precision:", "'fp8' is not one of"),
    _case("lever value unknown in a study's axis", {"studies.zero_stages.optimizer": ["sgd"]},
          "studies.zero_stages.optimizer[0]:", "'sgd' is not one of ['deepspeed', 'torch_fused']"),
    _case("epochs as text", {"training.epochs": "three"}, "training.epochs:", "'three' is not of type 'number'"),
    _case("learning rate zero", {"training.learning_rate": 0}, "training.learning_rate:",
          "less than or equal to the minimum of 0"),
    _case("sequence length too short", {"data.max_length": 8}, "data.max_length:", "8 is less than the minimum of 16"),
    _case("weights unknown", {"model.weights": "magic"}, "model.weights:", "'magic' is not one of"),
    _case("architecture as a path", {"model.architecture": "../../etc/passwd"}, "model.architecture:",
          "does not match"),
    _case("data source unknown", {"data.source": "imdb"}, "data.source:", "'imdb' is not one of"),
    _case("NVML sampling slower than 100 ms", {"monitor.nvml_interval_ms": 500}, "monitor.nvml_interval_ms:",
          "500 is greater than the maximum of 100"),
    _case("table kind unknown", {"studies.baseline.table": "pie"}, "studies.baseline.table:", "'pie' is not one of"),
    _case("study without table", {"studies.zero_stages.table": DELETE}, "studies.zero_stages:",
          "'table' is a required property"),
    _case("study name with capitals", {"studies.BadName": {"table": "baseline", "deepspeed": False}}, "studies:",
          "'BadName' does not match"),
    _case("shell command in slurm.partition", {"slurm.partition": "gpu; rm -rf ~"}, "slurm.partition:",
          "'gpu; rm -rf ~' does not match"),
    _case("command substitution in slurm.account", {"slurm.account": "$(whoami)"}, "slurm.account:",
          "'$(whoami)' does not match"),
    _case("backticks in slurm.reservation", {"slurm.reservation": "res`id`"}, "slurm.reservation:", "does not match"),
    _case("spaces and redirection in slurm.constraint", {"slurm.constraint": "a100 > /tmp/x"}, "slurm.constraint:",
          "does not match"),
    _case("time limit zero", {"slurm.time_min": 0}, "slurm.time_min:", "0 is less than the minimum of 1"),
    _case("exclusive as text", {"slurm.exclusive": "yes"}, "slurm.exclusive:", "'yes' is not of type 'boolean'"),
    _case("fractional CPUs per GPU", {"slurm.cpus_per_gpu": 1.5}, "slurm.cpus_per_gpu:",
          "1.5 is not of type 'integer'"),
    # --- settings that contradict each other (plan.checks) ---------------------------------------------------
    _case("fp16 on CPU", {"runtime.device": "cpu"}, "training.precision:", "fp16 needs runtime.device 'cuda'",
          layer="settings"),
    _case("fp16 on CPU in a study's override",
          {"runtime.device": "cpu", "training.precision": "bf16", "studies.pin_memory.training": {"precision": "fp16"}},
          "studies.pin_memory.training.precision:", "fp16 needs runtime.device 'cuda'", layer="settings"),
    _case("fused loss on CPU",
          {"runtime.device": "cpu", "training.precision": "bf16", "training.loss": "fused_linear_cross_entropy"},
          "training.loss:", "fused_linear_cross_entropy needs runtime.device 'cuda'", layer="settings"),
    _case("fused loss swept on CPU",
          {"runtime.device": "cpu", "training.precision": "bf16",
           "studies.zero_stages.loss": ["model", "fused_linear_cross_entropy"]},
          "studies.zero_stages.loss[1]:", "fused_linear_cross_entropy needs runtime.device 'cuda'", layer="settings"),
    _case("data file without a path", {"data.source": "file"}, "data.path:", "required when data.source is 'file'",
          layer="settings"),
    _case("data path the source never reads", {"data.path": "squad.json"}, "data.path:",
          "data.source 'synthetic' reads no file", layer="settings"),
    _case("fewer samples than one optimizer step", {"data.samples_per_gpu": 8}, "data.samples_per_gpu:",
          "no optimizer step", layer="settings"),
    _case("warm-up as long as the run", {"training.max_steps": 2}, "training.warmup_steps:",
          "leave no measured step of training.max_steps 2", layer="settings"),
    _case("more GPUs per node than a node has", {"slurm.max_gpus_per_node": 4}, "matrix.gpus_per_node:",
          "[8] exceed slurm.max_gpus_per_node 4", layer="settings"),
    _case("architecture not shipped", {"model.architecture": "bloom-huge"}, "model.architecture:",
          "'bloom-huge' is not shipped", layer="settings"),
    _case("architecture config.json missing", {"model.architecture": "./models/llama-8b.json"}, "model.architecture:",
          "'./models/llama-8b.json': no such file", layer="settings"),
    _case("pretrained weights with the local tokenizer", {"model.weights": "pretrained", "model.tokenizer": "local"},
          "model.tokenizer:", "ids mean nothing to the pretrained weights of 'bigscience/bloom-560m'",
          "use tokenizer: hub", layer="settings"),
    _case("SDPA for BLOOM", {"training.attention": "sdpa"}, "training.attention:",
          "sdpa is not available for model.architecture (bloom)", "scaled_dot_product_attention", layer="settings"),
    _case("SDPA swept for BLOOM", {"studies.zero_stages.attention": ["eager", "sdpa"]},
          "studies.zero_stages.attention[1]:", "sdpa is not available for model.architecture (bloom)",
          layer="settings"),
    _case("FlashAttention-2 on CPU",
          {"runtime.device": "cpu", "training.precision": "bf16", "model.architecture": "llama-tiny",
           "training.attention": "flash_attention_2"},
          "training.attention:", "flash_attention_2 needs runtime.device 'cuda'", layer="settings"),
    # --- the matrix and its studies (plan.matrix) ----------------------------------------------------------
    _case("explicit offload at ZeRO stage 0",
          {"studies.zero_stages": {"table": "comparison", "zero_stage": [0], "offload": ["cpu"]}},
          "study 'zero_stages'", "zero_stage=0, offload='cpu' is not a valid combination", layer="matrix"),
    _case("explicit pin_memory without offload", {"studies.zero_stages.pin_memory": [True]}, "study 'zero_stages'",
          "pin_memory=True, offload='none' is not a valid combination", layer="matrix"),
    _case("every combination meaningless",
          {"studies.zero_stages": {"table": "comparison", "zero_stage": [0], "offload": ["none", "cpu"],
                                   "pin_memory": [True]}},
          "study 'zero_stages'", "every combination was pruned", layer="matrix"),
    _case("torch optimizer with CPU offload", {"studies.zero_offload.optimizer": ["torch_fused"]},
          "study 'zero_offload'", "optimizer='torch_fused', offload='cpu' is not a valid combination",
          "ZeRO-Offload runs DeepSpeed's CPUAdam", layer="matrix"),
    _case("a lever both swept and overridden",
          {"studies.zero_stages.compile": [False, True], "studies.zero_stages.training": {"compile": True}},
          "study 'zero_stages'", "key 'compile' is an axis of the study and also set in its training", layer="matrix"),
    _case("study value outside the matrix", {"studies.multi_gpu_scaling.gpus_per_node": [1, 16]},
          "study 'multi_gpu_scaling'", "key 'gpus_per_node' value 16 is not in matrix.gpus_per_node", layer="matrix"),
    _case("offload without DeepSpeed", {"studies.baseline.offload": ["cpu"]}, "study 'baseline'",
          "key 'offload' is not allowed when deepspeed is false", layer="matrix"),
    _case("ZeRO stage without DeepSpeed", {"studies.baseline.zero_stage": [1]}, "study 'baseline'",
          "key 'zero_stage' is not allowed when deepspeed is false", layer="matrix"),
    _case("DeepSpeed study without zero_stage", {"studies.zero_stages.zero_stage": DELETE}, "study 'zero_stages'",
          "key 'zero_stage' is required", layer="matrix"),
    _case("scaling table without a scaling axis", {"studies.multi_gpu_scaling.scaling_axis": DELETE},
          "study 'multi_gpu_scaling'", "key 'scaling_axis' is required", layer="matrix"),
    _case("scaling axis on a comparison table", {"studies.zero_stages.scaling_axis": "nodes"}, "study 'zero_stages'",
          "key 'scaling_axis' only applies to table 'scaling'", layer="matrix"),
    _case("build list names an unknown study", {"build_studies": ["zero_stages", "nope"]}, "build_studies:",
          "'nope' is not a study", layer="matrix"),
]


def _message(case: BadConfig) -> str:
    with pytest.raises(ConfigError) as error:
        check(case.apply(shipped_config()))
    return str(error.value)


def test_shipped_config_is_valid() -> None:
    check(shipped_config())


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[case.what for case in BAD_CONFIGS])
def test_bad_config_is_refused_naming_its_key(case: BadConfig) -> None:
    message = _message(case)
    assert message.startswith(case.expected[0]), f"{case.expected[0]!r} does not start: {message}"
    for part in case.expected:
        assert part in message, f"{part!r} not in: {message}"
    if case.layer != "matrix":  # the schema and the settings checks stop the config before the matrix
        assert "study '" not in message, message


def test_catalogue_covers_every_layer() -> None:
    assert len(BAD_CONFIGS) >= 25 and len({case.what for case in BAD_CONFIGS}) == len(BAD_CONFIGS)
    assert {case.layer for case in BAD_CONFIGS} == {"schema", "settings", "matrix"}


def _yaml_value(value: Any) -> str:
    return "(removed)" if value is DELETE else json.dumps(value)


def render_doc() -> str:
    lines = [
        "# Refused configurations",
        "",
        "Every config below is refused before any job starts: `snakemake` (also `-n`) stops with",
        "`WorkflowError: workflow config: <message>`. Each message starts with the key at fault. The checks run",
        "in three layers: the JSON schema (`schemas/config.schema.yaml`: types, ranges, unknown keys, SLURM",
        "strings), settings that contradict each other (`zerosweep.plan.checks`), and the matrix and its studies",
        "(`zerosweep.plan.matrix`). A config with schema errors lists all of them, one per line.",
        "",
        "Generated from the cases in `tests/test_config.py` (each change is applied to the shipped",
        "`workflow_config.yaml`); a test fails when this file and the cases disagree. Regenerate with",
        "`ZEROSWEEP_WRITE_DOCS=1 python -m pytest tests/test_config.py -k doc`.",
        "",
        "| # | refused | change | layer | message |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for number, case in enumerate(BAD_CONFIGS, 1):
        change = "<br>".join(f"`` {path}: {_yaml_value(value)} ``" for path, value in case.changes.items())
        message = _message(case).replace("|", "\\|").replace("\n", "<br>")
        lines.append(f"| {number} | {case.what} | {change} | {case.layer} | {message} |")
    return "\n".join(lines) + "\n"


def test_doc_lists_every_refused_config_with_its_message() -> None:
    text = render_doc()
    if os.environ.get("ZEROSWEEP_WRITE_DOCS") == "1":
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, "docs/config-errors.md is stale: regenerate it (see its header)"


def _overlay(changes: dict[str, Any]) -> dict[str, Any]:
    """The changes as a configfile Snakemake merges over workflow_config.yaml (no deletions)."""
    overlay: dict[str, Any] = {}
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = overlay
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return overlay


SNAKEMAKE_CASES = ("shell command in slurm.partition", "fp16 on CPU", "explicit offload at ZeRO stage 0")


@pytest.mark.parametrize("what", SNAKEMAKE_CASES)
def test_snakemake_stops_before_scheduling(tmp_path: Path, what: str) -> None:
    """Through the real `snakemake -n`: the same message, and not one job is scheduled."""
    (case,) = [case for case in BAD_CONFIGS if case.what == what]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_overlay(case.changes)), encoding="utf-8")
    result = run_snakemake("-n", "--configfile", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert f"workflow config: {_message(case)}" in output, output[-2000:]
    assert "rule train" not in output and "Job stats" not in output
