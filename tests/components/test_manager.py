"""ComponentsManager: sharing, laziness, unloading, the table, and model CPU offload."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from diffblocks.components import ComponentSpec, ComponentsManager
from diffblocks.components.offload import ModelOffloader


@pytest.fixture
def count_loads(monkeypatch: pytest.MonkeyPatch):
    """Count real loads (calls of load_component) per class name."""
    from diffblocks.components import manager as manager_module

    counts: dict[str, int] = {}
    original = manager_module.load_component

    def counting(spec: ComponentSpec, options: Any) -> Any:
        name = spec.type_hint[1] if spec.type_hint else spec.name
        counts[name] = counts.get(name, 0) + 1
        return original(spec, options)

    monkeypatch.setattr(manager_module, "load_component", counting)
    return counts


def test_two_pipelines_on_one_repo_share_one_unet(tiny_sd_dir: Path, count_loads: dict[str, int]):
    first = ComponentsManager.from_pretrained(tiny_sd_dir)
    second = ComponentsManager.from_pretrained(str(tiny_sd_dir) + "/")  # same folder, spelled differently
    assert first["unet"] is second["unet"]
    assert first["text_encoder"] is second["text_encoder"]
    assert count_loads["UNet2DConditionModel"] == 1 and count_loads["CLIPTextModel"] == 1
    # Schedulers keep stepping state: each pipeline gets its own.
    assert first["scheduler"] is not second["scheduler"]
    assert count_loads["DDIMScheduler"] == 2


def test_one_explicit_manager_for_two_pipelines(tiny_sd_dir: Path, count_loads: dict[str, int]):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    pipe_a, pipe_b = manager.provider(["unet", "vae"]), manager.provider(["unet", "text_encoder"])
    assert pipe_a["unet"] is pipe_b["unet"] and count_loads["UNet2DConditionModel"] == 1


def test_sharing_respects_dtype_and_can_be_disabled(tiny_sd_dir: Path, count_loads: dict[str, int]):
    fp32 = ComponentsManager.from_pretrained(tiny_sd_dir)
    bf16 = ComponentsManager.from_pretrained(tiny_sd_dir, torch_dtype=torch.bfloat16)
    private = ComponentsManager.from_pretrained(tiny_sd_dir, share=False)
    assert fp32["unet"] is not bf16["unet"] and fp32["unet"] is not private["unet"]
    assert count_loads["UNet2DConditionModel"] == 3


def test_loading_is_lazy_a_graph_that_never_decodes_never_loads_the_vae(tiny_sd_dir: Path, count_loads):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    assert count_loads == {} and manager.loaded == frozenset()

    # What a graph executor does: check the declared names, then read the ones its nodes use.
    needed = {"encode_prompt": ["tokenizer", "text_encoder"], "denoise": ["unet", "scheduler"]}
    assert all(name in manager for names in needed.values() for name in names)
    assert "vae" in manager and "vae" not in manager.loaded  # membership never loads
    tok = manager["tokenizer"]
    ids = torch.tensor([tok("a photo of a cat", padding="max_length", max_length=77).input_ids])
    with torch.no_grad():
        embeds = manager["text_encoder"](ids).last_hidden_state
        manager["unet"](torch.randn(1, 4, 4, 4), 10, embeds)
    assert manager.loaded == {"tokenizer", "text_encoder", "unet"}
    assert "AutoencoderKL" not in count_loads


def test_provider_limits_names(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    view = manager.provider(["unet"])
    assert "unet" in view and "vae" not in view and list(view) == ["unet"]
    with pytest.raises(KeyError, match="outside this provider"):
        view["vae"]
    with pytest.raises(KeyError, match="not declared"):
        manager.provider(["nope"])


def test_unload_frees_and_reloads(tiny_sd_dir: Path, count_loads: dict[str, int]):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    ref = weakref.ref(manager["vae"])
    manager.unload("vae")
    gc.collect()
    assert "vae" not in manager.loaded and ref() is None
    assert isinstance(manager["vae"], torch.nn.Module) and count_loads["AutoencoderKL"] == 2


def test_set_and_replace(tiny_sd_dir: Path, tiny_sd_seed1_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    marker = object()
    manager.set("safety_checker", marker)
    assert manager["safety_checker"] is marker and "safety_checker" in manager.loaded
    other = ComponentSpec("vae", ("diffusers", "AutoencoderKL"), str(tiny_sd_seed1_dir), "vae")
    from diffblocks.components import ComponentError

    with pytest.raises(ComponentError, match="already declared"):
        manager.add(other)
    first = manager["vae"]
    manager.add(other, replace=True)
    assert manager["vae"] is not first


def test_table_lists_loaded_and_pending(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir, torch_dtype={"vae": torch.float32, "default": torch.bfloat16})
    manager["unet"]
    rows = {r.name: r for r in manager.rows()}
    unet = rows["unet"]
    assert unet.loaded and unet.class_name == "UNet2DConditionModel" and unet.dtype == "bfloat16"
    assert unet.params == sum(p.numel() for p in manager["unet"].parameters()) and unet.bytes >= 2 * unet.params
    assert unet.device == "cpu" and unet.source.endswith("/unet")
    assert not rows["vae"].loaded
    text = manager.table()
    assert text.splitlines()[0].split() == ["name", "class", "loaded", "params", "bytes", "dtype", "device", "source"]
    assert "UNet2DConditionModel" in text and "AutoencoderKL" in text


# -- model CPU offload ------------------------------------------------------------------------------
class _Recorder:
    """A fake accelerator: records where each model is sent instead of moving it."""

    def __init__(self, manager: ComponentsManager) -> None:
        self.manager = manager
        self.where: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []

    def __call__(self, module: torch.nn.Module, device: torch.device) -> None:
        name = next(n for n in self.manager.loaded if self.manager[n] is module)
        self.where[name] = str(device)
        self.log.append((name, str(device)))

    def on_accelerator(self) -> list[str]:
        return [n for n, d in self.where.items() if d == "cpu"]


def _run_sd_once(manager: ComponentsManager, check: Any = None) -> torch.Tensor:
    tok = manager["tokenizer"]
    ids = torch.tensor([tok("a photo of a cat", padding="max_length", max_length=77).input_ids])
    with torch.no_grad():
        embeds = manager["text_encoder"](ids).last_hidden_state
        check and check("text_encoder")
        latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        out = manager["unet"](latents, 10, embeds)
        check and check("unet")
        sample = out.sample if hasattr(out, "sample") else out[0]
        image = manager["vae"].decode(sample)
        check and check("vae")
    return image.sample if hasattr(image, "sample") else image[0]


def test_offload_keeps_one_model_on_the_accelerator(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    manager["text_encoder"]  # loaded before enabling: attached too
    recorder = _Recorder(manager)
    # "cpu" plays the accelerator and "meta" the host: the recorder never really moves, so
    # forwards still run, and the log shows exactly which model the hooks sent where.
    offloader = manager.enable_model_cpu_offload("cpu", offload_device="meta", move=recorder)
    assert recorder.where == {"text_encoder": "meta"}

    def check(active: str) -> None:
        assert recorder.on_accelerator() == [active]
        assert offloader.active == active

    _run_sd_once(manager, check)
    assert recorder.log[-2:] == [("unet", "meta"), ("vae", "cpu")]  # decode() is hooked, not only forward
    offloader.offload_all()
    assert recorder.on_accelerator() == []


def test_offload_with_real_moves_gives_the_same_result_and_detaches():
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)
    x = torch.randn(3, 4)
    expected = decoder(encoder(x))
    manager = ComponentsManager()
    manager.set("encoder", encoder)
    manager.set("decoder", decoder)
    offloader = manager.enable_model_cpu_offload("cpu")  # the only real device here
    got = manager["decoder"](manager["encoder"](x))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert offloader.active == "decoder" and set(offloader.names) == {"encoder", "decoder"}
    assert "forward" in vars(encoder)
    manager.disable_model_cpu_offload()
    assert "forward" not in vars(encoder) and "forward" not in vars(decoder)
    torch.testing.assert_close(decoder(encoder(x)), expected, rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_offload_to_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        ComponentsManager().enable_model_cpu_offload("cuda")


def test_offloader_moves_tensor_arguments():
    seen: list[torch.device] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor, *, extra: dict) -> torch.Tensor:
            seen.extend([x.device, extra["y"].device])
            return x

    offloader = ModelOffloader("meta", offload_device="cpu", move=lambda m, d: None)
    probe = Probe()
    offloader.attach("probe", probe)
    probe(torch.ones(2), extra={"y": torch.zeros(1)})
    assert seen == [torch.device("meta"), torch.device("meta")]
    offloader.detach("probe")
    assert "forward" not in vars(probe)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offload_on_a_real_accelerator(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir, share=False)
    manager.enable_model_cpu_offload("cuda")

    def check(active: str) -> None:
        for name in ("text_encoder", "unet", "vae"):
            if name in manager.loaded:
                device = next(manager[name].parameters()).device.type
                assert device == ("cuda" if name == active else "cpu"), (name, device)

    _run_sd_once(manager, check)
