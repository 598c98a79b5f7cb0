"""The one way zerosweep writes and reads its JSON records (run specs, DeepSpeed configs, metrics, run records)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RecordError(ValueError):
    """A record or log that cannot be trusted; the message starts with `file:line:` like a compiler's."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line


def write_json(path: Path, data: Any, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Atomic: written beside the target, then renamed, so no reader (Snakemake, the launcher after a kill)
    ever sees half a file. `indent=None` keeps json's C encoder, which matters for many large summaries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n", encoding="utf-8")
    os.replace(partial, path)


def read_json(path: Path, *, what: str = "the training job writes it") -> dict[str, Any]:
    """A JSON object from a file; RecordError naming the file (and line) when it is missing or not an object.

    `what` completes the message for a missing file: who should have written it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise RecordError(path, None, f"missing ({what})") from None
    except json.JSONDecodeError as error:
        raise RecordError(path, error.lineno, f"not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise RecordError(path, 1, "expected a JSON object")
    return data


def read_json_or_none(path: Path) -> Any:
    """For records a killed process may not have written (or written only in part): None instead of an error."""
    try:
        return read_json(path)
    except RecordError:
        return None
