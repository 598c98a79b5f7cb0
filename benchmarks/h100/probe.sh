#!/usr/bin/env bash
# Probe of the device machine: carried wheels install, versions, GPU, and a real nvidia-smi/NVML log
# of a short GPU workload (fixture material for the parsers).
set -u
source benchmarks/device_env.sh || exit 1
python3 -V; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
python3 - <<'PY'
import torch, transformers, accelerate, deepspeed, datasets, snakemake, pydantic, scipy
print({m.__name__: m.__version__ for m in (torch, transformers, accelerate, deepspeed, datasets, snakemake, pydantic, scipy)})
print("cuda", torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
PY
echo "TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset}"; which psrecord snakemake; nproc; free -g | head -2
