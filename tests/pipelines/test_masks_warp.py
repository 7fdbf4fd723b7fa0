"""Stages 3 and 4 on drawn people: the try-on mask, the warp and the composite.

A "person" is drawn along a pose preset's skeleton (skin-coloured limbs and head, a top of a
chosen colour and sleeve length), so the ground truth — where the torso, the forearms, the face
and the hands are — is known exactly.
"""

from itertools import pairwise

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.errors import InvalidInputError
from pipelines.geometry import body_frame, garment_fit
from pipelines.masks import tryon_mask
from pipelines.poses import PRESETS
from pipelines.samples import draw_product_shot
from pipelines.types import GarmentAnalysis, PersonAnalysis
from pipelines.warp import composite, warp_garment

SKIN = (224, 172, 140)
BACKGROUND = (90, 110, 90)


def _xy(person, name):
    point = person.point(name)
    return None if point is None else tuple(int(v) for v in point)


def _line(image, person, a, b, value, thickness):
    if _xy(person, a) and _xy(person, b):
        cv2.line(image, _xy(person, a), _xy(person, b), value, thickness)


def _draw_person(top_colour, long_sleeves: bool, pose="front_standing"):
    """A drawn person on the preset canvas, and the PersonAnalysis a detector would give."""
    preset = PRESETS[pose].person()
    canvas = np.full((preset.height, preset.width, 3), BACKGROUND, np.uint8)
    body = np.zeros((preset.height, preset.width), np.uint8)
    limbs = [
        ("r_shoulder", "r_elbow", "r_wrist"),
        ("l_shoulder", "l_elbow", "l_wrist"),
        ("r_hip", "r_knee", "r_ankle"),
        ("l_hip", "l_knee", "l_ankle"),
    ]
    for chain in limbs:
        for a, b in pairwise(chain):
            _line(canvas, preset, a, b, SKIN, 44)
            _line(body, preset, a, b, 255, 44)
    torso = [_xy(preset, n) for n in ("r_shoulder", "l_shoulder", "l_hip", "r_hip")]
    torso_outline = cv2.convexHull(np.array([p for p in torso if p]))
    head = _xy(preset, "nose") or _xy(preset, "r_ear") or _xy(preset, "l_ear")
    for image, value in ((canvas, top_colour), (body, 255)):
        cv2.fillConvexPoly(image, torso_outline, value)
        cv2.circle(image, head, 42, SKIN if image is canvas else 255, -1)
    for side in ("r", "l"):
        _line(canvas, preset, f"{side}_shoulder", f"{side}_elbow", top_colour, 46)
        if long_sleeves:
            _line(canvas, preset, f"{side}_elbow", f"{side}_wrist", top_colour, 46)
    person = PersonAnalysis(preset.width, preset.height, preset.body, silhouette=body)
    return Image.fromarray(canvas), person


def _tee(colour=(30, 60, 200), size=(768, 1024)) -> GarmentAnalysis:
    """A drawn tee with the landmarks its polygon defines."""
    shot = draw_product_shot("tshirt", colour=colour, label="LOGO", size=size)
    width, height = shot.image.size
    at = lambda x, y: (x * width, y * height)  # noqa: E731
    cutout = shot.image.convert("RGBA")
    cutout.putalpha(shot.mask)
    return GarmentAnalysis(
        category="upper",
        cutout=cutout,
        mask=shot.mask,
        canny=shot.mask.convert("RGB"),
        landmarks={
            "neckline": at(0.50, 0.31),
            "r_shoulder": at(0.28, 0.29),
            "l_shoulder": at(0.72, 0.29),
            "r_sleeve_end": at(0.145, 0.435),
            "l_sleeve_end": at(0.855, 0.435),
            "r_hem": at(0.30, 0.77),
            "l_hem": at(0.70, 0.77),
        },
    )


def _forearm_middle(person, side="r"):
    elbow, wrist = np.array(person.point(f"{side}_elbow")), np.array(person.point(f"{side}_wrist"))
    x, y = ((elbow + wrist) / 2).astype(int)
    return y, x


def test_mask_covers_the_torso_and_never_the_face_or_hands():
    photo, person = _draw_person((200, 40, 40), long_sleeves=False)
    result = tryon_mask(person, photo, "upper", _tee())
    mask = np.asarray(result.mask)
    neck = np.array(person.point("neck"))
    mid_hip = (np.array(person.point("r_hip")) + np.array(person.point("l_hip"))) / 2
    for t in (0.3, 0.5, 0.7):
        x, y = (neck + (mid_hip - neck) * t).astype(int)
        assert mask[y, x] == 255
    assert not mask[result.protected].any()
    nose_x, nose_y = _xy(person, "nose")
    assert result.protected[nose_y, nose_x] and mask[nose_y, nose_x] == 0
    wrist_x, wrist_y = _xy(person, "r_wrist")
    assert result.protected[wrist_y + 10, wrist_x]
    # Nothing is painted far from the body.
    assert mask[:, :40].max() == 0 and mask[-40:, :].max() == 0


# Elbows out, so the forearms are clear of the torso.
FOREARMS_CLEAR = "hands_on_hips"


def test_long_old_sleeves_are_repainted_under_a_short_sleeved_top():
    photo, person = _draw_person((200, 40, 40), long_sleeves=True, pose=FOREARMS_CLEAR)
    result = tryon_mask(person, photo, "upper", _tee())
    y, x = _forearm_middle(person)
    assert result.old_garment[y, x]
    assert np.asarray(result.mask)[y, x] > 200


def test_bare_forearms_stay_out_of_a_short_sleeved_top_mask():
    photo, person = _draw_person((200, 40, 40), long_sleeves=False, pose=FOREARMS_CLEAR)
    result = tryon_mask(person, photo, "upper", _tee())
    y, x = _forearm_middle(person)
    assert np.asarray(result.mask)[y, x] == 0


def test_a_long_sleeved_garment_reaches_the_forearms():
    photo, person = _draw_person((200, 40, 40), long_sleeves=False, pose=FOREARMS_CLEAR)
    hoodie = _tee()
    marks = dict(hoodie.landmarks)
    width, height = hoodie.cutout.size
    marks["r_sleeve_end"], marks["l_sleeve_end"] = (
        (0.14 * width, 0.75 * height),
        (0.86 * width, 0.75 * height),
    )
    long_sleeved = GarmentAnalysis("upper", hoodie.cutout, hoodie.mask, hoodie.canny, marks)
    assert garment_fit(long_sleeved, "upper").sleeve == 1.0
    assert garment_fit(_tee(), "upper").sleeve < 0.6
    y, x = _forearm_middle(person)
    assert np.asarray(tryon_mask(person, photo, "upper", long_sleeved).mask)[y, x] > 200


def test_a_bottom_masks_the_legs_and_not_the_chest():
    photo, person = _draw_person((200, 40, 40), long_sleeves=False)
    mask = np.asarray(tryon_mask(person, photo, "lower").mask)
    knee_x, knee_y = _xy(person, "r_knee")
    assert mask[knee_y, knee_x] == 255
    chest_x, chest_y = _xy(person, "neck")
    assert mask[chest_y + 30, chest_x] == 0


def test_the_mask_stays_inside_the_dilated_silhouette():
    photo, person = _draw_person((200, 40, 40), long_sleeves=True)
    result = tryon_mask(person, photo, "outer")
    grown = cv2.dilate(person.silhouette, np.ones((41, 41), np.uint8)) > 0
    assert not result.hard[~grown].any()


def test_upper_body_photo_extrapolates_the_hips():
    preset = PRESETS["front_standing"].person()
    body = [point if i < 8 or i >= 14 else (0.0, 0.0, 0.0) for i, point in enumerate(preset.body)]
    person = PersonAnalysis(preset.width, preset.height, tuple(body))
    frame = body_frame(person)
    assert frame.estimated
    assert abs(frame.mid_hip[1] - 392) < 0.15 * frame.shoulder_width * 3


def test_unknown_category_and_missing_pose_are_refused():
    photo, person = _draw_person((200, 40, 40), long_sleeves=False)
    with pytest.raises(InvalidInputError, match="category"):
        tryon_mask(person, photo, "hat")
    nobody = PersonAnalysis(person.width, person.height, tuple((0.0, 0.0, 0.0) for _ in range(18)))
    with pytest.raises(InvalidInputError, match="shoulders or hips"):
        tryon_mask(nobody, photo, "upper")


@pytest.mark.parametrize("pose", sorted(PRESETS))
def test_composite_keeps_every_pixel_outside_the_mask(pose):
    photo, person = _draw_person((200, 40, 40), long_sleeves=True, pose=pose)
    garment = _tee()
    result = tryon_mask(person, photo, "upper", garment)
    warped = warp_garment(garment, person, result)
    preview = np.asarray(composite(photo, warped, result))
    outside = np.asarray(result.mask) == 0
    assert np.array_equal(preview[outside], np.asarray(photo)[outside])
    assert warped.size == photo.size


def test_the_warped_tee_lands_on_the_torso_in_its_own_colour():
    photo, person = _draw_person((200, 40, 40), long_sleeves=False)
    garment = _tee(colour=(30, 60, 200))
    result = tryon_mask(person, photo, "upper", garment)
    preview = np.asarray(composite(photo, warp_garment(garment, person, result), result))
    neck = np.array(person.point("neck"))
    mid_hip = (np.array(person.point("r_hip")) + np.array(person.point("l_hip"))) / 2
    x, y = (neck + (mid_hip - neck) * 0.6).astype(int)
    patch = preview[y - 5 : y + 5, x - 5 : x + 5].reshape(-1, 3).mean(axis=0)
    # Blue like the tee (the shading may darken it), no longer the old red top.
    assert patch[2] > 120 and patch[0] < 90


@pytest.fixture(scope="module")
def real_people():
    """(photo, PersonAnalysis) for the two real photographs that ship with installed packages."""
    import matplotlib.cbook
    from skimage import data

    from pipelines.person import analyze_person

    grace = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    photos = [Image.fromarray(data.astronaut()), grace.convert("RGB")]
    return [(photo, analyze_person(photo)) for photo in photos]


@pytest.mark.parametrize("index", [0, 1], ids=["astronaut", "grace_hopper"])
def test_real_photo_mask_covers_the_chest_and_spares_the_face(real_people, index):
    photo, person = real_people[index]
    result = tryon_mask(person, photo, "upper", _tee())
    mask = np.asarray(result.mask)
    neck = np.array(person.point("neck"))
    # A fifth of a shoulder width below the neck: Grace Hopper's photo ends soon after.
    chest_x, chest_y = (neck + result.frame.down * 0.2 * result.frame.shoulder_width).astype(int)
    assert mask[chest_y, chest_x] == 255
    assert len(person.face) == 68
    for x, y, _ in person.face:
        assert mask[int(y), int(x)] == 0
    warped = warp_garment(_tee(), person, result)
    preview = np.asarray(composite(photo, warped, result))
    outside = mask == 0
    assert np.array_equal(preview[outside], np.asarray(photo)[outside])
    # The chest now shows the new tee's blue.
    assert preview[chest_y, chest_x][2] > preview[chest_y, chest_x][0]


def test_a_magnified_cut_out_gets_an_anti_aliased_outline_in_the_garments_colours():
    """A hard-edged cut-out (a navy diamond on white, alpha 0 or 255) smoothed before a
    magnifying warp: its stairs would otherwise become teeth."""
    from pipelines.warp import _smooth_edge

    size = 64
    y, x = np.mgrid[:size, :size]
    inside = np.abs(x - 32) + np.abs(y - 32) < 20
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = 255  # the product shot's white background, under alpha 0
    rgba[inside] = (20, 40, 120, 255)
    smooth = _smooth_edge(rgba)
    alpha = smooth[..., 3]
    assert set(np.unique(rgba[..., 3])) == {0, 255}
    ramp = (alpha > 0) & (alpha < 255)
    assert ramp.sum() > 4 * 20  # the whole outline is a ramp now, not a step
    # The garment's own pixels keep their colour; the newly covered ones take its colour, never
    # the white that lay under alpha 0.
    assert (smooth[inside][:, :3] == (20, 40, 120)).all()
    grown = (alpha > 0) & ~inside
    assert grown.any() and smooth[grown][:, :3].max() <= 121
    # Well inside and well outside nothing changes.
    core = np.abs(x - 32) + np.abs(y - 32) < 15
    assert (alpha[core] == 255).all() and (alpha[np.abs(x - 32) + np.abs(y - 32) > 25] == 0).all()


def test_smoothing_a_magnified_outline_moves_no_part_of_the_garment(monkeypatch, real_people):
    """The smoothed fringe goes with the parts found on the hard outline: sleeves and panel
    land where they do without smoothing (once they did not: on the astronaut the sleeves came
    loose), and only the outline turns into a ramp."""
    from pipelines import warp
    from pipelines.garment import analyze_garment
    from pipelines.samples import DEMO_LOOKS

    photo, person = real_people[0]
    shot = DEMO_LOOKS["DEMO-TEE-STRIPE"].draw((384, 512))  # the contact sheet's: magnified
    garment = analyze_garment(shot.image, "upper")
    result = tryon_mask(person, photo, "upper", garment)
    smoothed = np.asarray(warp_garment(garment, person, result))[:, :, 3]
    monkeypatch.setattr(warp, "EDGE_SMOOTH_ABOVE", float("inf"))
    hard = np.asarray(warp_garment(garment, person, result))[:, :, 3]
    inside, inside_hard = smoothed >= 128, hard >= 128
    overlap = (inside & inside_hard).sum() / (inside | inside_hard).sum()
    assert overlap > 0.97
    ramp = lambda alpha: ((alpha > 0) & (alpha < 255)).sum()  # noqa: E731
    assert ramp(smoothed) > 1.15 * ramp(hard)  # 1.26 measured: the warp ramps edges too
