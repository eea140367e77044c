"""Metadata other tools read (issue 12): PNGs made by the real preview pipeline with real LoRA files,
read back by the third-party parser sd-parsers, by A1111's rules (pairs, JSON-quoted values, "Lora
hashes") and by Civitai's (``<lora:NAME:W>`` names, ``Civitai resources``); the ComfyUI API-format
workflow exported for each variant is a valid node graph with the variant's weights and settings.

The hash values are computed here from the files' bytes, independently of the code under test:
AutoV3 = SHA256 of the bytes after the safetensors header (first 12 hex digits), Model hash = SHA256
of the whole checkpoint file (first 10)."""
from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import pytest
from PIL import Image

from components.generator import format_parameters, parse_parameters, save_png, save_result
from components.generator.comfy import COMFY_SAMPLERS, comfy_files, comfy_workflow
from components.generator.generate import checkpoint_hash
from components.generator.metadata import lora_aliases
from components.types import Variant
from tests.fakes.tiny_loras import write_kohya
from tests.generation_helpers import folder_card, lighthouse_request

sd_parsers = pytest.importorskip("sd_parsers", reason="test dependency: pip install sd-parsers (requirements.txt)")

# How the readers find things, written from their documented formats:
# A1111 (modules/infotext_utils.py): "key: value" pairs, a value either "JSON string" or up to a comma
A1111_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# Civitai (src/utils/metadata/automatic.metadata.ts): tag names and weights, the resources list
CIVITAI_TAG = re.compile(r"<(lora|hypernet):([a-zA-Z0-9_.\-]+):([0-9.]+)>")
CIVITAI_RESOURCES = re.compile(r", Civitai resources:\s*(\[[^\]]+\])")
VARIANT_PROMPT = "a lighthouse, at dusk: stormy"
NEGATIVE = "blurry, low quality"


def a1111_pairs(parameters: str) -> dict[str, str]:
    """The last line's pairs as A1111 reads them: a quoted value is JSON (``json.loads``)."""
    out = {}
    for key, value in A1111_PAIR.findall(parameters.strip().split("\n")[-1]):
        out[key] = json.loads(value) if value[:1] == value[-1:] == '"' and len(value) > 1 else value
    return out


def autov3(path: Path) -> str:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n:]).hexdigest()[:12]


@pytest.fixture(scope="module")
def made(tiny_generator, tmp_path_factory):
    """One variant with two real kohya files whose names clash once made tag-safe (one card with a
    Civitai version id), saved with the ComfyUI workflows; and the same variant in the other order."""
    tmp = tmp_path_factory.mktemp("meta")
    a = folder_card("meta-a", write_kohya(tmp / "a" / "My Style (v2).safetensors", seed=1))
    b = folder_card("meta-b", write_kohya(tmp / "b" / "My Style [v2].safetensors", seed=2))
    a.civitai_version_id = 4242
    cards = {a.id: a, b.id: b}
    weights = {"meta-a": 0.6, "meta-b": 0.3333}
    request = lighthouse_request(negative_prompt=NEGATIVE, guidance=6.5, seed=41)
    res = tiny_generator.generate(request, [Variant(0, weights, VARIANT_PROMPT)], cards)
    files = comfy_files(tiny_generator.settings.model, res.model, cards.values())
    summary = save_result(res, tmp / "out", comfy=files)
    swapped = tiny_generator.generate(request, [Variant(0, dict(reversed(weights.items())), VARIANT_PROMPT)],
                                      cards)
    return dict(res=res, summary=summary, cards=cards, weights=weights, request=request, files=files,
                swapped=swapped)


def test_sd_parsers_reads_prompt_settings_model_and_hashes(made):
    res, request = made["res"], made["request"]
    assert not any("stand-in" in n or "skipped" in n for n in res.notices), res.notices  # real files applied
    info = sd_parsers.ParserManager().parse(res.images[0].path)
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    (sampler,) = info.samplers
    assert sampler.name == "Euler"  # the scheduler the tests' settings choose (euler)
    assert sampler.parameters["steps"] == str(request.steps)
    assert float(sampler.parameters["cfg_scale"]) == request.guidance
    assert sampler.parameters["seed"] == str(request.seed)
    assert info.metadata["Size"] == f"{request.width}x{request.height}"
    assert sampler.model is not None and sampler.model.name == res.model
    assert sampler.model.hash is None  # the preview model: no checkpoint file anyone else has
    assert info.full_prompt.startswith(VARIANT_PROMPT + " <lora:")
    assert info.full_negative_prompt == NEGATIVE
    paths = {c.id: Path(c.local_path) for c in made["cards"].values()}
    hashes = info.metadata["Hashes"]  # the JSON form (Civitai's A1111 extension writes it)
    assert sorted(hashes.values()) == sorted(autov3(p) for p in paths.values())
    assert all(k.startswith("lora:") for k in hashes)


def test_hash_fields_parse_as_a1111_and_civitai_read_them(made):
    res, cards = made["res"], made["cards"]
    text = res.images[0].parameters
    pairs = a1111_pairs(text)
    assert "Model hash" not in pairs  # preview model: nothing to hash (see test_model_hash_...)
    lora_hashes = dict(item.split(": ") for item in pairs["Lora hashes"].split(", "))
    prompt = text.split("\nNegative prompt: ")[0]
    tags = {name: float(w) for _kind, name, w in CIVITAI_TAG.findall(prompt)}
    assert set(tags) == set(lora_hashes) and len(tags) == 2  # every adapter found by Civitai's pattern
    by_hash = {autov3(Path(c.local_path)): c.id for c in cards.values()}
    assert set(by_hash) == set(lora_hashes.values())
    assert all(re.fullmatch(r"[0-9a-f]{12}", h) for h in lora_hashes.values())
    for alias, h in lora_hashes.items():  # each alias carries its own card's weight
        assert tags[alias] == pytest.approx(made["weights"][by_hash[h]], abs=5e-4)
    assert all(alias.startswith("My_Style_v2_") for alias in tags)  # the clash made both unique
    resources = json.loads(CIVITAI_RESOURCES.search(text).group(1))
    assert resources == [{"type": "lora", "weight": 0.6, "modelVersionId": 4242}]  # only the card with an id
    # the same adapters in the other order get the same aliases
    swapped = a1111_pairs(made["swapped"].images[0].parameters)["Lora hashes"]
    assert dict(item.split(": ") for item in swapped.split(", ")) == lora_hashes


def test_model_hash_of_a_checkpoint_file_as_a1111_writes_it(tmp_path):
    from safetensors.torch import save_file
    import torch
    ckpt = tmp_path / "my_model_v1.safetensors"
    save_file({"model.diffusion_model.w": torch.arange(64, dtype=torch.float32)}, str(ckpt))
    h = checkpoint_hash(str(ckpt))
    assert h == hashlib.sha256(ckpt.read_bytes()).hexdigest()[:10]
    for no_file in ("", "runwayml/stable-diffusion-v1-5", str(tmp_path), "random:sd15-full"):
        assert checkpoint_hash(no_file) == ""
    text = format_parameters("a cat", "", {"Steps": 20, "Sampler": "Euler", "CFG scale": 7.0, "Seed": 1,
                                           "Size": "512x512", "Model hash": h, "Model": ckpt.stem})
    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "m.png", text)
    (sampler,) = sd_parsers.ParserManager().parse(png).samplers
    assert (sampler.model.name, sampler.model.hash) == (ckpt.stem, h)
    assert a1111_pairs(text)["Model hash"] == h and parse_parameters(text)["hashes"] == {"model": h}


def test_the_preview_generator_writes_no_model_hash(tiny_generator):
    assert tiny_generator.model_hash() == ""


def test_aliases_fit_civitai_and_do_not_depend_on_order():
    names = {"c1": "My Style (v2)", "c2": "My/Style v2", "c3": "ok.name-1", "c4": "日本語"}
    aliases = lora_aliases(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", a) for a in aliases.values())
    assert len(set(aliases.values())) == len(names)
    assert aliases["c3"] == "ok.name-1"  # already fine: kept as written
    assert lora_aliases(dict(reversed(names.items()))) == aliases
    assert lora_aliases({"c1": "My Style (v2)"})["c1"] == "My_Style_v2"  # alone: no suffix


@pytest.mark.parametrize("value", ['a, b', 'key: v', 'two\nlines', 'say "hi"', '"quoted"', 'tab\there'])
def test_values_are_quoted_so_a1111_reads_them_back(value):
    text = format_parameters("p", "", {"Steps": 2, "Sampler": "Euler", "Seed": 1, "Odd": value, "After": "x"})
    pairs = a1111_pairs(text)
    assert pairs["Odd"] == value and pairs["After"] == "x"
    assert parse_parameters(text)["Odd"] == value


# ---- ComfyUI ----------------------------------------------------------------------------------
# ComfyUI's core nodes (nodes.py): each input either a link of an output type (str) or a widget
# value (a Python type); and each node's output types, in order.
COMFY_NODES: dict[str, tuple[dict[str, object], tuple[str, ...]]] = {
    "CheckpointLoaderSimple": ({"ckpt_name": str}, ("MODEL", "CLIP", "VAE")),
    "LoraLoader": ({"model": "MODEL", "clip": "CLIP", "lora_name": str, "strength_model": float,
                    "strength_clip": float}, ("MODEL", "CLIP")),
    "CLIPTextEncode": ({"text": str, "clip": "CLIP"}, ("CONDITIONING",)),
    "EmptyLatentImage": ({"width": int, "height": int, "batch_size": int}, ("LATENT",)),
    "LoadImage": ({"image": str}, ("IMAGE", "MASK")),
    "LoadImageMask": ({"image": str, "channel": str}, ("MASK",)),
    "VAEEncode": ({"pixels": "IMAGE", "vae": "VAE"}, ("LATENT",)),
    "SetLatentNoiseMask": ({"samples": "LATENT", "mask": "MASK"}, ("LATENT",)),
    "KSampler": ({"model": "MODEL", "seed": int, "steps": int, "cfg": float, "sampler_name": str,
                  "scheduler": str, "positive": "CONDITIONING", "negative": "CONDITIONING",
                  "latent_image": "LATENT", "denoise": float}, ("LATENT",)),
    "VAEDecode": ({"samples": "LATENT", "vae": "VAE"}, ("IMAGE",)),
    "SaveImage": ({"images": "IMAGE", "filename_prefix": str}, ()),
}
COMFY_SAMPLER_NAMES = {"euler", "ddim", "dpmpp_2m"}  # among ComfyUI's KSampler.SAMPLERS
COMFY_SCHEDULERS = {"normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform"}


def check_graph(wf: dict) -> dict[str, list[str]]:
    """Every node a known class with exactly its inputs; every link to an existing node's output of
    the right type; every node feeds the SaveImage. Returns class -> node ids (in id order)."""
    by_class: dict[str, list[str]] = {}
    used: set[str] = set()
    for node_id, node in wf.items():
        spec, _outs = COMFY_NODES[node["class_type"]]
        assert set(node["inputs"]) == set(spec), (node_id, node)
        for name, want in spec.items():
            value = node["inputs"][name]
            if isinstance(want, str):
                src, index = value
                assert src in wf, f"node {node_id}.{name} links to missing node {src}"
                outs = COMFY_NODES[wf[src]["class_type"]][1]
                assert 0 <= index < len(outs) and outs[index] == want, (node_id, name, value)
                used.add(src)
            else:
                assert isinstance(value, want) and not isinstance(value, bool), (node_id, name, value)
        by_class.setdefault(node["class_type"], []).append(node_id)
    assert len(by_class["SaveImage"]) == 1 and set(wf) - used == set(by_class["SaveImage"])
    (ks,) = by_class["KSampler"]
    assert wf[ks]["inputs"]["sampler_name"] in COMFY_SAMPLER_NAMES
    assert wf[ks]["inputs"]["scheduler"] in COMFY_SCHEDULERS
    return by_class


def lora_chain(wf: dict, by_class: dict[str, list[str]]) -> list[str]:
    """The LoraLoader ids from the KSampler's model back to the checkpoint, checkpoint side first."""
    chain, node = [], wf[by_class["KSampler"][0]]["inputs"]["model"][0]
    while wf[node]["class_type"] == "LoraLoader":
        chain.append(node)
        node = wf[node]["inputs"]["model"][0]
    assert wf[node]["class_type"] == "CheckpointLoaderSimple"
    return chain[::-1]


def test_comfy_workflow_of_a_variant_is_a_valid_graph_with_its_weights(made):
    res, request, cards = made["res"], made["request"], made["cards"]
    row = made["summary"]["images"][0]
    path = Path(row["comfy_workflow"])
    assert path.name == Path(row["path"]).stem + ".comfyui.json" and path.parent == Path(row["path"]).parent
    wf = json.loads(path.read_text())
    by_class = check_graph(wf)
    chain = lora_chain(wf, by_class)
    assert len(chain) == len(by_class["LoraLoader"]) == 2
    by_file = {c.primary_file.name: c.id for c in cards.values()}
    for node in chain:
        i = wf[node]["inputs"]
        assert i["strength_model"] == i["strength_clip"] == pytest.approx(
            made["weights"][by_file[i["lora_name"]]], abs=5e-4)
    for enc in by_class["CLIPTextEncode"]:  # both prompts see the last LoRA's CLIP
        assert wf[enc]["inputs"]["clip"] == [chain[-1], 1]
    ks = wf[by_class["KSampler"][0]]["inputs"]
    assert (ks["seed"], ks["steps"], ks["cfg"], ks["denoise"]) == (res.images[0].seed, request.steps,
                                                                    request.guidance, 1.0)
    assert (ks["sampler_name"], ks["scheduler"]) == COMFY_SAMPLERS["Euler"]
    texts = {wf[ks[k][0]]["inputs"]["text"] for k in ("positive", "negative")}
    assert texts == {VARIANT_PROMPT, NEGATIVE}  # the tags are LoraLoader nodes now, not prompt text
    (latent,) = by_class["EmptyLatentImage"]
    assert (wf[latent]["inputs"]["width"], wf[latent]["inputs"]["height"]) == (request.width, request.height)
    (ckpt,) = by_class["CheckpointLoaderSimple"]
    assert wf[ckpt]["inputs"]["ckpt_name"] == made["files"].checkpoint


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_comfy_workflow_for_img2img_and_inpaint_loads_the_images(tiny_generator, tmp_path, mode):
    init = Image.new("RGB", (64, 64), (200, 120, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    card = folder_card("meta-c", write_kohya(tmp_path / "c.safetensors", seed=3))
    request = lighthouse_request(mode=mode, init_image=init, strength=0.6,
                                 mask_image=mask if mode == "inpaint" else None, include_baseline=False)
    res = tiny_generator.generate(request, [Variant(0, {card.id: -0.5}, "a lighthouse")], {card.id: card})
    files = comfy_files("/models/sd15.safetensors", res.model, [card], init_image="photo.png",
                        mask_image="photo-mask.png")
    wf = comfy_workflow(res.images[0].parameters, files)
    by_class = check_graph(wf)
    (chain,) = [lora_chain(wf, by_class)]
    assert [wf[n]["inputs"]["strength_model"] for n in chain] == [-0.5]
    assert wf[by_class["CheckpointLoaderSimple"][0]]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert [wf[n]["inputs"]["image"] for n in by_class["LoadImage"]] == ["photo.png"]
    ks = wf[by_class["KSampler"][0]]["inputs"]
    assert ks["denoise"] == pytest.approx(0.6) and "EmptyLatentImage" not in by_class
    latent_source = wf[ks["latent_image"][0]]["class_type"]
    if mode == "inpaint":
        assert latent_source == "SetLatentNoiseMask"
        assert [wf[n]["inputs"]["image"] for n in by_class["LoadImageMask"]] == ["photo-mask.png"]
    else:
        assert latent_source == "VAEEncode" and "LoadImageMask" not in by_class


def test_comfy_workflow_refuses_text_it_cannot_reproduce():
    files = comfy_files("", "stylus-preview (untrained)", [])
    with pytest.raises(ValueError, match="no Steps"):
        comfy_workflow("a cat\nSampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64", files)
    heun = format_parameters("a cat", "", {"Steps": 2, "Sampler": "Heun", "CFG scale": 7, "Seed": 1,
                                           "Size": "64x64"})
    with pytest.raises(ValueError, match=r"sampler 'Heun' .* supported: Euler, DDIM, DPM\+\+ 2M"):
        comfy_workflow(heun, files)


# ---- where users get results: the CLI and the web UI ------------------------------------------
CORGI = "a corgi astronaut on the moon, watercolor"


def _workflow_matches_its_png(png: str, workflow: str) -> dict:
    """The workflow beside ``png`` is valid and carries the PNG's adapters at their weights."""
    assert Path(workflow) == Path(png).with_name(Path(png).stem + ".comfyui.json")
    wf = json.loads(Path(workflow).read_text())
    by_class = check_graph(wf)
    with Image.open(png) as im:
        tags = parse_parameters(im.info["parameters"])["loras"]
    assert tags  # the variant uses adapters: a workflow without LoraLoader nodes would prove nothing
    assert [wf[n]["inputs"]["strength_model"] for n in lora_chain(wf, by_class)] == list(tags.values())
    return wf


def test_cli_generate_writes_a_comfy_workflow_beside_each_variant(tmp_path):
    import subprocess
    import sys

    from tests.fakes.app_process import REPO, app_env
    from tests.fakes.web_catalog import free_port, write_catalog
    home = tmp_path / "stylus"
    write_catalog(home / "catalog")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "stylus_ui", "generate", CORGI, "--n", "2", "--masks", "all",
                          "--seed", "7", "--comfy-workflow", "--out", str(out)], cwd=str(REPO),
                         capture_output=True, text=True, env=app_env(home, free_port()), timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "stylus-summary.json").read_text())
    assert len(summary["images"]) == 2 and "comfy_workflow" not in summary["baseline"]
    for row in summary["images"]:
        assert row["comfy_workflow"] in run.stdout
        wf = _workflow_matches_its_png(row["path"], row["comfy_workflow"])
        ks = next(n["inputs"] for n in wf.values() if n["class_type"] == "KSampler")
        assert ks["seed"] == row["seed"] and ks["steps"] == 4  # the preview model's default steps
        strengths = sorted(n["inputs"]["strength_model"] for n in wf.values() if n["class_type"] == "LoraLoader")
        assert strengths == sorted(round(w, 3) for w in row["variant"]["weights"].values() if w)


def test_web_generate_offers_each_variants_workflow_for_download(tmp_path):
    from catalog.settings import Settings
    from components.engine import StylusEngine
    from stylus_ui.web.generation import on_generate, on_select
    from tests.fakes.web_catalog import write_catalog
    home = tmp_path / "stylus"
    write_catalog(home / "catalog")
    engine = StylusEngine(Settings(home=home, torch_threads=1))
    s = engine.settings
    _cards, rows, _note, _choices, state = on_select(engine, CORGI, s.top_k, s.composer, "", s.adapters_per_topic,
                                                     s.characters, None)
    out = on_generate(engine, "txt2img", lambda *_: {}, CORGI, "", rows, 2, 7.0, 3, 2, "all", "", 64, 64,
                      None, None, 0.75, state, progress=lambda *a, **k: None)
    files, state = out[5], out[7]
    workflows = [f for f in files if f.endswith(".comfyui.json")]
    assert len(workflows) == len(state["images"]) == 2
    for info, workflow in zip(state["images"], workflows):
        assert info["comfy_workflow"] == workflow
        _workflow_matches_its_png(info["path"], workflow)
