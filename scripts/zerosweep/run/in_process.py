"""`tune.search_mode: in_process`: one rank runs a point's whole micro-batch search in one process.

The Trainer builds the model and its engine (DeepSpeed's, with the run's levers) as for any run; when training
begins, a callback takes over and probes micro-batches in the order the search asks for them
(plan/tune/studies.next_probe, the one search): at each, `probe_steps` optimizer steps of the Trainer's own
training_step (forward and backward), optimizer and scheduler step. An OOM (torch's OutOfMemoryError, the
allocator's messages: run/outcome.exception_outcome, as for ordinary runs) is caught, the probe recorded with its
exception and the allocator's state, memory released and the peak statistics reset before the next probe. Another
error after an OOM stops the search (the engine may not have survived it); the replay then continues with
ordinary runs (plan/tune/search.with_in_process). On CPU ranks the memory is the host's, capped like an ordinary
probe's (tune.host_memory_cap_mib: RLIMIT_DATA), so an OOM is real there too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..plan.tune.studies import FIT, IN_PROCESS_SEARCH, OOM, next_probe
from ..units import MIB
from .outcome import OOM_OUTCOMES, exception_outcome

IN_PROCESS_RECORD = IN_PROCESS_SEARCH  # the key of the job's spec (its search) and of rank 0's record (its probes)


def _proc_status_mib(*keys: str) -> dict[str, float]:
    values: dict[str, float] = {}
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in keys:
                values[name] = int(rest.split()[0]) / 1024  # kB
    return values


@dataclass
class DeviceMemory:
    """The memory a probe is judged by: the GPU's (torch's reserved peak plus what lies outside its allocator:
    the CUDA context, NCCL's and cuBLAS's buffers), or on a CPU rank the process's resident peak (VmHWM, reset
    through /proc/self/clear_refs)."""

    cuda: bool
    outside_allocator_mib: float = 0.0

    @property
    def peak_source(self) -> str:
        return ("in_process.torch_reserved_peak_plus_outside_allocator" if self.cuda
                else "in_process.resident_peak_vmhwm")

    def total_mib(self) -> float | None:
        """The device's memory (None on a CPU rank: its cap is on data, not on the resident size)."""
        if not self.cuda:
            return None
        import torch

        return torch.cuda.mem_get_info()[1] / MIB

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        else:  # glibc keeps freed heap pages: hand them back so that the next peak starts from what is live
            libc = ctypes.util.find_library("c")
            if libc:
                ctypes.CDLL(libc).malloc_trim(0)

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            free, total = torch.cuda.mem_get_info()
            self.outside_allocator_mib = (total - free - torch.cuda.memory_reserved()) / MIB
        else:
            with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
                handle.write("5")  # VmHWM back to the current resident size

    def peak_mib(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_reserved() / MIB + self.outside_allocator_mib
        return _proc_status_mib("VmHWM")["VmHWM"]

    def state(self) -> dict[str, Any]:
        """The allocator's state: the evidence beside an outcome."""
        if self.cuda:
            import torch

            stats = torch.cuda.memory_stats()
            free, total = torch.cuda.mem_get_info()
            return {"allocated_mib": torch.cuda.memory_allocated() / MIB,
                    "reserved_mib": torch.cuda.memory_reserved() / MIB,
                    "device_free_mib": free / MIB, "device_total_mib": total / MIB,
                    "num_ooms": stats.get("num_ooms"), "num_alloc_retries": stats.get("num_alloc_retries")}
        limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
        status = _proc_status_mib("VmRSS", "VmHWM", "VmData")
        return {"rss_mib": status.get("VmRSS"), "resident_peak_mib": status.get("VmHWM"),
                "data_mib": status.get("VmData"),
                "data_limit_mib": None if limit == resource.RLIM_INFINITY else limit / MIB}


RunProbe = Callable[[int], list[float]]  # micro-batch -> the wall seconds of each of its optimizer steps


def probe_loop(search: Mapping[str, Any], run_probe: RunProbe, memory: DeviceMemory,
               after_oom: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Probe the micro-batches the search asks for, in one process. `search`: the job spec's
    `in_process_search` (plan/tune/studies.TuneSearch.in_process). Returns the record the report reads
    (report/tune/tune_records.in_process_record): the known outcomes, each probe in the order it ran, the device's
    memory and why the loop stopped early (None: the search finished)."""
    start, upper, gallop = int(search["start"]), int(search["upper"]), bool(search["gallop"])
    known = {int(mb): str(status) for mb, status in search["known"].items()}
    # the questions are the replay's (plan/tune/search.replay): from no outcome, a known one (a screen probe)
    # answered from its record when the search asks for it, not run again
    outcomes: dict[int, str] = {}
    probes: list[dict[str, Any]] = []
    stopped = None
    while (micro_batch := next_probe(outcomes, start, upper, gallop)) is not None:
        if micro_batch in known:
            outcomes[micro_batch] = known[micro_batch]
            continue
        if micro_batch < 1 or micro_batch in outcomes:  # never loop: the replay asks ordinary runs for the rest
            stopped = f"the search asked for micro-batch {micro_batch} again or below 1: the rest as ordinary probes"
            break
        memory.release()
        memory.reset_peak()
        before = memory.state()
        began = time.perf_counter()
        failure: dict[str, Any] | None = None
        seconds: list[float] = []
        try:
            seconds = run_probe(micro_batch)
        except Exception as error:  # judged by exception_outcome; a genuine failure is re-raised below
            failure = {"outcome": exception_outcome(error), "error_type": type(error).__name__,
                       "error": str(error)[:2000]}
            if failure["outcome"] not in OOM_OUTCOMES and OOM not in outcomes.values():
                raise  # a genuine failure, not a casualty of an earlier OOM: the job fails with it
        # out of the except block: the traceback, and the tensors its frames held, are gone
        wall = time.perf_counter() - began
        peak = memory.peak_mib()
        after = memory.state()
        if failure is not None and failure["outcome"] not in OOM_OUTCOMES:
            stopped = (f"micro-batch {micro_batch}: {failure['error_type']}: {failure['error']} "
                       "(after an OOM in this process: the rest of the search runs as ordinary probes)")
            break
        status = FIT if failure is None else OOM
        probes.append({"run_id": f"{search['probe_prefix']}-b{micro_batch}", "micro_batch": micro_batch,
                       "status": status, "outcome": "ok" if failure is None else failure["outcome"],
                       "error_type": None if failure is None else failure["error_type"],
                       "error": None if failure is None else failure["error"],
                       "peak_mib": peak, "peak_source": memory.peak_source, "step_seconds": seconds,
                       "seconds": wall, "allocator_before": before, "allocator_after": after})
        outcomes[micro_batch] = status
        print(f"[zerosweep] in-process probe {micro_batch}: {status}, peak {peak:.0f} MiB, {wall:.1f} s", flush=True)
        if failure is not None:
            after_oom()
    return {"known": dict(search["known"]), "probes": probes, "device_total_mib": memory.total_mib(),
            "peak_source": memory.peak_source, "stopped": stopped}


def trainer_probe(trainer: Any, train_set: Any, grad_accum: int, steps: int, cuda: bool) -> RunProbe:
    """A probe with the Trainer's own step: `steps` optimizer steps of `grad_accum` micro-batches of the given
    size (the run's samples, repeated where it has fewer), each the Trainer's training_step (forward, backward;
    DeepSpeed's engine steps itself inside it), then the optimizer and scheduler step and zeroed gradients."""
    import torch
    from transformers import default_data_collator

    def run_probe(micro_batch: int) -> list[float]:
        model = trainer.model_wrapped
        batch = default_data_collator([train_set[index % len(train_set)] for index in range(micro_batch)])
        trainer.current_gradient_accumulation_steps = grad_accum  # training_step divides the loss by it
        seconds = []
        for _ in range(steps):
            began = time.perf_counter()
            for _ in range(grad_accum):
                trainer.training_step(model, batch)
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
            model.zero_grad()
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - began)
        return seconds

    return run_probe


class ProbesDone(Exception):
    """Raised from the callback once the search is over: the Trainer's own training loop never runs."""


def search_in_process(trainer: Any, train_set: Any, spec: Mapping[str, Any], cuda: bool) -> dict[str, Any]:
    """Build the engine through trainer.train() and run the probe loop when training begins."""
    from transformers import TrainerCallback

    search = spec[IN_PROCESS_RECORD]
    probe = trainer_probe(trainer, train_set, int(spec["training"]["gradient_accumulation_steps"]),
                          int(search["steps"]), cuda)
    result: dict[str, Any] = {}

    def after_oom() -> None:  # gradients a failed backward left behind
        trainer.model_wrapped.zero_grad()
        trainer.optimizer.zero_grad()

    class Probes(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            result.update(probe_loop(search, probe, DeviceMemory(cuda), after_oom))
            raise ProbesDone

    trainer.add_callback(Probes())
    try:
        trainer.train()
    except ProbesDone:
        pass
    return result
