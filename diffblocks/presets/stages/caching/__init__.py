"""Step caches as blocks: each replaces the denoiser-call node of a loop body (``predict_noise``
in the SD bodies, ``predict_flow`` in Flux's) with the same ports, so a cache is one swap::

    from diffblocks.presets import load_preset
    from diffblocks.presets.stages.caching import with_step_cache

    g = load_preset("sd15")
    g.replace("denoise/predict_noise", "predict_noise_deepcache", config={"interval": 3})
    # or, for whichever denoiser the graph calls:
    with_step_cache(g, "fbcache", threshold=0.08)

=========  =========================  =======================  ===================================
kind       UNet (SD 1.x / SDXL)       Flux transformer         reuses when
=========  =========================  =======================  ===================================
fbcache    predict_noise_fbcache      predict_flow_fbcache     the first block's output/residual
                                                               moved < ``threshold`` (relative L1)
teacache   predict_noise_teacache     predict_flow_teacache    the accumulated change of the
                                                               timestep embedding / modulated
                                                               input stays < ``threshold``
deepcache  predict_noise_deepcache    —                        on a schedule: full every ``interval``
=========  =========================  =======================  ===================================

Cached state lives in ``ctx.state`` (fresh every run). Each counts, per node, its steps, reused
steps and the model blocks run and skipped in the run report (``plan.last_run_report.counters``,
shown by ``explain()``). Threshold 0 (or ``interval=1``) never reuses: the output is then exactly
the uncached block's.
"""

from __future__ import annotations

from typing import Any

from ....graph import Graph
from ....graph.validate import walk_leaves
from . import flux, unet
from .flux import predict_flow_fbcache, predict_flow_teacache
from .unet import predict_noise_deepcache, predict_noise_fbcache, predict_noise_teacache

__all__ = ["STEP_CACHES", "with_step_cache", "predict_noise_deepcache", "predict_noise_fbcache",
           "predict_noise_teacache", "predict_flow_fbcache", "predict_flow_teacache"]

#: Denoiser-call block -> {cache kind -> the cache block that replaces it}.
STEP_CACHES: dict[str, dict[str, str]] = {
    "predict_noise": {"fbcache": predict_noise_fbcache.name, "teacache": predict_noise_teacache.name,
                      "deepcache": predict_noise_deepcache.name},
    "predict_flow": {"fbcache": predict_flow_fbcache.name, "teacache": predict_flow_teacache.name},
}


def with_step_cache(graph: Graph, kind: str, **config: Any) -> Graph:
    """Replace every denoiser-call node in ``graph`` (loop bodies and sub-graphs included) with
    the ``kind`` step cache (``"fbcache"``, ``"teacache"``, ``"deepcache"``) and ``config``;
    returns ``graph``. ``ValueError`` when the graph calls no denoiser this kind can wrap."""
    found = [(path, leaf.name) for path, leaf in walk_leaves(graph) if leaf.name in STEP_CACHES]
    targets = [(path, STEP_CACHES[name][kind]) for path, name in found if kind in STEP_CACHES[name]]
    if not targets:
        kinds = sorted({k for _, name in found for k in STEP_CACHES[name]})
        where = (f"its denoiser call ({', '.join(sorted({n for _, n in found}))}) has the caches {kinds}"
                 if found else "it has no predict_noise / predict_flow node")
        raise ValueError(f"with_step_cache: no {kind!r} cache for graph {graph.name!r}: {where}")
    for path, cache in targets:
        graph.replace(path, cache, config=config or None)
    return graph
