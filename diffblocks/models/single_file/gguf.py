"""GGUF files: quantised weights kept quantised in memory, dequantised layer by layer.

A GGUF file stores each tensor as F32 / F16 / BF16 or in a ggml block quantisation (Q4_0,
Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, ...). Quantisation blocks run along a tensor's rows, so a
quantised tensor is kept as its raw bytes, one row of bytes per weight row (`QuantTensor`):
splitting BFL's fused ``qkv`` into q / k / v, or swapping the halves of the final modulation,
moves whole rows and needs no dequantisation. Linear layers with quantised weights become
`GGUFLinear`, which dequantises its weight in ``forward`` (Q8_0 and Q4_0 in torch, the other
types through ``gguf.quants.dequantize``) and computes in the chosen ``compute_dtype``; every
other tensor is converted to ``compute_dtype`` when loaded.

    transformer = FluxTransformer2DModel.from_single_file("flux1-dev-Q4_0.gguf", torch_dtype=torch.bfloat16)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffblocks.models.loading import gc_paused, skip_meta_init
from diffblocks.models.single_file.checkpoint import Checkpoint, CheckpointError
from diffblocks.models.single_file.convert import (find_prefix, inferred_config, key_map, model_kind, original_state_dict,
                                                   read_config)

if TYPE_CHECKING:
    from diffblocks.models.modeling import Model

__all__ = ["QuantTensor", "GGUFLinear", "read_gguf", "model_from_gguf", "save_gguf", "resident_bytes"]


def _gguf() -> Any:
    import gguf  # a runtime dependency, imported when a GGUF file is actually used

    return gguf


class QuantTensor:
    """The raw bytes of a quantised tensor: ``data`` is uint8 ``[*rows, bytes_per_row]``."""

    def __init__(self, data: torch.Tensor, qtype: Any, shape: tuple[int, ...]) -> None:
        self.data, self.qtype, self.shape = data, qtype, torch.Size(shape)

    def split_rows(self, sizes: list[int]) -> list[QuantTensor]:
        parts = torch.split(self.data, sizes, dim=0)
        return [QuantTensor(p, self.qtype, (n, *self.shape[1:])) for p, n in zip(parts, sizes)]

    def swap_halves(self) -> QuantTensor:
        first, second = self.data.chunk(2, dim=0)
        return QuantTensor(torch.cat([second, first]), self.qtype, tuple(self.shape))

    def reshape(self, shape: Any) -> QuantTensor:
        if tuple(shape)[-1] != self.shape[-1]:
            raise ValueError(f"a quantised tensor {tuple(self.shape)} cannot become {tuple(shape)}")
        return QuantTensor(self.data, self.qtype, tuple(shape))

    def is_floating_point(self) -> bool:
        return False

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.data, self.qtype, self.shape).to(dtype)


# -- dequantisation --------------------------------------------------------------------------
def _q8_0(data: torch.Tensor) -> torch.Tensor:
    """Q8_0 blocks: fp16 scale d, then 32 int8 values; x = d * q."""
    blocks = data.reshape(-1, 34)
    d = blocks[:, :2].contiguous().view(torch.float16).float()
    q = blocks[:, 2:].contiguous().view(torch.int8).float()
    return d * q


def _q4_0(data: torch.Tensor) -> torch.Tensor:
    """Q4_0 blocks: fp16 scale d, then 16 bytes; low nibbles are values 0-15, high nibbles
    16-31; x = d * (q - 8)."""
    blocks = data.reshape(-1, 18)
    d = blocks[:, :2].contiguous().view(torch.float16).float()
    packed = blocks[:, 2:]
    q = torch.cat([packed & 0x0F, packed >> 4], dim=1).float() - 8
    return d * q


def dequantize(data: torch.Tensor, qtype: Any, shape: torch.Size) -> torch.Tensor:
    """float32 values of quantised bytes ``data`` with logical ``shape``."""
    gguf = _gguf()
    fast = {gguf.GGMLQuantizationType.Q8_0: _q8_0, gguf.GGMLQuantizationType.Q4_0: _q4_0}.get(qtype)
    if fast is not None:
        return fast(data).reshape(shape)
    if qtype == gguf.GGMLQuantizationType.BF16:
        return (data.contiguous().view(torch.int16).to(torch.int32) << 16).view(torch.float32).reshape(shape)
    values = gguf.quants.dequantize(data.cpu().numpy(), qtype)
    return torch.from_numpy(np.ascontiguousarray(values)).reshape(shape)


class GGUFLinear(nn.Module):
    """A linear layer whose weight stays quantised; dequantised per call in ``compute_dtype``.

    The state-dict names are nn.Linear's (``weight`` holds the raw bytes, ``bias`` a tensor).
    """

    def __init__(self, weight: QuantTensor, bias: torch.Tensor | None, compute_dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight.data, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.qtype, self.compute_dtype = weight.qtype, compute_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize(self.weight, self.qtype, torch.Size((self.out_features, self.in_features)))
        w = w.to(device=x.device, dtype=self.compute_dtype)
        bias = self.bias.to(self.compute_dtype) if self.bias is not None else None
        return F.linear(x.to(self.compute_dtype), w, bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype.name}"


# -- files -----------------------------------------------------------------------------------
def read_gguf(path: str | os.PathLike[str]) -> Checkpoint:
    """A GGUF file as a `Checkpoint` of plain tensors and `QuantTensor`s (logical torch shapes)."""
    gguf = _gguf()
    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - the reader raises ValueError/struct errors for bad files
        raise CheckpointError(f"{path}: not a readable GGUF file ({e})") from None
    plain = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}
    tensors: dict[str, Any] = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dims fastest-first
        data = torch.from_numpy(np.array(t.data))  # a copy: the reader's arrays map the file read-only
        if t.tensor_type in plain:
            tensors[t.name] = data.reshape(shape)
        else:
            tensors[t.name] = QuantTensor(data.reshape(*shape[:-1], -1), t.tensor_type, shape)
    return Checkpoint.from_tensors(tensors, str(path))


def _replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def model_from_gguf(
    cls: type[Model], path: str | os.PathLike[str], config: Any = None, *, subfolder: str | None = None,
    compute_dtype: torch.dtype | None = None,
) -> Model:
    """Load ``cls`` from a GGUF file (BFL Flux keys, or an LDM UNet); quantised linear weights
    stay quantised (`GGUFLinear`)."""
    dtype = compute_dtype or torch.get_default_dtype()
    ckpt = read_gguf(path)
    prefix = find_prefix(cls, ckpt, Path(path))
    cfg = read_config(config, cls, subfolder) if config is not None else cls.config_class.from_dict(
        inferred_config(cls, ckpt, prefix))
    with gc_paused():
        with skip_meta_init():
            model = cls(cfg)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        state = key_map(model, prefix).to_model(ckpt, shapes, source=f"{path} (as {cls.__name__})")
        linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        for key, value in list(state.items()):
            if not isinstance(value, QuantTensor):
                state[key] = value.to(dtype)
                continue
            module_name = key.rpartition(".")[0]
            if key.endswith(".weight") and module_name in linears:
                bias = state.get(f"{module_name}.bias")
                bias = bias.to(dtype) if isinstance(bias, torch.Tensor) else (bias.dequantize(dtype) if bias is not None else None)
                layer = GGUFLinear(value, bias, dtype)
                _replace_module(model, module_name, layer)
                state[key] = layer.weight
                if bias is not None:
                    state[f"{module_name}.bias"] = layer.bias
            else:  # conv / norm / embedding weights: small, dequantised once
                state[key] = value.dequantize(dtype)
        model.assign_weights(state, source=str(path))
    return model.eval()


def save_gguf(model: Model, path: str | os.PathLike[str], qtype: str = "Q8_0", *, arch: str | None = None) -> Path:
    """Write ``model`` as GGUF in the original key layout: 2-D weights whose rows fit whole
    quantisation blocks in ``qtype``, everything else F32 (as community files keep norms and
    biases)."""
    gguf = _gguf()
    qt = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[qt][0]
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch or model_kind(type(model))[0])
    for key, tensor in original_state_dict(model).items():
        array = tensor.detach().float().cpu().numpy()
        if qt != gguf.GGMLQuantizationType.F32 and array.ndim == 2 and array.shape[-1] % block == 0:
            writer.add_tensor(key, gguf.quants.quantize(array, qt), raw_dtype=qt)
        else:
            writer.add_tensor(key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def resident_bytes(model: nn.Module) -> int:
    """Bytes the model's parameters and buffers hold (quantised weights at their packed size)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())
