"""Flux transformer and VAE: ours vs diffusers on identical random weights.

    python bench/models_flux_vae.py [--kind flux,vae] [--size tiny,mid] [--repeats 5]
    python bench/models_flux_vae.py --size flux --flux-layers 1,1 --tokens 8,16 --threads 1  # CPU load test
    python bench/models_flux_vae.py --device cuda --dtype bfloat16 --size flux   # on a GPU machine

For each (kind, size) a diffusers model with seeded random weights is saved once; then each
library runs in its OWN process: ``from_pretrained`` (timed), then the forward pass (median of
``repeats`` after a warm-up). The table gives our/diffusers ratios of forward time, load time and
peak RSS (and peak GPU memory on CUDA). The VAE's forward is ``decode`` (what a pipeline runs).
Sizes: ``tiny`` (test configs), ``mid`` (CPU-friendly, real layer widths for the VAE), ``flux``
(Flux.1 block dimensions with ``--flux-layers`` double/single blocks, and the SDXL/Flux VAE
widths at 1024 px: meant for a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

FLUX_BASE = dict(patch_size=1, in_channels=64, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                 axes_dims_rope=(4, 4, 8), guidance_embeds=True),
    "mid": {**FLUX_BASE, "num_layers": 2, "num_single_layers": 4, "attention_head_dim": 64,
            "num_attention_heads": 4, "joint_attention_dim": 256, "pooled_projection_dim": 128,
            "axes_dims_rope": (16, 24, 24)},
    "flux": {**FLUX_BASE, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
             "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768},
}
# (image tokens per side, text tokens): 1024 px images pack to 64x64 tokens, T5 gives 512.
FLUX_TOKENS = {"tiny": (8, 8), "mid": (32, 64), "flux": (64, 512)}

VAE_BLOCKS = ("DownEncoderBlock2D", "UpDecoderBlock2D")
VAE_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(block_out_channels=(32, 64), latent_channels=4, layers_per_block=1, sample_size=32),
    "mid": dict(block_out_channels=(64, 128, 128, 128), latent_channels=4, layers_per_block=2, sample_size=256),
    "flux": dict(block_out_channels=(128, 256, 512, 512), latent_channels=16, layers_per_block=2,
                 sample_size=1024, use_quant_conv=False, use_post_quant_conv=False),
}
VAE_PIXELS = {"tiny": 64, "mid": 256, "flux": 1024}


def vae_config(size: str) -> dict[str, Any]:
    config = VAE_SIZES[size]
    levels = len(config["block_out_channels"])
    return {**config, "down_block_types": (VAE_BLOCKS[0],) * levels, "up_block_types": (VAE_BLOCKS[1],) * levels}


def flux_config(size: str, layers: tuple[int, int] | None) -> dict[str, Any]:
    config = dict(FLUX_SIZES[size])
    if layers is not None:
        config["num_layers"], config["num_single_layers"] = layers
    return config


def make_inputs(kind: str, size: str, config: dict[str, Any], device: str, dtype: torch.dtype,
                tokens: tuple[int, int] | None = None) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    if kind == "vae":
        side = VAE_PIXELS[size] // 2 ** (len(config["block_out_channels"]) - 1)
        return {"z": torch.randn(1, config["latent_channels"], side, side, generator=g).to(device, dtype)}
    grid, text = tokens or FLUX_TOKENS[size]
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()
    return dict(
        hidden_states=torch.randn(1, grid * grid, config["in_channels"], generator=g).to(device, dtype),
        encoder_hidden_states=torch.randn(1, text, config["joint_attention_dim"], generator=g).to(device, dtype),
        pooled_projections=torch.randn(1, config["pooled_projection_dim"], generator=g).to(device, dtype),
        timestep=torch.tensor([0.5], device=device, dtype=dtype),
        img_ids=img_ids.to(device), txt_ids=torch.zeros(text, 3, device=device),
        guidance=torch.tensor([3.5], device=device, dtype=dtype) if config["guidance_embeds"] else None,
        return_dict=False,
    )


def model_class(library: str, kind: str) -> type:
    name = {"vae": "AutoencoderKL", "flux": "FluxTransformer2DModel"}[kind]
    if library == "ours":
        import diffblocks.models

        return getattr(diffblocks.models, name)
    import diffusers  # the reference, bench-only

    diffusers.utils.logging.set_verbosity_error()  # its dtype-cast advice is noise here
    return getattr(diffusers, name)


def _tokens(args: argparse.Namespace) -> tuple[int, int] | None:
    return tuple(int(n) for n in args.tokens.split(",")) if args.tokens else None


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(library: str, kind: str, size: str, folder: str, args: argparse.Namespace) -> None:
    """Runs in its own process: load, then time the forward; prints one JSON line."""
    device, dtype, repeats = args.device, getattr(torch, args.dtype), args.repeats
    cls = model_class(library, kind)
    config = json.loads((Path(folder) / "config.json").read_text())
    inputs = make_inputs(kind, size, config, device, dtype, _tokens(args))
    base_rss = rss_mb()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    start = time.perf_counter()
    model = cls.from_pretrained(folder, torch_dtype=dtype).to(device).eval()
    sync()
    load_s = time.perf_counter() - start
    run = (lambda: model.decode(**inputs)) if kind == "vae" else (lambda: model(**inputs))
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first call warms up kernels and the allocator
            sync()
            start = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - start)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    print(json.dumps(dict(load_s=load_s, forward_s=statistics.median(times[1:]), peak_rss_mb=peak_rss,
                          rss_delta_mb=peak_rss - base_rss, gpu_peak_mb=gpu)))


def save_reference(kind: str, config: dict[str, Any], folder: Path, device: str, dtype: torch.dtype) -> int:
    """Seeded random diffusers model saved in ``dtype``; returns its parameter count."""
    torch.manual_seed(0)
    with torch.device(device):  # build big models straight on the GPU
        model = model_class("diffusers", kind)(**config)
    (model if dtype == torch.float32 else model.to(dtype)).save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return count


def measure(library: str, kind: str, size: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", library, kind, size, str(folder), "--device", args.device,
           "--dtype", args.dtype, "--repeats", str(args.repeats), "--tokens", args.tokens,
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{library} {kind}/{size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="flux,vae")
    parser.add_argument("--size", default="tiny,mid")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flux-layers", default="", help="double,single block counts, e.g. 4,8")
    parser.add_argument("--tokens", default="", help="Flux image grid side and text length, e.g. 8,16")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: torch's default)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(*args.child, args)
        return

    layers = tuple(int(n) for n in args.flux_layers.split(",")) if args.flux_layers else None
    dtype = getattr(torch, args.dtype)
    threads = args.threads or torch.get_num_threads()
    print(f"{args.device} {args.dtype}, torch {torch.__version__}, {threads} CPU thread(s), forward = median of "
          f"{args.repeats}, each library in its own process")
    print("| model | size | params | forward ours / diffusers (ms) | ratio | load ours / diffusers (s) | ratio "
          "| peak RSS ours / diffusers (MB) | ratio | GPU peak ours / diffusers (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kind.split(","):
        for size in args.size.split(","):
            config = vae_config(size) if kind == "vae" else flux_config(size, layers)
            with tempfile.TemporaryDirectory() as tmp:
                params = save_reference(kind, config, Path(tmp), args.device, dtype)
                ours = measure("ours", kind, size, Path(tmp), args)
                ref = measure("diffusers", kind, size, Path(tmp), args)
            ratio = lambda key: ours[key] / ref[key] if ref[key] else float("nan")  # noqa: E731
            print(f"| {kind} | {size} | {params / 1e6:.1f}M "
                  f"| {ours['forward_s'] * 1e3:.1f} / {ref['forward_s'] * 1e3:.1f} | {ratio('forward_s'):.2f}x "
                  f"| {ours['load_s']:.2f} / {ref['load_s']:.2f} | {ratio('load_s'):.2f}x "
                  f"| {ours['peak_rss_mb']:.0f} / {ref['peak_rss_mb']:.0f} | {ratio('peak_rss_mb'):.2f}x "
                  f"| {ours['gpu_peak_mb']:.0f} / {ref['gpu_peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
