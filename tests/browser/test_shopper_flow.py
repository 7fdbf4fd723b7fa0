"""A shopper tries a garment on in the browser: upload, live progress, result, download, delete."""

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from PIL import Image
from skimage import data

from catalog.models import Garment
from tryon.models import TryOnJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_tee(settings):
    settings.DEBUG = True
    settings.TRYON_ENGINE = "preview"
    call_command("seed_demo")
    return Garment.objects.filter(category="upper", analysis_status="done").first()


def test_a_shopper_tries_a_garment_on_and_deletes_it(
    page, live_server, demo_tee, tmp_path, screenshot
):
    photo = tmp_path / "me.jpg"
    Image.fromarray(data.astronaut()).save(photo)
    page.goto(f"{live_server.url}{demo_tee.get_absolute_url()}")
    page.get_by_role("heading", name="Try it on").wait_for()
    screenshot("product")

    # Without consent, the form says so in place and nothing is queued.
    page.get_by_label("Choose a photo, or drop it here").set_input_files(str(photo))
    page.get_by_role("button", name="Try it on").click()
    page.get_by_text("please agree to the processing of your photo").wait_for()
    assert not TryOnJob.objects.exists()
    screenshot("refused")

    page.get_by_label("Choose a photo, or drop it here").set_input_files(str(photo))
    page.get_by_label("I agree that my photo is processed").check()
    page.get_by_role("button", name="Try it on").click()
    page.get_by_alt_text(f"You wearing {demo_tee.title}").wait_for()
    job = TryOnJob.objects.get()
    assert job.status == "succeeded" and job.session_key
    # The before/after slider moves the photo's edge over the result.
    slider = page.get_by_label("Before / after")
    slider.fill("20")
    assert "80%" in page.get_by_alt_text("Your photo").get_attribute("style")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download (PNG)").click()
    assert download.value.suggested_filename.endswith(".png")
    screenshot("result")

    page.get_by_role("link", name="My try-ons").click()
    page.get_by_text(demo_tee.title).first.wait_for()
    screenshot("mine")
    page.get_by_role("link", name=demo_tee.title).first.click()
    page.get_by_role("button", name="Delete my photo and results").click()
    page.get_by_text("Your photo and its try-on were deleted.").wait_for()
    page.get_by_text("No try-ons yet.").wait_for()
    assert not TryOnJob.objects.exists()


def test_progress_updates_without_reloading(page, live_server, demo_tee, screenshot):
    store = SessionStore()  # the shopper's session, as the try-on form would have made it
    store.create()
    page.context.add_cookies(
        [{"name": "sessionid", "value": store.session_key, "url": live_server.url}]
    )
    job = TryOnJob.objects.create(
        kind="photo",
        garment=demo_tee,
        session_key=store.session_key,
        status="running",
        progress=0.3,
        step="image 1/1: step 6/20",
        consent_at="2026-01-01T00:00:00Z",
    )
    page.goto(f"{live_server.url}/tryon/{job.pk}/")
    page.get_by_text("step 6/20").wait_for()
    screenshot("running")
    TryOnJob.objects.filter(pk=job.pk).update(progress=0.7, step="image 1/1: step 14/20")
    page.get_by_text("step 14/20").wait_for()  # polled in, no reload
    assert page.locator("progress").get_attribute("value") == "70"
    TryOnJob.objects.filter(pk=job.pk).update(status="failed", error_message="the GPU is busy")
    page.get_by_text("the GPU is busy").wait_for()
