"""Speed levers as study axes (plan.levers): ids and labels, refusals, the DeepSpeed config, tune studies, and the
schema agreeing with the registry."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml
from conftest import REPO
from zerosweep.plan import levers
from zerosweep.plan.checks import check_config
from zerosweep.plan.dsconfig import render
from zerosweep.plan.matrix import RUN_ID_PATTERN, ConfigError, MatrixPoint, RunSpec, build_plan, matrix_table
from zerosweep.plan.tune.memory_model import MemoryModel, ModelSize, StatesSetup, model_states
from zerosweep.plan.tune.studies import build_tune_studies, find_run

SCHEMA = REPO / "schemas" / "config.schema.yaml"
ZERO1 = "z1-offnone-nopin-g1n1"


def with_study(config: dict[str, Any], **study: Any) -> dict[str, Any]:
    """The shipped config with one extra study `levers` (ZeRO-1 unless told) that `all` builds."""
    config = copy.deepcopy(config)
    config["studies"]["levers"] = {"table": "comparison", "zero_stage": [1], **study}
    config["build_studies"] = [*config["build_studies"], "levers"]
    return config


def test_a_lever_axis_adds_a_token_only_where_the_value_differs(config: dict[str, Any]) -> None:
    before = build_plan(config)
    plan = build_plan(with_study(config, compile=[False, True], precision=["fp16", "bf16"]))
    assert plan.studies["levers"].run_ids == [ZERO1, f"{ZERO1}-bf16", f"{ZERO1}-cmp", f"{ZERO1}-cmp-bf16"]
    # every run the shipped studies had keeps its id and its spec, byte for byte
    for run_id, spec in before.runs.items():
        assert plan.runs[run_id].to_json() == spec.to_json()
    assert all(re.fullmatch(RUN_ID_PATTERN, run_id) for run_id in plan.runs)
    compiled = plan.runs[f"{ZERO1}-cmp-bf16"]
    assert compiled.point.levers == (("compile", True), ("precision", "bf16"))
    assert compiled.settings["training"]["compile"] is True and compiled.settings["training"]["precision"] == "bf16"
    assert "compile" not in plan.runs[ZERO1].settings["training"]  # the base run's spec is the old one
    assert compiled.point.label == "ZeRO Stage 1, compiled, bf16"
    assert "| z1-offnone-nopin-g1n1-cmp-bf16 | levers | 1 | 1 | 1 | 1 | none | false | compiled, bf16 | 500 |" \
        in matrix_table(plan)


def test_tokens_follow_the_registry_order_and_the_base_settings(config: dict[str, Any]) -> None:
    point = MatrixPoint(True, 1, "none", False, 1, 1, levers=(("compile", True), ("precision", "bf16"),
                                                              ("optimizer", "torch_fused")))
    assert point.point_id == "z1-offnone-nopin-g1n1-cmp-bf16-topt"
    assert point.label == "ZeRO Stage 1, compiled, bf16, torch fused AdamW"
    assert not re.fullmatch(RUN_ID_PATTERN, "z1-offnone-nopin-g1n1-bf16-cmp")  # out of registry order
    assert re.fullmatch(RUN_ID_PATTERN, "z1-offnone-nopin-g1n1-cmp-bf16-x0a1b2c-b8-r2")
    # a base that already compiles: the point that does not is the one named
    config["training"]["compile"] = True
    plan = build_plan(with_study(config, compile=[False, True]))
    assert plan.studies["levers"].run_ids == [f"{ZERO1}-eager", ZERO1]
    assert plan.runs[f"{ZERO1}-eager"].settings["training"]["compile"] is False


def test_point_dicts_round_trip_and_old_records_read_without_levers() -> None:
    point = MatrixPoint(True, 2, "none", False, 1, 1, levers=(("gradient_checkpointing", True),
                                                              ("loss", "fused_linear_cross_entropy")))
    spec = json.loads(RunSpec(point.point_id, point, {}).to_json())
    assert spec["point"]["levers"] == [["gradient_checkpointing", True], ["loss", "fused_linear_cross_entropy"]]
    assert MatrixPoint.from_dict(spec["point"]) == point
    assert point.point_id == "z2-offnone-nopin-g1n1-gc-flce"
    old = {"deepspeed": True, "zero_stage": 2, "offload": "cpu", "pin_memory": True, "gpus_per_node": 1, "nodes": 1,
           "world_size": 1}
    assert MatrixPoint.from_dict(old) == MatrixPoint(True, 2, "cpu", True, 1, 1)
    assert MatrixPoint.from_dict(old).to_dict() == old  # no "levers" key: the old spec, unchanged


def test_torch_optimizer_with_offload_is_pruned_in_a_sweep_and_refused_when_asked(config: dict[str, Any]) -> None:
    plan = build_plan(with_study(config, offload=["none", "cpu"], optimizer=["deepspeed", "torch_fused"]))
    assert plan.studies["levers"].run_ids == [ZERO1, f"{ZERO1}-topt", "z1-offcpu-nopin-g1n1"]
    assert plan.studies["levers"].pruned == [f"z1-offcpu-nopin-g1n1-topt ({levers.TORCH_FUSED_WITH_OFFLOAD})"]
    with pytest.raises(ConfigError, match=r"study 'levers': optimizer='torch_fused', offload='cpu' is not a valid "
                                          r"combination: optimizer torch_fused cannot step CPU-offloaded"):
        build_plan(with_study(config, offload=["cpu"], optimizer=["torch_fused"]))
    # the same when the optimizer comes from the study's training settings
    with pytest.raises(ConfigError, match="optimizer='torch_fused', offload='cpu'"):
        build_plan(with_study(config, offload=["cpu"], training={"optimizer": "torch_fused"}))


def cpu_config(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["runtime"]["device"] = "cpu"
    config["training"]["precision"] = "bf16"
    return config


def test_the_fused_loss_on_cpu_is_refused_naming_loss(config: dict[str, Any]) -> None:
    cpu = cpu_config(config)
    check_config(cpu, SCHEMA)  # bf16 on CPU runs
    swept = with_study(cpu, loss=["model", "fused_linear_cross_entropy"])
    with pytest.raises(ConfigError, match=r"^studies\.levers\.loss\[1\]: fused_linear_cross_entropy needs "
                                          r"runtime\.device 'cuda'"):
        check_config(swept, SCHEMA)
    cpu["training"]["loss"] = "fused_linear_cross_entropy"
    with pytest.raises(ConfigError, match=r"^training\.loss: fused_linear_cross_entropy needs runtime\.device"):
        check_config(cpu, SCHEMA)
    with pytest.raises(ConfigError, match="loss='fused_linear_cross_entropy' is not a valid combination"):
        build_plan(cpu)  # build_plan refuses it too, for callers that skip the checks
    # a sweep that build_plan sees alone prunes the CPU-impossible point
    plan = build_plan(swept)
    assert plan.studies["levers"].run_ids == [ZERO1]
    assert plan.studies["levers"].pruned[0].startswith(f"{ZERO1}-flce (loss fused_linear_cross_entropy needs")


def test_study_lever_values_are_checked(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"study 'levers': key 'precision' value 'fp8' is not one of"):
        build_plan(with_study(config, precision=["fp8"]))
    with pytest.raises(ConfigError, match=r"key 'compile' value 1 is not one of \[False, True\]"):
        build_plan(with_study(config, compile=[1]))  # YAML's 1 is not true
    with pytest.raises(ConfigError, match="key 'compile' is an axis of the study and also set in its training"):
        build_plan(with_study(config, compile=[False, True], training={"compile": True}))
    with pytest.raises(ConfigError, match="key 'loss' lists no value"):
        build_plan(with_study(config, loss=[]))


def test_torch_fused_drops_the_deepspeed_optimizer_section() -> None:
    point = MatrixPoint(True, 1, "none", False, 1, 1, levers=(("optimizer", "torch_fused"),))
    assert "optimizer" not in render(point, training={"optimizer": "torch_fused"})
    assert render(point, training={"optimizer": "deepspeed"})["optimizer"]["type"] == "AdamW"
    assert render(MatrixPoint(True, 1, "none", False, 1, 1))["optimizer"]["type"] == "AdamW"  # the default


def test_a_tune_study_searches_each_lever_combination(config: dict[str, Any]) -> None:
    config = copy.deepcopy(config)
    config["studies"]["tune_bloom560m"].update(zero_stage=[1], offload=["none"], compile=[False, True])
    plan = build_plan(config)
    study = build_tune_studies(config, plan)["tune_bloom560m"]
    assert list(study.searches) == [ZERO1, f"{ZERO1}-cmp"]
    plain, compiled = study.searches[ZERO1].probe(8), study.searches[f"{ZERO1}-cmp"].probe(8)
    hash_suffix = plain.run_id.removeprefix(ZERO1).removesuffix("-b8")
    assert re.fullmatch(r"-x[0-9a-f]{6}", hash_suffix)
    assert compiled.run_id == f"{ZERO1}-cmp{hash_suffix}-b8"  # the levers before the hash and -b<micro_batch>
    assert compiled.settings["training"]["compile"] is True and "compile" not in plain.settings["training"]
    assert re.fullmatch(RUN_ID_PATTERN, compiled.run_id)
    assert find_run(plan, {"tune_bloom560m": study}, compiled.run_id) == compiled
    assert study.to_dict()["points"][f"{ZERO1}-cmp"]["levers"] == [["compile", True]]


def test_the_memory_model_takes_each_point_s_precision(config: dict[str, Any]) -> None:
    config = copy.deepcopy(config)
    config["studies"]["tune_bloom560m"].update(zero_stage=[0], offload=["none"], precision=["fp16", "fp32"])
    plan = build_plan(config)
    study = build_tune_studies(config, plan)["tune_bloom560m"].to_dict()
    model = MemoryModel(study, ModelSize(n_params=1_000_000, largest_layer_params=100_000), [])
    half, full = model.states_mib("z0-offnone-nopin-g1n1"), model.states_mib("z0-offnone-nopin-g1n1-fp32")
    def states(precision: str) -> float:
        setup = StatesSetup(zero_stage=0, offload="none", gpus_per_node=1, nodes=1, precision=precision)
        return model_states(1_000_000, setup, "deepspeed", 100_000).device_mib("cuda")

    assert (half, full) == (states("fp16"), states("fp32")) and half != full  # fp32 keeps no 16-bit copy


def _enum(field: dict[str, Any]) -> list[Any]:
    return list(field["enum"]) if "enum" in field else [False, True] if field["type"] == "boolean" else []


def test_the_schema_allows_exactly_the_registry_values() -> None:
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    training = schema["$defs"]["training_fields"]["properties"]
    axes = schema["$defs"]["lever_axes"]
    study = schema["properties"]["studies"]["additionalProperties"]["properties"]
    assert list(axes) == list(levers.LEVERS)
    for name, lever in levers.LEVERS.items():
        assert _enum(training[name]) == list(lever.values), name
        assert _enum(axes[name]["items"]) == list(lever.values), name
        assert study[name] == {"$ref": f"#/$defs/lever_axes/{name}"}
        if "default" in training[name]:
            assert training[name]["default"] == lever.default, name
        assert set(lever.tokens) == set(lever.values) == set(lever.labels), name
        assert all(re.fullmatch("[a-z0-9]+", token) for token in lever.tokens.values()), name
    assert training["compile_mode"]["enum"] == list(levers.COMPILE_MODES)
    every_token = [token for lever in levers.LEVERS.values() for token in lever.tokens.values()]
    assert len(set(every_token)) == len(every_token)  # a token names one value of one lever


def test_the_fused_loss_with_zero3_is_pruned_in_a_sweep() -> None:
    from zerosweep.plan.levers import FUSED_LOSS_WITH_ZERO3, refusal

    assert refusal({"zero_stage": 3, "loss": "fused_linear_cross_entropy"}, "cuda") == \
        (FUSED_LOSS_WITH_ZERO3, ("loss", "zero_stage"))
    assert refusal({"zero_stage": 2, "loss": "fused_linear_cross_entropy"}, "cuda") is None
