"""`python -m zerosweep train`: what each torchrun rank runs.

Hugging Face Trainer fine-tuning of a causal LM (any family plan.models accepts) on SQuAD-format examples, with
or without a DeepSpeed config, configured entirely by the run dir's run_spec.json. Every rank writes its memory
record; rank 0 writes the training record that the launcher merges into metrics.json. Options have long,
distinct names because torchrun parses abbreviations: a script option that is a prefix of one of torchrun's is
taken by it.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import socket
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..jsonio import read_json, write_json
from ..plan import levers
from ..plan.models import checked_config, config_shape
from ..units import MIB
from .flops import training_flops_per_token
from .fused_loss import FusedLinearCrossEntropyLoss, fused_linear_loss, fused_loss_trainer_class
from .in_process import IN_PROCESS_RECORD, search_in_process
from .outcome import OOM_OUTCOMES, exception_outcome
from .processes import die_with_parent
from .steps import TRAINING_STARTED_MARKER, MeasureSettings, StepLayout, StepRecord, make_step_callback

__all__ = ["TRAINING_STARTED_MARKER", "add_arguments", "run"]  # the marker is read from here by tests and logs



def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--run-dir", type=Path, required=True, help="run dir holding run_spec.json (+ ds_config.json)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="shared cache (local tokenizer); default: <run-dir>/../../cache")
    parser.add_argument("--memory-headroom-mb", type=int, default=None,
                        help="testing: cap this rank's data memory at its post-import size + this many MiB")


def _vm_data_bytes() -> int:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmData in /proc/self/status")


def limit_memory(headroom_mb: int) -> int:
    """RLIMIT_DATA (private writable memory, what tensors use) = current usage + headroom; tests' OOM."""
    limit = _vm_data_bytes() + headroom_mb * MIB
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    return limit


class RankInfo:
    """Who this process is, from torchrun's environment (defaults: a lone process)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.rank = int(environ.get("RANK", 0))
        self.local_rank = int(environ.get("LOCAL_RANK", 0))
        self.world_size = int(environ.get("WORLD_SIZE", 1))
        self.local_world_size = int(environ.get("LOCAL_WORLD_SIZE", 1))
        self.group_rank = int(environ.get("GROUP_RANK", 0))  # torchrun's node index (rendezvous order)
        self.node_rank = int(environ.get("ZEROSWEEP_NODE_RANK", self.group_rank))  # the launcher's node rank
        self.node_tag = environ.get("ZEROSWEEP_NODE_TAG", socket.gethostname())

    def record(self) -> dict[str, Any]:
        return {"rank": self.rank, "local_rank": self.local_rank, "world_size": self.world_size,
                "node_rank": self.node_rank, "group_rank": self.group_rank, "node_tag": self.node_tag,
                "host": socket.gethostname(), "pid": os.getpid()}


def _standalone_defaults() -> None:
    """Let `zerosweep train` run without torchrun (debugging): a world of one on a free local port."""
    if "RANK" in os.environ:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def memory_record(rank: RankInfo, device: str) -> dict[str, Any]:
    import torch

    record = rank.record()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    record.update({
        "device": device,
        "max_rss_mib": usage.ru_maxrss / 1024,  # host RAM peak of this rank (KiB on Linux)
        "gpu_name": None, "gpu_uuid": None, "gpu_index": None,
        "max_memory_allocated_bytes": None, "max_memory_reserved_bytes": None,
        "max_memory_allocated_mib": None, "max_memory_reserved_mib": None,
    })
    if device == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        allocated = torch.cuda.max_memory_allocated(index)
        reserved = torch.cuda.max_memory_reserved(index)
        record.update({
            "gpu_name": properties.name, "gpu_uuid": f"GPU-{properties.uuid}", "gpu_index": index,
            "max_memory_allocated_bytes": allocated, "max_memory_reserved_bytes": reserved,
            "max_memory_allocated_mib": allocated / MIB, "max_memory_reserved_mib": reserved / MIB,
        })
    return record


def torch_build() -> dict[str, Any]:
    import torch

    nccl = None
    if torch.cuda.is_available() and hasattr(torch.cuda, "nccl"):
        try:
            nccl = ".".join(str(part) for part in torch.cuda.nccl.version())
        except (RuntimeError, AttributeError):
            nccl = None
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn, "nccl": nccl}


def training_arguments(spec: Mapping[str, Any], run_dir: Path, rank: RankInfo) -> Any:
    from transformers import TrainingArguments

    training = spec["training"]
    device = spec["runtime"]["device"]
    settings = levers.run_values(training)
    precision = settings["precision"]
    deepspeed_config = run_dir / "ds_config.json" if spec["point"]["deepspeed"] else None
    max_steps = training.get("max_steps")
    save = bool(training.get("save_model"))
    return TrainingArguments(
        output_dir=str(run_dir / "model"),
        eval_strategy="epoch",
        save_strategy="epoch" if save else "no",  # the workshop's per-epoch checkpoints, only when asked
        per_device_train_batch_size=training["per_device_batch_size"],
        per_device_eval_batch_size=training["per_device_batch_size"],
        gradient_accumulation_steps=training["gradient_accumulation_steps"],
        num_train_epochs=float(training["epochs"]),
        max_steps=int(max_steps) if max_steps else -1,
        learning_rate=training["learning_rate"],
        weight_decay=training["weight_decay"],
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        seed=training.get("seed", 42),
        **lever_arguments(settings, training.get("compile_mode", "default"), TrainingArguments),
        logging_strategy="steps",
        logging_steps=int(training.get("logging_steps", 1)),  # the loss curve; one host read of the loss each
        disable_tqdm=True,  # progress bars turn the log into carriage returns; losses are printed instead
        report_to="none",
        push_to_hub=False,
        dataloader_num_workers=0,
        # CPU runs: without use_cpu accelerate counts one process and DeepSpeed's batch assertion fails on 2.
        use_cpu=device == "cpu",
        ddp_backend="gloo" if device == "cpu" else None,
        deepspeed=str(deepspeed_config) if deepspeed_config else None,
    )


def lever_arguments(settings: Mapping[str, Any], compile_mode: str, arguments_class: Any) -> dict[str, Any]:
    """The TrainingArguments of the compile, optimizer and gradient-checkpointing levers (plan/levers.py)."""
    compiled = bool(settings["compile"])
    # transformers 5 renamed gradient_checkpointing (a deprecated alias until v6); 4.x knows only the old name
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in arguments_class.__dataclass_fields__
                     else "gradient_checkpointing")
    arguments: dict[str, Any] = {"torch_compile": compiled, checkpointing: bool(settings["gradient_checkpointing"])}
    if compiled:  # a mode alone would switch compiling on
        arguments["torch_compile_mode"] = compile_mode
    if settings["optimizer"] == "torch_fused":
        # without DeepSpeed, or with a DeepSpeed config without an optimizer section (plan/dsconfig.render)
        arguments["optim"] = "adamw_torch_fused"
    return arguments


def check_optimizer_seam(settings: Mapping[str, Any], ds_config: Mapping[str, Any] | None) -> None:
    """DeepSpeed steps its own optimizer whenever its config has an optimizer section, whatever the Trainer's
    `optim` says: a config that disagrees with the optimizer lever would measure the other optimizer."""
    if ds_config is None:
        return
    wanted_ds = settings["optimizer"] == "deepspeed"
    if wanted_ds != ("optimizer" in ds_config):
        raise ValueError(f"training.optimizer {settings['optimizer']} but ds_config.json "
                         f"{'lacks' if wanted_ds else 'has'} an optimizer section (plan/dsconfig.render decides it)")


def optimizer_record(optimizer: Any) -> dict[str, Any]:
    """The optimizer that steps the parameters, under DeepSpeed's and accelerate's wrappers, and its fused flag."""
    inner = optimizer
    while getattr(inner, "optimizer", None) is not None and inner.optimizer is not inner:
        inner = inner.optimizer
    groups = getattr(inner, "param_groups", None) or [{}]
    return {"class": f"{type(inner).__module__}.{type(inner).__qualname__}", "fused": groups[0].get("fused")}


def training_settings(settings: Mapping[str, Any], training_args: Any, trainer: Any) -> dict[str, Any]:
    """The levers as the run applied them, read back from the Trainer (the spec says what was asked)."""
    return {"compile": bool(training_args.torch_compile),
            "compile_mode": training_args.torch_compile_mode if training_args.torch_compile else None,
            "precision": "fp16" if training_args.fp16 else "bf16" if training_args.bf16 else "fp32",
            "optimizer": settings["optimizer"],
            "optimizer_stepped": optimizer_record(trainer.optimizer) if trainer.optimizer is not None else None,
            "gradient_checkpointing": bool(training_args.gradient_checkpointing),
            "loss": "model" if trainer.compute_loss_func is None else settings["loss"],
            "attention": trainer.model.config._attn_implementation}  # what transformers resolved and runs


def _train(args: argparse.Namespace, spec: Mapping[str, Any], rank: RankInfo, phases: dict[str, float],
           started: float) -> dict[str, Any]:
    import torch
    from transformers import Trainer, default_data_collator

    from . import data as data_module
    from .modeling import RANDOM_WEIGHTS_NOTE, build_model

    run_dir: Path = args.run_dir
    device = spec["runtime"]["device"]
    training = spec["training"]
    data = spec["data"]
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("runtime.device is cuda but torch sees no GPU")
    settings = levers.run_values(training)
    fused_loss = fused_linear_loss(settings, device, spec["point"].get("zero_stage"))  # refused before any work
    # The shape before anything starts (a model that cannot be accounted for is refused here) and before
    # TrainingArguments switches on ZeRO-3, under which from_config would partition the meta-device count.
    shape = config_shape(checked_config(spec["model"]))
    if spec["point"]["deepspeed"]:
        check_optimizer_seam(settings, read_json(run_dir / "ds_config.json", what="launch writes it"))

    mark = time.perf_counter()
    if cuda:
        torch.cuda.set_device(rank.local_rank)  # before zero.Init places partitions on "the current" GPU
    training_args = training_arguments(spec, run_dir, rank)
    if spec["point"]["deepspeed"]:
        import deepspeed

        # Before the model: ZeRO-3's zero.Init needs the process group, and on CPU it must be gloo.
        deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl")
    else:
        _ = training_args.device  # accelerate sets up the process group (and the GPU) on first access
    phases["distributed_init_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    max_length = int(data["max_length"])
    cache_dir = args.cache_dir or run_dir.resolve().parents[1] / "cache"
    tokenizer, pad_token = data_module.load_tokenizer(spec["model"], data, shape.vocab_size, cache_dir, max_length,
                                                      shape.model_type)
    train_samples = int(data["samples_per_gpu"]) * rank.world_size  # weak scaling
    eval_samples = int(data["eval_samples"])
    train_records, eval_records = data_module.load_splits(data, train_samples, eval_samples)
    train_set = data_module.tokenize_records(train_records, tokenizer, max_length)
    eval_set = data_module.tokenize_records(eval_records, tokenizer, max_length)
    phases["data_prep_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    # On the GPU unless ZeRO-3 partitions the weights as they are created (zero.Init places them itself).
    init_on_gpu = cuda and spec["point"].get("zero_stage") != 3
    model = build_model(spec["model"], int(training.get("seed", 42)),
                        init_device=f"cuda:{rank.local_rank}" if init_on_gpu else None, attention=settings["attention"])
    if settings["gradient_checkpointing"]:
        model.config.use_cache = False  # a cache is for generation, and checkpointing's recompute cannot use it
    phases["model_build_s"] = time.perf_counter() - mark

    layout = StepLayout(per_device_batch=int(training["per_device_batch_size"]),
                        grad_accum=int(training["gradient_accumulation_steps"]), world_size=rank.world_size,
                        samples_per_rank=math.ceil(train_samples / rank.world_size))
    steps = StepRecord(layout=layout, warmup_steps=int(training.get("warmup_steps", 0)), max_length=max_length)
    step_callback = make_step_callback(steps, MeasureSettings.from_training(training), cuda=cuda, run_dir=run_dir)
    mark = time.perf_counter()
    trainer_class: type[Any] = Trainer
    loss_hook = None
    if fused_loss is not None:
        trainer_class, loss_hook = fused_loss_trainer_class(), FusedLinearCrossEntropyLoss(model, fused_loss)
    trainer = trainer_class(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                            processing_class=tokenizer, data_collator=default_data_collator, callbacks=[step_callback],
                            compute_loss_func=loss_hook)
    phases["trainer_init_s"] = time.perf_counter() - mark

    if spec.get(IN_PROCESS_RECORD) is not None:  # a tune point's in-process search (run/in_process.py)
        mark = time.perf_counter()
        found = search_in_process(trainer, train_set, spec, cuda)
        phases["in_process_search_s"] = time.perf_counter() - mark
        phases["total_s"] = time.perf_counter() - started
        return {"status": "ok", "weights": spec["model"]["weights"], "world_size": rank.world_size,
                "tokens_per_sample": max_length, "n_params": shape.n_params,
                "gpu_name": torch.cuda.get_device_name() if cuda else None, "phase_seconds": phases,
                "training_settings": training_settings(settings, training_args, trainer),
                "torch_build": torch_build(), IN_PROCESS_RECORD: found}

    mark = time.perf_counter()
    train_output = trainer.train()
    phases["train_s"] = time.perf_counter() - mark
    if steps.train_begin is not None:
        # DeepSpeed engine setup, including JIT compilation of its ops on first use
        phases["train_setup_s"] = steps.train_begin - mark
        if steps.first_step_end is not None:
            phases["first_step_s"] = steps.first_step_end - steps.train_begin

    global_step = int(trainer.state.global_step)
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    mark = time.perf_counter()
    if not evaluations or evaluations[-1].get("step") != global_step:
        trainer.evaluate()  # max_steps can stop mid-epoch: the final model still gets its evaluation
        evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    phases["final_eval_s"] = time.perf_counter() - mark

    if training.get("save_model"):
        mark = time.perf_counter()
        trainer.save_model(str(run_dir / "model" / "final"))
        phases["save_model_s"] = time.perf_counter() - mark

    # --- the numbers ---
    per_device = int(training["per_device_batch_size"])
    grad_accum = int(training["gradient_accumulation_steps"])
    flops_per_token = training_flops_per_token(shape, max_length)
    gpu_name = torch.cuda.get_device_name() if cuda else None
    metrics = train_output.metrics
    last_eval = evaluations[-1] if evaluations else {}
    weights = spec["model"]["weights"]
    phases["total_s"] = time.perf_counter() - started
    return {
        "status": "ok",
        "weights": weights,
        "loss_note": RANDOM_WEIGHTS_NOTE if weights == "random" else None,
        "world_size": rank.world_size,
        "train_samples": len(train_set),
        "eval_samples": len(eval_set),
        "global_batch_size": per_device * grad_accum * rank.world_size,
        "tokens_per_sample": max_length,
        "real_token_fraction": train_set.real_tokens / max(1, len(train_set) * max_length),
        "tokenizer_vocab_size": len(tokenizer),
        "model_vocab_size": shape.vocab_size,
        "model_type": shape.model_type,
        "n_params": shape.n_params,
        "largest_layer_params": shape.largest_layer_params,
        "pad_token": pad_token,
        "optimizer_steps": global_step,
        "epochs_completed": float(trainer.state.epoch or 0.0),
        "steps_per_epoch": layout.steps_per_epoch,
        "train_loss": metrics.get("train_loss"),
        "train_runtime": metrics.get("train_runtime"),
        "train_samples_per_second": metrics.get("train_samples_per_second"),
        "train_steps_per_second": metrics.get("train_steps_per_second"),
        "eval_loss": last_eval.get("eval_loss"),
        "eval_losses": [{"epoch": entry.get("epoch"), "step": entry.get("step"), "eval_loss": entry["eval_loss"]}
                        for entry in evaluations],
        "eval_runtime": last_eval.get("eval_runtime"),
        "eval_samples_per_second": last_eval.get("eval_samples_per_second"),
        "train_losses": [{"epoch": entry.get("epoch"), "step": entry.get("step"), "loss": entry["loss"]}
                         for entry in trainer.state.log_history if "loss" in entry],
        # totals over the steps after warmup_steps (no evaluation in them); medians and intervals: the report
        **steps.totals(),
        "flops_per_token": flops_per_token,
        "gpu_name": gpu_name,
        "phase_seconds": phases,
        "training_settings": training_settings(settings, training_args, trainer),
        "torch_build": torch_build(),
    }


def _finish_distributed() -> None:
    """A barrier, then tear the group down: without it ~1 in 8 two-rank gloo runs abort after training."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    die_with_parent()  # torchrun starts ranks in sessions of their own: tie them to it
    _standalone_defaults()
    rank = RankInfo(os.environ)
    run_dir: Path = args.run_dir
    spec = read_json(run_dir / "run_spec.json", what="launch writes it")
    device = spec["runtime"]["device"]
    records = run_dir / "records"
    phases: dict[str, float] = {}

    import torch  # noqa: F401  (the heavy imports, timed as their own phase)
    import transformers  # noqa: F401

    if spec["point"]["deepspeed"]:
        import deepspeed  # noqa: F401
    phases["imports_s"] = time.perf_counter() - started
    # A tune study's host-memory cap travels in the run's spec (runtime.memory_headroom_mib, plan.tune.studies).
    headroom = args.memory_headroom_mb if args.memory_headroom_mb is not None else spec["runtime"].get(
        "memory_headroom_mib")
    if headroom is not None:
        limit = limit_memory(int(headroom))
        print(f"[zerosweep] rank {rank.rank}: RLIMIT_DATA set to {limit / MIB:.0f} MiB", flush=True)

    try:
        result = _train(args, spec, rank, phases, started)
    except BaseException as error:
        outcome = exception_outcome(error) if isinstance(error, Exception) else "error"
        # How this rank ended, for the launcher: an OOM is decided from this record, never from log text.
        write_json(records / f"end_rank{rank.rank}.json",
                   {**rank.record(), "outcome": outcome, "error_type": type(error).__name__,
                    "error": str(error)[:2000], "phase_seconds": phases})
        if outcome in OOM_OUTCOMES:
            traceback.print_exc()
            print(f"[zerosweep] rank {rank.rank}: out of memory ({outcome}): {error}", file=sys.stderr, flush=True)
            write_json(run_dir / "monitor" / f"torch_memory_rank{rank.rank}.json", memory_record(rank, device))
            # No barrier and no interpreter teardown: the other ranks may be stuck in a collective, and
            # communicator destructors can hang after an OOM; torchrun stops the rest.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        raise
    write_json(run_dir / "monitor" / f"torch_memory_rank{rank.rank}.json", memory_record(rank, device))
    write_json(records / f"end_rank{rank.rank}.json", {**rank.record(), "outcome": "ok", "phase_seconds": phases})
    if rank.rank == 0:
        write_json(records / "train_rank0.json", {**result, "rank_info": rank.record()})
    _finish_distributed()
    return 0
