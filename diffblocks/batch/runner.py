"""``generate_many``: run a list of rows through one pipeline, resumably, on one or many processes.

* Rows that share everything but prompt, negative prompt and seed run together as one batch of
  up to ``batch_size`` images, each with its own generator (so a row's image does not depend on
  its batch-mates' seeds); prompt encodings are memoised by the graph across calls.
* Rows are dealt to processes by row index (``row % world_size``), so the split needs no
  coordination and a resumed run may use a different number of processes.
* A row is done when its PNG is in place and its manifest line says ok; done rows are skipped.
  A failing row is recorded with its error and the run goes on.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffblocks.batch.manifest import ManifestWriter, image_name, is_complete, merge_manifests, read_records
from diffblocks.batch.rows import BatchRow
from diffblocks.fileio import atomic_write_bytes
from diffblocks.pngmeta import save_png

__all__ = ["BatchReport", "Distribution", "generate_many", "write_contact_sheet"]

#: Settings that vary inside one batched call; every other setting must be equal.
_PER_IMAGE = ("prompt", "negative_prompt", "seed")
#: Every key a run records (``diffblocks run``'s settings), so any row's PNG replays on its own.
SETTINGS_KEYS = ("model", "prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "seed", "height",
                 "width", "scheduler", "image", "mask_image", "strength", "dtype")
#: Settings that become pipeline call arguments as they are.
_CALL_KEYS = ("num_inference_steps", "guidance_scale", "height", "width", "strength")


@dataclass(frozen=True)
class Distribution:
    """Where this process stands among the processes of one run."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_accelerate(cls) -> tuple[Distribution, Any]:
        """This process's place and device from accelerate's ``PartialState`` (works under
        ``accelerate launch``/``torchrun``, on GPUs and, with gloo, on CPUs; one process otherwise)."""
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes, state.wait_for_everyone), state.device


@dataclass
class BatchReport:
    """What a call did: rows made, skipped as already done, failed (with their errors)."""

    made: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    manifest: list[dict[str, Any]] = field(default_factory=list)


def _group_key(row: BatchRow) -> tuple[Any, ...]:
    shared = tuple(sorted((k, repr(v)) for k, v in row.settings.items() if k not in _PER_IMAGE))
    # Init images are per row: such rows run alone. Rows with and without a negative prompt too.
    alone = row.index if row.settings.get("image") or row.settings.get("mask_image") else None
    return (shared, "negative_prompt" in row.settings, alone)


def _batches(rows: Sequence[BatchRow], batch_size: int) -> list[list[BatchRow]]:
    groups: dict[tuple[Any, ...], list[BatchRow]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    batches = [g[i : i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
    return sorted(batches, key=lambda b: b[0].index)


def _load_image(path: str, mode: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert(mode)


def _call_arguments(batch: Sequence[BatchRow]) -> dict[str, Any]:
    import torch

    first = batch[0].settings
    call: dict[str, Any] = {k: first[k] for k in _CALL_KEYS if first.get(k) is not None}
    call["prompt"] = [r.settings["prompt"] for r in batch]
    if "negative_prompt" in first:
        call["negative_prompt"] = [r.settings["negative_prompt"] for r in batch]
    call["generator"] = [torch.Generator("cpu").manual_seed(r.seed) for r in batch]
    if first.get("image"):
        call["image"] = _load_image(first["image"], "RGB")
    if first.get("mask_image"):
        call["mask_image"] = _load_image(first["mask_image"], "L")
    return call


class _Runner:
    def __init__(self, pipe: Any, out_dir: Path, run_settings: Mapping[str, Any], writer: ManifestWriter, rank: int) -> None:
        self.pipe, self.out_dir, self.run_settings, self.writer, self.rank = pipe, out_dir, run_settings, writer, rank
        self.default_scheduler = pipe.components["scheduler"] if "scheduler" in pipe.components else None
        self.scheduler_name: str | None = None

    def _use_scheduler(self, name: str | None) -> None:
        if name == self.scheduler_name:
            return
        if name is None:
            self.pipe.set_scheduler(self.default_scheduler)
        else:
            self.pipe.set_scheduler(name)
        self.scheduler_name = name

    def run(self, batch: list[BatchRow], report: BatchReport) -> None:
        started = time.perf_counter()
        try:
            self._use_scheduler(batch[0].settings.get("scheduler"))
            images = self.pipe(output_type="pil", progress=False, **_call_arguments(batch)).images
        except Exception as err:
            if len(batch) > 1:  # find the row that fails; the others still get made
                for row in batch:
                    self.run([row], report)
                return
            self._record(batch[0], None, 0.0, f"{type(err).__name__}: {err}", report)
            return
        seconds = (time.perf_counter() - started) / len(batch)
        for row, image in zip(batch, images, strict=True):
            self._record(row, image, seconds, None, report)

    def _record(self, row: BatchRow, image: Any, seconds: float, error: str | None, report: BatchReport) -> None:
        settings = {**dict.fromkeys(SETTINGS_KEYS), **self.run_settings, **row.settings}
        record: dict[str, Any] = {"row": row.index, "seed": row.seed, "settings": settings, "process": self.rank}
        if error is None:
            name = image_name(row.index)
            save_png(image, self.out_dir / name, self.pipe.graph.to_json(), settings)
            record.update(status="ok", file=name, time=round(seconds, 4))
            report.made.append(row.index)
        else:
            record.update(status="error", error=error)
            report.failed[row.index] = error
        self.writer.append(record)


def generate_many(
    pipe: Any,
    rows: Sequence[BatchRow],
    out_dir: str | Path,
    *,
    batch_size: int = 1,
    run_settings: Mapping[str, Any] | None = None,
    distribution: Distribution | None = None,
    progress: bool = True,
    contact_sheet: bool = True,
) -> BatchReport:
    """Make one PNG per row in ``out_dir`` plus ``manifest.jsonl`` and ``grid.png``; see the module doc.

    ``run_settings`` (model, dtype, ...) is recorded with every row's own settings in its PNG and
    manifest line, so ``diffblocks run --replay`` remakes any single image.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dist = distribution or Distribution()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(out)
    report = BatchReport()
    mine = [r for r in rows if r.index % dist.world_size == dist.rank]
    todo = []
    for row in mine:
        if is_complete(out, records.get(row.index)):
            report.skipped.append(row.index)
        else:
            todo.append(row)
    with ManifestWriter(out, dist.rank) as writer:
        runner = _Runner(pipe, out, dict(run_settings or {}), writer, dist.rank)
        bad = [r for r in todo if r.error is not None]
        for row in bad:
            runner._record(row, None, 0.0, row.error, report)
        desc = f"batch [{dist.rank + 1}/{dist.world_size}]" if dist.world_size > 1 else "batch"
        with tqdm(total=len(mine), initial=len(report.skipped) + len(bad), unit="img", desc=desc,
                  disable=not progress, position=dist.rank) as bar:
            for batch in _batches([r for r in todo if r.error is None], batch_size):
                runner.run(batch, report)
                bar.update(len(batch))
    dist.barrier()
    if dist.is_main:
        report.manifest = merge_manifests(out, (r.index for r in rows))
        if contact_sheet:
            write_contact_sheet(out, report.manifest)
    dist.barrier()
    return report


def write_contact_sheet(out_dir: Path, manifest: Sequence[Mapping[str, Any]], thumb: int = 128) -> Path | None:
    """``grid.png``: every finished image as a thumbnail, in row order."""
    from PIL import Image

    files = [out_dir / str(r["file"]) for r in manifest if r.get("status") == "ok"]
    if not files:
        return None
    cols = math.ceil(math.sqrt(len(files)))
    rows = math.ceil(len(files) / cols)
    sheet = Image.new("RGB", (cols * thumb, rows * thumb), "white")
    for i, path in enumerate(files):
        with Image.open(path) as image:
            tile = image.convert("RGB")
            tile.thumbnail((thumb, thumb))
            sheet.paste(tile, ((i % cols) * thumb, (i // cols) * thumb))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return atomic_write_bytes(out_dir / "grid.png", buffer.getvalue())
