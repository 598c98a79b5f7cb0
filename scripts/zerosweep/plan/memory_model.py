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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..units import MIB

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


def bloom_largest_layer_params(vocab_size: int, hidden_size: int) -> int:
    """The largest module's own parameters in BLOOM: the word embedding (tied to the LM head)."""
    return max(vocab_size * hidden_size, 4 * hidden_size * hidden_size + 4 * hidden_size)


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
