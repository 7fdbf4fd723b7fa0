"""Body and garment measurements shared by the mask (stage 3) and the warp (stage 4).

Both stages need to know where the garment goes on the person: how wide the shoulders are, which
way is "down" along the torso, how far a sleeve or a trouser leg reaches. Measuring once here keeps
the mask and the warped garment in agreement.
"""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .errors import InvalidInputError
from .types import GarmentAnalysis, PersonAnalysis

# Adult proportions in units of the shoulder-joint distance (the body's "sw", about 38 cm):
# the arm (shoulder → wrist) is about 1.5 sw, the leg (hip joint → ankle) about 2.1 sw.
ARM_LENGTH = 1.5
LEG_LENGTH = 2.1
# A garment laid flat is about 1.2 sw wide at the shoulders (seam to seam, ~46 cm), and its
# waist about 1.0 sw (~38 cm), so garment measurements convert to body ones with these factors.
FLAT_SHOULDERS = 1.2
FLAT_WAIST = 1.0
# Proportions used when a landmark is missing, per category: (length, hem width), both in
# flat shoulder widths (flat waist widths for "lower"), measured on ordinary garments.
DEFAULT_PROPORTIONS = {
    "upper": (1.5, 1.0),
    "outer": (1.8, 1.0),
    "dress": (2.1, 1.5),
    "lower": (2.8, 1.0),
}


def _vec(point) -> np.ndarray:
    return np.asarray(point, dtype=np.float64)


def _unit(vector: np.ndarray) -> np.ndarray:
    length = float(np.hypot(*vector))
    return vector / length if length > 1e-6 else np.array([0.0, 1.0])


@dataclass(frozen=True)
class BodyFrame:
    """Where the person's torso is and how big it is, in the photo's pixels.

    ``down`` points from the neck toward the hips; ``across`` points from the person's left
    shoulder to their right one (the image's left on a front-facing photo).
    """

    r_shoulder: np.ndarray
    l_shoulder: np.ndarray
    r_hip: np.ndarray
    l_hip: np.ndarray
    shoulder_width: float
    down: np.ndarray
    across: np.ndarray
    estimated: bool  # shoulders or hips were outside the photo and are extrapolated

    @property
    def neck(self) -> np.ndarray:
        return (self.r_shoulder + self.l_shoulder) / 2

    @property
    def mid_hip(self) -> np.ndarray:
        return (self.r_hip + self.l_hip) / 2


def _down_from(across: np.ndarray) -> np.ndarray:
    """The unit vector perpendicular to ``across`` that points down the image."""
    down = np.array([across[1], -across[0]])
    return down if down[1] >= 0 else -down


# Where the hip joints sit relative to the shoulders on an upright adult: 1.37 sw below them,
# 0.5 sw apart. Used only for the joints a photo cuts off.
HIP_DROP, HIP_SPREAD = 1.37, 0.5
# The shoulder width assumed for scale is at least this fraction of what the torso's length says.
PROFILE_MIN_WIDTH = 0.75


def body_frame(person: PersonAnalysis) -> BodyFrame:
    """Measure the torso; a shoulder or hip pair cut off by the frame is extrapolated."""
    shoulders = person.point("r_shoulder"), person.point("l_shoulder")
    hips = person.point("r_hip"), person.point("l_hip")
    have_shoulders, have_hips = None not in shoulders, None not in hips
    if not have_shoulders and not have_hips:
        raise InvalidInputError("person_photo", "no usable pose: shoulders or hips must be visible")
    if have_shoulders:
        r_sh, l_sh = _vec(shoulders[0]), _vec(shoulders[1])
        width = float(np.hypot(*(r_sh - l_sh)))
    else:
        r_hip, l_hip = _vec(hips[0]), _vec(hips[1])
        width = float(np.hypot(*(r_hip - l_hip))) / HIP_SPREAD
    if have_shoulders and have_hips:
        # Turned sideways, the shoulders look narrow, but the torso keeps its length: the body's
        # scale is never less than the torso's length says.
        torso = float(np.hypot(*((_vec(hips[0]) + _vec(hips[1]) - r_sh - l_sh) / 2)))
        width = max(width, PROFILE_MIN_WIDTH * torso / HIP_DROP)
    if width < 8:
        raise InvalidInputError("person_photo", "the person is too small in the photo")
    across = _unit(r_sh - l_sh) if have_shoulders else _unit(r_hip - l_hip)
    if have_shoulders and have_hips:
        r_hip, l_hip = _vec(hips[0]), _vec(hips[1])
        down = _unit((r_hip + l_hip) / 2 - (r_sh + l_sh) / 2)
    elif have_shoulders:
        down = _down_from(across)
        mid_hip = (r_sh + l_sh) / 2 + down * HIP_DROP * width
        r_hip = mid_hip + across * HIP_SPREAD / 2 * width
        l_hip = mid_hip - across * HIP_SPREAD / 2 * width
    else:
        down = _down_from(across)
        neck = (r_hip + l_hip) / 2 - down * HIP_DROP * width
        r_sh, l_sh = neck + across * width / 2, neck - across * width / 2
    return BodyFrame(
        r_shoulder=r_sh,
        l_shoulder=l_sh,
        r_hip=r_hip,
        l_hip=l_hip,
        shoulder_width=width,
        down=down,
        across=across,
        estimated=not (have_shoulders and have_hips),
    )


def limb_chain(person: PersonAnalysis, frame: BodyFrame, side: str, kind: str) -> list[np.ndarray]:
    """Shoulder→elbow→wrist (``kind="arm"``) or hip→knee→ankle (``"leg"``) of ``side`` ("r"/"l").

    Joints the photo lacks are extrapolated straight down from the last one found.
    """
    joints = ("shoulder", "elbow", "wrist") if kind == "arm" else ("hip", "knee", "ankle")
    start = getattr(frame, f"{side}_{joints[0]}")
    outward = frame.across if side == "r" else -frame.across
    spread = 0.12 if kind == "arm" else 0.02
    step = (0.95 if kind == "arm" else 1.35) * frame.shoulder_width
    chain = [start]
    for joint in joints[1:]:
        found = person.point(f"{side}_{joint}")
        guess = chain[-1] + (frame.down + outward * spread) * step
        chain.append(np.asarray(found, dtype=np.float64) if found is not None else guess)
    return chain


def chain_prefix(chain: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """The first ``fraction`` (0–1) of the polyline ``chain``, by length, as a polyline."""
    segments = list(pairwise(chain))
    lengths = [float(np.hypot(*(b - a))) for a, b in segments]
    remaining = max(0.0, fraction) * sum(lengths)
    prefix = [chain[0]]
    for (a, b), length in zip(segments, lengths, strict=True):
        if remaining <= length:
            prefix.append(a + (b - a) * (remaining / max(length, 1e-6)))
            return prefix
        prefix.append(b)
        remaining -= length
    return prefix


@dataclass(frozen=True)
class GarmentFit:
    """How far the garment reaches on a body, read from its product shot's landmarks.

    ``length`` and ``hem_width`` are in flat shoulder widths for tops and dresses, in flat waist
    widths for bottoms (see FLAT_SHOULDERS, FLAT_WAIST). A strap dress's straps are closer than
    shoulders, so for dresses the bodice's width stands for the shoulder width. ``sleeve`` is
    the fraction of the arm (shoulder → wrist) a sleeve covers: 0 for sleeveless, about 0.4 for
    a tee, 1 for long sleeves. ``legs`` is True for trousers and shorts, False for skirts.
    """

    category: str
    length: float
    hem_width: float
    sleeve: float
    legs: bool
    reference_width: float = 0.0  # the garment's width behind "1.0" above, in its shot's pixels


def _distance(a, b) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def garment_fit(garment: GarmentAnalysis | None, category: str) -> GarmentFit:
    """Proportions of ``garment`` (defaults for its category where landmarks are missing)."""
    length, hem_width = DEFAULT_PROPORTIONS[category]
    default_sleeve = {"upper": 0.4, "outer": 1.0, "dress": 0.0, "lower": 0.0}[category]
    if garment is None:
        return GarmentFit(category, length, hem_width, default_sleeve, legs=category == "lower")
    marks = garment.landmarks
    top = ("r_waist", "l_waist") if category == "lower" else ("r_shoulder", "l_shoulder")
    width = 0.0
    if all(name in marks for name in top):
        width = _distance(marks[top[0]], marks[top[1]])
        if category == "dress":
            width = max(width, _bodice_width(garment, marks))
        if width > 1 and "r_hem" in marks and "l_hem" in marks:
            top_y = (marks[top[0]][1] + marks[top[1]][1]) / 2
            hem_y = (marks["r_hem"][1] + marks["l_hem"][1]) / 2
            length = max(0.3, (hem_y - top_y) / width)
            hem_width = _distance(marks["r_hem"], marks["l_hem"]) / width
        sleeves = [
            _distance(marks[f"{side}_shoulder"], marks[f"{side}_sleeve_end"]) / width
            for side in ("r", "l")
            if f"{side}_sleeve_end" in marks and f"{side}_shoulder" in marks
        ]
        if width > 1 and category != "lower":
            reach = max(sleeves) * FLAT_SHOULDERS if sleeves else 0.0
            default_sleeve = min(1.0, reach / ARM_LENGTH)
    return GarmentFit(
        category,
        length,
        hem_width,
        default_sleeve,
        legs=category == "lower" and "crotch" in marks,
        reference_width=width,
    )


def _bodice_width(garment: GarmentAnalysis, marks) -> float:
    """The widest row of a dress's top third (its bust), in the shot's pixels; 0 if unknown."""
    if garment.mask is None or "r_hem" not in marks:
        return 0.0
    mask = np.asarray(garment.mask) > 127
    top = int((marks["r_shoulder"][1] + marks["l_shoulder"][1]) / 2)
    bottom = int(top + 0.3 * ((marks["r_hem"][1] + marks["l_hem"][1]) / 2 - top))
    widths = [np.ptp(np.flatnonzero(row)) for row in mask[max(top, 0) : bottom] if row.any()]
    return float(max(widths, default=0))


def chain_suffix(chain: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """The polyline ``chain`` from ``fraction`` (0–1) of its length to its end."""
    segments = list(pairwise(chain))
    lengths = [float(np.hypot(*(b - a))) for a, b in segments]
    remaining = min(1.0, max(0.0, fraction)) * sum(lengths)
    for index, ((a, b), length) in enumerate(zip(segments, lengths, strict=True)):
        if remaining < length or index == len(segments) - 1:
            start = a + (b - a) * (min(remaining, length) / max(length, 1e-6))
            return [start, *chain[index + 1 :]]
        remaining -= length
    return [chain[-1]]


# A limb's half-width is looked for up to this many shoulder widths from its axis; arms measure
# 0.1-0.2 sw, so farther means the limb lies over the body and its edge cannot be seen.
LIMB_HALF_WIDTH_MAX = 0.3
LIMB_HALF_WIDTH_DEFAULT = 0.13


def limb_half_width(
    silhouette: np.ndarray | None,
    chain: list[np.ndarray],
    sw: float,
    default: float = LIMB_HALF_WIDTH_DEFAULT,
) -> float:
    """Half the width of the limb along ``chain`` as the silhouette shows it, in pixels.

    At points along the limb the silhouette is followed across it both ways; the nearer edge
    is the limb's own (the other side may run into the torso). Where no edge is near (a forearm
    lying over the chest), or without a silhouette, ``default`` shoulder widths are assumed (an
    average arm's half-width unless told).
    """
    default *= sw
    if silhouette is None:
        return default
    height, width = silhouette.shape
    reach = max(2, int(LIMB_HALF_WIDTH_MAX * sw))
    steps = np.arange(1, reach + 1, dtype=np.float64)
    found = []
    for a, b in pairwise(chain):
        axis = b - a
        length = float(np.hypot(*axis))
        if length < 1:
            continue
        normal = np.array([-axis[1], axis[0]]) / length
        for t in (0.3, 0.5, 0.7):
            centre = a + axis * t
            sides = []
            for sign in (1, -1):
                xs = np.round(centre[0] + sign * normal[0] * steps).astype(int)
                ys = np.round(centre[1] + sign * normal[1] * steps).astype(int)
                inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
                body = np.zeros(len(steps), bool)
                body[inside] = silhouette[ys[inside], xs[inside]] > 127
                outside = np.flatnonzero(~body)
                if len(outside):
                    sides.append(float(steps[outside[0]]))
            if sides:
                found.append(min(sides))
    if not found:
        return default
    return float(np.clip(np.median(found), 0.07 * sw, LIMB_HALF_WIDTH_MAX * sw))
