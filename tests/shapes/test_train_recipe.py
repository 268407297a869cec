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
