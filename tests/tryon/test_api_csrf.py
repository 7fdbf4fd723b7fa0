"""An anonymous shopper's session cookie owns jobs; another site cannot write with it.

DRF checks CSRF only for signed-in sessions. These requests are what another site's page can
make a shopper's browser send: a cross-site POST with the cookie attached, ``text/plain`` so
no preflight stops it, and that site's Origin.
"""

import pytest
from django.test import Client

from tests.conftest import photo_upload
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db
EVIL = {"content_type": "text/plain", "HTTP_ORIGIN": "https://evil.example"}


@pytest.fixture
def shopper(analysed_garment, settings):
    """A browser (CSRF checked, as in real life) whose session owns a queued try-on."""
    settings.TRYON_ENGINE = "preview"
    browser = Client(enforce_csrf_checks=True)
    created = browser.post(
        "/api/tryons/",
        {"garment": analysed_garment.pk, "person_photo": photo_upload(), "consent": "true"},
    )
    assert created.status_code == 201, created.content  # no cookie yet: nothing to abuse
    assert browser.cookies["sessionid"].value and browser.cookies["csrftoken"].value
    job = TryOnJob.objects.get(pk=created.json()["id"])
    TryOnJob.objects.filter(pk=job.pk).update(status=TryOnJob.Status.QUEUED)
    return browser, job, analysed_garment


@pytest.mark.parametrize(
    "request_",
    [
        ("post", "/api/tryons/delete-all/"),
        ("post", "/api/tryons/{job}/cancel/"),
        ("delete", "/api/tryons/{job}/"),
        ("post", "/api/tryons/"),
    ],
    ids=["delete-all", "cancel", "delete", "create"],
)
def test_a_cross_site_write_with_the_session_cookie_is_refused(shopper, request_):
    browser, job, garment = shopper
    method, path = request_
    body = f'{{"garment": {garment.pk}, "consent": true}}'
    refused = getattr(browser, method)(path.format(job=job.pk), body, **EVIL)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.QUEUED and not job.cancel_requested
    assert TryOnJob.objects.count() == 1 and job.person_photo


def test_the_shoppers_own_page_script_may_write_with_the_token(shopper):
    browser, job, _ = shopper
    token = browser.cookies["csrftoken"].value
    cancelled = browser.post(f"/api/tryons/{job.pk}/cancel/", HTTP_X_CSRFTOKEN=token)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    deleted = browser.post("/api/tryons/delete-all/", HTTP_X_CSRFTOKEN=token)
    assert deleted.json() == {"deleted": 1}


def test_reading_needs_no_token(shopper):
    browser, job, _ = shopper
    assert (
        browser.get(f"/api/tryons/{job.pk}/", HTTP_ORIGIN="https://evil.example").status_code == 200
    )
