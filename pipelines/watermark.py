"""An invisible watermark in generated pictures, as Stable Diffusion's own scripts add one.

``invisible-watermark``'s ``dwtDct`` method (the one SD's ``txt2img.py`` and diffusers' SDXL
pipelines use) hides :data:`WATERMARK_PAYLOAD` in the DCT of the picture's wavelet transform, in
the U colour channel, all over the picture. It survives saving as PNG and mild re-encoding, but
it changes pixels everywhere (by about one level on average on a photo), so a watermarked
try-on is no longer pixel-exact outside its mask: it is optional, off by default.

``imwatermark`` imports torch when it is imported, so it is imported here only when a picture is
marked or read (workers and the CLI, never the web process).
"""

import numpy as np
from PIL import Image

from .errors import InvalidInputError

# The bytes hidden in every picture we mark: the project's name, 40 bits. Reading them back
# with read_watermark tells our pictures apart (SDXL marks its own with a different 48-bit code).
WATERMARK_PAYLOAD = b"tryon"
METHOD = "dwtDct"
# invisible-watermark refuses pictures below 256 × 256 pixels in area.
MIN_PIXELS = 256 * 256


def can_watermark(image: Image.Image) -> bool:
    """Whether ``image`` is large enough to carry the watermark (256 × 256 pixels in area)."""
    return image.width * image.height >= MIN_PIXELS


def apply_watermark(image: Image.Image, payload: bytes = WATERMARK_PAYLOAD) -> Image.Image:
    """``image`` (as RGB) with ``payload`` hidden in it; raises ``InvalidInputError`` when the
    picture is smaller than :data:`MIN_PIXELS` or the payload is empty."""
    from imwatermark import WatermarkEncoder

    _check_size(image)
    if not payload:
        raise InvalidInputError("payload", "the watermark needs at least one byte")
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", payload)
    # The library works on OpenCV's BGR order.
    marked = encoder.encode(_bgr(image), METHOD)
    return Image.fromarray(np.ascontiguousarray(marked[:, :, ::-1]), "RGB")


def read_watermark(image: Image.Image, length: int = len(WATERMARK_PAYLOAD)) -> bytes:
    """The ``length`` bytes hidden in ``image`` (noise for an unmarked picture)."""
    from imwatermark import WatermarkDecoder

    _check_size(image)
    return WatermarkDecoder("bytes", length * 8).decode(_bgr(image), METHOD)


def _check_size(image: Image.Image) -> None:
    if not can_watermark(image):
        raise InvalidInputError(
            "image",
            f"{image.width}x{image.height} is too small for the watermark "
            f"(at least {MIN_PIXELS} pixels in area)",
        )


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
