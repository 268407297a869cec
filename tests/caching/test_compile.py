"""Regional compilation: every repeated block compiled, outputs equal to eager's within float
rounding, and a second run that only changes the seed (the initial noise) does not recompile."""

from __future__ import annotations

import pytest
import torch

from diffblocks.models.compiling import compile_components, compile_regions

from . import models as m

pytestmark = pytest.mark.slow  # a cold compile of two block classes: ~25 s CPU (over a minute on the shared 2 cores)


def _dynamo_counters():
    from torch._dynamo.utils import counters

    return counters


def test_flux_graph_compiled_regionally_does_not_recompile_on_new_seed():
    torch._dynamo.reset()
    model = m.flux()
    inputs = m.flux_inputs()
    graph = m.flux_graph()
    eager = graph.run(inputs, {"transformer": model}, progress=False, cache=False)["latents"]

    n = compile_regions(model)
    assert n == 4  # 2 double + 2 single blocks
    counters = _dynamo_counters()
    counters.clear()
    first = graph.run(inputs, {"transformer": model}, progress=False, cache=False)["latents"]
    frames = counters["stats"]["unique_graphs"]
    assert 1 <= frames <= 4  # one graph per block class (and at most a recompile for the step's dtype)
    torch.testing.assert_close(first, eager, atol=1e-4, rtol=1e-4)

    reseeded = {**inputs, "latents": torch.randn(inputs["latents"].shape, generator=torch.Generator().manual_seed(7))}
    graph.run(reseeded, {"transformer": model}, progress=False, cache=False)
    assert counters["stats"]["unique_graphs"] == frames  # nothing new traced


def test_compile_components_picks_the_denoiser_and_names_bad_ones():
    model = m.flux()
    assert compile_components({"transformer": model, "vae": object()}) == {"transformer": 4}
    with pytest.raises(KeyError, match="no component 'unet'"):
        compile_components({"transformer": model}, names=["unet"])
    with pytest.raises(ValueError, match="no repeated_blocks"):
        compile_regions(torch.nn.Linear(2, 2))


def test_pipeline_compile_wraps_the_unet_blocks(tiny_sd_dir):
    from diffblocks.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(str(tiny_sd_dir))
    counts = pipe.compile()
    unet = pipe.components["unet"]
    assert counts == {"unet": sum(isinstance(m, unet.repeated_blocks) for m in unet.modules())} and counts["unet"] > 0
    assert all(m._compiled_call_impl is not None for m in unet.modules() if isinstance(m, unet.repeated_blocks))
