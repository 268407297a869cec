"""The pieces of the training recipe that decide what the shipped model learns.

The noise schedule, loss weights and timestep sampling are checked on their own: a wrong
one trains without error and only shows up, 25 minutes later, as a model that ignores
position words (docs/shapes.md, "How position was learned").
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from diffblocks.schedulers import DDIMScheduler, DDPMScheduler
from tiny_shapes.targets import CaptionMeans
from tests.shapes.helpers import SHIPPED, training_script

script = training_script()


def test_default_schedule_reaches_pure_noise() -> None:
    cfg = script.TrainConfig()
    alphas_cumprod = DDPMScheduler(**cfg.schedule).alphas_cumprod
    assert alphas_cumprod[-1] == 0  # t = 999 holds no trace of the image
    assert cfg.schedule["prediction_type"] == "v_prediction"


@pytest.mark.parametrize("floor", [1.0, 0.2])
def test_v_loss_weights_are_floored_min_snr(floor: float) -> None:
    weights = script.denoiser_loss_weights(script.ZERO_SNR_SCHEDULE, gamma=5.0, floor=floor).double()
    snr = DDPMScheduler(**script.ZERO_SNR_SCHEDULE).alphas_cumprod.double()
    snr = snr / (1 - snr)
    # the weight on the x0 error (v loss weight x (SNR + 1)) is min(SNR, 5), but never below floor
    x0_weight = weights * (snr + 1)
    torch.testing.assert_close(x0_weight, torch.clamp(snr, min=floor, max=5.0), rtol=1e-6, atol=1e-7)
    assert weights[-1] == pytest.approx(floor)  # pure noise keeps a weight: the layout is learned there
    assert float(x0_weight.max()) == pytest.approx(5.0)


def test_high_noise_floor_only_lifts_the_noisiest_steps() -> None:
    weights = script.denoiser_loss_weights(script.ZERO_SNR_SCHEDULE, gamma=5.0, floor=0.0,
                                           high_floor=1.0, high_from=950).double()
    plain = script.denoiser_loss_weights(script.ZERO_SNR_SCHEDULE, gamma=5.0).double()
    snr = DDPMScheduler(**script.ZERO_SNR_SCHEDULE).alphas_cumprod.double()
    snr = snr / (1 - snr)
    torch.testing.assert_close(weights[:950], plain[:950])  # plain Min-SNR below 950
    torch.testing.assert_close(weights[950:] * (snr[950:] + 1), torch.clamp(snr[950:], min=1.0))
    assert float(plain[-1]) == 0.0 and float(weights[-1]) == pytest.approx(1.0)


def test_epsilon_weights_are_min_snr_and_refuse_zero_snr() -> None:
    weights = script.denoiser_loss_weights(script.SD_SCHEDULE, gamma=5.0)
    snr = DDPMScheduler(**script.SD_SCHEDULE).alphas_cumprod.double()
    snr = snr / (1 - snr)
    torch.testing.assert_close(weights.double(), torch.clamp(snr, max=5.0) / snr, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        script.denoiser_loss_weights({**script.SD_SCHEDULE, "rescale_betas_zero_snr": True}, gamma=5.0)
    with pytest.raises(ValueError, match="sample"):
        script.denoiser_loss_weights({**script.SD_SCHEDULE, "prediction_type": "sample"}, gamma=5.0)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5])
def test_timestep_sampling_draws_a_share_from_the_noisiest_steps(share: float) -> None:
    cfg = replace(script.TrainConfig(), unet_batch=64, high_noise_from=900)
    rng = torch.Generator().manual_seed(0)
    draws = torch.stack([script.sample_timesteps(cfg, rng, share) for _ in range(200)])
    assert draws.shape == (200, 64) and draws.min() >= 0 and draws.max() <= 999
    n_high = round(share * 64)
    assert bool((draws[:, :n_high] >= 900).all())
    # the rest stays uniform: about 10% of it lands in 900..999 by chance
    rest = draws[:, n_high:].float()
    assert abs(float((rest >= 900).float().mean()) - 0.1) < 0.02
    assert abs(float(rest.mean()) - 499.5) < 10


def test_shipped_scheduler_matches_the_training_schedule() -> None:
    """Inference must start from pure noise at t = 999 and use the trained parameterisation."""
    if not (SHIPPED / "model_index.json").exists():
        pytest.skip("no shipped model")
    shipped = json.loads((SHIPPED / "scheduler" / "scheduler_config.json").read_text())
    expected = script.inference_scheduler_config(script.TrainConfig().schedule)
    assert {k: shipped[k] for k in expected} == expected
    scheduler = DDIMScheduler.from_pretrained(SHIPPED / "scheduler")
    scheduler.set_timesteps(20)
    assert int(scheduler.timesteps[0]) == 999


def test_training_switches_from_the_layout_phase_to_the_detail_phase(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shares: list[float] = []
    sample = script.sample_timesteps

    def recording(cfg, rng, share):
        shares.append(share)
        return sample(cfg, rng, share)

    monkeypatch.setattr(script, "sample_timesteps", recording)
    cfg = replace(script.smoke_config(), unet_steps=5, layout_steps=2)
    script.train(cfg, tmp_path, threads=1, run_eval=False)
    assert shares == [cfg.layout_share] * 2 + [cfg.high_noise_share] * 3
    assert cfg.layout_share != cfg.high_noise_share


def test_epsilon_weights_can_be_floored_too() -> None:
    weights = script.denoiser_loss_weights(script.SD_SCHEDULE, gamma=5.0, floor=1.0).double()
    snr = DDPMScheduler(**script.SD_SCHEDULE).alphas_cumprod.double()
    snr = snr / (1 - snr)
    # epsilon loss x SNR = x0 error: its weight is clamped to [floor, gamma]
    torch.testing.assert_close(weights * snr, torch.clamp(snr, min=1.0, max=5.0), rtol=1e-6, atol=1e-7)
    assert float(weights[-1]) > 100  # 1 / SNR at SD's last step


@pytest.mark.parametrize("text_lr_scale", [0.0, 1.0])
def test_text_encoder_learning_rate_scale(tmp_path, text_lr_scale: float) -> None:
    """At scale 0 the shipped text encoder is its seeded initialisation; the UNet still learns."""
    from safetensors.torch import load_file

    cfg = replace(script.smoke_config(), text_lr_scale=text_lr_scale)
    script.train(cfg, tmp_path, threads=1, run_eval=False)
    tokenizer = script.build_tokenizer(cfg.model_max_length)
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    _, text_init, unet_init = script.build_models(cfg, len(tokenizer), special)
    text = load_file(tmp_path / "text_encoder" / "model.safetensors")
    unet = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    init = {k: v.half() for k, v in text_init.state_dict().items() if v.is_floating_point()}
    text_same = all(torch.equal(text[k], init[k]) for k in init if k in text)
    assert text_same == (text_lr_scale == 0.0)
    unet_init = unet_init.state_dict()
    assert not all(torch.equal(unet[k], unet_init[k].half()) for k in unet)


def test_set_overrides_a_scalar_field_by_its_type() -> None:
    cfg = script.TrainConfig()
    assert script._override(cfg, "min_snr_gamma=20").min_snr_gamma == 20.0
    assert script._override(cfg, "unet_steps=100").unet_steps == 100
    assert isinstance(script._override(cfg, "unet_steps=100").unet_steps, int)
    for bad in ("schedule=1", "nonsense=1", "min_snr_gamma"):
        with pytest.raises(SystemExit, match="FIELD=VALUE"):
            script._override(cfg, bad)


def test_set_refuses_a_value_of_the_wrong_type() -> None:
    with pytest.raises(SystemExit, match="unet_steps must be int"):
        script._override(script.TrainConfig(), "unet_steps=1e3")
    with pytest.raises(SystemExit, match="high_noise_mean_target must be true or false"):
        script._override(script.TrainConfig(), "high_noise_mean_target=yes")


@pytest.mark.parametrize(("text", "value"), [("false", False), ("0", False), ("True", True), ("1", True)])
def test_set_parses_booleans(text: str, value: bool) -> None:
    cfg = replace(script.TrainConfig(), high_noise_mean_target=not value)
    assert script._override(cfg, f"high_noise_mean_target={text}").high_noise_mean_target is value


def test_command_line_overrides_reach_the_saved_model(tmp_path) -> None:
    out = tmp_path / "model"
    script.main(["--smoke", "--out", str(out), "--set", "unet_steps=3", "--unet-channels", "16,16,32"])
    unet = json.loads((out / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [16, 16, 32]
    # attention everywhere below the top level, none at it
    assert unet["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert unet["up_block_types"] == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    assert json.loads((out / "training_summary.json").read_text())["unet_steps_done"] == 3


def test_caption_means_average_every_image_that_fits_the_caption() -> None:
    from tiny_shapes import dataset

    specs = dataset.training_specs(seed=0, per_combo=1)
    latents = torch.randn(len(specs), 4, 2, 2, generator=torch.Generator().manual_seed(0))
    means = CaptionMeans(specs, latents)
    red_left = [i for i, s in enumerate(specs) if (s.colour, s.shape, s.position) == ("red", "circle", "left")]
    small_black = [i for i in red_left if (specs[i].size, specs[i].background) == ("small", "black")]
    assert len(red_left) == 6 and len(small_black) == 1  # 2 sizes x 3 backgrounds
    got = means(["a red circle on the left", "a small red circle on the left, black background", ""])
    torch.testing.assert_close(got[0], latents[red_left].mean(dim=0))
    torch.testing.assert_close(got[1], latents[small_black[0]])
    torch.testing.assert_close(got[2], latents.mean(dim=0))


def test_mean_target_refuses_epsilon(tmp_path) -> None:
    cfg = replace(script.smoke_config(), schedule=dict(script.SD_SCHEDULE), high_noise_mean_target=True)
    with pytest.raises(ValueError, match="v_prediction"):
        script.train(cfg, tmp_path, threads=1, run_eval=False)


def test_noisiest_steps_regress_on_the_caption_mean(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Recording(script.CaptionMeans):
        def __call__(self, captions: list[str]) -> torch.Tensor:
            calls.append(len(captions))
            return super().__call__(captions)

    monkeypatch.setattr(script, "CaptionMeans", Recording)
    cfg = replace(script.smoke_config(), unet_steps=4, layout_steps=0, high_noise_share=0.5, high_noise_from=980,
                  high_noise_floor=0.1, high_noise_mean_target=True)
    script.train(cfg, tmp_path, threads=1, run_eval=False)
    # every step: at least the share drawn from t >= 980 (uniform draws may add a few)
    assert len(calls) == 4 and all(n >= round(0.5 * cfg.unet_batch) for n in calls)


def test_targets_docstring_example_runs() -> None:
    import doctest

    from tiny_shapes import targets

    result = doctest.testmod(targets)
    assert result.attempted > 0 and result.failed == 0
