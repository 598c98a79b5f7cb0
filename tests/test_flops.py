"""Model FLOPs against a hand computation, the GPU peak table (exact model names, per precision), and MFU."""

from __future__ import annotations

import pytest
from zerosweep.plan.models import architecture_config, config_shape, model_shape
from zerosweep.run.flops import (
    PEAK_TFLOPS_TABLE,
    Peak,
    achieved_tflops_per_gpu,
    model_flops_utilization,
    peak_tflops,
    training_flops_per_token,
)

# bloom-560m by hand: V=250880, d=1024, L=24
#   embedding 250880*1024 = 256,901,120 (+ LayerNorm 2*1024)
#   per block 12*1024^2 + 13*1024 = 12,596,224; 24 blocks = 302,309,376
#   final LayerNorm 2*1024; the LM head is the embedding (tied)
BLOOM_560M_PARAMS = 256_901_120 + 2_048 + 302_309_376 + 2_048  # 559,214,592


def bloom_formula(vocab: int, hidden: int, layers: int) -> tuple[int, int]:
    """The BLOOM-only formulas the meta-device count replaced: (parameters, largest layer's parameters)."""
    params = vocab * hidden + 2 * hidden + layers * (12 * hidden * hidden + 13 * hidden) + 2 * hidden
    return params, max(vocab * hidden, 4 * hidden * hidden + 4 * hidden)


def random(architecture: str) -> dict[str, str]:
    return {"weights": "random", "architecture": architecture}


def test_bloom_560m_parameters_by_hand() -> None:
    assert BLOOM_560M_PARAMS == 559_214_592
    shape = model_shape(random("bloom-560m"))
    assert shape.n_params == shape.matmul_params == BLOOM_560M_PARAMS  # tied head: the embedding multiplies
    assert (shape.n_params, shape.largest_layer_params) == bloom_formula(250880, 1024, 24)
    assert (shape.model_type, shape.n_layers, shape.attention_width, shape.tied_head) == ("bloom", 24, 1024, True)


@pytest.mark.parametrize("architecture", ["bloom-tiny", "llama-tiny", "qwen2-tiny", "gpt2-tiny"])
def test_parameter_count_matches_a_built_model(architecture: str) -> None:
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(architecture_config(architecture))
    shape = model_shape(random(architecture))
    assert shape.n_params == sum(p.numel() for p in model.parameters())  # shared weights once
    assert shape.largest_layer_params == max(sum(p.numel() for p in module.parameters(recurse=False))
                                             for module in model.modules())
    positions = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding)
                    and m.weight is not model.get_output_embeddings().weight)
    assert shape.matmul_params == shape.n_params - positions


def test_bloom_tiny_equals_the_bloom_formula() -> None:
    shape = model_shape(random("bloom-tiny"))
    assert (shape.n_params, shape.largest_layer_params) == bloom_formula(4096, 64, 2)


def test_training_flops_per_token_for_bloom_560m_at_512_tokens() -> None:
    # 6*N = 3,355,287,552; attention 12*L*d*s = 12*24*1024*512 = 150,994,944: the BLOOM formula's figure
    assert training_flops_per_token(model_shape(random("bloom-560m")), 512) == 3_506_282_496


def test_llama_3_2_1b_and_qwen2_0_5b_shapes() -> None:
    # the published sizes: Llama-3.2-1B 1.24B (tied head), Qwen2-0.5B 0.49B (tied head), both grouped-query
    llama = model_shape(random("llama-3.2-1b"))
    assert (llama.n_params, llama.tied_head, llama.n_heads, llama.n_kv_heads) == (1_235_814_400, True, 32, 8)
    qwen = model_shape(random("qwen2-0.5b"))
    assert (qwen.n_params, qwen.tied_head, qwen.n_heads, qwen.n_kv_heads) == (494_032_768, True, 14, 2)
    # by hand for Llama-3.2-1B: per layer q 2048^2 + k,v 2*2048*512 + o 2048^2 + MLP 3*2048*8192 + 2 norms of 2048
    per_layer = 2 * 2048**2 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048
    assert llama.n_params == 128256 * 2048 + 16 * per_layer + 2048
    assert training_flops_per_token(llama, 1024) == 6 * llama.n_params + 12 * 16 * 32 * 64 * 1024


def test_untied_head_and_learned_positions_are_not_matmuls() -> None:
    from transformers import AutoConfig

    tied = config_shape(AutoConfig.for_model("llama", vocab_size=1000, hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, tie_word_embeddings=True))
    untied = config_shape(AutoConfig.for_model("llama", vocab_size=1000, hidden_size=64, intermediate_size=128,
                                               num_hidden_layers=2, num_attention_heads=4, tie_word_embeddings=False))
    assert untied.n_params == tied.n_params + 1000 * 64 and not untied.tied_head
    assert untied.matmul_params == tied.matmul_params  # the input lookup is free; the head multiplies either way
    gpt2 = model_shape(random("gpt2-tiny"))
    assert gpt2.n_params - gpt2.matmul_params == 512 * 64  # wpe: n_positions x n_embd, looked up


def test_grouped_query_attention_shrinks_parameters_not_the_attention_term() -> None:
    from transformers import AutoConfig

    def llama(kv_heads: int) -> object:
        return config_shape(AutoConfig.for_model("llama", vocab_size=1000, hidden_size=64, intermediate_size=128,
                                                 num_hidden_layers=2, num_attention_heads=8,
                                                 num_key_value_heads=kv_heads))

    full, grouped = llama(8), llama(2)
    assert full.n_params - grouped.n_params == 2 * 2 * 64 * (64 - 16)  # k and v, 2 layers, 6 of 8 heads fewer
    attention = training_flops_per_token(full, 128) - 6 * full.matmul_params
    assert attention == training_flops_per_token(grouped, 128) - 6 * grouped.matmul_params == 12 * 2 * 64 * 128


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
