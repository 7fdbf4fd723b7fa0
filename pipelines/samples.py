"""Synthetic garment product shots with their exact masks.

The demo catalog (``seed_demo``), the tests and the benchmarks draw garments here instead of
shipping photos: each drawing comes with the ground-truth mask it was drawn from, so the cut-out
can be scored against it.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

# Outlines on a unit canvas (x right, y down), drawn to fill a portrait product shot. On the
# default 768×1024 canvas the proportions are those of real garments laid flat (a tee is about
# 1.45 shoulder widths long, trousers about 3 waist widths). Each garment is a list of polygons
# added to the mask, then a list of holes cut out of it.
_SHAPES: dict[str, tuple[list[list[tuple[float, float]]], list[list[tuple[float, float]]]]] = {
    "tshirt": (
        [
            [
                (0.42, 0.26),
                (0.58, 0.26),
                (0.72, 0.29),
                (0.88, 0.40),
                (0.83, 0.47),
                (0.70, 0.42),
                (0.70, 0.77),
                (0.30, 0.77),
                (0.30, 0.42),
                (0.17, 0.47),
                (0.12, 0.40),
                (0.28, 0.29),
            ]
        ],
        [[(0.42, 0.26), (0.46, 0.30), (0.50, 0.31), (0.54, 0.30), (0.58, 0.26)]],
    ),
    "hoodie": (
        [
            [
                (0.43, 0.23),
                (0.57, 0.23),
                (0.70, 0.26),
                (0.90, 0.74),
                (0.82, 0.76),
                (0.69, 0.42),
                (0.69, 0.76),
                (0.31, 0.76),
                (0.31, 0.42),
                (0.18, 0.76),
                (0.10, 0.74),
                (0.30, 0.26),
            ]
        ],
        [[(0.43, 0.23), (0.46, 0.27), (0.50, 0.29), (0.54, 0.27), (0.57, 0.23)]],
    ),
    "trousers": (
        [
            [
                (0.33, 0.10),
                (0.67, 0.10),
                (0.73, 0.92),
                (0.53, 0.92),
                (0.50, 0.36),
                (0.47, 0.92),
                (0.27, 0.92),
            ]
        ],
        [],
    ),
    "skirt": (
        [[(0.36, 0.25), (0.64, 0.25), (0.78, 0.66), (0.22, 0.66)]],
        [],
    ),
    "dress": (
        [
            [
                (0.33, 0.10),
                (0.38, 0.10),
                (0.50, 0.20),
                (0.62, 0.10),
                (0.67, 0.10),
                (0.75, 0.24),
                (0.70, 0.40),
                (0.88, 0.92),
                (0.12, 0.92),
                (0.30, 0.40),
                (0.25, 0.24),
            ]
        ],
        [],
    ),
    "jacket": (
        [
            [
                (0.42, 0.18),
                (0.58, 0.18),
                (0.74, 0.21),
                (0.94, 0.77),
                (0.85, 0.79),
                (0.73, 0.42),
                (0.73, 0.86),
                (0.27, 0.86),
                (0.27, 0.42),
                (0.15, 0.79),
                (0.06, 0.77),
                (0.26, 0.21),
            ]
        ],
        # The open front between the lapels shows the background.
        [[(0.42, 0.18), (0.58, 0.18), (0.51, 0.50), (0.49, 0.50)]],
    ),
}

CATEGORY_OF_SHAPE = {
    "tshirt": "upper",
    "hoodie": "upper",
    "trousers": "lower",
    "skirt": "lower",
    "dress": "dress",
    "jacket": "outer",
}


@dataclass(frozen=True)
class ProductShot:
    """A drawn product photo and the mask (255 = garment) it was drawn from."""

    image: Image.Image
    mask: Image.Image
    category: str


def _polygon(points, width, height):
    return [(x * width, y * height) for x, y in points]


def garment_mask(shape: str, size: tuple[int, int]) -> Image.Image:
    """The exact mask of ``shape`` drawn on a canvas of ``size`` (255 inside, 0 outside)."""
    if shape not in _SHAPES:
        raise ValueError(f"shape must be one of {', '.join(_SHAPES)}, not {shape!r}")
    width, height = size
    outlines, holes = _SHAPES[shape]
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for outline in outlines:
        draw.polygon(_polygon(outline, width, height), fill=255)
    for hole in holes:
        draw.polygon(_polygon(hole, width, height), fill=0)
    return mask


def _fabric(size, colour, stripes: bool) -> Image.Image:
    """Cloth-like fill: the colour with soft vertical shading and optional stripes."""
    width, height = size
    shade = Image.linear_gradient("L").rotate(90, expand=True).resize(size)
    base = Image.new("RGB", size, colour)
    darker = Image.new("RGB", size, tuple(int(c * 0.72) for c in colour))
    fabric = Image.composite(base, darker, ImageChops.invert(shade).point(lambda v: 150 + v // 3))
    if stripes:
        draw = ImageDraw.Draw(fabric)
        contrast = tuple(255 - c for c in colour)
        for y in range(0, height, max(8, height // 24)):
            draw.rectangle([0, y, width, y + max(2, height // 120)], fill=contrast)
    return fabric


def _background(size, kind: str, colour) -> Image.Image:
    width, height = size
    if kind == "plain":
        return Image.new("RGB", size, colour)
    if kind == "gradient":
        ramp = Image.linear_gradient("L").resize(size)
        return Image.merge(
            "RGB", [ramp.point(lambda v, c=c: int(c * 0.8 + v * 0.2 * c / 255)) for c in colour]
        )
    if kind == "textured":
        # Seeded, so the same call draws the same picture (tests compare drawings).
        grain = np.random.default_rng(0).normal(128, 24, (height, width)).clip(0, 255)
        noise = Image.fromarray(grain.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
        return Image.merge(
            "RGB", [noise.point(lambda v, c=c: max(0, min(255, c - 128 + v))) for c in colour]
        )
    raise ValueError(f"background must be plain, gradient or textured, not {kind!r}")


def draw_product_shot(
    shape: str,
    *,
    colour: tuple[int, int, int] = (40, 90, 170),
    size: tuple[int, int] = (768, 1024),
    background: str = "plain",
    background_colour: tuple[int, int, int] = (245, 245, 245),
    stripes: bool = False,
    label: str | None = None,
) -> ProductShot:
    """Draw a garment ``shape`` as a studio product photo and return it with its exact mask."""
    mask = garment_mask(shape, size)
    picture = _background(size, background, background_colour)
    picture.paste(_fabric(size, colour, stripes), (0, 0), mask)
    if label:
        # A printed logo: the kind of detail model shots must keep exact.
        # Clipped to the mask so the ground truth stays exact.
        box = mask.getbbox()
        printed = picture.copy()
        centre_x = (box[0] + box[2]) // 2
        ImageDraw.Draw(printed).text(
            (centre_x, box[1] + (box[3] - box[1]) * 0.3),
            label,
            fill=(250, 250, 250),
            anchor="mm",
            font_size=max(12, size[0] // 16),
        )
        picture = Image.composite(printed, picture, mask)
    return ProductShot(image=picture, mask=mask, category=CATEGORY_OF_SHAPE[shape])


@dataclass(frozen=True)
class DemoLook:
    """How a demo catalog garment is drawn, and the colour word its prompt uses."""

    shape: str
    rgb: tuple[int, int, int]
    colour: str
    stripes: bool = False
    label: str | None = None

    def draw(self, size: tuple[int, int] = (768, 1024)) -> ProductShot:
        return draw_product_shot(
            self.shape, colour=self.rgb, size=size, stripes=self.stripes, label=self.label
        )


# The demo catalog's garments by SKU: ``seed_demo`` sells them, ``python -m pipelines panel``
# tries them on.
DEMO_LOOKS: dict[str, DemoLook] = {
    "DEMO-TEE-NAVY": DemoLook("tshirt", (32, 52, 110), "navy", label="TRY"),
    "DEMO-TEE-STRIPE": DemoLook("tshirt", (235, 235, 235), "white and navy", stripes=True),
    "DEMO-HOODIE-RED": DemoLook("hoodie", (170, 40, 45), "red", label="ON"),
    "DEMO-TROUSERS-SAND": DemoLook("trousers", (196, 170, 120), "sand"),
    "DEMO-SKIRT-GREEN": DemoLook("skirt", (40, 110, 70), "green"),
    "DEMO-DRESS-ROSE": DemoLook("dress", (210, 110, 130), "rose"),
    "DEMO-JACKET-OLIVE": DemoLook("jacket", (85, 95, 55), "olive"),
}
