"""The memory model applied to a tune study's probes: each configuration's model states (analytic, plan.memory_model)
plus fixed and per-sample memory fitted to its probes; and, for `tune.start_from_model`, the boundary a
configuration is predicted to have from an already searched one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..plan.memory_model import PeakFit, PeakSample, StatesSetup, bloom_largest_layer_params, fit_peak, model_states
from ..run.flops import bloom_parameter_count
from ..run.modeling import model_config_dict

ACCOUNTING = "deepspeed"  # what DeepSpeed keeps (the paper's 2+2+12 plus its fp32 gradient partition)


class MemoryModel:
    """Model states of each point (analytic) + fixed and per-sample memory (fitted from that point's probes, or
    from all points' probes pooled when a point has fewer than two micro-batches that fit)."""

    def __init__(self, study: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> None:
        settings = study["settings"]
        architecture = model_config_dict(settings["model"])
        self.n_params = bloom_parameter_count(architecture)
        self.largest = bloom_largest_layer_params(int(architecture["vocab_size"]), int(architecture["hidden_size"]))
        self.precision = settings["training"]["precision"]
        self.device = settings["runtime"]["device"]
        self.points = study["points"]
        fitted = [probe for probe in probes if probe["status"] == "ok" and probe["peak_mib"] is not None]
        self.fits: dict[str, PeakFit] = {}
        pooled_samples = [self._sample(probe) for probe in fitted]
        pooled = (fit_peak(pooled_samples, "all points' probes pooled")
                  if len({s.micro_batch for s in pooled_samples}) >= 2 else None)
        for point_id in self.points:
            own = [self._sample(probe) for probe in fitted if probe["point_id"] == point_id]
            if len({sample.micro_batch for sample in own}) >= 2:
                self.fits[point_id] = fit_peak(own, f"{point_id}'s probes")
            elif pooled is not None:
                self.fits[point_id] = pooled

    def states_mib(self, point_id: str, accounting: str = ACCOUNTING, world: tuple[int, int] | None = None) -> float:
        point = self.points[point_id]
        gpus, nodes = world or (point["gpus_per_node"], point["nodes"])
        setup = StatesSetup(zero_stage=point["zero_stage"] if point["deepspeed"] else None, offload=point["offload"],
                            gpus_per_node=gpus, nodes=nodes, precision=self.precision)
        return model_states(self.n_params, setup, accounting, self.largest).device_mib(self.device)  # type: ignore[arg-type]

    def _sample(self, probe: Mapping[str, Any]) -> PeakSample:
        return PeakSample(int(probe["micro_batch"]), float(probe["peak_mib"]), self.states_mib(probe["point_id"]))

    def predict_left_out(self, probe: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> float | None:
        """The probe's peak predicted by a fit to the configuration's other probes (out of sample), if two remain."""
        others = [self._sample(other) for other in probes
                  if other["point_id"] == probe["point_id"] and other["run_id"] != probe["run_id"]
                  and other["status"] == "ok" and other["peak_mib"] is not None]
        if len({sample.micro_batch for sample in others}) < 2:
            return None
        fit = fit_peak(others, f"{probe['point_id']}'s other probes")
        return fit.predict(self.states_mib(probe["point_id"]), int(probe["micro_batch"]))

    def predict(self, point_id: str, micro_batch: int, world: tuple[int, int] | None = None) -> float | None:
        fit = self.fits.get(point_id)
        return None if fit is None else fit.predict(self.states_mib(point_id, world=world), micro_batch)


def guided_start(study: Mapping[str, Any], reference: Mapping[str, Any], target_point: str) -> int | None:
    """The micro-batch where `target_point`'s search starts: the largest one whose predicted peak stays within
    the memory the reference search ran into (halfway between its largest fit and its first OOM), predicted
    with the reference's fixed and per-sample memory and the target's own model states. None without a
    bounded reference that fit at two micro-batches."""
    probes = reference["probes"]
    model = MemoryModel(study, [probe for probe in probes if probe["point_id"] == reference["point_id"]])
    fit = model.fits.get(reference["point_id"])
    if fit is None or reference["first_oom"] is None or fit.per_sample_mib <= 0:
        return None
    capacity = fit.predict(model.states_mib(reference["point_id"]), reference["max_fit"] + 0.5)
    return max(1, fit.largest_micro_batch(model.states_mib(target_point), capacity))
