"""common.uploads.clean_image_upload: content-sniffed, limited, re-encoded pictures."""

import io
import re

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from common.uploads import clean_image_upload


def _upload(data, name="photo.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def _encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "extension"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_accepted_formats_keep_their_format_under_a_random_name(fmt, extension):
    data = _encode(Image.new("RGB", (200, 300), (10, 20, 30)), fmt)
    first = clean_image_upload(_upload(data, name="shirt.gif"))
    second = clean_image_upload(_upload(data, name="shirt.gif"))
    assert first.name.endswith(f".{extension}") and first.name != second.name
    assert "shirt" not in first.name
    with Image.open(io.BytesIO(first.read())) as decoded:
        assert decoded.format == fmt and decoded.size == (200, 300)


def test_transparency_is_kept():
    picture = Image.new("RGBA", (200, 200), (255, 0, 0, 0))
    picture.paste((0, 0, 255, 255), (50, 50, 150, 150))
    cleaned = clean_image_upload(_upload(_encode(picture, "PNG")))
    with Image.open(io.BytesIO(cleaned.read())) as decoded:
        assert decoded.mode == "RGBA"
        assert decoded.getpixel((0, 0))[3] == 0 and decoded.getpixel((100, 100)) == (0, 0, 255, 255)


def test_bytes_appended_after_the_image_do_not_survive():
    payload = b"<script>alert('polyglot')</script>"
    data = _encode(Image.new("RGB", (200, 200), "white"), "JPEG") + payload
    cleaned = clean_image_upload(_upload(data)).read()
    assert payload not in cleaned


def test_text_chunks_and_icc_profiles_are_dropped():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "home address: 1 Private Lane")
    data = _encode(
        Image.new("RGB", (200, 200), "white"), "PNG", pnginfo=info, icc_profile=b"fake-icc-profile"
    )
    cleaned = clean_image_upload(_upload(data)).read()
    assert b"Private Lane" not in cleaned and b"fake-icc" not in cleaned


def test_a_file_just_over_the_limit_never_reads_as_the_limit(settings):
    settings.UPLOAD_MAX_BYTES = 15 * 1024 * 1024
    upload = _upload(b"")
    upload.size = settings.UPLOAD_MAX_BYTES + 1
    with pytest.raises(ValidationError, match=r"The file is 15\.1 MB; the limit is 15 MB\."):
        clean_image_upload(upload)


def test_short_side_exactly_at_the_minimum_is_accepted(settings):
    settings.UPLOAD_MIN_SIDE = 128
    clean_image_upload(_upload(_encode(Image.new("RGB", (128, 500)), "PNG")))
    with pytest.raises(ValidationError, match="at least 128 pixels"):
        clean_image_upload(_upload(_encode(Image.new("RGB", (127, 500)), "PNG")))


# --- properties (hypothesis) -------------------------------------------------------------------
# The decompression bombs, polyglots and other hostile files are in test_upload_hostile.py.

EXTENSIONS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
RANDOM_NAME = re.compile(r"[0-9a-f]{32}\.(jpg|png|webp)")
# What Pillow reports for any file it wrote (JFIF header; WebP's animation defaults): no metadata.
JPEG_HEADER = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}
ENCODER_INFO = JPEG_HEADER | {"loop", "background", "timestamp", "duration"}
# EXIF orientation -> what undoes ImageOps.exif_transpose's turn, to make the stored pixels.
STORED_TURN = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
MODES = {
    "JPEG": ["L", "RGB", "CMYK"],
    "PNG": ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "I;16"],
    "WEBP": ["RGB", "RGBA"],
}
PROPERTY_RUNS = hypothesis_settings(max_examples=150, deadline=None, database=None)
# Any name a client may send (an UploadedFile keeps only its last path part, never empty).
CLIENT_NAMES = st.text(max_size=40).map(lambda name: f"{name}.jpg")


def _check_cleaned(cleaned) -> Image.Image:
    """What every accepted upload must be: a picture in its own format under a random name,
    within the limits, upright RGB(A) pixels and no metadata. Returns it decoded."""
    match = RANDOM_NAME.fullmatch(cleaned.name)
    assert match, cleaned.name
    data = cleaned.read()
    with Image.open(io.BytesIO(data), formats=[EXTENSIONS[match[1]]]) as decoded:
        decoded.load()
        assert decoded.mode in ("RGB", "RGBA")
        assert min(decoded.size) >= django_settings.UPLOAD_MIN_SIDE
        assert decoded.width * decoded.height <= django_settings.UPLOAD_MAX_PIXELS
        assert not decoded.getexif()
        assert set(decoded.info) <= ENCODER_INFO, decoded.info
        return decoded.copy()


def _seed(fmt: str) -> bytes:
    picture = Image.linear_gradient("L").resize((130, 140)).convert("RGB")
    return _encode(picture, fmt)


SEEDS = [_seed(fmt) for fmt in ("JPEG", "PNG", "WEBP")]


@st.composite
def _damaged_pictures(draw) -> bytes:
    """A valid picture with some bytes overwritten, cut short or with bytes appended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.just(len(data)), st.integers(1, len(data))))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


@PROPERTY_RUNS
@given(
    data=st.one_of(
        st.binary(max_size=512),
        st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBPVP8"]).flatmap(
            lambda magic: st.binary(max_size=512).map(lambda rest: magic + rest)
        ),
        _damaged_pictures(),
        st.tuples(st.sampled_from(SEEDS), st.binary(max_size=256)).map(b"".join),  # polyglots
    ),
    name=CLIENT_NAMES,
)
def test_any_bytes_are_refused_with_a_message_or_come_back_clean(data, name):
    try:
        cleaned = clean_image_upload(SimpleUploadedFile(name, data))
    except ValidationError as error:
        assert error.messages and error.code in (
            "not_an_image",
            "corrupt_image",
            "too_small",
            "too_many_pixels",
            "side_too_long",
            "too_narrow",
            "too_large",
        )
    else:
        _check_cleaned(cleaned)


@st.composite
def _oriented_pictures(draw):
    """(file bytes, upright size, has alpha): a picture whose top-left quarter is white when
    shown upright, stored turned as its EXIF orientation says."""
    fmt = draw(st.sampled_from(list(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    upright_size = (draw(st.integers(100, 240)), draw(st.integers(100, 240)))
    orientation = draw(st.integers(1, 8))
    upright = Image.new("RGBA", upright_size, (0, 0, 0, 96))
    upright.paste((255, 255, 255, 255), (0, 0, upright_size[0] // 2, upright_size[1] // 2))
    turn = STORED_TURN[orientation]
    stored = upright.transpose(turn) if turn is not None else upright
    if mode == "P+transparency":
        picture = stored.convert("RGB").convert("P")
        corners = [(x, y) for x in (0, stored.width - 1) for y in (0, stored.height - 1)]
        black = next(xy for xy in corners if stored.getpixel(xy)[0] == 0)
        picture.info["transparency"] = picture.getpixel(black)
    elif mode in ("RGBA", "LA"):
        picture = stored.convert(mode)
    else:
        picture = stored.convert("RGB").convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    has_alpha = mode in ("RGBA", "LA", "P+transparency")
    return _encode(picture, fmt, exif=exif), upright_size, has_alpha


@PROPERTY_RUNS
@given(picture=_oriented_pictures(), name=CLIENT_NAMES)
def test_valid_pictures_are_kept_upright_or_refused_when_too_small(picture, name):
    data, (width, height), has_alpha = picture
    if min(width, height) < django_settings.UPLOAD_MIN_SIDE:
        with pytest.raises(ValidationError, match="at least 128 pixels") as refused:
            clean_image_upload(SimpleUploadedFile(name, data))
        assert refused.value.code == "too_small"
        return
    decoded = _check_cleaned(clean_image_upload(SimpleUploadedFile(name, data)))
    assert decoded.size == (width, height)
    assert decoded.mode == ("RGBA" if has_alpha else "RGB")
    grey = ImageOps.grayscale(decoded.convert("RGB"))
    assert grey.getpixel((width // 8, height // 8)) > 200  # the white quarter is top left
    assert grey.getpixel((width * 7 // 8, height * 7 // 8)) < 60
    if has_alpha:
        assert decoded.getpixel((width * 7 // 8, height * 7 // 8))[3] < 255
