"""CPU threads follow the work size, and the user can fix them (issue 14 item 7)."""

from __future__ import annotations

import pytest
import torch

from diffblocks.pipeline import Pipeline
from diffblocks.threads import WORK_PER_THREAD, available_cpus, threads_for_work, torch_threads


def test_small_work_gets_one_thread_and_large_work_every_cpu():
    assert threads_for_work(4_600_000, 8 * 8, 2, limit=16) == 1  # the shipped model at 64x64
    assert threads_for_work(4_600_000, 64 * 64, 2, limit=16) == 1  # ... and at 512x512
    assert threads_for_work(860_000_000, 64 * 64, 2, limit=16) == 16  # SD 1.5 at 512x512
    assert threads_for_work(int(WORK_PER_THREAD * 2), 1, 1, limit=16) == 2
    assert threads_for_work(860_000_000, 64 * 64, 2) <= min(available_cpus(), torch.get_num_threads())


def test_torch_threads_restores_the_setting():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("setting, expected", [(None, 1), (3, 3)])
def test_pipeline_runs_with_its_thread_setting(tiny_sd_dir, monkeypatch, setting, expected):
    pipe = Pipeline.from_pretrained(tiny_sd_dir, threads=setting)
    seen = []
    before = torch.get_num_threads()
    pipe(prompt="a cat", num_inference_steps=1, height=64, width=64, output_type="np", progress=False,
         callback=lambda *a: seen.append(torch.get_num_threads()))
    assert seen == [expected] and torch.get_num_threads() == before
    seen.clear()
    pipe(prompt="a cat", num_inference_steps=1, height=64, width=64, output_type="np", progress=False, threads=2,
         callback=lambda *a: seen.append(torch.get_num_threads()))
    assert seen == [2]
