"""The Content-Security-Policy: on every response, the same in DEBUG and production, widened
only by the storages' origins; and pages that need nothing it refuses (the browser tests check
what Chromium reports, tests/browser/conftest.py)."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from tests.factories import TryOnResultFactory
from tests.processes import run_python
from tests.tryon.test_object_storage import S3_ENV, _settings_with
from tryon.review import result_publish, result_review

pytestmark = pytest.mark.django_db

POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def parse(header: str) -> dict[str, list[str]]:
    """The policy's directives (django-csp writes them in no fixed order)."""
    directives = (part.split() for part in header.split(";"))
    return {name: values for name, *values in directives}


def policy(response) -> dict[str, list[str]]:
    return parse(response["Content-Security-Policy"])


@pytest.fixture
def published(admin_user, analysed_garment):
    """A model shot of ``analysed_garment``, approved and shown on its product page."""
    result = TryOnResultFactory(job__garment=analysed_garment, job__owner=analysed_garment.merchant)
    result_review(result=result, reviewer=admin_user, approve=True)
    result_publish(result=result, user=analysed_garment.merchant)
    return result


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_pages_admin_and_api_answer_with_the_policy(client, admin_user, published, settings, debug):
    settings.DEBUG = debug
    garment = published.job.garment
    anonymous = [
        reverse("catalog:home"),
        garment.get_absolute_url(),
        reverse("login"),
        reverse("result_file", args=[published.pk, "image"]),
        "/api/garments/",
        "/api/schema/",
        "/api/docs/",
        "/api/docs/?script",
        "/healthz",
    ]
    staff = [
        reverse("admin:index"),
        reverse("admin:tryon_tryonresult_changelist"),
        reverse("admin:tryon_tryonresult_change", args=[published.pk]),
        reverse("admin:catalog_garment_change", args=[garment.pk]),
    ]
    for url in anonymous:
        response = client.get(url)
        assert response.status_code == 200, url
        assert policy(response) == POLICY, url
    client.force_login(admin_user)
    for url in staff:
        response = client.get(url)
        assert response.status_code == 200, url
        assert policy(response) == POLICY, url


def _policy_of_a_process(**env) -> dict[str, list[str]]:
    """The policy on the home page of a process started with ``env``."""
    code = (
        "import django; django.setup(); from django.test import Client; "
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "r = Client().get('/', secure=True, HTTP_HOST='shop.example.com'); "
        "print(r.status_code, r['Content-Security-Policy'])"
    )
    run = run_python(
        code,
        unset=("DJANGO_", "AWS_"),
        DJANGO_SETTINGS_MODULE="tryon.settings",
        DATABASE_URL="sqlite:///:memory:",
        **env,
    )
    assert run.returncode == 0, run.stderr
    status, header = run.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "200"
    return parse(header)


def test_debug_and_production_settings_send_the_same_policy():
    production = _policy_of_a_process(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_ALLOWED_HOSTS="shop.example.com",
    )
    debug = _policy_of_a_process(DJANGO_DEBUG="true", DJANGO_ALLOWED_HOSTS="shop.example.com")
    assert production == debug == POLICY


def test_pictures_may_come_from_the_buckets_and_the_cdn(client, settings):
    # Garment pictures come straight from the public bucket (here through its CDN domain); the
    # /files/ views redirect to the private bucket's signed URLs, and a browser checks the
    # target of an <img>'s redirect too.
    settings.STORAGES = {
        **settings.STORAGES,
        **_settings_with(**S3_ENV, AWS_S3_CUSTOM_DOMAIN="pictures.example.com")["storages"],
    }
    assert policy(client.get("/"))["img-src"] == [
        *POLICY["img-src"],
        "https://pictures.example.com",
        "https://shop-private.s3.amazonaws.com",
    ]
    settings.STORAGES = {
        **settings.STORAGES,
        **_settings_with(
            **S3_ENV,
            AWS_S3_ENDPOINT_URL="http://minio.internal:9000",
            AWS_S3_ADDRESSING_STYLE="path",
        )["storages"],
    }
    assert policy(client.get("/"))["img-src"] == [*POLICY["img-src"], "http://minio.internal:9000"]
    # The rest of the policy stays as it is.
    assert {**policy(client.get("/")), "img-src": POLICY["img-src"]} == POLICY


class _Refused(HTMLParser):
    """What a page holds that the policy refuses: inline scripts, <style> elements, style
    attributes, event handler attributes and javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        code = tag == "script" and attributes.get("type") != "application/json"
        if code and not attributes.get("src"):
            self.found.append(self.get_starttag_text())
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            handler = name.startswith("on") or name.startswith("hx-on")
            url = (value or "").strip().lower().startswith("javascript:")
            if name == "style" or handler or url:
                self.found.append(f"{name}={value!r} on <{tag}>")


def refused(response) -> list[str]:
    parser = _Refused()
    parser.feed(response.content.decode())
    return parser.found


def test_no_page_needs_what_the_policy_refuses(client, merchant, admin_user, published):
    garment = published.job.garment
    job = published.job
    changelist = reverse("admin:tryon_tryonresult_changelist")
    confirmation = {"action": "reject", "_selected_action": [published.pk], "index": "0"}
    client.force_login(admin_user)
    pages = {
        "admin index": client.get(reverse("admin:index")),
        "admin results": client.get(changelist),
        "admin result": client.get(reverse("admin:tryon_tryonresult_change", args=[published.pk])),
        "admin jobs": client.get(reverse("admin:tryon_tryonjob_changelist")),
        "admin job": client.get(reverse("admin:tryon_tryonjob_change", args=[job.pk])),
        "admin garments": client.get(reverse("admin:catalog_garment_changelist")),
        "admin garment": client.get(reverse("admin:catalog_garment_change", args=[garment.pk])),
        "review confirmation": client.post(changelist, confirmation),
        "API docs": client.get("/api/docs/"),
        "browsable API": client.get("/api/tryons/", HTTP_ACCEPT="text/html"),
    }
    client.force_login(merchant)
    for name in ("home", "garment_edit", "garment_mask", "garment_shots", "garment_gallery"):
        args = [] if name == "home" else [garment.pk]
        pages[f"merchant {name}"] = client.get(reverse(f"merchant:{name}", args=args))
    pages["catalog"] = client.get(reverse("catalog:home"))
    pages["product"] = client.get(garment.get_absolute_url())
    pages["job"] = client.get(reverse("tryon:job", args=[job.pk]))
    pages["my try-ons"] = client.get(reverse("tryon:mine"))
    client.logout()
    pages["sign in"] = client.get(reverse("login"))
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert refused(response) == [], name
    # The review confirmation page shows the pictures it asks about.
    assert 'class="picture-96"' in pages["review confirmation"].content.decode()


def test_the_api_docs_load_their_script_from_a_file_and_no_outside_picture(client):
    page = client.get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script="></script>' in page
    script = client.get("/api/docs/?script")
    assert script["Content-Type"].startswith("application/javascript")
    # Swagger UI's validator badge would be a picture from its host (refused, and it would be
    # told the schema's address).
    assert '"validatorUrl": null' in script.content.decode()
