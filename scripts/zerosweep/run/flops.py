"""Model FLOPs, GPU peak throughput and model FLOPs utilisation (MFU).

Training FLOPs per token follow the PaLM appendix: 6·N for the weight matmuls of the forward (2·N) and
backward (4·N) passes, plus 12·L·d·s for the attention score and value products over a sequence of s
tokens. BLOOM ties its input embedding to the LM head, so N (every parameter counted once) is exactly the
set of weights that take part in a matmul per token: the head uses the embedding matrix, the lookup is free.
Sequences are padded to max_length and eager attention computes the full square, so s = max_length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Dense (no sparsity) fp16/bf16 tensor-core peak per GPU in TFLOP/s, matched in order against the lowercased
# GPU name with '-' and '_' read as spaces; more specific names come first.
PEAK_TFLOPS_TABLE: tuple[tuple[str, str, float], ...] = (
    ("h100 pcie", "H100 PCIe", 756.0),
    ("h100 nvl", "H100 NVL", 835.0),  # datasheet: 1671 with 2:4 sparsity
    ("h100", "H100 SXM", 989.4),
    ("h200", "H200", 989.4),
    ("a100", "A100", 312.0),
)


def bloom_parameter_count(config: Mapping[str, Any]) -> int:
    """Parameters of a BLOOM causal LM with tied embeddings, from its config (no model needed).

    Counted analytically because under ZeRO-3 the built model holds only its partition of the weights.
    """
    vocab = int(config["vocab_size"])
    hidden = int(config["hidden_size"])
    layers = int(config["n_layer"])
    embedding = vocab * hidden + 2 * hidden  # word embeddings + their LayerNorm
    # per block: qkv (h x 3h + 3h), dense (h x h + h), mlp (h x 4h + 4h, 4h x h + h), two LayerNorms (4h)
    block = 12 * hidden * hidden + 13 * hidden
    final_norm = 2 * hidden
    head = 0 if config.get("tie_word_embeddings", True) else vocab * hidden
    return embedding + layers * block + final_norm + head


def training_flops_per_token(n_params: int, n_layer: int, hidden_size: int, seq_len: int) -> float:
    """Forward + backward FLOPs per token: 6·N + 12·L·d·s (no activation recomputation)."""
    return 6.0 * n_params + 12.0 * n_layer * hidden_size * seq_len


def peak_tflops(gpu_name: str | None, configured: float | None = None) -> tuple[float | None, str | None]:
    """Dense fp16/bf16 peak per GPU and where it came from ('config' or 'table:<model>'); None when unknown."""
    if configured is not None:
        return float(configured), "config"
    if not gpu_name:
        return None, None
    normalized = gpu_name.lower().replace("-", " ").replace("_", " ")
    for pattern, label, value in PEAK_TFLOPS_TABLE:
        if pattern in normalized:
            return value, f"table:{label}"
    return None, None


def achieved_tflops_per_gpu(flops_per_token: float, tokens_per_second: float, world_size: int) -> float:
    return flops_per_token * tokens_per_second / world_size / 1e12


def model_flops_utilization(tflops_per_gpu: float | None, peak: float | None) -> float | None:
    if tflops_per_gpu is None or not peak or not math.isfinite(tflops_per_gpu):
        return None
    return tflops_per_gpu / peak
