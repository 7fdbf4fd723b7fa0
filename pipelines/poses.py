"""Fashion pose presets for model shots, as OpenPose-18 skeletons on a 512×768 canvas.

Coordinates are pixels on the canvas, in ``pipelines.types.BODY_PARTS`` order; a score of 0
marks a point the camera cannot see (the face in a back view, the far ear in a profile).
"""

from dataclasses import dataclass

from .errors import InvalidInputError
from .types import BODY_PARTS, PersonAnalysis

CANVAS = (512, 768)


@dataclass(frozen=True)
class PosePreset:
    name: str
    title: str
    description: str
    body: tuple[tuple[float, float, float], ...]

    def person(self) -> PersonAnalysis:
        """The preset as a person analysis on the preset canvas (no photo, no silhouette)."""
        return PersonAnalysis(width=CANVAS[0], height=CANVAS[1], body=self.body)


def _skeleton(**points: tuple[float, float]) -> tuple[tuple[float, float, float], ...]:
    """Keypoints by name; parts not given are invisible (score 0)."""
    unknown = set(points) - set(BODY_PARTS)
    if unknown:
        raise ValueError(f"unknown body parts: {sorted(unknown)}")
    return tuple((*points[part], 1.0) if part in points else (0.0, 0.0, 0.0) for part in BODY_PARTS)


def _face(nose_x: float, nose_y: float, turn: float = 0.0) -> dict[str, tuple[float, float]]:
    """Eyes and ears around the nose; ``turn`` > 0 turns the head toward the image's right."""
    return {
        "nose": (nose_x, nose_y),
        "r_eye": (nose_x - 12 + 6 * turn, nose_y - 12),
        "l_eye": (nose_x + 12 + 6 * turn, nose_y - 12),
        "r_ear": (nose_x - 28 + 10 * turn, nose_y - 4),
        "l_ear": (nose_x + 28 + 10 * turn, nose_y - 4),
    }


PRESETS: dict[str, PosePreset] = {
    preset.name: preset
    for preset in (
        PosePreset(
            "front_standing",
            "Front, standing",
            "Facing the camera, arms relaxed at the sides, weight on both feet.",
            _skeleton(
                **_face(256, 110),
                neck=(256, 176),
                r_shoulder=(182, 180),
                r_elbow=(164, 284),
                r_wrist=(156, 380),
                l_shoulder=(330, 180),
                l_elbow=(348, 284),
                l_wrist=(356, 380),
                r_hip=(216, 392),
                r_knee=(214, 548),
                r_ankle=(211, 700),
                l_hip=(296, 392),
                l_knee=(298, 548),
                l_ankle=(301, 700),
            ),
        ),
        PosePreset(
            "three_quarter",
            "Three-quarter",
            "Turned a little toward the image's left, the far shoulder narrower.",
            _skeleton(
                **_face(246, 112, turn=-1),
                neck=(252, 178),
                r_shoulder=(190, 184),
                r_elbow=(177, 288),
                r_wrist=(174, 384),
                l_shoulder=(309, 180),
                l_elbow=(327, 282),
                l_wrist=(338, 374),
                r_hip=(227, 394),
                r_knee=(222, 550),
                r_ankle=(216, 702),
                l_hip=(288, 392),
                l_knee=(296, 546),
                l_ankle=(304, 696),
            ),
        ),
        PosePreset(
            "hands_on_hips",
            "Hands on hips",
            "Facing the camera, both hands on the hips, elbows out.",
            _skeleton(
                **_face(256, 110),
                neck=(256, 176),
                r_shoulder=(182, 180),
                r_elbow=(119, 282),
                r_wrist=(198, 372),
                l_shoulder=(330, 180),
                l_elbow=(393, 282),
                l_wrist=(314, 372),
                r_hip=(216, 392),
                r_knee=(208, 548),
                r_ankle=(201, 700),
                l_hip=(296, 392),
                l_knee=(304, 548),
                l_ankle=(311, 700),
            ),
        ),
        PosePreset(
            "walking",
            "Walking",
            "Mid-stride toward the camera, the arms swinging against the legs.",
            _skeleton(
                **_face(256, 108),
                neck=(256, 174),
                r_shoulder=(185, 178),
                r_elbow=(177, 280),
                r_wrist=(198, 368),
                l_shoulder=(327, 178),
                l_elbow=(340, 280),
                l_wrist=(338, 376),
                r_hip=(219, 390),
                r_knee=(230, 540),
                r_ankle=(216, 690),
                l_hip=(293, 390),
                l_knee=(288, 552),
                l_ankle=(314, 712),
            ),
        ),
        PosePreset(
            "seated",
            "Seated",
            "Sitting on a stool facing the camera, knees forward, hands on the thighs.",
            _skeleton(
                **_face(256, 150),
                neck=(256, 216),
                r_shoulder=(182, 220),
                r_elbow=(169, 322),
                r_wrist=(201, 410),
                l_shoulder=(330, 220),
                l_elbow=(343, 322),
                l_wrist=(311, 410),
                r_hip=(216, 432),
                r_knee=(190, 500),
                r_ankle=(187, 690),
                l_hip=(296, 432),
                l_knee=(322, 500),
                l_ankle=(325, 690),
            ),
        ),
        PosePreset(
            "back_view",
            "Back view",
            "Facing away from the camera: the person's right is on the image's right.",
            _skeleton(
                r_ear=(284, 106),
                l_ear=(228, 106),
                neck=(256, 176),
                r_shoulder=(330, 180),
                r_elbow=(348, 284),
                r_wrist=(356, 380),
                l_shoulder=(182, 180),
                l_elbow=(164, 284),
                l_wrist=(156, 380),
                r_hip=(296, 392),
                r_knee=(298, 548),
                r_ankle=(301, 700),
                l_hip=(216, 392),
                l_knee=(214, 548),
                l_ankle=(211, 700),
            ),
        ),
        PosePreset(
            "side_profile",
            "Side profile",
            "Standing in profile, facing the image's right.",
            _skeleton(
                nose=(292, 112),
                l_eye=(282, 100),
                l_ear=(254, 106),
                neck=(256, 178),
                l_shoulder=(256, 184),
                l_elbow=(264, 288),
                l_wrist=(282, 380),
                r_shoulder=(248, 182),
                l_hip=(259, 392),
                l_knee=(269, 548),
                l_ankle=(259, 700),
                r_hip=(251, 390),
                r_knee=(243, 546),
                r_ankle=(238, 698),
            ),
        ),
        PosePreset(
            "arms_crossed",
            "Arms crossed",
            "Facing the camera with the forearms folded across the waist.",
            _skeleton(
                **_face(256, 110),
                neck=(256, 176),
                r_shoulder=(182, 180),
                r_elbow=(164, 296),
                r_wrist=(314, 300),
                l_shoulder=(330, 180),
                l_elbow=(348, 296),
                l_wrist=(198, 306),
                r_hip=(216, 392),
                r_knee=(214, 548),
                r_ankle=(211, 700),
                l_hip=(296, 392),
                l_knee=(298, 548),
                l_ankle=(301, 700),
            ),
        ),
        PosePreset(
            "contrapposto",
            "Relaxed, one hand on hip",
            "Weight on one leg, the right hand on the hip, the left arm relaxed.",
            _skeleton(
                **_face(252, 112, turn=-0.5),
                neck=(254, 178),
                r_shoulder=(179, 186),
                r_elbow=(116, 286),
                r_wrist=(195, 376),
                l_shoulder=(327, 178),
                l_elbow=(346, 282),
                l_wrist=(354, 376),
                r_hip=(211, 398),
                r_knee=(219, 552),
                r_ankle=(230, 702),
                l_hip=(293, 390),
                l_knee=(311, 544),
                l_ankle=(293, 698),
            ),
        ),
    )
}


def get_preset(name: str) -> PosePreset:
    """The preset called ``name``; an unknown name is an error that lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            "pose", f"unknown pose {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
