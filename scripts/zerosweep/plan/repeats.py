"""Repeats: each matrix point runs N times as separate runs, interleaved so that drift hits all points alike.

- `repeats: N` at the top of the config, or per study (a study's own value wins for its runs). A run used by
  several studies runs as often as the largest N among them; a study with N takes repeats 1..N of it.
- Ids: `<run>-r<k>`, k = 1..N; with N = 1 the id stays `<run>` so existing results stay valid.
- Order: round k = every run's k-th repeat. A run of round k waits for every run of round k-1 of the studies
  that use it, among the built ones (`previous_round`, an input function of the train rule: a hard barrier
  that holds on SLURM too, where a round's runs may run in parallel). `round_priority` (the train rule's priority) puts every
  ready job of round k before any of round k+1, across studies, and rotates the order within a round by one,
  so with one training job at a time (one GPU, local executor) no point runs twice in a row: the run that
  closed round k-1 does not open round k. Targeting one table pulls in only that table's runs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .matrix import Plan

REPEAT_ID_SUFFIX = r"(-r[1-9][0-9]*)?"
_REPEAT = re.compile(r"^(?P<base>.+?)-r(?P<k>[1-9][0-9]*)$")


def repeat_id(run_id: str, repeat: int, total: int) -> str:
    """The id of repeat `repeat` (1-based) of `total`; with one repeat the plain id."""
    if not 1 <= repeat <= total:
        raise ValueError(f"repeat {repeat} of {total}: must be 1..{total}")
    return run_id if total == 1 else f"{run_id}-r{repeat}"


def split_repeat(run_id: str) -> tuple[str, int]:
    """(the point's run id, repeat number); a plain id is repeat 1."""
    match = _REPEAT.match(run_id)
    return (match["base"], int(match["k"])) if match else (run_id, 1)


def study_repeats(config: dict[str, Any], name: str) -> int:
    study = config["studies"][name]
    value = study.get("repeats", config.get("repeats", 1))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"study '{name}': repeats must be an integer >= 1, got {value!r}")
    return value


def expand_repeats(plan: Plan, config: dict[str, Any]) -> Plan:
    """The plan with every run replaced by its repeats, runs ordered round by round."""
    wanted: dict[str, int] = {}
    for name, study in plan.studies.items():
        count = study_repeats(config, name)
        for run_id in study.run_ids:
            wanted[run_id] = max(wanted.get(run_id, 1), count)
    if all(count == 1 for count in wanted.values()):
        return plan
    rounds = max(wanted.values())
    runs = {}
    for k in range(1, rounds + 1):
        for run_id, spec in plan.runs.items():
            if k <= wanted.get(run_id, 1):
                new_id = repeat_id(run_id, k, wanted.get(run_id, 1))
                runs[new_id] = dataclasses.replace(spec, run_id=new_id)
    studies = {}
    for name, study in plan.studies.items():
        count = study_repeats(config, name)
        ids = [repeat_id(run_id, k, wanted[run_id]) for k in range(1, count + 1) for run_id in study.run_ids]
        studies[name] = dataclasses.replace(study, run_ids=ids)
    return dataclasses.replace(plan, runs=runs, studies=studies)


def _neighbours(plan: Plan, run_id: str) -> list[str]:
    """Runs that share rounds with `run_id`: those of the built studies that use it (of every study that uses
    it when none is built), so a run shared with an unbuilt study does not pull that study's runs in."""
    users = [name for name, study in plan.studies.items() if run_id in study.run_ids]
    return plan.runs_of([name for name in users if name in plan.build] or users)


def previous_round(plan: Plan, run_id: str) -> list[str]:
    """The runs that must finish before `run_id` starts: round k-1 of its studies' runs (none for round 1)."""
    _, k = split_repeat(run_id)
    if k == 1:
        return []
    return [other for other in _neighbours(plan, run_id) if split_repeat(other)[1] == k - 1]


def round_priority(plan: Plan, run_id: str) -> int:
    """Scheduling priority (higher first): every job of round k before any of round k+1, and within a round
    the plan order rotated by one per round. 0 (Snakemake's default, not shown in its job listing) for every
    run of a plan without repeats."""
    if all(_REPEAT.match(other) is None for other in plan.runs):
        return 0
    _, k = split_repeat(run_id)
    rounds = max(split_repeat(other)[1] for other in plan.runs)
    members = [other for other in plan.runs if split_repeat(other)[1] == k]
    rotated = len(members) - (members.index(run_id) - (k - 1)) % len(members)  # 1 .. len(members)
    return (rounds - k) * len(plan.runs) + rotated
