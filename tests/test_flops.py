"""Model FLOPs against a hand computation, the GPU peak table (exact model names, per precision), and MFU."""

from __future__ import annotations

import pytest
from zerosweep.run.flops import (
    PEAK_TFLOPS_TABLE,
    Peak,
    achieved_tflops_per_gpu,
    bloom_parameter_count,
    model_flops_utilization,
    peak_tflops,
    training_flops_per_token,
)
from zerosweep.run.modeling import load_architecture

# bloom-560m by hand: V=250880, d=1024, L=24
#   embedding 250880*1024 = 256,901,120 (+ LayerNorm 2*1024)
#   per block 12*1024^2 + 13*1024 = 12,596,224; 24 blocks = 302,309,376
#   final LayerNorm 2*1024; the LM head is the embedding (tied)
BLOOM_560M_PARAMS = 256_901_120 + 2_048 + 302_309_376 + 2_048  # 559,214,592


def test_bloom_560m_parameters_by_hand() -> None:
    assert BLOOM_560M_PARAMS == 559_214_592
    assert bloom_parameter_count(load_architecture("bloom-560m")) == BLOOM_560M_PARAMS


def test_parameter_count_matches_a_built_model() -> None:
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    architecture = load_architecture("bloom-tiny")
    torch.manual_seed(0)
    model = BloomForCausalLM(BloomConfig(**architecture))
    assert bloom_parameter_count(architecture) == sum(p.numel() for p in model.parameters())


def test_training_flops_per_token_for_bloom_560m_at_512_tokens() -> None:
    # 6*N = 3,355,287,552; attention 12*L*d*s = 12*24*1024*512 = 150,994,944
    assert training_flops_per_token(BLOOM_560M_PARAMS, 24, 1024, 512) == 3_506_282_496


@pytest.mark.parametrize(
    "name,precision,peak,source",
    [
        ("NVIDIA H100 80GB HBM3", "fp16", 989.4, "table:NVIDIA H100 80GB HBM3, fp16"),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4, "table:NVIDIA H100 80GB HBM3, bf16"),
        ("NVIDIA H100 80GB HBM3", "fp32", 66.9, "table:NVIDIA H100 80GB HBM3, fp32"),
        ("NVIDIA H100 80GB HBM3", "tf32", 494.7, "table:NVIDIA H100 80GB HBM3, tf32"),
        ("NVIDIA H100 PCIe", "fp16", 756.5, "table:NVIDIA H100 PCIe, fp16"),
        ("NVIDIA H100 NVL", "bf16", 835.5, "table:NVIDIA H100 NVL, bf16"),
        ("NVIDIA H200", "fp16", 989.4, "table:NVIDIA H200, fp16"),
        ("NVIDIA H200 NVL", "fp16", 835.5, "table:NVIDIA H200 NVL, fp16"),  # not the SXM figure
        ("NVIDIA GH200 480GB", "bf16", 989.4, "table:NVIDIA GH200 480GB, bf16"),
        ("NVIDIA B200", "bf16", 2250.0, "table:NVIDIA B200, bf16"),
        ("NVIDIA H800", "fp16", 989.4, "table:NVIDIA H800, fp16"),
        ("NVIDIA L40S", "fp16", 362.05, "table:NVIDIA L40S, fp16"),
        ("NVIDIA L40S", "fp32", 91.6, "table:NVIDIA L40S, fp32"),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0, "table:NVIDIA A100-SXM4-80GB, bf16"),
        ("NVIDIA A100-PCIE-40GB", "fp32", 19.5, "table:NVIDIA A100-PCIE-40GB, fp32"),
        ("NVIDIA A100 80GB PCIe", "fp16", 312.0, "table:NVIDIA A100 80GB PCIe, fp16"),
        ("NVIDIA A10", "fp16", 125.0, "table:NVIDIA A10, fp16"),
        ("NVIDIA L4", "bf16", 121.0, "table:NVIDIA L4, bf16"),
        ("Tesla V100-SXM2-32GB", "fp16", 125.0, "table:Tesla V100-SXM2-32GB, fp16"),
        ("  nvidia   h100\tpcie ", "fp16", 756.5, "table:NVIDIA H100 PCIe, fp16"),  # case and spacing only
    ],
)
def test_peak_by_exact_model_name_and_precision(name: str, precision: str, peak: float, source: str) -> None:
    assert peak_tflops(name, precision) == Peak(peak, source)


@pytest.mark.parametrize(
    "name,precision,why",
    [
        # substrings of listed models are other GPUs: the old substring match gave them the H100/H200 SXM figure
        ("NVIDIA H100", "fp16", "not in the peak table"),
        ("NVIDIA H200 NVL 2", "fp16", "not in the peak table"),
        ("NVIDIA-H100-PCIe", "fp16", "not in the peak table"),  # '-' is part of a name (A100-SXM4-80GB)
        ("NVIDIA RTX 6000 Ada Generation", "fp16", "not in the peak table"),
        ("Tesla V100-SXM2-16GB", "bf16", "has no bf16 tensor path"),  # Volta: fp16 tensor cores only
        ("NVIDIA H100 80GB HBM3", None, "no known precision"),
        (None, "fp16", "names no GPU model"),
    ],
)
def test_unknown_model_or_precision_has_no_peak(name: str | None, precision: str | None, why: str) -> None:
    found = peak_tflops(name, precision)
    assert found.tflops is None and found.source is None and found.missing is not None and why in found.missing


def test_table_lists_every_model_the_issue_names() -> None:
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL",
                 "NVIDIA GH200 480GB", "NVIDIA B200", "NVIDIA H800", "NVIDIA L40S", "NVIDIA A100-SXM4-80GB",
                 "NVIDIA A100 80GB PCIe", "NVIDIA A10", "NVIDIA L4", "Tesla V100-SXM2-16GB"):
        peaks = PEAK_TFLOPS_TABLE[name]
        assert peaks.source and peaks.fp32 < (peaks.tensor_16bit or 0), name  # cited; tensor paths above fp32


def test_configured_peak_wins_over_the_table() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp16", 500.0) == Peak(500.0, "config")
    assert peak_tflops("Unknown GPU", None, 500.0) == Peak(500.0, "config")


def test_mfu_from_throughput() -> None:
    # 1000 tokens/s at 3.5e9 FLOPs/token over 2 GPUs = 1.75 TFLOP/s per GPU
    tflops = achieved_tflops_per_gpu(3.5e9, 1000.0, 2)
    assert tflops == pytest.approx(1.75)
    assert model_flops_utilization(98.94, 989.4) == pytest.approx(0.1)
    assert model_flops_utilization(tflops, None) is None
    assert model_flops_utilization(None, 989.4) is None
