"""Expected component types of the SD 1.x / SDXL stage blocks (the shared VAE and scheduler
hints come from the stages package, so both declare one type per component name)."""

from ..stages.hints import SCHEDULER, VAE

UNET = "diffusers.UNet2DConditionModel"
TEXT_ENCODER = "transformers.CLIPTextModel"
TEXT_ENCODER_2 = "transformers.CLIPTextModelWithProjection"
TOKENIZER = "transformers.CLIPTokenizer"

#: Component name -> expected type, for every component an SD / SDXL preset names.
COMPONENT_HINTS: dict[str, str] = {
    "unet": UNET, "vae": VAE, "scheduler": SCHEDULER, "text_encoder": TEXT_ENCODER,
    "tokenizer": TOKENIZER, "text_encoder_2": TEXT_ENCODER_2, "tokenizer_2": TOKENIZER,
}
