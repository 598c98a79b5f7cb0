"""The one way zerosweep writes its JSON records (run specs, DeepSpeed configs, metrics, summaries)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Atomic: written beside the target, then renamed, so no reader (Snakemake, the launcher after a kill)
    ever sees half a file. `indent=None` keeps json's C encoder, which matters for many large summaries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n", encoding="utf-8")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_or_none(path: Path) -> Any:
    """For records a killed process may not have written (or written only in part): None instead of an error."""
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
