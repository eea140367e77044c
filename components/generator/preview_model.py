"""Random-weight SD-1.5-architecture pipelines built from configs (nothing downloaded).

- The *preview* model is tiny (UNet 32/64 channels, 2-layer CLIP text encoder): built once with a
  fixed seed, saved with ``save_pretrained`` and loaded from disk afterwards, so every run of the
  app on every machine starts from the same weights. Its images are noise-like: it is untrained.
- The *full-size random* model has the real SD-1.5 UNet/VAE/text-encoder shapes, so it costs what
  SD 1.5 costs; it is for performance work only and is never saved.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

PREVIEW_DIRNAME = "preview-model"
PREVIEW_SEED = 20240429  # fixed: the preview model must be identical everywhere
PREVIEW_VERSION = "1"  # bump when the recipe changes so old caches are rebuilt
FULL_RANDOM_IDS = ("random:sd15-full",)
# The preview VAE downsamples only 2x and the UNet attends at half the latent size, so attention
# grows with the 4th power of the side: 64x64 costs ~0.06 s a step on one CPU thread, 128x128
# ~0.35 s, 512x512 never finished. The preview draws at most this many pixels and upscales.
PREVIEW_MAX_PIXELS = 64 * 64

# Byte-level characters and their end-of-word forms are enough for the CLIP BPE to encode any text.
_MERGES = ["t h", "th e</w>", "a n", "i n", "o n", "e r", "r e", "a r"]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-printable-character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A small CLIP BPE vocabulary (byte characters, their ``</w>`` forms, a few merges)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    for merge in _MERGES:
        tokens.append(merge.replace(" ", ""))
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def preview_draw_size(width: int, height: int) -> tuple[int, int]:
    """The size the preview model draws a ``width`` x ``height`` request at: the same aspect ratio
    within ``PREVIEW_MAX_PIXELS`` (multiples of 8, at least 8 a side); the image is upscaled after."""
    if width * height <= PREVIEW_MAX_PIXELS:
        return width, height
    scale = (PREVIEW_MAX_PIXELS / (width * height)) ** 0.5
    return max(8, int(width * scale) // 8 * 8), max(8, int(height * scale) // 8 * 8)


def _scheduler_config() -> dict:
    return dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                num_train_timesteps=1000, steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def build_preview_components(work_dir: Path) -> dict:
    """The tiny pipeline's components, deterministic for a given recipe version."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_path, merges_path = write_tokenizer_files(work_dir / "tokenizer-src")
    tokenizer = CLIPTokenizer.from_pretrained(str(vocab_path.parent), model_max_length=77,
                                              local_files_only=True)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(PREVIEW_SEED)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=32)
        vae = AutoencoderKL(
            block_out_channels=[32, 64], in_channels=3, out_channels=3,
            latent_channels=4,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], norm_num_groups=32)
        text_config = CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, hidden_size=32, intermediate_size=37,
            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2,
            vocab_size=len(tokenizer), max_position_embeddings=77, projection_dim=32)
        text_encoder = CLIPTextModel(text_config)
    finally:
        torch.random.set_rng_state(generator_state)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler=DDIMScheduler(**_scheduler_config()), safety_checker=None,
                feature_extractor=None, requires_safety_checker=False)


def ensure_preview_model(cache_dir: Path) -> Path:
    """Build the preview model into ``cache_dir/preview-model`` once; return its folder."""
    from diffusers import StableDiffusionPipeline

    target = Path(cache_dir) / PREVIEW_DIRNAME
    marker = target / "stylus-preview.json"
    if marker.is_file() and json.loads(marker.read_text()).get("version") == PREVIEW_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # a folder of this build's own (two processes may build at once); a crash leaves only it
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREVIEW_DIRNAME}.tmp-", dir=target.parent))
    try:
        pipe = StableDiffusionPipeline(**build_preview_components(tmp))
        pipe.save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(tmp / "tokenizer-src")
        (tmp / "stylus-preview.json").write_text(json.dumps(
            {"version": PREVIEW_VERSION, "seed": PREVIEW_SEED,
             "note": "untrained random-weight preview model built by Stylus"}))
        if marker.is_file() and json.loads(marker.read_text()).get("version") == PREVIEW_VERSION:
            return target  # another process finished first: use its identical build
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # complete folders only
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_full_random_pipeline(dtype: torch.dtype):
    """SD-1.5-sized UNet, VAE and CLIP ViT-L text encoder with random weights (for timing)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = Path(__import__("tempfile").mkdtemp(prefix="stylus-tok-"))
    vocab_path, merges_path = write_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(vocab_path.parent), model_max_length=77,
                                              local_files_only=True)
    torch.manual_seed(PREVIEW_SEED)
    unet = UNet2DConditionModel(  # the SD-1.5 UNet config (860M parameters)
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(  # CLIP ViT-L/14 text tower
        vocab_size=max(len(tokenizer), 49408), hidden_size=768, intermediate_size=3072,
        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
        hidden_act="quick_gelu", projection_dim=768, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=DDIMScheduler(**_scheduler_config()), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    return pipe.to(dtype=dtype)
