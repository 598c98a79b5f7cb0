"""`training.loss: fused_linear_cross_entropy`: the causal-LM loss from the last hidden states and the LM head
weight in one fused kernel (liger-kernel, Triton), so the [tokens x vocab] logits are never built.

The Trainer still owns the step: a `FusedLossTrainer` asks the model for its hidden states only (the logits of
one position, `logits_to_keep=1`), and the Trainer's `compute_loss_func` hook turns them into the loss, so its
gradient-accumulation and token-averaging rules apply unchanged. The loss is the model's own: labels shifted
by one, -100 ignored, summed and divided by the Trainer's token count (`num_items_in_batch`), else the mean.
The kernel is injected (`LinearCrossEntropy`): tests run the same wiring with `reference_linear_cross_entropy`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..plan.levers import FUSED_LOSS, refusal

if TYPE_CHECKING:  # torch is imported where it is used: importing run.train must stay light (its imports_s phase)
    import torch

IGNORE_INDEX = -100  # the labels' padding (data.tokenize_records), as torch and the model ignore it
# (LM head weight [vocab, hidden], hidden states [tokens, hidden], targets [tokens]) -> summed loss
LinearCrossEntropy = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
# what the model is asked for instead of its logits and loss
HIDDEN_STATES_ONLY: Mapping[str, Any] = {"output_hidden_states": True, "logits_to_keep": 1}


def liger_linear_cross_entropy() -> LinearCrossEntropy:
    """liger-kernel's fused linear cross-entropy (sum over non-ignored targets); imported only when used."""
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except ImportError as error:
        raise ImportError(f"training.loss {FUSED_LOSS} needs liger-kernel (pip install liger-kernel, which "
                          f"needs Triton and a GPU): {error}") from error
    loss: LinearCrossEntropy = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")
    return loss


def reference_linear_cross_entropy(weight: torch.Tensor, hidden: torch.Tensor,
                                   targets: torch.Tensor) -> torch.Tensor:
    """The same call in plain torch (it builds the logits): for tests and CPU checks of the wiring."""
    import torch

    logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight).float()
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """Position t predicts token t+1: labels moved left by one, the last position ignored (the model's rule)."""
    import torch

    padded = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)
    return padded[..., 1:].contiguous()


class FusedLinearCrossEntropyLoss:
    """The Trainer's `compute_loss_func`: (outputs, labels, num_items_in_batch) -> the loss of the batch."""

    def __init__(self, model: Any, loss: LinearCrossEntropy) -> None:
        self.model = model  # the bare PreTrainedModel: its LM head weight object survives DeepSpeed's and compile's wrapping
        self.loss = loss

    def __call__(self, outputs: Any, labels: torch.Tensor,
                 num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        hidden = outputs.hidden_states[-1]  # the LM head's input (BLOOM: after ln_f)
        weight = self.model.get_output_embeddings().weight
        targets = shifted_targets(labels).to(hidden.device).reshape(-1)
        total = self.loss(weight, hidden.reshape(-1, hidden.shape[-1]), targets)
        count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
        return total / (count.to(total.device) if hasattr(count, "to") else count)


def fused_loss_refusal(device: str, zero_stage: int | None) -> str | None:
    """Why this run cannot use the fused loss, or None: the plan's rule (plan.levers.refusal, which refuses these
    before scheduling), worded for the run's guard."""
    problem = refusal({"loss": FUSED_LOSS, "zero_stage": zero_stage}, device)
    if problem is None:
        return None
    if problem[1] == ("loss",):  # the GPU-only value on another device
        return (f"training.loss {FUSED_LOSS} runs only on a GPU (liger-kernel's Triton kernels); "
                f"runtime.device is {device}")
    # the head's weight is read outside its module, where ZeRO-3 keeps only this rank's partition of it
    return f"training.loss {FUSED_LOSS} reads the LM head weight outside its module: ZeRO-3 partitions it"


def fused_linear_loss(settings: Mapping[str, Any], device: str, zero_stage: int | None) -> LinearCrossEntropy | None:
    """The fused kernel when training.loss asks for it (None: the model's own loss); refused where it cannot run."""
    if settings["loss"] != FUSED_LOSS:
        return None
    reason = fused_loss_refusal(device, zero_stage)
    if reason is not None:
        raise ValueError(reason)
    return liger_linear_cross_entropy()


def fused_loss_trainer_class() -> type:
    """A Trainer that asks the model for its hidden states only (built here so importing needs no transformers)."""
    from transformers import Trainer

    class FusedLossTrainer(Trainer):  # type: ignore[misc]
        def compute_loss(self, model: Any, inputs: Mapping[str, Any], return_outputs: bool = False,
                         num_items_in_batch: torch.Tensor | int | None = None) -> Any:
            return super().compute_loss(model, {**inputs, **HIDDEN_STATES_ONLY}, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return FusedLossTrainer
