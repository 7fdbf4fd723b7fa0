"""Try-on jobs in one process: creating, running (tiny engine), failing, cancelling, deleting,
sweeping, reviewing and publishing. Real worker processes: tests/tryon/test_job_worker.py."""

import io
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from catalog.models import Garment
from tests.conftest import photo_upload
from tests.factories import TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon import runner
from tryon.deletion import tryon_job_cancel, tryon_job_delete
from tryon.housekeeping import jobs_sweep
from tryon.intake import model_shot_batch_create, tryon_job_create
from tryon.models import TryOnJob, TryOnResult
from tryon.review import result_publish, result_review
from tryon.runner import tryon_job_run

pytestmark = pytest.mark.django_db
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 5}


def private_files(settings) -> list[str]:
    root = settings.PRIVATE_MEDIA_ROOT
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def garment(analysed_garment, tiny_models_dir) -> Garment:
    return analysed_garment


def create_photo_job(garment, **overrides):
    options = {
        "kind": "photo",
        "garment": garment,
        "session_key": "shopper-session",
        "person_photo": photo_upload(),
        "consent": True,
        "params": FAST,
        "engine": "tiny",
    }
    return tryon_job_create(**{**options, **overrides})


def test_a_photo_job_runs_on_commit_and_stores_its_result(
    garment, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = create_photo_job(garment)

    job.refresh_from_db()
    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    assert job.progress == 1.0 and job.attempts == 1 and job.consent_at is not None
    assert job.session_key == "shopper-session" and job.owner is None
    assert {"person", "sampling", "total"} <= set(job.timings)
    (result,) = job.results.all()
    assert result.seed == 5 and "Seed: 5" in result.infotext
    assert result.review_status == TryOnResult.Review.PENDING and not result.published
    with result.image.open("rb") as stored, Image.open(stored) as picture:
        assert picture.size == (512, 512) and picture.text["ai_generated"] == "true"
    # Photo, result and its four maps, all in private storage, none under MEDIA_ROOT.
    assert len(private_files(settings)) == 1 + 5
    assert not any("photos" in p.as_posix() for p in settings.MEDIA_ROOT.rglob("*"))


def test_a_job_reads_only_the_garment_files_it_uses(garment, django_capture_on_commit_callbacks):
    """A try-on's Canny map is drawn from the warped garment: the product shot's stored Canny
    map (the merchant's view of the analysis) is never read by a job."""
    garment.canny.storage.delete(garment.canny.name)
    with django_capture_on_commit_callbacks(execute=True):
        job = create_photo_job(garment)
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"consent": False}, "consent", "agree"),
        ({"person_photo": None}, "person_photo", "required"),
        (
            {"person_photo": SimpleUploadedFile("x.jpg", b"<svg/>", "image/jpeg")},
            "person_photo",
            "",
        ),
        ({"params": {"steps": 0}}, "steps", "from 1 to 150"),
        ({"params": {"sampler_name": "Nope"}}, "sampler_name", "unknown sampler"),
        ({"params": {"colour": "red"}}, "params", "unknown parameters colour"),
        ({"params": {"prompt": "x" * 301}}, "user_text", "at most 300"),
        ({"engine": "turbo"}, "engine", "must be one of"),
        ({"session_key": ""}, "owner", "owner"),
    ],
)
def test_bad_requests_name_the_field_and_store_nothing(
    garment, settings, overrides, field, message
):
    before = private_files(settings)
    with (
        mock.patch("tryon.tasks.tryon_job_run_task.delay") as delay,
        pytest.raises(ValidationError) as caught,
    ):
        create_photo_job(garment, **overrides)
    assert field in caught.value.message_dict
    assert message in " ".join(caught.value.message_dict[field])
    assert TryOnJob.objects.count() == 0 and private_files(settings) == before
    delay.assert_not_called()


def test_a_photo_without_a_usable_pose_is_refused_before_queueing(garment):
    empty_room = Image.new("RGB", (400, 500), (120, 150, 120))
    with pytest.raises(ValidationError) as caught:
        create_photo_job(garment, person_photo=photo_upload(empty_room))
    assert "person_photo" in caught.value.message_dict
    assert TryOnJob.objects.count() == 0


def test_an_unanalysed_garment_or_an_impossible_outfit_is_refused(garment, merchant):
    garment.analysis_status = Garment.AnalysisStatus.PENDING
    garment.save()
    with pytest.raises(ValidationError) as caught:
        create_photo_job(garment)
    assert "not analysed yet" in caught.value.message_dict["garment"][0]

    garment.analysis_status = Garment.AnalysisStatus.DONE
    garment.save()
    with pytest.raises(ValidationError) as caught:
        create_photo_job(garment, extra_garments=[garment])
    assert "repeated" in caught.value.message_dict["garments"][0]


def test_an_enqueue_whose_transaction_rolls_back_never_runs(
    garment, django_capture_on_commit_callbacks
):
    with (
        mock.patch("tryon.tasks.tryon_job_run_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        create_photo_job(garment)
        raise RuntimeError("the request failed after the job was made")
    delay.assert_not_called()
    assert TryOnJob.objects.count() == 0


def test_a_job_is_claimed_by_one_worker_only(garment):
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = create_photo_job(garment)
    first = runner.claim(job.pk, "worker-a:1")
    second = runner.claim(job.pk, "worker-b:1")
    assert first is not None and first.worker == "worker-a:1"
    assert second is None
    # A finished job is never run again by a late duplicate message.
    assert tryon_job_run(job_id=job.pk, worker="worker-b:1") is None


def test_a_job_that_always_fails_ends_failed_after_three_attempts(
    garment, django_capture_on_commit_callbacks
):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("the GPU caught fire")

    with (
        mock.patch("pipelines.tryon.run", broken),
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = create_photo_job(garment)
    job.refresh_from_db()
    assert len(calls) == 3 and job.attempts == 3
    assert job.status == TryOnJob.Status.FAILED and job.error_type == "RuntimeError"
    assert "failed 3 times" in job.error_message and "fire" not in job.error_message


def test_bad_input_found_by_the_worker_fails_at_once_with_its_message(
    garment, django_capture_on_commit_callbacks
):
    from pipelines.errors import ModelNotFoundError

    def no_weights(*args, **kwargs):
        raise ModelNotFoundError("missing model files: a checkpoint")

    with (
        mock.patch("pipelines.tryon.run", no_weights),
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = create_photo_job(garment)
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.FAILED and job.attempts == 1
    assert job.error_type == "ModelNotFoundError" and "checkpoint" in job.error_message


def test_progress_is_written_as_the_steps_go(garment, settings):
    settings.JOB_PROGRESS_INTERVAL = 0
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = create_photo_job(garment, params={**FAST, "steps": 6, "denoising_strength": 1.0})
    seen = []
    write = runner.ProgressReporter.progress

    def recording(reporter, report):
        write(reporter, report)
        seen.append(TryOnJob.objects.values_list("progress", "step").get(pk=job.pk))

    with mock.patch.object(runner.ProgressReporter, "progress", recording):
        tryon_job_run(job_id=job.pk, worker="w:1")
    during = [progress for progress, step in seen if "step" in step]
    assert len(during) == 6 and during[0] > 0
    assert during == sorted(during) and during[0] < during[-1] <= 1.0


def test_cancelling_a_running_job_stops_it_within_one_step(garment):
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = create_photo_job(garment, params={**FAST, "steps": 10, "denoising_strength": 1.0})
    steps = []
    write = runner.ProgressReporter.progress

    def cancel_after_first_step(reporter, report):
        write(reporter, report)
        if "step" in report.text:
            steps.append(report.text)
            tryon_job_cancel(job=TryOnJob.objects.get(pk=job.pk))

    with mock.patch.object(runner.ProgressReporter, "progress", cancel_after_first_step):
        tryon_job_run(job_id=job.pk, worker="w:1")
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.CANCELLED and len(steps) == 1
    assert not job.results.exists()


def test_cancelling_a_queued_job_means_it_never_runs(garment):
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = create_photo_job(garment)
    tryon_job_cancel(job=job)
    assert job.status == TryOnJob.Status.CANCELLED
    assert tryon_job_run(job_id=job.pk, worker="w:1") is None


def test_a_job_past_its_deadline_fails(garment, settings):
    settings.JOB_DEADLINE = 0
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = create_photo_job(garment)
    finished = tryon_job_run(job_id=job.pk, worker="w:1")
    assert finished.status == TryOnJob.Status.FAILED and "longer than 0 s" in finished.error_message


def test_running_a_job_again_overwrites_its_results(
    garment, settings, django_capture_on_commit_callbacks
):
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = create_photo_job(garment)
    tryon_job_run(job_id=job.pk, worker="w:1")
    first_files = private_files(settings)
    TryOnJob.objects.filter(pk=job.pk).update(status=TryOnJob.Status.QUEUED)
    with django_capture_on_commit_callbacks(execute=True):
        tryon_job_run(job_id=job.pk, worker="w:2")
    assert TryOnResult.objects.filter(job=job).count() == 1
    # One photo and one result's five files: the first run's files were replaced, not kept.
    assert len(private_files(settings)) == len(first_files) == 6


def test_deleting_a_job_removes_its_rows_and_files(
    garment, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = create_photo_job(garment)
    assert private_files(settings)
    with django_capture_on_commit_callbacks(execute=True):
        tryon_job_delete(job=job)
    assert not TryOnJob.objects.exists() and not TryOnResult.objects.exists()
    assert private_files(settings) == []


def test_the_sweeper_requeues_orphans_and_gives_up_after_the_attempts(
    garment, settings, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    orphan = TryOnJobFactory(
        status="running", worker="gone@host:11", attempts=1, heartbeat=long_ago
    )
    alive = TryOnJobFactory(
        status="running", worker="busy@host:12", attempts=1, heartbeat=timezone.now()
    )
    spent = TryOnJobFactory(status="running", worker="gone@host:13", attempts=3, heartbeat=long_ago)
    restarted = TryOnJobFactory(
        status="running", worker="restarted@host:14", attempts=1, heartbeat=timezone.now()
    )
    with (
        mock.patch("tryon.tasks.tryon_job_run_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert jobs_sweep() == 1
        assert jobs_sweep(restarted_worker="restarted@host") == 1
    statuses = {
        job.pk: TryOnJob.objects.get(pk=job.pk).status for job in (orphan, alive, spent, restarted)
    }
    assert statuses == {
        orphan.pk: "queued",
        alive.pk: "running",
        spent.pk: "failed",
        restarted.pk: "queued",
    }
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted(
        [str(orphan.pk), str(restarted.pk)]
    )


def test_a_model_shot_batch_is_one_job_per_picture(
    garment, merchant, django_capture_on_commit_callbacks
):
    with (
        mock.patch("tryon.tasks.tryon_job_run_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        jobs = model_shot_batch_create(
            owner=merchant,
            garment=garment,
            poses=["front_standing", "three_quarter"],
            scenes=["beach", "a rooftop garden"],
            count=2,
            params={**FAST, "seed": 100},
            engine="tiny",
        )
    assert len(jobs) == 8 and len({job.batch for job in jobs}) == 1
    assert sorted({job.params["seed"] for job in jobs}) == [100, 101]
    assert {(job.scene, job.scene_text) for job in jobs} == {
        ("beach", ""),
        ("", "a rooftop garden"),
    }
    assert delay.call_count == 8
    with pytest.raises(ValidationError) as caught:
        model_shot_batch_create(owner=merchant, garment=garment, poses=["moonwalk"], scenes=[])
    assert "pose" in caught.value.message_dict


def test_a_model_shot_job_runs_with_the_tiny_engine(
    garment, merchant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = model_shot_batch_create(
            owner=merchant,
            garment=garment,
            poses=["front_standing"],
            scenes=["park"],
            params=FAST,
            engine="tiny",
        )
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    result = job.results.get()
    assert "Scene: park" in result.infotext
    # Model shots take the hires pass unless asked not to: twice the 128 × 192 asked for.
    assert "Hires upscale: 2" in result.infotext
    with result.image.open("rb") as stored, Image.open(stored) as picture:
        assert picture.size == (256, 384)


def test_review_and_publishing_rules(merchant, admin_user):
    result = TryOnResultFactory(job__garment__merchant=merchant, job__owner=merchant)
    with pytest.raises(ValidationError):
        result_publish(result=result, user=merchant)  # not approved yet
    with pytest.raises(PermissionDenied):
        result_review(result=result, reviewer=merchant, approve=True)
    result_review(result=result, reviewer=admin_user, approve=True, note="lovely")
    with pytest.raises(PermissionDenied):
        result_publish(result=result, user=UserFactory())  # not the garment's merchant
    result_publish(result=result, user=merchant)
    assert TryOnResult.objects.get(pk=result.pk).published
    result_review(result=result, reviewer=admin_user, approve=False, note="wrong colour")
    result.refresh_from_db()
    assert result.review_status == "rejected" and not result.published
    assert result.reviewer == admin_user and result.review_note == "wrong colour"

    photo_result = TryOnResultFactory(
        job__kind="photo", job__garment__merchant=merchant, job__owner=None, job__session_key="s"
    )
    result_review(result=photo_result, reviewer=admin_user, approve=True)
    with pytest.raises(PermissionDenied):  # the shopper's, not the merchant's
        result_publish(result=photo_result, user=merchant, published=False)
    own_model_photo = TryOnResultFactory(
        job__kind="photo", job__garment__merchant=merchant, job__owner=merchant
    )
    result_review(result=own_model_photo, reviewer=admin_user, approve=True)
    with pytest.raises(ValidationError, match="stay private"):
        result_publish(result=own_model_photo, user=merchant)


def test_private_files_are_served_to_their_owner_only(
    garment, client, django_capture_on_commit_callbacks
):
    client.get("/")  # a session for the anonymous shopper
    session = client.session
    session.save()
    with django_capture_on_commit_callbacks(execute=True):
        job = create_photo_job(garment, session_key=session.session_key)
    result = job.results.get()
    photo_url = reverse("job_file", args=[job.pk, "person_photo"])
    result_url = reverse("result_file", args=[result.pk, "image"])

    for url in (photo_url, result_url):
        response = client.get(url)
        assert response.status_code == 200
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"].startswith("private")
        assert response["Content-Disposition"].startswith("inline")

    stranger = client.__class__()
    assert stranger.get(photo_url).status_code == 404
    assert stranger.get(result_url).status_code == 404
    assert stranger.get(reverse("job_file", args=[job.pk, "garment"])).status_code == 404


def test_the_product_page_shows_published_model_shots_only(client, merchant, admin_user):
    shown = TryOnResultFactory(job__garment__merchant=merchant, job__owner=merchant)
    result_review(result=shown, reviewer=admin_user, approve=True)
    result_publish(result=shown, user=merchant)
    garment = shown.job.garment
    approved_only = TryOnResultFactory(job__garment=garment, job__owner=merchant)
    result_review(result=approved_only, reviewer=admin_user, approve=True)
    pending = TryOnResultFactory(job__garment=garment, job__owner=merchant)

    page = client.get(reverse("catalog:garment", args=[garment.pk])).content.decode()
    assert reverse("result_file", args=[shown.pk, "image"]) in page
    assert "AI-generated" in page
    for hidden in (approved_only, pending):
        assert reverse("result_file", args=[hidden.pk, "image"]) not in page
        # Nor can anyone outside fetch them by guessing the address.
        assert client.get(reverse("result_file", args=[hidden.pk, "image"])).status_code == 404
    response = client.get(reverse("result_file", args=[shown.pk, "image"]))
    assert response.status_code == 200
    # Hidden or rejected later, it must not live on in a CDN: shared caches ask every time.
    assert response["Cache-Control"] == "public, max-age=60, s-maxage=0"
    # Its maps stay with staff and the merchant.
    assert client.get(reverse("result_file", args=[shown.pk, "mask"])).status_code == 404


def test_photos_past_their_retention_are_purged_with_their_files(
    garment, settings, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=True):
        old = create_photo_job(garment)
        recent = create_photo_job(garment)
    shot = TryOnJobFactory(garment=garment)
    day_ago = timezone.now() - timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS, minutes=1)
    TryOnJob.objects.filter(pk__in=[old.pk, shot.pk]).update(
        created_at=day_ago, photo_uploaded_at=day_ago
    )
    kept_files = sorted(f.name for f in recent.stored_files() + recent.results.get().stored_files())

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_expired", stdout=out)
    assert "Deleted 1 photo try-on(s) older than 24 h." in out.getvalue()
    assert set(TryOnJob.objects.values_list("pk", flat=True)) == {recent.pk, shot.pk}
    assert private_files(settings) == kept_files


def test_a_rerun_that_fails_to_save_leaves_no_copied_file_behind(garment, settings, monkeypatch):
    from tryon.intake import tryon_job_rerun

    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        original = create_photo_job(garment)
    before = private_files(settings)
    assert before  # the original's photo

    def fail_to_save(self, *args, **kwargs):
        raise RuntimeError("the database went away")

    # The copy's photo is written, then its row fails to save: the photo must not stay.
    monkeypatch.setattr(TryOnJob, "save", fail_to_save)
    with pytest.raises(RuntimeError, match="went away"):
        tryon_job_rerun(job=original, new_seed=True)
    assert private_files(settings) == before
