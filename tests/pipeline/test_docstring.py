"""The Pipeline docstring's example runs as written on the shipped fp16 model (issue 14 item 2),
and one pipeline loads in one dtype."""

from __future__ import annotations

import textwrap

import pytest
import torch

import diffblocks.pipeline as pipeline_module
from diffblocks.pipeline import Pipeline
from diffblocks.shipped import DEFAULT_MODEL, shipped_model_path


def _docstring_example() -> str:
    block = pipeline_module.__doc__.split("::\n", 1)[1].split("\n\n", 1)[0]
    return textwrap.dedent(block)


@pytest.fixture(scope="module")
def shipped():
    try:
        return shipped_model_path(DEFAULT_MODEL)
    except FileNotFoundError:
        pytest.skip("no shipped model in this checkout")


def test_docstring_example_runs_on_the_shipped_model(shipped, tmp_path, monkeypatch):
    code = _docstring_example()
    assert "Pipeline.from_pretrained" in code and "save_pretrained" in code
    monkeypatch.chdir(tmp_path)
    scope = {"Pipeline": Pipeline}
    exec(compile(code, "pipeline-docstring", "exec"), scope)  # noqa: S102 - our own docstring
    assert scope["image"].size == (64, 64)
    assert (tmp_path / "my-pipeline" / "graph.json").is_file()
    again = Pipeline.from_pretrained(tmp_path / "my-pipeline")
    assert again.graph.nodes["denoise"].body.nodes["guidance"].name == "apply_apg"


def test_fp16_files_load_in_one_dtype(shipped):
    """The shipped weights are fp16; a pipeline without torch_dtype computes in float32 throughout."""
    pipe = Pipeline.from_pretrained(shipped)
    dtypes = {name: next(pipe.components[name].parameters()).dtype for name in ("unet", "vae", "text_encoder")}
    assert set(dtypes.values()) == {torch.float32}, dtypes
    half = Pipeline.from_pretrained(shipped, torch_dtype=torch.bfloat16)
    assert {next(half.components[n].parameters()).dtype for n in ("unet", "vae", "text_encoder")} == {torch.bfloat16}


def test_the_png_model_name_opens_the_shipped_model(shipped):
    pipe = Pipeline.from_pretrained(DEFAULT_MODEL)
    assert pipe.source == str(shipped) and pipe.graph.name == "sd15"
