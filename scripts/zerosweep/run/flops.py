"""Model FLOPs, GPU peak throughput and model FLOPs utilisation (MFU).

Training FLOPs per token follow the PaLM appendix: 6·N for the weight matmuls of the forward (2·N) and
backward (4·N) passes, plus 12·L·a·s for the attention score and value products over a sequence of s
tokens (a: query heads x head size; grouped-query attention shrinks the key and value projections, which N
counts, not these products). N is every parameter counted once less the embeddings that are only looked up:
a tied head (BLOOM, GPT-2, Llama-3.2-1B, Qwen2-0.5B) multiplies by the embedding matrix, so it stays in N; an
untied model's input embedding and learned position embeddings (GPT-2's) do not. Norms and biases stay in N,
as the PaLM count has them. Sequences are padded to max_length and the FLOPs count the full square, so
s = max_length, whichever attention implementation runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..plan.models import ModelShape


@dataclass(frozen=True)
class GpuPeaks:
    """Dense (no 2:4 sparsity) peak TFLOP/s of one GPU model per precision; None where it has no such path."""

    tensor_16bit: float | None  # fp16 and bf16 tensor cores (fp32 accumulate); None: no bf16 (see BF16)
    tf32: float | None  # TF32 tensor cores (fp32 training with TF32 matmuls enabled)
    fp32: float  # plain fp32 (CUDA cores): what an fp32 run's matmuls use when TF32 is off
    bf16: bool = True  # Volta and Turing have fp16 tensor cores but no bf16
    source: str = ""

    def dense(self, precision: str) -> float | None:
        return {"fp16": self.tensor_16bit, "bf16": self.tensor_16bit if self.bf16 else None, "tf32": self.tf32,
                "fp32": self.fp32}[precision]


# By exact model name as NVML (and nvidia-smi --query-gpu=name) reports it, compared case- and
# whitespace-insensitively; a name not listed has no peak (no guessing from substrings: "H200 NVL" and "GH200" are
# not the H200 SXM). Datasheets give tensor figures "with sparsity"; dense is half of that.
_HOPPER_SXM = GpuPeaks(989.4, 494.7, 66.9, source="NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), "
                       "table 1, H100 SXM5: 989.4 fp16/bf16, 494.7 TF32, 66.9 fp32 dense")
_HOPPER_NVL = GpuPeaks(835.5, 417.5, 60.0, source="NVIDIA H100 NVL / H200 NVL datasheets: 1,671 fp16/bf16 and 835 "
                       "TF32 with sparsity, 60 fp32")
_A100 = GpuPeaks(312.0, 156.0, 19.5, source="NVIDIA A100 Tensor Core GPU datasheet: 312 fp16/bf16, 156 TF32, 19.5 "
                 "fp32 (SXM4 and PCIe, 40 and 80 GB alike)")
_V100_SXM2 = GpuPeaks(125.0, None, 15.7, bf16=False, source="NVIDIA Tesla V100 datasheet, SXM2: 125 tensor, 15.7 fp32")
_V100_PCIE = GpuPeaks(112.0, None, 14.0, bf16=False, source="NVIDIA Tesla V100 datasheet, PCIe: 112 tensor, 14 fp32")
PEAK_TFLOPS_TABLE: dict[str, GpuPeaks] = {
    "NVIDIA H100 80GB HBM3": _HOPPER_SXM,
    "NVIDIA H100 PCIe": GpuPeaks(756.5, 378.0, 51.0, source="NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: 1,513 "
                                 "fp16/bf16 and 756 TF32 with sparsity, 51 fp32"),
    "NVIDIA H100 NVL": _HOPPER_NVL,
    "NVIDIA H200": GpuPeaks(989.4, 494.7, 66.9, source="NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: the H100 "
                            "SXM figures (1,979 fp16/bf16 and 989 TF32 with sparsity, 67 fp32)"),
    "NVIDIA H200 NVL": _HOPPER_NVL,
    "NVIDIA GH200 480GB": GpuPeaks(989.4, 494.7, 66.9, source="NVIDIA GH200 Grace Hopper Superchip datasheet: 990 "
                                   "fp16/bf16, 494 TF32, 67 fp32 dense"),
    "NVIDIA GH200 144G HBM3e": GpuPeaks(989.4, 494.7, 66.9, source="NVIDIA GH200 Grace Hopper Superchip datasheet "
                                        "(HBM3e): 990 fp16/bf16, 494 TF32, 67 fp32 dense"),
    "NVIDIA H800": GpuPeaks(989.4, 494.7, 66.9, source="NVIDIA H800 Tensor Core GPU datasheet, H800 SXM5: 1,979 "
                            "fp16/bf16 and 989 TF32 with sparsity, 67 fp32 (FP64 cut, tensor paths as H100 SXM)"),
    "NVIDIA H800 PCIe": GpuPeaks(756.5, 378.0, 51.0, source="NVIDIA H800 Tensor Core GPU datasheet, H800 PCIe: 1,513 "
                                 "fp16/bf16 and 756 TF32 with sparsity, 51 fp32"),
    "NVIDIA B200": GpuPeaks(2250.0, 1100.0, 75.0, source="NVIDIA HGX B200 datasheet, per GPU: 4.5 PFLOPS fp16/bf16 "
                            "and 2.2 PFLOPS TF32 with sparsity, 75 fp32"),
    "NVIDIA A100-SXM4-80GB": _A100,
    "NVIDIA A100-SXM4-40GB": _A100,
    "NVIDIA A100 80GB PCIe": _A100,
    "NVIDIA A100-PCIE-40GB": _A100,
    "NVIDIA A40": GpuPeaks(149.7, 74.8, 37.4, source="NVIDIA A40 datasheet: 149.7 fp16/bf16, 74.8 TF32, 37.4 fp32"),
    "NVIDIA A30": GpuPeaks(165.0, 82.0, 10.3, source="NVIDIA A30 datasheet: 165 fp16/bf16, 82 TF32, 10.3 fp32"),
    "NVIDIA A10": GpuPeaks(125.0, 62.5, 31.2, source="NVIDIA A10 datasheet: 125 fp16/bf16, 62.5 TF32, 31.2 fp32"),
    "NVIDIA L40S": GpuPeaks(362.05, 183.0, 91.6, source="NVIDIA L40S datasheet: 362.05 fp16/bf16, 183 TF32, 91.6 fp32"),
    "NVIDIA L40": GpuPeaks(181.05, 90.5, 90.5, source="NVIDIA L40 datasheet: 181.05 fp16/bf16, 90.5 TF32, 90.5 fp32"),
    "NVIDIA L4": GpuPeaks(121.0, 60.0, 30.3, source="NVIDIA L4 datasheet: 242 fp16/bf16 and 120 TF32 with sparsity, "
                          "30.3 fp32"),
    "Tesla V100-SXM2-16GB": _V100_SXM2,
    "Tesla V100-SXM2-32GB": _V100_SXM2,
    "Tesla V100-PCIE-16GB": _V100_PCIE,
    "Tesla V100-PCIE-32GB": _V100_PCIE,
    "Tesla V100S-PCIE-32GB": GpuPeaks(130.0, None, 16.4, bf16=False, source="NVIDIA Tesla V100S datasheet: 130 "
                                      "tensor, 16.4 fp32"),
    "Tesla T4": GpuPeaks(65.0, None, 8.1, bf16=False, source="NVIDIA T4 datasheet: 65 fp16 tensor, 8.1 fp32"),
}


def model_key(gpu_name: str) -> str:
    """The name as compared with the table: case and runs of whitespace do not matter, everything else does."""
    return " ".join(gpu_name.split()).casefold()


_BY_KEY: dict[str, tuple[str, GpuPeaks]] = {model_key(name): (name, peaks) for name, peaks in PEAK_TFLOPS_TABLE.items()}

# training.precision (plus "tf32": fp32 with TF32 matmuls) -> which peak its matmuls run at. The training leaves
# TF32 off (torch's default for matmuls since 1.12), so an fp32 run is judged against the plain fp32 peak.
PRECISIONS = ("fp16", "bf16", "tf32", "fp32")


@dataclass(frozen=True)
class Peak:
    """The dense peak a run is judged against, or why there is none (`missing`)."""

    tflops: float | None
    source: str | None  # "config" | "table:<model>, <precision>"
    missing: str | None = None  # why no peak: unknown model, no such precision on it


def training_flops_per_token(shape: ModelShape, seq_len: int) -> float:
    """Forward + backward FLOPs per token: 6·N + 12·L·a·s (no activation recomputation), with N the parameters
    that multiply each token (plan.models counts them) and a the query heads' width (heads x head size)."""
    return 6.0 * shape.matmul_params + 12.0 * shape.n_layers * shape.attention_width * seq_len


def peak_tflops(gpu_name: str | None, precision: str | None, configured: float | None = None) -> Peak:
    """The dense peak per GPU for a run at `precision` on `gpu_name`: runtime.peak_tflops when set, else the table's
    figure for that precision; a model the table lacks, or a precision it has no path for, gives none."""
    if configured is not None:
        return Peak(float(configured), "config")
    if not gpu_name:
        return Peak(None, None, "the record names no GPU model")
    found = _BY_KEY.get(model_key(gpu_name))
    if found is None:
        return Peak(None, None, f"GPU model {gpu_name!r} is not in the peak table (exact NVML names)")
    name, peaks = found
    if precision not in PRECISIONS:
        return Peak(None, None, f"the record gives no known precision ({precision!r}; known: {', '.join(PRECISIONS)})")
    value = peaks.dense(precision)
    if value is None:
        return Peak(None, None, f"{name} has no {precision} tensor path in the peak table")
    return Peak(value, f"table:{name}, {precision}")


def achieved_tflops_per_gpu(flops_per_token: float, tokens_per_second: float, world_size: int) -> float:
    return flops_per_token * tokens_per_second / world_size / 1e12


def model_flops_utilization(tflops_per_gpu: float | None, peak: float | None) -> float | None:
    if tflops_per_gpu is None or not peak or not math.isfinite(tflops_per_gpu):
        return None
    return tflops_per_gpu / peak
