"""diffusers as the reference for single files, with one test-only widening.

diffusers' BFL -> diffusers Flux conversion hard-codes the full model's width
(``inner_dim = 3072``), so it cannot read a tiny Flux file. `flux_width_from_file` swaps in the
same function with that one line reading the width from ``img_in.weight`` instead; every other
line of diffusers' conversion (the qkv / linear1 splits, the shift-scale swap) is its own.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def flux_width_from_file() -> Iterator[None]:
    from diffusers.loaders import single_file_model, single_file_utils

    original = single_file_utils.convert_flux_transformer_checkpoint_to_diffusers
    source = inspect.getsource(original)
    assert source.count("inner_dim = 3072") == 1, "diffusers changed: review this patch"
    source = source.replace(
        "inner_dim = 3072",
        "inner_dim = checkpoint[next(k for k in checkpoint if k.endswith('img_in.weight'))].shape[0]",
    )
    namespace = dict(vars(single_file_utils))
    exec(compile(source, single_file_utils.__file__, "exec"), namespace)  # noqa: S102 - diffusers' own code
    entry = single_file_model.SINGLE_FILE_LOADABLE_CLASSES["FluxTransformer2DModel"]
    entry["checkpoint_mapping_fn"] = namespace[original.__name__]
    try:
        yield
    finally:
        entry["checkpoint_mapping_fn"] = original


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())[:10]
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)
