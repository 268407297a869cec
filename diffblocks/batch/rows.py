"""Rows of a batch run: read a prompt list (``.txt``, ``.jsonl``, ``.csv``) and check every column
before any weight is loaded.

A row's columns are the ``diffblocks run`` options a user already knows (``prompt``, ``seed``,
``steps``, ``guidance``, ``size`` ...). A file with an unknown column is refused as a whole; a row
whose *value* is wrong (``steps: "many"``) becomes a failed row that the run records and skips,
so one typo does not stop a thousand-row job.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffblocks.fileio import read_text_bounded

__all__ = ["COLUMNS", "BatchInputError", "BatchRow", "read_rows", "rows_from_records"]

#: Prompt files are text: far below this even for a million prompts.
MAX_PROMPT_FILE_BYTES = 256 * 1024 * 1024


class BatchInputError(ValueError):
    """A prompt file that cannot be used at all (unreadable, unknown columns, no rows)."""


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"{value!r} must be at least 1")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def _size(value: Any) -> tuple[int, int]:
    """``"768x512"`` (width x height, as image tools write it) or a single number for a square."""
    text = str(value).lower().replace(" ", "")
    width, _, height = text.partition("x")
    return _positive_int(width), _positive_int(height or width)


#: column -> (settings key, parser). Settings keys are those ``diffblocks run`` records in PNGs.
COLUMNS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "prompt": ("prompt", _text),
    "negative_prompt": ("negative_prompt", _text),
    "seed": ("seed", _int),
    "steps": ("num_inference_steps", _positive_int),
    "guidance": ("guidance_scale", _float),
    "height": ("height", _positive_int),
    "width": ("width", _positive_int),
    "size": ("size", _size),
    "scheduler": ("scheduler", _text),
    "strength": ("strength", _float),
    "image": ("image", _text),
    "mask": ("mask_image", _text),
}


@dataclass(frozen=True)
class BatchRow:
    """One row: its index in the file, the run settings it asks for, or why it cannot run."""

    index: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])


def _parse_row(index: int, record: Mapping[str, Any], defaults: Mapping[str, Any], base_seed: int) -> BatchRow:
    settings = dict(defaults)
    problems = []
    for column, raw in record.items():
        if raw is None or raw == "":
            continue  # an empty CSV cell means "the default"
        key, parse = COLUMNS[column]
        try:
            value = parse(raw)
        except (TypeError, ValueError) as err:
            problems.append(f"column '{column}': {err}")
            continue
        if key == "size":
            settings["width"], settings["height"] = value
        else:
            settings[key] = value
    settings.setdefault("seed", base_seed + index)
    if not settings.get("prompt"):
        problems.append("no prompt")
    return BatchRow(index, settings, "; ".join(problems) or None)


def rows_from_records(
    records: Iterable[Mapping[str, Any]], *, defaults: Mapping[str, Any] | None = None, base_seed: int = 0, source: str = "rows"
) -> list[BatchRow]:
    """Rows from dicts of columns; unknown columns are one error naming them and the valid ones.

    Each row's seed is its own ``seed`` column, else ``base_seed + row index``, so a row draws
    the same image whichever process runs it and however the run is resumed.

    >>> [r.settings["seed"] for r in rows_from_records([{"prompt": "a"}, {"prompt": "b", "seed": 7}], base_seed=10)]
    [10, 7]
    """
    records = list(records)
    unknown = sorted({str(c) for r in records for c in r} - set(COLUMNS))
    if unknown:
        raise BatchInputError(
            f"{source}: unknown column(s) {', '.join(unknown)}; valid columns: {', '.join(COLUMNS)}"
        )
    if not records:
        raise BatchInputError(f"{source}: no rows")
    return [_parse_row(i, r, defaults or {}, base_seed) for i, r in enumerate(records)]


def _records(path: Path, text: str) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise BatchInputError(f"{path}, line {number}: not JSON ({err})") from None
            if not isinstance(record, dict):
                raise BatchInputError(f"{path}, line {number}: each line must be a JSON object of columns")
            records.append(record)
        return records
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            return []
        records = []
        for record in reader:
            if None in record:  # more cells than header names
                raise BatchInputError(f"{path}, line {reader.line_num}: more cells than columns")
            records.append({k.strip(): v for k, v in record.items()})
        return records
    raise BatchInputError(f"{path}: a prompt file must end in .txt (one prompt a line), .jsonl or .csv")


def read_rows(path: str | Path, *, defaults: Mapping[str, Any] | None = None, base_seed: int = 0) -> list[BatchRow]:
    """The rows of a prompt file (see :func:`rows_from_records`)."""
    p = Path(path)
    try:
        text = read_text_bounded(p, MAX_PROMPT_FILE_BYTES, what="prompt file")
    except OSError as err:
        raise BatchInputError(str(err)) from None
    return rows_from_records(_records(p, text), defaults=defaults, base_seed=base_seed, source=str(p))
