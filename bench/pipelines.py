"""Pipelines end to end: ours vs diffusers' classic and modular pipelines on identical weights.

    python bench/pipelines.py                       # tiny + mid, SD, SDXL and Flux, CPU, 1 thread
    python bench/pipelines.py --quick               # tiny only, few repeats (the smoke test)
    python bench/pipelines.py --device cuda --dtype float16 --threads 4

For each (size, pipeline) a diffusers pipeline with seeded random weights is saved once (cached
under ``--workdir``, keyed by its config). Each library then runs in its OWN process on that
folder with the same prompt, seed, steps, image size and guidance scale (CFG on):

* ``ours``: ``diffblocks.Pipeline.from_pretrained`` (memoisation OFF, so every run does all the
  work; a second figure, "ours, memo on", repeats the call with the cache on and a new seed each
  time, so the prompt encoding is reused as the executor is designed to do);
* ``classic``: ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` / ``FluxPipeline``;
* ``modular`` (SDXL and Flux): ``StableDiffusionXLAutoBlocks()`` / ``FluxAutoBlocks()``
  ``.init_pipeline(folder)``.

Flux is a dev-style model (guidance embedding, dynamically shifted schedule): ``--guidance`` is
its embedded guidance, one transformer pass per step on every side; our side runs the graph of
``diffblocks.presets.flux.build_flux_graph``. In the per-step table "UNet" is the transformer,
and since no Flux pipeline calls ``scale_model_input`` the loop window starts at the first
transformer call.

A child does one warm-up run, then ``--repeats`` timed runs (best kept; ``--rounds`` alternating
process rounds, best kept again: a shared machine only ever adds time). Then one instrumented run
measures the denoise loop: timing wrappers around ``unet.forward``, ``scheduler.scale_model_input``
and ``scheduler.step`` (all three libraries call each once per step, ``scale_model_input`` first
and ``step`` last). The loop window runs from the first ``scale_model_input`` to the last
``step``; what is not UNet in it, per step, is the framework's cost plus the sampler and CFG
arithmetic (the last two are the same ops on every side; their share is reported apart).

On a single-threaded CPU run, times are process CPU time, which time slices lost to other
processes on a shared machine do not inflate; otherwise wall time (CUDA synchronised).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a photo of a cat on the grass"
KINDS = ("sd", "sdxl", "flux", "sd-controlnet")
LIBRARIES = {"sd": ("ours", "classic"), "sdxl": ("ours", "classic", "modular"), "flux": ("ours", "classic", "modular"),
             "sd-controlnet": ("ours", "classic")}
#: ControlNet conditioning embedding per size: it downsamples the control image like the VAE (2x tiny, 8x mid).
CONTROLNET_EMBEDDING = {"tiny": (8, 16), "mid": (16, 32, 96, 256)}
#: Image side in pixels per size (tiny VAE scales by 2, mid VAE by 8: latents 32x32 and 24x24).
IMAGE_SIDE = {"tiny": 64, "mid": 192}
DEFAULT_REPEATS = {"tiny": 5, "mid": 2}

# Mid-size: SD / SDXL layouts at a fraction of the real widths, so a 10-step run takes seconds
# on one CPU thread. Widths and head dims keep the real models' ratios (head dim 64 in SDXL).
MID_UNET_SD: dict[str, Any] = {
    "block_out_channels": [128, 256, 512], "layers_per_block": 2, "cross_attention_dim": 768,
    "attention_head_dim": 8, "sample_size": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
MID_UNET_SDXL: dict[str, Any] = {
    "block_out_channels": [128, 256, 512], "layers_per_block": 2, "sample_size": 32,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [2, 4, 8], "transformer_layers_per_block": [1, 1, 2], "use_linear_projection": True,
    "cross_attention_dim": 384 + 768,  # the two encoders' hidden states, concatenated
    "addition_embed_type": "text_time", "addition_time_embed_dim": 128,
    "projection_class_embeddings_input_dim": 768 + 6 * 128,  # pooled text + 6 time ids
}
MID_VAE: dict[str, Any] = {
    "block_out_channels": [64, 128, 256, 256], "layers_per_block": 1, "latent_channels": 4, "sample_size": 256,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
MID_CLIP = {"intermediate_size": 3072, "num_hidden_layers": 4, "vocab_size": 1000, "max_position_embeddings": 77}
# Flux at a fraction of FLUX.1-dev (19 + 38 blocks of 24 heads x 128): 2 + 4 blocks of 4 heads x 64,
# a 16-channel VAE (64 packed channels), T5 of width 512 and CLIP of width 768 (the real pooled width).
MID_FLUX: dict[str, Any] = {
    "patch_size": 1, "in_channels": 64, "num_layers": 2, "num_single_layers": 4, "attention_head_dim": 64,
    "num_attention_heads": 4, "joint_attention_dim": 512, "pooled_projection_dim": 768, "guidance_embeds": True,
    "axes_dims_rope": [16, 24, 24],
}
MID_T5 = {"vocab_size": 1000, "d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 4, "num_heads": 8,
          "relative_attention_num_buckets": 32, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1}


# -- building the folders (parent process; diffusers is the reference here) ---------------------
def _clip(hidden: int, heads: int, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.components.tiny_pipelines import clip_tokenizer

    tok = clip_tokenizer()
    config = CLIPTextConfig(hidden_size=hidden, num_attention_heads=heads, projection_dim=hidden,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, **MID_CLIP)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _mid_pipeline(kind: str) -> Any:
    import diffusers
    import torch

    from tests.components.tiny_pipelines import clip_tokenizer

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**(MID_UNET_SD if kind == "sd" else MID_UNET_SDXL))
    vae = diffusers.AutoencoderKL(**MID_VAE)
    parts: dict[str, Any] = {"unet": unet, "vae": vae, "tokenizer": clip_tokenizer()}
    scheduler_options = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}
    if kind == "sd":
        parts["text_encoder"] = _clip(768, 12, projection=False)
        parts["scheduler"] = diffusers.DDIMScheduler(**scheduler_options, clip_sample=False, set_alpha_to_one=False)
        return diffusers.StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                                 requires_safety_checker=False)
    parts["text_encoder"] = _clip(384, 6, projection=False)
    parts["text_encoder_2"] = _clip(768, 12, projection=True)
    parts["tokenizer_2"] = clip_tokenizer()
    parts["scheduler"] = diffusers.EulerDiscreteScheduler(**scheduler_options, timestep_spacing="leading")
    return diffusers.StableDiffusionXLPipeline(**parts)


def _mid_flux_pipeline(workdir: Path) -> Any:
    import diffusers
    import torch
    from transformers import T5Config, T5EncoderModel

    from tests.components.tiny_pipelines import clip_tokenizer, t5_tokenizer
    from tests.presets.flux.helpers import DEV_SCHEDULER

    torch.manual_seed(0)
    parts = {
        "transformer": diffusers.FluxTransformer2DModel(**MID_FLUX),
        "vae": diffusers.AutoencoderKL(**{**MID_VAE, "latent_channels": 16, "use_quant_conv": False,
                                          "use_post_quant_conv": False, "shift_factor": 0.1159,
                                          "scaling_factor": 0.3611}),
        "text_encoder": _clip(768, 12, projection=False), "tokenizer": clip_tokenizer(),
        "text_encoder_2": T5EncoderModel(T5Config(**MID_T5)),
        "tokenizer_2": t5_tokenizer(Path(tempfile.mkdtemp(prefix="t5tok-", dir=workdir))),
        "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(**DEV_SCHEDULER),
    }
    return diffusers.FluxPipeline(**parts)


def _tiny_flux_pipeline(workdir: Path) -> Any:
    import diffusers

    from tests.presets.flux.helpers import DEV_SCHEDULER, save_flux

    folder = save_flux(Path(tempfile.mkdtemp(prefix="flux-tiny-", dir=workdir)) / "flux", guidance_embeds=True,
                       scheduler=DEV_SCHEDULER)
    return diffusers.FluxPipeline.from_pretrained(str(folder))


def _controlnet_pipeline(base: Any, size: str) -> Any:
    """``base`` (an SD pipeline) with one ControlNet made from its UNet, every weight random."""
    import diffusers
    import torch

    torch.manual_seed(1)
    net = diffusers.ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING[size])
    with torch.no_grad():
        for p in net.parameters():  # the zero convs too: residuals that change the image
            p.add_(torch.randn_like(p) * 0.02)
    parts = {k: v for k, v in base.components.items() if k != "image_encoder"}
    return diffusers.StableDiffusionControlNetPipeline(**parts, controlnet=net, requires_safety_checker=False)


def pipeline_folder(workdir: Path, size: str, kind: str) -> Path:
    """The saved pipeline for (size, kind), built on first use; the name carries a config digest."""
    recipe = json.dumps([size, kind, MID_UNET_SD, MID_UNET_SDXL, MID_VAE, MID_CLIP]
                        + ([MID_FLUX, MID_T5] if kind == "flux" else []), sort_keys=True)
    folder = workdir / f"{kind}-{size}-{hashlib.sha1(recipe.encode()).hexdigest()[:10]}"
    if (folder / "model_index.json").is_file():
        return folder
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.components.tiny_pipelines import build_pipeline

    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "flux":
        pipe = _tiny_flux_pipeline(workdir) if size == "tiny" else _mid_flux_pipeline(workdir)
    elif kind == "sd-controlnet":
        pipe = _controlnet_pipeline(build_pipeline("sd") if size == "tiny" else _mid_pipeline("sd"), size)
    else:
        pipe = build_pipeline(kind) if size == "tiny" else _mid_pipeline(kind)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=workdir))
    pipe.save_pretrained(str(tmp))
    try:
        tmp.rename(folder)
    except OSError:  # another run built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# -- the child: one library, one folder ----------------------------------------------------------
class LoopProbe:
    """Timing wrappers on the UNet's forward and the scheduler's two per-step methods."""

    def __init__(self, clock: Callable[[], float], sync: Callable[[], None]) -> None:
        self.clock, self.sync = clock, sync
        self.spans: dict[str, list[tuple[float, float]]] = {"unet": [], "scale": [], "step": []}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, obj: Any, attr: str, key: str) -> None:
        original = getattr(obj, attr)
        had_own = attr in vars(obj)
        spans, clock, sync = self.spans[key], self.clock, self.sync

        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            start = clock()
            out = original(*args, **kwargs)
            sync()
            spans.append((start, clock()))
            return out

        setattr(obj, attr, timed)
        self._undo.append(lambda: setattr(obj, attr, original) if had_own else delattr(obj, attr))

    def wrap_loop(self, unet: Any, scheduler: Any) -> None:
        """Time the denoise loop's three calls: the UNet forward and the scheduler's scale and step."""
        self.wrap(unet, "forward", "unet")
        if hasattr(scheduler, "scale_model_input"):  # diffusers' flow-match scheduler has none
            self.wrap(scheduler, "scale_model_input", "scale")
        self.wrap(scheduler, "step", "step")

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def summary(self, steps: int) -> dict[str, float]:
        s = self.spans
        if not (s["unet"] and s["step"]):
            raise RuntimeError(f"the probe saw no denoise loop (calls: { {k: len(v) for k, v in s.items()} })")
        # Flux pipelines never call scale_model_input: their loop starts at the transformer.
        window = s["step"][-1][1] - (s["scale"] or s["unet"])[0][0]
        total = lambda key: sum(b - a for a, b in s[key])  # noqa: E731
        unet, sched = total("unet"), total("scale") + total("step")
        return {
            "step_s": window / steps,
            "unet_s": unet / steps,
            "non_unet_s": (window - unet) / steps,
            "scheduler_s": sched / steps,
            "unet_calls": len(s["unet"]) / steps,
            "scale_calls": len(s["scale"]) / steps,
            "step_calls": len(s["step"]) / steps,
        }


def _load(library: str, kind: str, folder: str, device: str, dtype: Any, guidance: float) -> tuple[Any, Any, Any]:
    """(pipeline, denoiser, scheduler) for ``library``."""
    denoiser = "transformer" if kind == "flux" else "unet"
    if library == "ours":
        from diffblocks import Pipeline

        preset = None
        if kind == "flux":  # until the Flux family is registered for from_pretrained's index lookup
            from diffblocks.presets.flux import build_flux_graph

            preset = build_flux_graph()
        pipe = Pipeline.from_pretrained(folder, preset=preset, torch_dtype=dtype, device=device)
        pipe.graph.cache.enabled = False
        return pipe, pipe.components[denoiser], pipe.components["scheduler"]
    if library == "classic":
        import diffusers

        classes = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline",
                   "sd-controlnet": "StableDiffusionControlNetPipeline"}
        pipe = getattr(diffusers, classes[kind]).from_pretrained(folder, torch_dtype=dtype).to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe, getattr(pipe, denoiser), pipe.scheduler
    if kind == "flux":
        from diffusers.modular_pipelines.flux import FluxAutoBlocks

        pipe = FluxAutoBlocks().init_pipeline(folder)
        pipe.load_components(names=["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer",
                                    "vae", "scheduler"], torch_dtype=dtype)
        pipe.to(device)
        _quiet(pipe._blocks)
        return pipe, pipe.transformer, pipe.scheduler
    from diffusers.guiders import ClassifierFreeGuidance
    from diffusers.modular_pipelines.stable_diffusion_xl import StableDiffusionXLAutoBlocks

    pipe = StableDiffusionXLAutoBlocks().init_pipeline(folder)
    names = ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae", "scheduler"]
    pipe.load_components(names=names, torch_dtype=dtype)
    pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=guidance))
    pipe.to(device)
    _quiet(pipe._blocks)  # the public ``blocks`` property returns a deep copy
    return pipe, pipe.unet, pipe.scheduler


def _quiet(blocks: Any) -> None:
    """Disable every progress bar of a modular pipeline: ``ModularPipeline.set_progress_bar_config``
    reaches only the top level's direct children, not the nested denoise loop."""
    if hasattr(blocks, "set_progress_bar_config"):
        blocks.set_progress_bar_config(disable=True)
    for sub in getattr(blocks, "sub_blocks", {}).values():
        _quiet(sub)


def _null_unet_overhead(run: Callable[[], Any], unet: Any, scheduler: Any, clock: Callable[[], float],
                        sync: Callable[[], None], steps: int, tries: int = 2) -> float:
    """Non-UNet time per step with the UNet's forward replaced by ``zeros_like(sample)``: the
    framework's own cost without the big forward evicting the CPU caches between steps. (Flux
    transformers are called with ``hidden_states=`` by keyword.)"""
    import torch

    own = vars(unet).get("forward")
    unet.forward = lambda *args, **kwargs: (torch.zeros_like(args[0] if args else kwargs["hidden_states"]),)
    best = float("inf")
    try:
        for _ in range(tries):
            probe = LoopProbe(clock, sync)
            probe.wrap_loop(unet, scheduler)
            try:
                run()
            finally:
                probe.restore()
            best = min(best, probe.summary(steps)["non_unet_s"])
    finally:
        if own is None:
            del unet.forward
        else:
            unet.forward = own
    return best


def _caller(library: str, pipe: Any, opts: dict[str, Any]) -> Callable[[int], Any]:
    """``run(seed)``: one full text-to-image run, returning a float numpy image batch."""
    import torch

    common = {"prompt": PROMPT, "num_inference_steps": opts["steps"], "height": opts["side"], "width": opts["side"],
              "output_type": "np"}
    if opts["kind"] == "sd-controlnet":
        import numpy as np
        from PIL import Image

        pixels = np.random.default_rng(0).integers(0, 256, (opts["side"], opts["side"], 3), dtype=np.uint8)
        common["image"] = Image.fromarray(pixels)  # the control image (diffusers' argument name)
    if library == "ours":
        return lambda seed: pipe(**common, seed=seed, guidance_scale=opts["guidance"], progress=False).images
    generator = lambda seed: torch.Generator("cpu").manual_seed(seed)  # noqa: E731
    if library == "classic":
        return lambda seed: pipe(**common, generator=generator(seed), guidance_scale=opts["guidance"]).images
    if opts["kind"] == "flux":  # embedded guidance is an input of modular Flux
        return lambda seed: pipe(**common, generator=generator(seed), guidance_scale=opts["guidance"], output="images")
    return lambda seed: pipe(**common, generator=generator(seed), output="images")  # guidance: the guider component


def child(opts: dict[str, Any]) -> dict[str, float]:
    """One library on one folder: load, warm up, time runs, probe one run; returns the numbers.

    Meant to run in its own process (``--child``), so imports, caches and allocator state do not
    leak between libraries; ``--in-process`` calls it directly (a smoke test, not a measurement).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(opts["threads"])
    try:
        return _child(opts)
    finally:
        torch.set_num_threads(threads)


def _child(opts: dict[str, Any]) -> dict[str, float]:
    import numpy as np
    import torch

    device, library = opts["device"], opts["library"]
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = time.process_time if not cuda and opts["threads"] == 1 else time.perf_counter
    pipe, unet, scheduler = _load(library, opts["kind"], opts["folder"], device, getattr(torch, opts["dtype"]),
                                  opts["guidance"])
    run = _caller(library, pipe, opts)

    def timed(seed: int = opts["seed"]) -> tuple[float, Any]:
        sync()
        start = clock()
        image = run(seed)
        sync()
        return clock() - start, image

    first, image = timed()  # warm-up: kernels, allocator, lazy loading (ours loads on first use)
    runs = [timed()[0] for _ in range(opts["repeats"])]
    probe = LoopProbe(clock, sync)
    probe.wrap_loop(unet, scheduler)
    try:
        timed()
    finally:
        probe.restore()
    result: dict[str, Any] = {"first_s": first, "run_s": min(runs), "median_s": statistics.median(runs),
                              **probe.summary(opts["steps"])}
    result["null_non_unet_s"] = _null_unet_overhead(lambda: timed(), unet, scheduler, clock, sync, opts["steps"])
    if library == "ours":
        # Memoisation on, a new seed per call: the prompt encoding is reused, everything else runs
        # (with the same seed the decoder would be a hit too: small latents are keyed by content).
        pipe.graph.cache.enabled = True
        memo = [timed(opts["seed"] + 1 + i)[0] for i in range(opts["repeats"] + 1)][1:]  # call 1 fills the cache
        result["memo_s"] = min(memo)
    np.save(Path(opts["out"]), np.asarray(image, dtype=np.float32))
    return result


# -- the parent ----------------------------------------------------------------------------------
def measure(library: str, kind: str, size: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    opts = {"library": library, "kind": kind, "folder": str(folder), "device": args.device, "dtype": args.dtype,
            "threads": args.threads, "steps": args.steps, "guidance": args.guidance, "seed": 0,
            "side": IMAGE_SIDE[size], "repeats": args.repeats or DEFAULT_REPEATS[size],
            "out": str(folder / f"image-{library}.npy")}
    if args.in_process:
        return child(opts)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(opts)], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{library} {kind}/{size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: min(r[key] for r in rounds) for key in rounds[0]}


def bench(args: argparse.Namespace) -> list[tuple[str, str, dict[str, dict[str, float]], dict[str, float]]]:
    """Every (size, kind): best-of-rounds results per library, and each library's max |image - classic|."""
    import numpy as np

    rows = []
    for size in args.sizes:
        for kind in args.kinds:
            folder = pipeline_folder(Path(args.workdir), size, kind)
            libraries = LIBRARIES[kind]
            runs: dict[str, list[dict[str, float]]] = {lib: [] for lib in libraries}
            for _ in range(args.rounds):
                for lib in libraries:
                    runs[lib].append(measure(lib, kind, size, folder, args))
                    print(f"{size} {kind} {lib}: {runs[lib][-1]['run_s'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
            reference = np.load(folder / "image-classic.npy")
            diffs = {lib: float(np.abs(np.load(folder / f"image-{lib}.npy") - reference).max()) for lib in libraries}
            rows.append((size, kind, {lib: _best(r) for lib, r in runs.items()}, diffs))
    return rows


def print_tables(rows: list[tuple[str, str, dict[str, dict[str, float]], dict[str, float]]]) -> None:
    ms = lambda s: f"{s * 1e3:.1f}"  # noqa: E731
    print("\n| size | pipeline | ours (ms) | ours, memo on (ms) | diffusers classic (ms) | diffusers modular (ms) "
          "| ours / classic | ours / modular | max abs diff vs classic (ours; modular) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for size, kind, res, diffs in rows:
        ours, classic, modular = res["ours"], res["classic"], res.get("modular")
        mod_ms = ms(modular["run_s"]) if modular else "-"
        mod_ratio = f"{ours['run_s'] / modular['run_s']:.2f}x" if modular else "-"
        diff = f"{diffs['ours']:.1e}" + (f"; {diffs['modular']:.1e}" if modular else "")
        print(f"| {size} | {kind} | {ms(ours['run_s'])} | {ms(ours['memo_s'])} | {ms(classic['run_s'])} | {mod_ms} "
              f"| {ours['run_s'] / classic['run_s']:.2f}x | {mod_ratio} | {diff} |")
    print("\nPer denoise step (one instrumented run; the loop window runs from the first scale_model_input "
          "to the last scheduler.step; the last column: best of two runs with the UNet's forward replaced by "
          "zeros_like):\n")
    print("| size | pipeline | library | step (ms) | UNet (ms) | UNet calls | non-UNet (µs) "
          "| of which sampler (µs) | rest: framework + CFG (µs) | non-UNet, null UNet (µs) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for size, kind, res, _ in rows:
        for lib, r in res.items():
            print(f"| {size} | {kind} | {lib} | {r['step_s'] * 1e3:.2f} | {r['unet_s'] * 1e3:.2f} "
                  f"| {r['unet_calls']:.0f} "
                  f"| {r['non_unet_s'] * 1e6:.0f} | {r['scheduler_s'] * 1e6:.0f} "
                  f"| {(r['non_unet_s'] - r['scheduler_s']) * 1e6:.0f} | {r['null_non_unet_s'] * 1e6:.0f} |")
    steps = {(size, kind): res for size, kind, res, _ in rows}
    added = [(size, steps[(size, "sd")], steps[(size, "sd-controlnet")]) for size, kind, _, _ in rows
             if kind == "sd-controlnet" and (size, "sd") in steps]
    if added:
        print("\nTime one ControlNet adds per denoise step: non-UNet time per step of sd-controlnet minus sd (the "
              "ControlNet forward and the framework's cost around it; the UNet's own time, which the residuals "
              "do not change, is left out so its noise does not blur the figure; step time difference in brackets):\n")
        print("| size | ours (ms) | diffusers classic (ms) | ours / classic |")
        print("|---|---:|---:|---:|")
        for size, plain, control in added:
            cost = {lib: control[lib]["non_unet_s"] - plain[lib]["non_unet_s"] for lib in ("ours", "classic")}
            step = {lib: control[lib]["step_s"] - plain[lib]["step_s"] for lib in ("ours", "classic")}
            print(f"| {size} | {cost['ours'] * 1e3:.2f} ({step['ours'] * 1e3:.2f}) | {cost['classic'] * 1e3:.2f} "
                  f"({step['classic'] * 1e3:.2f}) | {cost['ours'] / cost['classic']:.2f}x |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,mid", help="comma list of tiny, mid")
    parser.add_argument("--kinds", default="sd,sdxl,flux,sd-controlnet", help="comma list of sd, sdxl, flux, sd-controlnet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on every side (default 1: the shared 2-core box oversubscribes at 2)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per process (default 5 tiny, 2 mid)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating process rounds; best kept")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "diffblocks-bench", "pipelines"))
    parser.add_argument("--quick", action="store_true", help="tiny only, 2 steps, 1 repeat, 1 round (smoke test)")
    parser.add_argument("--in-process", action="store_true",
                        help="run every library in this process (a smoke test of the script, not a measurement)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.sizes, args.steps, args.repeats, args.rounds = "tiny", 2, 1, 1
    args.sizes, args.kinds = args.sizes.split(","), args.kinds.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import torch

    repeats = args.repeats or " / ".join(f"{DEFAULT_REPEATS[size]} ({size})" for size in args.sizes)
    clock = "process CPU time" if args.device == "cpu" and args.threads == 1 else "wall time"
    print(f"{args.device} {args.dtype}, torch {torch.__version__}, threads {args.threads}, {args.steps} steps, "
          f"guidance {args.guidance}, best of {repeats} runs per process x {args.rounds} rounds "
          f"({clock}); "
          + ("ALL LIBRARIES IN ONE PROCESS (smoke test, not a measurement)" if args.in_process
             else "each library in its own process"), flush=True)
    print_tables(bench(args))


if __name__ == "__main__":
    main()
