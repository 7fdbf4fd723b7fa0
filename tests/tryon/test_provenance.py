"""Every generated picture is labelled AI-generated: in the stored PNG (the WebUI's parameters,
the IPTC DigitalSourceType as text and XMP) and on every page that shows one; the invisible
watermark goes into the stored copy only with TRYON_WATERMARK."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from pipelines.infotext import DIGITAL_SOURCE_TYPE, parse_infotext, read_png_infotext
from pipelines.watermark import WATERMARK_PAYLOAD, read_watermark
from tests.conftest import photo_upload
from tests.factories import TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon.intake import tryon_job_create
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 5}
IPTC_EXT = "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}"
BADGE = '<span class="badge badge-ai"'


def _photo_job(garment, callbacks) -> TryOnJob:
    with callbacks(execute=True):
        job = tryon_job_create(
            kind="photo",
            garment=garment,
            session_key="shopper-session",
            person_photo=photo_upload(),
            consent=True,
            params=FAST,
            engine="tiny",
        )
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    return job


def _stored(field, mode="RGB") -> Image.Image:
    with field.open("rb") as stored, Image.open(stored) as picture:
        picture.load()
        return picture if mode is None else picture.convert(mode)


def test_the_stored_png_carries_the_webui_parameters_and_the_xmp_label(
    analysed_garment, tiny_models_dir, django_capture_on_commit_callbacks
):
    result = _photo_job(analysed_garment, django_capture_on_commit_callbacks).results.get()
    picture = _stored(result.image, mode=None)

    # What the WebUI's PNG Info reads: the "parameters" chunk.
    assert read_png_infotext(picture) == result.infotext
    assert parse_infotext(picture.info["parameters"])["Seed"] == "5"
    # Pillow keeps the iTXt "XML:com.adobe.xmp" chunk as info["xmp"]; Image.getxmp() would need
    # defusedxml, so the packet (written by our own code) is parsed here.
    xmp = ET.fromstring(picture.info["xmp"])  # noqa: S314
    assert xmp.find(f".//{IPTC_EXT}DigitalSourceType").text == DIGITAL_SOURCE_TYPE
    assert DIGITAL_SOURCE_TYPE.endswith("/trainedAlgorithmicMedia")


def test_by_default_the_stored_result_is_unmarked_and_pixel_exact_outside_the_mask(
    analysed_garment, tiny_models_dir, django_capture_on_commit_callbacks
):
    job = _photo_job(analysed_garment, django_capture_on_commit_callbacks)
    result = job.results.get()
    picture = np.asarray(_stored(result.image))
    outside = np.asarray(_stored(result.mask, "L")) == 0

    assert read_watermark(Image.fromarray(picture)) != WATERMARK_PAYLOAD
    assert np.array_equal(picture[outside], np.asarray(_stored(job.person_photo))[outside])


def test_with_tryon_watermark_the_stored_result_decodes_to_the_payload(
    analysed_garment, tiny_models_dir, settings, django_capture_on_commit_callbacks
):
    settings.TRYON_WATERMARK = True
    result = _photo_job(analysed_garment, django_capture_on_commit_callbacks).results.get()

    picture = _stored(result.image, mode=None)
    assert read_watermark(picture) == WATERMARK_PAYLOAD
    assert read_png_infotext(picture) == result.infotext


def _badged_images(page: str, results) -> int:
    """How many of ``results``' pictures have the AI-generated badge right after them."""
    return sum(
        bool(
            re.search(
                rf'<img src="{re.escape(reverse("result_file", args=[r.pk, "image"]))}"[^>]*>'
                rf"\s*{re.escape(BADGE)}[^>]*>AI-generated</span>",
                page,
            )
        )
        for r in results
    )


def test_the_merchant_gallery_badges_each_generated_picture(merchant_client, analysed_garment):
    results = [
        TryOnResultFactory(
            job=TryOnJobFactory(
                garment=analysed_garment, status=TryOnJob.Status.SUCCEEDED, progress=1.0
            ),
            index=0,
        )
        for _ in range(2)
    ]
    TryOnJobFactory(garment=analysed_garment, status=TryOnJob.Status.QUEUED)

    url = reverse("merchant:garment_gallery", args=[analysed_garment.pk])
    page = merchant_client.get(url).content.decode()

    assert _badged_images(page, results) == 2
    assert page.count(BADGE) == 2  # none on the job still waiting for its picture


def test_my_try_ons_badge_each_generated_picture(client, analysed_garment):
    shopper = UserFactory()
    client.force_login(shopper)
    done = TryOnJobFactory(
        kind="photo",
        garment=analysed_garment,
        owner=shopper,
        status=TryOnJob.Status.SUCCEEDED,
        progress=1.0,
    )
    result = TryOnResultFactory(job=done, index=0)
    TryOnJobFactory(kind="photo", garment=analysed_garment, owner=shopper)

    page = client.get(reverse("tryon:mine")).content.decode()

    assert _badged_images(page, [result]) == 1
    assert page.count(BADGE) == 1
