"""tryon.uploads.clean_image_upload: content-sniffed, limited, re-encoded pictures."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tryon.uploads import clean_image_upload


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


def test_a_decompression_bomb_is_refused_before_decoding(settings):
    settings.UPLOAD_MAX_PIXELS = 10_000_000
    # 20000×20000 in a few kilobytes: the header alone says it is too big.
    bomb = _encode(Image.new("1", (20000, 20000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(ValidationError, match="megapixels"):
        clean_image_upload(_upload(bomb))


def test_short_side_exactly_at_the_minimum_is_accepted(settings):
    settings.UPLOAD_MIN_SIDE = 128
    clean_image_upload(_upload(_encode(Image.new("RGB", (128, 500)), "PNG")))
    with pytest.raises(ValidationError, match="at least 128 pixels"):
        clean_image_upload(_upload(_encode(Image.new("RGB", (127, 500)), "PNG")))
