"""The preview looks like the person wearing the garment (issue 17), measured on the packaged
real photos and on drawn figures whose keypoints are known.

Each property is what a shopper would see: the sleeve on the arm, a forearm in front of the
new top, the garment's own colour with smooth shading, no painted patches, face and hands
untouched.
"""

from itertools import pairwise

import cv2
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.color import rgb2lab

from pipelines.garment import analyze_garment
from pipelines.masks import covering, tryon_mask
from pipelines.person import analyze_person
from pipelines.poses import PRESETS
from pipelines.samples import draw_product_shot
from pipelines.types import BODY_INDEX, PersonAnalysis
from pipelines.warp import composite, warp_garment

GREEN = (40, 160, 70)  # a garment colour neither photo has
SKIN = (224, 172, 140)
OLD_TOP = (200, 120, 40)
BACKGROUND = (90, 110, 160)


@pytest.fixture(scope="module")
def people():
    grace = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    photos = {"astronaut": Image.fromarray(data.astronaut()), "grace_hopper": grace.convert("RGB")}
    return {name: (photo, analyze_person(photo)) for name, photo in photos.items()}


@pytest.fixture(scope="module")
def green_tee():
    shot = draw_product_shot("tshirt", colour=GREEN, size=(384, 512))
    return analyze_garment(shot.image, "upper")


def _dress(photo: Image.Image, person: PersonAnalysis, garment):
    """The preview as the site makes it: mask, warp, the mask grown to the garment, composite."""
    tryon = tryon_mask(person, photo, garment.category, garment)
    warped = warp_garment(garment, person, tryon)
    tryon = covering(tryon, warped)
    return tryon, warped, np.asarray(composite(photo, warped, tryon))


def _lab(pixels: np.ndarray) -> np.ndarray:
    return rgb2lab(np.asarray(pixels, np.uint8).reshape(-1, 1, 3)).reshape(-1, 3)


def _garment_colour(garment) -> np.ndarray:
    cutout = np.asarray(garment.cutout)
    return np.median(cutout[cutout[:, :, 3] == 255][:, :3], axis=0)


# --- sleeves -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_a_short_sleeve_shows_on_the_upper_arm_below_each_visible_shoulder(people, green_tee, name):
    photo, person = people[name]
    tryon, _, preview = _dress(photo, person, green_tee)
    frame, sw = tryon.frame, tryon.frame.shoulder_width
    garment_lab = _lab([_garment_colour(green_tee)])[0]
    checked = 0
    for side in ("r", "l"):
        shoulder = getattr(frame, f"{side}_shoulder")
        outward = frame.across if side == "r" else -frame.across
        elbow = person.point(f"{side}_elbow")
        # Down the arm: to the elbow the pose found, else straight down the body.
        way = np.subtract(elbow, shoulder) if elbow else frame.down * sw
        way = way / np.hypot(*way)
        x, y = (shoulder + way * 0.3 * sw).round().astype(int)
        if not (0 <= x < person.width and 0 <= y < person.height):
            continue
        patch = preview[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3)
        # On the arm, just below the shoulder: the new sleeve, in the garment's colour.
        assert np.linalg.norm(_lab(patch).mean(axis=0)[1:] - garment_lab[1:]) < 20, side
        # And it is a sleeve, not the torso panel: it ends a little beyond the arm's outer side.
        beyond = (shoulder + way * 0.3 * sw + outward * 0.45 * sw).round().astype(int)
        if 0 <= beyond[0] < person.width and person.silhouette[beyond[1], beyond[0]] == 0:
            outside = preview[beyond[1], beyond[0]]
            assert np.array_equal(outside, np.asarray(photo)[beyond[1], beyond[0]]), side
        checked += 1
    assert checked >= 1


def test_a_sleeve_is_laid_along_an_arm_held_away_from_the_body(green_tee):
    photo, person, _ = _drawn_figure("hands_on_hips")
    _, _, preview = _dress(photo, person, green_tee)
    original = np.asarray(photo)
    garment_ab = _lab([_garment_colour(green_tee)])[0][1:]
    for side in ("r", "l"):
        shoulder, elbow = (
            np.array(person.point(f"{side}_{joint}")) for joint in ("shoulder", "elbow")
        )
        for t in (0.25, 0.4):
            x, y = (shoulder + (elbow - shoulder) * t).astype(int)
            assert np.linalg.norm(_lab([preview[y, x]])[0][1:] - garment_ab) < 20, (side, t)
        # Past the short sleeve the arm is bare, as drawn.
        x, y = (shoulder + (elbow - shoulder) * 0.9).astype(int)
        assert np.array_equal(preview[y, x], original[y, x]), side
    # Between the elbows and the waist the background still shows: no block over the arms.
    hip = np.array(person.point("r_hip"))
    elbow = np.array(person.point("r_elbow"))
    x, y = ((elbow + np.array([hip[0], elbow[1]])) / 2).astype(int)
    assert person.silhouette[y, x] == 0
    assert np.array_equal(preview[y, x], original[y, x])


# --- layering ------------------------------------------------------------------------------------


def _drawn_figure(pose: str, moves: dict[str, tuple[float, float]] | None = None):
    """A person drawn on a preset's skeleton (skin arms and head, an orange top), and the
    analysis a detector would give. ``moves`` places joints elsewhere (a pointing arm)."""
    preset = PRESETS[pose].person()
    body = list(preset.body)
    for name, (x, y) in (moves or {}).items():
        body[BODY_INDEX[name]] = (x, y, 1.0)
    person = PersonAnalysis(preset.width, preset.height, tuple(body))
    canvas = np.full((person.height, person.width, 3), BACKGROUND, np.uint8)
    silhouette = np.zeros((person.height, person.width), np.uint8)

    def at(name):
        return tuple(int(v) for v in person.point(name))

    torso = np.array([at(n) for n in ("r_shoulder", "l_shoulder", "l_hip", "r_hip")])
    for picture, colour in ((canvas, OLD_TOP), (silhouette, 255)):
        cv2.fillConvexPoly(picture, cv2.convexHull(torso), colour)
        cv2.circle(picture, at("nose"), 42, SKIN if picture is canvas else 255, -1)
        for side in ("r", "l"):
            for leg in pairwise((f"{side}_hip", f"{side}_knee", f"{side}_ankle")):
                cv2.line(
                    picture, at(leg[0]), at(leg[1]), (60, 60, 90) if picture is canvas else 255, 50
                )
    forearms = np.zeros_like(silhouette)
    for side in ("r", "l"):  # arms last: they lie over the torso
        for a, b in pairwise((f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist")):
            colour = OLD_TOP if a.endswith("shoulder") else SKIN
            cv2.line(canvas, at(a), at(b), colour, 40)
            cv2.line(silhouette, at(a), at(b), 255, 40)
        cv2.line(forearms, at(f"{side}_elbow"), at(f"{side}_wrist"), 1, 20)
    person = PersonAnalysis(person.width, person.height, person.body, silhouette=silhouette)
    return Image.fromarray(canvas), person, forearms.astype(bool)


POINTING = {"r_elbow": (236, 250), "r_wrist": (330, 262)}  # the right arm across the chest


@pytest.mark.parametrize(
    ("pose", "moves"),
    [("arms_crossed", None), ("front_standing", POINTING)],
    ids=["crossed_forearms", "pointing_arm"],
)
def test_forearms_over_the_torso_stay_in_front_of_the_new_top(green_tee, pose, moves):
    photo, person, forearms = _drawn_figure(pose, moves)
    tryon, _, preview = _dress(photo, person, green_tee)
    # The forearms that lie over the torso (the torso's box) ...
    torso_box = np.zeros_like(forearms)
    ys = [person.point(n)[1] for n in ("r_shoulder", "l_shoulder", "r_hip", "l_hip")]
    xs = [person.point(n)[0] for n in ("r_shoulder", "l_shoulder", "r_hip", "l_hip")]
    torso_box[int(min(ys)) : int(max(ys)), int(min(xs)) : int(max(xs))] = True
    # (the hands beyond the wrists are protected like the face: another test's business)
    ys, xs = np.mgrid[0 : forearms.shape[0], 0 : forearms.shape[1]]
    hands = np.zeros_like(forearms)
    for side in ("r", "l"):
        wrist = person.point(f"{side}_wrist")
        hands |= np.hypot(xs - wrist[0], ys - wrist[1]) < 0.25 * tryon.frame.shoulder_width
    over = forearms & torso_box & ~hands
    assert over.sum() > 500
    # ... are at least 80 % the photo's own pixels: the arm in front, the top behind it.
    same = np.all(preview == np.asarray(photo), axis=2)
    assert same[over].mean() >= 0.8
    # The top itself did go on: the chest between the arms is green now.
    chest = torso_box & ~forearms & (np.asarray(tryon.mask) == 255)
    assert (preview[chest][:, 1] > preview[chest][:, 0]).mean() > 0.5


HAIR = (70, 45, 30)


def test_hair_falling_over_the_shoulders_stays_in_front_of_the_new_top(green_tee):
    photo, person, _ = _drawn_figure("front_standing")
    canvas = np.asarray(photo).copy()
    hair = np.zeros(canvas.shape[:2], np.uint8)
    nose = np.array(person.point("nose"), int)
    cv2.ellipse(hair, (int(nose[0]), int(nose[1] - 22)), (50, 40), 0, 180, 360, 1, -1)  # crown
    lock = np.array([[30, -32], [52, -32], [60, 150], [34, 150]])
    for side in (-1, 1):  # two long locks down over the shoulders onto the chest
        cv2.fillConvexPoly(hair, (nose + lock * (side, 1)).astype(np.int32), 1)
    canvas[hair > 0] = HAIR
    silhouette = person.silhouette | (hair * 255)
    person = PersonAnalysis(person.width, person.height, person.body, silhouette=silhouette)
    photo = Image.fromarray(canvas)
    tryon, _, preview = _dress(photo, person, green_tee)
    shoulders_y = int(min(person.point("r_shoulder")[1], person.point("l_shoulder")[1]))
    on_the_top = (hair > 0) & (np.arange(hair.shape[0])[:, None] > shoulders_y)
    assert on_the_top.sum() > 1000
    same = np.all(preview == canvas, axis=2)
    assert same[on_the_top].mean() >= 0.8
    # A generation keeps the hair too; the top between the locks is repainted.
    assert (np.asarray(tryon.mask)[on_the_top] == 0).mean() >= 0.8
    chest = np.add(person.point("neck"), (0, 60)).astype(int)
    assert np.asarray(tryon.mask)[chest[1], chest[0]] == 255


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_face_and_hands_are_exactly_the_photo(people, green_tee, name):
    photo, person = people[name]
    tryon, _, preview = _dress(photo, person, green_tee)
    assert tryon.protected.sum() > 1000
    assert np.array_equal(preview[tryon.protected], np.asarray(photo)[tryon.protected])


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_the_garment_edge_is_anti_aliased_and_follows_the_body(people, green_tee, name):
    photo, person = people[name]
    tryon, warped, _ = _dress(photo, person, green_tee)
    alpha = np.asarray(warped)[:, :, 3]
    inside = (alpha >= 128).astype(np.uint8)
    edge = (inside - cv2.erode(inside, np.ones((3, 3), np.uint8))).astype(bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = False  # the photo's own border cuts any garment
    ring = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    # Beside its outline the garment is partly transparent: a smooth edge, not a staircase.
    assert ((alpha[ring] > 0) & (alpha[ring] < 255)).mean() > 0.3
    # And it lies on the body: hardly anything outside the silhouette grown a little.
    grow = int(0.08 * tryon.frame.shoulder_width) | 1
    body = cv2.dilate(person.silhouette, np.ones((grow, grow), np.uint8)) > 0
    assert (inside.astype(bool) & ~body).sum() < 0.01 * inside.sum()


# --- colour and shading --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
@pytest.mark.parametrize(
    "colour", [GREEN, (190, 30, 40), (32, 52, 110)], ids=["green", "red", "navy"]
)
def test_the_garment_keeps_its_colour_and_is_shaded_smoothly(people, name, colour):
    photo, person = people[name]
    shot = draw_product_shot("tshirt", colour=colour, size=(384, 512))
    garment = analyze_garment(shot.image, "upper")
    tryon, warped, preview = _dress(photo, person, garment)
    solid = cv2.erode((np.asarray(warped)[:, :, 3] == 255).astype(np.uint8), np.ones((9, 9))) > 0
    assert solid.sum() > 5000
    worn, flat = _lab(preview[solid]), _lab(np.asarray(warped)[:, :, :3][solid])
    shot_lab = _lab([_garment_colour(garment)])[0]
    # The median colour is the product shot's (CIELAB ΔE under 15).
    assert np.linalg.norm(np.median(worn, axis=0) - shot_lab) < 15
    # The lightness the photo adds (preview against the flat warped garment) is bounded ...
    added = np.zeros(solid.shape, np.float32)
    added[solid] = (worn[:, 0] + 5) / (flat[:, 0] + 5)
    low, high = np.percentile(added[solid], [2, 98])
    assert low > 0.7 and high < 1.3
    # ... and varies like light, not in blotches: little of it is in small-scale detail.
    sw = tryon.frame.shoulder_width
    smooth = cv2.GaussianBlur(added, (0, 0), 0.15 * sw) / np.maximum(
        cv2.GaussianBlur(solid.astype(np.float32), (0, 0), 0.15 * sw), 1e-3
    )
    detail = np.abs(added - smooth)[cv2.erode(solid.astype(np.uint8), np.ones((31, 31))) > 0]
    assert np.percentile(detail, 95) < 0.06


# --- no painted fills ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_nothing_is_painted_that_is_neither_garment_nor_photo(people, green_tee, name):
    photo, person = people[name]
    _, _, preview = _dress(photo, person, green_tee)
    original = np.asarray(photo)
    changed = np.abs(preview.astype(int) - original).max(axis=2) > 12
    assert changed.sum() > 5000
    # Away from the edges of what changed (where garment and photo blend), a changed pixel is
    # the garment: its hue, in any shade. Anything else was painted.
    interior = cv2.erode(changed.astype(np.uint8), np.ones((5, 5))) > 0
    garment_ab = _lab([_garment_colour(green_tee)])[0][1:]
    worn, was = _lab(preview[interior]), _lab(original[interior])
    to_garment = np.linalg.norm(worn[:, 1:] - garment_ab, axis=1)
    to_photo = np.linalg.norm(worn - was, axis=1)
    fill = (to_garment > 20) & (to_photo > 15)
    assert fill.sum() / changed.sum() < 0.02


def test_short_sleeves_over_long_old_sleeves_leave_the_old_sleeve_not_a_painted_arm(green_tee):
    # The drawn figure wears an orange long-sleeved top; the new tee's sleeves are short.
    photo, person, _ = _drawn_figure("front_standing")
    canvas = np.asarray(photo).copy()
    for side in ("r", "l"):
        elbow, wrist = (
            tuple(int(v) for v in person.point(f"{side}_{j}")) for j in ("elbow", "wrist")
        )
        cv2.line(canvas, elbow, wrist, OLD_TOP, 40)
    photo = Image.fromarray(canvas)
    tryon, _, preview = _dress(photo, person, green_tee)
    elbow, wrist = np.array(person.point("r_elbow")), np.array(person.point("r_wrist"))
    x, y = ((elbow + wrist) / 2).astype(int)
    # The forearm keeps its old sleeve (a layer under the tee) ...
    assert np.array_equal(preview[y, x], canvas[y, x])
    # ... while a generation would repaint it as an arm.
    assert np.asarray(tryon.mask)[y, x] == 255


# --- model shots ---------------------------------------------------------------------------------

BODY_JOINTS = [f"{side}_{joint}" for side in "rl" for joint in ("shoulder", "hip", "knee", "ankle")]


@pytest.mark.parametrize("pose", ["front_standing", "hands_on_hips", "arms_crossed"])
def test_a_preview_model_shot_shows_a_figure_the_pose_detector_finds(green_tee, tmp_path, pose):
    from pipelines.params import GenerationParams
    from pipelines.tryon import GarmentInput, TryOnRequest, run

    request = TryOnRequest(
        "model_shot",
        (GarmentInput(green_tee),),
        pose=pose,
        scene="studio_white",
        params=GenerationParams(seed=1),
        engine="preview",
    )
    picture = run(request, models_dir=tmp_path).images[0].image
    found = analyze_person(picture)
    preset = PRESETS[pose].person()
    scale = picture.width / preset.width
    near = 0
    for name in BODY_JOINTS:
        point, expected = found.point(name, 0.5), preset.point(name)
        if point is not None and np.hypot(*(np.subtract(point, expected) * 1 / scale)) < 40:
            near += 1
    assert near >= 6
