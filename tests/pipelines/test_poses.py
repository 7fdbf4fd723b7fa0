"""Pose presets for model shots."""

import pytest

from pipelines.errors import InvalidInputError
from pipelines.geometry import body_frame
from pipelines.poses import CANVAS, PRESETS, get_preset


def test_there_are_at_least_eight_named_presets():
    assert len(PRESETS) >= 8
    assert {
        "front_standing",
        "three_quarter",
        "hands_on_hips",
        "walking",
        "seated",
        "back_view",
    } <= set(PRESETS)
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.title and preset.description
        assert len(preset.body) == 18


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_is_a_plausible_upright_body_on_the_canvas(name):
    person = get_preset(name).person()
    assert (person.width, person.height) == CANVAS
    for x, y, score in person.body:
        if score:
            assert 0 < x < CANVAS[0] and 0 < y < CANVAS[1]
    frame = body_frame(person)
    assert not frame.estimated  # shoulders and hips are given in every preset
    assert frame.down[1] > 0.9  # the torso points down the canvas
    # Ankles below knees below hips: nobody stands on their head.
    for side in ("r", "l"):
        hip, knee, ankle = (person.point(f"{side}_{j}") for j in ("hip", "knee", "ankle"))
        assert hip[1] < knee[1] < ankle[1]


def test_front_and_back_views_mirror_the_sides():
    front, back = get_preset("front_standing").person(), get_preset("back_view").person()
    # Facing the camera the right shoulder is on the image's left; from behind, on its right.
    assert front.point("r_shoulder")[0] < front.point("l_shoulder")[0]
    assert back.point("r_shoulder")[0] > back.point("l_shoulder")[0]
    assert back.point("nose") is None


def test_unknown_pose_lists_the_known_ones():
    with pytest.raises(InvalidInputError, match="pose: unknown pose 'dab'; choose one of"):
        get_preset("dab")
