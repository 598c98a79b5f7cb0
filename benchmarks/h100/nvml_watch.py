"""Independent 50 ms NVML sampler for the whole device session: the reference the pipeline's exact peak is
checked against (target: within 1 %). Writes `unix_time_s,index,used_mib` (v2 memory info, which matches
nvidia-smi's memory.used) until SIGTERM.

    python benchmarks/h100/nvml_watch.py --out $OUT/nvml_watch.csv &
"""

from __future__ import annotations

import argparse
import signal
import time

import pynvml


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval-ms", type=int, default=50)
    args = parser.parse_args()
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    pynvml.nvmlInit()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    with open(args.out, "w", encoding="utf-8") as out:
        out.write("unix_time_s,index,used_mib\n")
        while not stop:
            now = time.time()
            for index, handle in enumerate(handles):
                used = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2).used
                out.write(f"{now:.3f},{index},{used / 2**20:.1f}\n")
            time.sleep(args.interval_ms / 1000)
    pynvml.nvmlShutdown()


if __name__ == "__main__":
    main()
