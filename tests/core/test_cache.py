"""Memoisation: hits, misses and why, invalidation by inputs/config/block/components, bounds."""

from __future__ import annotations

import torch

from diffblocks.graph import Graph, MemoCache
from diffblocks.graph.cache import fingerprint

from . import helpers as h

TS = torch.tensor([3.0, 2.0, 1.0])


def _run(g: Graph, **inputs):
    base = {"value": 1.0, "start": 1.0, "timesteps": TS}
    return g.run(inputs={**base, **inputs}, progress=False)


def _status(g: Graph) -> dict[str, str]:
    return {n: r.status for n, r in g.compile().last_run_report.nodes.items()}


def test_second_run_is_all_hits_and_identical():
    g = h.txt2img()
    h.CALLS.clear()
    first = _run(g).image
    assert _status(g) == {"embed": "miss", "init": "miss", "denoise": "miss", "decode": "miss"}
    assert g.compile().last_run_report.nodes["embed"].reasons == ["first run"]
    second = _run(g).image
    assert _status(g) == {"embed": "hit", "init": "hit", "denoise": "hit", "decode": "hit"}
    assert second is first and h.CALLS["core_denoise_step"] == 3
    assert g.cache.hits == 4


def test_changed_input_reruns_only_downstream():
    g = h.txt2img()
    _run(g)
    _run(g, start=5.0)  # the seed-like change: the prompt encoding is reused
    report = g.compile().last_run_report
    assert report.nodes["embed"].status == "hit"
    assert report.nodes["init"].reasons == ["input value changed"]
    assert report.nodes["denoise"].reasons == ["input latents changed"]
    assert report.nodes["decode"].reasons == ["input latents changed"]
    text = g.compile().explain()
    assert "embed" in text and "hit" in text and "input latents changed" in text


def test_swapping_the_decoder_reruns_only_the_decoder():
    g = h.txt2img()
    _run(g)
    g.replace("decode", h.scale.with_config(factor=5.0))
    out = _run(g).image
    report = g.compile().last_run_report
    assert [n for n, r in report.nodes.items() if r.status != "hit"] == ["decode"]
    assert report.nodes["decode"].reasons == ["config changed"]
    g.replace("decode", "core_scale", config={"factor": 5.0})  # same block and config again
    _run(g)
    assert _status(g)["decode"] == "hit"
    assert torch.equal(_run(g).image, out)


def test_block_identity_change_reruns():
    g = Graph("g").add("a", h.inc)
    g.expose_input("x", "a.x").expose_output("x", "a.x")
    g.run(inputs={"x": 1.0}, progress=False)
    g.replace("a", "core_mul")
    g.run(inputs={"x": 1.0}, progress=False)
    assert g.compile().last_run_report.nodes["a"].reasons[0] == "block changed"


def test_component_change_invalidates():
    g = Graph("g").add("enc", h.encode)
    g.expose_input("prompt", "enc.prompt").expose_output("e", "enc.prompt_embeds")
    torch.manual_seed(0)
    lin = torch.nn.Linear(2, 3)
    g.run(inputs={"prompt": "ab"}, components={"encoder": lin}, progress=False)
    g.run(inputs={"prompt": "ab"}, components={"encoder": lin}, progress=False)
    assert _status(g) == {"enc": "hit"}
    with torch.no_grad():
        lin.weight.add_(1.0)  # in-place change of the component's weights
    g.run(inputs={"prompt": "ab"}, components={"encoder": lin}, progress=False)
    assert g.compile().last_run_report.nodes["enc"].reasons == ["component encoder changed"]
    g.run(inputs={"prompt": "ab"}, components={"encoder": torch.nn.Linear(2, 3)}, progress=False)
    assert g.compile().last_run_report.nodes["enc"].reasons == ["component encoder changed"]


class FingerprintingProvider(dict):
    """A provider that fingerprints without handing out (loading) the component."""

    def __init__(self, items, version):
        super().__init__(items)
        self.version = version
        self.fetched = 0

    def __getitem__(self, key):
        self.fetched += 1
        return super().__getitem__(key)

    def component_fingerprint(self, name):
        return (name, self.version)


def test_provider_fingerprint_avoids_loading_on_hits():
    g = Graph("g").add("enc", h.encode)
    g.expose_input("prompt", "enc.prompt").expose_output("e", "enc.prompt_embeds")
    provider = FingerprintingProvider({"encoder": torch.nn.Linear(2, 3)}, version=1)
    g.run(inputs={"prompt": "ab"}, components=provider, progress=False)
    assert provider.fetched == 1
    g.run(inputs={"prompt": "ab"}, components=provider, progress=False)
    assert provider.fetched == 1 and _status(g) == {"enc": "hit"}
    provider.version = 2
    g.run(inputs={"prompt": "ab"}, components=provider, progress=False)
    assert provider.fetched == 2


def test_large_tensor_inputs_by_identity_and_in_place_version():
    g = Graph("g").add("s", h.scale)
    g.expose_input("latents", "s.latents").expose_output("latents", "s.latents")
    big = torch.ones(10_000)
    g.run(inputs={"latents": big}, progress=False)
    g.run(inputs={"latents": big}, progress=False)
    assert _status(g) == {"s": "hit"}
    big.mul_(2)  # in-place: same object, new version
    out = g.run(inputs={"latents": big}, progress=False).latents
    assert _status(g) == {"s": "miss"} and out[0].item() == 2.0
    g.run(inputs={"latents": torch.ones(10_000)}, progress=False)  # equal content, new object: a miss
    assert _status(g) == {"s": "miss"}
    small_a, small_b = torch.ones(8), torch.ones(8)
    g.run(inputs={"latents": small_a}, progress=False)
    g.run(inputs={"latents": small_b}, progress=False)  # small tensors hash by content
    assert _status(g) == {"s": "hit"}


def test_cached_output_modified_in_place_is_not_served():
    g = Graph("g").add("m", h.make_latents)
    g.expose_output("latents", "m.latents")
    out = g.run(progress=False).latents
    out.add_(100)  # the caller scribbles on a cached tensor
    again = g.run(progress=False).latents
    assert g.compile().last_run_report.nodes["m"].reasons == ["a cached output was modified in place"]
    assert torch.equal(again, torch.ones(1, 4))


def test_not_memoisable_blocks_always_run():
    g = Graph("g").add("init", h.make_latents).add("noise", h.noise)
    g.connect("init.latents", "noise.latents")
    g.expose_input("generator", "noise.generator").expose_output("latents", "noise.latents")
    a = g.run(inputs={"generator": torch.Generator().manual_seed(1)}, progress=False).latents
    b = g.run(inputs={"generator": torch.Generator().manual_seed(1)}, progress=False).latents
    assert torch.equal(a, b)
    assert _status(g) == {"init": "hit", "noise": "ran"}
    c = g.run(inputs={"generator": torch.Generator().manual_seed(2)}, progress=False).latents
    assert not torch.equal(a, c)


def test_cache_disabled_per_run_per_plan_and_per_graph():
    g = h.txt2img()
    _run(g)
    g.run(inputs={"value": 1.0, "start": 1.0, "timesteps": TS}, progress=False, cache=False)
    assert set(_status(g).values()) == {"ran"}
    plan = g.compile(cache=False)
    plan.run(inputs={"value": 1.0, "start": 1.0, "timesteps": TS}, progress=False)
    assert {r.status for r in plan.last_run_report.nodes.values()} == {"ran"}
    g.cache.enabled = False
    _run(g)
    assert set(_status(g).values()) == {"ran"}
    own = MemoCache()
    g.run(inputs={"value": 1.0, "start": 1.0, "timesteps": TS}, progress=False, cache=own)
    assert set(_status(g).values()) == {"miss"} and len(own) == 4


def test_loops_are_not_cached_when_callbacks_watch_them():
    g = h.txt2img()
    _run(g)
    g.run(inputs={"value": 1.0, "start": 1.0, "timesteps": TS}, progress=False, callbacks=[lambda s, t, c: None])
    report = g.compile().last_run_report
    assert report.nodes["denoise"].status == "ran" and report.nodes["embed"].status == "hit"


def test_bounds_by_entries_and_bytes():
    cache = MemoCache(max_entries=2)
    g = h.inc_chain(4)
    g.cache = cache
    g.run(inputs={"x": 0.0}, progress=False)
    assert len(cache) == 2  # LRU keeps the last two nodes
    g.run(inputs={"x": 0.0}, progress=False)
    report = g.compile().last_run_report
    assert report.nodes["n0"].reasons == ["evicted from the cache"]

    small = MemoCache(max_bytes=100)
    t = Graph("t").add("m", h.make_latents)
    t.expose_input("size", "m.size").expose_output("latents", "m.latents")
    t.cache = small
    t.run(inputs={"size": 10}, progress=False)  # 40 bytes: kept
    assert len(small) == 1 and small.nbytes == 40
    t.run(inputs={"size": 1000}, progress=False)  # 4000 bytes: too large to keep
    assert small.nbytes == 40
    t.run(inputs={"size": 20}, progress=False)
    t.run(inputs={"size": 21}, progress=False)  # 80 + 84 > 100: oldest go
    assert small.nbytes <= 100 and len(small) == 1
    small.clear()
    assert len(small) == 0 and small.nbytes == 0


def test_fingerprints():
    keep: list = []
    assert fingerprint(1, keep) != fingerprint(1.0, keep)
    assert fingerprint([1, "a", None], keep) == fingerprint([1, "a", None], keep)
    assert fingerprint({"a": torch.ones(2)}, keep) == fingerprint({"a": torch.ones(2)}, keep)
    gen = torch.Generator().manual_seed(0)
    before = fingerprint(gen, keep)
    torch.randn(3, generator=gen)
    assert fingerprint(gen, keep) != before
    obj = object()
    assert fingerprint(obj, keep) == ("obj", "object", id(obj)) and obj in keep
    assert fingerprint(torch.ones(2, dtype=torch.bfloat16), keep) == fingerprint(torch.ones(2, dtype=torch.bfloat16), keep)
    assert fingerprint(torch.tensor(1.0), keep) == fingerprint(torch.tensor(1.0), keep)


class LazyProvider(dict):
    """Like a ComponentsManager: the fingerprint differs before and after loading."""

    def __init__(self, items):
        super().__init__(items)
        self.loaded = set()

    def __getitem__(self, key):
        self.loaded.add(key)
        return super().__getitem__(key)

    def component_fingerprint(self, name):
        return ("loaded", id(dict.__getitem__(self, name))) if name in self.loaded else ("spec", name)


def test_lazy_provider_fingerprint_after_first_load_still_hits():
    g = Graph("g").add("enc", h.encode)
    g.expose_input("prompt", "enc.prompt").expose_output("e", "enc.prompt_embeds")
    provider = LazyProvider({"encoder": torch.nn.Linear(2, 3)})
    g.run(inputs={"prompt": "ab"}, components=provider, progress=False)
    g.run(inputs={"prompt": "ab"}, components=provider, progress=False)
    assert _status(g) == {"enc": "hit"}


def test_switch_is_cached_when_the_chosen_branch_is_pure():
    from diffblocks.graph import Switch

    noisy = Graph.wrap(h.noise, "noisy")  # memoise=False inside
    plain = Graph.wrap(h.scale, "plain")
    sw = Switch({"noisy": noisy, "plain": plain}, when={"noisy": "generator"}, default="plain")
    g = Graph.wrap(sw)
    x = torch.ones(1, 4)
    g.run(inputs={"latents": x}, progress=False)
    g.run(inputs={"latents": x}, progress=False)
    assert _status(g) == {"node": "hit"}
    g.run(inputs={"latents": x, "generator": torch.Generator().manual_seed(0)}, progress=False)
    report = g.compile().last_run_report.nodes["node"]
    assert report.status == "ran" and "noisy/node" in report.reasons[0]
