"""Wall time of `snakemake -n` on the shipped config and on a generated 512-point matrix.

Run from the repository root:  python benchmarks/dry_run/bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def big_matrix_overrides() -> dict:
    """512 distinct runs: ZeRO 1/2 x 16 GPU counts x 16 node counts, one study."""
    counts = list(range(1, 17))
    return {
        "matrix": {"gpus_per_node": counts, "nodes": counts},
        "studies": {
            "big": {"table": "comparison", "zero_stage": [1, 2], "gpus_per_node": counts, "nodes": counts},
        },
        "build_studies": ["big"],
    }


def time_dry_run(extra: list[str], repeat: int) -> tuple[list[float], str]:
    times, last = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *extra],
            cwd=REPO, capture_output=True, text=True, check=True,
        )
        times.append(time.perf_counter() - start)
        last = result.stdout
    return times, last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = Path(tmp) / "big.yaml"
        overrides.write_text(yaml.safe_dump(big_matrix_overrides()))
        cases = {"shipped config (21 runs, 81 jobs)": [], "generated 512-point matrix": ["--configfile", str(overrides)]}
        for name, extra in cases.items():
            times, output = time_dry_run(extra, args.repeat)
            train_jobs = next(line.split()[1] for line in output.splitlines() if line.startswith("train "))
            print(f"{name}: train jobs {train_jobs}; median {statistics.median(times):.2f} s "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
