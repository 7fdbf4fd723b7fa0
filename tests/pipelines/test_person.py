"""Stage 1, person analysis, on real photographs that ship inside installed packages.

The expected positions were placed by hand on the photos (zoomed, on a pixel grid), not copied
from the detector's output.
"""

import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from pipelines import person as person_module
from pipelines.errors import InvalidInputError
from pipelines.person import (
    analyze_person,
    check_pose_usable,
    detect_body,
    person_from_keypoints,
    render_openpose,
)
from pipelines.poses import PRESETS
from pipelines.types import BODY_INDEX, PersonAnalysis

REPO_ROOT = Path(__file__).resolve().parents[2]

# Hand-placed (x, y) pixels. Eye = pupil centre, nose = tip, mouth corners from the face's 68.
# Shoulders are the joints, hidden under a padded spacesuit / uniform jacket: placed from the
# garment's outline, with about ±15 px of doubt of their own.
ASTRONAUT = {  # 512×512, Eileen Collins, upper body, facing the camera
    "nose": (225, 127),
    "r_eye": (200, 101),
    "l_eye": (245, 102),
    "r_shoulder": (95, 250),
    "l_shoulder": (315, 265),
    "r_mouth_corner": (203, 140),
    "l_mouth_corner": (247, 143),
}
GRACE_HOPPER = {  # 512×600, Grace Hopper, head and shoulders, facing the camera
    "nose": (262, 243),
    "r_eye": (220, 188),
    "l_eye": (302, 187),
    "r_shoulder": (90, 405),
    "l_shoulder": (450, 410),
    "r_mouth_corner": (233, 279),
    "l_mouth_corner": (299, 276),
}
# Allowed distance, as a fraction of the photo's long side. Face points are sharp features;
# the hidden shoulder joints get more room for the doubt in placing them.
FACE_TOLERANCE = 0.025
SHOULDER_TOLERANCE = 0.06
# Indices in the 68-point face layout.
FACE_R_MOUTH_CORNER, FACE_L_MOUTH_CORNER = 48, 54


def _astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def _grace_hopper() -> Image.Image:
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as photo:
        return photo.convert("RGB")


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {"astronaut": _astronaut(), "grace_hopper": _grace_hopper()}


@pytest.fixture(scope="module")
def analyses(photos) -> dict[str, PersonAnalysis]:
    return {name: analyze_person(photo) for name, photo in photos.items()}


def _found(person: PersonAnalysis, name: str) -> tuple[float, float]:
    if name == "r_mouth_corner":
        x, y, score = person.face[FACE_R_MOUTH_CORNER]
    elif name == "l_mouth_corner":
        x, y, score = person.face[FACE_L_MOUTH_CORNER]
    else:
        x, y, score = person.body[BODY_INDEX[name]]
    assert score > 0, f"{name} not found"
    return (x, y)


@pytest.mark.parametrize(
    ("photo", "expected"), [("astronaut", ASTRONAUT), ("grace_hopper", GRACE_HOPPER)]
)
def test_keypoints_are_where_a_person_puts_them(analyses, photo, expected):
    person = analyses[photo]
    size = max(person.width, person.height)
    for name, (x, y) in expected.items():
        tolerance = SHOULDER_TOLERANCE if "shoulder" in name else FACE_TOLERANCE
        distance = math.dist(_found(person, name), (x, y))
        assert distance <= tolerance * size, f"{photo} {name}: {distance:.1f} px off"


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_sides_are_the_persons_own_and_the_neck_is_between_the_shoulders(analyses, photo):
    person = analyses[photo]
    right, left = person.point("r_shoulder"), person.point("l_shoulder")
    # Facing the camera, the person's right side is on the image's left.
    assert right[0] < person.width / 2 < left[0]
    assert person.point("r_eye")[0] < person.point("l_eye")[0]
    assert person.point("r_ear")[0] < person.point("l_ear")[0]
    neck_x, neck_y, neck_score = person.body[BODY_INDEX["neck"]]
    assert (neck_x, neck_y) == pytest.approx(((right[0] + left[0]) / 2, (right[1] + left[1]) / 2))
    shoulder_scores = (
        person.body[BODY_INDEX["r_shoulder"]][2],
        person.body[BODY_INDEX["l_shoulder"]][2],
    )
    assert neck_score == min(shoulder_scores)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_points_out_of_frame_or_hidden_are_missing(analyses, photo):
    person = analyses[photo]
    assert len(person.body) == 18
    # Both photos end above the hips: the legs are not in them.
    for name in ("r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle"):
        assert person.body[BODY_INDEX[name]] == (0.0, 0.0, 0.0), name
    for x, y, score in person.body:
        assert 0.0 <= score <= 1.0
        if score:
            assert score >= person_module.MIN_VISIBILITY
            assert 0 <= x < person.width and 0 <= y < person.height


def test_a_guessed_limb_is_left_out(analyses):
    # The astronaut's left arm is hidden behind the helmet she holds; MediaPipe guesses its
    # elbow on her chest with a visibility of about 0.3. Her right elbow is in plain view.
    astronaut = analyses["astronaut"]
    assert astronaut.point("l_elbow", min_score=0.01) is None
    assert astronaut.point("r_elbow") is not None


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_the_face_has_68_points_in_openpose_order(analyses, photo):
    face = analyses[photo].face
    assert len(face) == 68
    assert all(score == 1.0 for _, _, score in face)
    # The jaw runs from the person's right (image left) over the chin (8) to the left.
    assert face[0][0] < face[8][0] < face[16][0]
    assert face[8][1] > face[30][1] > face[27][1]  # chin below the nose tip below the bridge
    # Right eye (36-41) on the image's left of the left eye (42-47), both above the mouth.
    right_eye_x = np.mean([x for x, _, _ in face[36:42]])
    left_eye_x = np.mean([x for x, _, _ in face[42:48]])
    assert right_eye_x < left_eye_x
    assert max(y for _, y, _ in face[36:48]) < min(y for _, y, _ in face[48:68])


def test_hands_that_are_not_visible_are_not_invented(analyses):
    # The astronaut wears gloves and Grace Hopper's hands are out of frame.
    for person in analyses.values():
        assert person.right_hand == () and person.left_hand == ()


def test_a_small_face_in_a_large_photo_is_found_around_the_head(photos):
    # On a large canvas the face is too small for MediaPipe's short-range face detector over
    # the whole frame; it is found in a crop around the pose's head.
    canvas = Image.new("RGB", (1200, 1800), (200, 200, 200))
    canvas.paste(photos["astronaut"], (300, 100))
    person = analyze_person(canvas)
    assert len(person.face) == 68
    nose_x, nose_y = ASTRONAUT["nose"]
    assert math.dist(person.point("nose"), (300 + nose_x, 100 + nose_y)) < 0.025 * 512


@pytest.mark.parametrize(
    ("photo", "torso"), [("astronaut", (200, 380)), ("grace_hopper", (256, 500))]
)
def test_the_silhouette_covers_the_person_and_not_the_background(analyses, photo, torso):
    person = analyses[photo]
    mask = person.silhouette
    assert mask.shape == (person.height, person.width) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    x, y = torso
    assert mask[y, x] == 255
    nose_x, nose_y = person.point("nose")
    assert mask[round(nose_y), round(nose_x)] == 255
    for corner_y, corner_x in ((2, 2), (2, person.width - 3)):
        assert mask[corner_y, corner_x] == 0


def test_the_helmet_she_holds_is_not_part_of_the_astronaut(analyses):
    assert analyses["astronaut"].silhouette[440, 390] == 0


def test_the_selfie_segmentation_fallback_finds_the_person(photos):
    pixels = np.asarray(photos["astronaut"])
    mask = person_module._silhouette(None, pixels)
    assert mask.shape == (512, 512)
    assert mask[380, 200] == 255 and mask[127, 225] == 255
    assert mask[2, 2] == 0 and mask[2, 509] == 0


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_other_image_modes_are_analysed_as_rgb(photos, mode):
    person = analyze_person(photos["astronaut"].convert(mode))
    assert math.dist(person.point("nose"), ASTRONAUT["nose"]) < 0.025 * 512


def test_transparent_pixels_are_seen_as_white_not_as_the_colour_they_hide(photos):
    hidden = photos["astronaut"].convert("RGBA")
    hidden.putalpha(0)
    with pytest.raises(InvalidInputError, match="no person found"):
        analyze_person(hidden)


def test_a_photo_with_nobody_in_it_is_refused():
    blank = Image.new("RGB", (512, 512), (128, 128, 128))
    with pytest.raises(InvalidInputError, match="no person found") as raised:
        analyze_person(blank)
    assert raised.value.argument == "person_photo"


@pytest.mark.parametrize("size", [(100, 400), (127, 127), (400, 64)])
def test_a_tiny_image_is_refused(size):
    with pytest.raises(InvalidInputError, match="128 px") as raised:
        analyze_person(Image.new("RGB", size, (128, 128, 128)))
    assert raised.value.argument == "image"


def test_something_that_is_not_an_image_is_refused():
    with pytest.raises(InvalidInputError, match="PIL image") as raised:
        analyze_person(np.zeros((512, 512, 3), np.uint8))
    assert raised.value.argument == "image"


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_a_head_and_shoulders_photo_suits_tops_and_dresses_but_not_bottoms(analyses, photo):
    person = analyses[photo]
    # A dress hangs from the shoulders: a half-length photo shows its bodice.
    for category in ("upper", "outer", "dress"):
        check_pose_usable(person, category)
    with pytest.raises(InvalidInputError, match="no usable pose") as raised:
        check_pose_usable(person, "lower")
    assert raised.value.argument == "person_photo"
    assert "right hip" in str(raised.value) and "left hip" in str(raised.value)
    assert "shoulder" not in str(raised.value).split("not found:")[1]


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_the_body_alone_is_the_full_analysis_body_and_decides_the_same(
    photos, analyses, photo, monkeypatch
):
    # The web's pre-check: the pose graph only; the hands and face graphs are never asked.
    for graph in ("_hands_graph", "_face_graph", "_selfie_graph"):
        monkeypatch.setattr(person_module, graph, lambda: pytest.fail("not the body's graph"))
    body = detect_body(photos[photo])
    full = analyses[photo]
    assert (body.width, body.height) == (full.width, full.height)
    assert body.face == () and body.right_hand == () and body.silhouette is None
    for part in ("r_shoulder", "l_shoulder", "r_hip", "l_hip", "r_elbow", "l_elbow"):
        assert body.point(part, 0.0) == full.point(part, 0.0), part
    check_pose_usable(body, "upper")
    with pytest.raises(InvalidInputError, match="no usable pose"):
        check_pose_usable(body, "lower")


def test_the_body_alone_refuses_a_photo_with_nobody_in_it():
    with pytest.raises(InvalidInputError, match="no person found"):
        detect_body(Image.new("RGB", (512, 512), (128, 128, 128)))


def _preset_body_without(*names: str) -> list[tuple[float, float, float]]:
    body = list(PRESETS["front_standing"].body)
    for name in names:
        body[BODY_INDEX[name]] = (0.0, 0.0, 0.0)
    return body


def test_a_missing_shoulder_refuses_tops_and_dresses_but_not_bottoms():
    person = person_from_keypoints(_preset_body_without("l_shoulder"), 512, 768)
    check_pose_usable(person, "lower")
    for category in ("upper", "outer", "dress"):
        with pytest.raises(InvalidInputError, match="not found: left shoulder"):
            check_pose_usable(person, category)


def test_a_full_body_suits_every_category_and_an_unknown_one_is_refused():
    person = person_from_keypoints(PRESETS["front_standing"].body, 512, 768)
    for category in ("upper", "lower", "dress", "outer"):
        check_pose_usable(person, category)
    with pytest.raises(InvalidInputError) as raised:
        check_pose_usable(person, "hat")
    assert raised.value.argument == "category"


def test_person_from_keypoints_builds_a_photo_less_analysis():
    body = _preset_body_without("r_ear")
    body[BODY_INDEX["l_ear"]] = (300.0, 100.0, 0.0)  # a score of 0 means missing
    person = person_from_keypoints(body, 512, 768)
    assert (person.width, person.height) == (512, 768)
    assert person.silhouette is None and person.face == () and person.right_hand == ()
    assert person.body[BODY_INDEX["l_ear"]] == (0.0, 0.0, 0.0)
    assert person.point("r_shoulder") == PRESETS["front_standing"].body[2][:2]
    with pytest.raises(InvalidInputError) as raised:
        person_from_keypoints(body[:17], 512, 768)
    assert raised.value.argument == "body"
    with pytest.raises(InvalidInputError):
        person_from_keypoints([(*body[0][:2], 2.0), *body[1:]], 512, 768)


def test_the_openpose_map_uses_openposes_colours_where_the_joints_are(analyses):
    person = analyses["grace_hopper"]
    pose_map = render_openpose(person)
    assert pose_map.size == (512, 600) and pose_map.mode == "RGB"
    pixels = np.asarray(pose_map)
    # OpenPose colours each joint by its index: right shoulder orange, left shoulder green.
    for name, colour in (("r_shoulder", (255, 170, 0)), ("l_shoulder", (85, 255, 0))):
        x, y = (round(v) for v in person.point(name))
        assert tuple(pixels[y, x]) == colour, name
    assert not pixels[:40, :40].any() and not pixels[-40:, -40:].any()


def test_face_and_hands_can_be_left_off_the_map(analyses):
    person = analyses["astronaut"]
    face_box = np.asarray([(x, y) for x, y, _ in person.face])
    (left, top), (right, bottom) = face_box.min(0).astype(int), face_box.max(0).astype(int)

    def white_in_face(pose_map: Image.Image) -> int:
        region = np.asarray(pose_map)[top : bottom + 1, left : right + 1]
        return int((region == 255).all(axis=2).sum())

    assert white_in_face(render_openpose(person)) > 100  # controlnet_aux draws faces white
    assert white_in_face(render_openpose(person, face=False)) == 0


def test_the_map_is_drawn_at_the_same_relative_thickness_at_any_size():
    small = PRESETS["front_standing"].person()
    large = person_from_keypoints(
        [(2 * x, 2 * y, score) for x, y, score in small.body], 2 * small.width, 2 * small.height
    )
    small_map, large_map = render_openpose(small), render_openpose(large)
    assert large_map.size == (1024, 1536)
    # The share of the canvas inked stays the same (drawn natively at 1024 it would halve).
    ink_small = np.asarray(small_map).max(axis=2).mean()
    ink_large = np.asarray(large_map).max(axis=2).mean()
    assert ink_large == pytest.approx(ink_small, rel=0.1)


def test_hands_go_to_the_side_of_the_nearer_wrist():
    body = list(PRESETS["front_standing"].body)
    r_wrist, l_wrist = body[BODY_INDEX["r_wrist"]][:2], body[BODY_INDEX["l_wrist"]][:2]
    near_right = _hand(r_wrist, label_side="l")  # MediaPipe's label says otherwise
    near_left = _hand(l_wrist, label_side="l")
    sides = person_module._assign_hands([near_left, near_right], tuple(body))
    assert sides == {"r": near_right.points, "l": near_left.points}
    assert person_module._assign_hands([near_right], tuple(body)) == {"r": near_right.points}


def test_without_wrists_hands_go_by_handedness_and_never_share_a_side():
    body = tuple(_preset_body_without("r_wrist", "r_elbow", "l_wrist", "l_elbow"))
    sure_right = _hand((150, 380), label_side="r", label_score=0.9)
    unsure_right = _hand((350, 380), label_side="r", label_score=0.6)
    sides = person_module._assign_hands([unsure_right, sure_right], body)
    assert sides == {"r": sure_right.points, "l": unsure_right.points}


def test_mediapipes_mirrored_handedness_label_is_swapped():
    label = SimpleNamespace(label="Left", score=0.95)
    result = SimpleNamespace(
        multi_hand_landmarks=[SimpleNamespace(landmark=[SimpleNamespace(x=0.3, y=0.7)] * 21)],
        multi_handedness=[SimpleNamespace(classification=[label])],
    )
    graph = SimpleNamespace(process=lambda pixels: result)
    (hand,) = person_module._detect_hands(graph, np.zeros((200, 100, 3), np.uint8))
    assert hand.label_side == "r"  # "Left" in a mirrored selfie is the person's right hand
    assert hand.wrist == pytest.approx((30, 140))
    assert len(hand.points) == 21


def test_the_pose_graph_is_built_once_per_process(photos):
    analyze_person(photos["astronaut"])
    hits = person_module._pose_graph.cache_info().hits
    analyze_person(photos["astronaut"])
    info = person_module._pose_graph.cache_info()
    assert info.misses == 1 and info.hits == hits + 1
    for getter in (person_module._hands_graph, person_module._face_graph):
        assert getter.cache_info().misses == 1


def test_concurrent_analyses_share_the_graphs_safely(photos, analyses):
    # Without the lock, two threads feeding one graph break it for good ("Packet timestamp
    # mismatch"), and every later call fails.
    jobs = ["astronaut", "grace_hopper"] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda name: analyze_person(photos[name]), jobs))
    for name, result in zip(jobs, results, strict=True):
        assert result.body == analyses[name].body


def test_keypoint_detection_imports_neither_torch_nor_controlnet_aux(tmp_path, photos):
    photo = tmp_path / "astronaut.png"
    photos["astronaut"].save(photo)
    script = (
        "import sys\n"
        "from PIL import Image\n"
        "import pipelines.person\n"
        f"person = pipelines.person.analyze_person(Image.open({str(photo)!r}))\n"
        "print(person.point('nose') is not None, 'torch' in sys.modules,"
        " 'controlnet_aux' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False", "False"]


def _hand(wrist, label_side: str, label_score: float = 0.9):
    points = tuple((wrist[0] + i, wrist[1] + i, 1.0) for i in range(21))
    return person_module._DetectedHand(points, tuple(wrist), label_side, label_score)
