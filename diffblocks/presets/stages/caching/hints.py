"""The denoiser components the cache blocks call, typed as the family blocks they replace type
them (``presets/sd/hints.py``, ``presets/flux/hints.py``; a test checks they agree). The stages
package cannot import the families, which import it."""

UNET = "diffusers.UNet2DConditionModel"
TRANSFORMER = "diffusers.FluxTransformer2DModel"
