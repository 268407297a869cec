"""Single-file checkpoints (LDM / Stability / Black Forest Labs layouts) and GGUF, both ways.

The entry points are thin methods elsewhere::

    UNet2DConditionModel.from_single_file("unet.safetensors", config=None, torch_dtype=None)
    FluxTransformer2DModel.from_single_file("flux1-dev-Q4_0.gguf", torch_dtype=torch.bfloat16)
    model.save_single_file("model.safetensors")
    Pipeline.from_single_file("v1-5-pruned-emaonly.safetensors")        # offline, no config
    pipe.save_single_file("merged.safetensors")
    diffblocks.load(anything)                                            # see diffblocks.loader

Modules here: `keys_clip` (text-encoder tables), `pipeline` (whole-pipeline load / save) and
`tokenizer` (the bundled CLIP vocabulary). One model's files are `diffblocks.models.single_file`:
`table` (the conversion engine), `keys_unet` / `keys_vae` / `keys_flux` (the tables), `detect`
(what a file holds, configs from shapes), `checkpoint` (reading files; pickles only when
allowed), `models` (load / save) and `gguf` (quantised weights).
"""
