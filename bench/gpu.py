"""The denoisers at real sizes on a GPU: ours vs diffusers, eager / compiled / step-cached.

    python bench/gpu.py                          # cuda, bf16 (Flux) / fp16 (UNets), all models
    python bench/gpu.py --models flux --steps 28 --out gpu.md
    python bench/gpu.py --smoke                  # CPU, toy sizes, fp32, eager + cached (the test)
    python bench/gpu.py --toy --device cpu --dtype float32 --steps 10   # + compiled, on a CPU
    python bench/gpu.py --mid --device cpu --dtype float32 --models flux # bench/pipelines.py's mid sizes

Random weights are built directly on the device (no download): SD 1.5's UNet at 512x512
(latents 64x64, CFG batch 2), SDXL's UNet at 1024x1024 (latents 128x128, CFG batch 2) and
FLUX.1-dev's transformer at 1024x1024 (4096 image tokens, 512 text tokens, embedded guidance).
diffusers' model is built from the config and ours takes its state dict, so both compute the same
function. Each variant runs ``--steps`` denoiser calls in a plain Euler loop (``x -= dt * pred``;
ours through a diffblocks graph, so the executor is included), best of ``--repeats`` after a
warm-up (which also pays any compile); wall time with CUDA synchronised.

Variants: ``diffusers eager``, ``diffusers compiled`` (``compile_repeated_blocks`` when the model
has it, else ``torch.compile`` of the model), ``diffusers FBC`` (Flux: ``FirstBlockCacheConfig``),
``ours eager``, ``ours compiled`` (``compile_regions``), ``ours cached`` (Flux: First-Block-Cache,
UNets: DeepCache N=3). "vs diffusers eager" is the max abs difference of the final latents to
diffusers' eager run; a cached run's difference is the cache's approximation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from diffblocks.blocks.function import block  # noqa: E402
from diffblocks.blocks.types import Latents, NoisePred, Timestep  # noqa: E402
from diffblocks.graph import Graph, Loop  # noqa: E402
from diffblocks.models.compiling import compile_regions  # noqa: E402
from diffblocks.models.flux import FluxTransformer2DModel  # noqa: E402
from diffblocks.models.unet_2d_condition import UNet2DConditionModel  # noqa: E402
from diffblocks.presets import families  # noqa: E402
from diffblocks.presets.stages.caching import with_step_cache  # noqa: E402

SD15 = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
        "sample_size": 64}
SDXL = {"block_out_channels": [320, 640, 1280], "layers_per_block": 2, "sample_size": 128,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": True,
        "cross_attention_dim": 2048, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816}
FLUX = {"guidance_embeds": True}  # diffusers' defaults are FLUX.1's sizes
#: model -> (config, latent side, text tokens, text width) at the real image size.
REAL = {"sd15": (SD15, 64, 77, 768), "sdxl": (SDXL, 128, 77, 2048), "flux": (FLUX, 64, 512, 4096)}
SMOKE = {
    "sd15": ({"block_out_channels": [32, 64], "cross_attention_dim": 32, "attention_head_dim": 8,
              "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
              "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 32}, 16, 7, 32),
    "sdxl": ({**SDXL, "block_out_channels": [32, 64, 64], "attention_head_dim": [2, 4, 8],
              "transformer_layers_per_block": [1, 1, 2], "cross_attention_dim": 64, "addition_time_embed_dim": 8,
              "projection_class_embeddings_input_dim": 32 + 48}, 16, 7, 64),
    "flux": ({"in_channels": 4, "num_layers": 2, "num_single_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 32,
              "axes_dims_rope": [4, 4, 8], "guidance_embeds": True}, 8, 6, 32),
}


def mid_sizes() -> dict[str, tuple[dict[str, Any], int, int, int]]:
    """bench/pipelines.py's mid-size denoisers at 192x192 (24x24 latents; Flux: 12x12 packed tokens)."""
    from bench.pipelines import MID_FLUX, MID_UNET_SD, MID_UNET_SDXL

    return {"sd15": (MID_UNET_SD, 24, 77, 768), "sdxl": (MID_UNET_SDXL, 24, 77, 1152), "flux": (MID_FLUX, 12, 512, 512)}


@block("bench_euler_step", version=1)
def euler_step(latents: Latents, noise_pred: NoisePred, t: Timestep) -> Latents:
    """``x - dt * pred`` with a fixed dt: the same arithmetic on both sides."""
    return latents - 0.05 * noise_pred


def loop_graph(denoiser: str, inputs: tuple[str, ...]) -> Graph:
    """``latents`` -> Loop(predict_noise | predict_flow -> euler) over ``timesteps``."""
    predict = "predict_flow" if denoiser == "transformer" else "predict_noise"
    sample = "hidden_states" if denoiser == "transformer" else "sample"
    body = Graph("body")
    body.add("predict", predict)
    body.add("step", "bench_euler_step")
    body.connect("predict.noise_pred", "step.noise_pred")
    body.expose_input("latents", f"predict.{sample}", "step.latents")
    body.expose_input("t", "predict.t", "step.t")
    for name in inputs:
        body.expose_input(name, f"predict.{name}")
    body.expose_output("latents", "step.latents")
    g = Graph("bench_loop")
    g.add("denoise", Loop(body, over="timesteps", item="t", carry={"latents": "latents"}))
    for name in (*inputs, "latents", "timesteps"):
        g.expose_input(name, f"denoise.{name}")
    g.expose_output("latents", "denoise.latents")
    return g.validate()


def build(name: str, sizes: dict, device: str, dtype: torch.dtype) -> tuple[Any, Any, dict[str, Any]]:
    """diffusers' model (random weights, on the device), ours with its state dict, the inputs."""
    import diffusers

    config, side, n_text, text_dim = sizes[name]
    cls, our_cls = ((diffusers.FluxTransformer2DModel, FluxTransformer2DModel) if name == "flux"
                    else (diffusers.UNet2DConditionModel, UNet2DConditionModel))
    torch.manual_seed(0)
    with torch.device(device):
        theirs = cls(**config).to(dtype).eval()
        ours = our_cls({k: v for k, v in theirs.config.items() if not k.startswith("_")}).to(dtype).eval()
    ours.load_state_dict(theirs.state_dict())
    g = torch.Generator(device).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    if name == "flux":
        n_img = side * side
        ids = torch.stack(torch.meshgrid(torch.arange(1), torch.arange(side), torch.arange(side), indexing="ij"),
                          dim=-1).reshape(-1, 3)
        inputs = {"latents": randn(1, n_img, theirs.config.in_channels), "encoder_hidden_states": randn(1, n_text, text_dim),
                  "pooled_projections": randn(1, theirs.config.pooled_projection_dim),
                  "txt_ids": torch.zeros(n_text, 3, device=device, dtype=dtype), "img_ids": ids.to(device, dtype),
                  "guidance": torch.full((1,), 3.5, device=device, dtype=dtype)}
    else:
        inputs = {"latents": randn(2, 4, side, side), "encoder_hidden_states": randn(2, n_text, text_dim)}
        if config.get("addition_embed_type") == "text_time":
            pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
            inputs["text_embeds"] = randn(2, pooled)
            inputs["time_ids"] = torch.tensor([[side * 8.0, side * 8, 0, 0, side * 8, side * 8]] * 2, device=device,
                                              dtype=dtype)
    return theirs, ours, inputs


def diffusers_loop(model: Any, inputs: dict[str, Any], timesteps: torch.Tensor, flux: bool) -> Callable[[], torch.Tensor]:
    extra = {k: v for k, v in inputs.items() if k != "latents"}

    def run() -> torch.Tensor:
        x = inputs["latents"]
        for t in timesteps:
            if flux:
                with model.cache_context("cond"):
                    pred = model(hidden_states=x, timestep=(t / 1000).expand(x.shape[0]).to(x.dtype),
                                 return_dict=False, **extra)[0]
            else:
                added = ({"text_embeds": extra["text_embeds"], "time_ids": extra["time_ids"]}
                         if "text_embeds" in extra else None)
                pred = model(x, t, encoder_hidden_states=extra["encoder_hidden_states"], added_cond_kwargs=added,
                             return_dict=False)[0]
            x = x - 0.05 * pred
        return x
    return run


def ours_loop(model: Any, inputs: dict[str, Any], timesteps: torch.Tensor, flux: bool,
              cache: tuple[str, dict[str, Any]] | None) -> Callable[[], torch.Tensor]:
    names = tuple(k for k in inputs if k != "latents")
    graph = loop_graph("transformer" if flux else "unet", names)
    if cache is not None:
        with_step_cache(graph, cache[0], **cache[1])
    plan = graph.compile(cache=False)
    components = {"transformer" if flux else "unet": model}
    return lambda: plan.run({**inputs, "timesteps": timesteps}, components, progress=False, cache=False)["latents"]


def timed(run: Callable[[], torch.Tensor], repeats: int, device: str) -> tuple[float, torch.Tensor]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = run()  # warm-up (and compile)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = run()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_model(name: str, args: argparse.Namespace, dtype: torch.dtype) -> list[str]:
    sizes = SMOKE if args.toy else mid_sizes() if args.mid else REAL
    theirs, ours, inputs = build(name, sizes, args.device, dtype)
    flux = name == "flux"
    timesteps = torch.linspace(1000, 1000 / args.steps, args.steps, device=args.device)
    if not flux:
        timesteps = timesteps.round().long()
    cache = ("fbcache", {"threshold": 0.08}) if flux else ("deepcache", {"interval": 3})
    variants: dict[str, Callable[[], Callable[[], torch.Tensor]]] = {
        "diffusers eager": lambda: diffusers_loop(theirs, inputs, timesteps, flux),
        "ours eager": lambda: ours_loop(ours, inputs, timesteps, flux, None),
        f"ours {cache[0]}": lambda: ours_loop(ours, inputs, timesteps, flux, cache),
    }
    if flux:
        def diffusers_fbc() -> Callable[[], torch.Tensor]:
            from diffusers.hooks import FirstBlockCacheConfig

            theirs.enable_cache(FirstBlockCacheConfig(threshold=0.08))  # disabled after its timing
            return diffusers_loop(theirs, inputs, timesteps, flux)
        variants["diffusers FBC 0.08"] = diffusers_fbc
    if args.compile:
        def diffusers_compiled() -> Callable[[], torch.Tensor]:
            if hasattr(theirs, "compile_repeated_blocks") and getattr(theirs, "_repeated_blocks", None):
                theirs.compile_repeated_blocks()
            else:
                theirs.compile()
            return diffusers_loop(theirs, inputs, timesteps, flux)

        def ours_compiled() -> Callable[[], torch.Tensor]:
            compile_regions(ours)
            return ours_loop(ours, inputs, timesteps, flux, None)
        variants["diffusers compiled"] = diffusers_compiled
        variants["ours compiled"] = ours_compiled
    rows, reference = [], None
    with torch.no_grad():
        for label, make in variants.items():
            seconds, out = timed(make(), args.repeats, args.device)
            if label.startswith("diffusers FBC"):
                theirs.disable_cache()
            reference = out.float() if reference is None else reference
            diff = (out.float() - reference).abs().max().item()
            rows.append(f"| {name} | {label} | {seconds:.3f} | {seconds / args.steps * 1000:.1f} | {diff:.2e} |")
    del theirs, ours
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sd15", "sdxl", "flux"], choices=sorted(REAL))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, help="float16 / bfloat16 (default: fp16 UNets, bf16 Flux)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--toy", action="store_true", help="toy model sizes (e.g. to try compile on a CPU)")
    parser.add_argument("--mid", action="store_true", help="bench/pipelines.py's mid sizes (CPU-sized)")
    parser.add_argument("--smoke", action="store_true", help="--toy on the CPU, fp32, 3 steps, no compile")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.toy, args.device, args.steps, args.repeats, args.compile, args.dtype = True, "cpu", 3, 1, False, "float32"
    if args.device == "cpu":
        torch.set_num_threads(1)  # a shared CPU: one thread, no spinning workers
    families()  # registers predict_noise / predict_flow and the cache blocks
    header = [f"torch {torch.__version__}, device {args.device}"
              + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
              + f", {args.steps} steps, best of {args.repeats}", "",
              "| model | variant | time (s) | ms / step | max abs diff vs diffusers eager |", "|---|---|---|---|---|"]
    rows = []
    for name in args.models:
        dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if name == "flux" else torch.float16)
        rows += bench_model(name, args, dtype)
        print("\n".join(rows[-1:]), flush=True)
    text = "\n".join(header + rows)
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
