"""`zerosweep build-ops` (rule build_ops): DeepSpeed's optimizer ops compiled once, before training."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_training_run import torch_extensions_dir
from zerosweep.run.ops import cpu_isa_key, gpu_arch_key, op_cache_dir, ops_for

__all__ = ["torch_extensions_dir"]  # the session's shared extensions dir, as the real runs use it


def point(deepspeed: bool, offload: str = "none") -> dict[str, object]:
    return {"deepspeed": deepspeed, "zero_stage": 2 if deepspeed else None, "offload": offload}


def test_the_plan_decides_which_ops_to_build() -> None:
    assert ops_for([point(False)], "cuda") == []
    assert ops_for([point(True), point(True)], "cuda") == ["fused_adam"]
    assert ops_for([point(True, "cpu"), point(False), point(True)], "cuda") == ["fused_adam", "cpu_adam"]
    assert ops_for([point(True, "cpu"), point(True)], "cpu") == []  # CPU: a recorded no-op


def build_ops(extensions: Path, out: Path, *ops: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zerosweep", "build-ops", "--device", "cpu", "--extensions-dir",
                           str(extensions), "--ops", *ops, "--out", str(out)], check=False, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO / "scripts")}, timeout=1200)


X86_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma"


def cpuinfo(flags: str, model: str = "Intel(R) Xeon(R) Platinum 8480+", mhz: str = "2000.000") -> str:
    """Two processors of /proc/cpuinfo as x86 Linux writes it."""
    block = f"processor\t: {{n}}\nmodel name\t: {model}\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n"
    return "\n".join(block.format(n=n) for n in range(2))


def test_the_op_cache_is_keyed_by_cpu_isa() -> None:
    """CPUAdam is built with -march=native: a node whose CPU lacks one of the build host's flags (AVX-512 here)
    must not load that build. Model name, clock and flag order do not change the instruction set."""
    base = cpu_isa_key(cpuinfo(X86_FLAGS), "x86_64")
    assert base.startswith("x86_64-") and len(base) == len("x86_64-") + 12
    assert cpu_isa_key(cpuinfo(" ".join(reversed(X86_FLAGS.split())), "AMD EPYC 9654", "3700.1"), "x86_64") == base
    assert cpu_isa_key(cpuinfo(X86_FLAGS + " avx512f avx512bw"), "x86_64") != base
    assert cpu_isa_key(cpuinfo(X86_FLAGS), "aarch64") != base
    arm = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 sve\n"
    assert cpu_isa_key(arm, "aarch64") != cpu_isa_key(arm.replace(" sve", ""), "aarch64")
    assert cpu_isa_key("", "x86_64") == "x86_64-noflags"


def test_the_op_cache_is_keyed_by_gpu_architecture() -> None:
    assert gpu_arch_key("cpu", "9.0") == "cpu"  # a CPU run's ops: no CUDA code in them
    assert gpu_arch_key("cuda", "8.0;9.0") == "sm80-sm90"
    assert gpu_arch_key("cuda", "9.0") != gpu_arch_key("cuda", "8.0")  # H100 builds are not A100 builds
    assert gpu_arch_key("cuda", None) == "sm-any"


def test_op_cache_dir_reads_this_host() -> None:
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        isa = cpu_isa_key(handle.read(), platform.machine())
    assert op_cache_dir(Path("/ext"), "cpu", None, None) == Path(f"/ext/{isa}-cpu")


def test_build_ops_and_the_runs_use_one_cache_key(tmp_path: Path) -> None:
    """The op build (a real `zerosweep build-ops`) writes where a run on this host looks (op_cache_dir, which
    run.node.run_node also calls; tests/test_neighbour_runs.py checks a real run's TORCH_EXTENSIONS_DIR)."""
    result = build_ops(tmp_path / "ext", tmp_path / "ops.json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = json.loads((tmp_path / "ops.json").read_text())
    keyed = op_cache_dir((tmp_path / "ext").resolve(), "cpu", None, None)
    assert record["torch_extensions_dir"] == str(keyed) and keyed.is_dir()
    assert record["torch_extensions_base"] == str((tmp_path / "ext").resolve())


@pytest.mark.slow
def test_build_ops_compiles_cpu_adam_where_the_runs_look_for_it(torch_extensions_dir: Path, tmp_path: Path) -> None:
    result = build_ops(torch_extensions_dir, tmp_path / "ops.json", "cpu_adam")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = json.loads((tmp_path / "ops.json").read_text())
    keyed = op_cache_dir(torch_extensions_dir, "cpu", None, None)
    assert record["device"] == "cpu" and record["torch_extensions_dir"] == str(keyed)
    assert [(op["op"], op["status"]) for op in record["ops"]] == [("cpu_adam", "built")]
    assert (keyed / "cpu_adam" / "cpu_adam.so").is_file()
    built = (keyed / "cpu_adam" / "cpu_adam.so").stat().st_mtime
    again = build_ops(torch_extensions_dir, tmp_path / "again.json", "cpu_adam")  # a second call reuses it
    assert again.returncode == 0 and (keyed / "cpu_adam" / "cpu_adam.so").stat().st_mtime == built
