"""Predicted per-GPU memory of a run: model states from the ZeRO paper's accounting, activations from probes.

Model states (Rajbhandari et al., "ZeRO", 2020, section 3.1): mixed-precision Adam keeps 2 bytes of 16-bit
parameters, 2 bytes of 16-bit gradients and 12 bytes of fp32 optimizer state (master weights, momentum,
variance) per parameter, K = 12. ZeRO stage 1 partitions the optimizer state over the N data-parallel ranks,
stage 2 the gradients too, stage 3 the parameters too. CPU offload (ZeRO-Offload) moves the optimizer state and
the gradient partition to host memory, and at stage 3 (as this project configures it) the 16-bit parameters too.

`accounting="deepspeed"` adds what DeepSpeed's implementation keeps on top, the terms of its own estimators
(`estimate_zero2/3_model_states_mem_needs`): an fp32 copy of the gradient partition (4 bytes; beside the 16-bit
gradients at stages 0-2 on the GPU, in place of the 16-bit partition at stage 3 and on the host when offloaded)
and, at stage 3, one gathered layer of 16-bit parameters and gradients (4 bytes x the largest layer's
parameters). tests/test_memory_model.py checks both
against DeepSpeed.

Everything that grows with the micro-batch (activations, the fp32 logits over the vocabulary) plus a fixed
remainder (CUDA context, workspaces, allocator slack) is fitted per configuration from measured peaks:
peak = model states + fixed + per_sample x micro-batch (ordinary least squares, scipy.stats.linregress).
A configuration that fit at one micro-batch keeps its own per-sample memory: the line through that probe with
the fixed memory the fitted configurations share (their mean intercept; the pooled line's without any), since
what a lever such as torch.compile changes is the memory per sample, not the CUDA context. A configuration
with no probe that fit borrows the line pooled over all points' probes.

How good the model is gets judged out of sample: every probe predicted by the model refitted without it
(`left_out_predictions`). The in-sample figure is a fit, not a test: a line through two probes reproduces
both exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ...units import MIB

Accounting = Literal["zero_paper", "deepspeed"]
# bytes per parameter: (parameters, gradients, optimizer state)
PRECISION_BYTES: dict[str, tuple[int, int, int]] = {
    "fp16": (2, 2, 12),
    "bf16": (2, 2, 12),
    "fp32": (4, 4, 8),  # the parameters are the master weights: Adam keeps momentum and variance only
}
FP32_GRAD_BYTES = 4
GATHERED_LAYER_BYTES = 4  # 16-bit parameters + 16-bit gradients of one layer, gathered at stage 3


@dataclass(frozen=True)
class StatesSetup:
    """What decides the model states: ZeRO stage (None: no DeepSpeed, plain mixed-precision Trainer)."""

    zero_stage: int | None
    offload: str  # "none" | "cpu"
    gpus_per_node: int
    nodes: int
    precision: str

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    def check(self) -> None:
        if self.zero_stage not in (None, 0, 1, 2, 3):
            raise ValueError(f"zero_stage must be None or 0-3, got {self.zero_stage!r}")
        if self.offload not in ("none", "cpu"):
            raise ValueError(f"offload must be 'none' or 'cpu', got {self.offload!r}")
        if self.precision not in PRECISION_BYTES:
            raise ValueError(f"precision must be one of {sorted(PRECISION_BYTES)}, got {self.precision!r}")
        if self.gpus_per_node < 1 or self.nodes < 1:
            raise ValueError(f"gpus_per_node and nodes must be >= 1, got {self.gpus_per_node}, {self.nodes}")
        if self.offload == "cpu" and not self.zero_stage:
            raise ValueError("CPU offload needs ZeRO stage 1 or higher")


@dataclass(frozen=True)
class StateTerm:
    name: str
    bytes: float  # per rank
    on_host: bool


@dataclass(frozen=True)
class ModelStates:
    terms: tuple[StateTerm, ...]

    @property
    def gpu_bytes(self) -> float:
        return sum(term.bytes for term in self.terms if not term.on_host)

    @property
    def host_bytes(self) -> float:
        """Per rank; a node holds gpus_per_node times this."""
        return sum(term.bytes for term in self.terms if term.on_host)

    def device_mib(self, device: str) -> float:
        """What one rank's device holds: the GPU's part, or everything when the ranks run on the CPU."""
        return (self.gpu_bytes if device == "cuda" else self.gpu_bytes + self.host_bytes) / MIB

    def breakdown_mib(self) -> dict[str, float]:
        return {term.name: term.bytes / MIB for term in self.terms}


def model_states(n_params: int, setup: StatesSetup, accounting: Accounting = "zero_paper",
                 largest_layer_params: int = 0) -> ModelStates:
    """Per-rank bytes of parameters, gradients and optimizer state, and where they live."""
    setup.check()
    if n_params < 1:
        raise ValueError(f"n_params must be >= 1, got {n_params}")
    if accounting not in ("zero_paper", "deepspeed"):
        raise ValueError(f"accounting must be 'zero_paper' or 'deepspeed', got {accounting!r}")
    n, stage, offload = setup.world_size, setup.zero_stage, setup.offload == "cpu"
    param_b, grad_b, optim_b = PRECISION_BYTES[setup.precision]
    if stage is None:  # torch autocast keeps fp32 weights and gradients; Adam adds momentum and variance
        return ModelStates((StateTerm("parameters", 4 * n_params, False), StateTerm("gradients", 4 * n_params, False),
                            StateTerm("optimizer", 8 * n_params, False)))
    params = param_b * n_params / (n if stage >= 3 else 1)
    grads = grad_b * n_params / (n if stage >= 2 else 1)
    optim = optim_b * n_params / (n if stage >= 1 else 1)
    mixed = param_b < 4
    terms = [StateTerm("parameters", params, offload and stage >= 3)]
    if accounting == "deepspeed" and mixed and (offload or stage >= 3):  # in place of the 16-bit partition
        terms.append(StateTerm("gradients (fp32 partition)", FP32_GRAD_BYTES * n_params / n, offload))
    else:
        terms.append(StateTerm("gradients", grads, offload))
        if accounting == "deepspeed" and mixed:
            terms.append(StateTerm("gradients (fp32 partition)", FP32_GRAD_BYTES * n_params / (n if stage else 1),
                                   False))
    terms.append(StateTerm("optimizer", optim, offload))
    if accounting == "deepspeed" and stage >= 3:
        terms.append(StateTerm("gathered layer", GATHERED_LAYER_BYTES * largest_layer_params, False))
    return ModelStates(tuple(terms))


# --- activations and the rest, from probes ------------------------------------------------------------


@dataclass(frozen=True)
class PeakFit:
    """peak_mib = states_mib + fixed_mib + per_sample_mib x micro_batch."""

    fixed_mib: float
    per_sample_mib: float
    points: int
    r_squared: float | None  # None when two points determine the line
    source: str  # which probes it came from

    def predict(self, states_mib: float, micro_batch: float) -> float:
        return states_mib + self.fixed_mib + self.per_sample_mib * micro_batch

    def largest_micro_batch(self, states_mib: float, budget_mib: float) -> int:
        """The largest micro-batch whose predicted peak stays within the budget (0: none)."""
        if self.per_sample_mib <= 0:
            raise ValueError(f"fit from {self.source}: per-sample memory {self.per_sample_mib:.1f} MiB is not positive")
        return max(0, int((budget_mib - states_mib - self.fixed_mib) // self.per_sample_mib))


@dataclass(frozen=True)
class PeakSample:
    micro_batch: int
    peak_mib: float
    states_mib: float  # predicted model states of that run's configuration, on its device


def fit_peak(samples: Sequence[PeakSample], source: str) -> PeakFit:
    """Least-squares line of (measured peak - model states) over the micro-batch; needs two micro-batches."""
    from scipy import stats

    distinct = {sample.micro_batch for sample in samples}
    if len(distinct) < 2:
        raise ValueError(f"{source}: a line needs peaks at two micro-batches or more, got {sorted(distinct)}")
    x = [float(sample.micro_batch) for sample in samples]
    y = [sample.peak_mib - sample.states_mib for sample in samples]
    result = stats.linregress(x, y)
    r_squared = float(result.rvalue) ** 2 if len(samples) > 2 else None
    return PeakFit(fixed_mib=float(result.intercept), per_sample_mib=float(result.slope), points=len(samples),
                   r_squared=r_squared, source=source)


# --- the model of a tune study: analytic states + a line per configuration ---------------------------


@dataclass(frozen=True)
class ModelSize:
    """What the model states need to know of the model (plan.models counts it on the meta device)."""

    n_params: int
    largest_layer_params: int  # gathered at stage 3


def shared_fixed(fits: Sequence[PeakFit], pooled: PeakFit | None) -> tuple[float, str] | None:
    """The fixed memory the configurations share: the mean intercept of their own lines, else the pooled line's."""
    if fits:
        return sum(fit.fixed_mib for fit in fits) / len(fits), "the fitted configurations' mean fixed memory"
    return (pooled.fixed_mib, "the pooled line's fixed memory") if pooled is not None else None


def anchored_fit(samples: Sequence[PeakSample], anchor: tuple[float, str], point_id: str) -> PeakFit | None:
    """A line through one micro-batch's probes with the shared fixed memory (None: it gives no positive slope)."""
    fixed, source = anchor
    per_sample = sum((s.peak_mib - s.states_mib - fixed) / s.micro_batch for s in samples) / len(samples)
    if per_sample <= 0:
        return None
    return PeakFit(fixed_mib=fixed, per_sample_mib=per_sample, points=len(samples), r_squared=None,
                   source=f"{point_id}'s probe at micro-batch {samples[0].micro_batch} with {source}")


def _fitted(probes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [probe for probe in probes if probe["status"] == "ok" and probe["peak_mib"] is not None]


class MemoryModel:
    """Model states of each point of a tune study (analytic) + fixed and per-sample memory (fitted from that
    point's probes, or from all points' probes pooled when a point has fewer than two micro-batches that fit).

    study: a tune study as `TuneStudy.to_dict()` gives it; probes: tune-probe outcomes (run_id, point_id, status,
    micro_batch, peak_mib)."""

    def __init__(self, study: Mapping[str, Any], size: ModelSize, probes: Sequence[Mapping[str, Any]],
                 accounting: Accounting = "deepspeed") -> None:
        self.study, self.size, self.accounting = study, size, accounting
        self.precision = study["settings"]["training"]["precision"]
        self.device = study["settings"]["runtime"]["device"]
        self.points = study["points"]
        fitted = _fitted(probes)
        self.fits: dict[str, PeakFit] = {}
        pooled_samples = [self._sample(probe) for probe in fitted]
        pooled = (fit_peak(pooled_samples, "all points' probes pooled")
                  if len({s.micro_batch for s in pooled_samples}) >= 2 else None)
        own = {point_id: [self._sample(probe) for probe in fitted if probe["point_id"] == point_id]
               for point_id in self.points}
        for point_id, samples in own.items():
            if len({sample.micro_batch for sample in samples}) >= 2:
                self.fits[point_id] = fit_peak(samples, f"{point_id}'s probes")
        anchor = shared_fixed(list(self.fits.values()), pooled)
        for point_id, samples in own.items():
            if point_id in self.fits:
                continue
            anchored = anchored_fit(samples, anchor, point_id) if samples and anchor else None
            if anchored is not None:
                self.fits[point_id] = anchored
            elif pooled is not None:
                self.fits[point_id] = pooled

    def states_mib(self, point_id: str, accounting: Accounting | None = None,
                   world: tuple[int, int] | None = None) -> float:
        point = self.points[point_id]
        gpus, nodes = world or (point["gpus_per_node"], point["nodes"])
        precision = dict(point.get("levers", ())).get("precision", self.precision)  # a precision axis: the point's
        setup = StatesSetup(zero_stage=point["zero_stage"] if point["deepspeed"] else None, offload=point["offload"],
                            gpus_per_node=gpus, nodes=nodes, precision=precision)
        states = model_states(self.size.n_params, setup, accounting or self.accounting, self.size.largest_layer_params)
        return states.device_mib(self.device)

    def _sample(self, probe: Mapping[str, Any]) -> PeakSample:
        return PeakSample(int(probe["micro_batch"]), float(probe["peak_mib"]), self.states_mib(probe["point_id"]))

    def predict(self, point_id: str, micro_batch: float, world: tuple[int, int] | None = None) -> float | None:
        fit = self.fits.get(point_id)
        return None if fit is None else fit.predict(self.states_mib(point_id, world=world), micro_batch)

    def left_out(self, probe: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> LeftOut:
        """The probe predicted by this model refitted to every other probe (the same rule: the configuration's
        own line where two other micro-batches fit, else the pooled one)."""
        others = [other for other in probes if other["run_id"] != probe["run_id"]]
        refit = MemoryModel(self.study, self.size, others, self.accounting)
        fit = refit.fits.get(probe["point_id"])
        return LeftOut(refit.predict(probe["point_id"], int(probe["micro_batch"])),
                       None if fit is None else f"refit without it: {fit.source}")

    def predict_left_out(self, probe: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> float | None:
        return self.left_out(probe, probes).predicted_mib


@dataclass(frozen=True)
class LeftOut:
    predicted_mib: float | None  # None: the other probes fit at fewer than two micro-batches
    source: str | None


# --- how good it is -------------------------------------------------------------------------------------


SAME = 1e-9  # relative error taken as none: far below a peak's resolution (0.01 MiB of >= 100 MiB is 1e-4)


@dataclass(frozen=True)
class PredictionErrors:
    """Relative errors (predicted - measured) / measured over a set of probes that fit."""

    fractions: tuple[float, ...]  # one per probe that has a prediction
    probes: int  # the probes that fit, predicted or not

    @property
    def predicted(self) -> int:
        return len(self.fractions)

    @property
    def low(self) -> float | None:
        return min(self.fractions) if self.fractions else None

    @property
    def high(self) -> float | None:
        return max(self.fractions) if self.fractions else None

    @property
    def under_estimates(self) -> int:
        """Predicted below measured: the dangerous direction (a run sized by it runs out of memory)."""
        return sum(fraction < -SAME for fraction in self.fractions)


def relative_error(predicted: float | None, measured: float) -> float | None:
    """(predicted - measured) / measured: negative is an under-estimate."""
    return None if predicted is None else (predicted - measured) / measured


def prediction_errors(pairs: Iterable[tuple[float | None, float]]) -> PredictionErrors:
    """From (predicted or None, measured) pairs, one per probe that fit."""
    errors = [relative_error(predicted, measured) for predicted, measured in pairs]
    return PredictionErrors(tuple(error for error in errors if error is not None), len(errors))


def fit_errors(model: MemoryModel, probes: Sequence[Mapping[str, Any]]) -> PredictionErrors:
    """In sample: every probe against the line it helped fit (0 at both probes of a two-probe line)."""
    return prediction_errors((model.predict(probe["point_id"], int(probe["micro_batch"])), float(probe["peak_mib"]))
                             for probe in _fitted(probes))


def left_out_errors(model: MemoryModel, probes: Sequence[Mapping[str, Any]]) -> PredictionErrors:
    """Out of sample (leave one out): every probe against the model refitted without it."""
    return prediction_errors((model.left_out(probe, probes).predicted_mib, float(probe["peak_mib"]))
                             for probe in _fitted(probes))
