"""Train the tiny shapes text-to-image model that ships with diffblocks.

A small Stable Diffusion: AutoencoderKL (64x64 RGB <-> 16x16x4 latents), a CLIP text
encoder with a tiny BPE tokenizer, and a UNet2DConditionModel, trained from scratch on the
shapes dataset (:mod:`tiny_shapes.dataset`) on CPU in under 30 minutes:

1. render the dataset (every training combination, a few jittered copies each);
2. train the VAE (L1 reconstruction + a small KL term), then set ``scaling_factor`` so
   that scaled latents have unit variance;
3. encode the dataset once, then train the UNet and the text encoder jointly on noised
   latents (SD's scaled-linear 1000-step betas rescaled to zero terminal SNR, v-prediction,
   Min-SNR loss weights; an eighth of each batch at pure noise, regressed on the mean image of
   its caption, teaches the layout), with 10% of captions dropped to "" so classifier-free
   guidance works;
4. save the EMA weights as fp16 safetensors in diffusers' folder layout, a loss plot, and
   the evaluation table of :mod:`tiny_shapes.evaluate`.

    python examples/train_tiny_shapes.py --out diffblocks/assets/tiny-shapes
    python examples/train_tiny_shapes.py --smoke --out /tmp/tiny   # a few steps, seconds

It runs on CPU; ``--device cuda`` runs the same recipe on a GPU (the random draws come from
the same CPU generators, so only float rounding differs), for trying changes quickly.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from tiny_shapes import dataset
from tiny_shapes.evaluate import evaluate
from tiny_shapes.figures import plot_losses, save_samples
from tiny_shapes.sampler import encode_prompts, generate, load_components
from tiny_shapes.targets import CaptionMeans
from tiny_shapes.threads import ThreadPicker
from tiny_shapes.tokenizer import build_tokenizer, save_tokenizer

from diffblocks.formats import DIFFUSERS_FORMAT_VERSION
from diffblocks.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.schedulers import DDIMScheduler, DDPMScheduler

# Stable Diffusion's betas, rescaled so that the last timestep is pure noise (Lin et al.
# 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed"): t = 999 becomes a
# "draw x0 from the prompt" step, where position is learned (docs/shapes.md). SD's own
# schedule keeps 0.068 x the latent there, and an epsilon model gets almost no gradient for
# the layout. At zero SNR epsilon is not learnable at t = 999 (the input *is* the noise),
# hence v-prediction.
SD_BETAS = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
ZERO_SNR_SCHEDULE = {**SD_BETAS, "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}
SD_SCHEDULE = {**SD_BETAS, "rescale_betas_zero_snr": False, "prediction_type": "epsilon"}


def inference_scheduler_config(schedule: dict) -> dict:
    """The DDIM config that ships with a model trained on ``schedule``.

    With zero terminal SNR the first sampling step must be t = 999 (pure noise, as at
    training), so timesteps are spaced "trailing"; the last step lands on x0 itself.
    """
    if schedule.get("rescale_betas_zero_snr"):
        return {**schedule, "clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0,
                "timestep_spacing": "trailing"}
    return {**schedule, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
            "timestep_spacing": "leading"}


@dataclass
class TrainConfig:
    """Everything that decides the trained weights; the run is a function of it."""

    seed: int = 0
    per_combo: int = 8  # jittered renders of each training spec
    vae_steps: int = 1800
    vae_batch: int = 16
    vae_lr: float = 2e-3
    vae_warmup: int = 20
    kl_weight: float = 1e-6
    object_weight: float = 4.0
    unet_steps: int = 6000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    warmup: int = 100
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    schedule: dict = field(default_factory=lambda: dict(ZERO_SNR_SCHEDULE))
    # Each batch: uniform timesteps weighted by Min-SNR (floored at ``snr_floor``), plus
    # ``high_noise_share`` of it from ``high_noise_from``..999, where the caption alone must
    # place the shape (see train_denoiser). An optional layout phase first (``layout_steps``,
    # off in the shipped recipe; the previous models used it) draws ``layout_share`` there and
    # floors every weight at ``layout_snr_floor``.
    layout_steps: int = 0
    layout_share: float = 0.5
    layout_snr_floor: float = 1.0
    high_noise_share: float = 0.125
    snr_floor: float = 0.0
    high_noise_from: int = 980
    # The x0-error weight of steps from ``high_noise_from`` on is floored at this instead
    # (0: no separate floor).
    high_noise_floor: float = 0.1
    # Regress steps from ``high_noise_from`` on onto the mean latent of every training image
    # that fits the caption instead of the sampled image (see CaptionMeans); for
    # high_noise_from >= ~980, where the input holds nothing of the image.
    high_noise_mean_target: bool = True
    # Learning rate of the text encoder relative to the UNet's; 0 keeps it at its (random)
    # initialisation.
    text_lr_scale: float = 1.0
    ema_decay: float = 0.998
    model_max_length: int = 16
    vae: dict = field(default_factory=lambda: {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 64,
        "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [16, 32, 64], "layers_per_block": 1, "norm_num_groups": 4,
    })
    text: dict = field(default_factory=lambda: {
        # One layer: trained from scratch, a deeper CLIP first learns colour and shape and then
        # squeezes the position words out (their embeddings end up within 2% of each other),
        # where a single layer keeps every word distinct long enough for the UNet to use it.
        "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 1,
        "num_attention_heads": 4, "hidden_act": "quick_gelu", "projection_dim": 64,
    })
    unet: dict = field(default_factory=lambda: {
        # No attention at the 16x16 level (as in SDXL): self-attention over 256 positions was
        # half of each step's time; it goes to twice the channels there and more steps instead.
        # 8 attention heads (SD configs give the head count as attention_head_dim) rather than 4:
        # in 1,500-step trials of this recipe, shape 72% against 50% (one run each).
        "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [64, 64, 128], "norm_num_groups": 8, "attention_head_dim": 8,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    })


def smoke_config() -> TrainConfig:
    """A config that runs every phase in seconds (tests, not a usable model)."""
    return replace(
        TrainConfig(), per_combo=1, vae_steps=2, vae_batch=4, unet_steps=4, unet_batch=4, warmup=1, vae_warmup=1, layout_steps=2,
        vae={**TrainConfig().vae, "block_out_channels": [8, 16, 16], "norm_num_groups": 8},
        text={**TrainConfig().text, "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "projection_dim": 16},
        unet={**TrainConfig().unet, "block_out_channels": [16, 16, 32], "norm_num_groups": 8,
              "attention_head_dim": 2},
    )


# ---------------------------------------------------------------------------- models


def build_models(cfg: TrainConfig, vocab_size: int, special_ids: dict[str, int]):
    """Fresh VAE, text encoder and UNet for ``cfg``, seeded."""
    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(**cfg.vae)
    with torch.no_grad():
        # Start with a nearly deterministic posterior (std ~ e^-4): at a random init the
        # sampled noise drowns the latents, and the reconstruction loss needs hundreds of
        # steps to shrink it; the KL term is free to widen it later.
        latent = cfg.vae["latent_channels"]
        vae.quant_conv.weight[latent:].mul_(0.1)
        vae.quant_conv.bias[latent:].fill_(-8.0)
    text_config = CLIPTextConfig(vocab_size=vocab_size, max_position_embeddings=cfg.model_max_length,
                                 **special_ids, **cfg.text)
    text_encoder = CLIPTextModel(text_config)
    unet = UNet2DConditionModel(**cfg.unet, cross_attention_dim=cfg.text["hidden_size"])
    return vae, text_encoder, unet


def _randn(shape: torch.Size | tuple[int, ...], rng: torch.Generator, device: torch.device) -> torch.Tensor:
    # Drawn on the CPU generator whatever the device, so CPU and GPU runs see the same noise.
    return torch.randn(shape, generator=rng).to(device)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    # Linear warmup, then cosine decay to zero: short runs end on a settled model.
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


# ---------------------------------------------------------------------------- phases


def train_vae(cfg: TrainConfig, vae, images: torch.Tensor, rng: torch.Generator, threads: int = 2) -> list[float]:
    """Phase 1: fit the autoencoder; returns the loss per step."""
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    losses = []
    vae.train()
    device = images.device
    picker = ThreadPicker(threads)
    for step in tqdm(range(cfg.vae_steps), desc="vae", mininterval=2):
        started = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.vae_lr * _lr_factor(step, cfg.vae_steps, cfg.vae_warmup)
        batch = images[torch.randint(len(images), (cfg.vae_batch,), generator=rng)]
        posterior = vae.encode(batch).latent_dist
        noise = _randn(posterior.mean.shape, rng, device)
        recon = vae.decode(posterior.mean + posterior.std * noise).sample
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        # The shape covers 5-17% of the pixels; weighting its pixels up makes the VAE learn
        # colours and edges in hundreds of steps instead of thousands. Backgrounds are flat,
        # so the object is every pixel that differs from the corner pixel.
        weight = 1 + cfg.object_weight * (batch != batch[..., :1, :1]).any(dim=1, keepdim=True)
        error = (recon - batch).abs()
        loss = (weight * (error + 0.5 * error**2)).mean() + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        picker.record(time.perf_counter() - started)
    vae.eval()
    print(f"vae: steps per thread count {picker.steps}")
    return losses


@torch.no_grad()
def encode_dataset(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of every image."""
    means, stds = [], []
    for start in range(0, len(images), batch):
        posterior = vae.encode(images[start:start + batch]).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def denoiser_loss_weights(schedule: dict, gamma: float, floor: float = 0.0, high_floor: float = 0.0,
                          high_from: int | None = None) -> torch.Tensor:
    """Per-timestep loss weights: Min-SNR-gamma (Hang et al. 2023) for the prediction type.

    Expressed on the x0 error, the epsilon loss weighs a timestep by SNR and the v loss by
    SNR + 1. Min-SNR weighs the x0 error by min(SNR, ``gamma``) instead, so that low-noise
    steps, whose loss is large but uninformative, stop dominating. The weight is also
    floored at ``floor``: plain Min-SNR gives the pure-noise steps (SNR ~ 0) almost no
    weight, and those are the steps where the model must place the shape from the prompt
    alone. (For epsilon a floor makes the weight ``floor / SNR``, ~200 at SD's last step.)
    ``high_floor`` floors only the steps from ``high_from`` on, so that the pure-noise steps
    count without every mid-noise step counting as much.
    """
    snr = DDPMScheduler(**schedule).alphas_cumprod.double()
    snr = snr / (1 - snr)
    x0_weight = torch.clamp(snr, min=floor, max=gamma)
    if high_from is not None:
        x0_weight[high_from:] = torch.clamp(x0_weight[high_from:], min=high_floor)
    if schedule["prediction_type"] == "v_prediction":
        return (x0_weight / (snr + 1)).float()
    if schedule["prediction_type"] == "epsilon":
        if bool((snr == 0).any()):
            raise ValueError("epsilon prediction cannot be trained with zero terminal SNR; use v_prediction")
        return (x0_weight / snr).float()
    raise ValueError(f"prediction_type {schedule['prediction_type']!r}: use 'epsilon' or 'v_prediction'")


def sample_timesteps(cfg: TrainConfig, rng: torch.Generator, share: float) -> torch.Tensor:
    """Training timesteps for one batch: uniform, plus a ``share`` drawn from the noisiest steps.

    Where the prompt says where a shape goes, only the noisiest steps teach it: everywhere
    else the noisy input already shows the layout and the model learns to read it from there.
    Under uniform sampling those steps are a small share of each batch.
    """
    n_train = cfg.schedule["num_train_timesteps"]
    t = torch.randint(0, n_train, (cfg.unet_batch,), generator=rng)
    n_high = round(share * cfg.unet_batch)
    if n_high:
        t[:n_high] = torch.randint(cfg.high_noise_from, n_train, (n_high,), generator=rng)
    return t


def train_denoiser(cfg: TrainConfig, unet, text_encoder, tokenizer, means: torch.Tensor,
                   stds: torch.Tensor, scaling: float, specs: list[dataset.ShapeSpec],
                   rng: torch.Generator, deadline: float | None = None,
                   threads: int = 2) -> tuple[list[float], dict, dict]:
    """Phase 2: train UNet and text encoder jointly; returns losses and EMA state dicts.

    With ``deadline`` (a ``time.time()`` value), a run that would not finish in time is
    shortened: every 25 steps the number of steps that still fit is projected from the
    average step time, and the learning-rate schedule is compressed to end there (it only
    ever shrinks; on a fast enough machine nothing changes). The number of steps done is
    ``len(losses)``.
    """
    device = means.device
    noise_sched = DDPMScheduler(**cfg.schedule)
    # Position is learned only from the (near) pure-noise steps, which Min-SNR weighs ~0; they
    # get a share of each batch and a weight of their own. Weighted much more, they crowd out
    # what the mid-noise steps teach about shape; regressed on the sampled image instead of
    # the caption's mean, they teach position far more slowly (docs/shapes.md, "How shape was
    # recovered"). The optional layout phase comes first, with its own share and floor.
    phases = [(share, denoiser_loss_weights(cfg.schedule, cfg.min_snr_gamma, floor, high_floor,
                                            cfg.high_noise_from).to(device))
              for share, floor, high_floor in ((cfg.layout_share, cfg.layout_snr_floor, cfg.high_noise_floor),
                                               (cfg.high_noise_share, cfg.snr_floor, cfg.high_noise_floor))]
    v_prediction = cfg.schedule["prediction_type"] == "v_prediction"
    if cfg.high_noise_mean_target and not v_prediction:
        raise ValueError("high_noise_mean_target needs v_prediction (an epsilon target has no x0 to replace)")
    mean_target = CaptionMeans(specs, means * scaling) if cfg.high_noise_mean_target else None

    groups = [{"params": list(unet.parameters()), "lr_scale": 1.0}]
    if cfg.text_lr_scale > 0:
        groups.append({"params": list(text_encoder.parameters()), "lr_scale": cfg.text_lr_scale})
    else:
        text_encoder.requires_grad_(False)
    params = [p for group in groups for p in group["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.unet_lr, weight_decay=1e-2)
    # EMA shadows of every floating tensor; state_dict() values share storage with the
    # parameters, which the optimizer updates in place, so ``live`` stays current.
    modules = {"unet": unet, "text_encoder": text_encoder}
    keys = [(name, key) for name, m in modules.items() for key, v in m.state_dict().items() if v.is_floating_point()]
    live = [modules[name].state_dict()[key] for name, key in keys]
    shadow = [v.detach().clone() for v in live]
    caption_rng = np.random.default_rng(cfg.seed + 1)
    losses = []
    unet.train()
    text_encoder.train()
    picker = ThreadPicker(threads)
    total, phase_start = cfg.unet_steps, time.time()
    for step in tqdm(range(cfg.unet_steps), desc="unet", mininterval=2):
        started = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.unet_lr * group["lr_scale"] * _lr_factor(step, total, cfg.warmup)
        index = torch.randint(len(specs), (cfg.unet_batch,), generator=rng)
        captions = ["" if caption_rng.random() < cfg.caption_dropout else dataset.caption(specs[i], caption_rng)
                    for i in index.tolist()]
        latents = (means[index] + stds[index] * _randn(means[index].shape, rng, device)) * scaling
        noise = _randn(latents.shape, rng, device)
        share, loss_weight = phases[0] if step < cfg.layout_steps else phases[1]
        t = sample_timesteps(cfg, rng, share).to(device)
        noisy = noise_sched.add_noise(latents, noise, t)
        clean = latents
        high = (t >= cfg.high_noise_from).nonzero().flatten().tolist()
        if mean_target is not None and high:
            clean = latents.clone()
            clean[high] = mean_target([captions[i] for i in high])
        target = noise_sched.get_velocity(clean, noise, t) if v_prediction else noise
        context = encode_prompts(text_encoder, tokenizer, captions)
        pred = unet(noisy, t, encoder_hidden_states=context).sample
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if deadline is not None and step % 25 == 24:
            per_step = (time.time() - phase_start) / (step + 1)
            fits = step + 1 + int((deadline - time.time()) / per_step)
            if fits < total:
                total = max(step + 2, fits)
                print(f"time budget: schedule shortened to {total} of {cfg.unet_steps} steps")
        # EMA with a warm-up so early steps are not averaged with the random init.
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(shadow, live, 1 - decay)
        picker.record(time.perf_counter() - started)
        if step + 1 >= total:
            break
    print(f"unet: steps per thread count {picker.steps}")
    unet.eval()
    text_encoder.eval()
    ema = {name: dict(m.state_dict()) for name, m in modules.items()}
    for (name, key), value in zip(keys, shadow):
        ema[name][key] = value
    return losses, ema["unet"], ema["text_encoder"]


# ---------------------------------------------------------------------------- outputs


def save_pipeline(folder: Path, vae, text_encoder, unet, tokenizer, schedule: dict) -> None:
    """Write diffusers' StableDiffusionPipeline layout with fp16 safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
        module.to(torch.float16).save_pretrained(folder / name)
        module.to(torch.float32)
    save_tokenizer(tokenizer, folder / "tokenizer")
    DDIMScheduler(**inference_scheduler_config(schedule)).save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": DIFFUSERS_FORMAT_VERSION,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


# ---------------------------------------------------------------------------- main


def train(cfg: TrainConfig, out: Path, threads: int = 2, run_eval: bool = True,
          max_minutes: float | None = None, device: str = "cpu") -> dict:
    """Run every phase and write the model to ``out``; returns a summary (timings, losses).

    ``max_minutes`` caps the whole run: the UNet phase is shortened if needed so that about
    a minute is left for saving and evaluation (the summary records the steps done).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    started = time.time()
    timings: dict[str, float] = {}

    tokenizer = build_tokenizer(cfg.model_max_length)
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    vae, text_encoder, unet = build_models(cfg, len(tokenizer), special)
    for module in (vae, text_encoder, unet):
        module.to(device)

    specs = dataset.training_specs(cfg.seed, cfg.per_combo)
    images = torch.from_numpy(dataset.render_batch(specs)).to(device)
    timings["render"] = time.time() - started

    vae_losses = train_vae(cfg, vae, images, rng, threads)
    timings["vae"] = time.time() - started - sum(timings.values())

    means, stds = encode_dataset(vae, images)
    sampled = means + stds * _randn(means.shape, rng, device)
    scaling = float(1.0 / sampled.std())
    vae.config = vae.config.replace(scaling_factor=scaling)

    unet_losses, unet_ema, text_ema = train_denoiser(
        cfg, unet, text_encoder, tokenizer, means, stds, scaling, specs, rng,
        deadline=None if max_minutes is None else started + 60 * max_minutes - 60, threads=threads)
    unet.load_state_dict(unet_ema)
    text_encoder.load_state_dict(text_ema)
    timings["unet"] = time.time() - started - sum(timings.values())

    summary = {"config": asdict(cfg), "device": device, "scaling_factor": scaling,
               "final_vae_loss": float(np.mean(vae_losses[-20:])),
               "final_unet_loss": float(np.mean(unet_losses[-50:])), "unet_steps_done": len(unet_losses),
               "timings_s": timings}
    if run_eval:
        t0 = time.time()
        scheduler = DDIMScheduler(**inference_scheduler_config(cfg.schedule))
        report = evaluate(lambda prompts: generate(unet, vae, text_encoder, tokenizer, scheduler, prompts))
        timings["eval"] = time.time() - t0
        summary["accuracy"], summary["held_out_accuracy"] = report.accuracy, report.held_out_accuracy
        print(report.table())
        print("\n".join(report.failures()))
    out.mkdir(parents=True, exist_ok=True)
    for module in (vae, text_encoder, unet):
        module.to("cpu")
    save_pipeline(out, vae, text_encoder, unet, tokenizer, cfg.schedule)
    plot_losses(out / "loss.png", {"vae": vae_losses, "unet": unet_losses})
    timings["total"] = time.time() - started
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _override(cfg: TrainConfig, item: str) -> TrainConfig:
    """Apply one ``FIELD=VALUE`` to ``cfg``; the value is parsed as the field's current type."""
    name, sep, value = item.partition("=")
    current = getattr(cfg, name, None) if sep else None
    if not isinstance(current, (int, float)):
        scalars = sorted(k for k, v in asdict(cfg).items() if isinstance(v, (int, float)))
        raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(scalars)}")
    if isinstance(current, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"--set {item!r}: {name} must be true or false")
        return replace(cfg, **{name: value.lower() in ("true", "1")})
    try:
        return replace(cfg, **{name: type(current)(value)})
    except ValueError:
        raise SystemExit(f"--set {item!r}: {name} must be {type(current).__name__}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the pipeline")
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device to train on (the recipe is made for cpu)")
    parser.add_argument("--sd-schedule", action="store_true",
                        help="SD's original schedule (epsilon, terminal SNR > 0) instead of zero terminal SNR")
    parser.add_argument("--text-layers", type=int, help="text encoder depth (num_hidden_layers)")
    parser.add_argument("--unet-channels",
                        help="UNet block_out_channels, e.g. 64,64,128,128 (one level each; attention below the top)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a scalar TrainConfig field, e.g. --set unet_steps=800 (repeatable)")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--max-minutes", type=float, help="shorten the UNet phase if needed to end in time")
    parser.add_argument("--grid", type=Path, help="also write a labelled grid of samples (PNG) here")
    parser.add_argument("--grid-only", action="store_true", help="skip training: load --out, write --grid")
    args = parser.parse_args(argv)
    if not args.grid_only:
        cfg = smoke_config() if args.smoke else TrainConfig()
        cfg = replace(cfg, seed=args.seed)
        if args.sd_schedule:
            cfg = replace(cfg, schedule=dict(SD_SCHEDULE))
        if args.text_layers is not None:
            cfg = replace(cfg, text={**cfg.text, "num_hidden_layers": args.text_layers})
        for item in args.set:
            cfg = _override(cfg, item)
        if args.unet_channels:
            channels = [int(c) for c in args.unet_channels.split(",")]
            down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (len(channels) - 1)
            cfg = replace(cfg, unet={**cfg.unet, "block_out_channels": channels, "down_block_types": down,
                                     "up_block_types": [b.replace("Down", "Up") for b in reversed(down)]})
        summary = train(cfg, args.out, threads=args.threads, run_eval=not args.no_eval and not args.smoke,
                        max_minutes=args.max_minutes, device=args.device)
        print(json.dumps({k: summary[k] for k in ("scaling_factor", "timings_s")}, indent=2))
    if args.grid is not None:
        save_samples(args.grid, load_components(args.out))


if __name__ == "__main__":
    main()
