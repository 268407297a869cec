"""Expected component types of the SD / SDXL stage blocks, in one place so every block that
names a component declares the same type (validation rejects two different hints for one name)."""

UNET = "diffusers.UNet2DConditionModel"
VAE = "diffusers.AutoencoderKL"
#: Any of our schedulers (diffusers' base class name: every sampler fits).
SCHEDULER = "diffusers.SchedulerMixin"
TEXT_ENCODER = "transformers.CLIPTextModel"
TEXT_ENCODER_2 = "transformers.CLIPTextModelWithProjection"
TOKENIZER = "transformers.CLIPTokenizer"
