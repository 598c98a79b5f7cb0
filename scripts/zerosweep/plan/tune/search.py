"""Where each point's micro-batch search of a tune study starts, and the replay of that search over the probes that
have finished: what the workflow's input functions ask (rules/common.smk, checkpoint `tune_probe`).

The replay is pure: `probe_outcome(run_id)` gives a probe's tune-probe outcome (status, micro_batch, peak_mib, ...).
The Snakefile passes one that reads the checkpoint's output, so asking for a probe that has not run raises
Snakemake's IncompleteCheckpointException and schedules it; tests pass a dict's lookup.

With `tune.screen_micro_batch`, every point (lever combinations among them) is first probed at that one
micro-batch and ranked by its samples/s; only the `screen_keep` fastest get a boundary search, starting at the
screen micro-batch (the screen probe is their first probe). Points that ran out of memory there rank after
every point that fit (so a screen set too high still searches, downward). With `tune.screen_reference` the
study's first point is searched too, first (the configuration the levers are judged against, e.g. no lever).

With `tune.start_from_model`, every searched point after the first (the fastest screened, or the study's first)
starts where the memory model puts its boundary: the first point's fixed and per-sample memory with the point's
own model states, up to the memory the first point's search ran into. The first point's search has to finish
before the others start.

With `tune.fill_budgets`, each budget below the fastest configuration's boundary peak gets a budget search: the
fastest searched configuration that the memory model predicts to fit the budget, probed from the model's largest
micro-batch within it (galloping, then bisecting), where a probe "fits" when its measured peak stays within the
budget (`within_budget`). `first_fit` stops at the first such probe, `exact` also proves the next micro-batch
exceeds the budget.

With `tune.search_mode: in_process`, one job per searched point runs the point's search in one process
(run/in_process.py, the same `next_probe`); the replay takes a probe's outcome from that job's record where its
outcome stands (`in_process_doubts`), and from an ordinary probe run otherwise (`with_in_process`): a doubtful
outcome, a micro-batch the job did not reach, a screen probe and a budget search's probe beyond the job's are
ordinary runs. The boundary's largest fit is always an ordinary run's too (`replay`), so the boundary is
witnessed the way the separate-process search witnesses it, on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .memory_model import MemoryModel, ModelSize
from .studies import FIT, IN_PROCESS, OOM, Boundary, TuneSearch, TuneStudy, boundary, bracket, next_probe

GIB_MIB = 1024.0  # a budget in GiB, peaks in MiB
# An in-process fit whose peak lies this close to the device's memory may not fit a fresh process (other
# fragmentation, other workspaces): doubted as soon as it ran, its ordinary run comes before the search asks the
# micro-batches above it (on an H100 the process fit 29 at 81041 of 81079 MiB, an ordinary run ran out; without
# the early doubt the search confirmed the process's OOM at 30 first, one more ordinary probe).
IN_PROCESS_PEAK_MARGIN = 0.02

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


def _probe_at(search: TuneSearch, micro_batch: int, probe_outcome: ProbeOutcome) -> Mapping[str, Any]:
    """The outcome of the point's probe at a micro-batch, checked to be that run's."""
    run_id = search.probe(micro_batch).run_id
    outcome = probe_outcome(run_id)
    if outcome["run_id"] != run_id or int(outcome["micro_batch"]) != micro_batch:
        raise ValueError(f"probe {run_id}: its outcome is of run {outcome['run_id']} at micro-batch "
                         f"{outcome['micro_batch']}")
    return outcome


@dataclass(frozen=True)
class Screen:
    """Each point's probe at the screen micro-batch, the ranking and the points that get a boundary search."""

    micro_batch: int | None  # None: the study does not screen; every point is searched, in study order
    probes: tuple[Mapping[str, Any], ...]  # the screen probes, in study order
    ranking: tuple[str, ...]  # fit, fastest first; then ran out of memory, in study order
    kept: tuple[str, ...]  # the points searched, first the reference of a model-guided start

    @classmethod
    def of(cls, micro_batch: int, probes: Sequence[Mapping[str, Any]], keep: int, reference: str | None) -> Screen:
        """The screen's ranking (screen_ranking) and its `keep` fastest points, after the reference point (the
        study's first, searched whatever its rank, with tune.screen_reference) where there is one."""
        ranking = screen_ranking(probes)
        fastest = tuple(point for point in ranking if point != reference)[:int(keep)]
        return cls(int(micro_batch), tuple(probes), ranking, ((reference,) if reference else ()) + fastest)

    def rank(self, point: str) -> int | None:
        """1 for the fastest screened point; None without screening."""
        return self.ranking.index(point) + 1 if self.micro_batch is not None else None


def screen_run_ids(study: TuneStudy) -> list[str]:
    """The screen probes' run ids (none without screening): the workflow runs them side by side."""
    micro_batch = study.tune["screen_micro_batch"]
    if micro_batch is None:
        return []
    return [search.probe(int(micro_batch)).run_id for search in study.searches.values()]


def screen(study: TuneStudy, probe_outcome: ProbeOutcome) -> Screen:
    micro_batch = study.tune["screen_micro_batch"]
    if micro_batch is None:
        points = tuple(study.searches)
        return Screen(None, (), points, points)
    probes = [_probe_at(search, int(micro_batch), probe_outcome) for search in study.searches.values()]
    return Screen.of(int(micro_batch), probes, int(study.tune["screen_keep"]), screen_reference(study.to_dict()))


def screen_reference(study: Mapping[str, Any]) -> str | None:
    """The point searched whatever its screen rank (tune.screen_reference): the study's first. `study`: to_dict()."""
    return next(iter(study["points"])) if study["tune"]["screen_reference"] else None


def screen_ranking(probes: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Point ids, fastest screen probe first; probes that ran out of memory (or have no samples/s) last, in the
    order given (sorted() is stable)."""

    def speed(probe: Mapping[str, Any]) -> float:
        rate = probe.get("samples_per_second")
        return float(rate) if probe["status"] == FIT and rate is not None else float("-inf")

    return tuple(str(probe["point_id"]) for probe in sorted(probes, key=speed, reverse=True))


def guided_start(study: Mapping[str, Any], size: ModelSize, reference: Replay, target_point: str,
                 target_probes: Sequence[Mapping[str, Any]] = ()) -> int | None:
    """The micro-batch where `target_point`'s search starts: the largest one whose predicted peak stays within
    the memory the reference search ran into (halfway between its largest fit and its first OOM). The reference's
    line gives that memory; the target's own probes (its screen probe) give its per-sample memory (the memory
    model's line through them with the reference's fixed memory), else it borrows the reference's line with its
    own model states. None without a finished, bounded reference that fit at two micro-batches (the caller then
    starts at the study's start).

    study: `TuneStudy.to_dict()`."""
    found = reference.boundary
    own = [probe for probe in reference.probes if probe["point_id"] == reference.point_id]
    model = MemoryModel(study, size, [*own, *target_probes])
    fit = model.fits.get(reference.point_id)
    target = model.fits.get(target_point)
    if fit is None or target is None or found.max_fit is None or found.first_oom is None or fit.per_sample_mib <= 0 \
            or target.per_sample_mib <= 0:
        return None
    capacity = fit.predict(model.states_mib(reference.point_id), found.max_fit + 0.5)
    return max(1, target.largest_micro_batch(model.states_mib(target_point), capacity))


def search_start(study: TuneStudy, point: str, probe_outcome: ProbeOutcome, size: SizeOf) -> tuple[int, bool]:
    """(first micro-batch, gallop): the study's start, or with tune.start_from_model the memory model's guess
    from the first searched point once that point's search has finished (with the point's screen probe)."""
    search = study.searches[point]
    screened = screen(study, probe_outcome)
    first = screened.kept[0]
    if not search.tune["start_from_model"] or point == first:
        return search.start, False
    own = [probe for probe in screened.probes if probe["point_id"] == point]
    guess = guided_start(study.to_dict(), size(), replay(study, first, probe_outcome, size), point, own)
    return (search.start, False) if guess is None else (min(guess, search.upper), True)


def replay(study: TuneStudy, point: str, probe_outcome: ProbeOutcome, size: SizeOf) -> Replay:
    """Replay the point's search over the finished probes: ask for each probe the search takes next, in order,
    until the boundary is known. A probe that has not run stops the replay in `probe_outcome` (by raising).

    With in-process outcomes (`with_in_process`) the boundary's largest fit is an ordinary run's, like the OOM
    above it: where it came from the process, its ordinary run replaces it, and where that run ran out of memory
    the search goes on below. A process's fit near its boundary has been a fresh process's OOM on both kinds of
    memory (an H100: 29 fit in process with CPU offload, an ordinary run ran out; CPU in CI: the same at the
    process's largest fit), and the boundary's fit is the measurement anyway."""
    search = study.searches[point]
    start, gallop = search_start(study, point, probe_outcome, size)
    witness = probe_outcome.ordinary if isinstance(probe_outcome, InProcessOutcomes) else None
    outcomes: dict[int, str] = {}
    probes: list[Mapping[str, Any]] = []
    while True:
        while (micro_batch := next_probe(outcomes, start, search.upper, gallop)) is not None:
            outcome = _probe_at(search, micro_batch, probe_outcome)
            outcomes[micro_batch] = str(outcome["status"])
            probes.append(outcome)
        top = boundary(outcomes, start, search.upper, gallop).max_fit
        at = next((index for index, probe in enumerate(probes)
                   if int(probe["micro_batch"]) == top and probe.get("search_mode") == IN_PROCESS), None)
        if witness is None or at is None or top is None:
            return Replay(point_id=point, start=start, upper=search.upper, gallop=gallop, probes=tuple(probes))
        probes[at] = _probe_at(search, top, witness)
        outcomes[top] = str(probes[at]["status"])


def measurement_runs(study: TuneStudy, probe_outcome: ProbeOutcome, size: SizeOf) -> list[str]:
    """Run ids of each point's measurement at its largest micro-batch (none where nothing fits); the boundary
    probe itself when the measurement settings equal the probe's."""
    runs = []
    for point in screen(study, probe_outcome).kept:
        best = replay(study, point, probe_outcome, size).boundary.max_fit
        if best:
            runs.append(study.searches[point].measurement(best).run_id)
    return runs


# --- the in-process search (tune.search_mode in_process) ------------------------------------------------


def in_process_doubts(record: Mapping[str, Any]) -> dict[int, str]:
    """The micro-batches whose in-process outcome an ordinary run must confirm, with why. `record`: the point's
    in-process job (report/tune/tune_records.in_process_record): `known` outcomes it started from, its `probes`
    in the order they ran, and the device's memory (`device_total_mib`, None on CPU ranks).

    Fits stand (what ran within the memory a process had after earlier probes runs in a fresh one), except the
    largest fit when its peak lies within IN_PROCESS_PEAK_MARGIN of the device's memory; whatever its peak,
    `replay` gives the boundary's fit an ordinary run. Every OOM is confirmed by an ordinary run: what earlier
    probes of the process left behind (after an OOM, or fragments of fits) can make a micro-batch that fits a
    fresh process run out, and any OOM may end up bounding the search once confirmations move it (seen on CPU:
    the process ran out at 4 and 3, an ordinary run fit 3, so 4 bounded the search; an ordinary run fit 4 too).
    The process saves the runs of the fits below the boundary; the OOMs cost ordinary probes as before."""
    probes = list(record["probes"])
    outcomes = {int(mb): str(status) for mb, status in record["known"].items()}
    outcomes.update({int(probe["micro_batch"]): str(probe["status"]) for probe in probes})
    max_fit, _ = bracket(outcomes)
    largest_fit = max((mb for mb, status in outcomes.items() if status == FIT), default=0)
    doubts: dict[int, str] = {}
    ooms_before = 0
    for probe in probes:
        micro_batch = int(probe["micro_batch"])
        if probe["status"] == OOM:
            if micro_batch < largest_fit:
                doubts[micro_batch] = f"ran out of memory below micro-batch {largest_fit}, which fit"
            else:
                doubts[micro_batch] = "an OOM in process" + (
                    f", after {ooms_before} earlier OOM(s) in it" if ooms_before else "")
            ooms_before += 1
    total = record.get("device_total_mib")
    top = next((probe for probe in probes if int(probe["micro_batch"]) == max_fit), None)
    if top is not None and total is not None and top["peak_mib"] is not None \
            and float(top["peak_mib"]) > (1 - IN_PROCESS_PEAK_MARGIN) * float(total):
        doubts[max_fit] = (f"fit at {float(top['peak_mib']):.0f} MiB, within {IN_PROCESS_PEAK_MARGIN:.0%} of the "
                           f"device's {float(total):.0f} MiB")
    return doubts


def in_process_trusted(record: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The in-process job's probes whose outcome stands, by run id (the rest are ordinary runs)."""
    doubts = in_process_doubts(record)
    return {str(probe["run_id"]): probe for probe in record["probes"] if int(probe["micro_batch"]) not in doubts}


InProcessRecord = Callable[[str], Mapping[str, Any]]  # point id -> its in-process job's record


@dataclass(frozen=True)
class InProcessOutcomes:
    """The probe outcomes a replay reads with tune.search_mode in_process (`with_in_process`): called with a run
    id, the point's in-process outcome where it stands, else the ordinary run's; `ordinary` gives the ordinary
    run's always (`replay` witnesses the boundary's fit with it)."""

    study: TuneStudy
    in_process_record: InProcessRecord
    ordinary: ProbeOutcome

    @cached_property
    def _points(self) -> dict[str, str]:
        """Searched point ids by their probes' run-id prefix."""
        return {search.probe_prefix: point for point, search in self.study.searches.items()}

    @cached_property
    def _screens(self) -> frozenset[str]:
        return frozenset(screen_run_ids(self.study))

    def __call__(self, run_id: str) -> Mapping[str, Any]:
        point = self._points.get(run_id.rsplit("-b", 1)[0])
        if point is None or run_id in self._screens:
            return self.ordinary(run_id)
        trusted = in_process_trusted(self.in_process_record(point))
        return trusted[run_id] if run_id in trusted else self.ordinary(run_id)


def with_in_process(study: TuneStudy, in_process_record: InProcessRecord, ordinary: ProbeOutcome) -> ProbeOutcome:
    """The probe outcomes a replay reads: with tune.search_mode in_process, the point's in-process record where
    its outcome stands (`in_process_trusted`), else the ordinary probe run's; screen probes are always ordinary
    runs (the screen picks the points whose job runs). `in_process_record` is asked only for searched points."""
    if study.tune["search_mode"] != IN_PROCESS:
        return ordinary
    return InProcessOutcomes(study, in_process_record, ordinary)


def in_process_known(study: TuneStudy, point: str, probe_outcome: ProbeOutcome) -> dict[int, str]:
    """The outcomes a point's in-process job starts from: its screen probe's (none without screening)."""
    micro_batch = study.tune["screen_micro_batch"]
    if micro_batch is None:
        return {}
    return {int(micro_batch): str(_probe_at(study.searches[point], int(micro_batch), probe_outcome)["status"])}


# --- budget searches ------------------------------------------------------------------------------------


def within_budget(probe: Mapping[str, Any], budget_gib: float) -> bool:
    """A probe fits a budget when it ran and its measured peak stays within it (the one rule)."""
    return probe["status"] == FIT and probe["peak_mib"] is not None and float(probe["peak_mib"]) <= budget_gib * GIB_MIB


@dataclass(frozen=True)
class BudgetSearch:
    """The largest micro-batch of one configuration whose measured peak stays within a budget."""

    budget_gib: float
    mode: str  # first_fit | exact
    point_id: str | None  # None: no searched configuration is predicted to fit the budget
    start: int | None  # the memory model's largest micro-batch within the budget (None: the boundary fits)
    upper: int | None  # the configuration's boundary: it fits the GPU, not the budget
    basis: str  # how the configuration and the start were chosen
    probes: tuple[Mapping[str, Any], ...] = ()  # in the order the search asked for them

    def to_dict(self) -> dict[str, Any]:
        """What the workflow passes the record command (the probes travel as files)."""
        return {"budget_gib": self.budget_gib, "mode": self.mode, "point_id": self.point_id, "start": self.start,
                "upper": self.upper, "basis": self.basis}

    @property
    def run_ids(self) -> list[str]:
        return [str(probe["run_id"]) for probe in self.probes]

    @property
    def outcomes(self) -> dict[int, str]:
        return {int(probe["micro_batch"]): FIT if within_budget(probe, self.budget_gib) else OOM
                for probe in self.probes}

    @property
    def max_within(self) -> int:
        """The largest micro-batch measured within the budget below the first one over it (0: none)."""
        return bracket(self.outcomes)[0]

    @property
    def exact(self) -> bool:
        """The next micro-batch was measured over the budget (or the boundary itself fits it)."""
        if self.start is None:
            return self.point_id is not None
        return self.outcomes.get(self.max_within + 1) == OOM


def budgets_to_fill(study: TuneStudy) -> list[float]:
    return [] if study.tune["fill_budgets"] == "none" else [float(budget) for budget in study.tune["budgets_gib"]]


def _next_budget_probe(search: BudgetSearch) -> int | None:
    assert search.start is not None and search.upper is not None
    outcomes = search.outcomes
    if search.mode == "first_fit" and FIT in outcomes.values():
        return None
    return next_probe(outcomes, search.start, search.upper, gallop=True)


def budget_search(study: TuneStudy, budget_gib: float, probe_outcome: ProbeOutcome, size: SizeOf) -> BudgetSearch:
    """The budget's search, replayed over the finished probes (a missing probe stops it in `probe_outcome`).

    The configuration: the searched one whose boundary probe ran fastest among those the memory model predicts
    to fit the budget at micro-batch 1 or more (its own line, or the pooled one). Its probes are the study's
    ordinary probes: a micro-batch its search already probed costs no run."""
    mode = str(study.tune["fill_budgets"])
    kept = screen(study, probe_outcome).kept
    replays = {point: replay(study, point, probe_outcome, size) for point in kept}

    def boundary_probe(point: str) -> Mapping[str, Any] | None:
        best = replays[point].boundary.max_fit
        return next((probe for probe in replays[point].probes if int(probe["micro_batch"]) == best), None)

    def speed(point: str) -> float:
        probe = boundary_probe(point)
        rate = None if probe is None else probe.get("samples_per_second")
        return float("-inf") if rate is None else float(rate)

    known = [probe for one in replays.values() for probe in one.probes]
    model: MemoryModel | None = None
    for point in sorted(kept, key=speed, reverse=True):
        top = boundary_probe(point)
        if top is None:
            continue
        if within_budget(top, budget_gib):
            return BudgetSearch(budget_gib, mode, point, None, int(top["micro_batch"]),
                                "the fastest configuration's boundary fits the budget", (top,))
        model = model or MemoryModel(study.to_dict(), size(), known)
        fit = model.fits.get(point)
        if fit is None or fit.per_sample_mib <= 0:
            continue
        guess = fit.largest_micro_batch(model.states_mib(point), budget_gib * GIB_MIB)
        if guess < 1:
            continue
        upper = int(top["micro_batch"])
        found = BudgetSearch(budget_gib, mode, point, min(guess, upper), upper,
                             f"fastest configuration predicted to fit; started at the memory model's largest "
                             f"micro-batch within the budget ({fit.source})")
        while (micro_batch := _next_budget_probe(found)) is not None:
            # the boundary's probe is the replay's (its ordinary witness in an in-process search)
            probe = top if micro_batch == upper else _probe_at(study.searches[point], micro_batch, probe_outcome)
            found = BudgetSearch(found.budget_gib, mode, point, found.start, upper, found.basis,
                                 (*found.probes, probe))
        return found
    return BudgetSearch(budget_gib, mode, None, None, None,
                        "no searched configuration is predicted to fit the budget at micro-batch 1")
