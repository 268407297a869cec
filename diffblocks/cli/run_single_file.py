"""``diffblocks run --model FILE``: a single-file checkpoint as the run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CliError

__all__ = ["load_pipeline"]


def load_pipeline(model: str, *, preset: Any, torch_dtype: Any, **folder_options: Any) -> Any:
    """The pipeline for ``--model``: a folder or repo as before (``folder_options`` such as
    ``revision`` or ``trust_remote_code`` go to ``Pipeline.from_pretrained``), or one checkpoint
    file (SD 1.x / 2.x / SDXL); a file holding only one model is an error that says so."""
    from ..pipeline import Pipeline

    path = Path(model).expanduser()
    if not path.is_file():
        return Pipeline.from_pretrained(model, preset=preset, torch_dtype=torch_dtype, **folder_options)
    from ..loader import LoadError, describe
    from ..models.single_file.checkpoint import CheckpointError

    try:
        if describe(path) != "single_file":
            raise LoadError(f"{path}: --model takes a model folder, a Hub repo id or a whole-pipeline checkpoint file")
        return Pipeline.from_single_file(path, preset=preset, torch_dtype=torch_dtype)
    except (LoadError, CheckpointError) as err:
        raise CliError(str(err), hint="--model takes a model folder, a Hub repo id or a .safetensors checkpoint") from None
