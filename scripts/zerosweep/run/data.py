"""Training data: SQuAD-format records (Hub, file or generated), the tokenizer, and the tokenised splits.

Every source yields SQuAD records (id, title, context, question, answers{text, answer_start}). Each record
becomes one causal-LM example `Question: {q} Context: {c} Answer: {a}`, padded to max_length; the labels
are the input ids with padding set to -100, which is what DataCollatorForLanguageModeling(mlm=False) gave
the workshop (it padded with eos and masked the pad id).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SquadRecord = dict[str, Any]
Splits = tuple[list[SquadRecord], list[SquadRecord]]  # (train, eval)

# The local tokenizer is trained on this many training records, independent of the run's size, so that
# every run of a workflow shares one cached tokenizer.
TOKENIZER_CORPUS_RECORDS = 2000
LOCAL_TOKENIZER_MAX_VOCAB = 8192
SQUAD_HUB_NAME = "squad"  # what the workshop loaded
LOCAL_TOKENIZER_VERSION = 1  # bump when the recipe changes: it is part of the cache key
# Same ids as BLOOM's own tokenizer, so the shipped architectures' bos/eos/pad ids hold.
SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<pad>")

# --- synthetic SQuAD ------------------------------------------------------------------------------

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei")
_CODAS = ("", "", "n", "r", "l", "s", "th", "nd", "rk", "m")
_TOWN_SUFFIXES = ("holm", "ford", "mere", "stead", "wick", "burg", "dale", "haven")
_COLORS = ("red", "grey", "white", "black", "green", "amber", "blue", "ochre")
_GOODS = ("copper wire", "blue glass", "wool blankets", "smoked fish", "clay pipes", "river salt",
          "pear cider", "oak barrels", "paper lanterns", "iron nails")
_SEASONS = ("spring", "summer", "autumn", "winter")
_FIELDS = ("optics", "metallurgy", "botany", "acoustics", "cartography", "hydraulics", "astronomy")
_DEVICES = ("a tide clock", "a folding telescope", "a water pump", "a seed drill", "a signal lamp",
            "a weaving frame", "a pressure gauge", "a sun compass")
_CARGO = ("tea", "spices", "timber", "marble", "cotton", "coffee", "tin")
_SHIP_KINDS = ("schooner", "brig", "steamer", "clipper", "barge")


def _name(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def _person(rng: random.Random) -> str:
    return f"{_name(rng, 2)} {_name(rng, rng.choice((2, 3)))}"


# A fact is (sentence template, question template, the slot that answers it). Slots are filled from the
# entity's values; the answer's offset is computed from the template, never searched for.
Fact = tuple[str, str, str]

_TOPICS: dict[str, tuple[Fact, ...]] = {
    "town": (
        ("{name} lies on the banks of the {river} river.", "On which river does {name} lie?", "river"),
        ("The town was founded in {year} by {founder}.", "In what year was {name} founded?", "year"),
        ("The town was founded in {year} by {founder}.", "Who founded {name}?", "founder"),
        ("Its best-known export is {goods}.", "What is the best-known export of {name}?", "goods"),
        ("About {population} people live there today.", "How many people live in {name}?", "population"),
        ("Every {season} the town holds the {festival} fair.", "Which fair does {name} hold?", "festival"),
        ("The main square is paved with {color} stone.", "What color is the stone of the main square?", "color"),
    ),
    "inventor": (
        ("{name} was born in {town} in {year}.", "Where was {name} born?", "town"),
        ("{name} was born in {town} in {year}.", "In which year was {name} born?", "year"),
        ("{name} studied {field} for {years} years.", "What did {name} study?", "field"),
        ("Later {name} built {device} for the harbor office.", "What did {name} build?", "device"),
        ("The design was improved by {assistant}, an assistant.", "Who improved the design?", "assistant"),
        ("It was first shown to the public in {month}.", "In which month was it first shown?", "month"),
    ),
    "ship": (
        ("The {name} was a {kind} launched in {year}.", "What kind of ship was the {name}?", "kind"),
        ("The {name} was a {kind} launched in {year}.", "When was the {name} launched?", "year"),
        ("She was commanded by captain {captain}.", "Who commanded the {name}?", "captain"),
        ("She carried {cargo} between {town} and {port}.", "What did the {name} carry?", "cargo"),
        ("She carried {cargo} between {town} and {port}.", "Which port did the {name} sail to from {town}?",
         "port"),
        ("Her crew numbered {crew} sailors.", "How many sailors were in the crew of the {name}?", "crew"),
    ),
}

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def _topic_values(topic: str, rng: random.Random) -> dict[str, str]:
    town = _name(rng, 2) + rng.choice(_TOWN_SUFFIXES)
    common = {"year": str(rng.randint(1600, 1950)), "town": town}
    if topic == "town":
        return {**common, "name": town, "river": _name(rng, 2), "founder": _person(rng),
                "goods": rng.choice(_GOODS), "population": f"{rng.randint(2, 90) * 1000:,}",
                "season": rng.choice(_SEASONS), "festival": _name(rng, 2), "color": rng.choice(_COLORS)}
    if topic == "inventor":
        return {**common, "name": _person(rng), "field": rng.choice(_FIELDS), "years": str(rng.randint(2, 15)),
                "device": rng.choice(_DEVICES), "assistant": _person(rng), "month": rng.choice(_MONTHS)}
    return {**common, "name": _name(rng, 2), "kind": rng.choice(_SHIP_KINDS), "captain": _person(rng),
            "cargo": rng.choice(_CARGO), "port": _name(rng, 2) + rng.choice(_TOWN_SUFFIXES),
            "crew": str(rng.randint(8, 120))}


def synthetic_record(seed: int, split: str, index: int) -> SquadRecord:
    """Record `index` of a split; seeded per record so a longer split starts with the shorter one."""
    rng = random.Random(f"zerosweep-synthetic/{seed}/{split}/{index}")
    topic = rng.choice(sorted(_TOPICS))
    values = _topic_values(topic, rng)
    facts = list(_TOPICS[topic])
    asked = rng.choice(facts)
    # Context: the asked fact plus a few others (deduplicated sentences), in a shuffled order.
    others = list(dict.fromkeys(fact[0] for fact in facts if fact[0] != asked[0]))
    chosen = [asked[0], *rng.sample(others, k=min(len(others), rng.randint(2, 4)))]
    rng.shuffle(chosen)
    context_parts: list[str] = []
    answer_start = -1
    offset = 0
    for template in chosen:
        sentence = template.format(**values)
        if template == asked[0]:
            answer_start = offset + len(template[: template.index("{" + asked[2] + "}")].format(**values))
        context_parts.append(sentence)
        offset += len(sentence) + 1  # the joining space
    context = " ".join(context_parts)
    answer = values[asked[2]]
    return {
        "id": f"syn{seed}-{split}-{index:07d}",
        "title": values["name"],
        "context": context,
        "question": asked[1].format(**values),
        "answers": {"text": [answer], "answer_start": [answer_start]},
    }


def synthetic_squad(seed: int, split: str, count: int) -> list[SquadRecord]:
    return [synthetic_record(seed, split, index) for index in range(count)]


# --- SQuAD from a file or the Hub ---------------------------------------------------------------------


def _flatten_squad(document: Mapping[str, Any]) -> list[SquadRecord]:
    """The official nested SQuAD v1.1 layout (data > paragraphs > qas) as flat records."""
    records: list[SquadRecord] = []
    for article in document["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                records.append({
                    "id": qa["id"],
                    "title": article.get("title", ""),
                    "context": paragraph["context"],
                    "question": qa["question"],
                    "answers": {
                        "text": [answer["text"] for answer in qa["answers"]],
                        "answer_start": [answer["answer_start"] for answer in qa["answers"]],
                    },
                })
    return records


def squad_location(data: Mapping[str, Any]) -> str:
    """What `load_dataset` reads for data.source squad: data.path (a local copy of the Hub's SQuAD: a directory
    with train/validation data files, e.g. a clone of huggingface.co/datasets/rajpurkar/squad) or the Hub's
    `squad` (served from the datasets cache under HF_DATASETS_OFFLINE=1)."""
    return str(data.get("path") or SQUAD_HUB_NAME)


def load_squad_splits(data: Mapping[str, Any]) -> tuple[Any, Any]:
    """SQuAD's (train, validation) splits through datasets.load_dataset, from squad_location(data)."""
    from datasets import load_dataset

    location = squad_location(data)
    if data.get("path") and not Path(location).exists():
        raise ValueError(f"data.path {location!r}: no such directory or file (a local copy of SQuAD)")
    squad = load_dataset(location)
    missing = [split for split in ("train", "validation") if split not in squad]
    if missing:
        raise ValueError(f"{location}: load_dataset found splits {sorted(squad)}, SQuAD needs train and validation "
                         f"(missing: {missing})")
    return squad["train"], squad["validation"]


def load_squad_file(path: Path) -> list[SquadRecord]:
    """SQuAD records from the official nested JSON, a JSON list of flat records, or JSON lines."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(document, dict) and "data" in document:
        return _flatten_squad(document)
    if isinstance(document, list):
        return document
    raise ValueError(f"{path}: neither SQuAD's nested layout nor a list of records")


def load_splits(data: Mapping[str, Any], train_samples: int, eval_samples: int) -> Splits:
    """(train, eval) records for a run; weak scaling has already set train_samples."""
    source = data["source"]
    if source == "synthetic":
        seed = int(data.get("seed") or 0)
        return synthetic_squad(seed, "train", train_samples), synthetic_squad(seed, "validation", eval_samples)
    if source == "file":
        if not data.get("path"):
            raise ValueError("data.source is 'file' but data.path is not set")
        records = load_squad_file(Path(data["path"]))
        # One file holds both splits: evaluation takes the last records, training the first ones.
        if len(records) < train_samples + eval_samples:
            raise ValueError(f"{data['path']}: {len(records)} records, the run needs "
                             f"{train_samples} train + {eval_samples} eval")
        return records[:train_samples], records[len(records) - eval_samples:]
    if source == "squad":
        train_split, validation = load_squad_splits(data)
        if len(train_split) < train_samples:
            raise ValueError(f"{squad_location(data)}: {len(train_split)} training records, the run needs "
                             f"{train_samples}")
        train = [dict(row) for row in train_split.select(range(train_samples))]
        evaluation = [dict(row) for row in validation.select(range(min(eval_samples, len(validation))))]
        return train, evaluation
    raise ValueError(f"unknown data.source {source!r}")


def format_example(record: Mapping[str, Any]) -> str:
    answers = record["answers"]["text"]
    answer = answers[0] if answers else "No Answer"
    return f"Question: {record['question']} Context: {record['context']} Answer: {answer}"


# --- tokenizer ----------------------------------------------------------------------------------------


def _corpus_identity(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the local tokenizer's training corpus depends on (part of its cache key)."""
    source = data["source"]
    if source == "synthetic":
        return {"source": source, "seed": int(data.get("seed") or 0)}
    if source == "file":
        digest = hashlib.sha256(Path(data["path"]).read_bytes()).hexdigest()
        return {"source": source, "sha256": digest}
    return {"source": source, "location": squad_location(data)}


def _corpus_texts(data: Mapping[str, Any]) -> list[str]:
    source = data["source"]
    if source == "synthetic":
        records = synthetic_squad(int(data.get("seed") or 0), "train", TOKENIZER_CORPUS_RECORDS)
    elif source == "file":
        records = load_squad_file(Path(data["path"]))[:TOKENIZER_CORPUS_RECORDS]
    else:
        squad_train, _ = load_squad_splits(data)
        records = [dict(row) for row in squad_train.select(range(min(TOKENIZER_CORPUS_RECORDS, len(squad_train))))]
    return [format_example(record) for record in records]


def local_tokenizer_key(data: Mapping[str, Any], vocab_size: int) -> str:
    identity = {"recipe": "byte-level-bpe", "version": LOCAL_TOKENIZER_VERSION, "vocab_size": vocab_size,
                "corpus_records": TOKENIZER_CORPUS_RECORDS, "corpus": _corpus_identity(data)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """One builder at a time across ranks and concurrent runs sharing the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_byte_level_bpe(texts: Sequence[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # Byte-level: any text (also real SQuAD) encodes without unknown tokens.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _wrap(tokenizer_file: Path, max_length: int) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        unk_token=SPECIAL_TOKENS[0],
        bos_token=SPECIAL_TOKENS[1],
        eos_token=SPECIAL_TOKENS[2],
        pad_token=SPECIAL_TOKENS[3],
        padding_side="right",
        model_max_length=max_length,
    )


def build_local_tokenizer(data: Mapping[str, Any], model_vocab_size: int, cache_dir: Path, max_length: int) -> Any:
    """A byte-level BPE tokenizer trained offline on the run's corpus, cached under cache_dir by its inputs."""
    vocab_size = min(LOCAL_TOKENIZER_MAX_VOCAB, model_vocab_size)
    key = local_tokenizer_key(data, vocab_size)
    target = Path(cache_dir) / "tokenizers" / key / "tokenizer.json"
    with _file_lock(target.with_name("build.lock")):
        if not target.exists():
            tokenizer = _train_byte_level_bpe(_corpus_texts(data), vocab_size)
            partial = target.with_name(f"tokenizer.json.{os.getpid()}.tmp")
            tokenizer.save(str(partial))
            os.replace(partial, target)  # readers never see half a file
    wrapped = _wrap(target, max_length)
    if len(wrapped) > model_vocab_size:
        raise ValueError(f"local tokenizer has {len(wrapped)} tokens, the model only {model_vocab_size}")
    return wrapped


# Families whose fine-tuning pads with eos even though their tokenizer has a pad token: the workshop's BLOOM.
PAD_WITH_EOS = frozenset({"bloom"})


def choose_pad_token(tokenizer: Any, model_type: str) -> str:
    """Set the pad token the way the family expects and say which rule chose it: eos for BLOOM (the workshop),
    else the tokenizer's own, else eos (Llama 3 and GPT-2 ship none; padding is masked out of the loss anyway)."""
    if tokenizer.pad_token is not None and model_type not in PAD_WITH_EOS:
        return "the tokenizer's own"
    if tokenizer.eos_token is None:
        raise ValueError("model.name: the tokenizer has neither a pad nor an eos token to pad with")
    had_pad = tokenizer.pad_token is not None
    tokenizer.pad_token = tokenizer.eos_token
    return f"eos ({model_type} pads with eos)" if had_pad else "eos (the tokenizer has no pad token)"


def load_tokenizer(model: Mapping[str, Any], data: Mapping[str, Any], model_vocab_size: int, cache_dir: Path,
                   max_length: int, model_type: str) -> tuple[Any, dict[str, Any]]:
    """The run's tokenizer and a record of its pad token (token, id, the rule that chose it)."""
    if model["tokenizer"] == "local":
        tokenizer = build_local_tokenizer(data, model_vocab_size, cache_dir, max_length)
        rule = "the local tokenizer's own"
    else:
        from transformers import AutoTokenizer

        from ..plan.models import pretrained_source

        tokenizer = AutoTokenizer.from_pretrained(pretrained_source(model["name"], required_file=None))
        rule = choose_pad_token(tokenizer, model_type)
        tokenizer.padding_side = "right"
        if len(tokenizer) > model_vocab_size:  # ids past the embedding would fail mid-run
            raise ValueError(f"model.name {model['name']!r}: its tokenizer has {len(tokenizer)} tokens, the "
                             f"model's embedding only {model_vocab_size}")
    return tokenizer, {"token": tokenizer.pad_token, "id": tokenizer.pad_token_id, "rule": rule}


# --- tokenised splits ---------------------------------------------------------------------------------


@dataclass
class TokenizedSplit(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Fixed-length causal-LM examples held as tensors (small enough for memory, no cache files)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index],
                "labels": self.labels[index]}

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())


def tokenize_records(records: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> TokenizedSplit:
    encoded = tokenizer([format_example(record) for record in records], truncation=True, padding="max_length",
                        max_length=max_length, return_tensors="pt")
    input_ids = encoded["input_ids"]
    attention_mask = encoded["attention_mask"]
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return TokenizedSplit(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
