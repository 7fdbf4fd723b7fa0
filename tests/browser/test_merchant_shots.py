"""The demo merchant fixes a cut-out by painting its mask, makes model shots, and publishes one
that staff approved; the product page then shows it."""

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from catalog.demo import DEMO_MERCHANT, DEMO_STAFF
from catalog.models import Garment
from tests.browser.conftest import ARTIFACTS, demo_passwords, sign_in
from tests.factories import GarmentFactory, TryOnJobFactory, TryOnResultFactory
from tryon.models import TryOnJob, TryOnResult

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GARMENT = "Classic crew-neck tee"
MOBILE = {"width": 390, "height": 844}
# Where the stroke is painted, as fractions of the product image: the studio background above
# the tee's shoulder, which the automatic cut-out left out of the mask.
STROKE_Y = 0.04
STROKE_X = (0.06, 0.36)


@pytest.fixture
def shoot(page, screenshot):
    """``screenshot``, then back to the top of the page: Chromium's full-page capture can leave
    the page's scroll offset out of step with what is drawn, and the next click then misses."""

    def take(step: str):
        path = screenshot(step)
        page.evaluate("window.scrollTo(0, 0)")
        return path

    return take


def _mask(garment) -> np.ndarray:
    with garment.mask.open("rb"), Image.open(garment.mask) as picture:
        return np.asarray(picture.convert("L"))


def _stroke_pixels(mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    row = round(STROKE_Y * height)
    return mask[row, round(STROKE_X[0] * width) + 20 : round(STROKE_X[1] * width) - 20]


def _wait_for_pictures(page, selector):
    """Until every picture ``selector`` finds has loaded (a broken one never does)."""
    page.wait_for_function(
        "selector => [...document.querySelectorAll(selector)]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        arg=selector,
    )


def _paint_stroke(page):
    box = page.locator("#mask-canvas").bounding_box()
    y = box["y"] + STROKE_Y * box["height"]
    page.mouse.move(box["x"] + STROKE_X[0] * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + STROKE_X[1] * box["width"], y, steps=12)
    page.mouse.up()


def test_merchant_paints_a_mask_makes_model_shots_and_publishes_one(
    page, live_server, settings, capsys, shoot
):
    passwords = demo_passwords(settings, capsys)
    settings.TRYON_ENGINE = "preview"  # the fast engine: jobs finish inside the POST in tests
    garment = Garment.objects.get(title=GARMENT)
    assert garment.analysis_status == Garment.AnalysisStatus.DONE
    old_mask = garment.mask.name
    assert not _stroke_pixels(_mask(garment)).any()

    sign_in(page, live_server, DEMO_MERCHANT, passwords[DEMO_MERCHANT])
    page.get_by_role("heading", name="My garments").wait_for()
    shoot("1-home")

    # 1. The painter: the saved mask loads (then Reset has something to go back to).
    page.get_by_role("link", name=f"Paint the mask of {GARMENT}").click()
    page.get_by_role("heading", name=f"Mask of “{GARMENT}”").wait_for()
    expect(page.get_by_role("button", name="Reset")).to_be_enabled()
    expect(page.get_by_role("button", name="Undo")).to_be_disabled()
    expect(page.get_by_role("button", name="Brush")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Eraser").click()
    expect(page.get_by_role("button", name="Eraser")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("b")  # the shortcut back to the brush
    expect(page.get_by_role("button", name="Brush")).to_have_attribute("aria-pressed", "true")
    page.get_by_label("Size").fill("40")
    expect(page.locator("[data-size-output]")).to_have_text("40 px")
    shoot("2-painter")
    _paint_stroke(page)
    expect(page.get_by_role("button", name="Undo")).to_be_enabled()
    shoot("3-painted")
    page.get_by_role("button", name="Save mask").click()
    page.get_by_text(f"The mask of “{GARMENT}” was saved").wait_for()
    garment.refresh_from_db()
    assert garment.mask.name != old_mask
    assert _stroke_pixels(_mask(garment)).all()  # the stroke is in the stored mask now
    assert garment.analysis_status == Garment.AnalysisStatus.DONE  # cut-out remade from it
    page.get_by_alt_text("Cut-out of the garment").wait_for()
    shoot("4-edit-after-mask")

    # 2. Model shots: 2 poses × 1 scene × 1 variation.
    page.get_by_role("link", name="Create model shots").first.click()
    page.get_by_role("heading", name=f"Create model shots of “{GARMENT}”").wait_for()
    assert page.locator("svg.pose-skeleton").count() >= 2
    page.get_by_label("Front, standing", exact=True).check()
    page.get_by_label("Walking", exact=True).check()
    page.get_by_label("Studio, white", exact=True).check()
    page.get_by_label("Skin tone").select_option("medium")
    page.get_by_label("Hair").fill("short curly black")
    page.get_by_label("Variations of each").fill("1")
    shoot("5-shots-form")
    page.get_by_role("button", name="Create model shots").click()

    # 3. The gallery: both pictures made, waiting for staff.
    page.get_by_text("2 model shots of").wait_for()
    expect(page.get_by_text("Pending staff review")).to_have_count(2)
    jobs = TryOnJob.objects.filter(garment=garment, kind="model_shot")
    assert {job.status for job in jobs} == {"succeeded"}
    assert {job.pose for job in jobs} == {"front_standing", "walking"}
    expect(page.locator(".shot-frame img")).to_have_count(2)
    _wait_for_pictures(page, ".shot-frame img")
    shoot("6-gallery-pending")

    # 4. Staff approve one picture in admin, with a note; the merchant publishes it.
    approved = TryOnResult.objects.filter(job__garment=garment).order_by("pk").first()
    staff_context = page.context.browser.new_context(viewport={"width": 1200, "height": 900})
    admin_page = staff_context.new_page()
    sign_in(admin_page, live_server, DEMO_STAFF, passwords[DEMO_STAFF])
    admin_page.goto(f"{live_server.url}/admin/tryon/tryonresult/")
    admin_page.locator(f'input[name="_selected_action"][value="{approved.pk}"]').check()
    admin_page.locator('select[name="action"]').select_option("approve")
    admin_page.get_by_role("button", name="Go").click()
    admin_page.get_by_label("Note:").fill("Lovely drape.")
    admin_page.screenshot(path=str(ARTIFACTS / "staff-approves-in-admin.png"), full_page=True)
    admin_page.get_by_role("button", name="Approve 1 result(s)").click()
    admin_page.get_by_text("1 result(s) approved.").wait_for()
    staff_context.close()
    approved.refresh_from_db()
    assert approved.review_status == "approved" and approved.review_note == "Lovely drape."
    assert approved.reviewer.username == DEMO_STAFF
    page.reload()
    expect(page.get_by_text("Pending staff review")).to_have_count(1)
    page.get_by_role("button", name="Publish on product page").click()
    page.get_by_text("The picture is now shown on the product page.").wait_for()
    expect(page.get_by_text("On the product page", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Hide")).to_be_focused()  # focus kept across the swap
    approved.refresh_from_db()
    assert approved.published
    shoot("7-gallery-published")

    # 5. The product page shows it to everyone.
    page.goto(f"{live_server.url}/garments/{garment.pk}/")
    page.get_by_role("heading", name="On a model").wait_for()
    shot = page.get_by_alt_text(f"{GARMENT} worn by a generated model")
    expect(shot).to_have_count(1)
    _wait_for_pictures(page, ".model-shots img")
    shoot("8-product-page")

    # The same pages on a phone.
    page.set_viewport_size(MOBILE)
    for step, path in (
        ("9-mobile-painter", f"/merchant/garments/{garment.pk}/mask/"),
        ("10-mobile-shots", f"/merchant/garments/{garment.pk}/shots/"),
        ("11-mobile-gallery", f"/merchant/garments/{garment.pk}/gallery/"),
    ):
        page.goto(live_server.url + path)
        page.locator("main h1").wait_for()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px"
        shoot(step)


def test_the_gallery_follows_a_running_job_until_it_is_done(
    page, live_server, make_merchant, shoot
):
    merchant = make_merchant("merchant-live")
    garment = GarmentFactory(merchant=merchant, title="Live tee")
    job = TryOnJobFactory(garment=garment, status="running", progress=0.25, step="step 5/20")
    polls = []
    page.on("request", lambda request: "/gallery/live/" in request.url and polls.append(request))

    sign_in(page, live_server, "merchant-live", "pw-for-tests-1")
    page.goto(f"{live_server.url}/merchant/garments/{garment.pk}/gallery/")
    page.get_by_text("step 5/20").wait_for()
    TryOnJob.objects.filter(pk=job.pk).update(progress=0.6, step="step 12/20")
    page.get_by_text("step 12/20").wait_for()  # no reload: htmx polled the gallery
    expect(page.get_by_role("progressbar", name="Progress")).to_have_attribute("value", "60")
    shoot("running")

    TryOnResultFactory(job=job, index=0)
    TryOnJob.objects.filter(pk=job.pk).update(status="succeeded", progress=1.0, step="done")
    page.get_by_text("Pending staff review").wait_for()
    _wait_for_pictures(page, ".shot-frame img")
    polled = len(polls)
    page.wait_for_timeout(3500)
    assert len(polls) == polled  # nothing runs any more: the polling stopped
    shoot("finished")
