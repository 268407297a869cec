"""Step caches as blocks: one replace in a custom graph, skipped-block counts in the run report,
exactly the uncached output at threshold 0, a bounded difference at a loose threshold, and
per-run state (two runs in a row agree)."""

from __future__ import annotations

import pytest
import torch

from diffblocks.presets import load_preset
from diffblocks.presets.flux import hints as flux_hints
from diffblocks.presets.sd import hints as sd_hints
from diffblocks.presets.stages.caching import hints, with_step_cache

from . import models as m

#: (kind, config that reuses on the tiny models, config that never reuses)
UNET_CACHES = [("deepcache", {"interval": 3, "depth": 1}, {"interval": 1, "depth": 1}),
               ("deepcache", {"interval": 3, "depth": 0}, {"interval": 1, "depth": 0}),
               ("fbcache", {"threshold": 0.3, "depth": 1}, {"threshold": 0.0, "depth": 1}),
               ("fbcache", {"threshold": 0.3, "depth": 0}, {"threshold": 0.0, "depth": 0}),
               ("teacache", {"threshold": 2.0, "depth": 1}, {"threshold": 0.0, "depth": 1})]
FLUX_CACHES = [("fbcache", {"threshold": 0.6}, {"threshold": 0.0}),
               ("teacache", {"threshold": 0.3}, {"threshold": 0.0})]
#: Max abs difference to the uncached latents at the loose settings (latents' mean |x| is ~0.8).
LOOSE_TOLERANCE = 0.25


def _run(graph, inputs, components):
    plan = graph.compile()
    # cache=False: really run (a memoised loop would be a hit the second time, with no counts).
    out = plan.run(inputs, components, progress=False, cache=False)["latents"]
    return out, plan.last_run_report


@pytest.fixture(scope="module")
def unet_setup():
    return {sdxl: (m.unet(m.SDXL if sdxl else m.SD15), m.unet_inputs(sdxl)) for sdxl in (False, True)}


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd15", "sdxl"])
@pytest.mark.parametrize(("kind", "loose", "never"), UNET_CACHES,
                         ids=[f"{c[0]}-depth{c[1]['depth']}" for c in UNET_CACHES])
def test_unet_caches(unet_setup, sdxl, kind, loose, never):
    model, inputs = unet_setup[sdxl]
    components = {"unet": model}
    reference, _ = _run(m.unet_graph(sdxl), inputs, components)

    exact, report = _run(with_step_cache(m.unet_graph(sdxl), kind, **never), inputs, components)
    assert torch.equal(exact, reference)
    assert report.counters["denoise/predict"]["blocks_skipped"] == 0

    graph = m.unet_graph(sdxl)
    graph.replace("denoise/predict", f"predict_noise_{kind}", config=loose)  # the one swap
    cached, report = _run(graph, inputs, components)
    counts = report.counters["denoise/predict"]
    n_blocks = len(model.down_blocks) + len(model.up_blocks) + 1
    assert counts["steps"] == m.STEPS and counts["reused_steps"] > 0
    shallow_blocks = 2 * loose["depth"] or 1  # depth 0: the last up block's last layer
    assert counts["blocks_skipped"] == counts["reused_steps"] * (n_blocks - shallow_blocks)
    assert counts["blocks_run"] + counts["blocks_skipped"] == m.STEPS * n_blocks
    assert "blocks_skipped" in report.explain()
    diff = (cached - reference).abs().max().item()
    assert 0 < diff < LOOSE_TOLERANCE

    again, report_again = _run(graph, inputs, components)  # state is per run
    assert torch.equal(again, cached) and report_again.counters == report.counters


@pytest.mark.parametrize(("kind", "loose", "never"), FLUX_CACHES, ids=[c[0] for c in FLUX_CACHES])
def test_flux_caches(kind, loose, never):
    model, inputs = m.flux(), m.flux_inputs()
    components = {"transformer": model}
    reference, _ = _run(m.flux_graph(), inputs, components)

    exact, _ = _run(with_step_cache(m.flux_graph(), kind, **never), inputs, components)
    assert torch.equal(exact, reference)

    graph = m.flux_graph()
    graph.replace("denoise/predict", f"predict_flow_{kind}", config=loose)
    cached, report = _run(graph, inputs, components)
    counts = report.counters["denoise/predict"]
    assert counts["reused_steps"] > 0
    skipped_per_reuse = model.num_blocks - (1 if kind == "fbcache" else 0)
    assert counts["blocks_skipped"] == counts["reused_steps"] * skipped_per_reuse
    diff = (cached - reference).abs().max().item()
    assert 0 < diff < LOOSE_TOLERANCE
    again, _ = _run(graph, inputs, components)
    assert torch.equal(again, cached)


def test_guidance_batch_change_recomputes(unet_setup):
    """A cache entry made for one batch size is never reused for another (guidance switching off)."""
    model, inputs = unet_setup[False]
    graph = with_step_cache(m.unet_graph(), "deepcache", interval=100)
    plan = graph.compile()
    plan.run(inputs, {"unet": model}, progress=False)
    half = {**inputs, "latents": inputs["latents"][:1], "encoder_hidden_states": inputs["encoder_hidden_states"][:1]}
    out = plan.run(half, {"unet": model}, progress=False, cache=False)["latents"]
    ref = m.unet_graph().run(half, {"unet": model}, progress=False)["latents"]
    assert out.shape == ref.shape and plan.last_run_report.counters["denoise/predict"]["reused_steps"] == m.STEPS - 1


@pytest.mark.parametrize(("preset", "kinds"), [("sd15", ("fbcache", "teacache", "deepcache")),
                                                ("sdxl", ("fbcache", "teacache", "deepcache")),
                                                ("flux", ("fbcache", "teacache"))])
def test_presets_take_every_cache(preset, kinds):
    for kind in kinds:
        graph = with_step_cache(load_preset(preset), kind)
        graph.validate()
        assert "cache" in str(graph.to_dict())  # and the swapped graph saves as JSON


def test_unknown_cache_names_the_choices():
    with pytest.raises(ValueError, match=r"predict_flow.*\['fbcache', 'teacache'\]"):
        with_step_cache(load_preset("flux"), "deepcache")


def test_bad_depth_is_one_clear_error(unet_setup):
    model, inputs = unet_setup[False]
    graph = with_step_cache(m.unet_graph(), "deepcache", depth=2)
    with pytest.raises(ValueError, match="depth must be in 0..1"):
        graph.run(inputs, {"unet": model}, progress=False)


def test_component_hints_match_the_families():
    assert hints.UNET == sd_hints.UNET and hints.TRANSFORMER == flux_hints.TRANSFORMER


def test_sd15_preset_with_cache_runs_on_tiny_folder(tiny_sd_dir):
    from diffblocks.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(str(tiny_sd_dir), preset=with_step_cache(load_preset("sd15"), "deepcache"))
    args = dict(prompt="a cat", num_inference_steps=4, height=64, width=64, output_type="np", seed=0, progress=False)
    cached = pipe(**args).images
    plain = Pipeline.from_pretrained(str(tiny_sd_dir), preset="sd15")(**args).images
    assert cached.shape == plain.shape and 0 < abs(cached - plain).max() < 0.5
