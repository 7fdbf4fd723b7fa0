"""Stage 3: the category-aware try-on mask — where the new garment may be painted.

The recipe follows the published ones (OOTDiffusion/IDM-VTON's ``get_mask_location``, CatVTON's
AutoMasker): a torso polygon from the shoulders and hips, arm or leg strokes sized to the *new*
garment, intersected with the dilated silhouette; the face and hands are hard-protected and the
edge is feathered. The person's current garment is found by colour region-growing from the torso
and the part the new garment replaces is added, so long old sleeves under a new short-sleeved top
are repainted as arms instead of showing through.
"""

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .geometry import (
    FLAT_SHOULDERS,
    FLAT_WAIST,
    LEG_LENGTH,
    BodyFrame,
    GarmentFit,
    body_frame,
    chain_prefix,
    garment_fit,
    limb_chain,
)
from .types import CATEGORIES, GarmentAnalysis, PersonAnalysis

# The old-garment colour search runs at this long side: plenty for a region, and fast.
REGION_WORK_SIDE = 256
# Largest colour difference (OpenCV 8-bit Lab units) still counted as the same garment.
REGION_COLOUR_TOLERANCE = 22.0
# The natural waist is about 0.3 sw above the hip joints.
WAIST_ABOVE_HIPS = 0.3


@dataclass(frozen=True, eq=False)
class TryOnMask:
    """The mask and what it was made of, all the photo's size.

    ``mask`` is the feathered mask used for compositing and inpainting (255 = repaint);
    ``hard`` its unfeathered area, ``protected`` the face and hands (always 0 in ``mask``),
    ``old_garment`` the person's current garment as found in the photo, ``limbs`` the arms and
    legs (whole length, whatever the garment covers) outside the torso.
    """

    mask: Image.Image
    hard: np.ndarray
    protected: np.ndarray
    old_garment: np.ndarray
    limbs: np.ndarray
    fit: GarmentFit
    frame: BodyFrame


def _pts(points) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64)).astype(np.int32)


def _fill(canvas: np.ndarray, polygon) -> None:
    cv2.fillPoly(canvas, [_pts(polygon)], 1)


def _stroke(canvas: np.ndarray, chain: list[np.ndarray], coverage: float, thickness: float):
    """Draw the first ``coverage`` (0–1) of the polyline ``chain``."""
    if coverage <= 0:
        return
    for a, b in pairwise(chain_prefix(chain, coverage)):
        cv2.line(canvas, tuple(_pts(a)), tuple(_pts(b)), 1, max(1, int(thickness)), cv2.LINE_8)


def _upper_region(canvas, person, frame: BodyFrame, fit: GarmentFit, widen: float) -> None:
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    hem = frame.neck + down * fit.length * FLAT_SHOULDERS * sw
    hips_half = float(np.hypot(*(frame.r_hip - frame.l_hip))) * 0.8 + 0.08 * sw
    hem_half = max(fit.hem_width * FLAT_SHOULDERS * sw / 2 * 0.8, hips_half) + widen * sw
    _fill(
        canvas,
        [
            frame.r_shoulder + across * (0.1 + widen) * sw - down * 0.1 * sw,
            frame.r_shoulder + across * (0.12 + widen) * sw + down * 0.45 * sw,
            hem + across * hem_half,
            hem - across * hem_half,
            frame.l_shoulder - across * (0.12 + widen) * sw + down * 0.45 * sw,
            frame.l_shoulder - across * (0.1 + widen) * sw - down * 0.1 * sw,
            frame.neck + down * 0.12 * sw,
        ],
    )
    for side in ("r", "l"):
        _stroke(canvas, limb_chain(person, frame, side, "arm"), fit.sleeve, (0.38 + widen) * sw)


def _lower_region(canvas, person, frame: BodyFrame, fit: GarmentFit) -> None:
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    waist = frame.mid_hip - down * WAIST_ABOVE_HIPS * sw
    waist_half = 0.42 * sw
    # How far below the hip joints the garment reaches, as a fraction of the leg.
    reach = fit.length * FLAT_WAIST - WAIST_ABOVE_HIPS
    coverage = float(np.clip(reach / LEG_LENGTH, 0.15, 1.0))
    if fit.legs:
        _fill(
            canvas,
            [
                waist + across * waist_half,
                waist - across * waist_half,
                frame.l_hip - across * 0.25 * sw + down * 0.3 * sw,
                frame.r_hip + across * 0.25 * sw + down * 0.3 * sw,
            ],
        )
        for side in ("r", "l"):
            _stroke(canvas, limb_chain(person, frame, side, "leg"), coverage, 0.42 * sw)
    else:
        hem = frame.mid_hip + down * coverage * LEG_LENGTH * sw
        hem_half = max(fit.hem_width * waist_half, waist_half * 1.1)
        _fill(
            canvas,
            [
                waist + across * waist_half,
                waist - across * waist_half,
                hem - across * hem_half,
                hem + across * hem_half,
            ],
        )


def _limbs(shape, person, frame: BodyFrame, category: str) -> np.ndarray:
    """Arms (tops, dresses) or legs (bottoms), shoulder or hip to the end, off the torso."""
    canvas = np.zeros(shape, np.uint8)
    kind = "leg" if category == "lower" else "arm"
    for side in ("r", "l"):
        _stroke(canvas, limb_chain(person, frame, side, kind), 1.0, 0.45 * frame.shoulder_width)
    torso = np.zeros(shape, np.uint8)
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    _fill(
        torso,
        [
            frame.r_shoulder + down * 0.3 * sw,
            frame.l_shoulder + down * 0.3 * sw,
            frame.l_hip - across * 0.2 * sw,
            frame.r_hip + across * 0.2 * sw,
        ],
    )
    return (canvas > 0) & (torso == 0)


def _garment_region(shape, person, frame, fit) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    if fit.category == "lower":
        _lower_region(canvas, person, frame, fit)
    else:
        _upper_region(canvas, person, frame, fit, widen=0.08 if fit.category == "outer" else 0.0)
    return canvas.astype(bool)


def _along_body(shape, frame: BodyFrame, origin: np.ndarray) -> np.ndarray:
    """Each pixel's signed distance from ``origin`` along the torso's "down" direction."""
    height, width = shape
    xs = np.arange(width, dtype=np.float32)[None, :] - np.float32(origin[0])
    ys = np.arange(height, dtype=np.float32)[:, None] - np.float32(origin[1])
    return xs * np.float32(frame.down[0]) + ys * np.float32(frame.down[1])


def _zone(shape, frame: BodyFrame, fit: GarmentFit) -> np.ndarray:
    """The band along the body where the old garment is replaced by the new one's category."""
    sw = frame.shoulder_width
    if fit.category == "lower":
        return _along_body(shape, frame, frame.mid_hip) >= -0.45 * sw
    along = _along_body(shape, frame, frame.neck)
    # Down to the new garment's hem (the same length the garment region uses) or just below
    # the hips, whichever is lower, with a margin.
    hips = float(np.dot(frame.mid_hip - frame.neck, frame.down))
    bottom = max(fit.length * FLAT_SHOULDERS * sw, hips + 0.2 * sw) + 0.2 * sw
    return (along >= -0.25 * sw) & (along <= bottom)


def _seed_points(frame: BodyFrame, category: str) -> list[np.ndarray]:
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    if category == "lower":
        bases = [frame.mid_hip + down * 0.25 * sw]
        bases += [hip + down * 0.6 * sw for hip in (frame.r_hip, frame.l_hip)]
        return bases
    return [
        frame.neck + down * t * sw + across * s * sw
        for t in (0.45, 0.75, 1.05)
        for s in (-0.18, 0.0, 0.18)
    ]


def _old_garment(photo: np.ndarray, frame: BodyFrame, fit: GarmentFit, allowed: np.ndarray):
    """The person's current garment: pixels of the torso's colours connected to the torso."""
    height, width = allowed.shape
    scale = min(1.0, REGION_WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(cv2.GaussianBlur(small, (5, 5), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
    allowed_small = cv2.resize(allowed.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    seeds = []
    for point in _seed_points(frame, fit.category):
        x, y = (point * scale).round().astype(int)
        if 0 <= x < size[0] and 0 <= y < size[1] and allowed_small[y, x]:
            seeds.append((x, y, lab[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].reshape(-1, 3)))
    if not seeds:
        return np.zeros_like(allowed)
    close = np.zeros(lab.shape[:2], bool)
    for colour in {tuple(np.median(patch, axis=0).round()) for _, _, patch in seeds}:
        squared = ((lab - np.asarray(colour, np.float32)) ** 2).sum(axis=2)
        close |= squared < REGION_COLOUR_TOLERANCE**2
    candidate = (close & allowed_small.astype(bool)).astype(np.uint8)
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(candidate)
    seeded = {labels[y, x] for x, y, _ in seeds if candidate[y, x]}
    region = np.isin(labels, list(seeded - {0}))
    return cv2.resize(region.astype(np.uint8), (width, height), cv2.INTER_NEAREST).astype(bool)


def _protected(shape, person: PersonAnalysis, frame: BodyFrame) -> np.ndarray:
    """Face and hands: never repainted."""
    canvas = np.zeros(shape, np.uint8)
    sw = frame.shoulder_width
    face = [(x, y) for x, y, score in person.face if score > 0]
    head = [person.point(name) for name in ("nose", "r_eye", "l_eye", "r_ear", "l_ear")]
    head = [point for point in head if point is not None]
    if len(face) >= 3:
        cv2.fillConvexPoly(canvas, cv2.convexHull(_pts(face)), 1)
    elif head:
        centre = np.mean(head, axis=0)
        cv2.ellipse(canvas, tuple(_pts(centre)), (int(0.3 * sw), int(0.38 * sw)), 0, 0, 360, 1, -1)
    for side, hand in (("r", person.right_hand), ("l", person.left_hand)):
        points = [(x, y) for x, y, score in hand if score > 0]
        if len(points) >= 3:
            cv2.fillConvexPoly(canvas, cv2.convexHull(_pts(points)), 1)
            continue
        wrist, elbow = person.point(f"{side}_wrist"), person.point(f"{side}_elbow")
        if wrist is not None and elbow is not None:
            direction = np.subtract(wrist, elbow)
            centre = np.asarray(wrist) + direction / max(np.hypot(*direction), 1e-6) * 0.2 * sw
            cv2.circle(canvas, tuple(_pts(centre)), int(0.2 * sw), 1, -1)
    grow = max(3, int(0.04 * sw)) | 1
    return cv2.dilate(canvas, np.ones((grow, grow), np.uint8)).astype(bool)


def tryon_mask(
    person: PersonAnalysis,
    photo: Image.Image,
    category: str,
    garment: GarmentAnalysis | None = None,
    *,
    mask_blur: float | None = None,
) -> TryOnMask:
    """Where to paint ``garment`` (of ``category``) on the person in ``photo``.

    ``mask_blur`` is the feather's Gaussian sigma in pixels (default: 2.5% of the shoulder
    width). Raises ``InvalidInputError`` for an unknown category or an unusable pose.
    """
    if category not in CATEGORIES:
        raise InvalidInputError("category", f"{category!r} is not one of {', '.join(CATEGORIES)}")
    if photo.size != (person.width, person.height):
        raise InvalidInputError("photo", "the photo's size differs from the analysed person's")
    frame = body_frame(person)
    fit = garment_fit(garment, category)
    shape = (person.height, person.width)
    sw = frame.shoulder_width

    region = _garment_region(shape, person, frame, fit)
    if person.silhouette is not None:
        grow = max(3, int(0.12 * sw)) | 1
        silhouette = (person.silhouette > 127).astype(np.uint8)
        body = cv2.dilate(silhouette, np.ones((grow, grow))).astype(bool)
        # A skirt or a dress flares away from the legs: below the hips it may leave the body.
        if fit.category == "dress" or (fit.category == "lower" and not fit.legs):
            region &= body | (_along_body(shape, frame, frame.mid_hip) > 0)
        else:
            region &= body
        zone = body & _zone(shape, frame, fit)
        old = _old_garment(np.asarray(photo.convert("RGB")), frame, fit, zone)
    else:
        # Without a silhouette (a pose preset) there is no body to bound a colour search.
        old = np.zeros(shape, bool)
    protected = _protected(shape, person, frame)
    hard = (region | old) & ~protected

    sigma = 0.025 * sw if mask_blur is None else float(mask_blur)
    feathered = hard.astype(np.uint8) * 255
    if sigma > 0:
        feathered = cv2.GaussianBlur(feathered, (0, 0), sigma)
    feathered[protected] = 0
    mask = Image.fromarray(feathered, mode="L")
    return TryOnMask(
        mask=mask,
        hard=hard,
        protected=protected,
        old_garment=old,
        limbs=_limbs(shape, person, frame, category),
        fit=fit,
        frame=frame,
    )
