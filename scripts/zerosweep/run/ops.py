"""`python -m zerosweep build-ops`: compile DeepSpeed's optimizer ops once, before any training run.

DeepSpeed installed with DS_BUILD_OPS=0 (the usual pip install) ships no compiled ops: FusedAdam (ZeRO without
offload) and CPUAdam (CPU offload) are JIT-compiled by `OpBuilder.load()` into TORCH_EXTENSIONS_DIR the first
time a run uses them, inside that run's timings and CPU peak. This command calls the same `load()` with the
same TORCH_EXTENSIONS_DIR, TORCH_CUDA_ARCH_LIST, DS_ACCELERATOR and PATH as the training ranks get, so the
runs find the ops built (torch reuses a build whose sources and flags match). Ops that DeepSpeed already has
prebuilt (DS_BUILD_OPS=1 installs) are only recorded. It writes what it did, op by op, as JSON.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ..jsonio import write_json

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


def _environment(device: str, extensions_dir: Path) -> None:
    """The build-relevant part of the training ranks' environment (run.launch.torchrun_environment)."""
    from .node import cuda_arch_list
    from .processes import tools_first_path

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
    extensions = args.extensions_dir.resolve()
    extensions.mkdir(parents=True, exist_ok=True)
    _environment(args.device, extensions)
    results = [build(op) for op in args.ops]
    if not args.ops:
        print(f"[zerosweep] no op to build ahead on {args.device}", flush=True)
    for result in results:
        print(f"[zerosweep] op {result['op']}: {result['status']} {result.get('seconds', '')}", flush=True)
    write_json(args.out, {"device": args.device, "torch_extensions_dir": str(extensions), "ops": results})
    return 0
