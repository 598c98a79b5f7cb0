"""Where a run's model comes from: the Hub (from_pretrained) or a random init of an architecture (plan.models).

Random weights give the real model's memory and compute without downloading it (the Hub may be out of
reach); their loss says nothing about quality, and the records say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..plan.models import checked_config, pretrained_source

RANDOM_WEIGHTS_NOTE = "random-init weights: loss says nothing about quality"


def build_model(model: Mapping[str, Any], seed: int, init_device: str | None = None,
                attention: str | None = None) -> Any:
    """The causal LM in fp32 master weights; the Trainer/DeepSpeed apply fp16/bf16 mixed precision.

    Built through from_config/from_pretrained so that under ZeRO-3 (set up by TrainingArguments before this
    call) the weights are partitioned by zero.Init while they are created instead of after. `init_device`
    creates random weights directly there: initialising BLOOM-560m on the host took ~10 s of every H100 run.
    `attention`: transformers' attn_implementation (the attention lever); None keeps the model's default.
    """
    import torch
    from transformers import AutoModelForCausalLM

    extra = {} if attention is None else {"attn_implementation": attention}
    if model["weights"] == "pretrained":
        # fp32 explicitly: transformers 5 loads the checkpoint's dtype by default, and fp16 master weights
        # break AMP's gradient unscaling.
        return AutoModelForCausalLM.from_pretrained(pretrained_source(model["name"]), dtype=torch.float32, **extra)
    config = checked_config(model)
    torch.manual_seed(seed)
    with torch.device(init_device or "cpu"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32, **extra)
