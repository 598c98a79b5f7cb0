"""Expand the validated workflow config into runs (one per matrix point) and studies (one per table).

The JSON schema checks shapes; this module checks meaning: study axes must stay inside the declared
matrix, combinations that mean nothing are pruned when a study spans axes and refused when a study
names them explicitly, and settings overridden by a study give the run its own id.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import levers
from .repeats import REPEAT_ID_SUFFIX, expand_repeats

AXES: tuple[str, ...] = ("zero_stage", "offload", "pin_memory", "gpus_per_node", "nodes")
DEEPSPEED_AXES: tuple[str, ...] = ("zero_stage", "offload", "pin_memory")
# Sections copied into every run's settings; studies may override the first two.
OVERRIDABLE_SECTIONS: tuple[str, ...] = ("data", "training")
RUN_SECTIONS: tuple[str, ...] = ("model", "data", "training", "monitor", "runtime")
REPORT_ONLY_SETTINGS: tuple[tuple[str, str], ...] = (("runtime", "peak_tflops"),)
# Axis defaults for studies that leave an axis out.
AXIS_DEFAULTS: dict[str, list[Any]] = {
    "offload": ["none"],
    "pin_memory": [False],
    "gpus_per_node": [1],
    "nodes": [1],
}

POINT_ID_PATTERN = r"(base|z[0-3]-off(none|cpu)-(pin|nopin))-g[1-9][0-9]*n[1-9][0-9]*" + levers.ID_TOKEN_PATTERN
# -x<hash>: study overrides; -b<micro_batch>: a tune study's probe or measurement (plan.tune.studies); then -r<k> repeats
RUN_ID_PATTERN = POINT_ID_PATTERN + r"(-x[0-9a-f]{6})?(-b[1-9][0-9]*)?" + REPEAT_ID_SUFFIX
STUDY_PATTERN = r"[a-z][a-z0-9_]*"
# A point's matrix fields as its JSON form names them (plus levers, and the derived world_size).
POINT_FIELDS: tuple[str, ...] = ("deepspeed", "zero_stage", "offload", "pin_memory", "gpus_per_node", "nodes")


class ConfigError(ValueError):
    """A workflow config that passed the schema but means nothing; the message names the culprit."""


@dataclass(frozen=True)
class MatrixPoint:
    deepspeed: bool
    zero_stage: int | None
    offload: str
    pin_memory: bool
    gpus_per_node: int
    nodes: int
    # the lever values that differ from the run's base training settings (plan.levers), in registry order
    levers: levers.LeverValues = ()

    @classmethod
    def from_dict(cls, point: Mapping[str, Any]) -> MatrixPoint:
        """From a run spec's `point` (which also carries derived fields such as world_size); records written
        before the levers existed have no "levers" and read as ()."""
        fields = {key: point[key] for key in POINT_FIELDS}
        return cls(**fields, levers=tuple((name, value) for name, value in point.get("levers", ())))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of a point, with world_size; "levers" ([[name, value], ...]) only when there are any,
        so that the spec of a run without levers stays what it was (an unchanged spec retrains nothing)."""
        point: dict[str, Any] = {key: getattr(self, key) for key in POINT_FIELDS}
        if self.levers:
            point["levers"] = [[name, value] for name, value in self.levers]
        point["world_size"] = self.world_size
        return point

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def point_id(self) -> str:
        shape = f"g{self.gpus_per_node}n{self.nodes}"
        if not self.deepspeed:
            return f"base-{shape}" + levers.id_tokens(self.levers)
        pin = "pin" if self.pin_memory else "nopin"
        return f"z{self.zero_stage}-off{self.offload}-{pin}-{shape}" + levers.id_tokens(self.levers)

    @property
    def label(self) -> str:
        """Human name used in tables, in the workshop's words, then the levers that differ ("ZeRO Stage 1, compiled")."""
        return ", ".join([self._matrix_label(), *levers.labels(self.levers)])

    def _matrix_label(self) -> str:
        if not self.deepspeed:
            return "No DeepSpeed (baseline)"
        text = f"ZeRO Stage {self.zero_stage}"
        if self.offload == "cpu":
            text += " + Offloading"
            if self.pin_memory:
                text += " (pin_memory)"
        return text

    def invalid_reason(self) -> tuple[str, tuple[str, ...]] | None:
        """Why this combination means nothing, and which axes are involved."""
        if self.deepspeed and self.zero_stage == 0 and self.offload != "none":
            return "CPU offload needs ZeRO stage 1 or higher", ("zero_stage", "offload")
        if self.deepspeed and self.pin_memory and self.offload == "none":
            return "pin_memory only applies with CPU offload", ("pin_memory", "offload")
        return None


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    point: MatrixPoint
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "point": self.point.to_dict(), **copy.deepcopy(self.settings)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class Study:
    name: str
    title: str
    table: str
    scaling_axis: str | None
    run_ids: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    points: list[MatrixPoint] = field(default_factory=list)


@dataclass
class Plan:
    runs: dict[str, RunSpec]
    studies: dict[str, Study]
    build: list[str]

    @property
    def pruned_count(self) -> int:
        return sum(len(study.pruned) for study in self.studies.values())

    def runs_of(self, studies: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for name in studies:
            for run_id in self.studies[name].run_ids:
                seen[run_id] = None
        return list(seen)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _effective_overrides(config: dict[str, Any], study: dict[str, Any]) -> dict[str, Any]:
    """The study's data/training values that differ from the global ones (these change the run)."""
    changed: dict[str, Any] = {}
    for section in OVERRIDABLE_SECTIONS:
        for key, value in (study.get(section) or {}).items():
            if config.get(section, {}).get(key) != value:
                changed.setdefault(section, {})[key] = value
    return changed


def _suffix(overrides: dict[str, Any]) -> str:
    if not overrides:
        return ""
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()
    return f"-x{digest[:6]}"


def _check_listed(name: str, axis: str, values: list[Any]) -> None:
    if not values:
        raise ConfigError(f"study '{name}': key '{axis}' lists no value")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"study '{name}': key '{axis}' lists a value twice: {values}")


def _lever_axes(name: str, study: dict[str, Any]) -> dict[str, list[Any]]:
    """The levers a study sweeps (plan.levers), in registry order."""
    axes: dict[str, list[Any]] = {}
    for lever in levers.LEVERS:
        if lever not in study:
            continue
        values = list(study[lever])
        _check_listed(name, lever, values)
        for value in values:
            problem = levers.unknown_value(lever, value)
            if problem is not None:
                raise ConfigError(f"study '{name}': key '{lever}' value {problem}")
        if lever in (study.get("training") or {}):  # one place per setting: the axis or the override
            raise ConfigError(f"study '{name}': key '{lever}' is an axis of the study and also set in its training "
                              "overrides; keep one")
        axes[lever] = values
    return axes


def _study_axes(name: str, study: dict[str, Any], matrix: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The study's matrix axes (AXES order), then its lever axes (registry order)."""
    deepspeed = study.get("deepspeed", True)
    axes: dict[str, list[Any]] = {}
    for axis in AXES:
        if not deepspeed and axis in DEEPSPEED_AXES:
            if axis in study:
                raise ConfigError(f"study '{name}': key '{axis}' is not allowed when deepspeed is false")
            continue
        if axis in study:
            values = list(study[axis])
        elif axis in AXIS_DEFAULTS:
            values = list(AXIS_DEFAULTS[axis])
        else:
            raise ConfigError(f"study '{name}': key '{axis}' is required for a DeepSpeed study")
        _check_listed(name, axis, values)
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool) and value < 1 and axis in ("gpus_per_node", "nodes"):
                raise ConfigError(f"study '{name}': key '{axis}' must be >= 1, got {value}")
            if value not in matrix[axis]:
                raise ConfigError(
                    f"study '{name}': key '{axis}' value {value!r} is not in matrix.{axis} {matrix[axis]}"
                )
        axes[axis] = values
    return {**axes, **_lever_axes(name, study)}


def _study_points(name: str, study: dict[str, Any], matrix: dict[str, list[Any]],
                  base_training: Mapping[str, Any], device: str | None) -> tuple[list[MatrixPoint], list[str]]:
    """The study's valid points; `base_training` (global + study training) gives the levers it does not sweep."""
    axes = _study_axes(name, study, matrix)
    deepspeed = study.get("deepspeed", True)
    base_levers = levers.run_values(base_training)
    points: list[MatrixPoint] = []
    pruned: list[str] = []
    for combo in itertools.product(*axes.values()):
        values = dict(zip(axes, combo))
        point = MatrixPoint(
            deepspeed=deepspeed,
            zero_stage=values.get("zero_stage") if deepspeed else None,
            offload=values.get("offload", "none"),
            pin_memory=bool(values.get("pin_memory", False)),
            gpus_per_node=values["gpus_per_node"],
            nodes=values["nodes"],
            levers=levers.differing(values, base_training),
        )
        effective = {**base_levers, "offload": point.offload, **values}
        same = levers.duplicate(values, deepspeed, axes)
        if same is not None:
            pruned.append(f"{point.point_id} ({same})")
            continue
        problem = point.invalid_reason() or levers.refusal(effective, device or "")
        if problem is None:
            points.append(point)
            continue
        reason, involved = problem
        if all(len(axes.get(axis, ())) <= 1 for axis in involved):  # nothing swept there: the study asked for it
            named = ", ".join(f"{axis}={effective[axis]!r}" for axis in involved)
            raise ConfigError(f"study '{name}': {named} is not a valid combination: {reason}")
        pruned.append(f"{point.point_id} ({reason})")
    if not points:
        raise ConfigError(f"study '{name}': every combination was pruned as invalid")
    return points, pruned


def point_settings(settings: dict[str, Any], point: MatrixPoint) -> dict[str, Any]:
    """A run's settings: its study's, with the point's lever values in `training` (the run reads only those)."""
    if not point.levers:
        return settings
    return deep_merge(settings, {"training": dict(point.levers)})


def _check_build(config: dict[str, Any], studies: dict[str, Any]) -> list[str]:
    build = list(config.get("build_studies") or studies)
    for name in build:
        if name not in studies:
            raise ConfigError(f"build_studies: '{name}' is not a study; known: {sorted(studies)}")
    return build


def build_plan(config: dict[str, Any]) -> Plan:
    """Turn a schema-valid config into the deduplicated runs and the studies that table them."""
    matrix = config["matrix"]
    studies_config: dict[str, Any] = config["studies"]
    if not studies_config:
        raise ConfigError("studies: at least one study is required")
    base_settings = {section: copy.deepcopy(config.get(section, {})) for section in RUN_SECTIONS}
    # Used only by the report layer (MFU): not part of what a run trains, so editing it retrains nothing.
    for section, key in REPORT_ONLY_SETTINGS:
        base_settings[section].pop(key, None)
    runs: dict[str, RunSpec] = {}
    studies: dict[str, Study] = {}
    for name, study in studies_config.items():
        if not re.fullmatch(STUDY_PATTERN, name):
            raise ConfigError(f"study '{name}': name must match {STUDY_PATTERN}")
        scaling_axis = study.get("scaling_axis")
        if study["table"] == "scaling":
            if scaling_axis is None:
                raise ConfigError(f"study '{name}': key 'scaling_axis' is required for a scaling table")
        elif scaling_axis is not None:
            raise ConfigError(f"study '{name}': key 'scaling_axis' only applies to table 'scaling'")
        overrides = _effective_overrides(config, study)
        settings = deep_merge(base_settings, overrides)
        points, pruned = _study_points(name, study, matrix, settings["training"], settings["runtime"].get("device"))
        entry = Study(
            name=name,
            title=study.get("title", name),
            table=study["table"],
            scaling_axis=scaling_axis,
            pruned=pruned,
        )
        entry.points = points
        if study["table"] == "tune":  # its runs follow from probe outcomes: plan.tune.studies makes them
            studies[name] = entry
            continue
        for point in points:
            run_id = point.point_id + _suffix(overrides)
            spec = RunSpec(run_id=run_id, point=point, settings=point_settings(settings, point))
            if run_id in runs and runs[run_id] != spec:  # same id must mean the same run
                raise ConfigError(f"study '{name}': run '{run_id}' clashes with an earlier study's run")
            runs[run_id] = spec
            entry.run_ids.append(run_id)
        studies[name] = entry
    plan = Plan(runs=runs, studies=studies, build=_check_build(config, studies_config))
    return expand_repeats(plan, config)  # <run>-r<k> per repeat; unchanged ids when every study has 1


def matrix_table(plan: Plan) -> str:
    """The run matrix as a Markdown table: one row per run, with the studies that use it."""
    users: dict[str, list[str]] = {}
    for study in plan.studies.values():
        for run_id in study.run_ids:
            users.setdefault(run_id, []).append(study.name)
    header = "| run id | studies | GPUs/node | nodes | world | ZeRO | offload | pin | levers | samples/GPU |"
    lines = [header, "|" + "---|" * 10]
    for run_id, spec in plan.runs.items():
        point = spec.point
        zero = "-" if point.zero_stage is None else str(point.zero_stage)
        lines.append(
            f"| {run_id} | {', '.join(users[run_id])} | {point.gpus_per_node} | {point.nodes} | "
            f"{point.world_size} | {zero} | {point.offload if point.deepspeed else '-'} | "
            f"{str(point.pin_memory).lower() if point.deepspeed else '-'} | "
            f"{', '.join(levers.labels(point.levers)) or '-'} | {spec.settings['data']['samples_per_gpu']} |"
        )
    lines.append("")
    lines.append(f"{len(plan.runs)} runs in {len(plan.studies)} studies; {plan.pruned_count} invalid combinations pruned.")
    for study in plan.studies.values():
        if study.table == "tune":
            lines.append(f"  tune study {study.name}: micro-batch search over "
                         f"{', '.join(point.point_id for point in study.points)}")
    for study in plan.studies.values():
        for item in study.pruned:
            lines.append(f"  pruned in {study.name}: {item}")
    return "\n".join(lines)
