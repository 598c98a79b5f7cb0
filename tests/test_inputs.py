"""Every input path, offline, end to end on CPU: `model.weights: pretrained` and `model.tokenizer: hub` from local
directories written by save_pretrained, `data.source: file` in SQuAD v1.1's nested layout, and `data.source: squad`
through datasets.load_dataset reading a local copy of SQuAD (the Hub's file layout) with the Hub switched off."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_snakemake
from zerosweep.plan.models import architecture_config, config_shape, model_shape, pretrained_source
from zerosweep.run.data import build_local_tokenizer, load_splits, synthetic_squad

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import make_workdir

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The saved model differs from the shipped bloom-tiny (3 layers, not 2) and its tokenizer from the local one
# (1024 tokens, not the model's 4096): the records show which were loaded.
SAVED_LAYERS = 3
SAVED_VOCAB = 1024
SAMPLES, EVAL = 8, 4


def squad_v11(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Flat SQuAD records in the official v1.1 layout: data > paragraphs > qas."""
    return {"version": "1.1", "data": [
        {"title": record["title"], "paragraphs": [{"context": record["context"], "qas": [{
            "id": record["id"], "question": record["question"],
            "answers": [{"text": text, "answer_start": start} for text, start in
                        zip(record["answers"]["text"], record["answers"]["answer_start"])]}]}]}
        for record in records]}


def write_squad_copy(root: Path, train: int, validation: int, seed: int = 1) -> Path:
    """A local copy of SQuAD as the Hub stores it (plain_text/<split>-00000-of-00001.parquet)."""
    from datasets import Dataset

    (root / "plain_text").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("validation", validation)):
        Dataset.from_list(synthetic_squad(seed, split, count)).to_parquet(
            str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return root


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The Hub switched off for this process and what it starts (run_snakemake passes os.environ on)."""
    env = {**OFFLINE, "HF_HOME": str(tmp_path / "hf_home")}  # an empty cache: nothing from earlier downloads
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_squad_source_reads_a_local_copy_through_load_dataset(tmp_path: Path, hf_offline: dict[str, str]) -> None:
    copy = write_squad_copy(tmp_path / "squad", train=20, validation=6)
    train, evaluation = load_splits({"source": "squad", "path": str(copy)}, SAMPLES, EVAL)
    assert train == synthetic_squad(1, "train", SAMPLES) and evaluation == synthetic_squad(1, "validation", EVAL)
    with pytest.raises(ValueError, match="data.path '/no/such/squad': no such directory"):
        load_splits({"source": "squad", "path": "/no/such/squad"}, SAMPLES, EVAL)
    with pytest.raises(ValueError, match="20 training records, the run needs 41"):
        load_splits({"source": "squad", "path": str(copy)}, 41, EVAL)


def test_a_missing_local_model_directory_is_named(tmp_path: Path) -> None:
    assert pretrained_source("bigscience/bloom-560m") == "bigscience/bloom-560m"  # a Hub id is left alone
    with pytest.raises(ValueError, match="model.name '/no/such/model': no such directory"):
        pretrained_source("/no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json in it"):
        pretrained_source(str(tmp_path / "empty"))


def saved_config() -> object:
    """The shipped bloom-tiny with SAVED_LAYERS layers."""
    config = architecture_config("bloom-tiny")
    config.n_layer = SAVED_LAYERS
    return config


def _save_pretrained(target: Path, cache: Path) -> None:
    """A tiny BLOOM and a tokenizer, written by save_pretrained (what a user downloads or fine-tunes)."""
    import torch
    from transformers import BloomForCausalLM

    torch.manual_seed(0)
    BloomForCausalLM(saved_config()).save_pretrained(target)
    tokenizer = build_local_tokenizer({"source": "synthetic", "seed": 7}, SAVED_VOCAB, cache, max_length=64)
    tokenizer.save_pretrained(target)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_pretrained_model_hub_tokenizer_squad_file_and_local_squad_through_snakemake(
        tmp_path: Path, hf_offline: dict[str, str]) -> None:
    model_dir = tmp_path / "bloom-saved"
    _save_pretrained(model_dir, tmp_path / "tokenizer_cache")
    squad_file = tmp_path / "squad-v1.1.json"
    squad_file.write_text(json.dumps(squad_v11(synthetic_squad(2, "train", SAMPLES + EVAL))), encoding="utf-8")
    squad_copy = write_squad_copy(tmp_path / "squad", train=SAMPLES, validation=EVAL)
    studies = {
        "inputs_file": {"title": "SQuAD v1.1 file", "table": "baseline", "deepspeed": False,
                        "data": {"source": "file", "path": str(squad_file)}},
        "inputs_squad": {"title": "SQuAD through load_dataset", "table": "baseline", "deepspeed": False,
                         "data": {"source": "squad", "path": str(squad_copy)}},
    }
    workdir = make_workdir(tmp_path / "wd", studies, tmp_path / "torch_extensions", overrides={
        "model": {"name": str(model_dir), "weights": "pretrained", "tokenizer": "hub"},
        "slurm": {"cpus_per_gpu": 1}})
    runs = {study: workdir.study_runs(study)[0] for study in studies}
    targets = [f"results/tables/{study}.csv" for study in studies]
    result = run_snakemake(*targets, "--cores", "2", "--configfile", str(workdir.overlay_file), cwd=workdir.path,
                           timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    saved = config_shape(saved_config()).n_params
    shipped = model_shape({"weights": "random", "architecture": "bloom-tiny"}).n_params
    assert saved != shipped
    for study, run in runs.items():
        metrics = json.loads((workdir.run_dir(run) / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["status"] == "ok" and metrics["weights"] == "pretrained", (study, metrics.get("error"))
        assert metrics["loss_note"] is None  # real weights: the loss means something
        assert metrics["n_params"] == saved, study  # the saved 3-layer model, not the shipped architecture
        assert metrics["tokenizer_vocab_size"] == SAVED_VOCAB, study  # the saved tokenizer, not a local one
        assert (metrics["train_samples"], metrics["eval_samples"]) == (SAMPLES, EVAL), study
        assert metrics["optimizer_steps"] > 0 and metrics["eval_loss"] is not None, study
        assert [(row["run_id"], row["status"]) for row in _rows(workdir.results / "tables" / f"{study}.csv")] == [
            (run, "ok")]
    # no local tokenizer was built: the hub path took the saved one
    assert not list((workdir.results / "cache").glob("tokenizers/*/tokenizer.json"))
