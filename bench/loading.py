"""Loading benchmark: time and peak RSS to load a whole SD pipeline folder, diffblocks vs diffusers.

Each measurement runs in a fresh Python process (so caches, allocator state and imports do
not leak between the two libraries); runs alternate between the libraries and the median
is reported. Inside a child, every class the load uses is imported first (timed apart),
then the clock covers only the load call.

    diffblocks: ComponentsManager.from_pretrained(folder).load()   (every component)
    diffusers:  DiffusionPipeline.from_pretrained(folder)

Folders are built once (random weights, diffusers' save_pretrained) under --workdir:
``tiny`` is the test-suite pipeline; ``mid`` is an SD-shaped pipeline at a fraction of
SD 1.5's width (UNet channels 128-256-512-512, the full SD VAE, a 6-layer 512-wide CLIP).

    python bench/loading.py                      # tiny + mid, 3 repeats
    python bench/loading.py --sizes tiny --repeats 5

LoRA rows (``--lora-sizes``, default mid): time and peak-RSS growth to load a rank-16 LoRA on
every attention and feed-forward linear of the (already loaded) UNet, ours
(``ComponentsManager.load_lora_weights``) vs diffusers (``UNet2DConditionModel.load_lora_adapter``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- building the folders (parent process) -------------------------------------------------------
def _save_mid_sd(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(ROOT))
    from tests.components.tiny_pipelines import clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, cross_attention_dim=512,
        attention_head_dim=8, sample_size=64,
    )
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], latent_channels=4, sample_size=512, layers_per_block=2,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    )
    tok = clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=6, vocab_size=49408,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    ))
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tok, scheduler=DDIMScheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))


def build(size: str, workdir: Path) -> Path:
    folder = workdir / f"sd-{size}"
    if (folder / "model_index.json").is_file():
        return folder
    if size == "tiny":
        sys.path.insert(0, str(ROOT))
        from tests.components.tiny_pipelines import save_pipeline

        save_pipeline("sd", folder)
    elif size == "mid":
        _save_mid_sd(folder)
    else:
        raise SystemExit(f"unknown size '{size}' (choose tiny or mid)")
    return folder


# -- one measurement (child process) -------------------------------------------------------------
def _rss_mb() -> float:
    """Peak resident set of this process so far (VmHWM).

    Not ``getrusage``'s ru_maxrss: Linux carries that across fork/exec, so a child would
    report the parent's peak (the parent built a model).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _import_classes(library: str, folder: str) -> None:
    """Import every class the load will use, so the timed load measures loading, not imports."""
    index = json.loads((Path(folder) / "model_index.json").read_text())
    hints = [(v[0], v[1]) for k, v in index.items() if isinstance(v, list) and v[0] and not k.startswith("_")]
    if library == "diffblocks":
        from diffblocks.registry.components import resolve_component_class

        for hint in hints:
            resolve_component_class(*hint)
    else:
        import importlib

        import diffusers

        getattr(diffusers, index["_class_name"])
        for lib, name in hints:
            getattr(importlib.import_module(lib), name)


def child(library: str, folder: str) -> None:
    t0 = time.perf_counter()
    _import_classes(library, folder)
    import_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    t1 = time.perf_counter()
    if library == "diffblocks":
        from diffblocks.components import ComponentsManager

        objects = ComponentsManager.from_pretrained(folder).load()
    else:
        from diffusers import DiffusionPipeline

        objects = DiffusionPipeline.from_pretrained(folder).components
    load_s = time.perf_counter() - t1
    peak = _rss_mb()
    # safetensors weights are memory-mapped: pages count once read. Read every weight once
    # (what the first denoising step does) and take the peak again.
    import torch

    modules = [o for o in objects.values() if isinstance(o, torch.nn.Module)]
    params = sum(p.numel() for m in modules for p in m.parameters())
    t2 = time.perf_counter()
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                t.sum()
    touch_s = time.perf_counter() - t2
    print(json.dumps({"import_s": import_s, "load_s": load_s, "touch_s": touch_s, "rss_before_mb": rss_before,
                      "peak_rss_mb": peak, "touched_rss_mb": _rss_mb(), "params": params}))


def measure(library: str, folder: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "DIFFUSERS_VERBOSITY": "error"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", library, "--folder", str(folder)],
        capture_output=True, text=True, env=env, cwd=str(ROOT), check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{library} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- LoRA loading rows (self-contained) ------------------------------------------------------------
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")


def _save_lora(folder: Path, rank: int = 16) -> Path:
    """A diffusers-layout LoRA for the folder's UNet (random A and B), written once beside it."""
    path = folder / f"lora-r{rank}.safetensors"
    if path.is_file():
        return path
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet")
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LORA_TARGETS):
            state[f"unet.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=gen) * 0.01
            state[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=gen) * 0.01
    save_file(state, str(path))
    return path


def lora_child(library: str, folder: str, lora: str) -> None:
    if library == "diffblocks":
        from diffblocks.components import ComponentsManager

        manager = ComponentsManager.from_pretrained(folder, names=["unet"], share=False)
        manager["unet"]
    else:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    import peft  # noqa: F401  (both sides use peft: import it before the clock)

    rss_before = _rss_mb()
    t0 = time.perf_counter()
    if library == "diffblocks":
        manager.load_lora_weights(lora, adapter_name="bench")
    else:
        unet.load_lora_adapter(lora, prefix="unet", adapter_name="bench")
    load_s = time.perf_counter() - t0
    print(json.dumps({"load_s": load_s, "rss_before_mb": rss_before, "peak_rss_mb": _rss_mb()}))


def lora_rows(sizes: list[str], workdir: Path, repeats: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}
    print("\n| UNet | LoRA file | diffblocks load s | diffusers load s | ratio | peak RSS growth MiB, ours / diffusers |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        folder = build(size, workdir)
        lora = _save_lora(folder)
        runs: dict[str, list[dict]] = {"diffblocks": [], "diffusers": []}
        for _ in range(repeats):
            for library in runs:
                out = subprocess.run([sys.executable, __file__, "--lora-child", library, "--folder", str(folder),
                                      "--lora-file", str(lora)], capture_output=True, text=True, env=env,
                                     cwd=str(ROOT), check=False)
                if out.returncode != 0:
                    raise RuntimeError(f"{library} LoRA child failed:\n{out.stderr[-3000:]}")
                runs[library].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {lib: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for lib, rs in runs.items()}
        ours, ref = med["diffblocks"], med["diffusers"]
        print(f"| sd-{size} | {lora.stat().st_size / 2**20:.1f} MiB (rank 16) | {ours['load_s']:.3f} | "
              f"{ref['load_s']:.3f} | {ours['load_s'] / ref['load_s']:.2f}x | "
              f"+{ours['peak_rss_mb'] - ours['rss_before_mb']:.0f} / +{ref['peak_rss_mb'] - ref['rss_before_mb']:.0f} |")
    print(f"\nmedian of {repeats} runs each, fresh process per run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "diffblocks-bench")
    parser.add_argument("--child", choices=["diffblocks", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--lora-sizes", nargs="*", default=["mid"], help="UNets for the LoRA rows (none: skip)")
    parser.add_argument("--lora-child", choices=["diffblocks", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--lora-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    if args.lora_child:
        lora_child(args.lora_child, args.folder, args.lora_file)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        folder = build(size, args.workdir)
        runs: dict[str, list[dict]] = {"diffblocks": [], "diffusers": []}
        measure("diffblocks", folder)  # warm the page cache so neither side pays the first read
        for _ in range(args.repeats):
            for library in ("diffblocks", "diffusers"):
                runs[library].append(measure(library, folder))
        med = {lib: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for lib, rs in runs.items()}
        ratio = med["diffblocks"]["load_s"] / med["diffusers"]["load_s"]
        rows.append((size, med, ratio))

    print("| pipeline | params | diffblocks load s | diffusers load s | ratio | load + first read of every "
          "weight s, ours / diffusers | peak RSS MiB after load, ours / diffusers (+ over imports) | "
          "after reading every weight, ours / diffusers | imports s, ours / diffusers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, med, ratio in rows:
        ours, ref = med["diffblocks"], med["diffusers"]
        print(f"| sd-{size} | {ours['params'] / 1e6:.1f} M | {ours['load_s']:.3f} | {ref['load_s']:.3f} | "
              f"{ratio:.2f}x | {ours['load_s'] + ours['touch_s']:.3f} / {ref['load_s'] + ref['touch_s']:.3f} | "
              f"{ours['peak_rss_mb']:.0f} (+{ours['peak_rss_mb'] - ours['rss_before_mb']:.0f}) / "
              f"{ref['peak_rss_mb']:.0f} (+{ref['peak_rss_mb'] - ref['rss_before_mb']:.0f}) | "
              f"{ours['touched_rss_mb']:.0f} / {ref['touched_rss_mb']:.0f} | "
              f"{ours['import_s']:.2f} / {ref['import_s']:.2f} |")
    print(f"\nmedian of {args.repeats} runs each, fresh process per run; machine: {os.cpu_count()} CPUs")
    if args.lora_sizes:
        lora_rows(args.lora_sizes, args.workdir, args.repeats)


if __name__ == "__main__":
    main()
