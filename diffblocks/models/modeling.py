"""The model base: weight loading and saving for diffusers-compatible models (configs: ``config.py``).

A model is a `torch.nn.Module` whose attribute paths equal diffusers' state-dict names and whose
config is a frozen dataclass that reads diffusers' ``config.json`` unchanged. Loading builds the
module on the ``meta`` device and assigns tensors read from safetensors, so nothing is initialised
twice and peak memory stays near one copy of the weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from diffblocks.fileio import FileReadError, atomic_folder, read_json_object, read_text_bounded
# Configs live in config.py; modeling keeps exporting them (model files import them from here).
from diffblocks.models.config import ModelConfig, ModelConfigError, ModelOutput
# Building for a load lives in loading.py (single_file shares it); modeling keeps exporting it.
from diffblocks.models.loading import CONFIG_NAME, gc_paused, skip_meta_init

__all__ = [
    "CONFIG_NAME", "Model", "ModelConfig", "ModelConfigError", "ModelLoadError", "ModelOutput", "WEIGHTS_STEM",
    "find_weight_files", "gc_paused", "read_weights", "skip_meta_init", "variant_name",
]

logger = logging.getLogger(__name__)

WEIGHTS_STEM = "diffusion_pytorch_model"


class ModelLoadError(ValueError):
    """A model folder or weight file that cannot be loaded; the message names the file and keys."""

def variant_name(filename: str, variant: str | None) -> str:
    """diffusers' variant naming: the variant goes before the last extension."""
    if variant is None:
        return filename
    stem, _, ext = filename.rpartition(".")
    return f"{stem}.{variant}.{ext}"


def find_weight_files(
    folder: Path, *, variant: str | None, use_safetensors: bool = True, allow_pickle: bool = False
) -> list[Path]:
    """The weight files of a model folder: one file, or the shards its index lists.

    Safetensors is preferred; pickle (``.bin``) is used only with ``allow_pickle=True`` and then
    loaded with ``torch.load(weights_only=True)``.
    """
    formats = ["safetensors", "bin"] if use_safetensors else ["bin", "safetensors"]
    for fmt in formats:
        if fmt == "bin" and not allow_pickle:
            continue
        single = folder / variant_name(f"{WEIGHTS_STEM}.{fmt}", variant)
        index = folder / variant_name(f"{WEIGHTS_STEM}.{fmt}.index.json", variant)
        if index.is_file():
            return _shards_from_index(index)
        if single.is_file():
            return [single]
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    wanted = variant_name(f"{WEIGHTS_STEM}.safetensors", variant)
    hint = ""
    if not allow_pickle and any(p.endswith(".bin") for p in present):
        hint = " (pickle .bin weights are present: pass allow_pickle=True to load them, only from a source you trust)"
    raise ModelLoadError(f"no weights {wanted!r} (or a sharded index) in {folder}; found {present}{hint}")


def _shards_from_index(index: Path) -> list[Path]:
    """The shard files an index names; each must be a plain file name in the index's own folder."""
    try:
        weight_map = json.loads(read_text_bounded(index, what="shard index"))["weight_map"]
    except (FileReadError, RecursionError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{index}: not a valid shard index ({e or type(e).__name__})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelLoadError(f"{index}: 'weight_map' must map tensor names to shard file names")
    names = list(dict.fromkeys(weight_map.values()))
    outside = [n for n in names if not _is_plain_name(n)]
    if outside:
        raise ModelLoadError(
            f"{index}: weight_map names files outside the model folder: {outside[:5]}; shards must be "
            "plain file names next to the index"
        )
    shards = [index.parent / name for name in names]
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise ModelLoadError(f"{index} lists shards that do not exist: {missing}")
    return shards


def _is_plain_name(name: str) -> bool:
    """A file name with no folder part (``/``, ``\\``), not ``.``/``..``, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def read_weights(
    path: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(key, tensor)`` for one weight file, converting floating-point tensors to ``dtype``.

    One tensor at a time, so converting (e.g. an fp32 file to fp16) never holds the whole
    file twice.
    """

    def convert(tensor: torch.Tensor) -> torch.Tensor:
        # Same-dtype tensors stay zero-copy views of the (private, copy-on-write) file mapping:
        # that is what keeps load time and peak RSS low. A copy per tensor was tried (16:35) and
        # measured again in process CPU time, 1 thread: tiny VAE decode 16.9 vs 16.5 ms, mid VAE
        # 793 vs 810 ms, UNet tiny 40.7 vs 40.2 ms (copied vs mapped) -- no kernel slowdown, while
        # the copy raised a mid UNet's peak RSS from 0.82x to 1.27x diffusers'.
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            return tensor.to(dtype)
        return tensor

    if path.suffix == ".bin":
        try:
            state_dict = torch.load(path, map_location=device, weights_only=True, mmap=True)
        except Exception as e:  # torch raises many types for a damaged or unsafe pickle
            raise ModelLoadError(f"{path}: cannot read pickle weights ({e})") from e
        for key, tensor in state_dict.items():
            yield key, convert(tensor)
        return
    target = torch.device(device)
    # safetensors accepts "cpu" but not "cpu:0" (what accelerate hands each CPU process).
    where = "cpu" if target.type == "cpu" else str(target)
    try:
        with safe_open(str(path), framework="pt", device=where) as f:
            for key in f.keys():
                yield key, convert(f.get_tensor(key))
    except (SafetensorError, OSError) as e:
        raise ModelLoadError(f"{path}: cannot read safetensors file, it may be truncated or damaged ({e})") from e


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", size, re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size {size!r} is not a size like '10GB' or an int of bytes")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    return int(float(m.group(1)) * scale)


def _carry_over(old: Path, new: Path, skip: Any) -> None:
    """Hard-link (or copy) the entries of ``old`` that ``skip`` does not claim into ``new``."""
    for entry in old.iterdir():
        if skip(entry.name) or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _shard(state_dict: Mapping[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Split greedily in key order; a tensor larger than the limit gets a shard of its own."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    return shards


class Model(torch.nn.Module):
    """Base of our diffusers-compatible models.

    A subclass sets ``config_class`` and builds its layers from ``self.config`` in ``__init__``.
    It can be built from a config object, a diffusers config dict, or keyword arguments::

        UNet2DConditionModel(config)
        UNet2DConditionModel.from_config({"block_out_channels": [32, 64], ...})
        UNet2DConditionModel.from_pretrained("path/to/sd15", subfolder="unet", torch_dtype=torch.float16)
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = self.config_class.from_dict(kwargs)
        elif isinstance(config, Mapping):
            config = self.config_class.from_dict({**config, **kwargs})
        elif kwargs:
            config = config.replace(**kwargs)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config


    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating-point parameter (what inputs should be cast to)."""
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any], **overrides: Any) -> Self:
        """Build with random initial weights from a config object or a diffusers config dict."""
        return cls(config, **overrides)

    @classmethod
    def load_config(cls, folder: str | os.PathLike[str]) -> ModelConfig:
        """Read and check ``config.json`` of a local model folder."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{cls.__name__}: no {CONFIG_NAME} in {Path(folder)}")
        data = read_json_object(path, what="model config", error=ModelLoadError)
        name = data.get("_class_name")
        expected = cls.config_class.class_name
        if name is not None and name != expected:
            raise ModelLoadError(f"{path}: _class_name is {name!r}, but {cls.__name__} loads {expected!r}")
        return cls.config_class.from_dict(data)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike[str],
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        variant: str | None = None,
        device: torch.device | str | None = None,
        use_safetensors: bool = True,
        allow_pickle: bool = False,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> Self:
        """Load a diffusers-format model folder (config.json + safetensors weights).

        ``path_or_repo`` is a local folder, or a Hub repo id resolved to one pinned commit.
        ``torch_dtype`` converts floating-point weights (default: torch's default dtype, as in
        diffusers); ``variant="fp16"`` picks ``diffusion_pytorch_model.fp16.safetensors``;
        ``device`` reads tensors straight onto that device. Missing, unexpected and
        wrongly-shaped weights are reported together in one ``ModelLoadError``.
        """
        folder = Path(path_or_repo)
        if not folder.is_dir():
            from diffblocks.hub import snapshot_download_pinned  # only when a download is needed

            folder = Path(
                snapshot_download_pinned(
                    str(path_or_repo),
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                    token=token,
                    allow_patterns=[f"{subfolder}/*"] if subfolder else None,
                )
            )
        if subfolder:
            folder = folder / subfolder
        config = cls.load_config(folder)
        files = find_weight_files(folder, variant=variant, use_safetensors=use_safetensors, allow_pickle=allow_pickle)

        dtype = torch_dtype or torch.get_default_dtype()  # diffusers' default too
        with gc_paused():
            with skip_meta_init():
                model = cls(config)
            state_dict = {
                key: tensor for path in files for key, tensor in read_weights(path, device=device or "cpu", dtype=dtype)
            }
            state_dict = cls.convert_legacy_keys(state_dict)
            model.assign_weights(state_dict, source=", ".join(str(p) for p in files))
        return model.eval()

    @classmethod
    def from_single_file(
        cls,
        path: str | os.PathLike[str],
        config: Any = None,
        torch_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> Self:
        """Load an original-layout single file (LDM / Stability / BFL keys, or GGUF).

        ``config`` (a diffusers folder, with ``subfolder=`` for a pipeline folder) overrides the
        config inferred from the file's shapes; ``allow_pickle=True`` admits ``.ckpt`` files.
        See `diffblocks.single_file`.
        """
        # Imported on use, not to hide a cycle (single_file imports no model module at run time):
        # the key tables and converters would add ~8 ms to this module's ~7 ms import.
        from diffblocks.models.single_file.models import model_from_single_file

        return model_from_single_file(cls, path, config, torch_dtype=torch_dtype, **kwargs)  # type: ignore[return-value]

    def save_single_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights as one safetensors file in the original layout other tools read."""
        from diffblocks.models.single_file.models import save_model_single_file  # on use: see from_single_file

        return save_model_single_file(self, path)

    @classmethod
    def convert_legacy_keys(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename keys written by older diffusers versions to today's names.

        The one place for legacy key fixes; subclasses extend it (e.g. the VAE's old
        ``query/key/value/proj_attn`` attention names). The base renames nothing.
        """
        return state_dict

    def assign_weights(self, state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
        """Assign tensors as parameters (no copy), after checking keys and shapes all at once."""
        expected = self.state_dict()
        missing = sorted(expected.keys() - state_dict.keys())
        unexpected = sorted(state_dict.keys() - expected.keys())
        mismatched = [
            f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state_dict[k].shape)}"
            for k in expected.keys() & state_dict.keys()
            if expected[k].shape != state_dict[k].shape
        ]
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"wrong shapes ({len(mismatched)}): {'; '.join(sorted(mismatched))}")
        if problems:
            raise ModelLoadError(f"{type(self).__name__} cannot load {source}:\n  " + "\n  ".join(problems))
        self.load_state_dict(state_dict, strict=True, assign=True)
        still_meta = [n for n, t in [*self.named_parameters(), *self.named_buffers()] if t.is_meta]
        if still_meta:
            raise ModelLoadError(f"{type(self).__name__}: tensors not in the checkpoint stay uninitialised: {still_meta}")


    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        max_shard_size: int | str = "10GB",
        variant: str | None = None,
        safe_serialization: bool = True,
    ) -> None:
        """Write ``config.json`` and safetensors weights in diffusers' layout.

        Above ``max_shard_size`` the weights are split into
        ``diffusion_pytorch_model[.variant]-0000i-of-0000n.safetensors`` with an index file.
        ``safe_serialization`` exists for diffusers-style calls; pickle files are never written.
        """
        if not safe_serialization:
            raise ValueError("save_pretrained writes safetensors only; pickle (.bin) weights are not written")
        folder = Path(save_directory)
        if folder.is_symlink():  # save where the link points; swapping would replace the link itself
            folder = folder.resolve()
        # Tensors may share storage (e.g. views of one mmap); safetensors wants each on its own.
        state_dict = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        shards = _shard(state_dict, _parse_size(max_shard_size))
        single = variant_name(f"{WEIGHTS_STEM}.safetensors", variant)
        index_name = variant_name(f"{WEIGHTS_STEM}.safetensors.index.json", variant)
        stem = single.removesuffix(".safetensors")
        shard_pattern = re.compile(re.escape(stem) + r"-\d{5}-of-\d{5}\.safetensors")

        def ours(name: str) -> bool:  # files of an earlier save that would shadow or mix with the new ones
            return name in (CONFIG_NAME, single, index_name) or shard_pattern.fullmatch(name) is not None

        # The new folder is built beside the old one and swapped in whole: until then the old
        # folder stays complete and loadable (a full disk or a kill mid-save loses nothing).
        with atomic_folder(folder) as work:
            if folder.is_dir():
                _carry_over(folder, work, skip=ours)  # other variants, READMEs: kept (hard links)
            (work / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
            if len(shards) == 1:
                save_file(shards[0], str(work / single), metadata={"format": "pt"})
                return
            weight_map: dict[str, str] = {}
            for i, shard in enumerate(shards, start=1):
                name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(work / name), metadata={"format": "pt"})
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(t.numel() * t.element_size() for t in state_dict.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (work / index_name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
