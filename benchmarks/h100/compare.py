"""Turn the device session's files (data/) into the target checks of benchmarks/h100/README.md:
fidelity (pipeline vs bare Trainer steady samples/s), exact peak vs an independent 50 ms NVML sampler,
nvidia-smi peak beside it, MFU, and the time-to-tables split.

    python benchmarks/h100/compare.py     # prints Markdown tables
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
RUNS = ["base-g1n1", "z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1",
        "z3-offnone-nopin-g1n1", "z1-offcpu-nopin-g1n1", "z2-offcpu-nopin-g1n1", "z2-offcpu-pin-g1n1",
        "z3-offcpu-nopin-g1n1"]


def read_records() -> dict[str, dict[str, bytes]]:
    files: dict[str, dict[str, bytes]] = {}
    with tarfile.open(DATA / "pipeline_records.tgz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 4 and parts[1] == "runs":
                handle = tar.extractfile(member)
                assert handle is not None
                files.setdefault(parts[2], {})["/".join(parts[3:])] = handle.read()
    return files


def watcher_samples() -> list[tuple[float, float]]:
    samples = []
    for path in sorted(DATA.glob("nvml_watch_part*.csv.gz")):
        with gzip.open(path, "rt") as handle:
            samples += [(float(row["unix_time_s"]), float(row["used_mib"])) for row in csv.DictReader(handle)]
    return samples


def main() -> None:
    records = read_records()
    bare = {entry["run"]: entry["result"] for entry in map(json.loads, (DATA / "bare.jsonl").read_text().splitlines())}
    watch = watcher_samples()
    print("| run | pipeline steady samples/s | bare Trainer steady samples/s | difference | exact peak (MiB) | "
          "independent 50 ms peak (MiB) | difference | nvidia-smi 5 s peak (MiB) | smi - exact | TFLOP/s per GPU | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in RUNS:
        metrics = json.loads(records[run]["metrics.json"])
        summary = json.loads(records[run]["summary.json"])
        nvml_rows = list(csv.DictReader(io.StringIO(records[run]["monitor/nvml_vm.csv"].decode())))
        start, end = float(nvml_rows[0]["timestamp_s"]), float(nvml_rows[-1]["timestamp_s"])
        independent = max(used for t, used in watch if start <= t <= end)
        exact = summary["nvml"]["peak_mib"]
        smi = summary["gpu"]["peak_mib"]
        ours, ref = metrics["steady_samples_per_second"], bare[run]["steady_samples_per_second"]
        print(f"| {run} | {ours:.2f} | {ref:.2f} | {100 * (ours / ref - 1):+.1f} % | {exact:.0f} | {independent:.0f} | "
              f"{100 * (exact / independent - 1):+.2f} % | {smi:.0f} | {smi - exact:+.0f} | "
              f"{metrics['tflops_per_gpu']:.1f} | {100 * metrics['mfu']:.1f} % |")
    print()
    phases = {run: json.loads(records[run]["metrics.json"])["phase_seconds"] for run in RUNS}
    compile_s = {run: p["train_setup_s"] for run, p in phases.items() if p["train_setup_s"] > 30}
    totals = {key: sum(p.get(key, 0.0) for p in phases.values())
              for key in ("imports_s", "model_build_s", "data_prep_s", "train_setup_s", "train_s", "total_s")}
    print("| phase (sum over the 9 runs) | seconds |")
    print("|---|---|")
    for key, value in totals.items():
        print(f"| {key} | {value:.1f} |")
    print(f"| of train_setup_s: runs that JIT-compiled an op ({', '.join(compile_s)}) | "
          f"{sum(compile_s.values()):.1f} |")
    print((DATA / "timing.txt").read_text())


if __name__ == "__main__":
    main()
