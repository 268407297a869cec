"""Train the tiny shapes text-to-image model that ships with diffblocks.

A small Stable Diffusion: AutoencoderKL (64x64 RGB <-> 16x16x4 latents), a CLIP text
encoder with a tiny BPE tokenizer, and a UNet2DConditionModel, trained from scratch on the
shapes dataset (:mod:`diffblocks.shapes.dataset`) on CPU in under 30 minutes:

1. render the dataset (every training combination, a few jittered copies each);
2. train the VAE (L1 reconstruction + a small KL term), then set ``scaling_factor`` so
   that scaled latents have unit variance;
3. encode the dataset once, then train the UNet and the text encoder jointly on noised
   latents (SD's scaled-linear 1000-step betas rescaled to zero terminal SNR, v-prediction,
   min-SNR loss weights), with 10% of captions dropped to "" so classifier-free guidance
   works;
4. save the EMA weights as fp16 safetensors in diffusers' folder layout, a loss plot, and
   the evaluation table of :mod:`diffblocks.shapes.evaluate`.

    python examples/train_tiny_shapes.py --out diffblocks/assets/tiny-shapes
    python examples/train_tiny_shapes.py --smoke --out /tmp/tiny   # a few steps, seconds

It runs on CPU; ``--device cuda`` runs the same recipe on a GPU (the random draws come from
the same CPU generators, so only float rounding differs), for trying changes quickly.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from diffblocks.shapes import dataset
from diffblocks.shapes.evaluate import evaluate
from diffblocks.shapes.sampler import encode_prompts, generate, load_components
from diffblocks.shapes.tokenizer import build_tokenizer, save_tokenizer

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
    unet_steps: int = 4400
    unet_batch: int = 32
    unet_lr: float = 1e-3
    warmup: int = 100
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    schedule: dict = field(default_factory=lambda: dict(ZERO_SNR_SCHEDULE))
    # Two phases (see train_denoiser). Layout first: for ``layout_steps`` steps, half of each
    # batch is drawn from the noisiest timesteps (``high_noise_from``..999) and the v loss
    # weighs every noisy step fully (floor 1 on the x0-error weight). Then detail: a smaller
    # share of noisy steps and Min-SNR weights floored at ``snr_floor`` instead.
    layout_steps: int = 1600
    layout_share: float = 0.5
    layout_snr_floor: float = 1.0
    high_noise_share: float = 0.2
    snr_floor: float = 0.05
    high_noise_from: int = 800
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
        "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [32, 64, 128], "norm_num_groups": 8, "attention_head_dim": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3, "up_block_types": ["CrossAttnUpBlock2D"] * 3,
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


class ThreadPicker:
    """Chooses 1 or ``max_threads`` torch threads from the measured step times.

    On an idle 2-core machine two threads are ~1.6x faster than one, but while any other
    process runs, two threads wait on each other at every operator and a step gets 10-30x
    slower. So: measure one thread first, then probe ``max_threads`` for ``probe_len``
    steps (abandoned at the first very slow one) and keep it while it stays faster; after a
    slow step fall back to one thread and probe again ``probe_every`` steps later. One and
    two threads give the same results up to float rounding (reductions split differently),
    so the choice changes speed, not the recipe; a run is bitwise reproducible with a fixed
    thread count (``--threads 1``).
    """

    def __init__(self, max_threads: int, probe_every: int = 150, probe_len: int = 3) -> None:
        self.max_threads, self.probe_every, self.probe_len = max_threads, probe_every, probe_len
        self.fastest: dict[int, float] = {}
        self.steps: dict[int, int] = {}  # steps run per thread count, for the summary
        self.probe: list[float] = []
        self.threads, self.since_probe = 1, probe_every - 3  # three baseline steps, then a probe
        torch.set_num_threads(1)

    def _use(self, threads: int) -> None:
        self.threads = threads
        torch.set_num_threads(threads)

    def record(self, seconds: float) -> None:
        """Feed the last step's duration; may change the thread count for the next step."""
        n, one = self.threads, self.fastest.get(1, math.inf)
        self.steps[n] = self.steps.get(n, 0) + 1
        if n == 1:
            self.fastest[1] = min(one, seconds)
            self.since_probe += 1
            if self.max_threads > 1 and self.since_probe >= self.probe_every:
                self.since_probe, self.probe = 0, []
                self._use(self.max_threads)
        elif len(self.probe) < self.probe_len:  # probing
            self.probe.append(seconds)
            if seconds > 3 * one or (len(self.probe) == self.probe_len and min(self.probe) > 0.9 * one):
                self._use(1)
            elif len(self.probe) == self.probe_len:
                self.fastest[n] = min(self.probe)
        elif seconds > 2.0 * self.fastest[n]:  # contention started: back to one thread
            self._use(1)


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


def denoiser_loss_weights(schedule: dict, gamma: float, floor: float = 0.0) -> torch.Tensor:
    """Per-timestep loss weights: Min-SNR-gamma (Hang et al. 2023) for the prediction type.

    Expressed on the x0 error, the epsilon loss weighs a timestep by SNR and the v loss by
    SNR + 1. Min-SNR weighs the x0 error by min(SNR, ``gamma``) instead, so that low-noise
    steps, whose loss is large but uninformative, stop dominating. For v the weight is also
    floored at ``floor``: plain Min-SNR gives the pure-noise steps (SNR ~ 0) no weight at
    all, and those are the steps where the model must place the shape from the prompt alone.
    """
    snr = DDPMScheduler(**schedule).alphas_cumprod.double()
    snr = snr / (1 - snr)
    if schedule["prediction_type"] == "v_prediction":
        return (torch.clamp(snr, min=floor, max=gamma) / (snr + 1)).float()
    if schedule["prediction_type"] == "epsilon":
        if bool((snr == 0).any()):
            raise ValueError("epsilon prediction cannot be trained with zero terminal SNR; use v_prediction")
        return (torch.clamp(snr, max=gamma) / snr).float()
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
    # Phase 1 (layout) and phase 2 (detail). Position is learned only from the noisiest
    # steps and, under the detail weights alone, not within this budget: the text encoder
    # squeezes the position words out before the UNet starts to use them. Detail (a square's
    # corners) wants most of the weight on the low-noise steps. Once learned, the layout is
    # kept with the smaller share of phase 2.
    phases = [(share, denoiser_loss_weights(cfg.schedule, cfg.min_snr_gamma, floor).to(device))
              for share, floor in ((cfg.layout_share, cfg.layout_snr_floor), (cfg.high_noise_share, cfg.snr_floor))]
    v_prediction = cfg.schedule["prediction_type"] == "v_prediction"

    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=1e-2)
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
            group["lr"] = cfg.unet_lr * _lr_factor(step, total, cfg.warmup)
        index = torch.randint(len(specs), (cfg.unet_batch,), generator=rng)
        captions = ["" if caption_rng.random() < cfg.caption_dropout else dataset.caption(specs[i], caption_rng)
                    for i in index.tolist()]
        latents = (means[index] + stds[index] * _randn(means[index].shape, rng, device)) * scaling
        noise = _randn(latents.shape, rng, device)
        share, loss_weight = phases[0] if step < cfg.layout_steps else phases[1]
        t = sample_timesteps(cfg, rng, share).to(device)
        noisy = noise_sched.add_noise(latents, noise, t)
        target = noise_sched.get_velocity(latents, noise, t) if v_prediction else noise
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
        "_diffusers_version": "0.42.1",
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


def plot_losses(path: Path, curves: dict[str, list[float]], width: int = 640, height: int = 240) -> None:
    """Save one panel per loss curve (log scale, with a moving average) as a PNG."""
    panel_w = width // max(len(curves), 1)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k, (name, values) in enumerate(curves.items()):
        left, top, w, h = k * panel_w + 40, 20, panel_w - 55, height - 50
        draw.rectangle((left, top, left + w, top + h), outline=(120, 120, 120))
        logs = np.log10(np.maximum(np.asarray(values, dtype=np.float64), 1e-8))
        window = max(1, len(logs) // 50)
        smooth = np.convolve(logs, np.ones(window) / window, mode="valid")
        lo, hi = float(logs.min()), float(logs.max()) + 1e-9

        def xy(i: int, v: float, n: int) -> tuple[float, float]:
            return left + w * i / max(n - 1, 1), top + h * (hi - v) / (hi - lo)

        for series, colour in ((logs, (190, 190, 230)), (smooth, (20, 40, 160))):
            if len(series) > 1:
                offset = (len(logs) - len(series)) // 2
                draw.line([xy(i + offset, float(v), len(logs)) for i, v in enumerate(series)], fill=colour, width=1)
        draw.text((left, 4), f"{name} loss (log10), {len(values)} steps", fill="black")
        draw.text((left - 36, top), f"{10 ** hi:.3g}", fill="black")
        draw.text((left - 36, top + h - 10), f"{10 ** lo:.3g}", fill="black")
        draw.text((left, top + h + 6), f"step 0 .. {len(values)}", fill="black")
    image.save(path)


def save_grid(path: Path, images: np.ndarray, columns: int = 10) -> None:
    """Tile (N, H, W, 3) uint8 images into one PNG, 2 pixels apart."""
    n, h, w, _ = images.shape
    rows = math.ceil(n / columns)
    grid = Image.new("RGB", (columns * (w + 2), rows * (h + 2)), (200, 200, 200))
    for i, image in enumerate(images):
        grid.paste(Image.fromarray(image), ((i % columns) * (w + 2), (i // columns) * (h + 2)))
    grid.save(path)


SAMPLE_PROMPTS = [
    "a red circle on the left",
    "a blue square at the top",
    "a yellow triangle at the bottom",
    "a small green circle in the centre",
    "a large purple square on the right",
    "a cyan triangle on the left, black background",
    "a small red square at the bottom, gray background",
    "a large blue triangle in the centre, white background",
    "a green triangle at the top, black background",
    "a yellow square on the right, gray background",
    "a purple circle at the top, white background",
    "a large cyan circle at the bottom, black background",
]


def save_samples(path: Path, components: dict, prompts: list[str] = SAMPLE_PROMPTS, seed: int = 0,
                 columns: int = 4, scale: int = 2) -> None:
    """Generate ``prompts`` and save them as a labelled grid (images upscaled ``scale`` times)."""
    images = generate(components["unet"], components["vae"], components["text_encoder"],
                      components["tokenizer"], components["scheduler"], prompts, seed=seed)
    side, label_h, cell_w = 64 * scale, 40, 200
    rows = math.ceil(len(prompts) / columns)
    grid = Image.new("RGB", (columns * cell_w, rows * (side + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, prompt) in enumerate(zip(images, prompts)):
        x, y = (i % columns) * cell_w, (i // columns) * (side + label_h)
        grid.paste(Image.fromarray(image).resize((side, side), Image.Resampling.NEAREST),
                   (x + (cell_w - side) // 2, y))
        draw.multiline_text((x + 4, y + side + 3), "\n".join(textwrap.wrap(prompt, 32)), fill="black", spacing=2)
    grid.save(path)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the pipeline")
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int)
    parser.add_argument("--unet-steps", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device to train on (the recipe is made for cpu)")
    parser.add_argument("--sd-schedule", action="store_true",
                        help="SD's original schedule (epsilon, terminal SNR > 0) instead of zero terminal SNR")
    parser.add_argument("--text-layers", type=int, help="text encoder depth (num_hidden_layers)")
    parser.add_argument("--unet-channels", help="UNet block_out_channels, e.g. 32,64,128,128 (one level each)")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--max-minutes", type=float, help="shorten the UNet phase if needed to end in time")
    parser.add_argument("--grid", type=Path, help="also write a labelled grid of samples (PNG) here")
    parser.add_argument("--grid-only", action="store_true", help="skip training: load --out, write --grid")
    args = parser.parse_args(argv)
    if not args.grid_only:
        cfg = smoke_config() if args.smoke else TrainConfig()
        cfg = replace(cfg, seed=args.seed)
        if args.vae_steps is not None:
            cfg = replace(cfg, vae_steps=args.vae_steps)
        if args.unet_steps is not None:
            cfg = replace(cfg, unet_steps=args.unet_steps)
        if args.sd_schedule:
            cfg = replace(cfg, schedule=dict(SD_SCHEDULE))
        if args.text_layers is not None:
            cfg = replace(cfg, text={**cfg.text, "num_hidden_layers": args.text_layers})
        if args.unet_channels:
            channels = [int(c) for c in args.unet_channels.split(",")]
            cfg = replace(cfg, unet={**cfg.unet, "block_out_channels": channels,
                                     "down_block_types": ["CrossAttnDownBlock2D"] * len(channels),
                                     "up_block_types": ["CrossAttnUpBlock2D"] * len(channels)})
        summary = train(cfg, args.out, threads=args.threads, run_eval=not args.no_eval and not args.smoke,
                        max_minutes=args.max_minutes, device=args.device)
        print(json.dumps({k: summary[k] for k in ("scaling_factor", "timings_s")}, indent=2))
    if args.grid is not None:
        save_samples(args.grid, load_components(args.out))


if __name__ == "__main__":
    main()
