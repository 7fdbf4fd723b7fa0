"""Django admin and the API's Swagger UI work under the Content-Security-Policy: the page
fixture fails the test on any violation a page reports."""

import pytest
from playwright.sync_api import expect

from tests.factories import TryOnResultFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("staff", password="pw-for-tests-1")


def test_staff_review_results_in_admin_under_the_policy(page, live_server, staff, screenshot):
    result = TryOnResultFactory(job__garment__title="Policy tee")
    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill("pw-for-tests-1")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Installed models").wait_for()

    page.get_by_role("link", name="Try on results", exact=True).first.click()
    thumbnail = page.locator("#result_list img.picture-64")
    expect(thumbnail).to_have_count(1)
    # Its size comes from static/css/admin.css, as a style attribute would be refused.
    assert thumbnail.evaluate("picture => getComputedStyle(picture).maxWidth") == "64px"
    screenshot("changelist")

    page.get_by_role("link", name=str(result)).first.click()
    page.locator(".tryon-maps figure").first.wait_for()
    assert page.locator(".tryon-maps").evaluate("maps => getComputedStyle(maps).display") == "flex"
    screenshot("change")

    page.go_back()
    page.locator(f'input[name="_selected_action"][value="{result.pk}"]').check()
    page.get_by_label("Action:").select_option("reject")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("Reject these results?").wait_for()
    expect(page.locator(".review-results img.picture-96")).to_have_count(1)
    screenshot("confirmation")
    # The cancel link is admin's cancel.js: a script file, so it still works.
    page.get_by_role("link", name="No, take me back").click()
    page.locator("#result_list").wait_for()
    result.refresh_from_db()
    assert result.review_status == "pending"

    # A change form with its widgets' scripts, saved.
    garment = result.job.garment
    page.goto(f"{live_server.url}/admin/catalog/garment/{garment.pk}/change/")
    page.get_by_label("Title").fill("Policy tee, renamed")
    page.get_by_role("button", name="Save and continue editing").click()
    page.get_by_text("was changed successfully").wait_for()
    garment.refresh_from_db()
    assert garment.title == "Policy tee, renamed"


def test_the_api_docs_and_browsable_api_render_under_the_policy(page, live_server, screenshot):
    page.goto(f"{live_server.url}/api/docs/")
    tryons = page.locator(".opblock-summary-path", has_text="/api/tryons/").first
    tryons.wait_for()
    assert page.locator(".opblock").count() > 10
    tryons.click()  # Swagger UI's own script opens the operation
    page.get_by_role("button", name="Try it out").first.wait_for()
    screenshot("swagger")

    # DRF's browsable API, for a viewset with extra actions (delete-all).
    page.goto(f"{live_server.url}/api/tryons/")
    page.get_by_role("heading", name="Try On List").wait_for()
    expect(page.get_by_label("response info")).to_contain_text('"results": []')
    screenshot("browsable")
