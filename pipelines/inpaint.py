"""Inpainting a client's own picture: the WebUI's img2img, with its mask and ControlNet inputs.

No garment is involved: the client gives the picture, the mask (white = repaint) and, per
ControlNet slot, a preprocessor (sd-webui-controlnet's ``module``) and optionally the picture it
reads (its ``image``; the init picture otherwise). ``pipelines.tryon.run`` runs it as the
``inpaint`` mode; this module prepares the inputs and gives the ``preview`` engine its result.

Nothing here imports torch at module level: web processes use ``control_slot`` to check a
request before it is queued.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .params import CONTROL_NAMES

# The WebUI's default mask blur for inpainting, in pixels.
WEBUI_MASK_BLUR = 4.0
# sd-webui-controlnet's OpenPose preprocessors and what each draws besides the body.
OPENPOSE_MODULES = {
    "openpose": {"hands": False, "face": False},
    "openpose_hand": {"hands": True, "face": False},
    "openpose_face": {"hands": False, "face": True},
    "openpose_full": {"hands": True, "face": True},
    "dw_openpose_full": {"hands": True, "face": True},
}
CANNY_MODULES = ("canny",)
# "none": the unit's image already is the map.
MODULES = (*OPENPOSE_MODULES, *CANNY_MODULES, "none")
CANNY_THRESHOLDS = (100, 200)  # sd-webui-controlnet's defaults for threshold_a, threshold_b
# Classical fill of the preview engine: radius of OpenCV's Telea inpainting, in pixels.
FILL_RADIUS = 9


@dataclass(frozen=True, eq=False)
class ControlInput:
    """One ControlNet slot's input: a preprocessor and the picture it reads.

    ``image`` None means the init picture (it must then not be "none", which needs a map).
    ``thresholds`` are Canny's low and high thresholds.
    """

    module: str
    image: Image.Image | None = None
    thresholds: tuple[int, int] = CANNY_THRESHOLDS


def control_slot(module: str, model: str = "") -> str:
    """Which of our ControlNets ("openpose" or "canny") a WebUI unit drives.

    Decided by its preprocessor, or for ``module="none"`` by its model's name (e.g.
    "control_v11p_sd15_openpose [cab727d4]"). Raises ``InvalidInputError`` naming "module".
    """
    module = (module or "none").lower()
    if module in OPENPOSE_MODULES:
        return "openpose"
    if module in CANNY_MODULES:
        return "canny"
    if module != "none":
        raise InvalidInputError(
            "module", f"{module!r} is not available; use one of {', '.join(MODULES)}"
        )
    named = [slot for slot in CONTROL_NAMES if slot in (model or "").lower()]
    if len(named) != 1:
        raise InvalidInputError(
            "model",
            f"with module 'none' the model's name must say openpose or canny; got {model!r}",
        )
    return named[0]


def check_control(
    slot: str, module: str, *, has_image: bool, thresholds: tuple = CANNY_THRESHOLDS
) -> None:
    """Refuse a slot input that cannot make a map; raises ``InvalidInputError`` naming the
    unit's field ("module", "image" or "threshold_a")."""
    module = (module or "none").lower()
    if module == "none":
        if not has_image:
            raise InvalidInputError("image", f"the {slot} unit with module 'none' needs an image")
    elif control_slot(module) != slot:
        raise InvalidInputError("module", f"{module!r} does not make a {slot} map")
    numbers = [value for value in thresholds if isinstance(value, int | float)]
    if len(numbers) != 2 or isinstance(thresholds, str) or not 0 <= numbers[0] <= numbers[1] <= 255:
        raise InvalidInputError("threshold_a", "Canny thresholds need 0 ≤ low ≤ high ≤ 255")


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
