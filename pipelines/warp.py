"""Stage 4: fit the garment's cut-out onto the person and composite the instant preview.

The garment is cut into the parts that move differently on a body, as CP-VTON's and VITON's
part-wise warps do:

- the **body panel** (a top's torso, a dress, a skirt, trousers above the crotch) is bent with a
  thin-plate spline from the garment's landmarks and side edges to points on the person's torso,
  as wide as the body there (or the garment, if it is looser) and as long as the garment is
  relative to the hips;
- each **sleeve** and **trouser leg** is laid along its limb (shoulder → elbow → wrist, hip →
  knee → ankle): every pixel near the limb is read from the garment at the same distance along
  the sleeve and the same fraction across it, so a sleeve bends at the elbow and is as wide as
  the arm the silhouette shows.

The warped garment's alpha is then multiplied by what the mask says may show (the body) and by
what stays in front (face, hands, bare arms): ``pipelines.masks``. The composite carries the
photo's broad light and folds onto the garment as a smooth, bounded brightness field, and keeps
the photo everywhere the new garment does not lie: nothing is painted that is neither.
"""

from itertools import pairwise

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .geometry import (
    FLAT_SHOULDERS,
    FLAT_WAIST,
    HIP_DROP,
    LEG_LENGTH,
    BodyFrame,
    GarmentFit,
    chain_prefix,
    chain_suffix,
    limb_chain,
    limb_half_width,
)
from .masks import WAIST_ABOVE_HIPS, TryOnMask
from .types import GarmentAnalysis, PersonAnalysis

# The backward maps are evaluated on a grid this many pixels apart and interpolated in between:
# they are smooth, so this loses nothing visible. A spline is smoother than a limb's bend.
GRID_STEP = 4
TPS_GRID_STEP = 8
REQUIRED_LANDMARKS = {
    "top": ("r_shoulder", "l_shoulder", "r_hem", "l_hem"),
    "lower": ("r_waist", "l_waist", "r_hem", "l_hem"),
}
# The shoulder seam sits this many shoulder widths above the shoulder joints, at most this far
# from the neck.
SEAM_ABOVE_JOINT = 0.1
SEAM_HALF_WIDTH = 0.56
# Halfway from the shoulder seam to the neck, the shoulder's top is this much higher.
COLLAR_LIFT = 0.04
# The armpits are this many shoulder widths below the neck: above them (straps, a neckline's
# edge) the garment keeps its own width; below, it is at least as wide as the body.
ARMPIT_DROP = 0.4
# A garment worn is at least this much wider than the body under it (fabric has ease).
EASE = 1.04
# Fabric seen from the front is narrower than laid flat: it wraps around the body.
WRAP = 0.85
# A sleeve is this much wider than the arm the silhouette shows, and at most this much.
SLEEVE_EASE, SLEEVE_EASE_MAX = 1.2, 1.7
# At the shoulder (or the hip) a sleeve (or a trouser leg) is only this much wider than the limb.
ROOT_EASE = 1.1
# Trouser legs hang looser on the leg than sleeves on the arm.
LEG_HALF_WIDTH_DEFAULT = 0.2
# The crotch sits about this many shoulder widths below the hip joints.
CROTCH_BELOW_HIPS = 0.3
# How much darker a sleeve's or the torso's sides are than their middle (the body is round).
FORM_SHADING = 0.22
# A blur wider than this (sigma, pixels) runs on a smaller copy.
WIDE_BLUR_SIGMA = 4.0
# Shading is estimated on a copy this many pixels on its long side.
SHADING_WORK_SIDE = 256
# Added to the photo's lightness (OpenCV 8-bit Lab) before taking ratios.
LUMINANCE_OFFSET = 40.0
# Lightness this far (as a ratio) from the cloth around it is print, not a fold.
PRINT_CONTRAST = 0.12
# Bounds of the shading field: the light falloff and the folds, each a factor around 1.
LIGHT_RANGE = (0.78, 1.18)
FOLD_RANGE = (0.86, 1.12)


# --- thin-plate splines --------------------------------------------------------------------------
# A garment magnified by more than this on its way to the picture gets an anti-aliased outline
# (``_smooth_edge``), blurred by this many of the product shot's pixels.
EDGE_SMOOTH_ABOVE = 1.2
EDGE_SMOOTH_SIGMA = 0.7


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, r2 * np.log(r2), 0.0)


def _fit_tps(source: np.ndarray, target: np.ndarray, smoothing: float = 1e-3):
    """Thin-plate spline coefficients mapping ``source`` points to ``target`` points."""
    n = len(source)
    kernel = _tps_kernel(((source[:, None, :] - source[None, :, :]) ** 2).sum(-1))
    kernel += smoothing * np.eye(n)
    affine = np.hstack([np.ones((n, 1)), source])
    system = np.zeros((n + 3, n + 3))
    system[:n, :n], system[:n, n:], system[n:, :n] = kernel, affine, affine.T
    values = np.vstack([target, np.zeros((3, 2))])
    return source, np.linalg.lstsq(system, values, rcond=None)[0]


def _apply_tps(model, points: np.ndarray) -> np.ndarray:
    source, coefficients = model
    n = len(source)
    kernel = _tps_kernel(((points[:, None, :] - source[None, :, :]) ** 2).sum(-1))
    affine = np.hstack([np.ones((len(points), 1)), points])
    return kernel @ coefficients[:n] + affine @ coefficients[n:]


# --- backward maps -------------------------------------------------------------------------------


def _grid(box, step: int = GRID_STEP) -> tuple[np.ndarray, tuple[int, int]]:
    """Photo coordinates of a grid ``step`` pixels apart over ``box`` (x, y, width, height),
    and its shape."""
    left, top, width, height = box
    grid_w, grid_h = width // step + 2, height // step + 2
    ys, xs = np.mgrid[0:grid_h, 0:grid_w] * step
    points = np.stack([xs.ravel() + left, ys.ravel() + top], axis=1).astype(np.float64)
    return points, (grid_h, grid_w)


def _remap(piece, coarse: np.ndarray, box, step: int = GRID_STEP) -> np.ndarray:
    """Read a piece (premultiplied float RGBA and its offset in the garment picture) at the
    coarse map's garment positions, for every pixel of ``box``.

    Premultiplied colour keeps the anti-aliased edge from darkening toward the transparent
    pixels around the garment.
    """
    pixels, offset = piece
    width, height = box[2], box[3]
    grid_h, grid_w = coarse.shape[:2]
    local = (coarse - np.asarray(offset, np.float64)).astype(np.float32)
    full = cv2.resize(local, (grid_w * step, grid_h * step), interpolation=cv2.INTER_LINEAR)
    return cv2.remap(
        pixels,
        full[:height, :width, 0],
        full[:height, :width, 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _warp_tps(part, garment_points, body_points, box) -> np.ndarray:
    """Bend a piece (see ``_piece``) so ``garment_points`` land on ``body_points``."""
    model = _fit_tps(np.asarray(body_points, float), np.asarray(garment_points, float))
    grid, shape = _grid(box, TPS_GRID_STEP)
    return _remap(part, _apply_tps(model, grid).reshape(*shape, 2), box, TPS_GRID_STEP)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.hypot(*vector)), 1e-6)


def _normal(direction: np.ndarray) -> np.ndarray:
    return np.array([-direction[1], direction[0]])


def _along_polyline(points: np.ndarray, polyline: list[np.ndarray]):
    """Each point's arc length along ``polyline`` and signed distance from it.

    The nearest segment wins; the first segment extends backward and the last forward without
    limit, so what lies before the shoulder or past the cuff is still measured.
    """
    best = np.full(len(points), np.inf)
    arc = np.zeros(len(points))
    offset = np.zeros(len(points))
    start = 0.0
    last = len(polyline) - 2
    for index, (a, b) in enumerate(pairwise(polyline)):
        length = max(float(np.hypot(*(b - a))), 1e-6)
        direction = (b - a) / length
        relative = points - a
        u = relative @ direction
        low = -np.inf if index == 0 else 0.0
        high = np.inf if index == last else length
        clamped = np.clip(u, low, high)
        nearest = a + clamped[:, None] * direction
        distance = np.hypot(*(points - nearest).T)
        closer = distance < best
        best[closer] = distance[closer]
        arc[closer] = start + clamped[closer]
        # The distance to the nearest point, on the side of the segment the point lies: past a
        # bend the distance grows around the joint instead of running on along the line.
        side = np.where(relative @ _normal(direction) < 0, -1.0, 1.0)
        offset[closer] = (side * distance)[closer]
        start += length
    return arc, offset


def _warp_along(
    part, garment_axis, garment_half: float, body, box, lead: float = 0.0
) -> np.ndarray:
    """Lay a sleeve or trouser leg (a piece, see ``_piece``) along a limb.

    ``garment_axis`` is (root, end) in the garment picture and ``garment_half`` the part's
    half-width there; ``body`` is (polyline, half-width, half-width at the joint) in the photo,
    the polyline as long as the part will be on the body. A photo pixel at arc length ``s`` and
    offset ``o`` from the polyline reads the garment at the same fraction of the axis and of the
    half-width. Only a tube around the polyline is kept, from ``lead`` pixels before the joint.
    Returns the premultiplied float RGBA of the part of ``box`` around the limb, and that part
    (x, y, width, height); None when the limb lies outside ``box``.
    """
    root, end = (np.asarray(point, float) for point in garment_axis)
    polyline, body_half, root_half = body
    # Only the limb's own surroundings are worth computing.
    box = _around(polyline, body_half + lead + 2, box)
    if box is None:
        return None
    garment_length = max(float(np.hypot(*(end - root))), 1e-6)
    body_length = sum(float(np.hypot(*(b - a))) for a, b in pairwise(polyline))
    direction = (end - root) / garment_length
    grid, shape = _grid(box)
    arc, offset = _along_polyline(grid, polyline)
    along = arc * (garment_length / max(body_length, 1e-6))
    across = offset * (garment_half / max(body_half, 1e-6))
    source = root + along[:, None] * direction + across[:, None] * _normal(direction)
    warped = _remap(part, source.reshape(*shape, 2), box)
    # Only a tube around the limb from its joint on: the corners of a sleeve laid flat (the
    # shoulder seam's end) would stick out once the sleeve hangs; the body panel covers the
    # shoulder itself.
    fields = np.stack([arc, np.abs(offset)], axis=1).reshape(*shape, 2).astype(np.float32)
    size = (shape[1] * GRID_STEP, shape[0] * GRID_STEP)
    fields = cv2.resize(fields, size, interpolation=cv2.INTER_LINEAR)[: box[3], : box[2]]
    arc_full, distance = fields[:, :, 0], fields[:, :, 1]
    # The tube hugs the limb at the joint and opens to its full width a third of the way down
    # (a sleeve hangs from the shoulder); before the joint it closes in a rounded cap.
    opening = np.clip(arc_full / max(0.3 * body_length, 1e-6), 0, 1)
    half = root_half + (body_half - root_half) * opening * opening * (3 - 2 * opening)
    cap = np.clip(-arc_full / max(lead, 1e-6), 0, 1)
    half = half * np.sqrt(1 - np.minimum(cap, 1) ** 2) if lead > 0 else half
    # One pixel of ramp on each edge: anti-aliased, not a staircase.
    inside = np.clip(arc_full + lead + 0.5, 0, 1) * np.clip(half - distance + 0.5, 0, 1)
    # A sleeve is a tube: darker toward its sides, which also sets it off from the torso.
    form = 1.0 - FORM_SHADING * np.clip(distance / max(body_half, 1e-6), 0, 1) ** 2
    warped[:, :, :3] *= (inside * form)[:, :, None]
    warped[:, :, 3] *= inside
    return warped, box


def _around(points, margin: float, box):
    """The part of ``box`` within ``margin`` pixels of the points' bounding box, or None."""
    xs, ys = [point[0] for point in points], [point[1] for point in points]
    left = max(box[0], int(min(xs) - margin))
    top = max(box[1], int(min(ys) - margin))
    right = min(box[0] + box[2], int(max(xs) + margin) + 1)
    bottom = min(box[1] + box[3], int(max(ys) + margin) + 1)
    if right <= left or bottom <= top:
        return None
    return (left, top, right - left, bottom - top)


# --- the garment's parts -------------------------------------------------------------------------


def _part_axis(part: np.ndarray, root_side: str, end: np.ndarray):
    """A sleeve's or leg's axis (root, end) and half-width in the garment picture.

    The root is the middle of the part's pixels nearest the body panel (``root_side``: "left",
    "right" or "top"); the half-width is measured across the axis over the part's length.
    """
    ys, xs = np.nonzero(part)
    if len(xs) == 0:
        return None
    if root_side == "top":
        near = ys <= ys.min() + 2
    elif root_side == "left":
        near = xs <= xs.min() + 2
    else:
        near = xs >= xs.max() - 2
    root = np.array([xs[near].mean(), ys[near].mean()])
    direction = _unit(end - root)
    points = np.stack([xs, ys], axis=1) - root
    along = points @ direction
    length = max(float(np.hypot(*(end - root))), 1.0)
    middle = (along > 0.2 * length) & (along < 0.9 * length)
    across = np.abs(points[middle] @ _normal(direction)) if middle.any() else np.array([1.0])
    return (root, end), max(float(np.percentile(across, 90)), 1.0)


def _top_parts(alpha: np.ndarray, marks) -> dict[str, np.ndarray]:
    """A top's mask split into its body panel and sleeves at the torso's side lines."""
    xs = np.arange(alpha.shape[1])[None, :]
    parts = {}
    panel = alpha.copy()
    for side in ("r", "l"):
        if f"{side}_sleeve_end" not in marks or f"{side}_hem" not in marks:
            continue
        # The torso's side is the outer of the shoulder seam's end and the hem's corner: a
        # strip of the torso left on the sleeve would pull the sleeve's axis down its side.
        shoulder_x, hem_x = marks[f"{side}_shoulder"][0], marks[f"{side}_hem"][0]
        edge = min(shoulder_x, hem_x) if side == "r" else max(shoulder_x, hem_x)
        sleeve = alpha & ((xs < edge) if side == "r" else (xs > edge))
        parts[side] = sleeve
        panel &= ~sleeve
    parts["panel"] = panel
    return parts


def _lower_parts(alpha: np.ndarray, marks) -> dict[str, np.ndarray]:
    """Trousers split into the part above the crotch and the two legs; a skirt is one panel."""
    if "crotch" not in marks:
        return {"panel": alpha}
    crotch_x, crotch_y = marks["crotch"]
    ys, xs = np.mgrid[0 : alpha.shape[0], 0 : alpha.shape[1]]
    below = ys >= crotch_y
    return {
        "panel": alpha & ~below,
        "r": alpha & below & (xs < crotch_x),
        "l": alpha & below & (xs >= crotch_x),
    }


def _side_samples(panel: np.ndarray, marks, top_y: float) -> dict[str, tuple[float, float]]:
    """Points on the body panel's side edges, between its top and its hem, for the spline."""
    hem_y = (marks["r_hem"][1] + marks["l_hem"][1]) / 2
    samples = _collar_samples(panel, marks)
    for fraction in (0.1, 0.2, 0.35, 0.5, 0.65, 0.8):
        y = round(top_y + fraction * (hem_y - top_y))
        columns = np.flatnonzero(panel[min(max(y, 0), panel.shape[0] - 1)])
        if len(columns) < 2:
            continue
        samples[f"r_side_{fraction}"] = (float(columns[0]), float(y))
        samples[f"l_side_{fraction}"] = (float(columns[-1]), float(y))
    return samples


def _collar_samples(panel: np.ndarray, marks) -> dict[str, tuple[float, float]]:
    """The top edge of a top's panel halfway between the neck and each shoulder seam."""
    if "neckline" not in marks:
        return {}
    samples = {}
    centre = marks["neckline"][0]
    for side in ("r", "l"):
        x = round((centre + marks[f"{side}_shoulder"][0]) / 2)
        rows = np.flatnonzero(panel[:, min(max(x, 0), panel.shape[1] - 1)])
        if len(rows):
            samples[f"{side}_collar"] = (float(x), float(rows[0]))
    return samples


# --- where the parts go on the body --------------------------------------------------------------


def _torso_length_factor(frame: BodyFrame) -> float:
    """How long this torso is against the average one (hips found), else 1."""
    if frame.estimated:
        return 1.0
    hips = float(np.dot(frame.mid_hip - frame.neck, frame.down))
    return float(np.clip(hips / (HIP_DROP * frame.shoulder_width), 0.7, 1.3))


def _body_half_width(frame: BodyFrame, along):
    """Half the torso's width ``along`` pixels below the neck: chest, waist, hips, thighs."""
    sw = frame.shoulder_width
    hips_along = float(np.dot(frame.mid_hip - frame.neck, frame.down))
    hips_half = max(0.46 * sw, float(np.hypot(*(frame.r_hip - frame.l_hip))) / 2 + 0.2 * sw)
    stops = [0.0, 0.45 * sw, 0.6 * hips_along, hips_along]
    halves = [0.5 * sw, 0.52 * sw, 0.44 * sw, hips_half]
    return np.interp(along, stops, halves)


def _panel_targets(
    marks, frame: BodyFrame, fit: GarmentFit, top_names, reference: float
) -> dict[str, np.ndarray]:
    """Body points for the body panel's landmarks and side samples.

    Rows map linearly from the top line (shoulder seams, waistband) to the hem, placed on the
    body by the garment's length relative to the hips; each point keeps its side and its
    distance from the garment's centre line, widened to the body's width where the garment is
    narrower (it is worn over the body, not inside it). ``reference`` is the garment's width
    behind ``fit``'s proportions, in the pixels of ``marks``.
    """
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    first, second = (marks[name] for name in top_names)
    centre_x, top_y = (first[0] + second[0]) / 2, (first[1] + second[1]) / 2
    hem_y = (marks["r_hem"][1] + marks["l_hem"][1]) / 2
    if fit.category == "lower":
        scale = FLAT_WAIST * sw / max(reference, 1.0)
        origin = frame.mid_hip - down * WAIST_ABOVE_HIPS * sw
        reach = float(np.clip((fit.length * FLAT_WAIST - WAIST_ABOVE_HIPS) / LEG_LENGTH, 0.1, 1))
        start, span = 0.0, (WAIST_ABOVE_HIPS + reach * LEG_LENGTH) * sw
        neck_offset = float(np.dot(origin - frame.neck, down))
    else:
        scale = FLAT_SHOULDERS * sw / max(reference, 1.0)
        origin = frame.neck
        start = -SEAM_ABOVE_JOINT * sw
        span = fit.length * FLAT_SHOULDERS * sw * _torso_length_factor(frame) - start
        neck_offset = 0.0
    targets = {}
    for name, (x, y) in marks.items():
        along = start + (y - top_y) / max(hem_y - top_y, 1.0) * span
        half = abs(x - centre_x) * scale
        if name in top_names and fit.category != "lower":
            # The shoulder seam sits at the shoulder's tip, whatever the shot's proportions.
            half = min(half, SEAM_HALF_WIDTH * sw)
        below_armpits = along + neck_offset >= ARMPIT_DROP * sw
        if name not in top_names and name != "neckline" and below_armpits:
            body = _body_half_width(frame, along + neck_offset) * EASE
            half = max(half * WRAP, body)
        if name.endswith("collar"):
            # The shoulders slope up to the neck: the collar sits higher than the seams.
            along -= COLLAR_LIFT * sw
        side = 1.0 if x < centre_x else -1.0
        targets[name] = origin + down * along + across * side * half
    return targets


def _sleeve_body(person, frame: BodyFrame, side: str, fit: GarmentFit, kind: str):
    """The polyline a sleeve or trouser leg lies along on the body, and its half-width there."""
    sw = frame.shoulder_width
    chain = limb_chain(person, frame, side, kind)
    if kind == "arm":
        limb_half = limb_half_width(person.silhouette, chain, sw)
        return chain_prefix(chain, max(fit.sleeve, 0.1)), limb_half
    reach = float(np.clip((fit.length * FLAT_WAIST - WAIST_ABOVE_HIPS) / LEG_LENGTH, 0.1, 1.0))
    leg = chain_prefix(chain, reach)
    limb_half = limb_half_width(person.silhouette, chain, sw, LEG_HALF_WIDTH_DEFAULT)
    # The leg part starts at the crotch, a little below the hip joint.
    start = CROTCH_BELOW_HIPS * sw / max(sum(np.hypot(*(b - a)) for a, b in pairwise(leg)), 1.0)
    return chain_suffix(leg, min(start, 0.5)), limb_half


def _working_copy(cutout: Image.Image, marks, on_photo: float):
    """The cut-out shrunk to about the size it will have on the photo (its outline smoothed
    when it will be magnified instead), where the garment is on it (before any smoothing), its
    landmarks, and the factor it was shrunk by.

    A product shot is usually much larger than the garment's footprint on the photo; warping
    the full-size shot would cost time for detail that interpolation throws away.
    """
    first, second = ("r_waist", "l_waist") if "r_waist" in marks else ("r_shoulder", "l_shoulder")
    on_shot = float(np.hypot(*(marks[first] - marks[second])))
    scale = min(1.0, 1.5 * on_photo / max(on_shot, 1.0))
    if scale >= 0.95:
        pixels = np.asarray(cutout.convert("RGBA"))
        inside = pixels[:, :, 3] > 0
        if on_photo / max(on_shot, 1.0) > EDGE_SMOOTH_ABOVE:
            pixels = _smooth_edge(pixels)
        return pixels, inside, marks, 1.0
    size = (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale)))
    small = np.asarray(cutout.convert("RGBA").resize(size, Image.BOX))
    scale = size[0] / cutout.width
    return small, small[:, :, 3] > 0, {name: point * scale for name, point in marks.items()}, scale


def _smooth_edge(rgba: np.ndarray) -> np.ndarray:
    """``rgba`` with its outline anti-aliased: a cut-out's alpha is a hard mask, whose pixel
    stairs a magnifying warp would blow up into visible teeth. The alpha is blurred by
    ``EDGE_SMOOTH_SIGMA`` pixels; the garment's own colours are kept wherever it was, and the
    pixels the blur newly covers take the average colour of the garment next to them."""
    alpha = rgba[:, :, 3].astype(np.float32) / 255.0
    sigma = EDGE_SMOOTH_SIGMA
    blurred = cv2.GaussianBlur(alpha, (0, 0), sigma)
    spread = cv2.GaussianBlur(rgba[:, :, :3].astype(np.float32) * alpha[:, :, None], (0, 0), sigma)
    around = spread / np.maximum(blurred, 1e-6)[:, :, None]
    colour = np.where((alpha > 0)[:, :, None], rgba[:, :, :3], around)
    smoothed = np.empty_like(rgba)
    smoothed[:, :, :3] = np.clip(np.round(colour), 0, 255)
    smoothed[:, :, 3] = np.clip(np.round(blurred * 255), 0, 255)
    return smoothed


def _with_fringe(part: np.ndarray, fringe: np.ndarray) -> np.ndarray:
    """``part`` and the smoothed outline's fringe pixels within two pixels of it."""
    if not fringe.any():
        return part
    near = cv2.dilate(part.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return part | (near & fringe)


def _piece(cutout: np.ndarray, keep: np.ndarray):
    """The part of ``cutout`` inside ``keep``, cropped to it: float RGBA with its colour
    premultiplied by alpha, and the crop's (x, y) offset in the garment picture."""
    x, y, width, height = cv2.boundingRect(keep.astype(np.uint8))
    if width == 0 or height == 0:
        return np.zeros((1, 1, 4), np.float32), (0, 0)
    window = np.s_[y : y + height, x : x + width]
    alpha = np.where(keep[window], cutout[window][:, :, 3], 0).astype(np.float32) / 255.0
    rgba = np.empty((height, width, 4), np.float32)
    rgba[:, :, :3] = cutout[window][:, :, :3] * alpha[:, :, None]
    rgba[:, :, 3] = alpha
    return rgba, (x, y)


def _over(top: np.ndarray, under: np.ndarray) -> np.ndarray:
    """Premultiplied "over"."""
    return top + under * (1.0 - top[:, :, 3:4])


def _work_box(tryon: TryOnMask) -> tuple[int, int, int, int]:
    """(x, y, width, height) worth computing, inside the photo: the mask's area grown by half a
    shoulder width (a garment may reach a little past the mask, which ``covering`` then grows
    to cover it)."""
    x, y, width, height = cv2.boundingRect(np.asarray(tryon.hard, np.uint8))
    margin = int(tryon.frame.shoulder_width * 0.5)
    rows, columns = tryon.hard.shape
    left, top = max(0, x - margin), max(0, y - margin)
    right, bottom = min(columns, x + width + margin), min(rows, y + height + margin)
    return (left, top, max(right - left, 1), max(bottom - top, 1))


def warp_garment(garment: GarmentAnalysis, person: PersonAnalysis, tryon: TryOnMask) -> Image.Image:
    """Fit ``garment``'s cut-out onto the person: RGBA of the photo's size, clear elsewhere.

    The alpha is already limited to where the garment may show (``tryon.allowed``) and kept off
    what stays in front of it (``tryon.front``: face, hands, bare arms).
    """
    marks = {name: np.asarray(point, float) for name, point in garment.landmarks.items()}
    frame, fit = tryon.frame, tryon.fit
    lower = fit.category == "lower"
    missing = [
        name for name in REQUIRED_LANDMARKS["lower" if lower else "top"] if name not in marks
    ]
    if missing:
        raise InvalidInputError(
            "garment", f"the garment's analysis lacks {', '.join(missing)}; re-analyse it"
        )
    top_names = ("r_waist", "l_waist") if lower else ("r_shoulder", "l_shoulder")
    on_photo = (FLAT_WAIST if lower else FLAT_SHOULDERS) * frame.shoulder_width
    cutout, alpha, marks, shrink = _working_copy(garment.cutout, marks, on_photo)
    reference = max(fit.reference_width * shrink, 1.0)
    # The parts and their geometry come from the garment's own outline (``alpha``); a smoothed
    # outline's fringe outside it goes with the part beside it (``_with_fringe``).
    fringe = (cutout[:, :, 3] > 0) & ~alpha
    parts = _lower_parts(alpha, marks) if lower else _top_parts(alpha, marks)
    box = _work_box(tryon)
    panel = (parts["panel"], _with_fringe(parts["panel"], fringe))
    layered = _warp_panel(cutout, panel, marks, tryon, top_names, reference, box)
    for side in ("r", "l"):
        if parts.get(side) is not None and parts[side].any():
            sizes = (on_photo, reference)
            part = (parts[side], _with_fringe(parts[side], fringe))
            placed = _warp_limb_part(cutout, part, marks, side, person, tryon, sizes, box)
            if placed is not None:
                piece, (x, y, width, height) = placed
                window = np.s_[y - box[1] : y - box[1] + height, x - box[0] : x - box[0] + width]
                layered[window] = _over(piece, layered[window])
    return _finished(layered, person, tryon, box)


def _warp_limb_part(cutout, part, marks, side, person, tryon: TryOnMask, sizes, box):
    """A sleeve or trouser leg laid along its limb (see ``_warp_along``), or None when the part
    has no axis or lies outside ``box``. ``part`` is its mask and the pixels it carries (the mask
    with its outline's fringe); ``sizes`` is the garment's reference width on the photo and in
    the working copy's pixels."""
    part, carried = part
    frame, fit = tryon.frame, tryon.fit
    lower = fit.category == "lower"
    axis = _limb_part_axis(part, marks, side, lower)
    if axis is None:
        return None
    (root, end), garment_half = axis
    polyline, limb_half = _sleeve_body(person, frame, side, fit, "leg" if lower else "arm")
    # Sleeves hang a little looser than the arm, up to their own width on the product shot.
    on_photo, reference = sizes
    body_half = limb_half * (1.15 if lower else SLEEVE_EASE)
    own_half = garment_half * on_photo / reference
    body_half = max(body_half, min(own_half, limb_half * SLEEVE_EASE_MAX))
    lead = 0.0 if lower else SEAM_ABOVE_JOINT * frame.shoulder_width
    body = (polyline, body_half, min(body_half, limb_half * ROOT_EASE))
    return _warp_along(_piece(cutout, carried), (root, end), garment_half, body, box, lead)


def _warp_panel(cutout, panel, marks, tryon: TryOnMask, top_names, reference, box) -> np.ndarray:
    """The body panel bent onto the torso by a spline through its landmarks and side edges;
    ``panel`` is its mask and the pixels it carries, as for ``_warp_limb_part``."""
    panel, carried = panel
    top_y = (marks[top_names[0]][1] + marks[top_names[1]][1]) / 2
    panel_marks = {
        name: point
        for name, point in marks.items()
        if not name.endswith("sleeve_end") and name != "crotch"
    }
    panel_marks.update(_side_samples(panel, marks, top_y))
    targets = _panel_targets(panel_marks, tryon.frame, tryon.fit, top_names, reference)
    names = list(targets)
    warped = _warp_tps(
        _piece(cutout, carried),
        [panel_marks[n] for n in names],
        [targets[n] for n in names],
        box,
    )
    warped[:, :, :3] *= _torso_form(tryon.frame, box)[:, :, None]
    return warped


def _torso_form(frame: BodyFrame, box) -> np.ndarray:
    """The torso's roundness as a brightness factor over ``box``: 1 on the centre line, darker
    toward the sides of the body."""
    grid, shape = _grid(box)
    relative = grid - frame.neck
    along = relative @ frame.down
    side = np.abs(relative @ frame.across) / _body_half_width(frame, along)
    side = side.reshape(shape)
    form = 1.0 - 0.7 * FORM_SHADING * np.clip(side, 0, 1.2) ** 2
    size = (shape[1] * GRID_STEP, shape[0] * GRID_STEP)
    return cv2.resize(form.astype(np.float32), size)[: box[3], : box[2]]


def _limb_part_axis(part: np.ndarray, marks, side: str, lower: bool):
    """A sleeve's axis from the torso's side to its cuff, or a trouser leg's from the crotch
    down to the middle of its hem; and its half-width (see ``_part_axis``)."""
    if not lower:
        return _part_axis(part, "left" if side == "l" else "right", marks[f"{side}_sleeve_end"])
    hem_y = round(marks[f"{side}_hem"][1])
    rows = np.flatnonzero(part.any(axis=1))
    columns = np.flatnonzero(part[min(hem_y, int(rows.max()))])
    return _part_axis(part, "top", np.array([columns.mean(), float(hem_y)]))


def _finished(layered: np.ndarray, person: PersonAnalysis, tryon: TryOnMask, box) -> Image.Image:
    """The photo-sized RGBA: colour un-premultiplied, alpha limited by ``allowed``/``front``."""
    left, top, width, height = box
    window = np.s_[top : top + height, left : left + width]
    coverage = layered[:, :, 3]
    output = np.zeros((person.height, person.width, 4), np.uint8)
    inside = output[window]
    inside[:, :, :3] = np.clip(layered[:, :, :3] / np.maximum(coverage, 1e-6)[:, :, None], 0, 255)
    shown = tryon.allowed[window] * (255 - tryon.front[window].astype(np.float32)) / 255.0
    inside[:, :, 3] = np.clip(coverage * shown, 0, 255)
    return Image.fromarray(output, "RGBA")


# --- the composite -------------------------------------------------------------------------------


def _shading(picture: np.ndarray, old_garment: np.ndarray, sw: float) -> np.ndarray:
    """A smooth brightness factor around 1.0 from the photo: its light falloff and broad folds.

    Only the old garment's own pixels count, without its print, badges or logos (pixels much
    lighter or darker than the cloth around them), and the gaps they leave are filled from the
    cloth around them; no colour is taken at all. Both parts are bounded (``LIGHT_RANGE``,
    ``FOLD_RANGE``) and smooth, so the field varies like light on cloth, never in blotches.
    Computed on a small copy: shading is smooth by nature.
    """
    height, width = picture.shape[:2]
    scale = min(1.0, SHADING_WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    luminance = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)[:, :, 0].astype(np.float32) + 1.0
    inside = cv2.resize(old_garment.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if inside.sum() < 20:
        return np.ones((height, width, 1), np.float32)
    # An offset keeps a dark garment's noise from reading as deep folds.
    luminance += LUMINANCE_OFFSET
    typical = float(np.median(luminance[inside]))
    luminance = np.clip(luminance, typical * 0.7, typical * 1.3)
    sw_small = max(sw * scale, 4.0)
    weight = inside.astype(np.float32)

    def smooth(sigma: float) -> np.ndarray:
        # Normalised convolution: holes in the old garment (a badge, a patch, a collar that is
        # not the garment) are filled from the cloth around them, not with one flat value.
        total = _blur(luminance * weight, sigma)
        count = _blur(weight, sigma)
        return np.where(count > 1e-3, total / np.maximum(count, 1e-3), typical)

    medium = smooth(0.2 * sw_small)
    # Details far brighter or darker than the cloth around them are print, badges, seams of a
    # patch: not folds. They are left out, and the folds read again without them.
    weight *= np.abs(luminance / medium - 1.0) < PRINT_CONTRAST
    weight = cv2.erode(weight, np.ones((3, 3), np.uint8))
    local, medium = smooth(0.03 * sw_small + 0.5), smooth(0.2 * sw_small)
    folds = np.clip(local / medium, *FOLD_RANGE)
    light = np.clip(smooth(0.5 * sw_small) / typical, *LIGHT_RANGE)
    field = folds * light
    shading = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
    return shading[:, :, None]


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur; a wide one on a smaller copy (it is smooth: a fraction of the cost)."""
    if sigma <= WIDE_BLUR_SIGMA:
        return cv2.GaussianBlur(values, (0, 0), sigma)
    height, width = values.shape[:2]
    factor = sigma / WIDE_BLUR_SIGMA
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    reduced = cv2.resize(values, small, interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(reduced, (0, 0), WIDE_BLUR_SIGMA)
    return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


def composite(picture: Image.Image, warped: Image.Image, tryon: TryOnMask) -> Image.Image:
    """The preview: the warped garment, shaded like the photo, over ``picture``.

    Every pixel the garment does not cover is the picture's own (also where the old garment
    showed and the new one does not reach: it reads as a layer underneath); every pixel where
    the mask is 0 is exactly the picture's.
    """
    full = np.asarray(picture.convert("RGB"))
    garment_rgba = np.asarray(warped.convert("RGBA"))
    left, top, width, height = cv2.boundingRect((garment_rgba[:, :, 3] > 0).astype(np.uint8))
    if width == 0 or height == 0:
        return Image.fromarray(full.copy(), "RGB")
    window = np.s_[top : top + height, left : left + width]
    base = full[window]
    garment = garment_rgba[window].astype(np.float32)
    mask_window = np.asarray(tryon.mask)[window]
    alpha = np.where(mask_window > 0, garment[:, :, 3] / 255.0, 0.0)[:, :, None]
    shading = _shading(base, tryon.old_garment[window], tryon.frame.shoulder_width)
    shaded = np.clip(garment[:, :, :3] * shading, 0, 255)
    blended = np.round(shaded * alpha + base * (1 - alpha)).astype(np.uint8)
    result = full.copy()
    # Exactly the picture wherever the garment is absent, whatever the float arithmetic did.
    result[window] = np.where(alpha > 0, blended, base)
    return Image.fromarray(result, "RGB")
