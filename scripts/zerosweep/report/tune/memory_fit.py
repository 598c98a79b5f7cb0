"""The memory model (plan.tune.memory_model) of a tune study, with the model's size taken from its architecture, and
the sentence that judges it: the left-out error over every probe, the in-sample figure called a fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...plan.models import model_size
from ...plan.tune import memory_model
from ...plan.tune.memory_model import PredictionErrors


class MemoryModel(memory_model.MemoryModel):
    """plan.tune.memory_model.MemoryModel for a tune study's own model."""

    def __init__(self, study: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(study, model_size(study["settings"]["model"]), probes)


def _percent_range(errors: PredictionErrors) -> str:
    # rounded first so that -0.04 % reads +0.0 %, not -0.0 %
    low, high = (f"{round(100 * value, 1) + 0.0:+.1f} %" for value in (errors.low or 0.0, errors.high or 0.0))
    return low if low == high else f"{low} to {high}"


def headline(model: memory_model.MemoryModel, probes: Sequence[Mapping[str, Any]]) -> str:
    """How well the model predicts a peak it has not seen (leave one out over every probe that fit), then the
    in-sample fit (which a line through two probes matches exactly, so it judges nothing)."""
    left_out = memory_model.left_out_errors(model, probes)
    fit = memory_model.fit_errors(model, probes)
    if left_out.probes == 0:
        return "No probe fit: nothing to judge the memory model by."
    if left_out.predicted == 0:
        text = (f"Left out: none of the {left_out.probes} probes that fit can be predicted without itself (the "
                "others fit at fewer than two micro-batches).")
    else:
        unpredicted = left_out.probes - left_out.predicted
        text = (f"**Left out (out of sample: each probe predicted by the model refitted without it): "
                f"{_percent_range(left_out)} over {left_out.predicted} of {left_out.probes} probes that fit, "
                f"{left_out.under_estimates} of them under-estimates** (predicted below measured: a run sized by "
                "the prediction would run out of memory)"
                + (f"; {unpredicted} without enough other probes to refit" if unpredicted else "") + ".")
    if fit.predicted:
        text += (f" Fit (in sample, the probes the lines were fitted to): {_percent_range(fit)}, "
                 f"{fit.under_estimates} below measured.")
    return text
