"""Real adapter files for tests, written with safetensors in the formats tools produce.

Every writer takes the target modules and their shapes as parameters and fills tensors
with seeded random values, so the same call writes the same bytes. Shapes default to real
SD 1.5 widths (text encoder 768, UNet 320/640 channels, context 768); pass ``tiny_targets``
style lists to match a tiny test UNet.

A target is ``(module, in_features, out_features)`` for linear layers or
``(module, in_channels, out_channels, kernel)`` for convolutions; ``module`` is the kohya
name (``lora_unet_..._attn1_to_q``) or, for the peft writer, the dotted diffusers path.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.numpy import save_file

Target = tuple  # (module, in, out) or (module, in, out, kernel)

_UB = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0"
SD15_KOHYA_TARGETS: list[Target] = [
    (f"{_UB}_attn1_to_q", 640, 640), (f"{_UB}_attn1_to_k", 640, 640),
    (f"{_UB}_attn2_to_k", 768, 640), (f"{_UB}_attn2_to_v", 768, 640),
    ("lora_unet_down_blocks_1_attentions_0_proj_in", 640, 640, 1),
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
    ("lora_te_text_model_encoder_layers_0_self_attn_v_proj", 768, 768),
]
SD15_LOCON_EXTRA: list[Target] = [("lora_unet_down_blocks_0_resnets_0_conv1", 320, 320, 3)]
SD2_KOHYA_TARGETS: list[Target] = [
    (f"{_UB}_attn2_to_k", 1024, 640), ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 1024, 1024)]
_XB = "lora_unet_input_blocks_4_1_transformer_blocks_0"
SDXL_KOHYA_TARGETS: list[Target] = [
    (f"{_XB}_attn1_to_q", 640, 640), (f"{_XB}_attn2_to_k", 2048, 640),
    ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
    ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280),
]
_PB = "unet.down_blocks.1.attentions.0.transformer_blocks.0"
SD15_PEFT_TARGETS: list[Target] = [
    (f"{_PB}.attn1.to_q", 640, 640), (f"{_PB}.attn2.to_k", 768, 640), (f"{_PB}.attn2.to_v", 768, 640),
    ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
]


def kohya_metadata(output_name: str = "my_lora", *, base: str = "sd_v1", dim: int = 4, alpha: float = 4,
                   tag_frequency: dict | None = None, **more: str) -> dict[str, str]:
    """``__metadata__`` as kohya sd-scripts writes it (every value a string)."""
    freq = tag_frequency if tag_frequency is not None else {
        "10_mychar": {"mychar": 20, "1girl": 18, "solo": 15, "smile": 4}}
    meta = {"ss_output_name": output_name, "ss_base_model_version": base, "ss_network_dim": str(dim),
            "ss_network_alpha": str(alpha), "ss_network_module": "networks.lora",
            "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors", "ss_tag_frequency": json.dumps(freq),
            "ss_training_comment": "None", "modelspec.architecture": "stable-diffusion-v1/lora"}
    meta.update({k: str(v) for k, v in more.items()})
    return meta


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _save(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata or None)
    return path


def _down_up(t: Target, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    _, fin, fout, *k = t
    if k:
        ks = k[0]
        return (rng.standard_normal((rank, fin, ks, ks), dtype=np.float32) * 0.01,
                rng.standard_normal((fout, rank, 1, 1), dtype=np.float32) * 0.01)
    return (rng.standard_normal((rank, fin), dtype=np.float32) * 0.01,
            rng.standard_normal((fout, rank), dtype=np.float32) * 0.01)


def write_kohya_lora(path: str | Path, *, targets: Sequence[Target] = SD15_KOHYA_TARGETS, rank: int = 4,
                     alpha: float | None = None, metadata: dict[str, str] | None = None,
                     seed: int = 0, dtype: str = "float16") -> Path:
    """A kohya/A1111/Civitai-format LoRA: ``MODULE.lora_down.weight``, ``.lora_up.weight``, ``.alpha``."""
    rng, tensors = _rng(seed), {}
    for t in targets:
        down, up = _down_up(t, rank, rng)
        tensors[f"{t[0]}.lora_down.weight"] = down.astype(dtype)
        tensors[f"{t[0]}.lora_up.weight"] = up.astype(dtype)
        tensors[f"{t[0]}.alpha"] = np.array(alpha if alpha is not None else rank, dtype=dtype)
    return _save(path, tensors, kohya_metadata() if metadata is None else metadata)


def write_peft_lora(path: str | Path, *, targets: Sequence[Target] = SD15_PEFT_TARGETS, rank: int = 4,
                    metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    """diffusers/peft format (``save_lora_weights``): ``PATH.lora_A.weight`` / ``PATH.lora_B.weight``."""
    rng, tensors = _rng(seed), {}
    for t in targets:
        down, up = _down_up(t, rank, rng)
        tensors[f"{t[0]}.lora_A.weight"] = down
        tensors[f"{t[0]}.lora_B.weight"] = up
    return _save(path, tensors, metadata or {})


def write_loha(path: str | Path, *, targets: Sequence[Target] = SD15_KOHYA_TARGETS[:3], rank: int = 4,
               metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    """LyCORIS LoHa: ``hada_w1_a``/``hada_w1_b``/``hada_w2_a``/``hada_w2_b`` per module."""
    rng, tensors = _rng(seed), {}
    for module, fin, fout, *_ in targets:
        for i in (1, 2):
            tensors[f"{module}.hada_w{i}_a"] = rng.standard_normal((fout, rank), dtype=np.float32)
            tensors[f"{module}.hada_w{i}_b"] = rng.standard_normal((rank, fin), dtype=np.float32)
        tensors[f"{module}.alpha"] = np.array(rank, dtype=np.float32)
    meta = metadata if metadata is not None else kohya_metadata("my_loha", ss_network_module="lycoris.kohya")
    return _save(path, tensors, meta)


def write_lokr(path: str | Path, *, targets: Sequence[Target] = SD15_KOHYA_TARGETS[:3], factor: int = 8,
               metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    """LyCORIS LoKr: ``lokr_w1`` (factor x factor) and ``lokr_w2`` (the rest) per module."""
    rng, tensors = _rng(seed), {}
    for module, fin, fout, *_ in targets:
        tensors[f"{module}.lokr_w1"] = rng.standard_normal((factor, factor), dtype=np.float32)
        tensors[f"{module}.lokr_w2"] = rng.standard_normal((fout // factor, fin // factor), dtype=np.float32)
    meta = metadata if metadata is not None else kohya_metadata("my_lokr", ss_network_module="lycoris.kohya")
    return _save(path, tensors, meta)


def write_dora(path: str | Path, *, targets: Sequence[Target] = SD15_KOHYA_TARGETS[:3], rank: int = 4,
               seed: int = 0, on_output: bool = False) -> Path:
    """Kohya LoRA plus ``dora_scale`` per module: per input column ``(1, in)`` (LyCORIS
    ``wd_on_out=False``, which Stylus refuses) or with ``on_output`` per output row ``(out, 1)``."""
    rng, tensors = _rng(seed), {}
    for t in targets:
        down, up = _down_up(t, rank, rng)
        shape = (t[2], 1) if on_output else (1, t[1])
        tensors |= {f"{t[0]}.lora_down.weight": down, f"{t[0]}.lora_up.weight": up,
                    f"{t[0]}.dora_scale": np.ones(shape, dtype=np.float32)}
    return _save(path, tensors, kohya_metadata("my_dora"))


def write_truncated(path: str | Path, keep: float = 0.5, **kwargs) -> Path:
    """A valid kohya LoRA cut to ``keep`` of its bytes (an interrupted download)."""
    path = write_kohya_lora(path, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_not_safetensors(path: str | Path) -> Path:
    """A text file (an HTML error page saved under a .safetensors name)."""
    path = Path(path)
    path.write_text("<!DOCTYPE html><html><body>429 Too Many Requests</body></html>\n")
    return path


def write_pickle(path: str | Path) -> Path:
    """A pickled state dict as a .ckpt/.pt/.bin would hold (plain lists, no torch needed)."""
    path = Path(path)
    with path.open("wb") as fh:
        pickle.dump({"state_dict": {"lora_te_x.lora_down.weight": [[0.0] * 4] * 2}}, fh)
    return path


def civitai_version_info(version_id: int = 1001, model_id: int = 501, *, file_name: str = "my_lora.safetensors",
                         sha256: str = "", base_model: str = "SD 1.5", trained_words: Sequence[str] = ("mychar",),
                         model_name: str = "My Character", tags: Sequence[str] = ("character", "anime"),
                         nsfw: bool = False, poi: bool = False) -> dict:
    """A Civitai model-version JSON as Civitai Helper saves it to ``NAME.civitai.info``."""
    return {
        "id": version_id, "modelId": model_id, "name": "v1.0", "baseModel": base_model,
        "trainedWords": list(trained_words), "description": "<p>version notes</p>",
        "model": {"name": model_name, "type": "LORA", "nsfw": nsfw, "poi": poi, "tags": list(tags)},
        "files": [{"name": file_name, "sizeKB": 1.0, "primary": True, "type": "Model",
                   "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
                   "hashes": {"SHA256": sha256.upper(), "AutoV2": sha256[:10].upper()} if sha256 else {}}],
        "images": [{"url": f"https://image.civitai.com/x/{version_id}.jpeg", "nsfw": "None", "width": 512,
                    "height": 768, "meta": {"prompt": f"mychar, 1girl, <lora:{Path(file_name).stem}:0.7>",
                                            "negativePrompt": "lowres"}}],
    }


def a1111_user_metadata(description: str = "A character adapter.", activation_text: str = "mychar, red scarf",
                        preferred_weight: float = 0.65, sd_version: str = "SD1", notes: str = "") -> dict:
    """A1111's ``NAME.json`` (the extra-networks "user metadata" editor)."""
    return {"description": description, "sd version": sd_version, "activation text": activation_text,
            "preferred weight": preferred_weight, "negative text": "", "notes": notes}


def write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_hf_repo(root: str | Path, *, base_model: str = "runwayml/stable-diffusion-v1-5",
                  instance_prompt: str = "a photo of sks dog", weight_names: Sequence[str] = (
                      "pytorch_lora_weights.safetensors",), tags: Sequence[str] = ("text-to-image", "lora", "dog"),
                  front_matter: str | None = None, seed: int = 0) -> Path:
    """A diffusers-trained LoRA repository: README.md with YAML front matter and peft weights."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if front_matter is None:
        tag_lines = "".join(f"- {t}\n" for t in tags)
        front_matter = (f"license: creativeml-openrail-m\nbase_model: {base_model}\n"
                        f"instance_prompt: {instance_prompt}\ntags:\n{tag_lines}"
                        "widget:\n- text: a sks dog on the beach\n  output:\n    url: images/ex0.png\n"
                        "- text: a sks dog in a bucket\n")
    (root / "README.md").write_text(f"---\n{front_matter}---\n\n# LoRA DreamBooth\n\nWeights for a dog.\n",
                                    encoding="utf-8")
    (root / "images").mkdir(exist_ok=True)
    (root / "images" / "ex0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for i, name in enumerate(weight_names):
        write_peft_lora(root / name, seed=seed + i)
    return root
