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

Single-file and GGUF rows (``--kinds single gguf``) time the same libraries on one file:

    single: read_pipeline_file(file, config=folder)   vs  StableDiffusionPipeline.from_single_file(file, config=folder)
            (the file is the folder's pipeline exported by our save_single_file, LDM layout)
    gguf:   FluxTransformer2DModel.from_single_file(q8_0.gguf, config=folder)   vs  diffusers' GGUF loader
            (a Flux transformer with BFL keys; tiny = the tests' 1+1 layers, mid = 2+4 layers, 4 x 128 heads)

    python bench/loading.py                      # tiny + mid, 3 repeats
    python bench/loading.py --sizes tiny --repeats 5
    python bench/loading.py --kinds folder single gguf

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


def build_single(size: str, workdir: Path) -> tuple[Path, Path]:
    """(pipeline folder, its whole-pipeline single file written by our save_single_file)."""
    folder = build(size, workdir)
    file = workdir / f"sd-{size}.safetensors"
    if not file.is_file():
        sys.path.insert(0, str(ROOT))
        from diffblocks import Pipeline

        Pipeline.from_pretrained(folder).save_single_file(file)
    return folder, file


def build_gguf(size: str, workdir: Path) -> tuple[Path, Path]:
    """(Flux folder with ``transformer/config.json``, its Q8_0 GGUF in BFL keys)."""
    folder = workdir / f"flux-{size}"
    file = workdir / f"flux-{size}-Q8_0.gguf"
    if file.is_file():
        return folder, file
    import torch
    from diffusers import FluxTransformer2DModel

    sys.path.insert(0, str(ROOT))
    from diffblocks.models import FluxTransformer2DModel as Ours
    from diffblocks.models.single_file.gguf import save_gguf

    shapes = {"tiny": dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                           joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], in_channels=4),
              "mid": dict(num_layers=2, num_single_layers=4, attention_head_dim=128, num_attention_heads=4,
                          joint_attention_dim=512, pooled_projection_dim=256, axes_dims_rope=[16, 56, 56], in_channels=64)}
    torch.manual_seed(0)
    FluxTransformer2DModel(patch_size=1, **shapes[size]).save_pretrained(str(folder / "transformer"))
    save_gguf(Ours.from_pretrained(folder, subfolder="transformer"), file, "Q8_0")
    return folder, file


def _load_single(library: str, folder: str, file: str) -> dict:
    if library == "diffblocks":  # the components (as the folder rows): no graph is built
        from diffblocks.single_file.pipeline import read_pipeline_file

        return read_pipeline_file(file, config=folder).components
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_single_file(file, config=folder).components


def _load_gguf(library: str, folder: str, file: str) -> dict:
    import torch

    if library == "diffblocks":
        from diffblocks.models import FluxTransformer2DModel

        return {"transformer": FluxTransformer2DModel.from_single_file(file, config=folder, subfolder="transformer")}
    import diffusers

    sys.path.insert(0, str(ROOT))
    from tests.single_file.reference import flux_width_from_file  # diffusers hard-codes Flux's full width

    with flux_width_from_file():
        model = diffusers.FluxTransformer2DModel.from_single_file(
            file, config=folder, subfolder="transformer",
            quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=torch.float32))
    return {"transformer": model}


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


def child(library: str, folder: str, kind: str = "folder", file: str | None = None) -> None:
    t0 = time.perf_counter()
    if kind == "folder":
        _import_classes(library, folder)
    else:  # the single-file loaders import what they use; do it before the clock
        import diffblocks.single_file.pipeline  # noqa: F401
        import diffblocks.models.single_file.gguf  # noqa: F401
        from diffusers import FluxTransformer2DModel, StableDiffusionPipeline  # noqa: F401
        from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401
    import_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    t1 = time.perf_counter()
    if kind == "single":
        objects = _load_single(library, folder, file)
    elif kind == "gguf":
        objects = _load_gguf(library, folder, file)
    elif library == "diffblocks":
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
    # (diffusers' GGUF parameters re-wrap every result; read them as plain tensors)
    with torch.no_grad(), torch._C.DisableTorchFunctionSubclass():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                t.sum()
    touch_s = time.perf_counter() - t2
    resident = sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])
    print(json.dumps({"import_s": import_s, "load_s": load_s, "touch_s": touch_s, "rss_before_mb": rss_before,
                      "peak_rss_mb": peak, "touched_rss_mb": _rss_mb(), "params": params,
                      "resident_mb": resident / 2**20}))


def measure(library: str, folder: Path, kind: str = "folder", file: Path | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "DIFFUSERS_VERBOSITY": "error",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # this checkout's diffblocks
    out = subprocess.run(
        [sys.executable, __file__, "--child", library, "--folder", str(folder), "--kind", kind,
         *(["--file", str(file)] if file else [])],
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
    parser.add_argument("--kinds", nargs="+", default=["folder"], choices=["folder", "single", "gguf"],
                        help="folder loads (default), whole-pipeline single files, GGUF Flux transformers")
    parser.add_argument("--kind", default="folder", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--lora-sizes", nargs="*", default=["mid"], help="UNets for the LoRA rows (none: skip)")
    parser.add_argument("--lora-child", choices=["diffblocks", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--lora-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.kind, args.file)
        return
    if args.lora_child:
        lora_child(args.lora_child, args.folder, args.lora_file)
        return
    if args.kinds != ["folder"]:
        args.workdir.mkdir(parents=True, exist_ok=True)
        single_file_rows(args)
        if "folder" not in args.kinds:
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


def single_file_rows(args: argparse.Namespace) -> None:
    """The single-file / GGUF table: same protocol as the folder rows (fresh process, alternating)."""
    rows = []
    for kind in [k for k in args.kinds if k != "folder"]:
        for size in args.sizes:
            folder, file = (build_single if kind == "single" else build_gguf)(size, args.workdir)
            runs: dict[str, list[dict]] = {"diffblocks": [], "diffusers": []}
            measure("diffblocks", folder, kind, file)  # warm the page cache
            for _ in range(args.repeats):
                for library in runs:
                    runs[library].append(measure(library, folder, kind, file))
            med = {lib: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for lib, rs in runs.items()}
            rows.append((f"{kind} {'sd' if kind == 'single' else 'flux'}-{size}", file.stat().st_size / 2**20, med))
    print("| load | file MiB | params | load s, ours / diffusers | ratio | peak RSS MiB after load, ours / diffusers "
          "(+ over imports) | after reading every weight | resident weights MiB, ours / diffusers |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size_mb, med in rows:
        ours, ref = med["diffblocks"], med["diffusers"]
        print(f"| {name} | {size_mb:.1f} | {ours['params'] / 1e6:.1f} M | {ours['load_s']:.3f} / {ref['load_s']:.3f} | "
              f"{ours['load_s'] / ref['load_s']:.2f}x | {ours['peak_rss_mb']:.0f} (+{ours['peak_rss_mb'] - ours['rss_before_mb']:.0f}) / "
              f"{ref['peak_rss_mb']:.0f} (+{ref['peak_rss_mb'] - ref['rss_before_mb']:.0f}) | "
              f"{ours['touched_rss_mb']:.0f} / {ref['touched_rss_mb']:.0f} | {ours['resident_mb']:.1f} / {ref['resident_mb']:.1f} |")
    print(f"\nmedian of {args.repeats} runs each, fresh process per run; machine: {os.cpu_count()} CPUs\n")


if __name__ == "__main__":
    main()
