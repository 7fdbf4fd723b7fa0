"""Shoppers' data: "delete my data" (page and API), retention that follows the photo, the
workers' purge timer, and per-owner rate limits on the forms that start jobs."""

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.cache import CacheHandler
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from catalog.models import Garment
from common.api_errors import ScopedByMethodThrottle
from tests.conftest import photo_upload
from tests.factories import TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon import housekeeping, intake
from tryon.models import TryOnJob
from tryon.views import LAST_PHOTO_JOB

pytestmark = pytest.mark.django_db


def _on_disk(settings) -> set[str]:
    root = Path(settings.PRIVATE_MEDIA_ROOT)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _files_of(job: TryOnJob) -> set[str]:
    """The names of every private file ``job`` owns, its results' included."""
    files = job.stored_files() + [f for r in job.results.all() for f in r.stored_files()]
    return {f.name for f in files}


def _photo_job(garment, **fields) -> TryOnJob:
    """A finished photo try-on with a photo, a live preview and a result with its maps; an
    anonymous shopper's unless ``fields`` name an owner."""
    job = TryOnJobFactory(
        kind=TryOnJob.Kind.PHOTO,
        garment=garment,
        person_photo=photo_upload(),
        preview=photo_upload(),
        status=TryOnJob.Status.SUCCEEDED,
        **{"owner": None, "photo_uploaded_at": timezone.now(), **fields},
    )
    TryOnResultFactory(job=job)
    return job


# --- delete my data -------------------------------------------------------------------------------


def test_delete_my_data_removes_every_try_on_of_the_session_rows_and_files(
    client, analysed_garment, settings, django_capture_on_commit_callbacks
):
    session = client.session  # the test client's session, with its cookie
    session.save()
    mine = [_photo_job(analysed_garment, session_key=session.session_key) for _ in range(2)]
    session[LAST_PHOTO_JOB] = str(mine[0].pk)
    session.save()
    theirs = _photo_job(analysed_garment, session_key="someone-else")
    signed_in = _photo_job(analysed_garment, owner=UserFactory())
    kept = _files_of(theirs) | _files_of(signed_in)
    assert all(_files_of(job) <= _on_disk(settings) for job in mine)

    page = client.get(reverse("tryon:mine")).content.decode()
    assert reverse("tryon:delete_my_data") in page and "csrfmiddlewaretoken" in page
    assert "the photos you uploaded, the pictures made from them" in page
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(reverse("tryon:delete_my_data"), follow=True)

    assert "Deleted 2 try-on(s) with your photos and results." in done.content.decode()
    assert set(TryOnJob.objects.values_list("pk", flat=True)) == {theirs.pk, signed_in.pk}
    assert _on_disk(settings) == kept  # photos, previews, results and maps: gone from disk
    assert LAST_PHOTO_JOB not in client.session  # nothing left to offer for reuse
    assert reverse("tryon:delete_my_data") not in client.get(reverse("tryon:mine")).content.decode()


def test_delete_my_data_needs_the_csrf_token(analysed_garment):
    client = Client(enforce_csrf_checks=True)
    session = client.session
    session.save()
    job = _photo_job(analysed_garment, session_key=session.session_key)
    assert client.post(reverse("tryon:delete_my_data")).status_code == 403
    assert TryOnJob.objects.filter(pk=job.pk).exists()


def test_a_merchants_data_is_their_photos_and_inpaints_not_their_catalog(
    client, merchant, analysed_garment, settings, django_capture_on_commit_callbacks
):
    model_photo = _photo_job(analysed_garment, owner=merchant)
    inpaint = TryOnJobFactory(
        kind=TryOnJob.Kind.INPAINT, garment=None, owner=merchant, person_photo=photo_upload()
    )
    shot = TryOnResultFactory(job__garment=analysed_garment, job__owner=merchant).job
    kept = _files_of(shot)
    client.force_login(merchant)

    page = client.get(reverse("tryon:mine")).content.decode()
    assert "your catalog (garments) and model shots stay" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("tryon:delete_my_data"))

    assert list(TryOnJob.objects.all()) == [shot]
    assert not TryOnJob.objects.filter(pk__in=[model_photo.pk, inpaint.pk]).exists()
    assert Garment.objects.filter(pk=analysed_garment.pk).exists()
    assert _on_disk(settings) == kept


def test_the_api_deletes_all_my_data_and_nobody_elses(
    analysed_garment, settings, django_capture_on_commit_callbacks
):
    from rest_framework.test import APIClient

    shopper, other = UserFactory(), UserFactory()
    mine = [_photo_job(analysed_garment, owner=shopper) for _ in range(2)]
    mine.append(
        TryOnJobFactory(
            kind=TryOnJob.Kind.INPAINT, garment=None, owner=shopper, person_photo=photo_upload()
        )
    )
    theirs = _photo_job(analysed_garment, owner=other)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=shopper).key}")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/tryons/delete-all/")
    assert response.status_code == 200 and response.json() == {"deleted": 3}
    assert list(TryOnJob.objects.all()) == [theirs]
    assert _on_disk(settings) == _files_of(theirs)
    assert api.post("/api/tryons/delete-all/").json() == {"deleted": 0}


# --- retention follows the photo -----------------------------------------------------------------


def test_a_photo_reused_or_re_run_is_purged_with_its_first_upload(
    analysed_garment, settings, django_capture_on_commit_callbacks
):
    settings.TRYON_ENGINE = "preview"
    uploaded = timezone.now()
    create = {"kind": "photo", "garment": analysed_garment, "consent": True, "check_pose": False}

    with mock.patch("django.utils.timezone.now", return_value=uploaded):
        original = intake.tryon_job_create(
            session_key="shopper", person_photo=photo_upload(), **create
        )
    with mock.patch("django.utils.timezone.now", return_value=uploaded + timedelta(hours=23)):
        rerun = intake.tryon_job_rerun(job=original, new_seed=True)
        reused = intake.tryon_job_create(session_key="shopper", photo_from=original, **create)
        fresh = intake.tryon_job_create(
            session_key="shopper", person_photo=photo_upload(), **create
        )
    assert rerun.created_at == reused.created_at == uploaded + timedelta(hours=23)
    assert rerun.photo_uploaded_at == reused.photo_uploaded_at == uploaded

    with mock.patch("django.utils.timezone.now", return_value=uploaded + timedelta(hours=23.9)):
        assert housekeeping.purge_expired() == 0
    later = uploaded + timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS, minutes=1)
    with (
        mock.patch("django.utils.timezone.now", return_value=later),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert housekeeping.purge_expired() == 3
    assert list(TryOnJob.objects.all()) == [fresh]
    assert _on_disk(settings) == _files_of(fresh)


def test_jobs_from_before_the_upload_time_was_kept_expire_by_their_creation(
    analysed_garment, settings, django_capture_on_commit_callbacks
):
    old = _photo_job(analysed_garment, session_key="s", photo_uploaded_at=None)
    recent = _photo_job(analysed_garment, session_key="s", photo_uploaded_at=None)
    day_ago = timezone.now() - timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS, minutes=1)
    TryOnJob.objects.filter(pk=old.pk).update(created_at=day_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert housekeeping.purge_expired() == 1
    assert list(TryOnJob.objects.all()) == [recent]


# --- the workers' timer --------------------------------------------------------------------------


def test_the_workers_housekeeping_timer_purges_expired_photos(
    analysed_garment, settings, django_capture_on_commit_callbacks
):
    from tryon.celery import JobSweepStep

    expired = _photo_job(analysed_garment, session_key="s")
    kept = _photo_job(analysed_garment, session_key="s")
    day_ago = timezone.now() - timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS, minutes=1)
    TryOnJob.objects.filter(pk=expired.pk).update(photo_uploaded_at=day_ago)
    # A worker's consumer, as far as the step uses it: its name and its timer.
    timer = mock.Mock()
    worker = mock.Mock(hostname="worker@test", timer=timer)
    step = JobSweepStep(worker)
    step.start(worker)
    interval, housekeeping = timer.call_repeatedly.call_args.args[:2]
    assert interval == settings.JOB_SWEEP_SECONDS
    assert TryOnJob.objects.filter(pk=expired.pk).exists()  # only the timer purges

    with django_capture_on_commit_callbacks(execute=True):
        housekeeping()
    assert list(TryOnJob.objects.all()) == [kept]
    assert _on_disk(settings) == _files_of(kept)
    step.stop(worker)
    timer.call_repeatedly.return_value.cancel.assert_called_once()


# --- rate limits ---------------------------------------------------------------------------------


@pytest.fixture
def two_writes_a_minute(monkeypatch):
    # DRF reads the rates into this class attribute at import: a settings override is too late.
    monkeypatch.setattr(ScopedByMethodThrottle, "THROTTLE_RATES", {"read": None, "write": "2/min"})


def test_the_api_write_path_answers_429_after_the_limit_and_the_form_shares_it(
    client, analysed_garment, two_writes_a_minute
):
    for _ in range(2):
        assert client.post("/api/tryons/", {}).status_code == 400
    refused = client.post("/api/tryons/", {})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert set(refused.json()) == {"message"}
    # The same sender cannot double the budget by switching to the page.
    form = client.post(reverse("tryon:create", args=[analysed_garment.pk]), {"consent": "on"})
    assert form.status_code == 429


def test_an_anonymous_client_cannot_pick_a_fresh_budget_with_x_forwarded_for(
    client, two_writes_a_minute
):
    # No proxy in front (a developer's machine): the header is the client's say, ignored.
    for spoofed in ("198.51.100.1", "198.51.100.2"):
        assert client.post("/api/tryons/", {}, HTTP_X_FORWARDED_FOR=spoofed).status_code == 400
    refused = client.post("/api/tryons/", {}, HTTP_X_FORWARDED_FOR="198.51.100.3")
    assert refused.status_code == 429


def test_behind_the_proxy_the_address_it_added_is_the_clients(
    client, settings, two_writes_a_minute
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # The proxy appends the address it saw; what comes before it is the client's own say.
    for spoofed in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        sent = client.post("/api/tryons/", {}, HTTP_X_FORWARDED_FOR=f"{spoofed}, 203.0.113.7")
    assert sent.status_code == 429
    other = client.post("/api/tryons/", {}, HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.status_code == 400  # another shopper behind the same proxy


def test_the_try_on_form_answers_429_with_a_readable_page_after_the_limit(
    client, analysed_garment, settings, two_writes_a_minute
):
    url = reverse("tryon:create", args=[analysed_garment.pk])
    for _ in range(2):
        assert client.post(url, {"person_photo": photo_upload()}).status_code == 400  # no consent
    refused = client.post(url, {"person_photo": photo_upload(), "consent": "on"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    page = refused.content.decode()
    assert "faster than allowed; please try again in" in page and 'name="person_photo"' in page
    assert not TryOnJob.objects.exists() and _on_disk(settings) == set()
    # Someone else (another address) still has their own budget.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post(url, {"person_photo": photo_upload()}).status_code == 400


def test_the_model_shot_form_answers_429_after_the_limit(
    merchant_client, analysed_garment, two_writes_a_minute
):
    url = reverse("merchant:garment_shots", args=[analysed_garment.pk])
    shot = {"poses": ["front_standing"], "count": "1", "seed": "7"}
    for _ in range(2):
        assert merchant_client.post(url, shot).status_code == 302
    refused = merchant_client.post(url, shot)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "faster than allowed" in refused.content.decode()
    # The same page's other form (the merchant's own model) spends the same budget.
    photo_shot = reverse("merchant:garment_photo_shot", args=[analysed_garment.pk])
    assert merchant_client.post(photo_shot, {"consent": "on"}).status_code == 429
    assert TryOnJob.objects.count() == 2


def test_the_cache_is_shared_by_processes_by_default():
    """Throttle counts must hold across the web processes: not Django's per-process LocMem."""
    key = f"test-shared-{uuid.uuid4().hex}"
    code = (
        "import json, django; django.setup(); "
        "from django.conf import settings; from django.core.cache import cache; "
        f"cache.set({key!r}, 'seen', 60); print(json.dumps(settings.CACHES['default']))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tryon.settings", "DJANGO_DEBUG": "true"}
    env.pop("CACHE_URL", None)
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True
    )
    default = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert "locmem" not in default["BACKEND"].lower()
    cache = CacheHandler({"default": default})["default"]
    try:
        assert cache.get(key) == "seen"  # written by the other process
    finally:
        cache.delete(key)
