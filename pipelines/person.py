"""Stage 1: find the person in a photo — OpenPose-18 body keypoints, hands, face, silhouette.

MediaPipe does the finding: its wheel ships the pose, hand and face-mesh models, so this works
offline and without torch (the web process uses it to refuse photos with no usable pose before a
job is queued). The results are converted to OpenPose's conventions, which is what the OpenPose
ControlNets were trained on: ``render_openpose`` draws them with controlnet_aux's own code.
"""

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .pictures import check_picture_size
from .types import BODY_INDEX, BODY_PARTS, MISSING, PersonAnalysis, Point

MIN_SIDE = 128
# MediaPipe's visibility is a probability that a landmark is in view (not occluded, in frame);
# 0.5 is its own drawing utilities' cut-off. Below it the landmark is a guess from the body prior:
# on the astronaut photo the left elbow, hidden behind the helmet, is guessed at 0.33 on her chest.
# OpenPose only reports parts it sees, and a guessed limb would make the ControlNet draw one.
MIN_VISIBILITY = 0.5
SILHOUETTE_THRESHOLD = 0.5
# controlnet_aux draws sticks and dots of a fixed pixel size at its detect resolution (short side
# 512); drawing there and resizing keeps their thickness relative to the body whatever the size.
OPENPOSE_DRAW_SIDE = 512
# The face crop is this many shoulder widths wide: MediaPipe's face detector is a short-range
# model that misses a face smaller than about a tenth of the frame, as in a full-body photo.
FACE_CROP_SHOULDER_WIDTHS = 2.0

# MediaPipe pose landmark for each OpenPose-18 part. MediaPipe's LEFT/RIGHT are the person's own
# sides, as OpenPose's are (on the front-facing test photos RIGHT_SHOULDER is on the image's left).
# The neck has no MediaPipe landmark: it is the shoulders' midpoint.
_POSE_LANDMARK = {
    "nose": 0,
    "r_shoulder": 12,
    "r_elbow": 14,
    "r_wrist": 16,
    "l_shoulder": 11,
    "l_elbow": 13,
    "l_wrist": 15,
    "r_hip": 24,
    "r_knee": 26,
    "r_ankle": 28,
    "l_hip": 23,
    "l_knee": 25,
    "l_ankle": 27,
    "r_eye": 5,
    "l_eye": 2,
    "r_ear": 8,
    "l_ear": 7,
}

# Face-mesh vertices for each of the 68 dlib/OpenPose face points, in that order; a pair is
# averaged. Correspondence as published in github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks,
# checked by drawing it on the test photos.
_FACE_68: tuple[tuple[int, ...], ...] = (
    # jaw, from the person's right ear down to the chin and up to the left ear (0-16)
    *((127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,)),
    *((400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,)),
    # right brow, outer to inner (17-21); left brow, inner to outer (22-26)
    *((70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,)),
    # nose bridge down to the tip (27-30), nostrils from right to left (31-35)
    *((168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,)),
    # right eye (36-41) and left eye (42-47), each from its outer/inner corner clockwise
    *((33,), (160,), (158,), (133,), (153,), (144,)),
    *((362,), (385,), (387,), (263,), (373,), (380,)),
    # outer lips from the right corner (48-59), inner lips (60-67)
    *((61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,)),
    *((78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,)),
)

# The keypoints each garment category is fitted to.
_NEEDED_PARTS = {
    "upper": ("r_shoulder", "l_shoulder"),
    "outer": ("r_shoulder", "l_shoulder"),
    "lower": ("r_hip", "l_hip"),
    # A dress hangs from the shoulders: on a half-length photo its bodice is what shows, and the
    # hips are extrapolated as for a top.
    "dress": ("r_shoulder", "l_shoulder"),
}

# One lock for all graphs: a MediaPipe graph is not reentrant, and one image's three passes
# run one after the other anyway.
_GRAPH_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _pose_graph():
    """The pose graph. Complexity 1 is the only pose model the wheel ships (0 and 2 download)."""
    from mediapipe.python.solutions import pose

    return pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)


@lru_cache(maxsize=1)
def _hands_graph():
    """The hands graph; the wheel ships both hand models, complexity 1 is the full one."""
    from mediapipe.python.solutions import hands

    return hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=1)


@lru_cache(maxsize=1)
def _face_graph():
    """The face-mesh graph; the 468-vertex mesh covers the 68 points without iris refinement."""
    from mediapipe.python.solutions import face_mesh

    return face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)


@lru_cache(maxsize=1)
def _selfie_graph():
    """Selfie segmentation, the silhouette's fallback; model 0 is the general (square) one."""
    from mediapipe.python.solutions import selfie_segmentation

    return selfie_segmentation.SelfieSegmentation(model_selection=0)


@dataclass(frozen=True)
class _DetectedHand:
    points: tuple[Point, ...]
    wrist: tuple[float, float]  # raw, even when outside the image
    label_side: str  # "r" or "l": the person's side according to MediaPipe's handedness
    label_score: float


def analyze_person(image: Image.Image) -> PersonAnalysis:
    """Find the person in ``image``: body keypoints, hands, face and silhouette.

    Coordinates are pixels of ``image`` as given (apply EXIF orientation before calling).
    Raises ``InvalidInputError`` for an image that is not a PIL image or is too small, and for a
    photo with nobody in it. Whether the pose is good enough for a garment is
    ``check_pose_usable``'s question.
    """
    pixels = _rgb_pixels(image)
    height, width = pixels.shape[:2]
    with _GRAPH_LOCK:
        hands_graph, face_graph = _hands_graph(), _face_graph()
        pose, body = _pose_and_body(pixels)
        hands = _assign_hands(_detect_hands(hands_graph, pixels), body)
        face = _detect_face(face_graph, pixels, body)
        body = _with_face_parts(body, face)
        silhouette = _silhouette(pose.segmentation_mask, pixels)
    return PersonAnalysis(
        width=width,
        height=height,
        body=body,
        right_hand=hands.get("r", ()),
        left_hand=hands.get("l", ()),
        face=face,
        silhouette=silhouette,
    )


def detect_body(image: Image.Image) -> PersonAnalysis:
    """The body keypoints of the person in ``image``, without hands, face or silhouette.

    Enough for ``check_pose_usable``, at about two thirds of ``analyze_person``'s time (one
    graph of three): what a web process runs to refuse an unusable photo before queueing it.
    Raises as ``analyze_person`` does.
    """
    pixels = _rgb_pixels(image)
    height, width = pixels.shape[:2]
    with _GRAPH_LOCK:
        _, body = _pose_and_body(pixels)
    return PersonAnalysis(width=width, height=height, body=body)


def _pose_and_body(pixels: np.ndarray):
    """The pose graph's output for ``pixels`` and the 18 body points read from it."""
    height, width = pixels.shape[:2]
    pose = _pose_graph().process(pixels)
    if pose.pose_landmarks is None:
        raise InvalidInputError("person_photo", "no person found in the photo")
    body = _body_points(pose.pose_landmarks.landmark, width, height)
    if not any(score > 0 for _, _, score in body):
        raise InvalidInputError("person_photo", "no person found in the photo")
    return pose, body


def check_pose_usable(person: PersonAnalysis, category: str) -> None:
    """Refuse a pose that lacks the keypoints a ``category`` garment is fitted to.

    Tops (upper, outer) and dresses need both shoulders, bottoms (lower) both hips.
    """
    if category not in _NEEDED_PARTS:
        raise InvalidInputError("category", f"unknown garment category {category!r}")
    needed = _NEEDED_PARTS[category]
    missing = [part for part in needed if person.point(part, MIN_VISIBILITY) is None]
    if missing:
        raise InvalidInputError(
            "person_photo",
            "no usable pose: shoulders and hips must be visible "
            f"(a {category} garment needs {_needed_name(needed)}; "
            f"not found: {', '.join(_part_name(part) for part in missing)})",
        )


def person_from_keypoints(
    body: Sequence[Sequence[float]], width: int, height: int
) -> PersonAnalysis:
    """A person analysis from 18 (x, y, score) points in BODY_PARTS order, without a photo.

    Used for pose presets: no hands, face or silhouette. A score of 0 marks a missing point.
    """
    if width < 1 or height < 1:
        raise InvalidInputError("size", f"width and height must be positive, got {width}×{height}")
    if len(body) != len(BODY_PARTS):
        raise InvalidInputError("body", f"expected {len(BODY_PARTS)} points, got {len(body)}")
    points = []
    for name, point in zip(BODY_PARTS, body, strict=True):
        if len(point) != 3 or not 0.0 <= point[2] <= 1.0:
            raise InvalidInputError("body", f"{name}: expected (x, y, score in [0, 1])")
        points.append((float(point[0]), float(point[1]), float(point[2])) if point[2] else MISSING)
    return PersonAnalysis(width=width, height=height, body=tuple(points))


def render_openpose(
    person: PersonAnalysis, *, hands: bool = True, face: bool = True
) -> Image.Image:
    """The OpenPose ControlNet map of ``person``: RGB, the person's size, skeleton on black.

    Drawn by controlnet_aux's own code at its detect resolution, then resized, as its
    ``OpenposeDetector`` does, so the map looks like the ones the ControlNets were trained on.
    """
    # Imported here: controlnet_aux takes seconds to import and pulls in torch.
    import cv2
    from controlnet_aux.open_pose import PoseResult, draw_poses
    from controlnet_aux.open_pose.body import BodyResult, Keypoint

    def body_keypoint(point: Point):
        x, y, score = point
        return Keypoint(x / person.width, y / person.height, score) if score > 0 else None

    def detail_keypoints(points: tuple[Point, ...]):
        # controlnet_aux marks a missing hand or face point with negative coordinates.
        return [
            Keypoint(x / person.width, y / person.height) if score > 0 else Keypoint(-1.0, -1.0)
            for x, y, score in points
        ] or None

    keypoints = [body_keypoint(point) for point in person.body]
    found = [k for k in keypoints if k is not None]
    pose = PoseResult(
        BodyResult(keypoints, sum(k.score for k in found), len(found)),
        left_hand=detail_keypoints(person.left_hand),
        right_hand=detail_keypoints(person.right_hand),
        face=detail_keypoints(person.face),
    )
    scale = OPENPOSE_DRAW_SIDE / min(person.width, person.height)
    draw_width, draw_height = round(person.width * scale), round(person.height * scale)
    canvas = draw_poses([pose], draw_height, draw_width, draw_hand=hands, draw_face=face)
    if canvas.shape[:2] != (person.height, person.width):
        canvas = cv2.resize(canvas, (person.width, person.height), interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(canvas)


def _rgb_pixels(image: Image.Image) -> np.ndarray:
    """``image`` as a contiguous (H, W, 3) uint8 RGB array, after checking it is usable."""
    if not isinstance(image, Image.Image):
        raise InvalidInputError("image", f"expected a PIL image, got {type(image).__name__}")
    if min(image.size) < MIN_SIDE:
        raise InvalidInputError(
            "image",
            f"the photo is {image.width}×{image.height} px; "
            f"its short side must be at least {MIN_SIDE} px",
        )
    check_picture_size(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent pixels keep whatever colour they hide; white is what a viewer shows.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _body_points(landmarks, width: int, height: int) -> tuple[Point, ...]:
    """OpenPose-18 points from MediaPipe's 33 pose landmarks."""
    found: dict[str, Point] = {}
    for name, index in _POSE_LANDMARK.items():
        landmark = landmarks[index]
        x, y = landmark.x * width, landmark.y * height
        score = min(max(landmark.visibility, 0.0), 1.0)
        inside = 0 <= x < width and 0 <= y < height
        found[name] = (x, y, score) if inside and score >= MIN_VISIBILITY else MISSING
    found["neck"] = _midpoint(found["r_shoulder"], found["l_shoulder"])
    return tuple(found[name] for name in BODY_PARTS)


def _midpoint(a: Point, b: Point) -> Point:
    if a[2] == 0 or b[2] == 0:
        return MISSING
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2]))


def _pixel_points(
    landmarks, width: int, height: int, offset: tuple[int, int] = (0, 0)
) -> list[Point]:
    """Normalised landmarks of a ``width``×``height`` crop at ``offset`` as photo pixels.

    Hand and face landmarks carry no per-point score: every point of a detected hand or face
    gets 1 (``_inside`` then drops those outside the photo).
    """
    return [
        (offset[0] + landmark.x * width, offset[1] + landmark.y * height, 1.0)
        for landmark in landmarks
    ]


def _inside(points: list[Point], width: int, height: int) -> tuple[Point, ...]:
    return tuple(p if 0 <= p[0] < width and 0 <= p[1] < height else MISSING for p in points)


def _detect_hands(graph, pixels: np.ndarray) -> list[_DetectedHand]:
    result = graph.process(pixels)
    if not result.multi_hand_landmarks:
        return []
    height, width = pixels.shape[:2]
    hands = []
    for landmarks, handedness in zip(
        result.multi_hand_landmarks, result.multi_handedness, strict=True
    ):
        points = _pixel_points(landmarks.landmark, width, height)
        label = handedness.classification[0]
        # MediaPipe labels hands as if the image were a mirrored selfie; ours are not mirrored,
        # so its "Left" is the person's right hand.
        side = "r" if label.label == "Left" else "l"
        hands.append(
            _DetectedHand(_inside(points, width, height), points[0][:2], side, label.score)
        )
    return hands


def _assign_hands(
    hands: list[_DetectedHand], body: tuple[Point, ...]
) -> dict[str, tuple[Point, ...]]:
    """Which detected hand is the right one and which the left.

    By the nearest arm end (wrist, else elbow) when both arms have one: that does not depend on
    whether the photo is mirrored. Otherwise by MediaPipe's handedness. Two hands take the
    pairing with the lower total cost, so they never land on the same side.
    """
    ends = {side: _arm_end(body, side) for side in "rl"}

    def cost(hand: _DetectedHand, side: str) -> float:
        if ends["r"] and ends["l"]:
            return math.dist(hand.wrist, ends[side])
        return 1 - hand.label_score if side == hand.label_side else hand.label_score

    if not hands:
        return {}
    if len(hands) == 1:
        return {min("rl", key=lambda side: cost(hands[0], side)): hands[0].points}
    first, second = hands[:2]
    if cost(first, "r") + cost(second, "l") <= cost(first, "l") + cost(second, "r"):
        return {"r": first.points, "l": second.points}
    return {"r": second.points, "l": first.points}


def _arm_end(body: tuple[Point, ...], side: str) -> tuple[float, float] | None:
    for part in (f"{side}_wrist", f"{side}_elbow"):
        x, y, score = body[BODY_INDEX[part]]
        if score > 0:
            return (x, y)
    return None


def _detect_face(graph, pixels: np.ndarray, body: tuple[Point, ...]) -> tuple[Point, ...]:
    """The 68 face points, looked for around the head first, then in the whole photo."""
    height, width = pixels.shape[:2]
    boxes = [box for box in (_head_box(body, width, height), (0, 0, width, height)) if box]
    for left, top, right, bottom in boxes:
        result = graph.process(np.ascontiguousarray(pixels[top:bottom, left:right]))
        if result.multi_face_landmarks:
            landmarks = result.multi_face_landmarks[0].landmark
            mesh = _pixel_points(landmarks, right - left, bottom - top, (left, top))
            face = _inside(_face_68(mesh), width, height)
            return face if _is_own_face(face, body) else ()
    return ()


def _is_own_face(face: tuple[Point, ...], body: tuple[Point, ...]) -> bool:
    """Whether the body's nose lies in the face's box (else it is someone else's face)."""
    found = [point for point in face if point[2] > 0]
    x, y, score = body[BODY_INDEX["nose"]]
    if not found or not score:
        return bool(found)  # with no nose to compare, a face near the body is taken as its own
    xs, ys = [point[0] for point in found], [point[1] for point in found]
    return min(xs) <= x <= max(xs) and min(ys) <= y <= max(ys)


def _with_face_parts(body: tuple[Point, ...], face: tuple[Point, ...]) -> tuple[Point, ...]:
    """The body with its nose and eyes moved to the face mesh's nose tip and eye centres.

    The mesh places them better: on the test photos 1-8 px from hand-placed positions where the
    pose model is 2-19 px off. The pose model's scores are kept.
    """
    if not face:
        return body
    from_face = {"nose": face[30], "r_eye": _mean(face[36:42]), "l_eye": _mean(face[42:48])}
    points = list(body)
    for name, (x, y, found) in from_face.items():
        index = BODY_INDEX[name]
        if found and points[index][2] > 0:
            points[index] = (x, y, points[index][2])
    return tuple(points)


def _mean(points: tuple[Point, ...]) -> Point:
    if any(score == 0 for _, _, score in points):
        return MISSING
    return (
        sum(point[0] for point in points) / len(points),
        sum(point[1] for point in points) / len(points),
        1.0,
    )


def _head_box(body: tuple[Point, ...], width: int, height: int) -> tuple[int, int, int, int] | None:
    """A square around the nose, sized by the shoulders; None when they are not all found."""
    nose, right, left = (body[BODY_INDEX[p]] for p in ("nose", "r_shoulder", "l_shoulder"))
    if not (nose[2] and right[2] and left[2]):
        return None
    half = FACE_CROP_SHOULDER_WIDTHS * math.dist(right[:2], left[:2]) / 2
    box = (
        max(0, int(nose[0] - half)),
        max(0, int(nose[1] - half)),
        min(width, int(nose[0] + half) + 1),
        min(height, int(nose[1] + half) + 1),
    )
    return box if box[2] - box[0] >= 16 and box[3] - box[1] >= 16 else None


def _face_68(mesh: list[Point]) -> list[Point]:
    return [_mean(tuple(mesh[vertex] for vertex in vertices)) for vertices in _FACE_68]


def _silhouette(mask: np.ndarray | None, pixels: np.ndarray) -> np.ndarray:
    """The person's silhouette, 255 = person, from the pose graph's mask or selfie segmentation."""
    if mask is None:
        mask = _selfie_mask(pixels)
    return np.where(mask > SILHOUETTE_THRESHOLD, 255, 0).astype(np.uint8)


def _selfie_mask(pixels: np.ndarray) -> np.ndarray:
    return _selfie_graph().process(pixels).segmentation_mask


def _part_name(part: str) -> str:
    side, _, joint = part.partition("_")
    return f"{'right' if side == 'r' else 'left'} {joint}"


def _needed_name(parts: tuple[str, ...]) -> str:
    joints = dict.fromkeys(part.partition("_")[2] for part in parts)
    return " and ".join(f"both {joint}s" for joint in joints)
