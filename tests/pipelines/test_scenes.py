"""Scene presets for model shots: prompt fragments, the background hint, and free text."""

import numpy as np
import pytest

from pipelines.errors import InvalidInputError
from pipelines.prompts import USER_TEXT_MAX, parse_prompt
from pipelines.scenes import (
    DEFAULT_SCENE,
    NEUTRAL_BACKGROUND,
    SCENES,
    Scene,
    get_scene,
    resolve_scene,
)


def test_there_are_enough_presets_each_complete():
    assert len(SCENES) >= 8
    assert DEFAULT_SCENE in SCENES
    for name, scene in SCENES.items():
        assert scene.name == name
        assert scene.title.strip()
        assert scene.prompt.strip()
        top, bottom = scene.background
        for colour in (top, bottom):
            assert len(colour) == 3
            assert all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
    # The hint is what tells the scenes apart in the init picture.
    assert len({scene.background for scene in SCENES.values()}) >= 8


def test_preset_prompts_are_plain_words():
    for scene in SCENES.values():
        for text in (scene.prompt, scene.negative):
            parsed = parse_prompt(text)
            assert not parsed.loras and not parsed.problems
            assert all(weight == 1.0 for _, weight in parsed.chunks), text


@pytest.mark.parametrize("name", sorted(SCENES))
def test_canvas_is_the_vertical_gradient(name):
    scene = SCENES[name]
    picture = scene.canvas((48, 30))
    assert picture.mode == "RGB"
    assert picture.size == (48, 30)
    pixels = np.asarray(picture)
    top, bottom = scene.background
    assert (pixels[0] == top).all()
    assert (pixels[-1] == bottom).all()
    # Every row is one colour, and the rows run from the top colour to the bottom one.
    assert (pixels == pixels[:, :1]).all()
    middle = pixels[15, 0].astype(int)
    for channel in range(3):
        low, high = sorted((top[channel], bottom[channel]))
        assert low <= middle[channel] <= high


def test_canvas_gradient_is_monotonic():
    scene = Scene("test", "Test", "x", background=((0, 255, 10), (200, 55, 10)))
    column = np.asarray(scene.canvas((4, 101)))[:, 0].astype(int)
    assert (np.diff(column[:, 0]) >= 0).all()
    assert (np.diff(column[:, 1]) <= 0).all()
    assert (column[:, 2] == 10).all()
    assert tuple(column[50]) == (100, 155, 10)


def test_get_scene_by_name():
    assert get_scene("beach") is SCENES["beach"]


@pytest.mark.parametrize("name", ["moon", "", "Beach"])
def test_unknown_scene_names_the_field_and_lists_presets(name):
    with pytest.raises(InvalidInputError) as caught:
        get_scene(name)
    assert caught.value.argument == "scene"
    assert repr(name) in caught.value.message
    for preset in SCENES:
        assert preset in caught.value.message


def test_resolve_preset_only():
    assert resolve_scene("park") == SCENES["park"]
    assert resolve_scene("park", "") == SCENES["park"]


def test_resolve_nothing_is_the_default_scene():
    assert resolve_scene() == SCENES[DEFAULT_SCENE]


def test_resolve_unknown_preset_is_refused_even_with_text():
    with pytest.raises(InvalidInputError) as caught:
        resolve_scene("moon", "craters")
    assert caught.value.argument == "scene"


def test_resolve_preset_with_free_text_appends_it():
    beach = SCENES["beach"]
    scene = resolve_scene("beach", "palm trees")
    assert scene.prompt == f"{beach.prompt}, palm trees"
    assert (scene.name, scene.title, scene.negative, scene.background) == (
        beach.name,
        beach.title,
        beach.negative,
        beach.background,
    )


def test_free_text_is_made_inert():
    beach = SCENES["beach"]
    scene = resolve_scene("beach", "(sunset:5) <lora:x:1> palm trees")
    assert scene.prompt.startswith(f"{beach.prompt}, ")
    assert "lora" not in scene.prompt
    assert "<" not in scene.prompt
    assert "(sunset:2)" in scene.prompt  # clamped to the user weight range
    assert "palm trees" in scene.prompt
    parsed = parse_prompt(scene.prompt)
    assert parsed.loras == ()
    assert max(weight for _, weight in parsed.chunks) <= 2.0
    # The preset's own words keep weight 1: the free text cannot reweigh them.
    assert parsed.chunks[0] == (f"{beach.prompt}, ", 1.0)


def test_unbalanced_free_text_cannot_leak_weight():
    scene = resolve_scene("park", "((((trees")
    parsed = parse_prompt(f"{scene.prompt}, afterwards")
    assert parsed.chunks[-1][0].endswith("afterwards")
    assert parsed.chunks[-1][1] == 1.0


def test_free_text_alone_is_a_custom_scene_on_neutral_background():
    scene = resolve_scene("", "on a sailing boat")
    assert scene.name == "custom"
    assert scene.prompt == "on a sailing boat"
    assert scene.background == NEUTRAL_BACKGROUND
    assert scene.negative == ""


def test_free_text_alone_is_made_inert_too():
    scene = resolve_scene(text="<lora:evil:1> (harbour:9)")
    assert scene.name == "custom"
    assert "lora" not in scene.prompt
    assert scene.prompt == "(harbour:2)"


def test_over_long_free_text_names_scene_text():
    text = "a" * (USER_TEXT_MAX + 1)
    for name in ("", "beach"):
        with pytest.raises(InvalidInputError) as caught:
            resolve_scene(name, text)
        assert caught.value.argument == "scene_text"
    assert resolve_scene("beach", "a" * USER_TEXT_MAX).prompt.endswith("a" * USER_TEXT_MAX)
