"""The plain values the pipeline stages pass to each other."""

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# OpenPose-18 body keypoints, in OpenPose's order. "r" is the person's right: on a photo of a
# person facing the camera, the right shoulder is on the image's left.
BODY_PARTS = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
BODY_INDEX = {name: index for index, name in enumerate(BODY_PARTS)}

CATEGORIES = ("upper", "lower", "dress", "outer")

# (x, y, score): pixels in the analysed image, score in [0, 1]; (0, 0, 0) means "not found".
Point = tuple[float, float, float]
MISSING: Point = (0.0, 0.0, 0.0)


@dataclass(frozen=True, eq=False)
class PersonAnalysis:
    """What stage 1 found about the person in a photo."""

    width: int
    height: int
    body: tuple[Point, ...]  # 18 points in BODY_PARTS order
    right_hand: tuple[Point, ...] = ()  # 21 points (OpenPose hand order) or empty
    left_hand: tuple[Point, ...] = ()
    face: tuple[Point, ...] = ()  # 68 points (OpenPose face order) or empty
    silhouette: np.ndarray | None = None  # (height, width) uint8, 255 = person

    def point(self, name: str, min_score: float = 0.3) -> tuple[float, float] | None:
        """The (x, y) of body part ``name``, or None when it was not found confidently."""
        x, y, score = self.body[BODY_INDEX[name]]
        return (x, y) if score >= min_score else None


@dataclass(frozen=True, eq=False)
class GarmentAnalysis:
    """What stage 2 found about a garment's product shot.

    ``landmarks`` are (x, y) pixels in the product shot, named from the *wearer's* side, as the
    body keypoints are: on a front-facing product shot ``r_shoulder`` is on the image's left.
    Names by category (a landmark that cannot be found is left out):

    - upper, outer: neckline, r_shoulder, l_shoulder, r_sleeve_end, l_sleeve_end, r_hem, l_hem
    - dress: neckline, r_shoulder, l_shoulder, r_hem, l_hem (+ sleeve ends when it has sleeves)
    - lower: r_waist, l_waist, r_hem, l_hem (+ crotch for trousers)
    """

    category: str
    cutout: Image.Image  # RGBA, the product shot's size, transparent outside the garment
    mask: Image.Image  # L, 255 = garment
    # RGB Canny map of the cut-out, the product shot's size: what the merchant sees. A try-on's
    # Canny map is drawn from the *warped* garment, so a job's input leaves this out (None).
    canny: Image.Image | None = None
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str = "classical"  # "sam", "classical", or "painted" (a merchant's own mask)
