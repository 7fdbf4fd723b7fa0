"""A demo merchant signs in and uploads a garment from the browser; staff see it in admin."""

import pytest

from catalog.demo import DEMO_MERCHANT, DEMO_STAFF
from catalog.models import Garment
from pipelines.samples import draw_product_shot
from tests.browser.conftest import demo_passwords, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_merchant_uploads_a_garment_and_staff_see_it(page, live_server, settings, capsys, tmp_path):
    passwords = demo_passwords(settings, capsys)
    page.goto(live_server.url)
    assert page.locator(".card").count() >= 6

    sign_in(page, live_server, DEMO_MERCHANT, passwords[DEMO_MERCHANT])
    page.get_by_role("heading", name="My garments").wait_for()
    page.get_by_role("link", name="Add a garment").first.click()

    # A wrong file first: the form says why and keeps the visitor on the page.
    not_a_picture = tmp_path / "shirt.jpg"
    not_a_picture.write_bytes(b"this is not a picture")
    page.get_by_label("Title").fill("Browser tee")
    page.get_by_label("SKU").fill("BROWSER-1")
    page.get_by_label("Category").select_option("upper")
    page.get_by_label("Price").fill("21.50")
    page.get_by_label("Product image").set_input_files(str(not_a_picture))
    page.get_by_role("button", name="Add garment").click()
    page.get_by_text("This file is not a JPEG, PNG or WebP picture.").wait_for()
    assert not Garment.objects.filter(sku="BROWSER-1").exists()

    picture = tmp_path / "tee.png"
    draw_product_shot("tshirt", size=(480, 640), colour=(200, 120, 30)).image.save(picture)
    page.get_by_label("Product image").set_input_files(str(picture))
    page.get_by_role("button", name="Add garment").click()
    page.get_by_text("“Browser tee” was added to your catalog.").wait_for()
    assert Garment.objects.get(sku="BROWSER-1").merchant.username == DEMO_MERCHANT
    # The analysis ran (inline in tests, in the worker under `make run`): the cut-out shows.
    page.get_by_role("link", name="Edit").first.click()
    page.get_by_text("Analysed").wait_for()
    assert page.get_by_alt_text("Cut-out of the garment").is_visible()
    page.screenshot(path=str(tmp_path / "merchant.png"), full_page=True)

    page.get_by_role("button", name=f"Sign out ({DEMO_MERCHANT})").click()
    sign_in(page, live_server, DEMO_STAFF, passwords[DEMO_STAFF])
    page.goto(f"{live_server.url}/admin/catalog/garment/?q=BROWSER-1")
    page.get_by_role("link", name="Browser tee").wait_for()
    assert page.locator("#result_list img").count() == 1
