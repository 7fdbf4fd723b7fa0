"""The NSFW filter in a job's life (TRYON_CONTENT_FILTER): a refused photo or an all-withheld
result fails the job with a message and leaves no generated picture on disk; a partly withheld
batch succeeds and says how many pictures were held back."""

import shutil

import pytest
from rest_framework.authtoken.models import Token

from pipelines.content_filter import SAFETY_FOLDER, SafetyChecker
from tests.conftest import photo_upload
from tests.pipelines.test_content_filter import FLAG_EVERYTHING, FLAG_NOTHING, make_safety_checker
from tests.processes import run_python
from tryon.intake import tryon_job_create
from tryon.models import TryOnJob, TryOnResult
from tryon.runner import withheld_notice

pytestmark = pytest.mark.django_db
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 5}


@pytest.fixture(scope="module")
def checkers(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkers")
    return {t: make_safety_checker(root / str(t), t) for t in (FLAG_EVERYTHING, FLAG_NOTHING)}


@pytest.fixture
def install(tiny_models_dir, checkers):
    def install(threshold):
        shutil.copytree(checkers[threshold], tiny_models_dir / SAFETY_FOLDER)

    return install


def private_files(settings) -> list[str]:
    root = settings.PRIVATE_MEDIA_ROOT
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _run(callbacks, **options) -> TryOnJob:
    with callbacks(execute=True):
        job = tryon_job_create(**{"params": FAST, "engine": "tiny", **options})
    job.refresh_from_db()
    return job


def _photo_job(garment, callbacks) -> TryOnJob:
    return _run(
        callbacks,
        kind="photo",
        garment=garment,
        session_key="shopper-session",
        person_photo=photo_upload(),
        consent=True,
    )


def test_a_refused_photo_fails_the_job_before_anything_is_painted(
    analysed_garment, install, settings, django_capture_on_commit_callbacks
):
    install(FLAG_EVERYTHING)
    job = _photo_job(analysed_garment, django_capture_on_commit_callbacks)

    assert job.status == TryOnJob.Status.FAILED and job.error_type == "ContentFiltered"
    assert "content filter refused this photo" in job.error_message
    assert job.progress == 0.0 and job.attempts == 1  # no retry, no sampling step
    assert not TryOnResult.objects.exists()
    assert [p.split("/")[0] for p in private_files(settings)] == ["photos"]


def test_an_all_withheld_result_fails_the_job_and_nothing_is_stored(
    analysed_garment, install, settings, django_capture_on_commit_callbacks
):
    install(FLAG_EVERYTHING)
    # Steps enough for a live preview (every 5th step), written at every report.
    settings.JOB_PROGRESS_INTERVAL = 0
    job = _run(
        django_capture_on_commit_callbacks,
        kind="model_shot",
        garment=analysed_garment,
        owner=analysed_garment.merchant,
        scene="beach",
        params={**FAST, "steps": 6},
    )

    assert job.status == TryOnJob.Status.FAILED and job.error_type == "ContentFiltered"
    assert job.error_message.startswith("The result was withheld by the content filter")
    assert not TryOnResult.objects.exists()
    # No result, map or live preview of it is left: a model shot has no other file.
    assert not job.preview and private_files(settings) == []


def test_results_the_filter_passes_are_stored(
    analysed_garment, install, settings, django_capture_on_commit_callbacks
):
    install(FLAG_NOTHING)
    job = _photo_job(analysed_garment, django_capture_on_commit_callbacks)

    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    assert job.results.count() == 1 and "filter_output" in job.timings


def test_a_partly_withheld_batch_succeeds_and_tells_its_owner_how_many(
    analysed_garment, install, monkeypatch, django_capture_on_commit_callbacks, client
):
    install(FLAG_NOTHING)
    # The first picture of a batch is flagged; a lone picture (an input) is not.
    monkeypatch.setattr(
        SafetyChecker,
        "flags",
        lambda self, images: [len(images) > 1 and i == 0 for i in range(len(images))],
    )
    job = _run(
        django_capture_on_commit_callbacks,
        kind="model_shot",
        garment=analysed_garment,
        owner=analysed_garment.merchant,
        params={**FAST, "batch_size": 3},
    )

    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    assert job.results.count() == 2
    notice = "1 of 3 pictures was withheld by the content filter; try another seed or other words"
    assert job.notice.startswith(notice)
    token = Token.objects.create(user=analysed_garment.merchant)
    shown = client.get(f"/api/tryons/{job.pk}/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert shown.json()["notice"] == job.notice


def test_a_notice_counts_what_was_withheld():
    assert withheld_notice(0, 1) == ""
    assert withheld_notice(2, 1).startswith("2 of 3 pictures were withheld")


def test_tryon_content_filter_off_skips_the_installed_filter(
    analysed_garment, install, settings, django_capture_on_commit_callbacks
):
    install(FLAG_EVERYTHING)
    settings.TRYON_CONTENT_FILTER = "off"
    job = _photo_job(analysed_garment, django_capture_on_commit_callbacks)

    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    assert "filter_input" not in job.timings


def test_an_unknown_setting_stops_the_start_instead_of_guessing():
    result = run_python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="tryon.settings",
        DJANGO_DEBUG="true",
        TRYON_CONTENT_FILTER="on",
    )
    assert result.returncode != 0
    assert "TRYON_CONTENT_FILTER must be auto or off, not 'on'" in result.stderr
