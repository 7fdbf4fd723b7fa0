"""Uploaded pictures are untrusted: decide the format by content, check limits, re-encode.

Every picture the site stores goes through :func:`clean_image_upload`, which returns new bytes
written by Pillow (EXIF orientation applied, metadata dropped, nothing appended after the image
survives) under a random file name. The original upload is never written to storage.
"""

import base64
import binascii
import io
import math
import uuid
import warnings

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.pictures import MAX_ASPECT

# Pillow format name -> (file extension, save options). Decided by content, never by file name.
ACCEPTED_FORMATS = {
    "JPEG": ("jpg", {"quality": 92, "optimize": True}),
    "PNG": ("png", {"optimize": True}),
    "WEBP": ("webp", {"quality": 92}),
}
# The file input's "accept" attribute for those formats.
ACCEPT_ATTRIBUTE = ",".join(f"image/{fmt.lower()}" for fmt in ACCEPTED_FORMATS)


# A person photo or a product shot is at most this much longer than wide (a standing person's
# full-body crop is about 1:3). A client's own picture to inpaint, and any picture only read
# (png-info), may be as thin as the pictures this site makes: ANY_PICTURE_MAX_ASPECT.
PHOTO_MAX_ASPECT = 4.0
ANY_PICTURE_MAX_ASPECT = MAX_ASPECT


def _megabytes(n_bytes: int, *, round_up: bool = False) -> str:
    """``n_bytes`` in MB to a tenth; a file's size is rounded up and a limit down, so a file
    just over the limit never reads as the same number."""
    tenths = n_bytes * 10 / (1024 * 1024)
    return f"{(math.ceil(tenths) if round_up else math.floor(tenths)) / 10:g} MB"


def open_untrusted_image(data: bytes, *, max_aspect: float = PHOTO_MAX_ASPECT) -> Image.Image:
    """Open and fully decode ``data``; refuse anything but a complete JPEG, PNG or WebP within
    the limits (``ValidationError`` with a message for people): ``UPLOAD_MAX_PIXELS``,
    ``UPLOAD_MAX_SIDE`` on each side and ``max_aspect``, all read from the header first."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat it as a bomb too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
            _check_dimensions(*image.size, max_aspect=max_aspect)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError(
            f"The picture has more pixels than the limit of "
            f"{settings.UPLOAD_MAX_PIXELS / 1e6:.0f} megapixels.",
            code="too_many_pixels",
        ) from None
    except UnidentifiedImageError:
        raise ValidationError(
            "This file is not a JPEG, PNG or WebP picture.", code="not_an_image"
        ) from None
    except (OSError, SyntaxError, ValueError):
        raise ValidationError(
            "The picture is damaged or incomplete; please upload it again.", code="corrupt_image"
        ) from None
    return image


def _check_dimensions(width: int, height: int, *, max_aspect: float) -> None:
    """Refuse a picture by the size its header declares, before any pixel is decoded.

    Beside the pixel budget, each side and the aspect ratio are bounded: OpenCV and MediaPipe
    abort the whole process on a side of 32767 or more (``pipelines.pictures``), and a sliver
    reaches such a side within any pixel budget.
    """
    if width * height > settings.UPLOAD_MAX_PIXELS:
        raise ValidationError(
            f"The picture is {width}×{height} pixels; the limit is "
            f"{settings.UPLOAD_MAX_PIXELS / 1e6:.0f} megapixels.",
            code="too_many_pixels",
        )
    if max(width, height) > settings.UPLOAD_MAX_SIDE:
        raise ValidationError(
            f"The picture is {width}×{height} pixels; each side may be at most "
            f"{settings.UPLOAD_MAX_SIDE} pixels.",
            code="side_too_long",
        )
    long, short = max(width, height), min(width, height)
    if long > max_aspect * short:
        raise ValidationError(
            f"The picture is {width}×{height} pixels: its long side is {long / short:.1f} times "
            f"its short side; at most {max_aspect:g} times is accepted.",
            code="too_narrow",
        )


def _normalised(image: Image.Image) -> Image.Image:
    """Upright pixels in RGB or RGBA, with none of the source file's metadata attached."""
    upright = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    )
    converted = upright.convert("RGBA" if has_alpha else "RGB")
    # A fresh image carries pixels only: no EXIF, GPS, XMP, ICC profile or comments.
    clean = Image.new(converted.mode, converted.size)
    clean.paste(converted)
    return clean


def clean_image_upload(uploaded, *, max_aspect: float = PHOTO_MAX_ASPECT) -> ContentFile:
    """Validate an uploaded picture and return it re-encoded under a random name.

    Raises ``ValidationError`` as :func:`clean_image` does.
    """
    return clean_image(uploaded, max_aspect=max_aspect)[1]


def clean_image(
    uploaded, *, max_aspect: float = PHOTO_MAX_ASPECT
) -> tuple[Image.Image, ContentFile]:
    """Validate an uploaded picture: its pixels (upright, RGB or RGBA) and the file to store,
    re-encoded under a random name. The pixels spare a caller that looks at the picture
    (the try-on's pose check) decoding the file again.

    Raises ``ValidationError`` with a message for the person who uploaded it when the file is not
    a JPEG/PNG/WebP picture, is damaged, is larger than ``UPLOAD_MAX_BYTES``, has more than
    ``UPLOAD_MAX_PIXELS`` pixels or a side over ``UPLOAD_MAX_SIDE``, is longer than
    ``max_aspect`` times its width (a person photo's or product shot's limit unless said) or is
    smaller than ``UPLOAD_MIN_SIDE`` on its short side.
    """
    if uploaded.size > settings.UPLOAD_MAX_BYTES:
        raise ValidationError(
            f"The file is {_megabytes(uploaded.size, round_up=True)}; the limit is "
            f"{_megabytes(settings.UPLOAD_MAX_BYTES)}.",
            code="too_large",
        )
    uploaded.seek(0)
    source = open_untrusted_image(uploaded.read(), max_aspect=max_aspect)
    if min(source.size) < settings.UPLOAD_MIN_SIDE:
        raise ValidationError(
            f"The picture is {source.width}×{source.height} pixels; it must be at least "
            f"{settings.UPLOAD_MIN_SIDE} pixels on its short side.",
            code="too_small",
        )
    image = _normalised(source)
    extension, options = ACCEPTED_FORMATS[source.format]
    buffer = io.BytesIO()
    image.save(buffer, format=source.format, **options)
    return image, ContentFile(buffer.getvalue(), name=f"{uuid.uuid4().hex}.{extension}")


def decode_base64_upload(text, field: str) -> SimpleUploadedFile:
    """A picture sent inside JSON as base64 (bare or as a ``data:`` URL), as an upload for
    :func:`clean_image_upload`. Raises ``ValidationError`` naming ``field`` when it is not
    base64 or decodes to more than ``UPLOAD_MAX_BYTES``."""
    if not isinstance(text, str):
        raise ValidationError({field: ["must be a base64-encoded picture"]})
    _, _, payload = text.rpartition(",") if text.startswith("data:") else ("", "", text)
    # Checked before decoding: base64 is 4 characters for 3 bytes.
    if len(payload) * 3 // 4 > settings.UPLOAD_MAX_BYTES:
        limit = _megabytes(settings.UPLOAD_MAX_BYTES)
        raise ValidationError({field: [f"The picture is larger than the {limit} limit."]})
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError({field: ["is not valid base64"]}) from None
    return SimpleUploadedFile(field, raw)
