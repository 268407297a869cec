"""Flux transformer and VAE: ours vs diffusers on identical random weights.

    python bench/models_flux_vae.py [--kind flux,vae] [--size tiny,mid] [--repeats 5]
    python bench/models_flux_vae.py --size flux --flux-layers 1,2 --tokens 8,16 --pixels 128  # CPU, real widths
    python bench/models_flux_vae.py --device cuda --dtype bfloat16 --size flux --flux-layers 4,8  # GPU

For each (kind, size) a diffusers model with seeded random weights is saved once; then each
library runs in its OWN process: ``from_pretrained`` (timed), then the forward pass (median of
``--repeats`` after a warm-up), for ``--rounds`` alternating process pairs (best round kept: a
shared machine adds noise in one direction only). The table gives our/diffusers forward time,
load time, peak RSS (the process high-water mark), load RSS (that mark at the end of loading
minus the RSS after imports), peak GPU memory, and the max abs difference of the two outputs.
The VAE's forward is ``decode`` (what a pipeline runs). Same layout as bench/models.py, which
delegates its ``flux`` and ``vae`` kinds here.
Sizes: ``tiny`` (test configs), ``mid`` (CPU-friendly: reduced widths and depths), ``flux``
(Flux.1 block dimensions with ``--flux-layers`` double/single blocks, and the SDXL/Flux VAE
widths at 1024 px: meant for a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
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
                tokens: tuple[int, int] | None = None, pixels: int | None = None) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    if kind == "vae":
        side = (pixels or VAE_PIXELS[size]) // 2 ** (len(config["block_out_channels"]) - 1)
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


def rss_mb(field: str = "VmRSS") -> float:
    """Current RSS, or with ``VmHWM`` this process's peak (``ru_maxrss`` would inherit the
    parent's peak through fork + exec, and the parent built the reference model)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(library: str, kind: str, size: str, folder: str, args: argparse.Namespace) -> None:
    """Runs in its own process: load, then time the forward; prints one JSON line.

    A single-threaded CPU forward is timed in process CPU time, which time slices lost to other
    processes on a shared machine do not inflate; anything else in wall time.
    """
    device, dtype, repeats = args.device, getattr(torch, args.dtype), args.repeats
    clock = time.process_time if device == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    cls = model_class(library, kind)
    config = json.loads((Path(folder) / "config.json").read_text())
    inputs = make_inputs(kind, size, config, device, dtype, _tokens(args), args.pixels)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    base_rss = rss_mb()

    start = time.perf_counter()
    if library == "ours":  # tensors are read straight onto the device
        model = cls.from_pretrained(folder, torch_dtype=dtype, device=device)
    else:  # diffusers' usual path: load on CPU, then move
        model = cls.from_pretrained(folder, torch_dtype=dtype).to(device).eval()
    sync()
    load_s = time.perf_counter() - start
    load_rss = rss_mb("VmHWM")

    if kind == "vae":
        forward = torch.compile(model.decode) if args.compile else model.decode
    else:
        forward = torch.compile(model) if args.compile else model
    times = []
    with torch.no_grad():
        for _ in range(repeats + (3 if args.compile else 1)):  # first calls: kernels, allocator, compile
            sync()
            start = clock()
            out = forward(**inputs)[0]
            sync()
            times.append(clock() - start)
    torch.save(out.float().cpu(), Path(folder) / f"out-{library}.pt")
    print(json.dumps({
        "load_s": load_s,
        "forward_s": statistics.median(times[-repeats:]),
        "peak_rss_mb": rss_mb("VmHWM"),
        "load_rss_mb": load_rss - base_rss,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
    }))


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
           *(["--pixels", str(args.pixels)] if args.pixels else []),
           *(["--compile"] if args.compile else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)} if args.threads else None
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{library} {kind}/{size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: min(r[key] for r in rounds) for key in rounds[0]}


def bench(kind: str, size: str, layers: tuple[int, int] | None, args: argparse.Namespace) -> None:
    """One table row: save the reference once, measure both libraries in alternating processes."""
    config = vae_config(size) if kind == "vae" else flux_config(size, layers)
    with tempfile.TemporaryDirectory() as tmp:
        params = save_reference(kind, config, Path(tmp), args.device, getattr(torch, args.dtype))
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "diffusers": []}
        for _ in range(args.rounds):
            for library in runs:
                runs[library].append(measure(library, kind, size, Path(tmp), args))
        ours, ref = best_of(runs["ours"]), best_of(runs["diffusers"])
        diff = (torch.load(Path(tmp) / "out-ours.pt") - torch.load(Path(tmp) / "out-diffusers.pt")).abs().max()
    ratio = lambda key: ours[key] / ref[key] if ref[key] else float("nan")  # noqa: E731
    print(f"| {kind} | {size} | {params / 1e6:.1f}M "
          f"| {ours['forward_s'] * 1e3:.1f} / {ref['forward_s'] * 1e3:.1f} | {ratio('forward_s'):.2f}x "
          f"| {ours['load_s']:.3f} / {ref['load_s']:.3f} | {ratio('load_s'):.2f}x "
          f"| {ours['peak_rss_mb']:.0f} / {ref['peak_rss_mb']:.0f} | {ratio('peak_rss_mb'):.2f}x "
          f"| {ours['load_rss_mb']:.0f} / {ref['load_rss_mb']:.0f} "
          f"| {ours['gpu_peak_mb']:.0f} / {ref['gpu_peak_mb']:.0f} | {diff.item():.2e} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="flux,vae")
    parser.add_argument("--size", default="tiny,mid", help="tiny, mid, flux")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternating process pairs; best kept")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the children (default: 1 on CPU, torch's default otherwise)")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd forwards (GPU)")
    parser.add_argument("--flux-layers", default="", help="double,single block counts, e.g. 4,8")
    parser.add_argument("--tokens", default="", help="Flux image grid side and text length, e.g. 8,16")
    parser.add_argument("--pixels", type=int, default=0, help="VAE output side in pixels (default: per size)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is None:
        args.threads = 1 if args.device == "cpu" else 0
    if args.child:
        child(*args.child, args)
        return

    layers = tuple(int(n) for n in args.flux_layers.split(",")) if args.flux_layers else None
    clock_name = "process CPU time" if args.device == "cpu" and args.threads == 1 else "wall time"
    print(f"{args.device} {args.dtype}, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
          f"forward = median of {args.repeats} ({clock_name}), best of {args.rounds} rounds; "
          "each library in its own process" + (", torch.compile" if args.compile else ""))
    print("| model | size | params | forward ours / diffusers (ms) | ratio | load ours / diffusers (s) | ratio "
          "| peak RSS ours / diffusers (MB) | ratio | load RSS ours / diffusers (MB) | GPU peak ours / diffusers (MB) "
          "| max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kind.split(","):
        for size in args.size.split(","):
            bench(kind, size, layers, args)


if __name__ == "__main__":
    main()
