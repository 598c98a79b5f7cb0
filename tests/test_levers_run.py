"""The run side of the speed levers (issue 22): the Trainer's arguments per lever, the optimizer seam with the
DeepSpeed config, the fused linear cross-entropy wiring (with a pure-torch stand-in for liger's kernel), the
fused loss's refusals, and real CPU runs: compiled ZeRO-1 with bf16, checkpointing and torch's fused AdamW."""

from __future__ import annotations

import csv
import importlib.util
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_training_run
from test_training_run import check_ok_run, launch, launcher_env, make_spec, read
from zerosweep.jsonio import write_json
from zerosweep.plan import levers
from zerosweep.plan.dsconfig import render
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.run.fused_loss import (
    HIDDEN_STATES_ONLY,
    IGNORE_INDEX,
    FusedLinearCrossEntropyLoss,
    fused_linear_loss,
    fused_loss_trainer_class,
    reference_linear_cross_entropy,
    shifted_targets,
)
from zerosweep.run.train import check_optimizer_seam, lever_arguments

ZERO1 = MatrixPoint(True, 1, "none", False, 1, 1)
FLCE = "fused_linear_cross_entropy"
# the real runs' fixtures: one results tree and one JIT-op cache for the session
results_dir = test_training_run.results_dir
torch_extensions_dir = test_training_run.torch_extensions_dir


@pytest.fixture
def dynamo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """TrainingArguments(torch_compile=True) exports ACCELERATE_DYNAMO_*: undo it, or later launches compile."""
    for name in ("ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_DYNAMO_MODE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _arguments(training: dict[str, Any], tmp_path: Path) -> Any:
    """TrainingArguments with the levers' arguments (the run's own need torchrun's process group)."""
    from transformers import TrainingArguments

    mode = training.get("compile_mode", "default")
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                             **lever_arguments(levers.run_values(training), mode, TrainingArguments))


# --- the Trainer's arguments --------------------------------------------------------------------------


def test_unset_levers_keep_todays_arguments(tmp_path: Path, dynamo_env: None) -> None:
    from transformers import TrainingArguments

    args = _arguments({}, tmp_path)
    assert (args.torch_compile, args.torch_compile_mode, args.gradient_checkpointing) == (False, None, False)
    assert args.optim == TrainingArguments(output_dir=str(tmp_path)).optim  # the Trainer's default
    assert args.use_cache is False


def test_compile_passes_its_mode_only_when_compiling(tmp_path: Path, dynamo_env: None) -> None:
    args = _arguments({"compile": True, "compile_mode": "max-autotune"}, tmp_path)
    assert (args.torch_compile, args.torch_compile_mode, args.torch_compile_backend) == (True, "max-autotune",
                                                                                         "inductor")
    # a mode given alone would switch compiling on in TrainingArguments
    args = _arguments({"compile": False, "compile_mode": "max-autotune"}, tmp_path)
    assert (args.torch_compile, args.torch_compile_mode) == (False, None)


def test_torch_fused_optimizer_and_checkpointing(tmp_path: Path) -> None:
    args = _arguments({"optimizer": "torch_fused", "gradient_checkpointing": True}, tmp_path)
    assert args.optim == "adamw_torch_fused" and args.gradient_checkpointing is True


def test_the_optimizer_lever_and_the_deepspeed_config_must_agree() -> None:
    torch_fused = {"optimizer": "torch_fused"}
    check_optimizer_seam(torch_fused, render(ZERO1, training=torch_fused))  # what launch writes agrees
    check_optimizer_seam({"optimizer": "deepspeed"}, render(ZERO1, training={}))
    with pytest.raises(ValueError, match="training.optimizer torch_fused but ds_config.json has an optimizer"):
        check_optimizer_seam(torch_fused, render(ZERO1, training={}))
    with pytest.raises(ValueError, match="training.optimizer deepspeed but ds_config.json lacks an optimizer"):
        check_optimizer_seam({"optimizer": "deepspeed"}, render(ZERO1, training=torch_fused))


# --- the fused loss's wiring, with a pure-torch kernel ---------------------------------------------------


def _tiny_bloom() -> Any:
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    return BloomForCausalLM(BloomConfig(vocab_size=97, hidden_size=32, n_layer=2, n_head=4)).float()


def _batch() -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 97, (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # padding, ignored in the labels as data.tokenize_records does
    attention_mask[2, 5:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_targets_are_the_next_tokens_and_the_last_position_is_ignored() -> None:
    import torch

    labels = torch.tensor([[5, 6, 7, IGNORE_INDEX]])
    assert shifted_targets(labels).tolist() == [[6, 7, IGNORE_INDEX, IGNORE_INDEX]]


@pytest.mark.parametrize("num_items", [None, 23])
def test_fused_loss_equals_the_models_own_loss_and_gradients(num_items: int | None) -> None:
    import torch

    model = _tiny_bloom()
    batch = _batch()
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    extra = {} if num_items is None else {"num_items_in_batch": num_items}
    expected = model(**batch, **extra).loss
    expected.backward()
    expected_grad = model.get_output_embeddings().weight.grad.clone()
    model.zero_grad()

    outputs = model(**inputs, **HIDDEN_STATES_ONLY)
    assert outputs.logits.shape == (3, 1, 97)  # the full logits are never built
    loss = FusedLinearCrossEntropyLoss(model, reference_linear_cross_entropy)(outputs, batch["labels"], num_items)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(model.get_output_embeddings().weight.grad, expected_grad)


def test_fused_loss_trainer_asks_for_hidden_states_only(tmp_path: Path) -> None:
    import torch
    from transformers import Trainer, TrainingArguments

    model = _tiny_bloom()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    seen: list[int] = []

    def counting_kernel(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(hidden.shape[0])
        return reference_linear_cross_entropy(weight, hidden, targets)

    fused = fused_loss_trainer_class()(model=model, args=args,
                                       compute_loss_func=FusedLinearCrossEntropyLoss(model, counting_kernel))
    loss, outputs = fused.compute_loss(model, _batch(), return_outputs=True, num_items_in_batch=23)
    assert seen == [3 * 12] and outputs.logits.shape[1] == 1
    plain = Trainer(model=model, args=args).compute_loss(model, _batch(), num_items_in_batch=23)
    torch.testing.assert_close(loss, plain)


def test_fused_loss_is_refused_where_it_cannot_run() -> None:
    with pytest.raises(ValueError, match=f"training.loss {FLCE} runs only on a GPU .*runtime.device is cpu"):
        fused_linear_loss({"loss": FLCE}, "cpu", 1)
    with pytest.raises(ValueError, match="ZeRO-3 partitions it"):
        fused_linear_loss({"loss": FLCE}, "cuda", 3)
    assert fused_linear_loss({"loss": "model"}, "cpu", 3) is None


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="liger-kernel is installed")
def test_missing_liger_kernel_is_named() -> None:
    with pytest.raises(ImportError, match=f"training.loss {FLCE} needs liger-kernel"):
        fused_linear_loss({"loss": FLCE}, "cuda", 1)


# --- real runs -------------------------------------------------------------------------------------------


def _steps(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "steps.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_compiled_zero1_with_every_cpu_lever(results_dir: Path, torch_extensions_dir: Path) -> None:
    training = {"compile": True, "precision": "bf16", "gradient_checkpointing": True, "optimizer": "torch_fused",
                "max_steps": 5}
    point = MatrixPoint(True, 1, "none", False, 1, 1,
                        levers=(("compile", True), ("gradient_checkpointing", True), ("optimizer", "torch_fused")))
    spec = make_spec(point, torch_extensions_dir, {"training": training, "data": {"samples_per_gpu": 20}})
    result, run_dir = launch(spec, results_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = read(run_dir / "metrics.json")
    assert metrics["status"] == "ok" and metrics["optimizer_steps"] == 5, metrics["error"]
    assert "optimizer" not in read(run_dir / "ds_config.json")
    applied = metrics["training_settings"]
    assert applied == {"compile": True, "compile_mode": "default", "precision": "bf16", "optimizer": "torch_fused",
                       "optimizer_stepped": {"class": "torch.optim.adamw.AdamW", "fused": True},
                       "gradient_checkpointing": True, "loss": "model", "attention": "eager"}
    rows = _steps(run_dir)
    assert float(rows[0]["seconds"]) == pytest.approx(metrics["first_step_seconds"])
    # the compile lands in step 1
    assert metrics["first_step_seconds"] > 3 * statistics.median(float(row["seconds"]) for row in rows[1:])


@pytest.mark.slow
def test_deepspeed_optimizer_run_records_what_stepped(results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(ZERO1, torch_extensions_dir, {"training": {"precision": "fp32"}})
    spec["run_id"] = "z1-offnone-nopin-g1n1-fp32"
    metrics = check_ok_run(*launch(spec, results_dir), spec)
    applied = metrics["training_settings"]
    assert (applied["compile"], applied["precision"], applied["optimizer"]) == (False, "fp32", "deepspeed")
    assert applied["optimizer_stepped"]["class"].startswith("deepspeed.")  # the template's optimizer, not torch's
    assert metrics["first_step_seconds"] > 0


def test_launch_refuses_the_fused_loss_on_cpu(results_dir: Path, torch_extensions_dir: Path) -> None:
    point = MatrixPoint(True, 1, "none", False, 1, 1, levers=(("loss", FLCE),))
    spec = make_spec(point, torch_extensions_dir, {"training": {"loss": FLCE}})
    result, run_dir = launch(spec, results_dir)
    assert result.returncode == 1
    status = read(run_dir / "status.json")
    assert status["status"] == "failed"
    assert f"training.loss: {FLCE} needs runtime.device 'cuda'" in status["error"], status["error"]  # plan.checks


@pytest.mark.slow
def test_a_rank_refuses_the_fused_loss_on_cpu(tmp_path: Path, torch_extensions_dir: Path) -> None:
    """The rank's own guard, for a spec that reached it without launch's check (a hand-run `zerosweep train`)."""
    spec = make_spec(ZERO1, torch_extensions_dir, {"training": {"loss": FLCE}})
    write_json(tmp_path / "run_spec.json", spec)
    write_json(tmp_path / "ds_config.json", render(ZERO1, training=spec["training"]))
    result = subprocess.run([sys.executable, "-m", "zerosweep", "train", "--run-dir", str(tmp_path)], check=False,
                            env=launcher_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    end = read(tmp_path / "records" / "end_rank0.json")
    assert (end["outcome"], end["error_type"]) == ("error", "ValueError")
    assert end["error"] == (f"training.loss {FLCE} runs only on a GPU (liger-kernel's Triton kernels); "
                            "runtime.device is cpu")
    assert "model_build_s" not in end["phase_seconds"]  # refused before any work
