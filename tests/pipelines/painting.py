"""What the tests of one diffusion pass on the tiny engine share: a small picture to inpaint,
a drawn garment's cut-out, one pass painted from them, and how far two results are apart."""

import numpy as np
from PIL import Image

from pipelines.samples import draw_product_shot

SIZE = (64, 96)  # the processing size: 8 × 12 latents on the tiny kit


def inpaint_inputs() -> tuple[Image.Image, Image.Image, tuple[Image.Image, Image.Image]]:
    """A seeded noise picture at ``SIZE``, a rectangular mask inside it and two blank maps."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (SIZE[1], SIZE[0], 3), np.uint8))
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, (8, 16, 56, 80))
    return image, mask, (Image.new("RGB", SIZE), Image.new("RGB", SIZE))


def garment_cutout(kind: str) -> Image.Image:
    """A drawn product shot of ``kind`` as an RGBA cut-out (its known mask as alpha)."""
    shot = draw_product_shot(kind, size=(192, 256))
    cutout = shot.image.convert("RGBA")
    cutout.putalpha(shot.mask)
    return cutout


def paint(generator, inputs, params, **pictures) -> np.ndarray:
    """``generator.paint`` of ``inputs`` (``inpaint_inputs()``) at full strength, a fixed prompt
    and ``params.seed``, with ``pictures`` (``reference=``, ``garment=``); its levels as int16."""
    image, mask, controls = inputs
    painted = generator.paint(
        image=image,
        mask=mask,
        controls=controls,
        prompt="a shirt",
        negative_prompt="",
        params=params,
        strength=1.0,
        seed=params.seed,
        **pictures,
    )
    return np.asarray(painted, np.int16)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The mean absolute difference of two pictures' levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
