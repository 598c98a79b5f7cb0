"""The JSON schema and the semantic checks: the shipped config passes, each malformed one is refused
with a message that names the culprit, before anything is scheduled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_snakemake, shipped_config
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from zerosweep.plan.matrix import ConfigError, build_plan

SCHEMA = str(REPO / "schemas" / "config.schema.yaml")


def check(config: dict[str, Any]) -> None:
    """What the Snakefile does: Snakemake's validate() against the schema, then the matrix checks."""
    validate(config, SCHEMA)
    build_plan(config)


def test_shipped_config_is_valid() -> None:
    check(shipped_config())


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


# (case id, mutation, substrings the error message must contain)
BAD_CONFIGS: list[tuple[str, Mutation, list[str]]] = [
    ("unknown top-level key", _set("mystery", 1), ["mystery", "was unexpected"]),
    ("unknown key in a study", _set("studies.zero_stages.colour", "red"), ["colour", "zero_stages"]),
    ("unknown training field in a study", _set("studies.zero_stages.training", {"lr": 1}), ["lr", "zero_stages"]),
    ("zero stage out of range", _set("studies.zero_stages.zero_stage", [0, 4]), ["4", "zero_stage"]),
    ("offload device unknown", _set("studies.zero_offload.offload", ["nvme"]), ["nvme", "zero_offload"]),
    ("zero GPUs per node", _set("studies.zero_stages.gpus_per_node", [0]), ["0", "gpus_per_node", "zero_stages"]),
    ("negative nodes", _set("studies.multi_node_scaling.nodes", [-2]), ["-2", "nodes", "multi_node_scaling"]),
    ("nodes axis of the matrix below 1", _set("matrix.nodes", [0, 1]), ["0", "nodes"]),
    ("missing training section", _delete("training"), ["training", "required"]),
    ("precision unknown", _set("training.precision", "fp8"), ["fp8", "precision"]),
    ("weights unknown", _set("model.weights", "magic"), ["magic", "weights"]),
    ("data source unknown", _set("data.source", "imdb"), ["imdb", "source"]),
    ("NVML sampling slower than 100 ms", _set("monitor.nvml_interval_ms", 500), ["500", "nvml_interval_ms"]),
    ("table kind unknown", _set("studies.baseline.table", "pie"), ["pie", "baseline"]),
    ("study without table", _delete("studies.zero_stages.table"), ["table", "zero_stages", "required"]),
    (
        "explicit offload at stage 0",
        _set("studies.zero_stages", {"table": "comparison", "zero_stage": [0], "offload": ["cpu"]}),
        ["study 'zero_stages'", "zero_stage=0", "offload='cpu'"],
    ),
    (
        "explicit pin_memory without offload",
        _set("studies.zero_stages.pin_memory", [True]),
        ["study 'zero_stages'", "pin_memory=True", "offload='none'"],
    ),
    (
        "study value outside the matrix",
        _set("studies.multi_gpu_scaling.gpus_per_node", [1, 16]),
        ["study 'multi_gpu_scaling'", "gpus_per_node", "16"],
    ),
    (
        "ZeRO axis on the no-DeepSpeed baseline",
        _set("studies.baseline.zero_stage", [1]),
        ["study 'baseline'", "zero_stage", "deepspeed is false"],
    ),
    (
        "DeepSpeed study without zero_stage",
        _delete("studies.zero_stages.zero_stage"),
        ["study 'zero_stages'", "zero_stage", "required"],
    ),
    (
        "scaling table without a scaling axis",
        _delete("studies.multi_gpu_scaling.scaling_axis"),
        ["study 'multi_gpu_scaling'", "scaling_axis"],
    ),
    ("build list names an unknown study", _set("build_studies", ["zero_stages", "nope"]), ["build_studies", "nope"]),
    ("study name with capitals", _set("studies.BadName", {"table": "baseline", "deepspeed": False}), ["BadName"]),
]


@pytest.mark.parametrize("mutate, expected", [case[1:] for case in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_with_its_culprit(config: dict[str, Any], mutate: Mutation, expected: list[str]) -> None:
    mutate(config)
    with pytest.raises((WorkflowError, ConfigError)) as error:
        check(config)
    message = str(error.value)
    for part in expected:
        assert part in message, f"{part!r} not in: {message}"


def test_at_least_fifteen_bad_cases() -> None:
    assert len(BAD_CONFIGS) >= 15


def test_snakemake_stops_before_scheduling_on_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("studies:\n  zero_stages:\n    zero_stage: [0]\n    offload: [cpu]\n")
    result = run_snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "study 'zero_stages': zero_stage=0, offload='cpu' is not a valid combination" in output
    assert "rule train" not in output and "Job stats" not in output
