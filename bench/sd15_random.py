"""A Stable Diffusion 1.5-class pipeline with random weights, for speed measurements.

Speed does not depend on the weights' values, only on the shapes, so the UNet, VAE and CLIP
text encoder are built from SD 1.5's configs (860M-parameter UNet, 84M VAE, 123M text encoder)
and written with ``save_pretrained``: the engine then loads them through ``from_pretrained`` as
it loads real weights. Nothing is downloaded. The tokenizer is the tiny test models' one (a
byte-level vocabulary; the text encoder's 49408-token embedding never sees ids past it).

``toy=True`` keeps every block type of the real model but shrinks widths and depths, so the
same code runs on a CPU in seconds (CI runs it so that it cannot rot).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

# stable-diffusion-v1-5/stable-diffusion-v1-5, unet/config.json and vae/config.json.
UNET_SD15: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
VAE_SD15: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
# openai/clip-vit-large-patch14's text tower.
TEXT_SD15: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
# The same block types with small widths and one layer per block.
UNET_TOY = {
    **UNET_SD15,
    "block_out_channels": (32, 32, 64, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
VAE_TOY = {
    **VAE_SD15,
    "block_out_channels": (8, 8, 16, 16),
    "layers_per_block": 1,
    "norm_num_groups": 4,
}
TEXT_TOY = {
    **TEXT_SD15,
    "vocab_size": 1000,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}


def build(folder: Path, tokenizer_dir: Path, *, toy: bool, device: str = "cpu") -> Path:
    """Write the pipeline to ``folder`` (reused when it is already there); returns ``folder``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    if (folder / "model_index.json").exists():
        return folder
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    # Random init on the GPU when there is one: seconds instead of a minute for 860M weights.
    with torch.device(device):
        unet = UNet2DConditionModel(**(UNET_TOY if toy else UNET_SD15))
        vae = AutoencoderKL(**(VAE_TOY if toy else VAE_SD15))
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                **(TEXT_TOY if toy else TEXT_SD15),
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    # SD 1.5's own schedule; the benchmark uses Euler over it, the engine's default.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # Half precision on disk: half the bytes to write and read; loading casts as asked. (The
    # cast warns about modules to keep in float32; SD 1.5 has none.)
    diffusers_logging.set_verbosity_error()
    pipeline.to(torch.float16).save_pretrained(partial)
    partial.rename(folder)
    return folder


def unet_flops(folder: Path, width: int, height: int) -> float:
    """FLOPs of one guided UNet step for one image (two rows), counted on the meta device."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = UNet2DConditionModel.load_config(Path(folder) / "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        sample = torch.empty(2, unet.config.in_channels, height // 8, width // 8)
        context = torch.empty(2, 77, unet.config.cross_attention_dim)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            unet(sample, torch.tensor(999.0), encoder_hidden_states=context)
    return float(counter.get_total_flops())


def vae_decode_flops(folder: Path, width: int, height: int) -> float:
    """FLOPs of decoding one image's latents, counted on the meta device."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    config = AutoencoderKL.load_config(Path(folder) / "vae")
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
        latents = torch.empty(1, vae.config.latent_channels, height // 8, width // 8)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            vae.decode(latents)
    return float(counter.get_total_flops())
