"""Where each point's micro-batch search of a tune study starts, and the replay of that search over the probes that
have finished: what the workflow's input functions ask (rules/common.smk, checkpoint `tune_probe`).

The replay is pure: `probe_outcome(run_id)` gives a probe's tune-probe outcome (status, micro_batch, peak_mib, ...).
The Snakefile passes one that reads the checkpoint's output, so asking for a probe that has not run raises
Snakemake's IncompleteCheckpointException and schedules it; tests pass a dict's lookup.

With `tune.start_from_model`, every point after the study's first starts where the memory model puts its
boundary: the first point's fixed and per-sample memory with the point's own model states, up to the memory the
first point's search ran into. The first point's search has to finish before the others start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .memory_model import MemoryModel, ModelSize
from .studies import Boundary, TuneStudy, boundary, next_probe

ProbeOutcome = Callable[[str], Mapping[str, Any]]  # probe run id -> its tune-probe outcome
SizeOf = Callable[[], ModelSize]  # called only when a start is guessed (a pretrained model's config is a download)


@dataclass(frozen=True)
class Replay:
    """One point's search as far as the finished probes take it (the whole search once none is missing)."""

    point_id: str
    start: int
    upper: int
    gallop: bool  # the start is the memory model's guess: step away from it instead of doubling
    probes: tuple[Mapping[str, Any], ...]  # outcomes, in the order the search asked for them

    @property
    def run_ids(self) -> list[str]:
        return [str(probe["run_id"]) for probe in self.probes]

    @property
    def outcomes(self) -> dict[int, str]:
        return {int(probe["micro_batch"]): str(probe["status"]) for probe in self.probes}

    @property
    def boundary(self) -> Boundary:
        return boundary(self.outcomes, self.start, self.upper, self.gallop)


def guided_start(study: Mapping[str, Any], size: ModelSize, reference: Replay, target_point: str) -> int | None:
    """The micro-batch where `target_point`'s search starts: the largest one whose predicted peak stays within
    the memory the reference search ran into (halfway between its largest fit and its first OOM), predicted
    with the reference's fixed and per-sample memory and the target's own model states. None without a
    finished, bounded reference that fit at two micro-batches (the caller then starts at the study's start).

    study: `TuneStudy.to_dict()`."""
    found = reference.boundary
    model = MemoryModel(study, size, [probe for probe in reference.probes if probe["point_id"] == reference.point_id])
    fit = model.fits.get(reference.point_id)
    if fit is None or found.max_fit is None or found.first_oom is None or fit.per_sample_mib <= 0:
        return None
    capacity = fit.predict(model.states_mib(reference.point_id), found.max_fit + 0.5)
    return max(1, fit.largest_micro_batch(model.states_mib(target_point), capacity))


def search_start(study: TuneStudy, point: str, probe_outcome: ProbeOutcome, size: SizeOf) -> tuple[int, bool]:
    """(first micro-batch, gallop): the study's start, or with tune.start_from_model the memory model's guess
    from the study's first point once that point's search has finished."""
    search = study.searches[point]
    first = next(iter(study.searches))
    if not search.tune["start_from_model"] or point == first:
        return search.start, False
    guess = guided_start(study.to_dict(), size(), replay(study, first, probe_outcome, size), point)
    return (search.start, False) if guess is None else (min(guess, search.upper), True)


def replay(study: TuneStudy, point: str, probe_outcome: ProbeOutcome, size: SizeOf) -> Replay:
    """Replay the point's search over the finished probes: ask for each probe the search takes next, in order,
    until the boundary is known. A probe that has not run stops the replay in `probe_outcome` (by raising)."""
    search = study.searches[point]
    start, gallop = search_start(study, point, probe_outcome, size)
    outcomes: dict[int, str] = {}
    probes: list[Mapping[str, Any]] = []
    while (micro_batch := next_probe(outcomes, start, search.upper, gallop)) is not None:
        run_id = search.probe(micro_batch).run_id
        outcome = probe_outcome(run_id)
        if outcome["run_id"] != run_id or int(outcome["micro_batch"]) != micro_batch:
            raise ValueError(f"probe {run_id}: its outcome is of run {outcome['run_id']} at micro-batch "
                             f"{outcome['micro_batch']}")
        outcomes[micro_batch] = str(outcome["status"])
        probes.append(outcome)
    return Replay(point_id=point, start=start, upper=search.upper, gallop=gallop, probes=tuple(probes))


def measurement_runs(study: TuneStudy, probe_outcome: ProbeOutcome, size: SizeOf) -> list[str]:
    """Run ids of each point's measurement at its largest micro-batch (none where nothing fits); the boundary
    probe itself when the measurement settings equal the probe's."""
    runs = []
    for point, search in study.searches.items():
        best = replay(study, point, probe_outcome, size).boundary.max_fit
        if best:
            runs.append(search.measurement(best).run_id)
    return runs
