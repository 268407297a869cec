"""Models: ours vs diffusers on identical random weights (forward time, load time, peak memory).

    python bench/models.py                                   # UNet tiny + mid on CPU
    python bench/models.py --kind unet --size sd15,sdxl --device cuda --dtype float16
    python bench/models.py --kind unet,flux,vae --size tiny,mid   # flux/vae: bench/models_flux_vae.py

For each (kind, size) a diffusers model with seeded random weights is saved once; then each
library runs in its OWN process: ``from_pretrained`` (timed), then the forward pass (fastest of
``--repeats`` after a warm-up), repeated for ``--rounds`` alternating processes (best round kept:
a shared machine adds noise in one direction only). Peak RSS is the process's high-water
mark; "load RSS" is that mark minus the RSS after imports (diffusers' import alone is large).
UNet sizes: ``tiny`` (test config), ``mid`` (SD 1.5 layout at 40 % width, CPU-friendly),
``sd15`` and ``sdxl`` (the real layouts: for a GPU). Kinds ``flux`` and ``vae`` are delegated
to bench/models_flux_vae.py with the same options.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

SD15_LAYOUT: dict[str, Any] = {
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
}
UNET_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": [32, 64], "layers_per_block": 2, "cross_attention_dim": 32, "attention_head_dim": 8,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    },
    "mid": {**SD15_LAYOUT, "block_out_channels": [128, 256, 512, 512]},
    "sd15": {**SD15_LAYOUT, "block_out_channels": [320, 640, 1280, 1280], "sample_size": 64},
    "sdxl": {
        "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "sample_size": 128,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": True,
        "cross_attention_dim": 2048, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
}
# (batch, latent side): two for classifier-free guidance; 512 px for SD 1.5, 1024 px for SDXL.
UNET_INPUTS = {"tiny": (2, 32), "mid": (2, 32), "sd15": (2, 64), "sdxl": (2, 128)}


def unet_inputs(size: str, config: dict[str, Any], device: str, dtype: torch.dtype) -> dict[str, Any]:
    batch, side = UNET_INPUTS[size]
    g = torch.Generator().manual_seed(0)
    inputs: dict[str, Any] = {
        "sample": torch.randn(batch, config.get("in_channels", 4), side, side, generator=g),
        "timestep": torch.tensor([500] * batch),
        "encoder_hidden_states": torch.randn(batch, 77, config["cross_attention_dim"], generator=g),
    }
    if config.get("addition_embed_type") == "text_time":
        pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=g).to(device, dtype),
            "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * batch, device=device),
        }
    for key in ("sample", "encoder_hidden_states"):
        inputs[key] = inputs[key].to(device, dtype)
    inputs["timestep"] = inputs["timestep"].to(device)
    return inputs


# glibc serves large blocks with mmap until frees raise its (dynamic) threshold. A process that
# imported diffusers has already raised it; a lean one has not and page-faults every activation
# of every forward (measured: 3,552 faults and +20% time per tiny-UNet forward). Both children
# start at glibc's own warmed-up values, so the table compares model code, not import history.
WARM_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}


def model_class(library: str) -> type:
    if library == "ours":
        from diffblocks.models import UNet2DConditionModel

        return UNet2DConditionModel
    from diffusers import UNet2DConditionModel  # the reference, bench-only

    return UNet2DConditionModel


def rss_mb(field: str = "VmRSS") -> float:
    """Current RSS, or with ``VmHWM`` this process's peak. (``ru_maxrss`` would not do: on Linux
    it carries over the parent's peak through fork + exec.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(library: str, size: str, folder: str, device: str, dtype_name: str, repeats: int, compile_: bool) -> None:
    """Runs in its own process: load, then time the forward; prints one JSON line.

    On a single-threaded CPU run load and forward are timed in process CPU time (user + system),
    which time slices lost to other processes on a shared machine do not inflate; otherwise in
    wall time.
    """
    dtype = getattr(torch, dtype_name)
    clock = time.process_time if device == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    cls = model_class(library)
    config = json.loads((Path(folder) / "config.json").read_text())
    inputs = unet_inputs(size, config, device, dtype)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    base_rss = rss_mb()

    start = clock()
    if library == "ours":
        model = cls.from_pretrained(folder, torch_dtype=dtype, device=device)
    else:  # diffusers' usual path: load on CPU, then move
        model = cls.from_pretrained(folder, torch_dtype=dtype).to(device).eval()
    sync()
    load_s = clock() - start
    load_rss = rss_mb("VmHWM")

    forward = torch.compile(model) if compile_ else model
    times = []
    with torch.no_grad():
        for _ in range(repeats + (3 if compile_ else 1)):  # first calls: kernels, allocator, compile
            sync()
            start = clock()
            out = forward(**inputs, return_dict=False)[0]
            sync()
            times.append(clock() - start)
    torch.save(out.float().cpu(), Path(folder) / f"out-{library}.pt")
    print(json.dumps({
        "load_s": load_s,
        "forward_s": min(times[-repeats:]),
        "peak_rss_mb": rss_mb("VmHWM"),
        "load_rss_mb": load_rss - base_rss,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
    }))


def save_reference(config: dict[str, Any], folder: Path, device: str, dtype: torch.dtype) -> int:
    """Seeded random diffusers model saved in ``dtype``; returns its parameter count."""
    torch.manual_seed(0)
    with torch.device(device):  # build big models straight on the GPU
        model = model_class("diffusers")(**config)
    model.to(dtype).save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return count


def measure(library: str, size: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", library, size, str(folder), args.device, args.dtype,
           str(args.repeats), str(int(args.compile))]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if not args.raw_malloc:
        env.update(WARM_MALLOC)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{library} unet/{size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: min(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="unet", help="comma list of unet, flux, vae")
    parser.add_argument("--size", default="tiny,mid", help=f"UNet sizes: {', '.join(UNET_SIZES)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="alternating process pairs; best kept")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the children (default: 1 on CPU, torch's default otherwise)")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd forwards (GPU)")
    parser.add_argument("--raw-malloc", action="store_true", help="children keep glibc's cold malloc thresholds")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.threads is None:
        args.threads = 1 if args.device == "cpu" else 0
    if args.child:
        library, size, folder, device, dtype, repeats, compile_ = args.child
        child(library, size, folder, device, dtype, int(repeats), compile_ == "1")
        return

    kinds = args.kind.split(",")
    others = [k for k in kinds if k != "unet"]
    if "unet" in kinds:
        bench_unet(args)
    if others:  # Flux and the VAE live in their own script (same options, same table)
        cmd = [sys.executable, str(Path(__file__).with_name("models_flux_vae.py")), "--kind", ",".join(others),
               "--size", args.size, "--device", args.device, "--dtype", args.dtype, "--repeats", str(args.repeats), *rest]
        subprocess.run(cmd, check=True)


def bench_unet(args: argparse.Namespace) -> None:
    dtype = getattr(torch, args.dtype)
    clock_name = "process CPU time" if args.device == "cpu" and args.threads == 1 else "wall time"
    print(f"{args.device} {args.dtype}, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
          f"times in {clock_name}; forward = fastest of {args.repeats}, best of {args.rounds} rounds; "
          "each library in its own process" + ("" if args.raw_malloc else ", warm malloc thresholds")
          + (", torch.compile" if args.compile else ""))
    print("| model | size | params | forward ours / diffusers (ms) | ratio | load ours / diffusers (s) | ratio "
          "| peak RSS ours / diffusers (MB) | ratio | load RSS ours / diffusers (MB) | GPU peak ours / diffusers (MB) "
          "| max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.size.split(","):
        config = UNET_SIZES[size]
        with tempfile.TemporaryDirectory() as tmp:
            params = save_reference(config, Path(tmp), args.device, dtype)
            runs: dict[str, list[dict[str, float]]] = {"ours": [], "diffusers": []}
            for _ in range(args.rounds):
                for library in runs:
                    runs[library].append(measure(library, size, Path(tmp), args))
            ours, ref = best_of(runs["ours"]), best_of(runs["diffusers"])
            diff = (torch.load(Path(tmp) / "out-ours.pt") - torch.load(Path(tmp) / "out-diffusers.pt")).abs().max()
        ratio = lambda key: ours[key] / ref[key] if ref[key] else float("nan")  # noqa: E731
        print(f"| unet | {size} | {params / 1e6:.1f}M "
              f"| {ours['forward_s'] * 1e3:.1f} / {ref['forward_s'] * 1e3:.1f} | {ratio('forward_s'):.2f}x "
              f"| {ours['load_s']:.3f} / {ref['load_s']:.3f} | {ratio('load_s'):.2f}x "
              f"| {ours['peak_rss_mb']:.0f} / {ref['peak_rss_mb']:.0f} | {ratio('peak_rss_mb'):.2f}x "
              f"| {ours['load_rss_mb']:.0f} / {ref['load_rss_mb']:.0f} "
              f"| {ours['gpu_peak_mb']:.0f} / {ref['gpu_peak_mb']:.0f} | {diff.item():.2e} |", flush=True)


if __name__ == "__main__":
    main()
