"""Hostile files, made by the tests, against every place that takes a picture.

Bombs, pages and scripts named ``.jpg``, formats Pillow reads but the site must not (PSD, TIFF),
truncated files, polyglots, pictures carrying the photographer's location, files larger than the
limit and file names that try to leave the media folder. Each refusal is a 400 with a message a
person understands, and nothing reaches the disk or the database.
"""

import base64
import html
import io
import re
import struct
import warnings
import zlib
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from django.core.files import temp as django_temp
from django.core.files import uploadedfile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageFile, PngImagePlugin
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Garment
from common.uploads import clean_image_upload
from tests.conftest import photo_upload, product_shot_upload
from tests.factories import GarmentFactory
from tryon.models import TryOnJob

MB = 1024 * 1024
GARMENT_FIELDS = {"title": "Hostile tee", "sku": "HOSTILE-1", "category": "upper", "price": "9.90"}
NOT_A_PICTURE = "not a JPEG, PNG or WebP"


# --- hostile files -----------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bilevel_png(width: int, height: int, *, complete: bool) -> bytes:
    """A black 1-bit PNG written by hand, without ever holding its pixels: complete (every row,
    compressed about 1000:1) or only its header, which is all a validator may look at."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if complete:
        compressor = zlib.compressobj(9)
        rows = (b"\0" * (1 + (width + 7) // 8)) * 1000  # filter byte + packed pixels, per row
        body = b"".join(compressor.compress(rows) for _ in range(height // 1000))
        chunks.append(_png_chunk(b"IDAT", body + compressor.flush()))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@cache
def _png_bomb() -> bytes:
    """30000×30000 pixels (900 megapixels, 112 MB once inflated, 3.6 GB as RGBA) in ~110 KB."""
    return _bilevel_png(30000, 30000, complete=True)


def _encoded(fmt: str, size=(300, 300), **options) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def _white_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _psd(width=200, height=150) -> bytes:
    """A minimal valid Photoshop file (RGB, 8 bits, raw planes): Pillow reads it."""
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\0" * 6, 3, height, width, 8, 3)
    empty_sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers
    return header + empty_sections + struct.pack(">H", 0) + bytes(width * height * 3)


HTML_PAGE = b"<!DOCTYPE html><html><body><script>fetch('/steal?c='+document.cookie)</script>"
SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
    b"<script>alert(document.domain)</script><rect width='400' height='400'/></svg>"
)

HOSTILE = {
    "html-named-jpg": (lambda: HTML_PAGE, NOT_A_PICTURE),
    "svg-with-script": (lambda: SVG_WITH_SCRIPT, NOT_A_PICTURE),
    "psd": (_psd, NOT_A_PICTURE),
    "tiff": (lambda: _encoded("TIFF"), NOT_A_PICTURE),
    "truncated-jpeg": (lambda: _encoded("JPEG")[:4000], "damaged or incomplete"),
    "png-bomb-30000x30000": (_png_bomb, "megapixels"),
    "127px-short-side": (lambda: _encoded("PNG", size=(127, 400)), "at least 128 pixels"),
    # 12.7 KB that aborted the web process inside MediaPipe (OpenCV's remap asserts a side
    # below 32767, and nothing catches a C++ exception there); either way round.
    "32768x128-white": (lambda: _white_png(32768, 128), "32768×128 pixels; each side may be"),
    "128x32768-white": (lambda: _white_png(128, 32768), "128×32768 pixels; each side may be"),
    "10001-px-side": (lambda: _white_png(10001, 2600), "each side may be at most 10000 pixels"),
    # Thinner than any picture the site makes (64×2048): the OpenPose map of it, drawn with a
    # short side of 512, would be past 32767 again.
    "sliver-8200x200": (lambda: _white_png(8200, 200), "its long side is 41.0 times"),
}


def _upload(data: bytes, name: str = "photo.jpg") -> SimpleUploadedFile:
    # Named .jpg and sent as image/jpeg: neither is ever believed.
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


# --- the validator -----------------------------------------------------------------------------


@pytest.fixture
def decoding_is_an_error(monkeypatch):
    """Any attempt to decode pixels fails the test: a bomb must be refused from its header."""

    def refuse_to_decode(image):
        raise AssertionError(f"{image.size} pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)


def test_psd_is_a_picture_pillow_reads_but_the_site_refuses():
    with Image.open(io.BytesIO(_psd())) as psd:
        assert psd.format == "PSD" and psd.size == (200, 150)
    with pytest.raises(ValidationError, match=NOT_A_PICTURE):
        clean_image_upload(_upload(_psd()))


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "header-only"])
def test_a_30000_square_png_bomb_is_refused_before_decoding(complete, decoding_is_an_error):
    bomb = _png_bomb() if complete else _bilevel_png(30000, 30000, complete=False)
    assert len(bomb) < (120_000 if complete else 100)
    with pytest.raises(ValidationError, match="megapixels") as refused:
        clean_image_upload(_upload(bomb, name="bomb.png"))
    assert refused.value.code == "too_many_pixels"


def test_the_site_limit_applies_below_pillows_own(settings, decoding_is_an_error):
    settings.UPLOAD_MAX_PIXELS = 40_000_000
    picture = _bilevel_png(8000, 8000, complete=False)  # 64 MP: Pillow alone would not object
    assert Image.MAX_IMAGE_PIXELS > 8000 * 8000
    with pytest.raises(ValidationError, match="8000×8000 pixels; the limit is 40 megapixels"):
        clean_image_upload(_upload(picture))


def test_pillows_bomb_warning_is_turned_into_a_refusal(settings, decoding_is_an_error):
    # Between MAX_IMAGE_PIXELS and twice that, Pillow only warns and goes on decoding. The site's
    # own limit is set above it here, so only the warning can stop this picture.
    pixels = 10_000 * 10_000
    assert Image.MAX_IMAGE_PIXELS < pixels < 2 * Image.MAX_IMAGE_PIXELS
    settings.UPLOAD_MAX_PIXELS = 2 * pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # as a server might run
        with pytest.raises(ValidationError, match="megapixels") as refused:
            clean_image_upload(_upload(_bilevel_png(10_000, 10_000, complete=False)))
    assert refused.value.code == "too_many_pixels"


@pytest.mark.parametrize("where", ["after-the-end", "in-a-text-chunk"])
def test_a_png_html_polyglot_loses_its_page(where):
    page = b"<html><body><script>alert('polyglot')</script></body></html>"
    info = PngImagePlugin.PngInfo()
    if where == "in-a-text-chunk":
        info.add_text("Comment", page.decode())
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(buffer, format="PNG", pnginfo=info)
    polyglot = buffer.getvalue() + (page if where == "after-the-end" else b"")
    assert page in polyglot
    cleaned = clean_image_upload(_upload(polyglot, name="page.html")).read()
    assert b"<script" not in cleaned and b"<html" not in cleaned
    with Image.open(io.BytesIO(cleaned)) as stored:
        assert stored.format == "PNG" and stored.info == {}


XMP_PACKET = (
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><rdf:Description "
    b"xmlns:exif='http://ns.adobe.com/exif/1.0/' exif:GPSLatitude='51,30.2N'/></rdf:RDF>"
    b"</x:xmpmeta>"
)


def _located_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 1  # Orientation
    gps = exif.get_ifd(0x8825)
    gps[0x01], gps[0x02] = "N", (51.0, 30.0, 12.5)  # latitude
    gps[0x03], gps[0x04] = "W", (0.0, 7.0, 39.0)  # longitude
    gps[0x12] = "WGS-84"  # map datum
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_gps_exif_xmp_icc_and_comments_are_stripped(fmt):
    exif = _located_exif()
    options = {"exif": exif, "icc_profile": b"fake-icc-profile-from-a-camera"}
    if fmt == "PNG":  # Pillow writes PNG's XMP as an iTXt chunk only
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
    else:
        options["xmp"] = XMP_PACKET
    if fmt == "JPEG":
        options["comment"] = b"shot at 1 Private Lane"
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(buffer, format=fmt, **options)
    source = buffer.getvalue()
    with Image.open(io.BytesIO(source)) as original:  # the test's file does carry all of it
        assert original.getexif().get_ifd(0x8825)[0x12] == "WGS-84"
        assert {"xmp", "icc_profile"} <= set(original.info)
    assert b"WGS-84" in source and b"SecretCam" in source and b"xmpmeta" in source

    cleaned = clean_image_upload(_upload(source)).read()
    with Image.open(io.BytesIO(cleaned)) as stored:
        assert stored.format == fmt
        assert not stored.getexif() and not stored.getexif().get_ifd(0x8825)
        leaked = {"exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment"} & set(stored.info)
        assert not leaked
    tiff_body = exif.tobytes()[len(b"Exif\0\0") :]
    for trace in (b"Exif\0\0", tiff_body, b"GPS", b"WGS-84", b"SecretCam", b"xmp", b"XMP"):
        assert trace not in cleaned
    assert b"fake-icc" not in cleaned and b"Private Lane" not in cleaned


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd.jpg",
        "..\\..\\boot.ini.png",
        "/abs/photo.jpg",
        "ph\0oto.jpg",
        "фото 📷.jpg",
    ],
)
def test_the_stored_name_owes_nothing_to_the_clients(name):
    cleaned = clean_image_upload(_upload(_encoded("PNG"), name=name))
    assert re.fullmatch(r"[0-9a-f]{32}\.png", cleaned.name)


# --- every place that takes a picture ----------------------------------------------------------


@pytest.fixture
def garment(merchant):
    """Analysed already (the flag is all the try-on checks before the photo)."""
    return GarmentFactory(merchant=merchant, analysis_status=Garment.AnalysisStatus.DONE)


def _merchant_form(client, garment, upload):
    client.force_login(garment.merchant)
    return client.post(reverse("merchant:garment_create"), {**GARMENT_FIELDS, "image": upload})


def _garment_api(client, garment, upload):
    api = APIClient()
    api.force_authenticate(garment.merchant)
    return api.post("/api/garments/", {**GARMENT_FIELDS, "image": upload}, format="multipart")


def _shopper_form(client, garment, upload):
    return client.post(
        reverse("tryon:create", args=[garment.pk]), {"person_photo": upload, "consent": "on"}
    )


def _tryon_api(client, garment, upload):
    return APIClient().post(
        "/api/tryons/",
        {"garment": garment.pk, "person_photo": upload, "consent": "true"},
        format="multipart",
    )


def _tryon_api_base64(client, garment, upload):
    return APIClient().post(
        "/api/tryons/",
        {"garment": garment.pk, "person_photo_base64": _base64(upload), "consent": True},
        format="json",
    )


def _model_photo_form(client, garment, upload):
    client.force_login(garment.merchant)
    return client.post(
        reverse("merchant:garment_photo_shot", args=[garment.pk]),
        {"person_photo": upload, "consent": "on"},
    )


def _base64(upload) -> str:
    upload.seek(0)
    return base64.b64encode(upload.read()).decode()


def _img2img(garment, **payload):
    token, _ = Token.objects.get_or_create(user=garment.merchant)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    good = base64.b64encode(_encoded("PNG", size=(256, 256))).decode()
    return api.post("/sdapi/v1/img2img", {"init_images": [good], **payload}, format="json")


def _sdapi_init_image(client, garment, upload):
    return _img2img(garment, init_images=[_base64(upload)])


def _sdapi_mask(client, garment, upload):
    return _img2img(garment, mask=_base64(upload))


def _sdapi_control_image(client, garment, upload):
    unit = {"module": "openpose", "model": "control_v11p_sd15_openpose", "image": _base64(upload)}
    return _img2img(garment, alwayson_scripts={"ControlNet": {"args": [unit]}})


# Where a picture arrives as a multipart file.
ENTRY_POINTS = {
    "merchant-form": _merchant_form,
    "garment-api": _garment_api,
    "shopper-form": _shopper_form,
    "tryon-api": _tryon_api,
    "model-photo-form": _model_photo_form,
}
# And everywhere, base64 inside JSON included.
EVERY_ENTRY_POINT = {
    **ENTRY_POINTS,
    "tryon-api-base64": _tryon_api_base64,
    "sdapi-init-image": _sdapi_init_image,
    "sdapi-mask": _sdapi_mask,
    "sdapi-control-image": _sdapi_control_image,
}


def _message(response) -> str:
    if response["Content-Type"].startswith("application/json"):
        return response.json()["message"]
    return html.unescape(response.content.decode())


def _all_files(settings) -> set[Path]:
    roots = (Path(settings.MEDIA_ROOT), Path(settings.PRIVATE_MEDIA_ROOT))
    return {path for root in roots for path in root.rglob("*") if path.is_file()}


def _native_code_reached(image):
    raise AssertionError(f"a {image.size} picture reached the pose detector")


@pytest.mark.django_db
@pytest.mark.parametrize("entry", EVERY_ENTRY_POINT)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_files_are_refused_everywhere_with_a_400_and_nothing_kept(
    client, garment, settings, entry, hostile, monkeypatch
):
    make, message = HOSTILE[hostile]
    settings.JOB_DEADLINE = 2  # sdapi waits for its job: were one queued, not for 15 minutes
    # The gate to MediaPipe and OpenCV: a refused file never gets that far. (Were a sliver to
    # reach it, the native code would abort this whole test process.)
    monkeypatch.setattr("pipelines.person._rgb_pixels", _native_code_reached)
    files_before = _all_files(settings)
    response = EVERY_ENTRY_POINT[entry](client, garment, _upload(make()))
    assert response.status_code == 400
    assert message in _message(response)
    assert Garment.objects.count() == 1 and not TryOnJob.objects.exists()
    assert _all_files(settings) == files_before


@pytest.mark.django_db
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_photo_or_product_shot_over_4_to_1_is_refused(client, garment, entry):
    response = ENTRY_POINTS[entry](client, garment, _upload(_white_png(4100, 1000)))
    assert response.status_code == 400
    assert "4100×1000 pixels: its long side is 4.1 times" in _message(response)
    assert Garment.objects.count() == 1 and not TryOnJob.objects.exists()


@pytest.mark.django_db
def test_pictures_as_thin_as_the_site_makes_are_read_and_inpainted(garment, settings):
    settings.JOB_DEADLINE = 2
    ours = _white_png(2048, 128)  # 16:1, a size the WebUI's parameters allow
    token, _ = Token.objects.get_or_create(user=garment.merchant)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    read = api.post("/sdapi/v1/png-info", {"image": base64.b64encode(ours).decode()}, format="json")
    assert read.status_code == 200, read.json()
    inpainted = _img2img(garment, init_images=[base64.b64encode(ours).decode()])
    assert inpainted.status_code != 400, inpainted.json()
    assert TryOnJob.objects.get().kind == TryOnJob.Kind.INPAINT


@pytest.fixture
def temp_uploads(settings, tmp_path, monkeypatch):
    """Django's temporary upload files, in their own folder and kept after they are closed, so
    the test sees how much of each upload was ever written to disk."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    opened = []

    def kept_temporary_file(**options):
        file = django_temp.NamedTemporaryFile(**options, delete=False)
        opened.append(file)
        return file

    monkeypatch.setattr(
        uploadedfile, "tempfile", SimpleNamespace(NamedTemporaryFile=kept_temporary_file)
    )
    return SimpleNamespace(folder=folder, opened=opened)


@pytest.mark.django_db
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_file_over_the_limit_is_not_written_to_disk_and_is_refused_by_size(
    client, garment, settings, temp_uploads, entry
):
    settings.UPLOAD_MAX_BYTES = 1 * MB
    files_before = _all_files(settings)
    oversized = _upload(b"\xff\xd8\xff\xe0" + bytes(3 * MB - 4), name="huge.jpg")
    response = ENTRY_POINTS[entry](client, garment, oversized)
    assert response.status_code == 400
    assert "The file is 3 MB; the limit is 1 MB." in _message(response)
    written = [path.stat().st_size for path in temp_uploads.folder.iterdir()]
    assert written, "the upload did not go through the temporary-file handler"
    assert max(written) <= settings.UPLOAD_MAX_BYTES
    # Closed while the request was still arriving: with Django's own delete-on-close it is gone.
    assert all(file.closed for file in temp_uploads.opened)
    assert Garment.objects.count() == 1 and not TryOnJob.objects.exists()
    assert _all_files(settings) == files_before


@pytest.mark.django_db
def test_a_file_within_the_limit_still_arrives_whole_through_the_temporary_file(
    merchant_client, settings, temp_uploads
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file to the temporary-file handler
    upload = product_shot_upload()
    settings.UPLOAD_MAX_BYTES = upload.size
    response = merchant_client.post(
        reverse("merchant:garment_create"), {**GARMENT_FIELDS, "image": upload}
    )
    assert response.status_code == 302
    assert [path.stat().st_size for path in temp_uploads.folder.iterdir()] == [upload.size]
    with Image.open(Garment.objects.get().image.path) as stored:
        assert stored.size == (384, 512)


CLIENT_NAMES = ["../../../etc/passwd.jpg", "..\\..\\..\\windows\\win.ini.jpg", "ph\0to ✨ фото.jpg"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("entry", "field", "root", "folder"),
    [
        ("garment-api", "image", "MEDIA_ROOT", "garments/images"),
        ("shopper-form", "person_photo", "PRIVATE_MEDIA_ROOT", "photos"),
        ("tryon-api", "person_photo", "PRIVATE_MEDIA_ROOT", "photos"),
    ],
)
@pytest.mark.parametrize("name", CLIENT_NAMES, ids=["dot-dot", "backslashes", "nul-unicode"])
def test_stored_files_get_a_random_name_inside_their_media_root(
    client, garment, settings, entry, field, root, folder, name
):
    files_before = _all_files(settings)
    upload = photo_upload()
    upload.name = name
    response = ENTRY_POINTS[entry](client, garment, upload)
    assert response.status_code in (201, 302), _message(response)
    row = (
        Garment.objects.exclude(pk=garment.pk).get() if field == "image" else TryOnJob.objects.get()
    )
    stored = getattr(row, field).name
    assert re.fullmatch(rf"{folder}/[0-9a-f]{{32}}\.jpg", stored)
    media_root = Path(getattr(settings, root)).resolve()
    new_files = _all_files(settings) - files_before
    assert [path.resolve() for path in new_files] == [media_root / stored]
