import re

from components.composer.segment import is_tag_soup, normalize_word, segment


def texts(prompt):
    return [s.text for s in segment(prompt)]


def test_natural_caption_noun_phrases():
    # the learned tagger follows the paper's habits: compounds whole, actions and colours apart
    assert texts("A white tour bus on a street in a city.") == ["tour bus", "street", "city"]
    assert texts("A small dog eating a treat next to a couple of knitted hats.") == [
        "dog", "eating", "treat", "knitted hats"]


def test_topics_are_spans_of_the_prompt():
    prompts = ["A man in a blue shirt and tie stands next to a child.",
               "Two airplane shaped kites flying through a blue sky!",
               "An Art Nouveau painting of a teapot, intricate, by a window"]
    for prompt in prompts:
        segs = segment(prompt)
        assert segs
        for s in segs:
            assert prompt[s.start:s.end] == s.text
            assert set(re.findall(r"\w+", s.text)) <= set(re.findall(r"\w+", prompt))


def test_colour_conjunction_and_counts():
    assert texts("Two black and white cats sit in a sink") == ["black and white", "cats", "sink"]
    assert texts("a group of people in a picture of a kitchen") == ["people", "kitchen"]


def test_tag_soup_drops_boilerplate_and_keeps_tags_whole():
    prompt = "masterpiece, best quality, 1girl, school uniform, library, glasses"
    assert is_tag_soup(prompt)
    assert texts(prompt) == ["1girl", "school uniform", "library", "glasses"]


def test_a1111_syntax_is_not_a_topic():
    prompt = "(masterpiece:1.2), ((best quality)), 1girl, looking at viewer, [red hair] <lora:foo_v1:0.7>"
    assert texts(prompt) == ["1girl", "looking at viewer", "red hair"]


def test_offsets_point_into_the_prompt():
    prompt = "a cat on a red sofa"
    for s in segment(prompt):
        assert prompt[s.start:s.end] == s.text


def test_only_boilerplate_and_empty():
    assert segment("masterpiece, best quality, 8k, highres, ultra detailed") == []
    assert segment("") == []
    assert segment("   ,,, ...") == []


def test_long_prompt_and_other_scripts():
    assert len(segment("a red cat and a blue dog. " * 400)) == 2  # repeated topics once
    assert texts("日本 女の子, 桜, 1girl") == ["日本 女の子", "桜", "1girl"]


def test_normalize_word():
    assert normalize_word("Bears") == "bear"
    assert normalize_word("puppies") == "puppy"
    assert normalize_word("glass") == "glass"
