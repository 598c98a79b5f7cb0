"""The speed levers: training settings a study can sweep as axes, declared once.

Run ids, table labels, validation, the schema check (tests/test_levers.py) and the DeepSpeed config all read
this registry. A point names only the lever values that differ from its run's base training settings (the
config's `training` merged with the study's), so a run that sweeps nothing keeps the id it always had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LeverValues = tuple[tuple[str, Any], ...]  # (name, value) pairs in registry order


@dataclass(frozen=True)
class Lever:
    name: str  # the training.<name> key and the study axis key
    values: tuple[Any, ...]  # allowed values, in display order
    default: Any  # the workshop's value: what a run uses when training.<name> is unset
    tokens: Mapping[Any, str]  # run-id token per value ([a-z0-9]+)
    labels: Mapping[Any, str]  # table label per value
    gpu_only: frozenset[Any] = field(default_factory=frozenset)  # values refused with runtime.device cpu
    cpu_hint: str = ""  # what to use on CPU instead, for the refusal

    def position(self, value: Any) -> int | None:
        """`value`'s place in `values` (by type too: YAML's 1 is not `True`), or None for a value not in it."""
        return next((index for index, known in enumerate(self.values) if _same(value, known)), None)

    def allows(self, value: Any) -> bool:
        return self.position(value) is not None


LEVERS: dict[str, Lever] = {  # registry order = id token order = label order
    "compile": Lever(
        "compile", (False, True), False,
        tokens={False: "eager", True: "cmp"}, labels={False: "not compiled", True: "compiled"}),
    "precision": Lever(
        "precision", ("fp16", "bf16", "fp32"), "fp16",
        tokens={"fp16": "fp16", "bf16": "bf16", "fp32": "fp32"}, labels={"fp16": "fp16", "bf16": "bf16", "fp32": "fp32"},
        gpu_only=frozenset({"fp16"}), cpu_hint="on CPU use bf16 or fp32"),
    "optimizer": Lever(
        "optimizer", ("deepspeed", "torch_fused"), "deepspeed",
        tokens={"deepspeed": "dsopt", "torch_fused": "topt"},
        labels={"deepspeed": "DeepSpeed optimizer", "torch_fused": "torch fused AdamW"}),
    "gradient_checkpointing": Lever(
        "gradient_checkpointing", (False, True), False,
        tokens={False: "nogc", True: "gc"}, labels={False: "no grad. checkpointing", True: "grad. checkpointing"}),
    "loss": Lever(
        "loss", ("model", "fused_linear_cross_entropy"), "model",
        tokens={"model": "mloss", "fused_linear_cross_entropy": "flce"},
        labels={"model": "model loss", "fused_linear_cross_entropy": "fused linear CE"},
        gpu_only=frozenset({"fused_linear_cross_entropy"}), cpu_hint="liger-kernel's Triton kernel; on CPU use model"),
    # transformers' attn_implementation; eager is what BLOOM (the workshop's model) has. Whether a model has the
    # others is the model's to say: plan.checks asks plan.models.attention_refusal before anything starts.
    "attention": Lever(
        "attention", ("eager", "sdpa", "flash_attention_2"), "eager",
        tokens={"eager": "attneager", "sdpa": "sdpa", "flash_attention_2": "fa2"},
        labels={"eager": "eager attention", "sdpa": "SDPA", "flash_attention_2": "FlashAttention-2"},
        gpu_only=frozenset({"flash_attention_2"}), cpu_hint="the flash_attn package's CUDA kernels; on CPU use "
        "eager or sdpa"),
}

# Each lever's token at most once, in registry order (POINT_ID_PATTERN appends this).
ID_TOKEN_PATTERN = "".join(f"(-({'|'.join(lever.tokens.values())}))?" for lever in LEVERS.values())
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

FUSED_LOSS = "fused_linear_cross_entropy"  # the loss lever's value that needs a GPU and no ZeRO-3
FUSED_LOSS_WITH_ZERO3 = ("loss fused_linear_cross_entropy reads the LM head's weight outside the head, which ZeRO-3 "
                         "partitions across ranks")
TORCH_FUSED_WITH_OFFLOAD = ("optimizer torch_fused cannot step CPU-offloaded optimizer states "
                            "(ZeRO-Offload runs DeepSpeed's CPUAdam)")


DEEPSPEED_OPTIMIZER_WITHOUT_DEEPSPEED = (
    "without DeepSpeed the Trainer steps its own optimizer (transformers' default, torch's fused AdamW since "
    "torch 2.8): optimizer deepspeed is the same run as optimizer torch_fused")


def duplicate(values: Mapping[str, Any], deepspeed: bool, swept: Mapping[str, Sequence[Any]]) -> str | None:
    """Why a point is the same run as another point the study sweeps (it is then left out), or None."""
    if not deepspeed and values.get("optimizer") == "deepspeed" and "torch_fused" in swept.get("optimizer", ()):
        return DEEPSPEED_OPTIMIZER_WITHOUT_DEEPSPEED
    return None


def run_values(training: Mapping[str, Any]) -> dict[str, Any]:
    """Every lever's value for a run with these training settings (unset: the lever's default)."""
    return {name: training.get(name, lever.default) for name, lever in LEVERS.items()}


def differing(values: Mapping[str, Any], base_training: Mapping[str, Any]) -> LeverValues:
    """The lever values that differ from the base training settings, in registry order (a point's `levers`)."""
    base = run_values(base_training)
    return tuple((name, values[name]) for name in LEVERS
                 if name in values and not _same(values[name], base[name]))


def _same(left: Any, right: Any) -> bool:
    return type(left) is type(right) and left == right


def id_tokens(levers: Iterable[tuple[str, Any]]) -> str:
    """'-cmp-bf16' for a point's levers (empty for none)."""
    return "".join(f"-{LEVERS[name].tokens[value]}" for name, value in levers)


def labels(levers: Iterable[tuple[str, Any]]) -> list[str]:
    """The table labels of a point's levers, in registry order: ['compiled', 'bf16']."""
    return [LEVERS[name].labels[value] for name, value in levers]


def unknown_value(name: str, value: Any) -> str | None:
    """Why `value` is not a value of lever `name`, or None."""
    lever = LEVERS[name]
    if lever.allows(value):
        return None
    return f"{value!r} is not one of {list(lever.values)}"


def device_refusal(name: str, value: Any, device: str) -> str | None:
    """Why lever `name` cannot take `value` on `device` ("fp16 needs runtime.device 'cuda' (...)"), or None."""
    lever = LEVERS[name]
    if device != "cpu" or not any(_same(value, known) for known in lever.gpu_only):
        return None
    return f"{value} needs runtime.device 'cuda'" + (f" ({lever.cpu_hint})" if lever.cpu_hint else "")


def refusal(values: Mapping[str, Any], device: str) -> tuple[str, tuple[str, ...]] | None:
    """Why a point with these effective values (matrix axes and every lever) cannot run, and the keys involved."""
    if values.get("optimizer") == "torch_fused" and values.get("offload") == "cpu":
        return TORCH_FUSED_WITH_OFFLOAD, ("optimizer", "offload")
    if values.get("loss") == FUSED_LOSS and values.get("zero_stage") == 3:
        return FUSED_LOSS_WITH_ZERO3, ("loss", "zero_stage")
    for name in LEVERS:
        if name in values:
            reason = device_refusal(name, values[name], device)
            if reason is not None:
                return f"{name} {reason}", (name,)
    return None
