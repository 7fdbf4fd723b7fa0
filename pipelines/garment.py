"""Stage 2: garment analysis — the cut-out, mask, Canny map and landmarks of a product shot.

Two ways to find the garment:

- **classical** (default, no weights): product shots have a studio background, so the background
  is modelled from the picture's border (a smooth colour surface, which also covers gradients and
  vignetting), pixels far from it seed GrabCut, and morphology cleans the result up.
- **sam**: with a segment-anything predictor, SAM is prompted with the classical mask's box; its
  mask is used when it is plausible, else the classical one (and ``method`` says which).

The mask gives the landmarks (rows and columns profiles, per category) that the warp fits to a
body. torch, segment_anything and controlnet_aux are imported only inside the functions that need
them: importing them costs seconds.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from .canny import canny_map
from .errors import InvalidInputError, ModelNotFoundError
from .loading import load_state_dict
from .pictures import check_picture_size
from .types import CATEGORIES, GarmentAnalysis

if TYPE_CHECKING:
    from segment_anything import SamPredictor

# The mask is found at this long side: GrabCut's cost grows with the pixel count, and a 512 px
# mask upscaled with a smooth edge is as good as a full-size one for a garment's outline.
WORK_SIDE = 512
MIN_SIDE = 128
GRABCUT_ITERATIONS = 3
# A garment covers between these fractions of the picture; outside, nothing was separated.
MIN_COVERAGE = 0.003
MAX_COVERAGE = 0.97
# Smallest colour distance (OpenCV 8-bit Lab units) that counts as "not background" on a
# perfectly plain background: low enough for a white garment's shading on a white background.
MIN_DISTANCE = 6.0
# On a noisy background the threshold is this many times the border's 99th percentile distance.
NOISE_FACTOR = 1.5
# Parts smaller than this fraction of the largest part are specks, not garment.
MIN_PART = 0.1
# Enclosed holes that look like background and are at least this fraction of the garment stay
# holes (a gap between trouser legs that touch at the hem); smaller ones are print or noise.
MIN_HOLE = 0.01
PHOTO_ADVICE = (
    "use a product shot of the whole garment on a plain or studio background, with a margin"
)
SAM_SUFFIXES = (".pth", ".pt", ".safetensors")
SAM_MODEL_TYPES = ("vit_h", "vit_l", "vit_b")  # best first: the one find_sam_checkpoint prefers
# The sleeve's far end is the mean of its pixels this close (fraction of the garment's width) to
# its farthest point along the sleeve.
SLEEVE_END_BAND = 0.03
# A torso edge that moves outward by this fraction of the garment's width within a few rows is a
# sleeve joining the torso: the armpit.
ARMPIT_JUMP = 0.05


@dataclass(frozen=True, eq=False)
class _Background:
    """How far each pixel is from the background colour model (OpenCV 8-bit Lab units)."""

    distance: np.ndarray  # (h, w) float32
    threshold: float  # farther than this is probably garment
    border: np.ndarray  # (h, w) bool, the border pixels the model fits: sure background


def analyze_garment(
    image: Image.Image, category: str, *, sam_predictor: "SamPredictor | None" = None
) -> GarmentAnalysis:
    """Cut the garment out of a product shot; return its cut-out, mask, Canny map, landmarks.

    ``category`` is one of ``CATEGORIES``. An RGBA picture with real transparency uses its alpha
    as the mask. Otherwise the classical cut-out runs and, with ``sam_predictor`` (a
    ``segment_anything.SamPredictor``, cached by the caller), SAM is prompted with its box.
    ``method`` of the result is "sam" when SAM's mask was used, else "classical" (also when
    SAM's masks were all implausible, or for an alpha cut-out).
    Raises ``InvalidInputError`` for an unusable picture (too small, no garment found) or a
    category that is unknown or clearly not what the picture shows.
    """
    _check_inputs(image, category)
    rgb, alpha = _rgb_and_alpha(image)
    small = _downscale(rgb)
    background = _background_model(cv2.cvtColor(small, cv2.COLOR_RGB2LAB))
    if alpha is not None:
        mask, method = _clean(_resize_mask(alpha, small.shape[1::-1]), background), "classical"
    else:
        mask, method = _segment(small, rgb, background, sam_predictor)
    _check_coverage(mask)
    _check_category_fit(mask, category)
    return _analysis(rgb, mask, _upscale(mask, image.size), category, method)


def garment_from_mask(image: Image.Image, mask: Image.Image, category: str) -> GarmentAnalysis:
    """The analysis of a product shot from a mask someone painted (255 = garment, the shot's
    size): the same cut-out, Canny map and landmarks ``analyze_garment`` makes from its own.

    Raises ``InvalidInputError`` naming "mask" for a mask of another size or one that is empty
    or covers everything (``check_mask_coverage``).
    """
    if mask.size != image.size:
        raise InvalidInputError(
            "mask", f"must have the product image's size {image.width}×{image.height}"
        )
    full = np.where(np.asarray(mask.convert("L")) >= 128, 255, 0).astype(np.uint8)
    check_mask_coverage(full > 0)
    small = _resize_mask(full > 0, _work_size(*full.shape[:2]))
    return _analysis(np.asarray(image.convert("RGB")), small, full, category, "painted")


def check_mask_coverage(mask: np.ndarray) -> None:
    """Refuse a painted mask (bool, True = garment) that is empty or covers everything."""
    coverage = float(mask.mean())
    if coverage < MIN_COVERAGE:
        raise InvalidInputError(
            "mask", "The mask is empty: paint over the whole garment with the brush."
        )
    if coverage > MAX_COVERAGE:
        raise InvalidInputError(
            "mask", "The mask covers the whole picture: erase the background around the garment."
        )


def _analysis(rgb: np.ndarray, small: np.ndarray, full: np.ndarray, category: str, method: str):
    """Cut-out, Canny map and landmarks from a mask at the working size (``small``, bool) and
    at the shot's size (``full``, 0/255). Landmarks are read at the working size (fast for any
    picture size), then scaled."""
    cutout = _cutout(rgb, full)
    height, width = full.shape
    scale_x, scale_y = width / small.shape[1], height / small.shape[0]
    landmarks = {
        name: ((x + 0.5) * scale_x - 0.5, (y + 0.5) * scale_y - 0.5)
        for name, (x, y) in garment_landmarks(small, category).items()
    }
    return GarmentAnalysis(
        category=category,
        cutout=cutout,
        mask=Image.fromarray(full, "L"),
        canny=canny_map(cutout),
        landmarks=landmarks,
        method=method,
    )


def _segment(
    small: np.ndarray,
    rgb: np.ndarray,
    background: _Background,
    predictor: "SamPredictor | None",
) -> tuple[np.ndarray, str]:
    """The garment's mask at the working size, and the method that found it.

    SAM is prompted with the classical mask's box (the whole picture when the classical cut-out
    found nothing); when SAM's masks are all implausible the classical mask is kept.
    """
    work_size = small.shape[1::-1]
    try:
        classical = _clean(_classical_mask(small, background), background)
    except InvalidInputError:
        if predictor is None:
            raise
        classical = np.zeros(small.shape[:2], bool)
    if predictor is not None:
        sam = _sam_mask(predictor, rgb, _box_of(classical, rgb.shape[1::-1]))
        if sam is not None:
            return _clean(_resize_mask(sam, work_size), background), "sam"
    return classical, "classical"


def _check_inputs(image: Image.Image, category: str) -> None:
    if category not in CATEGORIES:
        raise InvalidInputError(
            "category", f"must be one of {', '.join(CATEGORIES)}, not {category!r}"
        )
    if not isinstance(image, Image.Image):
        raise InvalidInputError("image", f"must be a PIL image, not {type(image).__name__}")
    if min(image.size) < MIN_SIDE:
        raise InvalidInputError(
            "image",
            f"is {image.width}×{image.height} px; the short side must be at least {MIN_SIDE} px",
        )
    check_picture_size(image)


def _rgb_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """The picture as RGB, and its alpha as a mask when it has real transparency."""
    rgb = np.asarray(image.convert("RGB"))
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return rgb, None
    alpha = np.asarray(image.convert("RGBA").getchannel("A")) > 127
    # A fully opaque RGBA file (many exports are) carries no cut-out.
    if not MIN_COVERAGE < alpha.mean() < MAX_COVERAGE:
        return rgb, None
    return rgb, alpha


def _work_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) the analysis works at: the longer side at most WORK_SIDE."""
    scale = min(1.0, WORK_SIDE / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _downscale(rgb: np.ndarray) -> np.ndarray:
    size = _work_size(*rgb.shape[:2])
    if size == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape[::-1] == tuple(size):
        return mask.astype(bool)
    resized = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    return resized > 127


def _background_model(lab: np.ndarray) -> _Background:
    """A smooth colour surface fitted to the border strip, and each pixel's distance from it.

    A quadratic surface per Lab channel follows plain, gradient and vignetted backgrounds; the
    fit is repeated without outliers so a garment touching the border does not drag it.
    """
    height, width = lab.shape[:2]
    strip = max(2, round(0.02 * min(height, width)))
    border = np.zeros((height, width), bool)
    border[:strip], border[-strip:], border[:, :strip], border[:, -strip:] = True, True, True, True
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xs / width, ys / height
    terms = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=-1)
    colours = lab.astype(np.float32)
    samples = border.copy()
    for _ in range(2):
        coefficients, *_ = np.linalg.lstsq(terms[samples], colours[samples], rcond=None)
        distance = np.linalg.norm(colours - terms @ coefficients, axis=2)
        typical = float(np.median(distance[border]))
        samples = border & (distance <= max(3.0 * typical, MIN_DISTANCE))
    # At least half the border is within 3× its median distance, so samples is never empty.
    noise = float(np.percentile(distance[samples], 99))
    threshold = max(MIN_DISTANCE, NOISE_FACTOR * noise)
    return _Background(distance.astype(np.float32), threshold, samples)


def _classical_mask(rgb: np.ndarray, background: _Background) -> np.ndarray:
    """GrabCut seeded by the background model: border = background, far pixels = garment."""
    far = background.distance > background.threshold
    # Isolated far pixels are background noise; the garment is a region.
    far = cv2.morphologyEx(far.astype(np.uint8), cv2.MORPH_OPEN, _disc(3)).astype(bool)
    if far.mean() < MIN_COVERAGE:
        raise InvalidInputError(
            "image", f"no garment found: the picture looks like an empty background; {PHOTO_ADVICE}"
        )
    seeds = np.full(far.shape, cv2.GC_PR_BGD, np.uint8)
    seeds[far] = cv2.GC_PR_FGD
    seeds[background.border & ~far] = cv2.GC_BGD
    # GrabCut seeds its colour models with k-means on OpenCV's RNG: a fixed seed makes the same
    # picture give the same mask every time.
    cv2.setRNGSeed(0)
    background_model = np.zeros((1, 65), np.float64)
    garment_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(
        rgb,
        seeds,
        None,
        background_model,
        garment_model,
        GRABCUT_ITERATIONS,
        cv2.GC_INIT_WITH_MASK,
    )
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


def _disc(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _box_of(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The mask's bounding box in the full picture's pixels, with a small margin (x0, y0, x1, y1).

    An empty mask gives the picture minus the margin: SAM still gets a usable prompt.
    """
    width, height = size
    margin = 0.02 * max(width, height)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.array([margin, margin, width - margin, height - margin])
    scale = np.array([width / mask.shape[1], height / mask.shape[0]] * 2)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) * scale
    box += [-margin, -margin, margin, margin]
    return np.clip(box, 0, [width, height, width, height])


def _sam_mask(predictor: "SamPredictor", rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """SAM's best-scored plausible mask for the box prompt, or None when none is plausible.

    Plausible: not empty, not the whole picture, and mostly inside the box it was asked about.
    """
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(box=box, multimask_output=True)
    x0, y0, x1, y1 = np.round(box).astype(int)
    for index in np.argsort(scores)[::-1]:
        candidate = np.asarray(masks[index], dtype=bool)
        coverage = candidate.mean()
        if not MIN_COVERAGE < coverage < MAX_COVERAGE:
            continue
        inside = candidate[y0:y1, x0:x1].sum() / candidate.sum()
        if inside >= 0.9:
            return candidate
    return None


def _clean(mask: np.ndarray, background: _Background) -> np.ndarray:
    """Morphology, the big parts only, and enclosed holes filled unless they show background."""
    kernel = _disc(max(3, round(0.006 * min(mask.shape)) | 1))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel)
    # Closing bridges cracks in the garment, but must not seal narrow background notches such as
    # the tip of the gap between trouser legs: it only adds pixels unlike the background.
    bridged = (closed > opened) & (background.distance > background.threshold)
    cleaned = (opened > 0) | bridged
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        cleaned.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= MIN_PART * areas.max())
    garment = np.isin(labels, keep)
    return garment | _filled_holes(garment, background)


def _filled_holes(garment: np.ndarray, background: _Background) -> np.ndarray:
    """The enclosed holes of ``garment`` that do not look like background (print, specks)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (~garment).astype(np.uint8), connectivity=4
    )
    # Label 0 is the garment itself; regions touching the border are the surrounding background.
    open_to_border = {0} | set(labels[0]) | set(labels[-1]) | set(labels[:, 0]) | set(labels[:, -1])
    smallest_kept = MIN_HOLE * garment.sum()
    fill = np.zeros(count, bool)
    for label in range(1, count):
        if label in open_to_border:
            continue
        if stats[label, cv2.CC_STAT_AREA] < smallest_kept:
            fill[label] = True
            continue
        shows_background = np.median(background.distance[labels == label]) <= background.threshold
        fill[label] = not shows_background
    return fill[labels]


def _check_coverage(mask: np.ndarray) -> None:
    coverage = float(mask.mean())
    if coverage < MIN_COVERAGE:
        raise InvalidInputError(
            "image", f"no garment found: nothing stands out from the background; {PHOTO_ADVICE}"
        )
    if coverage > MAX_COVERAGE:
        raise InvalidInputError(
            "image",
            f"no garment found: it could not be told apart from the background; {PHOTO_ADVICE}",
        )


def _upscale(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The mask at ``size`` (uint8, 0 or 255) with a smooth, not a staircase, outline."""
    width, height = size
    values = mask.astype(np.float32)
    if mask.shape == (height, width):
        return (values * 255).astype(np.uint8)
    scale = width / mask.shape[1]
    resized = cv2.resize(values, size, interpolation=cv2.INTER_LINEAR)
    smooth = cv2.GaussianBlur(resized, (0, 0), max(0.5, scale / 2))
    return np.where(smooth >= 0.5, 255, 0).astype(np.uint8)


def _cutout(rgb: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The shot with the mask as alpha, its outermost pixel feathered (never grown)."""
    soft = cv2.GaussianBlur(mask, (3, 3), 0)
    alpha = np.minimum(mask, soft)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _check_category_fit(mask: np.ndarray, category: str) -> None:
    """Refuse only clear mismatches, which the outline alone shows.

    A top ("upper") has no legs: no gap open to the hem between two legs. Bottoms laid flat,
    even wide shorts or a circle skirt, are at most about twice as wide as tall (refused beyond
    2.5×), unlike a top with its sleeves spread. Dresses and outerwear are not checked.
    """
    extent = _extent(mask)
    if category == "upper" and _crotch(mask, extent) is not None:
        raise InvalidInputError(
            "category", "the garment does not look like an upper (top): it has legs, like trousers"
        )
    if category == "lower" and extent.width > 2.5 * extent.height:
        raise InvalidInputError(
            "category",
            "the garment does not look like a lower (bottom): it is far wider than tall, "
            "like a top with its sleeves spread",
        )


def garment_landmarks(mask: np.ndarray, category: str) -> dict[str, tuple[float, float]]:
    """Landmarks of a garment's mask (bool array), in its pixels, named as in GarmentAnalysis.

    They are read from rows and columns profiles of the mask. Row by row, the torso is the run of
    garment pixels under the garment's centre (or the runs either side of it where the centre is
    an opening, such as an open jacket's front). Going up from the hem, a torso edge that jumps
    outward is a sleeve joining it: the armpit. The shoulder is the top of the garment straight
    above the torso's edge under the armpit; without sleeves (dress straps, tank tops) it is the
    middle of the top-most parts. A sleeve end is the middle of the sleeve's far end along the
    sleeve's direction, so a long sleeve hanging down ends low.

    Sleeve length reads as ``|shoulder → sleeve_end| / |r_shoulder → l_shoulder|``: about 0.5–0.8
    for a tee's short sleeve, 1.2 or more for a long sleeve (an arm is about 1.25 flat shoulder
    widths, ``geometry.ARM_LENGTH / geometry.FLAT_SHOULDERS``); no sleeve end means sleeveless.
    """
    if not mask.any():
        return {}
    if category == "lower":
        return _lower_landmarks(mask)
    return _top_landmarks(mask)


@dataclass(frozen=True)
class _Extent:
    """The garment's bounding rows and columns and its horizontal centre of mass."""

    top: int
    bottom: int
    left: int
    right: int
    centre: float

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


def _extent(mask: np.ndarray) -> _Extent:
    ys, xs = np.nonzero(mask)
    return _Extent(int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max()), float(xs.mean()))


def _runs(row: np.ndarray) -> np.ndarray:
    """The runs of True in ``row`` as (start, end exclusive) rows of an (n, 2) array."""
    padded = np.concatenate(([0], row.astype(np.int8), [0]))
    return np.flatnonzero(np.diff(padded)).reshape(-1, 2)


def _torso_spans(mask: np.ndarray, extent: _Extent) -> np.ndarray:
    """Per row, the torso's (left, right) columns; -1 where the row has no torso."""
    spans = np.full((mask.shape[0], 2), -1, np.int64)
    centre = extent.centre
    # Slits narrower than this (the tip of a V between straps) do not split the torso.
    narrow = max(2, round(0.01 * extent.width))
    for y in range(extent.top, extent.bottom + 1):
        runs = _runs(mask[y])
        if len(runs) > 1:
            split = np.flatnonzero(runs[1:, 0] - runs[:-1, 1] >= narrow)
            runs = np.stack([runs[np.r_[0, split + 1], 0], runs[np.r_[split, -1], 1]], axis=1)
        inside = runs[(runs[:, 0] <= centre) & (centre < runs[:, 1])]
        if len(inside):
            spans[y] = inside[0][0], inside[0][1] - 1
            continue
        left, right = runs[runs[:, 1] <= centre], runs[runs[:, 0] > centre]
        if len(left) and len(right):
            spans[y] = left[-1][0], right[0][1] - 1
    return spans


def _top_landmarks(mask: np.ndarray) -> dict[str, tuple[float, float]]:
    extent = _extent(mask)
    spans = _torso_spans(mask, extent)
    rows = np.flatnonzero(spans[:, 0] >= 0)
    hem_y = int(rows.max())
    # The corners a little above the last row: the very last row of a hem can be a sliver.
    above = rows[rows <= hem_y - round(0.01 * extent.height)]
    probe = int(above.max()) if len(above) else hem_y
    marks = {
        "r_hem": (float(spans[probe, 0]), float(hem_y)),
        "l_hem": (float(spans[probe, 1]), float(hem_y)),
    }
    fallback = _strap_tops(mask, extent)
    for index, side in enumerate(("r", "l")):
        armpit = _armpit(spans, extent, hem_y, side)
        if armpit is None:
            marks[f"{side}_shoulder"] = fallback[index]
            continue
        side_x, armpit_y = armpit
        shoulder = (float(side_x), float(np.argmax(mask[:, side_x])))
        marks[f"{side}_shoulder"] = shoulder
        end = _sleeve_end(mask, extent, side, shoulder, armpit_y)
        if end is not None:
            marks[f"{side}_sleeve_end"] = end
    marks["neckline"] = _neckline(mask, extent, marks["r_shoulder"], marks["l_shoulder"])
    return marks


def _armpit(spans: np.ndarray, extent: _Extent, hem_y: int, side: str) -> tuple[int, int] | None:
    """(torso edge column, row) under the armpit on ``side``, or None without a sleeve there."""
    column, outward = (0, -1) if side == "r" else (1, 1)
    edge = spans[:, column]
    step = max(2, round(0.01 * extent.height))
    # Sleeves join in the garment's upper half (a tee's armpit is at about a third of its
    # height); below it an outward step is a flared skirt, not a sleeve.
    upper = np.arange(extent.top, min(hem_y - step, extent.top + extent.height // 2) + 1)
    lower = upper + step
    valid = (edge[upper] >= 0) & (edge[lower] >= 0)
    jumps = upper[valid & (outward * (edge[upper] - edge[lower]) > ARMPIT_JUMP * extent.width)]
    if len(jumps) == 0:
        return None
    armpit_y = int(jumps.max()) + step
    # The torso's edge just under the armpit: where the shoulder seam meets the sleeve above it.
    below = edge[armpit_y : min(hem_y, armpit_y + round(0.1 * extent.height)) + 1]
    below = below[below >= 0]
    return int(np.median(below)), armpit_y


def _strap_tops(mask: np.ndarray, extent: _Extent) -> tuple[tuple[float, float], ...]:
    """Shoulders of a sleeveless garment: the outermost top-most parts (straps), or near the top
    corners when the top is one piece (a boat neck)."""
    band = mask[extent.top : extent.top + max(2, round(0.03 * extent.height))].any(axis=0)
    runs = _runs(band)
    if len(runs) >= 2:
        columns = ((runs[0][0] + runs[0][1] - 1) // 2, (runs[-1][0] + runs[-1][1] - 1) // 2)
    else:
        start, end = runs[0][0], runs[0][1] - 1
        inset = round(0.15 * (end - start))
        columns = (start + inset, end - inset)
    return tuple((float(x), float(np.argmax(mask[:, x]))) for x in columns)


def _sleeve_end(
    mask: np.ndarray, extent: _Extent, side: str, shoulder: tuple[float, float], armpit_y: int
) -> tuple[float, float] | None:
    """The middle of the sleeve's far end, or None when the sleeve is only a cap."""
    side_x = int(shoulder[0])
    margin = max(1, round(0.01 * extent.width))
    sleeve = np.zeros_like(mask)
    if side == "r":
        sleeve[:, : max(0, side_x - margin)] = mask[:, : max(0, side_x - margin)]
    else:
        sleeve[:, side_x + margin + 1 :] = mask[:, side_x + margin + 1 :]
    ys, xs = np.nonzero(sleeve)
    if len(xs) < 0.01 * mask.sum():
        return None
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    root = np.array([shoulder[0], (shoulder[1] + armpit_y) / 2])
    direction = points.mean(axis=0) - root
    direction /= max(float(np.hypot(*direction)), 1e-6)
    along = (points - root) @ direction
    far = points[along >= along.max() - SLEEVE_END_BAND * extent.width]
    x, y = far.mean(axis=0)
    return float(x), float(y)


def _neckline(
    mask: np.ndarray,
    extent: _Extent,
    r_shoulder: tuple[float, float],
    l_shoulder: tuple[float, float],
) -> tuple[float, float]:
    """Top-centre of the garment: the bottom of the neck opening when there is one."""
    centre = round((r_shoulder[0] + l_shoulder[0]) / 2)
    columns = mask[:, max(0, centre - 2) : centre + 3]
    tops = [int(np.argmax(column)) for column in columns.T if column.any()]
    shoulders_y = (r_shoulder[1] + l_shoulder[1]) / 2
    # An opening that reaches down the whole front (an open jacket) has no neckline to find.
    if not tops or np.median(tops) > extent.top + 0.5 * extent.height:
        return float(centre), float(shoulders_y)
    return float(centre), float(np.median(tops))


def _lower_landmarks(mask: np.ndarray) -> dict[str, tuple[float, float]]:
    extent = _extent(mask)
    margin = round(0.01 * extent.height)
    waist = np.flatnonzero(mask[min(extent.bottom, extent.top + margin)])
    marks = {
        "r_waist": (float(waist[0]), float(extent.top)),
        "l_waist": (float(waist[-1]), float(extent.top)),
    }
    middle = round(extent.centre)
    for side, half in (("r", mask[:, :middle]), ("l", mask[:, middle:])):
        rows = np.flatnonzero(half.any(axis=1))
        if len(rows) == 0:
            continue
        bottom = int(rows.max())
        columns = np.flatnonzero(half[max(int(rows.min()), bottom - margin)])
        x = columns[0] if side == "r" else middle + columns[-1]
        marks[f"{side}_hem"] = (float(x), float(bottom))
    crotch = _crotch(mask, extent)
    if crotch is not None:
        marks["crotch"] = crotch
    return marks


def _crotch(mask: np.ndarray, extent: _Extent) -> tuple[float, float] | None:
    """The top of the gap between trouser legs, or None when there is no such gap (a skirt).

    The gap is followed up from the hem, re-centred on every row, until garment closes it.
    """
    y = extent.bottom - round(0.01 * extent.height)
    runs = _runs(mask[y])
    gaps = np.stack([runs[:-1, 1], runs[1:, 0]], axis=1) if len(runs) >= 2 else np.empty((0, 2))
    # Legs leave the garment's middle open at the hem; sleeves hanging by a top's body do not.
    middle = gaps[(gaps[:, 0] <= extent.centre) & (extent.centre < gaps[:, 1])]
    if len(middle) == 0:
        return None
    x = int(middle[0].mean())
    while y > extent.top:
        y -= 1
        row = mask[y]
        if row[x]:
            break
        left, right = np.flatnonzero(row[:x]), np.flatnonzero(row[x:])
        if len(left) == 0 or len(right) == 0:
            return None  # the gap opens to the side: not between legs
        x = (int(left[-1]) + 1 + x + int(right[0]) - 1) // 2
    height = extent.bottom - y
    if y <= extent.top + 0.05 * extent.height or height < 0.25 * extent.height:
        return None
    return float(x), float(y + 1)


def find_sam_checkpoint(models_dir: Path) -> Path | None:
    """The SAM checkpoint in ``models_dir / "sams"``, or None when none is installed.

    Only files whose name says the model type (``vit_b``, ``vit_l``, ``vit_h``, as the official
    ``sam_vit_b_01ec64.pth``) with a loadable suffix count; the largest model wins.
    """
    folder = Path(models_dir) / "sams"
    if not folder.is_dir():
        return None
    found = [
        (SAM_MODEL_TYPES.index(model_type), path.name, path)
        for path in folder.iterdir()
        if path.is_file()
        and path.suffix.lower() in SAM_SUFFIXES
        and (model_type := _model_type_in_name(path)) is not None
    ]
    return min(found)[2] if found else None


def _model_type_in_name(path: Path) -> str | None:
    name = path.name.lower().replace("-", "_")
    return next((model_type for model_type in SAM_MODEL_TYPES if model_type in name), None)


def load_sam_predictor(
    checkpoint: Path,
    model_type: str | None = None,
    *,
    models_dir: Path | None = None,
    manifest: Path | None = None,
    device: str = "cpu",
    builder: Callable[[], Any] | None = None,
) -> "SamPredictor":
    """A ``SamPredictor`` for a SAM checkpoint (``.pth``/``.pt`` state dict or ``.safetensors``).

    ``model_type`` (``vit_b``, ``vit_l``, ``vit_h``) defaults to the one the file name says.
    The model is built empty and the weights loaded as plain tensors: pickles that need full
    unpickling (which can run arbitrary code) are refused, and so is a checkpoint that leads
    outside ``models_dir`` or, with a ``manifest``, is not listed there with its sha256.
    ``builder`` replaces ``sam_model_registry[model_type]`` (tests build tiny models with it).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelNotFoundError(f"SAM checkpoint {checkpoint} does not exist")
    if checkpoint.suffix.lower() not in SAM_SUFFIXES:
        raise InvalidInputError(
            "checkpoint", f"{checkpoint.name}: SAM weights must be {', '.join(SAM_SUFFIXES)} files"
        )
    model_type = model_type or _model_type_in_name(checkpoint)
    if model_type not in SAM_MODEL_TYPES:
        raise InvalidInputError(
            "model_type",
            f"{checkpoint.name}: say vit_b, vit_l or vit_h (in the file name or as model_type), "
            f"not {model_type!r}",
        )
    # The safe loader: safetensors, or pickles with weights_only=True, nothing else.
    state = load_state_dict(checkpoint, models_dir=models_dir, manifest=manifest)
    from segment_anything import SamPredictor, sam_model_registry

    model = (builder or sam_model_registry[model_type])()
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise InvalidInputError(
            "checkpoint", f"{checkpoint.name} does not hold SAM {model_type} weights: {reason}"
        ) from error
    model.to(device).eval()
    return SamPredictor(model)
