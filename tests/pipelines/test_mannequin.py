"""The mannequin figure of the preview engine's model shots, drawn from pose presets.

The figure must pass for a person with MediaPipe's pose model (the same detector a shopper's
photo goes through), stand where the skeleton says, and tell the caller which of its parts stay
in front of a garment worn on the torso.
"""

import math

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import InvalidInputError
from pipelines.geometry import body_frame, limb_chain
from pipelines.mannequin import Mannequin, draw_mannequin
from pipelines.person import analyze_person, person_from_keypoints
from pipelines.poses import CANVAS, PRESETS
from pipelines.scenes import resolve_scene
from pipelines.types import BODY_INDEX, BODY_PARTS, MISSING, PersonAnalysis

SIZES = [(512, 768), (768, 1024)]
CHECKED = [f"{side}_{joint}" for joint in ("shoulder", "hip", "knee", "ankle") for side in "rl"]
# A point counts as found within this many shoulder widths of the preset's.
TOLERANCE = 0.35


def preset_on(name: str, size: tuple[int, int]) -> PersonAnalysis:
    """The preset scaled uniformly onto a ``size`` canvas and centred, as model shots place it."""
    scale = min(size[0] / CANVAS[0], size[1] / CANVAS[1])
    shift = ((size[0] - CANVAS[0] * scale) / 2, (size[1] - CANVAS[1] * scale) / 2)
    body = [(x * scale + shift[0], y * scale + shift[1], s) for x, y, s in PRESETS[name].body]
    return person_from_keypoints(body, *size)


def on_scene(mannequin: Mannequin, scene: str = "studio_white") -> Image.Image:
    picture = resolve_scene(scene, "").canvas(mannequin.figure.size).convert("RGBA")
    return Image.alpha_composite(picture, mannequin.figure).convert("RGB")


def alpha(mannequin: Mannequin) -> np.ndarray:
    return np.asarray(mannequin.figure.getchannel("A"), np.float32) / 255


def at(values: np.ndarray, point, radius: float = 0.0) -> float:
    """The largest of ``values`` within ``radius`` pixels of ``point``."""
    x, y = point
    ys, xs = np.ogrid[: values.shape[0], : values.shape[1]]
    near = (xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2 <= max(radius, 0.75) ** 2
    return float(values[near].max())


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("pose", sorted(PRESETS))
def test_mediapipe_finds_the_mannequin_where_the_skeleton_is(pose, size):
    person = preset_on(pose, size)
    found = analyze_person(on_scene(draw_mannequin(person)))
    sw = body_frame(person).shoulder_width
    near = [
        part
        for part in CHECKED
        if found.point(part, 0.5) is not None
        and math.dist(found.point(part, 0.5), person.point(part)) <= TOLERANCE * sw
    ]
    assert len(near) >= 6, f"{pose}: found {near}"


def test_the_figure_is_an_anti_aliased_whole_body_on_the_canvas():
    person = preset_on("front_standing", (512, 768))
    mannequin = draw_mannequin(person)
    assert mannequin.figure.mode == "RGBA" and mannequin.figure.size == (512, 768)
    cover = alpha(mannequin)
    # Soft outlines all round: about as many part-covered pixels as the outline is long.
    inside = cover >= 0.5
    outline = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0))
    outline |= inside & ~(np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
    assert ((cover > 0.02) & (cover < 0.98)).sum() > 0.8 * outline.sum()
    rows = np.flatnonzero(cover.max(axis=1) > 0.5)
    nose, ankle = person.point("nose"), person.point("r_ankle")
    sw = body_frame(person).shoulder_width
    # From the crown above the nose to the feet below the ankles, and solid in between.
    assert rows[0] < nose[1] - 0.3 * sw and rows[-1] > ankle[1] + 0.1 * sw
    for part in [*CHECKED, "nose", "r_elbow", "l_wrist"]:
        assert at(cover, person.point(part)) == 1.0, part
    assert cover[:40].max() == 0 and cover[:, :40].max() == 0  # nothing but the figure


def test_the_figure_is_a_neutral_mannequin_grey():
    mannequin = draw_mannequin(preset_on("front_standing", (512, 768)))
    pixels = np.asarray(mannequin.figure, np.float32)
    body = pixels[alpha(mannequin) == 1.0][:, :3]
    chroma = body.max(axis=1) - body.min(axis=1)
    assert np.median(chroma) < 15  # a grey, not painted skin
    assert body.std(axis=0).min() > 10  # shaded, not flat


def test_front_holds_the_hands_and_forearms_over_the_torso():
    person = preset_on("arms_crossed", (512, 768))
    mannequin = draw_mannequin(person)
    sw = body_frame(person).shoulder_width
    for side in "rl":
        elbow, wrist = (np.asarray(person.point(f"{side}_{j}")) for j in ("elbow", "wrist"))
        # The forearms cross the waist in front of it.
        assert at(mannequin.front, (elbow + wrist) / 2) > 0.9
        assert at(mannequin.front, wrist, 0.1 * sw) > 0.9
    # Front is part of the figure, never outside it.
    assert (mannequin.front <= alpha(mannequin) + 1 / 255).all()  # alpha is 8-bit
    assert mannequin.front.dtype == np.float32 and mannequin.front.shape == (768, 512)


def test_front_holds_hanging_hands_but_not_the_chest():
    person = preset_on("front_standing", (512, 768))
    mannequin = draw_mannequin(person)
    frame = body_frame(person)
    sw = frame.shoulder_width
    chest = frame.neck + (frame.mid_hip - frame.neck) * 0.35
    assert at(mannequin.front, chest, 0.2 * sw) == 0.0
    for side in "rl":
        hand = np.asarray(person.point(f"{side}_wrist")) + frame.down * 0.2 * sw
        assert at(mannequin.front, hand) > 0.9
        # The upper arm hangs beside the torso; a garment's sleeve goes over it.
        assert at(mannequin.front, person.point(f"{side}_elbow")) == 0.0


def test_an_arm_the_skeleton_lacks_is_drawn_behind_the_torso():
    person = preset_on("side_profile", (512, 768))  # only the near (left) arm is seen
    mannequin = draw_mannequin(person)
    frame = body_frame(person)
    _, _, hidden_wrist = limb_chain(person, frame, "r", "arm")
    assert at(alpha(mannequin), hidden_wrist) == 1.0  # something is drawn there: the torso
    assert at(mannequin.front, hidden_wrist) == 0.0  # but not the hand
    near_hand = np.asarray(person.point("l_wrist")) + frame.down * 0.2 * frame.shoulder_width
    assert at(mannequin.front, near_hand) > 0.9


def test_a_skeleton_with_only_a_torso_still_gets_a_whole_figure():
    full = preset_on("front_standing", (512, 768))
    torso = {"r_shoulder", "l_shoulder", "r_hip", "l_hip"}
    body = [p if name in torso else MISSING for name, p in zip(BODY_PARTS, full.body, strict=True)]
    mannequin = draw_mannequin(person_from_keypoints(body, 512, 768))
    cover = alpha(mannequin)
    # A head above the shoulders, legs below the hips, arms beside the torso.
    assert at(cover, (256, 110)) == 1.0
    assert at(cover, full.point("r_knee")) == 1.0 and at(cover, full.point("l_ankle")) == 1.0
    assert at(cover, full.point("r_elbow"), 10) == 1.0


def test_drawing_is_deterministic():
    person = preset_on("walking", (768, 1024))
    first, second = draw_mannequin(person), draw_mannequin(person)
    assert first.figure.tobytes() == second.figure.tobytes()
    assert np.array_equal(first.front, second.front)


def test_a_skeleton_without_shoulders_or_hips_is_refused():
    body = [MISSING] * 18
    body[BODY_INDEX["nose"]] = (256.0, 110.0, 1.0)
    with pytest.raises(InvalidInputError):
        draw_mannequin(person_from_keypoints(body, 512, 768))
