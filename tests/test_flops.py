"""Model FLOPs against a hand computation, the GPU peak table, and MFU."""

from __future__ import annotations

import pytest
from zerosweep.run.flops import (
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
    "name,peak,source",
    [
        ("NVIDIA H100 80GB HBM3", 989.4, "table:H100 SXM"),
        ("NVIDIA H100 PCIe", 756.0, "table:H100 PCIe"),
        ("NVIDIA H200", 989.4, "table:H200"),
        ("NVIDIA A100-SXM4-80GB", 312.0, "table:A100"),
        ("NVIDIA A100-PCIE-40GB", 312.0, "table:A100"),
        ("Tesla V100-SXM2-32GB", None, None),
        (None, None, None),
    ],
)
def test_peak_lookup_by_gpu_name(name: str | None, peak: float | None, source: str | None) -> None:
    assert peak_tflops(name) == (peak, source)


def test_configured_peak_wins_over_the_table() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", 500.0) == (500.0, "config")


def test_mfu_from_throughput() -> None:
    # 1000 tokens/s at 3.5e9 FLOPs/token over 2 GPUs = 1.75 TFLOP/s per GPU
    tflops = achieved_tflops_per_gpu(3.5e9, 1000.0, 2)
    assert tflops == pytest.approx(1.75)
    assert model_flops_utilization(98.94, 989.4) == pytest.approx(0.1)
    assert model_flops_utilization(tflops, None) is None
    assert model_flops_utilization(None, 989.4) is None
