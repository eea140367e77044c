"""Generation on the tiny preview model: modes, variants, baseline, seeds, threads, metadata."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from catalog.card import AdapterCard
from components.generator import parse_parameters, read_png_parameters, save_result
from components.types import GenerationRequest, StylusError, Variant

SIZE = 64


def _req(**kw) -> GenerationRequest:
    base = dict(prompt="a red fox in snow", steps=2, width=SIZE, height=SIZE, num_images=2, seed=11,
                include_baseline=False)
    base.update(kw)
    return GenerationRequest(**base)


def _cards(*ids: str) -> dict[str, AdapterCard]:
    return {i: AdapterCard(id=i, source="manual", name=f"adapter {i}") for i in ids}


def _px(img) -> np.ndarray:
    return np.asarray(img.image if hasattr(img, "image") else img).astype(np.int16)


def _image(color=(200, 40, 40)) -> Image.Image:
    return Image.new("RGB", (SIZE, SIZE), color)


def _mask() -> Image.Image:
    m = Image.new("L", (SIZE, SIZE), 0)
    m.paste(255, (16, 16, 48, 48))
    return m


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_each_mode_gives_requested_size_and_count(tiny_generator, mode):
    extra = {} if mode == "txt2img" else {"init_image": _image(), "strength": 0.8}
    if mode == "inpaint":
        extra["mask_image"] = _mask()
    steps: list[tuple[int, int]] = []
    res = tiny_generator.generate(_req(mode=mode, num_images=3, include_baseline=True, **extra),
                                  progress=lambda d, t: steps.append((d, t)))
    assert len(res.images) == 3 and res.baseline is not None
    assert all(i.image.size == (SIZE, SIZE) for i in res.images + [res.baseline])
    assert [i.seed for i in res.images] == [11, 12, 13]
    assert steps and steps[-1][0] == steps[-1][1]
    assert res.preview_model and any("untrained preview model" in n for n in res.notices)


def test_adapters_change_output_and_masks_give_distinct_variants(tiny_generator):
    cards = _cards("style-a", "style-b")
    variants = [Variant(0, {"style-a": 0.8}, "a red fox in snow"),
                Variant(1, {"style-b": 0.8}, "a red fox in snow")]
    base = tiny_generator.generate(_req(num_images=1))
    a = tiny_generator.generate(_req(num_images=1), [variants[0]], cards)
    b = tiny_generator.generate(_req(num_images=1), [variants[1]], cards)
    assert np.abs(_px(a.images[0]) - _px(base.images[0])).mean() > 1.0
    assert np.abs(_px(a.images[0]) - _px(b.images[0])).mean() > 1.0
    assert any("stand-in" in n for n in a.notices)
    assert "Stylus stand-in LoRAs" in a.images[0].parameters


def test_fused_and_unfused_adapters_draw_the_same_image(tiny_generator):
    cards = _cards("style-a", "style-b")
    variant = [Variant(0, {"style-a": 0.7, "style-b": 0.4}, "a red fox in snow")]
    images = {}
    for mode in ("fused", "unfused"):
        tiny_generator.settings.adapter_mode = mode
        images[mode] = _px(tiny_generator.generate(_req(num_images=1), variant, cards).images[0])
    tiny_generator.settings.adapter_mode = "fused"
    base = _px(tiny_generator.generate(_req(num_images=1)).images[0])
    # same maths up to float rounding: far closer to each other than to the base image
    assert np.abs(images["fused"] - images["unfused"]).mean() < 0.5
    assert np.abs(images["fused"] - base).mean() > 1.0


def test_disabled_adapters_restore_the_baseline_exactly(tiny_generator, adapter_mode):
    cards = _cards("style-a")
    request = _req(num_images=1, include_baseline=True)
    plain_before = tiny_generator.generate(request)
    res = tiny_generator.generate(request, [Variant(0, {"style-a": 0.0}, "a red fox in snow")], cards)
    on = tiny_generator.generate(request, [Variant(0, {"style-a": 1.0}, "a red fox in snow")], cards)
    plain_after = tiny_generator.generate(request)
    # weight 0 is the base model, and the baseline (same seed, no adapters) matches it
    assert np.array_equal(_px(res.images[0]), _px(res.baseline))
    assert np.array_equal(_px(res.images[0]), _px(plain_before.images[0]))
    assert not np.array_equal(_px(on.images[0]), _px(on.baseline))
    assert np.array_equal(_px(on.baseline), _px(plain_before.baseline))
    assert np.array_equal(_px(plain_after.images[0]), _px(plain_before.images[0]))


def test_base_output_unchanged_after_50_mixed_requests(tiny_generator, adapter_mode):
    cards = _cards("mix-a", "mix-b", "mix-c")
    ids = list(cards)
    before = tiny_generator.generate(_req(num_images=1, steps=1))
    rng = np.random.default_rng(0)
    for n in range(50):
        chosen = [i for i in ids if rng.random() < 0.6]
        weights = {i: float(rng.uniform(-1, 1.5)) for i in chosen}
        mode = ("txt2img", "img2img")[n % 2]
        extra = {"init_image": _image(), "strength": 1.0} if mode == "img2img" else {}
        tiny_generator.generate(_req(num_images=1, steps=1, seed=n, mode=mode, **extra),
                                [Variant(0, weights, "mixed")], cards)
    after = tiny_generator.generate(_req(num_images=1, steps=1))
    assert np.array_equal(_px(before.images[0]), _px(after.images[0]))


def test_seeds_reproduce(tiny_generator):
    cards = _cards("style-a", "style-b")
    variants = [Variant(0, {"style-a": 0.7}, "p"), Variant(1, {"style-b": 0.5, "style-a": 0.3}, "p")]
    one = tiny_generator.generate(_req(num_images=4, seed=99), variants, cards)
    two = tiny_generator.generate(_req(num_images=4, seed=99), variants, cards)
    assert [i.seed for i in one.images] == [99, 100, 101, 102]
    for x, y in zip(one.images, two.images):
        assert np.array_equal(_px(x), _px(y))
    assert parse_parameters(one.images[2].parameters)["Seed"] == "101"


def test_two_threads_match_sequential_runs(tiny_generator):
    cards = _cards("style-a", "style-b")
    jobs = [([Variant(0, {"style-a": 0.9}, "p")], 5), ([Variant(0, {"style-b": 0.9}, "p")], 6)]
    sequential = [tiny_generator.generate(_req(num_images=2, seed=s), v, cards) for v, s in jobs]
    results: dict[int, object] = {}

    def run(k: int) -> None:
        v, s = jobs[k]
        results[k] = tiny_generator.generate(_req(num_images=2, seed=s), v, cards)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        for x, y in zip(sequential[k].images, results[k].images):
            assert np.array_equal(_px(x), _px(y))


def test_png_metadata_round_trips(tiny_generator, tmp_path):
    cards = _cards("style-a", "style-b")
    res = tiny_generator.generate(_req(num_images=1, negative_prompt="blurry, low quality",
                                       include_baseline=True),
                                  [Variant(0, {"style-a": 0.6, "style-b": -0.25}, "a red fox in snow")], cards)
    summary = save_result(res, tmp_path, stem="t")
    parsed = parse_parameters(read_png_parameters(res.images[0].path))
    assert parsed["prompt"].startswith("a red fox in snow")
    assert parsed["loras"] == {"adapter_style-a": 0.6, "adapter_style-b": -0.25}
    assert parsed["negative_prompt"] == "blurry, low quality"
    assert parsed["Seed"] == "11" and parsed["Steps"] == "2" and parsed["Size"] == "64x64"
    assert parsed["lora_hashes"] == {}  # stand-ins: no hash of a real file to cite
    assert parsed["Stylus stand-in LoRAs"] == "adapter_style-a, adapter_style-b"
    assert summary["preview_model"] and (tmp_path / "t-grid.png").is_file()
    assert parse_parameters(res.images[0].parameters) == parsed


BAD_REQUESTS = [
    (dict(width=100), "width 100"),
    (dict(height=4000), "height 4000"),
    (dict(steps=0), "steps 0"),
    (dict(steps=10000), "steps 10000"),
    (dict(num_images=17), "num_images 17"),
    (dict(guidance=99.0), "guidance 99.0"),
    (dict(mode="img2img"), "needs an init image"),
    (dict(mode="img2img", init_image=b"not an image at all"), "not an image"),
    (dict(mode="img2img", init_image=12), "must be an image"),
    (dict(mode="inpaint", init_image=Image.new("RGB", (64, 64)), mask_image=Image.new("L", (32, 64))),
     "mask size 32x64 differs from image size 64x64"),
    (dict(mode="sketch"), "mode 'sketch'"),
    (dict(mode="img2img", steps=1, strength=0.5, init_image=Image.new("RGB", (64, 64))),
     "run no denoising step"),
]


@pytest.mark.parametrize("changes,message", BAD_REQUESTS)
def test_bad_input_gets_a_clear_error(tiny_generator, changes, message):
    with pytest.raises(StylusError, match=message.replace("(", r"\(")):
        tiny_generator.generate(_req(**changes))


def test_unknown_adapter_in_an_edited_composition_is_refused(tiny_generator):
    with pytest.raises(StylusError, match="'no-such-adapter' is not in the catalog"):
        tiny_generator.generate(_req(), [Variant(0, {"no-such-adapter": 0.5}, "p")], _cards("style-a"))
