"""The components the Flux blocks name, with the type each expects (one place, so every block
that names a component declares the same type: validation rejects two hints for one name)."""

from __future__ import annotations

from ..stages import hints as _hints
from ..sd import hints as _sd_hints

TRANSFORMER = "diffusers.FluxTransformer2DModel"
VAE = _hints.VAE
SCHEDULER = _hints.SCHEDULER
TEXT_ENCODER = _sd_hints.TEXT_ENCODER
TOKENIZER = _sd_hints.TOKENIZER
TEXT_ENCODER_2 = "transformers.T5EncoderModel"
TOKENIZER_2 = "transformers.T5TokenizerFast"

#: Component name -> (library, class) as a Flux model_index.json writes them.
FLUX_COMPONENTS: dict[str, tuple[str, str]] = {
    "transformer": ("diffusers", "FluxTransformer2DModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "text_encoder_2": ("transformers", "T5EncoderModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "tokenizer_2": ("transformers", "T5TokenizerFast"),
}
