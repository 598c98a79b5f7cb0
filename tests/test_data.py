"""The synthetic SQuAD set, SQuAD files, the offline tokenizer and the tokenised causal-LM examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zerosweep.run.data import (
    LOCAL_TOKENIZER_MAX_VOCAB,
    SPECIAL_TOKENS,
    build_local_tokenizer,
    format_example,
    load_splits,
    load_squad_file,
    local_tokenizer_key,
    synthetic_squad,
    tokenize_records,
)

SYNTHETIC = {"source": "synthetic", "seed": 0}


def test_every_answer_is_in_its_context_at_answer_start() -> None:
    for split in ("train", "validation"):
        for record in synthetic_squad(seed=3, split=split, count=600):
            answer, start = record["answers"]["text"][0], record["answers"]["answer_start"][0]
            assert answer and record["context"][start:start + len(answer)] == answer, record
            assert record["question"].endswith("?")
            assert set(record) == {"id", "title", "context", "question", "answers"}


def test_synthetic_set_is_deterministic_and_prefix_stable() -> None:
    assert synthetic_squad(7, "train", 50) == synthetic_squad(7, "train", 50)
    # weak scaling asks for more records on more GPUs: the first ones stay the same
    assert synthetic_squad(7, "train", 200)[:50] == synthetic_squad(7, "train", 50)
    assert synthetic_squad(8, "train", 50) != synthetic_squad(7, "train", 50)
    train_contexts = {record["context"] for record in synthetic_squad(7, "train", 200)}
    validation_contexts = {record["context"] for record in synthetic_squad(7, "validation", 50)}
    assert not train_contexts & validation_contexts
    ids = [record["id"] for record in synthetic_squad(7, "train", 200)]
    assert len(set(ids)) == len(ids)


def test_example_text_is_the_workshops_format() -> None:
    record = {"question": "Who?", "context": "Ada built it.", "answers": {"text": ["Ada"], "answer_start": [0]}}
    assert format_example(record) == "Question: Who? Context: Ada built it. Answer: Ada"
    unanswered = {**record, "answers": {"text": [], "answer_start": []}}
    assert format_example(unanswered).endswith("Answer: No Answer")


def test_squad_files_in_nested_flat_and_jsonl_layouts(tmp_path: Path) -> None:
    records = synthetic_squad(0, "train", 6)
    nested = {"data": [{"title": r["title"], "paragraphs": [{"context": r["context"], "qas": [
        {"id": r["id"], "question": r["question"],
         "answers": [{"text": r["answers"]["text"][0], "answer_start": r["answers"]["answer_start"][0]}]}]}]}
        for r in records]}
    (tmp_path / "nested.json").write_text(json.dumps(nested))
    (tmp_path / "flat.json").write_text(json.dumps(records))
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    for name in ("nested.json", "flat.json", "lines.jsonl"):
        assert load_squad_file(tmp_path / name) == records, name

    train, evaluation = load_splits({"source": "file", "path": str(tmp_path / "flat.json")}, 4, 2)
    assert train == records[:4] and evaluation == records[4:]
    with pytest.raises(ValueError, match="needs 5 train"):
        load_splits({"source": "file", "path": str(tmp_path / "flat.json")}, 5, 2)


def test_load_splits_sizes_the_synthetic_set() -> None:
    train, evaluation = load_splits({"source": "synthetic", "seed": 1}, 12, 5)
    assert len(train) == 12 and len(evaluation) == 5


def test_local_tokenizer_is_built_offline_and_cached(tmp_path: Path) -> None:
    tokenizer = build_local_tokenizer(SYNTHETIC, model_vocab_size=4096, cache_dir=tmp_path, max_length=64)
    assert len(tokenizer) <= 4096
    # BLOOM's ids for its special tokens, so the shipped architectures' bos/eos/pad ids hold
    assert [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        0, 1, 2, 3)
    text = format_example(synthetic_squad(0, "validation", 1)[0])
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: lossless

    cached = tmp_path / "tokenizers" / local_tokenizer_key(SYNTHETIC, 4096) / "tokenizer.json"
    stamp = cached.stat().st_mtime_ns
    again = build_local_tokenizer(SYNTHETIC, model_vocab_size=4096, cache_dir=tmp_path, max_length=64)
    assert cached.stat().st_mtime_ns == stamp and again.get_vocab() == tokenizer.get_vocab()
    # the 560m model's huge vocabulary still gets a small tokenizer: its own embedding stays 250880 rows
    assert local_tokenizer_key(SYNTHETIC, min(LOCAL_TOKENIZER_MAX_VOCAB, 250880)) != local_tokenizer_key(
        SYNTHETIC, 4096)


def test_tokenised_examples_are_padded_and_mask_padding_in_labels(tmp_path: Path) -> None:
    tokenizer = build_local_tokenizer(SYNTHETIC, model_vocab_size=4096, cache_dir=tmp_path, max_length=48)
    records = synthetic_squad(0, "train", 10)
    split = tokenize_records(records, tokenizer, max_length=48)
    assert len(split) == 10 and split.input_ids.shape == (10, 48)
    padded = split.attention_mask == 0
    assert padded.any(), "some examples should be shorter than 48 tokens"
    assert (split.labels[padded] == -100).all()
    assert (split.labels[~padded] == split.input_ids[~padded]).all()
    assert (split.input_ids[padded] == tokenizer.pad_token_id).all()
    item = split[0]
    assert set(item) == {"input_ids", "attention_mask", "labels"}
