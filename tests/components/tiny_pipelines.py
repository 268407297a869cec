"""Tiny, random-weight SD 1.5 / SDXL / Flux pipeline folders in diffusers' on-disk layout.

Built with diffusers (a test-only reference) and its ``save_pretrained``, so the folders are
exactly what users have on disk: ``model_index.json`` plus one subfolder per component.
Weights are deterministic for a given seed. Sizes follow diffusers' own fast-test configs
(UNet channels (32, 64), CLIP hidden size 32, Flux 1+1 layers with head dim 16), so a
folder builds in about a second and runs a step in milliseconds.

Tokenizers are made without the Hub: a CLIP byte-level BPE with a small vocabulary (the
256 byte symbols, their ``</w>`` forms, merges for a few words, and the two special
tokens) and a T5 sentencepiece model trained in memory on a few sentences.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PIPELINE_BUILDERS",
    "build_pipeline",
    "clip_tokenizer",
    "flux_components",
    "save_pipeline",
    "sd_components",
    "sdxl_components",
    "t5_tokenizer",
]

WORDS = ("a", "photo", "of", "the", "cat", "dog", "on", "grass", "painting", "astronaut", "horse", "red")
SENTENCES = (
    "a photo of a cat",
    "a painting of an astronaut riding a horse",
    "the dog sat on the green grass",
    "a red car parked next to the old house",
    "two birds flying over the quiet lake at dawn",
    "an oil painting of mountains in winter",
    "close up portrait of a smiling woman",
    "a bowl of fresh fruit on a wooden table",
)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes (GPT-2's table)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def clip_tokenizer(words: tuple[str, ...] = WORDS, model_max_length: int = 77) -> Any:
    """A CLIP BPE tokenizer whose vocabulary knows ``words`` whole (ids < 600)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in words:
        # CLIP marks the end of a word on its last symbol; merge left to right into one token.
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
                vocab.append(pair[0] + pair[1])
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    ids = {tok: i for i, tok in enumerate(dict.fromkeys(vocab))}
    return CLIPTokenizer(
        vocab=ids,
        merges=merges,
        model_max_length=model_max_length,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def t5_tokenizer(folder: str | Path, model_max_length: int = 512) -> Any:
    """Train a tiny unigram sentencepiece model in memory, write ``folder/spiece.model``, load it."""
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 8), model_writer=buf, vocab_size=64, model_type="unigram",
        hard_vocab_limit=False, minloglevel=2, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1, seed_sentencepiece_size=1000, shuffle_input_sentence=False,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(buf.getvalue())
    return T5TokenizerFast.from_pretrained(str(folder), model_max_length=model_max_length)


def _clip_text_config(hidden: int = 32) -> Any:
    from transformers import CLIPTextConfig

    tok = clip_tokenizer()
    return CLIPTextConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        hidden_size=hidden, intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
        num_hidden_layers=5, vocab_size=1000, hidden_act="gelu", projection_dim=32,
    )


def sd_components(seed: int = 0) -> dict[str, Any]:
    """The components of a tiny StableDiffusionPipeline (random, deterministic for ``seed``)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config())
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer(),
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None, "image_encoder": None}


def sdxl_components(seed: int = 0) -> dict[str, Any]:
    """The components of a tiny StableDiffusionXLPipeline (two CLIP encoders, text-time embedding)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 32 (pooled text) + 6 * 8 (time ids)
        cross_attention_dim=64, norm_num_groups=1,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=128,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config())
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config())
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer(),
            "text_encoder_2": text_encoder_2, "tokenizer_2": clip_tokenizer(), "scheduler": scheduler,
            "image_encoder": None, "feature_extractor": None}


def flux_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict[str, Any]:
    """The components of a tiny FluxPipeline (CLIP + T5 text encoders, 1+1 layer transformer)."""
    import tempfile

    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config())
    torch.manual_seed(seed + 3)
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    )
    tok_dir = Path(tokenizer_dir) if tokenizer_dir else Path(tempfile.mkdtemp(prefix="t5tok-"))
    return {"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer(),
            "text_encoder_2": text_encoder_2, "tokenizer_2": t5_tokenizer(tok_dir),
            "scheduler": FlowMatchEulerDiscreteScheduler(), "image_encoder": None, "feature_extractor": None}


PIPELINE_BUILDERS = {
    "sd": ("StableDiffusionPipeline", sd_components),
    "sdxl": ("StableDiffusionXLPipeline", sdxl_components),
    "flux": ("FluxPipeline", flux_components),
}


def build_pipeline(kind: str, seed: int = 0) -> Any:
    """A diffusers pipeline object of ``kind`` ("sd", "sdxl" or "flux") with tiny random weights."""
    import diffusers

    class_name, make = PIPELINE_BUILDERS[kind]
    parts = make(seed)
    cls = getattr(diffusers, class_name)
    if kind == "sd":
        parts["requires_safety_checker"] = False
    return cls(**parts)


def save_pipeline(kind: str, folder: str | Path, seed: int = 0, variant: str | None = None) -> Path:
    """Write a tiny ``kind`` pipeline folder with ``save_pretrained`` and return it."""
    folder = Path(folder)
    build_pipeline(kind, seed).save_pretrained(str(folder), variant=variant)
    return folder
