"""Stage 3: the category-aware try-on mask — where the new garment may be painted.

The recipe follows the published ones (OOTDiffusion/IDM-VTON's ``get_mask_location``, CatVTON's
AutoMasker): a torso polygon from the shoulders and hips, arm or leg strokes sized to the *new*
garment, intersected with the dilated silhouette; the face and hands are hard-protected and the
edge is feathered. The person's current garment is found by colour region-growing from the torso
and the part the new garment replaces is added, so long old sleeves under a new short-sleeved top
are repainted as arms instead of showing through.
"""

from dataclasses import dataclass, replace
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
    chain_suffix,
    garment_fit,
    limb_chain,
    limb_half_width,
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
    ``hard`` its unfeathered area, ``protected`` the face, the hands, and the bare skin and hair
    in front of the garment (always 0 in ``mask``),
    ``old_garment`` the person's current garment as found in the photo. ``front`` (0–255) is
    what stays in front of the new garment — the face, the hands, the arms beyond its sleeves
    and hair over the shoulders — and ``allowed`` (0–255) where the garment may show at all (the
    body, with room for a skirt's flare); the warp multiplies the garment's alpha by both.
    ``feather`` is the mask's Gaussian sigma in pixels.
    """

    mask: Image.Image
    hard: np.ndarray
    protected: np.ndarray
    old_garment: np.ndarray
    front: np.ndarray
    allowed: np.ndarray
    feather: float
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
    # Linear, then any value above 0: the third positional argument of cv2.resize is its output
    # array, so this was linear all along (spelled INTER_NEAREST there); the pictures stay so.
    grown = cv2.resize(region.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    return grown.astype(bool)


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


# Arm pixels this close (OpenCV 8-bit Lab units) to the face's median colour are bare skin.
SKIN_COLOUR_TOLERANCE = 28.0
# The new sleeve's cuff overlaps the bare arm by this fraction of the arm, so no gap shows.
CUFF_OVERLAP = 0.04


def _skin_lab(lab: np.ndarray, protected: np.ndarray, frame: BodyFrame) -> np.ndarray | None:
    """The median Lab colour of the face (the protected area above the shoulders), if seen."""
    ys, xs = np.nonzero(protected)
    above = ys < min(frame.r_shoulder[1], frame.l_shoulder[1])
    if above.sum() < 50:
        return None
    return np.median(lab[ys[above], xs[above]], axis=0)


def _bare_arm_chains(person: PersonAnalysis, frame: BodyFrame, fit: GarmentFit):
    """Per arm, its joints the pose found and the part of them beyond the new garment's sleeve.

    Guessed joints are left out: an arm drawn where the photo has none would cut a hole in the
    garment.
    """
    covered = 0.0 if fit.category == "lower" else fit.sleeve + CUFF_OVERLAP
    for side in ("r", "l"):
        chain = limb_chain(person, frame, side, "arm")
        found = [person.point(f"{side}_{joint}") is not None for joint in ("elbow", "wrist")]
        known = chain[: 1 + found.index(False)] if False in found else chain
        if len(known) < 2 or covered >= 1.0:
            continue
        full = sum(float(np.hypot(*(b - a))) for a, b in pairwise(chain))
        reach = sum(float(np.hypot(*(b - a))) for a, b in pairwise(known))
        start = covered * full / max(reach, 1e-6)
        if start < 1.0:
            yield known, chain_suffix(known, start)


def _front(
    shape, person: PersonAnalysis, frame: BodyFrame, fit: GarmentFit, lab, protected
) -> tuple[np.ndarray, np.ndarray]:
    """What stays in front of the new garment (0–255), and the bare skin part of it (bool).

    The arms beyond the new sleeves: a core along each arm as wide as the silhouette shows the
    arm, widened where the pixels are skin-coloured (a bare forearm across the chest), plus the
    face and the hands.
    """
    sw = frame.shoulder_width
    core = np.zeros(shape, np.uint8)
    wide = np.zeros(shape, np.uint8)
    for arm, bare_part in _bare_arm_chains(person, frame, fit):
        half = limb_half_width(person.silhouette, arm, sw)
        for a, b in pairwise(bare_part):
            cv2.line(core, tuple(_pts(a)), tuple(_pts(b)), 255, max(1, int(2 * half)), cv2.LINE_AA)
            cv2.line(wide, tuple(_pts(a)), tuple(_pts(b)), 1, max(1, int(3.4 * half)), cv2.LINE_8)
    skin = _skin_lab(lab, protected, frame) if lab is not None else None
    bare = np.zeros(shape, bool)
    if skin is not None and wide.any():
        x, y, width, height = cv2.boundingRect(wide)
        window = np.s_[y : y + height, x : x + width]
        distance = np.linalg.norm(lab[window].astype(np.float32) - skin, axis=2)
        near = ((wide[window] > 0) & (distance < SKIN_COLOUR_TOLERANCE)).astype(np.uint8)
        bare[window] = cv2.morphologyEx(near, cv2.MORPH_OPEN, np.ones((3, 3))) > 0
    front = cv2.GaussianBlur(np.maximum(core, bare.astype(np.uint8) * 255), (0, 0), 1.0)
    if person.silhouette is not None:
        # A photo's face and hands; a pose preset's figure is drawn over the garment instead.
        front[protected] = 255
    return front, bare


# A feather wider than this (Gaussian sigma, pixels) is blurred on a smaller copy.
FEATHER_FULL_SIZE_SIGMA = 4.0
# Hair is looked for on a copy this many pixels on its long side.
HAIR_WORK_SIDE = 256
# Hair is pixels this close (OpenCV 8-bit Lab units) to the colour above the eyes.
HAIR_COLOUR_TOLERANCE = 20.0


def _hair(shape, person: PersonAnalysis, frame: BodyFrame, lab, old_garment) -> np.ndarray:
    """Hair that falls over the shoulders and chest: it stays in front of the new garment.

    The hair's colour is read on the silhouette above the eyes; hair is the pixels of that
    colour connected to it, down to a shoulder width below the shoulders. When the hair and
    the old garment look alike (a dark cap over a dark jacket) nothing is taken: the two
    cannot be told apart, and a garment with holes would be worse than hair behind it.
    """
    none = np.zeros(shape, bool)
    eyes = [person.point(name) for name in ("r_eye", "l_eye", "nose")]
    if person.silhouette is None or None in eyes[:2] or not old_garment.any():
        return none
    sw = frame.shoulder_width
    eye_y = min(eyes[0][1], eyes[1][1])
    centre_x = (eyes[0][0] + eyes[1][0]) / 2
    body = person.silhouette > 127
    top = np.zeros(shape, bool)
    y0, y1 = max(0, int(eye_y - 0.5 * sw)), max(0, int(eye_y - 0.18 * sw))
    x0, x1 = max(0, int(centre_x - 0.2 * sw)), int(centre_x + 0.2 * sw)
    top[y0:y1, x0:x1] = True
    top &= body
    if top.sum() < 30:
        return none
    colour = np.median(lab[top].astype(np.float32), axis=0)
    garment = np.median(lab[old_garment].astype(np.float32), axis=0)
    if np.linalg.norm(colour - garment) < 2 * HAIR_COLOUR_TOLERANCE:
        return none
    # Hair is looked for from above the eyes down to a shoulder width below the shoulders,
    # within a shoulder width and a half of the face on either side.
    lowest = int(max(frame.r_shoulder[1], frame.l_shoulder[1]) + 1.0 * sw)
    left, right = max(0, int(centre_x - 1.5 * sw)), int(centre_x + 1.5 * sw)
    window = np.s_[y0 : max(y0, lowest), left:right]
    # Hair is a region: it is found on a copy of at most HAIR_WORK_SIDE pixels.
    area = lab[window]
    height, width = area.shape[:2]
    if height == 0 or width == 0:
        return none
    scale = min(1.0, HAIR_WORK_SIDE / max(height, width))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = cv2.resize(area, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    close = np.linalg.norm(reduced - colour, axis=2) < HAIR_COLOUR_TOLERANCE
    on_body = cv2.resize(body[window].astype(np.uint8), small, interpolation=cv2.INTER_NEAREST)
    candidate = (close & (on_body > 0)).astype(np.uint8)
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(candidate)
    seeds = cv2.resize(top[window].astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
    seeded = set(np.unique(labels[seeds & (candidate > 0)])) - {0}
    found = np.isin(labels, list(seeded)).astype(np.uint8) * 255
    # Back at full size, the edge follows the pixels' own colour again.
    grown = cv2.resize(found, (width, height), interpolation=cv2.INTER_LINEAR) > 64
    hair = np.zeros(shape, bool)
    hair[window] = grown & body[window]
    if grown.any():
        ys, xs = np.nonzero(grown)
        exact = np.linalg.norm(area[ys, xs].astype(np.float32) - colour, axis=1)
        keep = exact < HAIR_COLOUR_TOLERANCE * 1.25
        hair[window][ys[~keep], xs[~keep]] = False
    return hair


def _allowed(shape, person: PersonAnalysis, frame: BodyFrame, fit: GarmentFit) -> np.ndarray:
    """Where the garment may show (0–255): the body a little grown, anti-aliased at its edge;
    below the hips a dress or a skirt may flare beyond it. Everywhere for a pose preset."""
    if person.silhouette is None:
        return np.full(shape, 255, np.uint8)
    grow = max(3, int(0.04 * frame.shoulder_width)) | 1
    body = cv2.dilate((person.silhouette > 127).astype(np.uint8) * 255, np.ones((grow, grow)))
    if fit.category == "dress" or (fit.category == "lower" and not fit.legs):
        body[_along_body(shape, frame, frame.mid_hip) > 0] = 255
    return cv2.GaussianBlur(body, (0, 0), 1.0)


def _feathered(hard: np.ndarray, protected: np.ndarray, sigma: float) -> Image.Image:
    """``hard`` as 0/255 with a Gaussian edge of ``sigma`` pixels, 0 on ``protected``."""
    feathered = hard.astype(np.uint8) * 255
    if sigma > FEATHER_FULL_SIZE_SIGMA:
        # A wide blur is smooth: computed at a fraction of the size, it costs a fraction.
        height, width = hard.shape
        factor = sigma / FEATHER_FULL_SIZE_SIGMA
        small = (max(1, round(width / factor)), max(1, round(height / factor)))
        reduced = cv2.resize(feathered, small, interpolation=cv2.INTER_AREA)
        reduced = cv2.GaussianBlur(reduced, (0, 0), FEATHER_FULL_SIZE_SIGMA)
        blurred = cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)
        # Never less than the hard mask's own inside, never more outside its blur's reach.
        feathered = np.where(hard, np.maximum(blurred, 128), blurred)
    elif sigma > 0:
        feathered = cv2.GaussianBlur(feathered, (0, 0), sigma)
    feathered[protected] = 0
    return Image.fromarray(feathered, mode="L")


def covering(tryon: TryOnMask, warped: Image.Image) -> TryOnMask:
    """``tryon`` with the warped garment's footprint added to its mask, so the preview shows
    the whole garment and a generation repaints everywhere the garment now lies."""
    footprint = np.asarray(warped.getchannel("A")) >= 128
    if not (footprint & ~tryon.hard).any():
        return tryon
    hard = (tryon.hard | footprint) & ~tryon.protected
    return replace(tryon, hard=hard, mask=_feathered(hard, tryon.protected, tryon.feather))


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
    # Skin and hair are read from a photo's colours; a pose preset's canvas has neither.
    lab = (
        cv2.cvtColor(np.asarray(photo.convert("RGB")), cv2.COLOR_RGB2LAB)
        if person.silhouette is not None
        else None
    )
    front, bare = _front(shape, person, frame, fit, lab, protected)
    hair = _hair(shape, person, frame, lab, old)
    front[hair] = 255
    # Bare skin and hair in front of the garment stay, as the face and hands do: a generation
    # repaints only what the garment covers and the old clothes it replaces.
    protected = protected | bare | hair
    hard = (region | old) & ~protected
    sigma = 0.025 * sw if mask_blur is None else float(mask_blur)
    return TryOnMask(
        mask=_feathered(hard, protected, sigma),
        hard=hard,
        protected=protected,
        old_garment=old,
        front=front,
        allowed=_allowed(shape, person, frame, fit),
        feather=sigma,
        fit=fit,
        frame=frame,
    )
