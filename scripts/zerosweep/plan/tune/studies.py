"""The `tune` study: for each matrix point, the largest per-device micro-batch that fits, found by real probes.

Search (pure; state = the finished probes' outcomes, so a rerun replays it from the records): grow from
`start` by doubling until the first OOM, clamped to `upper` so the upper bound itself is always probed; then
bisect between the largest fit and the smallest OOM until they are adjacent. Fits are assumed monotone in the
micro-batch; outcomes that contradict it are reported, never silently smoothed.

Runs: a probe is an ordinary run of the point with the study's overrides plus the probe settings (short
max_steps, the micro-batch, an optional host-memory cap), id `<point>[-x<hash>]-b<micro_batch>`; the hash
covers everything but the micro-batch. The measurement at the best micro-batch is the same kind of run with
the measurement settings; when those equal the probe's, the probe is the measurement (one run, not two).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..matrix import (
    RUN_SECTIONS,
    ConfigError,
    MatrixPoint,
    Plan,
    RunSpec,
    _effective_overrides,
    _suffix,
    deep_merge,
    point_settings,
)

FIT, OOM = "ok", "oom"
OUTCOMES = (FIT, OOM)
# Settings of the tune block (schema: $defs/tune); defaults for keys a study leaves out.
TUNE_DEFAULTS: dict[str, Any] = {
    "start_micro_batch": 1,
    "max_micro_batch": 256,
    "probe_steps": 4,
    "measure_steps": None,  # None: measure with the probe's settings (the boundary probe is the measurement)
    "global_batch_size": None,  # None: measure at gradient_accumulation_steps of the study
    "host_memory_cap_mib": None,  # CPU runs: each rank may grow this far past its post-import size
    "budgets_gib": [16, 24, 40, 80],
    "workshop_micro_batch": 4,
    "start_from_model": False,  # points after the first: start at the boundary the memory model predicts
    "screen_micro_batch": None,  # None: every point searched; else each point probed here first (plan/tune/search)
    "screen_keep": 2,  # how many of the fastest screened points get a boundary search
    "screen_reference": False,  # the study's first point searched too, whatever its screen rank
    "fill_budgets": "none",  # none | first_fit | exact: a budget search for every budget the boundaries leave empty
    "search_mode": "separate_process",  # or in_process: one job per point probes in one process (plan/tune/search)
}
FILL_BUDGETS = ("none", "first_fit", "exact")
SEPARATE_PROCESS, IN_PROCESS = "separate_process", "in_process"
SEARCH_MODES = (SEPARATE_PROCESS, IN_PROCESS)
IN_PROCESS_SEARCH = "in_process_search"  # the key of the in-process job's spec (and of its rank record) with its search


# --- the search --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boundary:
    """What the finished probes say. `max_fit` 0: not even micro-batch 1 fits."""

    max_fit: int | None  # None while the search is not finished
    first_oom: int | None  # the smallest micro-batch that ran out of memory (None: none did)
    capped: bool  # the upper bound fit: the true maximum may lie above it
    consistent: bool  # False when a probe fit above one that ran out of memory
    probes: dict[int, str] = field(default_factory=dict)


def _check_bounds(start: int, upper: int) -> None:
    if start < 1 or upper < start:
        raise ValueError(f"micro-batch search needs 1 <= start <= upper, got start={start}, upper={upper}")


def bracket(outcomes: Mapping[int, str]) -> tuple[int, int | None]:
    """(largest fit below the smallest OOM, smallest OOM); 0 stands for "nothing fits yet"."""
    for micro_batch, outcome in outcomes.items():
        if outcome not in OUTCOMES:
            raise ValueError(f"micro-batch {micro_batch}: outcome {outcome!r} is not one of {OUTCOMES}")
    ooms = [mb for mb, outcome in outcomes.items() if outcome == OOM]
    first_oom = min(ooms) if ooms else None
    fits = [mb for mb, outcome in outcomes.items() if outcome == FIT and (first_oom is None or mb < first_oom)]
    return (max(fits) if fits else 0), first_oom


def next_probe(outcomes: Mapping[int, str], start: int, upper: int, gallop: bool = False) -> int | None:
    """The micro-batch to probe next, or None when the boundary is known.

    gallop: `start` is a guess of the boundary (from the memory model): step away from it by 1, 2, 4, ... (up
    while it fits, down while it runs out of memory) instead of doubling the micro-batch, then bisect. A good
    guess costs two probes (the guess fits, guess + 1 does not).
    """
    _check_bounds(start, upper)
    fit, oom = bracket(outcomes)
    if oom is None:
        if fit == 0:
            return start
        if fit >= upper:
            return None
        step = fit - start + 1 if gallop else fit
        return min(fit + step, upper)  # clamp: the upper bound is probed, never skipped
    if oom - fit <= 1:
        return None
    if gallop and fit == 0:  # the guess ran out of memory: step down
        return max(1, oom - (start - oom + 1))
    return (fit + oom) // 2


def most_probes(upper: int) -> int:
    """The most probes next_probe asks for below `upper`, whatever the start, the mode and the boundary: a walk
    out (at most ceil(log2 upper) + 1 steps) and a bisection back (at most ceil(log2 upper)); the tests check it
    against every case up to 128. An in-process search job's time limit is that many probes'."""
    return 2 * math.ceil(math.log2(upper)) + 1 if upper > 1 else 1


def boundary(outcomes: Mapping[int, str], start: int, upper: int, gallop: bool = False) -> Boundary:
    fit, oom = bracket(outcomes)
    done = next_probe(outcomes, start, upper, gallop) is None
    contradicted = oom is not None and any(mb > oom and out == FIT for mb, out in outcomes.items())
    return Boundary(max_fit=fit if done else None, first_oom=oom, capped=done and oom is None,
                    consistent=not contradicted, probes=dict(sorted(outcomes.items())))


# --- the study's runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneSearch:
    """One matrix point of a tune study: how its probe and measurement runs are made."""

    study: str
    point: MatrixPoint
    base_settings: dict[str, Any]  # the point's settings (the study's, with its levers) before the probe/measure ones
    overrides: dict[str, Any]  # the study's effective data/training overrides (part of the run id hash)
    tune: dict[str, Any]

    @property
    def start(self) -> int:
        """Where an unguided search starts: the screen micro-batch when the study screens (so the screen probe is
        the search's first probe, not one more run), else start_micro_batch."""
        screen = self.tune["screen_micro_batch"]
        return int(self.tune["start_micro_batch"] if screen is None else screen)

    @property
    def upper(self) -> int:
        return int(self.tune["max_micro_batch"])

    def _run(self, micro_batch: int, steps: int, grad_accum: int) -> RunSpec:
        if micro_batch < 1:
            raise ValueError(f"{self.point.point_id}: micro-batch must be >= 1, got {micro_batch}")
        fixed: dict[str, Any] = deep_merge(self.overrides, {"training": {"max_steps": steps,
                                                                         "gradient_accumulation_steps": grad_accum}})
        cap = self.tune["host_memory_cap_mib"]
        if cap is not None:
            fixed["runtime"] = {"memory_headroom_mib": int(cap)}
        settings = deep_merge(self.base_settings, fixed)
        settings["training"]["per_device_batch_size"] = micro_batch
        # One pass over the data covers the steps: no evaluation (and its memory) in the middle of a probe.
        needed = micro_batch * grad_accum * steps
        settings["data"]["samples_per_gpu"] = max(int(settings["data"]["samples_per_gpu"]), needed)
        run_id = f"{self.point.point_id}{_suffix(fixed)}-b{micro_batch}"
        return RunSpec(run_id=run_id, point=self.point, settings=settings)

    def probe(self, micro_batch: int) -> RunSpec:
        return self._run(micro_batch, int(self.tune["probe_steps"]), self.study_grad_accum)

    @property
    def study_grad_accum(self) -> int:
        return int(self.base_settings["training"]["gradient_accumulation_steps"])

    @property
    def probe_prefix(self) -> str:
        """The probes' run id without `-b<micro_batch>` (the hash covers everything but the micro-batch)."""
        return self.probe(1).run_id.rsplit("-b", 1)[0]

    def in_process(self, start: int, gallop: bool, known: Mapping[int, str]) -> dict[str, Any]:
        """The spec of the point's in-process search job (tune.search_mode in_process): the probe settings at
        `start`, data for the largest probe, and the search it runs (run/in_process.py): from `start` (galloping
        when the memory model guessed it), up to `upper`, with the outcomes already `known` (a screen probe)."""
        spec = self.probe(start).to_dict()
        largest = self.probe(self.upper).settings["data"]["samples_per_gpu"]
        spec["data"]["samples_per_gpu"] = max(int(spec["data"]["samples_per_gpu"]), int(largest))
        spec["run_id"] = f"in_process-{self.study}-{self.point.point_id}"  # results/runs/<it>: the runs' cache
        spec[IN_PROCESS_SEARCH] = {"start": int(start), "upper": self.upper, "gallop": bool(gallop),
                                     "known": {str(mb): outcome for mb, outcome in sorted(known.items())},
                                     "probe_prefix": self.probe_prefix,
                                     "steps": int(self.tune["probe_steps"])}
        return spec

    def measure_grad_accum(self, micro_batch: int) -> int:
        """Gradient accumulation that brings the global batch to the study's `global_batch_size` (at least 1)."""
        target = self.tune["global_batch_size"]
        if target is None:
            return self.study_grad_accum
        return max(1, int(target) // (micro_batch * self.point.world_size))

    def measurement(self, micro_batch: int) -> RunSpec:
        steps = self.tune["measure_steps"] or self.tune["probe_steps"]
        return self._run(micro_batch, int(steps), self.measure_grad_accum(micro_batch))


@dataclass
class TuneStudy:
    name: str
    title: str
    tune: dict[str, Any]
    searches: dict[str, TuneSearch]  # by point id
    settings: dict[str, Any]  # the study's settings, before any point's levers

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "tune": copy.deepcopy(self.tune),
                "points": {point_id: {**search.point.to_dict(), "label": search.point.label}
                           for point_id, search in self.searches.items()},
                "settings": copy.deepcopy(self.settings)}


def tune_settings(name: str, study: Mapping[str, Any]) -> dict[str, Any]:
    settings = {**TUNE_DEFAULTS, **(study.get("tune") or {})}
    for key in ("start_micro_batch", "screen_micro_batch"):
        if settings[key] is not None and settings["max_micro_batch"] < settings[key]:
            raise ConfigError(f"study '{name}': tune.max_micro_batch ({settings['max_micro_batch']}) is below "
                              f"tune.{key} ({settings[key]})")
    if settings["fill_budgets"] not in FILL_BUDGETS:
        raise ConfigError(f"study '{name}': tune.fill_budgets {settings['fill_budgets']!r} is not one of {FILL_BUDGETS}")
    if settings["search_mode"] not in SEARCH_MODES:
        raise ConfigError(f"study '{name}': tune.search_mode {settings['search_mode']!r} is not one of {SEARCH_MODES}")
    return settings


def build_tune_studies(config: Mapping[str, Any], plan: Plan) -> dict[str, TuneStudy]:
    """The tune studies of a built plan (their points were validated by build_plan)."""
    base = {section: copy.deepcopy(config.get(section, {})) for section in RUN_SECTIONS}
    studies: dict[str, TuneStudy] = {}
    for name, study in config["studies"].items():
        if study["table"] != "tune":
            if "tune" in study:
                raise ConfigError(f"study '{name}': key 'tune' only applies to table 'tune'")
            continue
        tune = tune_settings(name, study)
        overrides = _effective_overrides(dict(config), dict(study))
        settings = deep_merge(base, overrides)
        # each point (a lever combination too) is searched on its own; its levers are in its id, not the -x hash
        searches = {point.point_id: TuneSearch(name, point, point_settings(settings, point), overrides, tune)
                    for point in plan.studies[name].points}
        several = [point for point in searches.values() if point.point.world_size > 1]
        if tune["search_mode"] == IN_PROCESS and several:
            # ranks would have to agree on every OOM; a rank that ran out mid-collective leaves the others hanging
            raise ConfigError(f"study '{name}': tune.search_mode in_process probes one rank per point; point "
                              f"{several[0].point.point_id} has {several[0].point.world_size} (use separate_process)")
        studies[name] = TuneStudy(name=name, title=study.get("title", name), tune=tune, searches=searches,
                                  settings=settings)
    return studies


def find_run(plan: Plan, tune_studies: Mapping[str, TuneStudy], run_id: str) -> RunSpec:
    """A run of the plan, or a tune probe/measurement (their ids end in -b<micro_batch>)."""
    if run_id in plan.runs:
        return plan.runs[run_id]
    head, _, micro = run_id.rpartition("-b")
    if micro.isdigit():
        for study in tune_studies.values():
            for search in study.searches.values():
                micro_batch = int(micro)
                for spec in (search.probe(micro_batch), search.measurement(micro_batch)):
                    if spec.run_id == run_id:
                        return spec
    raise KeyError(f"run '{run_id}' is neither in the matrix nor a tune study's probe ({head})")
