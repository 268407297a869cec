"""Family-agnostic stage blocks: guiders, VAE encode/decode, timesteps and scheduler steps,
starting latents, image pre/post-processing (and ``prompts``: prompt-list helpers). They carry no family flags; a family adds its own
blocks (prompt encoding, the denoiser call, extra conditioning) beside them.

Importing this package registers the blocks.
"""

from . import caching, denoise, guiders, images, latents, timesteps, vae  # noqa: F401

__all__ = ["caching", "denoise", "guiders", "images", "latents", "timesteps", "vae"]
