"""`python -m zerosweep build-ops`: compile DeepSpeed's optimizer ops once, before any training run.

DeepSpeed installed with DS_BUILD_OPS=0 (the usual pip install) ships no compiled ops: FusedAdam (ZeRO without
offload) and CPUAdam (CPU offload) are JIT-compiled by `OpBuilder.load()` into TORCH_EXTENSIONS_DIR the first
time a run uses them, inside that run's timings and CPU peak. This command calls the same `load()` with the
same TORCH_EXTENSIONS_DIR, TORCH_CUDA_ARCH_LIST, DS_ACCELERATOR and PATH as the training ranks get, so the
runs find the ops built (torch reuses a build whose sources and flags match).

runtime.torch_extensions_dir is shared by every node (a shared filesystem), but a build is only good for the
hardware it was made for: CPUAdam is compiled with -march=native, the CUDA ops for TORCH_CUDA_ARCH_LIST. So
each build goes to a subdirectory named by the CPU's ISA and the GPUs' architecture (op_cache_dir), which the
op build and every node launcher compute the same way on the host they run on. Ops that DeepSpeed already has
prebuilt (DS_BUILD_OPS=1 installs) are only recorded. It writes what it did, op by op, as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from ..jsonio import write_json
from .environment import gpu_inventory
from .gpus import resolve, visible_entries
from .processes import tools_first_path

# What a run's optimizer needs: CPU offload uses CPUAdam, ZeRO without offload FusedAdam.
OP_BUILDERS: dict[str, str] = {"fused_adam": "FusedAdamBuilder", "cpu_adam": "CPUAdamBuilder"}


def ops_for(points: list[dict[str, Any]], device: str) -> list[str]:
    """The ops the given matrix points (RunSpec.to_dict()['point']) will load, in a fixed order.

    None on CPU: there the rule only records that it did nothing. A CPU run's timings describe a toy, and
    building ahead would hold every run of a 2-core demo back behind the compiler (the first run that needs
    an op builds it, beside the other runs)."""
    if device == "cpu":
        return []
    needed = {"cpu_adam" if point.get("offload") == "cpu" else "fused_adam"
              for point in points if point.get("deepspeed")}
    return [name for name in OP_BUILDERS if name in needed]


def _visible_gpu_capabilities(visible: str | None) -> list[str]:
    gpus = gpu_inventory().get("gpus", [])
    try:
        gpus = resolve(visible_entries(visible) or [], gpus) or gpus
    except ValueError:
        pass  # an entry NVML does not know (e.g. a MIG id): build for every GPU of the host
    if gpus:
        return sorted({gpu["compute_capability"] for gpu in gpus})
    try:
        probe = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                               check=False, capture_output=True, text=True, timeout=30)
        return sorted({line.strip() for line in probe.stdout.splitlines() if re.fullmatch(r"\d+\.\d+", line.strip())})
    except (OSError, subprocess.TimeoutExpired):
        return []


def cuda_arch_list(visible: str | None, inherited: str | None) -> str | None:
    """TORCH_CUDA_ARCH_LIST for DeepSpeed's op builder: from the GPUs themselves, since the value images set
    (e.g. '9.0a') crashes it (int('0a')); failing that, the inherited value without letter suffixes."""
    capabilities = _visible_gpu_capabilities(visible)
    if capabilities:
        return ";".join(capabilities)
    if inherited:
        return re.sub(r"(\d+\.\d+)[a-zA-Z]+", r"\1", inherited)
    return None


def cpu_isa_key(cpuinfo: str, machine: str) -> str:
    """The CPU's instruction set as -march=native sees it: the machine (x86_64, aarch64) and a hash of the
    feature flags the kernel reports (x86 `flags`, Arm `Features`), order-free. Model names, clocks and core
    counts do not matter; one flag more or less does (an AVX-512 build crashes on a CPU without it)."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if re.match(r"(flags|Features)\s*:", line)), None)
    if not flags:
        return f"{machine}-noflags"
    digest = hashlib.sha256(" ".join(sorted(set(flags))).encode()).hexdigest()[:12]
    return f"{machine}-{digest}"


def gpu_arch_key(device: str, arch: str | None) -> str:
    """'cpu' for CPU runs; 'sm80-sm90' for TORCH_CUDA_ARCH_LIST '8.0;9.0'; 'sm-any' when it is unknown."""
    if device != "cuda":
        return "cpu"
    if not arch:
        return "sm-any"
    return "-".join(f"sm{entry.replace('.', '').replace('+PTX', '')}" for entry in re.split(r"[;\s,]+", arch) if entry)


def _host_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def op_cache_dir(base: Path, device: str, visible: str | None, inherited_arch: str | None) -> Path:
    """Where this host's builds of the ops live: <runtime.torch_extensions_dir>/<CPU ISA>-<GPU arch>. The op
    build and the node launchers both call this, on the host that compiles or loads."""
    arch = cuda_arch_list(visible, inherited_arch) if device == "cuda" else None
    return base / f"{cpu_isa_key(_host_cpuinfo(), platform.machine())}-{gpu_arch_key(device, arch)}"


def _environment(device: str, extensions_dir: Path) -> None:
    """The build-relevant part of the training ranks' environment (run.node.torchrun_environment)."""
    os.environ["TORCH_EXTENSIONS_DIR"] = str(extensions_dir)
    os.environ["DS_ACCELERATOR"] = device
    os.environ["PATH"] = tools_first_path(os.environ)
    if device == "cuda":
        arch = cuda_arch_list(os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("TORCH_CUDA_ARCH_LIST"))
        if arch:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch


def build(op: str) -> dict[str, Any]:
    from deepspeed.accelerator import get_accelerator
    from deepspeed.git_version_info import installed_ops

    builder = get_accelerator().create_op_builder(OP_BUILDERS[op])
    if builder is None:
        return {"op": op, "status": "unavailable", "reason": f"{get_accelerator()._name} has no {OP_BUILDERS[op]}"}
    if installed_ops.get(builder.name, False):
        return {"op": op, "status": "prebuilt", "seconds": 0.0}
    if not builder.is_compatible(verbose=False):
        return {"op": op, "status": "incompatible", "reason": builder.error_log}
    started = time.perf_counter()
    builder.load(verbose=True)
    return {"op": op, "status": "built", "seconds": time.perf_counter() - started}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--device", choices=("cuda", "cpu"), required=True, help="runtime.device")
    parser.add_argument("--extensions-dir", type=Path, required=True, help="runtime.torch_extensions_dir")
    parser.add_argument("--ops", nargs="*", default=[], choices=sorted(OP_BUILDERS), help="ops to build")
    parser.add_argument("--out", type=Path, required=True, help="JSON record of what was built")


def run(args: argparse.Namespace) -> int:
    base = args.extensions_dir.resolve()
    extensions = op_cache_dir(base, args.device, os.environ.get("CUDA_VISIBLE_DEVICES"),
                              os.environ.get("TORCH_CUDA_ARCH_LIST"))
    extensions.mkdir(parents=True, exist_ok=True)
    _environment(args.device, extensions)
    results = [build(op) for op in args.ops]
    if not args.ops:
        print(f"[zerosweep] no op to build ahead on {args.device}", flush=True)
    for result in results:
        print(f"[zerosweep] op {result['op']}: {result['status']} {result.get('seconds', '')}", flush=True)
    write_json(args.out, {"device": args.device, "torch_extensions_base": str(base),
                          "torch_extensions_dir": str(extensions), "ops": results})
    return 0
