"""Causal LMs beyond BLOOM (issue 24): tiny Llama, Qwen2 and GPT-2 shapes end to end on CPU through Snakemake,
random-init from the shipped configs and again as save_pretrained directories with their tokenizers (weights:
pretrained, tokenizer: hub), with the attention lever; and the models refused before anything starts."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import test_training_run
from conftest import run_snakemake, shipped_config
from zerosweep.plan.checks import check_config
from zerosweep.plan.matrix import ConfigError, deep_merge
from zerosweep.plan.models import (
    ModelError,
    architecture_config,
    attention_refusal,
    checked_config,
    model_label,
    model_shape,
    shipped_architectures,
)
from zerosweep.run.data import build_local_tokenizer, choose_pad_token, load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import make_workdir

torch_extensions_dir = test_training_run.torch_extensions_dir  # one JIT-op cache for the session

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
SAVED_VOCAB = 1024  # the saved tokenizer's size, not the local one's 4096: the records show which was loaded
# family -> (shipped tiny architecture, whether its tokenizer has a pad token: Llama 3 and GPT-2 ship none)
FAMILIES = {"llama": ("llama-tiny", False), "qwen2": ("qwen2-tiny", True), "gpt2": ("gpt2-tiny", False)}


def built_params(architecture: str) -> int:
    """Parameters of the model itself, built on the CPU (shared weights once)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(architecture_config(architecture))
    return sum(parameter.numel() for parameter in model.parameters())


def save_pretrained(architecture: str, has_pad: bool, target: Path, cache: Path) -> None:
    """A family's tiny model and a tokenizer, written by save_pretrained (what a user downloads or fine-tunes)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(architecture_config(architecture)).save_pretrained(target)
    tokenizer = build_local_tokenizer({"source": "synthetic", "seed": 7}, SAVED_VOCAB, cache, max_length=64)
    if not has_pad:
        tokenizer.pad_token = None
    tokenizer.save_pretrained(target)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def metrics_of(workdir: Any, run: str) -> dict[str, Any]:
    metrics: dict[str, Any] = json.loads((workdir.run_dir(run) / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["status"] == "ok", (run, metrics.get("error"))
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_random_init_and_saved_through_snakemake(family: str, tmp_path: Path,
                                                        torch_extensions_dir: Path) -> None:
    architecture, has_pad = FAMILIES[family]
    params = built_params(architecture)
    # random init from the shipped shape, eager and SDPA attention as a study axis; Llama (grouped-query attention)
    # also under ZeRO-3, whose ranks hold only their partition of the weights the count must not depend on
    studies = {"attention": {"title": "Attention", "table": "comparison", "deepspeed": False,
                             "attention": ["eager", "sdpa"]}}
    if family == "llama":
        studies["zero3"] = {"title": "ZeRO-3", "table": "comparison", "zero_stage": [3]}
    random = make_workdir(tmp_path / "random", studies, torch_extensions_dir, overrides={
        "model": {"architecture": architecture}, "slurm": {"cpus_per_gpu": 1}})
    result = run_snakemake(*(f"results/tables/{study}.csv" for study in studies), "--cores", "2", "--configfile",
                           str(random.overlay_file), cwd=random.path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    eager_run, sdpa_run = random.study_runs("attention")
    assert (eager_run, sdpa_run) == ("base-g1n1", "base-g1n1-sdpa")  # eager is the default: no token
    for run, attention in ((eager_run, "eager"), (sdpa_run, "sdpa")):
        metrics = metrics_of(random, run)
        assert (metrics["model_type"], metrics["n_params"]) == (family, params)
        assert metrics["training_settings"]["attention"] == attention  # what the model ran, read back from it
        assert metrics["pad_token"]["rule"] == "the local tokenizer's own"
        assert metrics["flops_per_token"] > 6 * params * 0.9
    if family == "llama":
        (zero3_run,) = random.study_runs("zero3")
        zero3 = metrics_of(random, zero3_run)
        assert (zero3["zero_stage"], zero3["n_params"]) == (3, params)
        assert zero3["largest_layer_params"] == model_shape({"weights": "random", "architecture": architecture}
                                                            ).largest_layer_params == 4096 * 64  # tied embedding
    table = rows(random.results / "tables" / "attention.csv")
    assert [(row["run_id"], row["attention"], row["status"]) for row in table] == [
        (eager_run, "eager", "ok"), (sdpa_run, "sdpa", "ok")]
    assert {row["model"] for row in table} == {f"{architecture} (random init)"}  # the table names the model
    assert f"model: {architecture} (random init)." in (random.results / "tables" / "attention.md").read_text()

    # the same shape saved with its own tokenizer, loaded through from_pretrained
    model_dir = tmp_path / f"{family}-saved"
    save_pretrained(architecture, has_pad, model_dir, tmp_path / "tokenizer_cache")
    saved = make_workdir(tmp_path / "saved", {"baseline": {"title": "Baseline", "table": "baseline",
                                                           "deepspeed": False}},
                         torch_extensions_dir, overrides={
        "model": {"name": str(model_dir), "weights": "pretrained", "tokenizer": "hub"},
        "training": {"attention": "sdpa"}, "slurm": {"cpus_per_gpu": 1}})
    result = run_snakemake("results/tables/baseline.csv", "--cores", "2", "--configfile", str(saved.overlay_file),
                           cwd=saved.path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = saved.study_runs("baseline")
    metrics = metrics_of(saved, run)
    assert (metrics["model_type"], metrics["n_params"], metrics["weights"]) == (family, params, "pretrained")
    assert metrics["tokenizer_vocab_size"] == SAVED_VOCAB  # the saved tokenizer, not a local one
    assert metrics["training_settings"]["attention"] == "sdpa"
    # the pad token as the family expects: its own where it has one, else eos; recorded either way
    assert metrics["pad_token"] == ({"token": "<pad>", "id": 3, "rule": "the tokenizer's own"} if has_pad else
                                    {"token": "</s>", "id": 2, "rule": "eos (the tokenizer has no pad token)"})
    assert not list((saved.results / "cache").glob("tokenizers/*/tokenizer.json"))  # no local tokenizer built
    assert rows(saved.results / "tables" / "baseline.csv")[0]["model"] == str(model_dir)  # by the checkpoint's name


@pytest.mark.parametrize("architecture", shipped_architectures())
def test_every_shipped_shape_passes_the_checks_the_plan_skips_for_it(architecture: str) -> None:
    """plan.checks skips transformers for a shipped shape with eager attention: each must pass them."""
    config = checked_config({"weights": "random", "architecture": architecture})
    assert attention_refusal(config, "eager") is None and model_shape(
        {"weights": "random", "architecture": architecture}).n_params > 0


def test_the_model_label_names_the_checkpoint_or_the_random_init_shape(tmp_path: Path) -> None:
    assert model_label({"weights": "random", "architecture": "qwen2-0.5b", "name": "bigscience/bloom-560m"}) == \
        "qwen2-0.5b (random init)"  # not model.name, which a random-init run never loads
    path = write_config(tmp_path / "my-llama.json", model_type="llama")
    assert model_label({"weights": "random", "architecture": str(path)}) == "my-llama (random init)"
    assert model_label({"weights": "pretrained", "name": "Qwen/Qwen2-0.5B", "architecture": "bloom-560m"}) == \
        "Qwen/Qwen2-0.5B"


# --- refused before anything starts ---------------------------------------------------------------------


def write_config(path: Path, **fields: Any) -> Path:
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


def checked(model: dict[str, Any], **training: Any) -> None:
    """plan.checks on the shipped config with this model (and training settings)."""
    config = deep_merge(shipped_config(), {"model": model, "training": training})
    check_config(config, SCHEMA)


def test_an_architecture_can_be_a_config_json_path(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.json", model_type="llama", vocab_size=512, hidden_size=32,
                        intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1)
    model = {"weights": "random", "architecture": str(path)}
    checked(model, attention="sdpa")
    shape = model_shape(model)
    assert (shape.model_type, shape.n_layers, shape.n_kv_heads, shape.tied_head) == ("llama", 3, 1, False)


def test_a_config_json_under_home_is_each_runs_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    torch_extensions_dir: Path) -> None:
    """`~/...` is expanded where the runs read it and where Snakemake watches it (an edit retrains)."""
    home = tmp_path / "home"
    home.mkdir()
    path = write_config(home / "my-llama.json", model_type="llama", vocab_size=512, hidden_size=32,
                        intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1)
    monkeypatch.setenv("HOME", str(home))
    work = make_workdir(tmp_path / "work", {"baseline": {"title": "Baseline", "table": "baseline",
                                                         "deepspeed": False}},
                        torch_extensions_dir, overrides={"model": {"architecture": "~/my-llama.json"}})
    result = run_snakemake("results/tables/baseline.csv", "-n", "--configfile", str(work.overlay_file),
                           cwd=work.path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert str(path) in result.stdout


@pytest.mark.parametrize(("fields", "reason"), [
    ({"model_type": "mixtral", "num_local_experts": 8, "hidden_size": 32, "intermediate_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
     "a mixture-of-experts model (num_local_experts 8)"),
    ({"model_type": "qwen2_moe", "num_experts": 4, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 4}, "a mixture-of-experts model (num_experts 4)"),
    ({"model_type": "t5"}, "model_type 't5' is not a causal LM that AutoModelForCausalLM builds"),
    ({"model_type": "no-such-family"}, "model_type 'no-such-family' is not one transformers knows"),
    ({"vocab_size": 100}, "has no model_type"),
])
def test_models_that_cannot_be_accounted_for_are_refused_naming_the_key(
        tmp_path: Path, fields: dict[str, Any], reason: str) -> None:
    path = write_config(tmp_path / "config.json", **fields)
    with pytest.raises(ConfigError, match=r"^model\.architecture: .*" + _escaped(reason)):
        checked({"weights": "random", "architecture": str(path)})


def test_a_saved_mixture_of_experts_is_refused_by_model_name(tmp_path: Path) -> None:
    write_config(tmp_path / "config.json", model_type="mixtral", num_local_experts=4)
    model = {"name": str(tmp_path), "weights": "pretrained", "tokenizer": "hub", "architecture": "bloom-tiny"}
    with pytest.raises(ConfigError, match=r"^model\.name: a mixture-of-experts model \(num_local_experts 4\)"):
        checked(model)
    with pytest.raises(ModelError, match=r"^model\.name: a mixture-of-experts"):  # and again by the run itself
        checked_config(model)
    write_config(tmp_path / "config.json", model_type="no-such-family")
    with pytest.raises(ConfigError, match=r"^model\.name '.*': .*no-such-family"):
        checked(model)


def test_flash_attention_without_flash_attn_is_refused_with_the_reason() -> None:
    pytest.importorskip("transformers")
    if _installed("flash_attn"):
        pytest.skip("flash_attn is installed here")
    with pytest.raises(ConfigError, match=r"^training\.attention: flash_attention_2 is not available for "
                                          r"model\.architecture \(llama\): .*FlashAttention2"):
        checked({"weights": "random", "architecture": "llama-tiny"}, attention="flash_attention_2")


@pytest.mark.parametrize(("family", "has_pad", "rule"), [
    ("llama", False, "eos (the tokenizer has no pad token)"),
    ("qwen2", True, "the tokenizer's own"),
    ("bloom", True, "eos (bloom pads with eos)"),  # the workshop padded BLOOM with eos
])
def test_the_pad_token_follows_the_family(tmp_path: Path, family: str, has_pad: bool, rule: str) -> None:
    tokenizer = build_local_tokenizer({"source": "synthetic", "seed": 7}, 512, tmp_path, max_length=64)
    if not has_pad:
        tokenizer.pad_token = None
    assert choose_pad_token(tokenizer, family) == rule
    assert tokenizer.pad_token == ("<pad>" if rule == "the tokenizer's own" else "</s>")


def test_a_saved_tokenizer_larger_than_the_embedding_is_refused(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    local = build_local_tokenizer({"source": "synthetic", "seed": 7}, SAVED_VOCAB, tmp_path, max_length=64)
    local.save_pretrained(saved)
    model = {"name": str(saved), "tokenizer": "hub", "weights": "pretrained"}
    tokenizer, pad = load_tokenizer(model, {}, SAVED_VOCAB, tmp_path, 64, "llama")
    assert len(tokenizer) == SAVED_VOCAB and pad == {"token": "<pad>", "id": 3, "rule": "the tokenizer's own"}
    with pytest.raises(ValueError, match=f"its tokenizer has {SAVED_VOCAB} tokens, the model's embedding only 512"):
        load_tokenizer(model, {}, 512, tmp_path, 64, "llama")


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
