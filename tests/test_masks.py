import pytest

from components.masks import VariantOptions, build_variants, emphasize, sample_masks, weights_for
from components.types import Composition, StylusError, Topic, TopicAdapter


def comp(sizes=(2, 1), weight=1.0):
    topics = [Topic(keywords=[f"kw{t}"], adapters=[
        TopicAdapter(card_id=f"t{t}a{i}", name=f"A{t}{i}", weight=weight, lora_name=f"file_{t}_{i}")
        for i in range(k)]) for t, k in enumerate(sizes)]
    return Composition(prompt="kw0 and kw1 and plain", topics=topics, unassigned=["plain"])


def test_all_strategy_turns_everything_on_and_divides_weight():
    v = build_variants(comp(), "all", 2, seed=0)
    assert v[0].weights == {"t0a0": 0.4, "t0a1": 0.4, "t1a0": 0.8}
    assert v[0].export.endswith("<lora:file_0_0:0.4> <lora:file_0_1:0.4> <lora:file_1_0:0.8>")


def test_weight_uses_recommended_weight_and_base():
    c = comp(sizes=(1,), weight=0.6)
    assert weights_for(c, [[True]], base_weight=0.5) == {"t0a0": 0.3}
    assert weights_for(c, [[False]]) == {}


def test_one_hot_loras_is_seeded_and_covers_combinations():
    c = comp(sizes=(2, 1))
    a = sample_masks(c, "one_hot_loras", 64, seed=7)
    assert a == sample_masks(c, "one_hot_loras", 64, seed=7)
    assert a != sample_masks(c, "one_hot_loras", 64, seed=8)
    assert len({str(m) for m in a}) == 8  # 2^2 x 2^1 combinations all appear


def test_one_hot_concepts_switches_whole_topics():
    for mask in sample_masks(comp(sizes=(3, 2)), "one_hot_concepts", 32, seed=1):
        assert all(len(set(row)) == 1 for row in mask)


def test_sampling_a_huge_cross_product_is_bounded():
    big = comp(sizes=(10,) * 30)  # 2^300 combinations: must not be enumerated
    masks = sample_masks(big, "one_hot_loras", 16, seed=3)
    assert len(masks) == 16 and all(len(m) == 30 for m in masks)


def test_bad_strategy_and_count():
    with pytest.raises(StylusError, match="one_hot_loras"):
        sample_masks(comp(), "random", 1, 0)
    with pytest.raises(StylusError, match="0..256"):
        sample_masks(comp(), "all", 1000, 0)


def test_debias_and_emphasis_restore():
    opts = VariantOptions(debias="realistic, best quality", restore_emphasis=True)
    v = build_variants(comp(), "all", 1, seed=0, options=opts)[0]
    assert v.prompt == "kw0 and kw1 and (plain:1.1), realistic, best quality"
    assert v.export.startswith(v.prompt)
    assert emphasize("a (cat:1.3) and a cat", ["cat"], 1.2) == "a (cat:1.3) and a (cat:1.2)"


def test_empty_composition_gives_plain_prompts():
    v = build_variants(Composition(prompt="a dog", topics=[]), "one_hot_loras", 3, seed=0)
    assert [x.weights for x in v] == [{}, {}, {}] and v[0].export == "a dog"
