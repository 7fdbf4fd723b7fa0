"""Stage 4: fit the garment's cut-out onto the person and composite the instant preview.

The cut-out is cut into parts that move differently on a body — the torso, and the sleeves (tops)
or nothing more (bottoms, dresses) — and each part is bent onto the body with a thin-plate spline
from the garment's landmarks to the matching body points. The photo's own shading (folds,
light falloff) is then transferred onto the garment so it does not look pasted, and the result
is composited inside the try-on mask: every pixel where the mask is 0 is exactly the photo's.
"""

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
    chain_prefix,
    limb_chain,
)
from .masks import WAIST_ABOVE_HIPS, TryOnMask
from .types import GarmentAnalysis, PersonAnalysis

# The backward map is evaluated on a grid this many pixels apart and interpolated in between:
# a spline through a handful of points is smooth, so this loses nothing visible.
GRID_STEP = 8
# Garment fabric seen from the front is narrower than laid flat: it wraps around the body.
WRAP = 0.85
REQUIRED_LANDMARKS = {
    "top": ("r_shoulder", "l_shoulder", "r_hem", "l_hem"),
    "lower": ("r_waist", "l_waist", "r_hem", "l_hem"),
}
# The shoulder seam sits this many shoulder widths above the shoulder joints.
SEAM_ABOVE_JOINT = 0.12
# Shading is estimated on a copy this many pixels on its long side.
SHADING_WORK_SIDE = 256


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


def _warp_part(part: np.ndarray, garment_points, body_points, box) -> np.ndarray:
    """Bend an RGBA ``part`` so ``garment_points`` land on ``body_points``, inside ``box``.

    ``box`` is (x, y, width, height) in the photo; the result is that box's RGBA pixels.
    """
    left, top, width, height = box
    # Backward mapping: for each output pixel, where to read in the garment image.
    model = _fit_tps(np.asarray(body_points, float), np.asarray(garment_points, float))
    grid_w, grid_h = width // GRID_STEP + 2, height // GRID_STEP + 2
    ys, xs = np.mgrid[0:grid_h, 0:grid_w] * GRID_STEP
    grid = np.stack([xs.ravel() + left, ys.ravel() + top], axis=1).astype(float)
    coarse = _apply_tps(model, grid).reshape(grid_h, grid_w, 2).astype(np.float32)
    full = cv2.resize(coarse, (grid_w * GRID_STEP, grid_h * GRID_STEP), cv2.INTER_LINEAR)
    map_x, map_y = full[:height, :width, 0], full[:height, :width, 1]
    return cv2.remap(
        part, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _swing_sleeve(part: np.ndarray, garment_ends, body_ends, box) -> np.ndarray:
    """Rotate and scale a sleeve so its shoulder and cuff land on the arm, inside ``box``.

    A sleeve is rigid enough to move as one piece. A spline would also need a third point, and
    with the arm hanging beside the torso the shoulder, cuff and hem targets are nearly in line,
    which folds the sleeve over itself.
    """
    (gx0, gy0), (gx1, gy1) = garment_ends
    (bx0, by0), (bx1, by1) = body_ends
    garment_vector = complex(gx1 - gx0, gy1 - gy0)
    body_vector = complex(bx1 - bx0, by1 - by0)
    if abs(garment_vector) < 1e-6:
        return np.zeros((box[3], box[2], 4), np.uint8)
    turn = body_vector / garment_vector  # rotation and scale as one complex factor
    left, top = box[0], box[1]
    matrix = np.array(
        [
            [turn.real, -turn.imag, bx0 - left - (turn.real * gx0 - turn.imag * gy0)],
            [turn.imag, turn.real, by0 - top - (turn.imag * gx0 + turn.real * gy0)],
        ]
    )
    return cv2.warpAffine(
        part,
        matrix,
        (box[2], box[3]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _distance(a, b) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def _top_targets(marks, person, frame: BodyFrame, fit: GarmentFit) -> dict[str, np.ndarray]:
    """Body points for a top's or a dress's landmarks."""
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    # Garment pixels → photo pixels: the reference width is FLAT_SHOULDERS shoulder widths.
    scale = FLAT_SHOULDERS * sw / max(fit.reference_width, 1.0)
    half = _distance(marks["r_shoulder"], marks["l_shoulder"]) / 2 * scale
    hem = frame.neck + down * fit.length * FLAT_SHOULDERS * sw
    hem_half = fit.hem_width * FLAT_SHOULDERS * sw / 2 * WRAP
    targets = {
        # The shoulder seam lies on top of the shoulder, above the joint.
        "r_shoulder": frame.neck + across * half - down * SEAM_ABOVE_JOINT * sw,
        "l_shoulder": frame.neck - across * half - down * SEAM_ABOVE_JOINT * sw,
        "r_hem": hem + across * hem_half,
        "l_hem": hem - across * hem_half,
    }
    if "neckline" in marks:
        drop = marks["neckline"][1] - (marks["r_shoulder"][1] + marks["l_shoulder"][1]) / 2
        targets["neckline"] = frame.neck + down * (drop * scale - SEAM_ABOVE_JOINT * sw)
    for side in ("r", "l"):
        if f"{side}_sleeve_end" in marks:
            chain = limb_chain(person, frame, side, "arm")
            targets[f"{side}_sleeve_end"] = chain_prefix(chain, max(fit.sleeve, 0.1))[-1]
    return targets


def _bottom_targets(marks, person, frame: BodyFrame, fit: GarmentFit) -> dict[str, np.ndarray]:
    """Body points for trousers' or a skirt's landmarks."""
    sw, down, across = frame.shoulder_width, frame.down, frame.across
    waist = frame.mid_hip - down * WAIST_ABOVE_HIPS * sw
    waist_half = FLAT_WAIST * sw / 2 * WRAP
    reach = float(np.clip((fit.length * FLAT_WAIST - WAIST_ABOVE_HIPS) / LEG_LENGTH, 0.1, 1.0))
    targets = {"r_waist": waist + across * waist_half, "l_waist": waist - across * waist_half}
    if fit.legs:
        for side in ("r", "l"):
            outward = across if side == "r" else -across
            ankle = chain_prefix(limb_chain(person, frame, side, "leg"), reach)[-1]
            targets[f"{side}_hem"] = ankle + outward * 0.2 * sw
        if "crotch" in marks:
            targets["crotch"] = frame.mid_hip + down * 0.3 * sw
    else:
        hem = frame.mid_hip + down * reach * LEG_LENGTH * sw
        hem_half = fit.hem_width * waist_half
        targets["r_hem"], targets["l_hem"] = hem + across * hem_half, hem - across * hem_half
    return targets


def _sleeve_parts(mask: np.ndarray, marks) -> dict[str, np.ndarray]:
    """Split a top's mask into torso and sleeves at the torso's side lines."""
    width = mask.shape[1]
    xs = np.arange(width)[None, :]
    parts = {}
    torso = mask.copy()
    for side, beyond in (("r", lambda x, edge: x < edge), ("l", lambda x, edge: x > edge)):
        if f"{side}_sleeve_end" not in marks or f"{side}_hem" not in marks:
            continue
        edge = (marks[f"{side}_hem"][0] + marks[f"{side}_shoulder"][0]) / 2
        sleeve = mask & beyond(xs, edge)
        parts[side] = sleeve
        torso &= ~sleeve
    parts["torso"] = torso
    return parts


def _working_copy(cutout: Image.Image, marks, targets):
    """The cut-out shrunk to about the size it will have on the photo (and its landmarks).

    A product shot is usually much larger than the garment's footprint on the photo; warping
    the full-size shot would cost time for detail that interpolation throws away.
    """
    first, second = ("r_waist", "l_waist") if "r_waist" in marks else ("r_shoulder", "l_shoulder")
    on_shot = float(np.hypot(*(marks[first] - marks[second])))
    on_photo = float(np.hypot(*(targets[first] - targets[second])))
    scale = min(1.0, 1.5 * on_photo / max(on_shot, 1.0))
    if scale >= 0.95:
        return np.asarray(cutout.convert("RGBA")), marks
    size = (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale)))
    small = np.asarray(cutout.convert("RGBA").resize(size, Image.BOX))
    return small, {name: point * scale for name, point in marks.items()}


def mask_box(tryon: TryOnMask) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the mask's nonzero area: the only pixels worth computing."""
    x, y, width, height = cv2.boundingRect(np.asarray(tryon.mask))
    return (x, y, max(width, 1), max(height, 1))


def warp_garment(garment: GarmentAnalysis, person: PersonAnalysis, tryon: TryOnMask) -> Image.Image:
    """Fit ``garment``'s cut-out onto the person: RGBA of the photo's size, clear elsewhere.

    Only the mask's bounding box is computed: the composite shows nothing outside the mask.
    """
    marks = {name: np.asarray(point, float) for name, point in garment.landmarks.items()}
    frame, fit = tryon.frame, tryon.fit
    required = REQUIRED_LANDMARKS["lower" if fit.category == "lower" else "top"]
    missing = [name for name in required if name not in marks]
    if missing:
        raise InvalidInputError(
            "garment", f"the garment's analysis lacks {', '.join(missing)}; re-analyse it"
        )
    if fit.category == "lower":
        targets = _bottom_targets(marks, person, frame, fit)
    else:
        targets = _top_targets(marks, person, frame, fit)
    names = [name for name in targets if name in marks]
    cutout, marks = _working_copy(garment.cutout, marks, targets)
    alpha = cutout[:, :, 3] > 0
    parts = _sleeve_parts(alpha, marks) if fit.category != "lower" else {"torso": alpha}
    box = mask_box(tryon)
    left, top, width, height = box
    layered = np.zeros((height, width, 4), np.float32)
    # Sleeves first, the torso over them: where they overlap the body hides the arm's far side.
    for part_name in sorted(parts, key=lambda name: name == "torso"):
        part = cutout.copy()
        part[:, :, 3] = np.where(parts[part_name], cutout[:, :, 3], 0)
        if part_name == "torso":
            chosen = [n for n in names if not n.endswith("sleeve_end")]
            warped = _warp_part(part, [marks[n] for n in chosen], [targets[n] for n in chosen], box)
        else:
            ends = (f"{part_name}_shoulder", f"{part_name}_sleeve_end")
            warped = _swing_sleeve(part, [marks[n] for n in ends], [targets[n] for n in ends], box)
        warped = warped.astype(np.float32)
        over = warped[:, :, 3:4] / 255.0
        layered[:, :, :3] = warped[:, :, :3] * over + layered[:, :, :3] * (1 - over)
        layered[:, :, 3:4] = 255.0 * (over + layered[:, :, 3:4] / 255.0 * (1 - over))
    output = np.zeros((person.height, person.width, 4), np.uint8)
    output[top : top + height, left : left + width] = np.clip(layered, 0, 255).astype(np.uint8)
    return Image.fromarray(output, "RGBA")


def _shading(photo: np.ndarray, old_garment: np.ndarray, sw: float) -> np.ndarray:
    """Relative brightness of the old garment, around 1.0: its broad folds and light falloff.

    Only the old garment's own pixels count (anything else — a white shirt collar, a medal, the
    background — is replaced by the garment's median brightness first), so the new garment gets
    the old one's folds and lighting and nothing else. Computed on a small copy: shading is
    smooth by nature, and big blurs at full size would cost more than the rest together.
    """
    height, width = photo.shape[:2]
    scale = min(1.0, SHADING_WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    luminance = (
        cv2.cvtColor(
            cv2.resize(photo, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY
        ).astype(np.float32)
        + 1.0
    )
    inside = cv2.resize(old_garment.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if inside.sum() < 20:
        return np.ones((height, width, 1), np.float32)
    typical = float(np.median(luminance[inside]))
    luminance[~inside] = typical
    sw_small = sw * scale
    broad = cv2.GaussianBlur(luminance, (0, 0), max(2.0, 0.5 * sw_small))
    local = cv2.GaussianBlur(luminance, (0, 0), max(1.0, 0.04 * sw_small))
    medium = cv2.GaussianBlur(luminance, (0, 0), max(2.0, 0.2 * sw_small))
    folds = np.clip(local / medium, 0.85, 1.15)
    light = np.clip(broad / typical, 0.75, 1.25)
    shading = cv2.resize(folds * light**0.5, (width, height), interpolation=cv2.INTER_LINEAR)
    return shading[:, :, None]


def _skin_colour(photo: np.ndarray, tryon: TryOnMask) -> np.ndarray | None:
    """The median colour of the face (the protected area above the shoulders), if visible."""
    ys, xs = np.nonzero(tryon.protected)
    above = ys < min(tryon.frame.r_shoulder[1], tryon.frame.l_shoulder[1])
    if above.sum() < 50:
        return None
    return np.median(photo[ys[above], xs[above]].astype(np.float32), axis=0)


def composite(photo: Image.Image, warped: Image.Image, tryon: TryOnMask) -> Image.Image:
    """The preview: the warped garment, shaded like the photo, inside the feathered mask.

    Where the old garment covered an arm or a leg and the new one does not (long old sleeves
    under a new short-sleeved top), the limb is repainted in the person's skin tone with the
    photo's shading: a cheap stand-in for what the diffusion pass paints there properly.
    """
    full = np.asarray(photo.convert("RGB"))
    left, top, width, height = mask_box(tryon)
    window = np.s_[top : top + height, left : left + width]
    base = full[window]
    shading = _shading(base, tryon.old_garment[window], tryon.frame.shoulder_width)
    garment = np.asarray(warped.convert("RGBA"))[window].astype(np.float32)
    garment_alpha = garment[:, :, 3] / 255.0
    underneath = base.astype(np.float32)
    skin = _skin_colour(full, tryon)
    if skin is not None:
        bare = tryon.old_garment[window] & tryon.limbs[window] & (garment_alpha < 0.99)
        underneath[bare] = np.clip(skin * shading[bare], 0, 255)
    shaded = np.clip(garment[:, :, :3] * shading, 0, 255)
    mask_window = np.asarray(tryon.mask)[window]
    mask = mask_window.astype(np.float32)[:, :, None] / 255.0
    painted = shaded * garment_alpha[:, :, None] + underneath * (1 - garment_alpha[:, :, None])
    blended = np.round(painted * mask + base * (1 - mask)).astype(np.uint8)
    result = full.copy()
    # Exactly the photo wherever the mask is 0, whatever the float arithmetic did.
    result[window] = np.where((mask_window == 0)[:, :, None], base, blended)
    return Image.fromarray(result, "RGB")
