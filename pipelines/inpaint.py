"""Inpainting a client's own picture: the WebUI's img2img, with its mask and ControlNet inputs.

No garment is involved: the client gives the picture, the mask (white = repaint) and, per
ControlNet slot, a preprocessor (sd-webui-controlnet's ``module``) and optionally the picture it
reads (its ``image``; the init picture otherwise). ``pipelines.tryon.run`` runs it as the
``inpaint`` mode; this module prepares the inputs and gives the ``preview`` engine its result.

Nothing here imports torch at module level: web processes use ``control_slot`` to check a
request before it is queued.
"""

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .request import OPENPOSE_MODULES, ControlInput, check_control

# The WebUI's default mask blur for inpainting, in pixels.
WEBUI_MASK_BLUR = 4.0
# Classical fill of the preview engine: radius of OpenCV's Telea inpainting, in pixels.
FILL_RADIUS = 9


def control_map(slot: str, control: ControlInput | None, picture: Image.Image) -> Image.Image:
    """The map for ``slot`` at ``picture``'s size; black (no guidance) without an input."""
    if control is None:
        return Image.new("RGB", picture.size)
    check_control(
        slot, control.module, has_image=control.image is not None, thresholds=control.thresholds
    )
    source = (control.image or picture).convert("RGB")
    if source.size != picture.size:
        source = source.resize(picture.size, Image.LANCZOS)
    module = control.module.lower()
    if module == "none":
        return source
    if slot == "canny":
        from .canny import canny_map

        low, high = control.thresholds
        return canny_map(source, round(low), round(high))
    from .person import analyze_person, render_openpose

    try:
        person = analyze_person(source)
    except InvalidInputError as error:
        raise InvalidInputError("controlnet.openpose", error.message) from None
    return render_openpose(person, **OPENPOSE_MODULES[module])


def inpaint_mask(mask: Image.Image | None, size: tuple[int, int], blur: float) -> Image.Image:
    """The repaint mask at ``size`` (the whole picture when none is given), blurred as the WebUI
    blurs it (a Gaussian of sigma ``blur`` pixels)."""
    if mask is None:
        return Image.new("L", size, 255)
    if mask.size != size:
        raise InvalidInputError(
            "mask",
            f"must have the picture's size {size[0]}×{size[1]}, got {mask.width}×{mask.height}",
        )
    alpha = np.asarray(_grey(mask))
    if not alpha.any():
        raise InvalidInputError("mask", "is empty: paint white where the picture should change")
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    return Image.fromarray(alpha, "L")


def _grey(mask: Image.Image) -> Image.Image:
    # A transparent mask (editor plugins send RGBA) marks its painted area by alpha.
    if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema()[0] < 255:
        return mask.getchannel("A")
    return mask.convert("L")


def classical_fill(picture: Image.Image, mask: Image.Image) -> Image.Image:
    """The preview engine's inpaint: OpenCV's Telea fill of the masked area, blended in through
    the (feathered) mask. No weights needed; for large areas it is a smooth guess."""
    pixels = np.asarray(picture.convert("RGB"))
    alpha = np.asarray(mask, np.float32)[:, :, None] / 255.0
    hole = (alpha[:, :, 0] >= 0.5).astype(np.uint8)
    filled = cv2.inpaint(pixels, hole, FILL_RADIUS, cv2.INPAINT_TELEA)
    blended = filled * alpha + pixels * (1 - alpha)
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")
