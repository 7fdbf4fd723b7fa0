"""A neutral mannequin drawn from a pose skeleton: the figure of the preview engine's model shots.

Without diffusion weights a model shot would show the garment floating on the scene; a
mannequin under it shows how the pose carries the garment. The figure is built from solids
(tapered tubes for limbs and neck, a torso swept down its middle line, an egg-shaped head) and
rendered analytically: each pixel's signed distance to a solid gives an anti-aliased outline
without supersampling, and the solid's surface normal gives the shading that makes it read as
3-D. Solids of one layer (an arm; the torso, neck and legs) are merged by depth, the nearest
surface showing, so joints show as soft seams; layers are painted back to front, so a far arm
goes behind the torso and crossed forearms lie in front of it.

The figure must pass for a person with MediaPipe's pose model (``pipelines.person``), found
where its skeleton is. That model reads a drawn figure's front from its face: without sculpted
eyes, brows, nose and mouth it finds nobody, and with faint ones it often took a three-quarter
figure for one seen from behind, its left and right swapped. So the head has a sculpted face
and darker sculpted hair, and the torso collarbones and a navel (a spine and shoulder blades
when seen from behind). The figure is also sized by its torso's length rather than its
shoulders: a turned body with a small head was read as a shorter one.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .geometry import BodyFrame, body_frame, limb_chain
from .types import PersonAnalysis

Grid = tuple[np.ndarray, np.ndarray]  # pixel-centre x (1, w) and y (h, 1), broadcastable

# A warm light grey, a retail mannequin's matte finish (not painted skin). A cooler, greyer
# tone than beige keeps the figure apart from warm scenes (café, coloured studio) for MediaPipe.
COLOUR = np.array([188, 185, 181], np.float32) / 255
# Light from the upper left and in front (x right, y down, z toward the viewer), as in a studio.
LIGHT = np.array([-0.45, -0.55, 0.70], np.float32) / np.linalg.norm([-0.45, -0.55, 0.70])
AMBIENT, DIFFUSE, SHEEN = 0.42, 0.62, 0.06

# The face's shadows on the head's unit sphere, seen from the front: (across, down, half-length
# across, half-height, darkness); across is toward the image's right, both in head radii. The
# light comes from the image's left, so the nose shades its right side.
FACE = (
    (-0.36, 0.0, 0.16, 0.075, 0.9),  # eye sockets
    (0.36, 0.0, 0.16, 0.075, 0.9),
    (-0.36, -0.2, 0.2, 0.04, 0.5),  # brows
    (0.36, -0.2, 0.2, 0.04, 0.5),
    (0.08, 0.18, 0.05, 0.16, 0.4),  # the nose's shaded side
    (0.0, 0.37, 0.13, 0.04, 0.8),  # under the nose
    (0.0, 0.58, 0.22, 0.035, 0.9),  # lips
    (0.0, 0.7, 0.13, 0.03, 0.3),  # under the lower lip
)
# The sculpted hair: how far down the head it reaches (down, in head radii) against how much the
# point faces the viewer (1 = the face's middle, -1 = the back of the head); it is darker.
HAIRLINE = ((-1.0, 0.95), (-0.2, 0.8), (0.4, -0.15), (0.8, -0.5))
HAIR_DARKNESS = 0.5
# Sculpted details of the torso, as soft shadows: (down, across, half-height, half-width,
# darkness); down in fractions of the torso's length, across in fractions of its half-width.
TORSO_FRONT = (
    (0.02, 0.0, 0.03, 0.15, 0.15),  # the notch between the collarbones
    (0.07, -0.45, 0.03, 0.35, 0.15),  # under the collarbones
    (0.07, 0.45, 0.03, 0.35, 0.15),
    (0.3, -0.45, 0.05, 0.35, 0.12),  # under the chest
    (0.3, 0.45, 0.05, 0.35, 0.12),
    (0.66, 0.0, 0.02, 0.05, 0.45),  # navel
)
TORSO_BACK = (
    (0.5, 0.0, 0.4, 0.07, 0.1),  # spine
    (0.2, -0.45, 0.08, 0.2, 0.12),  # shoulder blades
    (0.2, 0.45, 0.08, 0.2, 0.12),
)

# Sizes in shoulder widths ("sw", the shoulder-joint distance, about 38 cm on an adult) of the
# body facing the camera. Radii of the limbs: (start, end) of each tube.
UPPER_ARM, FOREARM = (0.115, 0.078), (0.078, 0.052)
HAND_PALM, HAND_TIP = (0.055, 0.07), (0.07, 0.045)
HAND_LENGTH = 0.38
HAND_DROOP = 0.35  # how much a hand bends down from its forearm's line
GRIP = (0.1, 0.3)  # folded arms: a hand points this far outside and above the other elbow
THIGH, KNEE_TO_CALF, CALF_TO_ANKLE = (0.19, 0.10), (0.10, 0.11), (0.11, 0.06)
CALF_BULGE = 0.3  # the calf is widest this far down the shin
THIGH_LENGTH = 1.05  # hip → knee; a thigh shorter in the picture points at the camera
FOOT = (0.07, 0.09)
FOOT_DROP, FOOT_LENGTH = 0.2, 0.45  # ankle to toes, seen from the front and in profile
NECK = (0.12, 0.105)
# The head is an egg: half-width and half-height, narrowing toward the chin.
HEAD_HALF_WIDTH, HEAD_HALF_HEIGHT, HEAD_EGG = 0.205, 0.285, 0.14
HEAD_DEPTH = 1.1  # front-to-back over side-to-side
# Torso half-widths along the torso (0 = shoulder joints, 1 = hip joints), front view; above
# the shoulders and below the hip joints the outline is rounded off over these lengths.
TORSO_PROFILE = ((0.0, 0.50), (0.12, 0.45), (0.3, 0.43), (0.6, 0.34), (0.85, 0.43), (1.0, 0.46))
SHOULDER_CAP, PELVIS_CAP = 0.22, 0.26
SHOULDER_SLOPE = 1.4  # superellipse power of the shoulders' top: below 2 it slopes to the neck
TORSO_LENGTH = 1.45  # shoulders' midpoint to hips' midpoint
TORSO_DEPTH = 0.7  # chest depth / chest width
HALF_HIP_SPAN = 0.27  # hip joint to the body's middle line, front view
MIN_TORSO_SCALE = 0.62  # seen from the side, a torso still shows its depth
TORSO_SAMPLES, TORSO_SMOOTHING = 128, 6  # the outline's table along the torso, its blur

# A head turned fully into profile (``facing`` ±1) is turned this far, in radians.
PROFILE_YAW = 1.4
# The nose's offset from the ears' midpoint, in sw, below which a face is frontal and from
# which it is in profile.
FRONTAL_OFFSET, PROFILE_OFFSET = 0.1, 0.3
# An arm whose shoulder is this much nearer the neck than the other's is the far arm.
FAR_SHOULDER_RATIO = 0.93
# The far leg of a turned body is this far behind the near one, in sw.
FAR_LEG_DEPTH = 0.12

# Forearms within this margin of the torso, in sw, count as over it: a garment is a little wider.
FRONT_MARGIN = 0.08
# Surfaces of one layer this close in depth blend at their seam, in sw.
SEAM_SOFTNESS = 0.02
SEAM_PIXELS = 1.5  # the least width of a seam's blend
SEAM_REACH = 64.0  # depth gaps beyond this many pixels are not seams
# A hand lies on its forearm's surface, a foot on its shin's: this much nearer, in sw.
SURFACE = 0.02


@dataclass(frozen=True, eq=False)
class Mannequin:
    """The drawn figure and what of it must stay in front of a garment worn on the torso."""

    figure: Image.Image  # RGBA, canvas size, anti-aliased alpha
    # (h, w) float32 0..1: the visible hands, and forearms where they lie over the torso; the
    # caller pastes the figure again there after the garment.
    front: np.ndarray


@dataclass(frozen=True, eq=False)
class _Surface:
    """A solid as seen at each pixel of a grid."""

    distance: np.ndarray  # signed distance to the outline in pixels, negative inside
    # Toward the viewer, pixels, used only to pick the front solid; negative outside the
    # outline, continuing the surface's slope there.
    height: np.ndarray
    normal: tuple[np.ndarray, np.ndarray, np.ndarray]  # unit normal (x, y, z)
    tint: np.ndarray | float = 1.0  # multiplies the shaded colour (sculpted face details)


class _Solid:
    """A part of the figure: its bounding box and its surface on a grid."""

    def bounds(self) -> tuple[float, float, float, float]:
        raise NotImplementedError

    def surface(self, grid: Grid) -> _Surface:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class _Tube(_Solid):
    """A capsule from ``a`` to ``b`` whose radius tapers from ``ra`` to ``rb``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float
    depth: tuple[float, float] = (0.0, 0.0)  # toward the viewer at ``a`` and at ``b``, pixels

    def bounds(self):
        r = max(self.ra, self.rb)
        return (
            min(self.a[0], self.b[0]) - r,
            min(self.a[1], self.b[1]) - r,
            max(self.a[0], self.b[0]) + r,
            max(self.a[1], self.b[1]) + r,
        )

    def surface(self, grid):
        x, y = grid
        axis = self.b - self.a
        px, py = x - self.a[0], y - self.a[1]
        along = np.clip((px * axis[0] + py * axis[1]) / max(float(axis @ axis), 1e-6), 0, 1)
        dx, dy = px - along * axis[0], py - along * axis[1]
        radius = self.ra + (self.rb - self.ra) * along
        off_axis = np.hypot(dx, dy)
        z = _signed_sqrt(radius**2 - off_axis**2)
        depth = self.depth[0] + (self.depth[1] - self.depth[0]) * along
        normal = (dx / radius, dy / radius, np.maximum(z, 0) / radius)
        return _Surface(off_axis - radius, z + depth, normal)


@dataclass(frozen=True, eq=False)
class _Torso(_Solid):
    """The torso swept down its middle line from the shoulders' midpoint to the hips'.

    At each distance ``u`` down the line the outline lies ``width_pos(u)`` to one side and
    ``width_neg(u)`` to the other (tables sampled at ``u``); ``middle(u)`` shifts the line
    sideways (the chest forward in a profile).
    """

    origin: np.ndarray
    down: np.ndarray
    across: np.ndarray
    u: np.ndarray
    width_pos: np.ndarray
    width_neg: np.ndarray
    middle: np.ndarray
    length: float  # shoulders' midpoint to hips' midpoint
    details: tuple[tuple[float, float, float, float, float], ...] = ()  # see TORSO_FRONT

    def bounds(self):
        reach = max(self.width_pos.max(), self.width_neg.max()) + np.abs(self.middle).max()
        ends = [self.origin + self.down * self.u[0], self.origin + self.down * self.u[-1]]
        xs, ys = [p[0] for p in ends], [p[1] for p in ends]
        return min(xs) - reach, min(ys) - reach, max(xs) + reach, max(ys) + reach

    def surface(self, grid):
        x, y = grid
        px, py = x - self.origin[0], y - self.origin[1]
        u = px * self.down[0] + py * self.down[1]
        side = px * self.across[0] + py * self.across[1]
        off = side - self._table(u, self.middle)
        width = np.where(off > 0, self._table(u, self.width_pos), self._table(u, self.width_neg))
        slope = np.where(off > 0, self._slope(u, self.width_pos), self._slope(u, self.width_neg))
        shift = self._slope(u, self.middle)
        # Dividing by the outline's steepness turns the sideways gap into a true distance, so the
        # rounded shoulder and pelvis ends are as smooth as the sides.
        outline_slope = slope + np.sign(off) * shift
        distance = (np.abs(off) - width) / np.sqrt(1 + outline_slope**2)
        beyond = np.maximum(self.u[0] - u, u - self.u[-1])
        distance = np.maximum(distance, beyond)
        signed_section = _signed_sqrt(width**2 - off**2)
        section = np.maximum(signed_section, 0)
        n_side = TORSO_DEPTH * off
        n_down = -TORSO_DEPTH * (width * slope + off * shift)
        norm = np.sqrt(n_side**2 + n_down**2 + section**2) + 1e-6
        nx = (n_side * self.across[0] + n_down * self.down[0]) / norm
        ny = (n_side * self.across[1] + n_down * self.down[1]) / norm
        tint = self._tint(u / self.length, off / np.maximum(width, 1e-3))
        return _Surface(distance, TORSO_DEPTH * signed_section, (nx, ny, section / norm), tint)

    def _tint(self, along: np.ndarray, across: np.ndarray) -> np.ndarray | float:
        """Sculpted details, placed in fractions of the torso's length and half-width."""
        tint = 1.0
        for t, v, half_t, half_v, darkness in self.details:
            spot = ((along - t) / half_t) ** 2 + ((across - v) / half_v) ** 2
            tint = tint * (1 - darkness * np.exp(-2 * spot))
        return tint

    def _table(self, u, values):
        return np.interp(u, self.u, values, left=0.0, right=0.0).astype(np.float32)

    def _slope(self, u, values):
        return np.interp(u, self.u, np.gradient(values, self.u), left=0.0, right=0.0)


@dataclass(frozen=True, eq=False)
class _Head(_Solid):
    """An egg-shaped head turned ``yaw`` radians toward the image's right, with a faint face."""

    centre: np.ndarray
    down: np.ndarray  # from the crown toward the chin
    half_width: float
    half_height: float
    yaw: float
    face: bool

    def bounds(self):
        r = max(self.half_width, self.half_height)
        return self.centre[0] - r, self.centre[1] - r, self.centre[0] + r, self.centre[1] + r

    def surface(self, grid):
        x, y = grid
        px, py = x - self.centre[0], y - self.centre[1]
        across = _image_right(self.down)
        along = px * self.down[0] + py * self.down[1]
        # The egg: the head narrows toward the chin (positive ``along``).
        half_width = self.half_width * (1 - HEAD_EGG * np.clip(along / self.half_height, -1, 1))
        sx = (px * across[0] + py * across[1]) / half_width
        sy = along / self.half_height
        rho = np.sqrt(sx**2 + sy**2) + 1e-6
        gradient = np.hypot(sx / half_width, sy / self.half_height) / rho
        distance = (rho - 1) / np.maximum(gradient, 1e-6)
        signed_sz = _signed_sqrt(1 - rho**2)
        sz = np.maximum(signed_sz, 0)
        depth = self.half_width * HEAD_DEPTH
        n_side, n_down, n_z = sx / half_width, sy / self.half_height, sz / depth
        norm = np.sqrt(n_side**2 + n_down**2 + n_z**2) + 1e-6
        nx = (n_side * across[0] + n_down * self.down[0]) / norm
        ny = (n_side * across[1] + n_down * self.down[1]) / norm
        return _Surface(distance, depth * signed_sz, (nx, ny, n_z / norm), self._tint(sx, sy, sz))

    def _tint(self, sx: np.ndarray, sy: np.ndarray, sz: np.ndarray) -> np.ndarray:
        """The face's shadows and the hair, placed on the unit sphere and turned with the head."""
        yaw = self.yaw if self.face else np.pi  # no face seen: the back of the head
        cos, sin = np.cos(yaw), np.sin(yaw)
        lateral, toward = cos * sx - sin * sz, sin * sx + cos * sz
        # Features fade out where the turned face slips round the head's outline.
        seen = np.clip(toward * 4, 0, 1)
        tint = np.ones_like(sx)
        for fx, fy, half_x, half_y, darkness in FACE:
            spot = ((lateral - fx) / half_x) ** 2 + ((sy - fy) / half_y) ** 2
            tint *= 1 - darkness * seen * np.exp(-2 * spot)
        hairline = np.interp(toward, *zip(*HAIRLINE, strict=True)) + 0.25 * lateral**2
        hair = np.clip((hairline - sy) / 0.08 + 0.5, 0, 1)
        return tint * (1 - HAIR_DARKNESS * hair)


# How much of a solid counts as "front": a constant, or a function of the grid.
Front = float | Callable[[Grid], np.ndarray]


@dataclass(frozen=True, eq=False)
class _Layer:
    """Solids painted together; within a layer the one nearest the viewer shows."""

    solids: tuple[tuple[_Solid, Front], ...]


@dataclass(eq=False)
class _Canvas:
    """Premultiplied colour, coverage and front weight, painted layer by layer.

    Within a layer, solids whose surfaces are within ``softness`` pixels of each other in depth
    are blended, so the joint where two limb segments meet is a soft ring, not a hard line.
    """

    width: int
    height: int
    softness: float
    colour: np.ndarray = field(init=False)
    alpha: np.ndarray = field(init=False)
    front: np.ndarray = field(init=False)
    painted: list = field(init=False)  # the boxes painted so far

    def __post_init__(self):
        self.colour = np.zeros((self.height, self.width, 3), np.float32)
        self.alpha = np.zeros((self.height, self.width), np.float32)
        self.front = np.zeros((self.height, self.width), np.float32)
        self.painted = []

    def paint(self, layer: _Layer) -> None:
        """Paint ``layer`` over what is there, with its anti-aliased coverage."""
        box = _union_box([solid.bounds() for solid, _ in layer.solids], self.width, self.height)
        if box is None:
            return
        self.painted.append(box)
        cover, normal, tint, front = self._merge(layer, box)
        x0, y0, x1, y1 = box
        region = np.s_[y0:y1, x0:x1]
        keep = 1 - cover
        shaded = _shade(normal, tint)
        self.colour[region] = shaded * cover[..., None] + self.colour[region] * keep[..., None]
        self.alpha[region] = cover + self.alpha[region] * keep
        self.front[region] = front * cover + self.front[region] * keep

    def _merge(self, layer: _Layer, box: tuple[int, int, int, int]):
        """The layer's coverage, normal, tint and front weight over ``box``: nearest solid wins."""
        x0, y0, x1, y1 = box
        shape = (y1 - y0, x1 - x0)
        key = np.full(shape, -np.inf, np.float32)  # depth of the nearest surface so far
        nearest = np.zeros(shape, np.float32)  # the same, continued past its outline
        cover, tint, front = (np.zeros(shape, np.float32) for _ in range(3))
        normal = [np.zeros(shape, np.float32) for _ in range(3)]
        for solid, weight in layer.solids:
            part = _union_box([solid.bounds()], self.width, self.height)
            if part is None:
                continue
            grid = _grid(*part)
            found = solid.surface(grid)
            window = np.s_[part[1] - y0 : part[3] - y0, part[0] - x0 : part[2] - x0]
            # Outside every solid, the nearest one colours the anti-aliased fringe.
            mine = np.where(found.distance < 0, found.height, -1e6 - found.distance)
            share = self._share(mine, key[window], found.height - nearest[window])
            key[window] = np.maximum(key[window], mine)
            nearest[window] += share * (found.height - nearest[window])
            cover[window] = np.maximum(cover[window], np.clip(0.5 - found.distance, 0, 1))
            for axis in range(3):
                normal[axis][window] += share * (found.normal[axis] - normal[axis][window])
            tint[window] += share * (found.tint - tint[window])
            in_front = weight(grid) if callable(weight) else weight
            front[window] += share * (in_front - front[window])
        return cover, normal, tint, front

    def _share(self, mine: np.ndarray, key: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        """How much a solid at depth ``mine`` shows over the nearest so far, at ``key``.

        Where both are surfaces, the change-over is spread over ``softness`` in depth and over
        a pixel and a half across at least: where a thigh rises into the pelvis the depths
        cross steeply, and the seam is anti-aliased as an outline is.
        """
        both = np.isfinite(key) & (key > -1e5) & (mine > -1e5)
        spread = np.full(mine.shape, self.softness, np.float32)
        if min(mine.shape) > 2:
            step_y, step_x = np.gradient(np.clip(ahead, -SEAM_REACH, SEAM_REACH))
            slope = np.hypot(step_x, step_y) * SEAM_PIXELS
            spread = np.where(both, np.maximum(slope, spread), spread)
        gap = np.where(both, ahead, np.where(np.isfinite(key), mine - key, 1e6))
        return np.clip(gap / spread + 0.5, 0, 1)

    def mannequin(self) -> Mannequin:
        """The painted figure as straight-alpha RGBA, with its front weight."""
        pixels = np.zeros((self.height, self.width, 4), np.uint8)
        if self.painted:
            x0, y0 = (min(box[i] for box in self.painted) for i in (0, 1))
            x1, y1 = (max(box[i] for box in self.painted) for i in (2, 3))
            alpha = self.alpha[y0:y1, x0:x1]
            rgb = self.colour[y0:y1, x0:x1] / np.maximum(alpha, 1e-6)[..., None]
            pixels[y0:y1, x0:x1, :3] = np.round(np.clip(rgb, 0, 1) * 255)
            pixels[y0:y1, x0:x1, 3] = np.round(np.clip(alpha, 0, 1) * 255)
        return Mannequin(Image.fromarray(pixels, "RGBA"), np.clip(self.front, 0, 1))


def _grid(x0: int, y0: int, x1: int, y1: int) -> Grid:
    """Pixel centres of the box, as broadcastable row and column."""
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    return xs, ys


def _union_box(boxes, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The integer box around ``boxes`` (plus a pixel for the fringe), clipped to the canvas."""
    x0 = max(0, int(np.floor(min(b[0] for b in boxes))) - 1)
    y0 = max(0, int(np.floor(min(b[1] for b in boxes))) - 1)
    x1 = min(width, int(np.ceil(max(b[2] for b in boxes))) + 2)
    y1 = min(height, int(np.ceil(max(b[3] for b in boxes))) + 2)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _shade(normal: list[np.ndarray], tint: np.ndarray) -> np.ndarray:
    """Matte shading with a little sheen: (h, w, 3) colour in 0..1."""
    # Blended seams average normals, which shortens them.
    length = np.sqrt(normal[0] ** 2 + normal[1] ** 2 + normal[2] ** 2) + 1e-6
    nx, ny, nz = (axis / length for axis in normal)
    facing = nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2]
    light = AMBIENT + DIFFUSE * np.maximum(facing, 0)
    # The sheen peaks where the surface turns toward the light halfway from the viewer.
    half = LIGHT + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    sheen = SHEEN * np.maximum(nx * half[0] + ny * half[1] + nz * half[2], 0) ** 12
    return (light * tint)[..., None] * COLOUR + sheen[..., None]


# ----------------------------------------------------------------------------------------------
# The figure's parts from the skeleton


@dataclass(frozen=True, eq=False)
class _Body:
    """The skeleton read for drawing: torso frame, limb joints, facing and the far side."""

    person: PersonAnalysis
    frame: BodyFrame
    sw: float  # the shoulder width the body would show facing the camera, pixels
    facing: float  # -1 (profile toward the image's left) .. 1 (toward its right)
    far_side: str | None  # "r", "l" or None: the arm behind the torso, the leg set back

    def point(self, name: str) -> np.ndarray | None:
        found = self.person.point(name)
        return None if found is None else np.asarray(found, np.float64)


def draw_mannequin(person: PersonAnalysis) -> Mannequin:
    """A neutral mannequin in ``person``'s pose, on a canvas of ``person``'s size.

    Parts the skeleton lacks are extrapolated (arms and legs hang straight down from the last
    joint found, the head sits above the neck); an arm with no elbow or wrist is taken to be
    behind the torso. Raises ``InvalidInputError`` when neither the shoulders nor the hips are
    known (there is nothing to hang the figure on).
    """
    frame = body_frame(person)
    body = _read_body(person, frame)
    torso = _torso(body)
    canvas = _Canvas(person.width, person.height, max(SEAM_SOFTNESS * body.sw, 0.5))
    for layer in _layers(body, torso):
        canvas.paint(layer)
    return canvas.mannequin()


def _read_body(person: PersonAnalysis, frame: BodyFrame) -> _Body:
    # A turned body shows narrow shoulders but keeps its size: the torso's length says how big
    # the head and limbs are (a small head makes MediaPipe see a shorter body).
    torso = float(np.hypot(*(frame.mid_hip - frame.neck)))
    sw = max(frame.shoulder_width, torso / TORSO_LENGTH)
    return _Body(person, frame, sw, _facing(person, frame, sw), _far_side(person, frame))


def _facing(person: PersonAnalysis, frame: BodyFrame, sw: float) -> float:
    """How far the head is turned into profile, signed by the image direction it faces."""
    nose = person.point("nose")
    ears = [p for p in (person.point("r_ear"), person.point("l_ear")) if p is not None]
    if nose is None or not ears:
        return 0.0
    offset = (np.asarray(nose) - np.mean(ears, axis=0)) @ _image_right(frame.down) / sw
    # A frontal face has its nose between the ears; a profile's is a third of sw in front.
    # Small offsets are read as frontal: a slightly turned face drawn turned makes MediaPipe
    # take the figure for one seen from behind.
    turn = (abs(offset) - FRONTAL_OFFSET) / (PROFILE_OFFSET - FRONTAL_OFFSET)
    return float(np.sign(offset) * np.clip(turn, 0, 1))


def _far_side(person: PersonAnalysis, frame: BodyFrame) -> str | None:
    """The side turned away: of an arm the camera cannot see, or of the narrower shoulder."""
    hidden = [
        side
        for side in ("r", "l")
        if person.point(f"{side}_elbow") is None and person.point(f"{side}_wrist") is None
    ]
    if len(hidden) == 1:
        return hidden[0]
    spans = {
        side: float(np.hypot(*(getattr(frame, f"{side}_shoulder") - frame.neck)))
        for side in ("r", "l")
    }
    narrow, wide = sorted(spans, key=spans.get)
    return narrow if spans[narrow] < FAR_SHOULDER_RATIO * spans[wide] else None


def _torso(body: _Body) -> _Torso:
    """The torso between the shoulder and hip joints, widened or narrowed as the joints are."""
    frame, sw = body.frame, body.sw
    origin = frame.neck
    span = frame.mid_hip - origin
    length = max(float(np.hypot(*span)), 0.5 * sw)
    down = span / max(float(np.hypot(*span)), 1e-6) if np.hypot(*span) > 1e-6 else frame.down
    across = np.array([-down[1], down[0]])
    scales = [_side_scales(frame, sw, across, sign) for sign in (1, -1)]
    top, bottom = -SHOULDER_CAP * sw, length + PELVIS_CAP * sw
    u = np.linspace(top, bottom, TORSO_SAMPLES)
    fraction = np.clip(u / length, 0, 1)
    profile = np.interp(fraction, *zip(*TORSO_PROFILE, strict=True)) * sw
    cap = np.ones_like(u)
    above, below = u < 0, u > length
    # The shoulders' top is a superellipse: its flatter power slopes from neck to shoulder.
    cap[above] = np.clip(1 - np.abs(u[above] / top) ** SHOULDER_SLOPE, 0, 1) ** (1 / SHOULDER_SLOPE)
    cap[below] = np.sqrt(np.clip(1 - ((u[below] - length) / (bottom - length)) ** 2, 0, 1))
    widths = [
        _smooth(profile * cap * (shoulder + (hip - shoulder) * fraction))
        for shoulder, hip in scales
    ]
    middle = _profile_bulge(fraction, body.facing, sw)
    details = TORSO_FRONT if body.point("nose") is not None else TORSO_BACK
    # Turned into profile, the details of the front or back slip out of sight.
    faded = tuple((*detail[:4], detail[4] * (1 - abs(body.facing))) for detail in details)
    return _Torso(origin, down, across, u, widths[0], widths[1], middle, length, faded)


def _smooth(values: np.ndarray) -> np.ndarray:
    """``values`` blurred along the torso: the outline's corners would shade as bands."""
    reach = 3 * TORSO_SMOOTHING
    kernel = np.exp(-0.5 * (np.arange(-reach, reach + 1) / TORSO_SMOOTHING) ** 2)
    padded = np.pad(values, reach, mode="edge")
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def _side_scales(frame: BodyFrame, sw: float, across: np.ndarray, sign: int) -> tuple[float, float]:
    """How wide the torso shows on one side at the shoulders and at the hips, front view = 1."""
    shoulders = [sign * (p - frame.neck) @ across for p in (frame.r_shoulder, frame.l_shoulder)]
    hips = [sign * (p - frame.mid_hip) @ across for p in (frame.r_hip, frame.l_hip)]
    shoulder = max(*shoulders, 0.0) / (0.5 * sw)
    hip = max(*hips, 0.0) / (HALF_HIP_SPAN * sw)
    return (
        float(np.clip(shoulder, MIN_TORSO_SCALE, 1.25)),
        float(np.clip(hip, MIN_TORSO_SCALE, 1.3)),
    )


def _profile_bulge(fraction: np.ndarray, facing: float, sw: float) -> np.ndarray:
    """The middle line's shift along ``across``: in profile the chest is forward, the seat back.

    ``across`` points to the image's left when the torso hangs straight down, so facing right
    (``facing`` > 0) is a negative shift.
    """
    chest = 0.07 * np.exp(-(((fraction - 0.3) / 0.18) ** 2))
    seat = 0.05 * np.exp(-(((fraction - 1.0) / 0.15) ** 2))
    return -facing * (chest - seat) * sw


def _layers(body: _Body, torso: _Torso) -> list[_Layer]:
    """The figure's layers, back to front.

    The legs share the torso's layer: where a thigh meets the pelvis the nearer surface shows,
    which draws the seam where a mannequin's leg joins its hips, and a thigh pointing at the
    camera (seated) comes in front of the belly by itself.
    """
    far = body.far_side
    neck_top = _head_centre(body) - _head_down(body) * 0.1 * body.sw
    neck_base = body.frame.neck + body.frame.down * 0.05 * body.sw
    neck = _Tube(neck_base, neck_top, NECK[0] * body.sw, NECK[1] * body.sw)
    trunk = ((torso, 0.0), (neck, 0.0), *_leg(body, "r"), *_leg(body, "l"))
    layers = [] if far is None else [_arm(body, far, torso)]
    layers += [_Layer(trunk), _Layer(((_head(body), 0.0),))]
    layers += [_arm(body, side, torso) for side in ("r", "l") if side != far]
    return layers


def _arm(body: _Body, side: str, torso: _Torso) -> _Layer:
    """Upper arm, forearm and hand; the hand and the forearm over the torso are "front"."""
    sw = body.sw
    shoulder, elbow, wrist = limb_chain(body.person, body.frame, side, "arm")
    direction = _hand_direction(body, side, elbow, wrist)
    palm = wrist + direction * (HAND_LENGTH * 0.45 * sw)
    tip = wrist + direction * (HAND_LENGTH * sw)
    on_forearm = (SURFACE * sw,) * 2

    def over_torso(grid: Grid) -> np.ndarray:
        return np.clip(FRONT_MARGIN * sw + 0.5 - torso.surface(grid).distance, 0, 1)

    return _Layer(
        (
            (_Tube(shoulder, elbow, UPPER_ARM[0] * sw, UPPER_ARM[1] * sw), 0.0),
            (_Tube(elbow, wrist, FOREARM[0] * sw, FOREARM[1] * sw), over_torso),
            (_Tube(wrist, palm, HAND_PALM[0] * sw, HAND_PALM[1] * sw, on_forearm), 1.0),
            (_Tube(palm, tip, HAND_TIP[0] * sw, HAND_TIP[1] * sw, on_forearm), 1.0),
        )
    )


def _hand_direction(body: _Body, side: str, elbow: np.ndarray, wrist: np.ndarray) -> np.ndarray:
    """Which way the hand points from the wrist.

    A forearm crossing the body's middle (arms folded) ends in a hand gripping the other upper
    arm from the outside, above its elbow. A forearm reaching down toward the middle ends in a hand
    laid on the hip or thigh, pointing down it, not at the groin. Otherwise the hand follows the
    forearm, drooping a little.
    """
    frame, down = body.frame, body.frame.down
    outward = frame.across if side == "r" else -frame.across
    forearm = _unit(wrist - elbow, down)
    if (wrist - frame.neck) @ outward < 0 < (elbow - frame.neck) @ outward:
        other = "l" if side == "r" else "r"
        _, other_elbow, _ = limb_chain(body.person, frame, other, "arm")
        grip = other_elbow - outward * GRIP[0] * body.sw - down * GRIP[1] * body.sw
        return _unit(grip - wrist, down)
    if forearm @ down > 0.3 and -(forearm @ outward) > 0.3:
        return _unit(down + 0.15 * outward, down)
    return _unit(forearm + HAND_DROOP * down, down)


def _leg(body: _Body, side: str) -> tuple[tuple[_Tube, Front], ...]:
    """Thigh, calf and foot, at the depth the skeleton implies.

    A thigh shorter in the picture than a thigh is long points at the camera: its knee is that
    much nearer, and so are the calf and foot. The far leg of a turned body sits a little back.
    """
    sw = body.sw
    hip, knee, ankle = limb_chain(body.person, body.frame, side, "leg")
    seen = float(np.hypot(*(knee - hip))) / (THIGH_LENGTH * sw)
    toward = np.sqrt(max(1 - seen**2, 0.0))
    back = -FAR_LEG_DEPTH * sw if side == body.far_side else 0.0
    hip_depth, knee_depth = back, back + toward * THIGH_LENGTH * sw
    # Seen end-on, a thigh keeps its full width down to the knee.
    knee_radius = THIGH[1] + (THIGH[0] - THIGH[1]) * 0.7 * toward**2
    calf = knee + (ankle - knee) * CALF_BULGE
    outward = body.frame.across if side == "r" else -body.frame.across
    turn = abs(body.facing)
    toe = ankle + sw * (
        body.frame.down * (FOOT_DROP - 0.1 * turn)
        + _image_right(body.frame.down) * body.facing * FOOT_LENGTH
        + outward * 0.05 * (1 - turn)
    )
    below_knee = (knee_depth, knee_depth)
    on_shin = (knee_depth + SURFACE * sw,) * 2
    tubes = (
        _Tube(hip, knee, THIGH[0] * sw, knee_radius * sw, (hip_depth, knee_depth)),
        _Tube(knee, calf, KNEE_TO_CALF[0] * sw, KNEE_TO_CALF[1] * sw, below_knee),
        _Tube(calf, ankle, CALF_TO_ANKLE[0] * sw, CALF_TO_ANKLE[1] * sw, below_knee),
        _Tube(ankle, toe, FOOT[0] * sw, FOOT[1] * sw, on_shin),
    )
    return tuple((tube, 0.0) for tube in tubes)


def _head_down(body: _Body) -> np.ndarray:
    """From crown to chin: across the eyes' line when both are seen, else down the torso."""
    eyes = body.point("r_eye"), body.point("l_eye")
    if eyes[0] is None or eyes[1] is None:
        return body.frame.down
    line = eyes[0] - eyes[1]
    down = np.array([line[1], -line[0]])
    down = down if down @ body.frame.down >= 0 else -down
    return _unit(down, body.frame.down)


def _head_centre(body: _Body) -> np.ndarray:
    """The middle of the head oval, at about eye level, from whatever face points are seen."""
    sw, up = body.sw, -_head_down(body)
    nose = body.point("nose")
    eyes = [body.point(f"{side}_eye") for side in ("r", "l")]
    ears = [p for p in (body.point("r_ear"), body.point("l_ear")) if p is not None]
    ahead = _image_right(-up) * body.facing * sw
    guesses = []
    if nose is not None:
        guesses.append(nose + up * 0.08 * sw - ahead * 0.12)
    if eyes[0] is not None and eyes[1] is not None:
        guesses.append((eyes[0] + eyes[1]) / 2)
    if len(ears) == 2:
        guesses.append((ears[0] + ears[1]) / 2 + up * 0.05 * sw)
    elif ears:
        guesses.append(ears[0] + up * 0.05 * sw + ahead * 0.1)
    if not guesses:
        return body.frame.neck + up * 0.62 * sw
    return np.mean(guesses, axis=0)


def _head(body: _Body) -> _Head:
    """The head; it has a face only when the skeleton's nose is seen (not in a back view)."""
    sw = body.sw
    # In profile the head shows its depth, front to back, which is wider than its face.
    width = HEAD_HALF_WIDTH * (1 + 0.2 * abs(body.facing)) * sw
    return _Head(
        _head_centre(body),
        _head_down(body),
        width,
        HEAD_HALF_HEIGHT * sw,
        yaw=body.facing * PROFILE_YAW,
        face=body.point("nose") is not None,
    )


def _signed_sqrt(values: np.ndarray) -> np.ndarray:
    """The square root, negated for negative values: a surface's height continued outside."""
    return np.sign(values) * np.sqrt(np.abs(values))


def _image_right(down: np.ndarray) -> np.ndarray:
    """The image's right for a figure whose "down" is ``down`` (x right, y down)."""
    return np.array([down[1], -down[0]])


def _unit(vector: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    length = float(np.hypot(*vector))
    return vector / length if length > 1e-6 else fallback
