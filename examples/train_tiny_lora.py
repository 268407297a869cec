"""Teach the shipped tiny-shapes model a colour it never saw, with a small LoRA.

The base model knows six colours (red, yellow, green, cyan, blue, purple). This trains a
rank-8 LoRA on its UNet attention layers and text encoder so that "an orange circle on the
left" draws an *orange* circle, measured with the shapes checker (its palette extended by
orange), and saves it in diffusers' LoRA layout: it loads back with ``pipe.load_lora_weights(path)``.

Half of each batch is orange shapes, half the original colours (so the other colours stay as
they were). A few CPU minutes on 1-2 threads::

    python examples/train_tiny_lora.py --out diffblocks/assets/loras/tiny-shapes-orange.safetensors \\
        --figure docs/lora-before-after.png
"""

from __future__ import annotations

import sys
import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from diffblocks.adapters.lora import adapter_state_dict, attach_lora
from diffblocks.adapters.weights import LoraWeights
from diffblocks.components import ComponentsManager
from diffblocks.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/tiny_shapes, the shapes toolkit
from tiny_shapes import checker, dataset  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "diffblocks" / "assets" / "tiny-shapes"
NEW_COLOUR, NEW_RGB = "orange", (255, 130, 0)
UNET_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "proj_in", "proj_out")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@contextlib.contextmanager
def palette_with_new_colour() -> Iterator[None]:
    """Render and check with the new colour added to the palette (the dict both modules read), then restore."""
    dataset.COLOURS[NEW_COLOUR] = NEW_RGB
    try:
        yield
    finally:
        del dataset.COLOURS[NEW_COLOUR]


def add_trainable_lora(module: torch.nn.Module, targets: tuple[str, ...], rank: int, seed: int) -> list[torch.nn.Parameter]:
    """A LoRA that starts as the identity (up = 0) on every Linear/Conv2d whose path ends with a target."""
    gen = torch.Generator().manual_seed(seed)
    layers = {}
    for path, sub in module.named_modules():
        if path.endswith(targets) and isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)):
            fan_in = sub.in_features if isinstance(sub, torch.nn.Linear) else sub.in_channels
            shape = (rank, fan_in) if isinstance(sub, torch.nn.Linear) else (rank, fan_in, 1, 1)
            out = sub.out_features if isinstance(sub, torch.nn.Linear) else sub.out_channels
            down = torch.randn(*shape, generator=gen) / math.sqrt(fan_in)
            up = torch.zeros((out, rank) if isinstance(sub, torch.nn.Linear) else (out, rank, 1, 1))
            layers[path] = LoraWeights(down, up)
    attach_lora(module, layers, "new_colour", content_id="training")
    params = [p for n, p in module.named_parameters() if ".lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def training_batch(rng: np.random.Generator, n: int) -> tuple[list[str], torch.Tensor]:
    """Half new-colour shapes, half the original colours, jittered, with augmented captions."""
    colours = [NEW_COLOUR] * (n // 2) + list(rng.choice([c for c in dataset.COLOURS if c != NEW_COLOUR], n - n // 2))
    specs = [dataset.jittered(dataset.ShapeSpec(c, str(rng.choice(dataset.SHAPES)), str(rng.choice(list(dataset.POSITIONS))),
                                                str(rng.choice(list(dataset.SIZES))), str(rng.choice(list(dataset.BACKGROUNDS)))), rng)
             for c in colours]
    captions = [dataset.caption(s, rng) if rng.random() > 0.1 else "" for s in specs]
    return captions, torch.from_numpy(dataset.render_batch(specs))


def train(out: Path, steps: int, batch: int, rank: int, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    cm = ComponentsManager.from_pretrained(MODEL, share=False, torch_dtype=torch.float32)
    unet, vae, text_encoder, tokenizer, scheduler = (cm[n] for n in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"))
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)
    params = add_trainable_lora(unet, UNET_TARGETS, rank, seed) + add_trainable_lora(text_encoder, TEXT_TARGETS, rank, seed + 1)
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    alpha_bar = scheduler.alphas_cumprod.float()
    scaling = vae.config.scaling_factor
    rng = np.random.default_rng(seed)
    start, losses = time.perf_counter(), []
    with palette_with_new_colour():
        for step in range(steps):
            captions, pixels = training_batch(rng, batch)
            with torch.no_grad():
                x0 = vae.encode(pixels).latent_dist.sample() * scaling
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            embeds = text_encoder(ids)[0]
            t = torch.randint(0, len(alpha_bar), (batch,))
            a = alpha_bar[t].sqrt().view(-1, 1, 1, 1)
            s = (1 - alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
            noise = torch.randn_like(x0)
            target = a * noise - s * x0  # v-prediction, as the base model was trained
            pred = unet(a * x0 + s * noise, t, encoder_hidden_states=embeds).sample
            loss = torch.nn.functional.mse_loss(pred, target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimiser.param_groups:  # cosine decay
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            optimiser.step()
            losses.append(loss.item())
            if step % 25 == 0 or step == steps - 1:
                print(f"step {step:4d}  loss {np.mean(losses[-25:]):.4f}  {time.perf_counter() - start:5.0f}s", flush=True)
    state = {**adapter_state_dict(unet, "new_colour", "unet"), **adapter_state_dict(text_encoder, "new_colour", "text_encoder")}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().to(torch.float16) for k, v in state.items()}, str(out),
              metadata={"format": "diffusers-lora", "trained_on": "tiny-shapes", "concept": NEW_COLOUR})
    return {"seconds": round(time.perf_counter() - start, 1), "final_loss": float(np.mean(losses[-50:])),
            "tensors": len(state), "bytes": out.stat().st_size}


def eval_prompts(colour: str) -> list[str]:
    phrases = [p[0] for p in dataset.POSITION_PHRASES.values()]
    return [f"a {size} {colour} {shape} {phrase}, {bg} background" for shape in dataset.SHAPES for phrase in phrases
            for size, bg in (("large", "white"), ("small", "black"))]


def measure(lora: Path | None, seed: int = 0) -> tuple[dict, list[Image.Image]]:
    """Checker accuracy (colour, shape, position) on new-colour prompts and on prompts of the six old colours."""
    pipe = Pipeline.from_pretrained(MODEL, share=False, torch_dtype=torch.float32)
    if lora is not None:
        pipe.load_lora_weights(lora)  # the same call users make
    report, first = {}, []
    with palette_with_new_colour():
        for name, colours in ((NEW_COLOUR, [NEW_COLOUR]), ("old colours", [c for c in dataset.COLOURS if c != NEW_COLOUR])):
            prompts = [p for c in colours for p in eval_prompts(c)][:: len(colours)]  # 30 prompts each
            images = pipe(prompt=prompts, num_inference_steps=20, guidance_scale=5.0, seed=seed,
                          output_type="pil", progress=False).images
            found = [checker.check_image(im) for im in images]
            wanted = [dataset.caption_attributes(p) | {"colour": next(c for c in colours if f" {c} " in p)} for p in prompts]
            report[name] = {a: round(float(np.mean([getattr(f, a) == w[a] for f, w in zip(found, wanted)])), 3)
                            for a in ("colour", "shape", "position")} | {"prompts": len(prompts)}
            first = first or images
    return report, first


def vae_ceiling() -> dict:
    """Checker accuracy on the evaluation prompts' own drawings after a VAE round trip: the most a
    UNet/text-encoder LoRA can reach (the VAE never saw the new colour and is not adapted)."""
    cm = ComponentsManager.from_pretrained(MODEL, share=False, torch_dtype=torch.float32)
    vae = cm["vae"]
    with palette_with_new_colour():
        specs = [dataset.ShapeSpec(**dataset.caption_attributes(p)) for p in eval_prompts(NEW_COLOUR)]
        with torch.no_grad():
            pixels = vae.decode(vae.encode(torch.from_numpy(dataset.render_batch(specs))).latent_dist.mode()).sample
        images = ((pixels.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        found = [checker.check_image(im) for im in images]
    return {a: round(float(np.mean([getattr(f, a) == getattr(s, a) for f, s in zip(found, specs)])), 3)
            for a in ("colour", "shape", "position")}


def figure(before: list[Image.Image], after: list[Image.Image], path: Path, n: int = 10) -> None:
    """Top row: the base model; bottom row: with the LoRA (new-colour prompts, 2x upscaled)."""
    size = before[0].width * 2
    sheet = Image.new("RGB", (n * size, 2 * size), "white")
    for i in range(n):
        sheet.paste(before[i * 3].resize((size, size), Image.Resampling.NEAREST), (i * size, 0))
        sheet.paste(after[i * 3].resize((size, size), Image.Resampling.NEAREST), (i * size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tiny-shapes-orange.safetensors"))
    parser.add_argument("--figure", type=Path, default=None, help="before/after PNG")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-only", action="store_true", help="measure an existing --out file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    summary = {} if args.eval_only else train(args.out, args.steps, args.batch, args.rank, args.lr, args.seed)
    base, before = measure(None)
    tuned, after = measure(args.out)
    summary.update({"base model": base, "with LoRA": tuned, "VAE round trip of the drawings": vae_ceiling()})
    print(json.dumps(summary, indent=2))
    if args.figure is not None:
        figure(before, after, args.figure)


if __name__ == "__main__":
    main()
