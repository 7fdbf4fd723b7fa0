"""Staff review try-on jobs and results in Django admin; shoppers' photos only with an audited
permission, each look recorded by the file view."""

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import image_bytes, stored_files
from tests.factories import TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon.models import PhotoAccess, TryOnJob, TryOnResult

pytestmark = pytest.mark.django_db

Status = TryOnJob.Status
MAPS = ("image", "mask", "openpose", "canny", "composite")
HIDDEN = "Hidden: needs the “Can view shoppers"


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def make_staff(username, *, photo_permission):
    """A staff member who may look at jobs and results, with or without the photo permission."""
    user = UserFactory(username=username, is_staff=True)
    codenames = ["view_tryonjob", "view_tryonresult", "view_photoaccess"]
    if photo_permission:
        codenames.append("view_person_photo")
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def plain_staff(client):
    client.force_login(make_staff("plain-staff", photo_permission=False))
    return client


@pytest.fixture
def photo_staff_user():
    return make_staff("photo-staff", photo_permission=True)


@pytest.fixture
def photo_staff(client, photo_staff_user):
    client.force_login(photo_staff_user)
    return client


def photo_job_with_result(**extra):
    job = TryOnJobFactory(
        kind=TryOnJob.Kind.PHOTO,
        owner=None,
        session_key="shopper-session",
        person_photo=SimpleUploadedFile("me.png", image_bytes(colour=(200, 150, 120))),
        status=Status.SUCCEEDED,
        progress=1.0,
        **extra,
    )
    return job, TryOnResultFactory(job=job)


def job_url(job, field="person_photo"):
    return reverse("job_file", args=[job.pk, field])


def result_url(result, field="image"):
    return reverse("result_file", args=[result.pk, field])


def shown(response):
    return {row.pk for row in response.context["cl"].result_list}


def filter_link(response, title, display):
    """The query string of one choice of a changelist filter, as the page offers it."""
    changelist = response.context["cl"]
    for spec in changelist.filter_specs:
        if spec.title == title:
            for choice in spec.choices(changelist):
                if str(choice["display"]) == display:
                    return choice["query_string"]
    raise AssertionError(f"no filter choice {title} / {display}")


# --- jobs: list, filters, search -----------------------------------------------------------------


def test_job_changelist_shows_thumbnails_columns_filters_and_search(staff_client):
    result = TryOnResultFactory(job__garment__title="Linen shirt", job__garment__sku="LIN-1")
    shot = result.job
    anonymous, _ = photo_job_with_result()
    failed = TryOnJobFactory(status=Status.FAILED, error_message="CUDA out of memory", attempts=3)
    TryOnJob.objects.filter(pk=failed.pk).update(created_at=timezone.now() - timedelta(days=40))
    changelist = reverse("admin:tryon_tryonjob_changelist")

    response = staff_client.get(changelist)
    html = response.content.decode()
    assert response.status_code == 200
    assert f'<img src="{result_url(result)}"' in html
    assert shot.garment.merchant.username in html
    assert "anonymous shopper" in html
    assert shown(response) == {shot.pk, anonymous.pk, failed.pk}

    assert shown(staff_client.get(changelist, {"status__exact": "failed"})) == {failed.pk}
    assert shown(staff_client.get(changelist, {"kind__exact": "photo"})) == {anonymous.pk}
    assert shown(staff_client.get(changelist, {"garment__id__exact": shot.garment_id})) == {shot.pk}
    by_merchant = {"garment__merchant__id__exact": failed.garment.merchant_id}
    assert shown(staff_client.get(changelist, by_merchant)) == {failed.pk}
    past_week = filter_link(response, "created at", "Past 7 days")
    assert shown(staff_client.get(changelist + past_week)) == {shot.pk, anonymous.pk}

    for term, expected in [
        ("LIN-1", shot),
        ("Linen", shot),
        ("out of memory", failed),
        (shot.owner.username, shot),
        (str(anonymous.pk)[:8], anonymous),
    ]:
        assert shown(staff_client.get(changelist, {"q": term})) == {expected.pk}, term


def test_job_changelist_makes_the_same_number_of_queries_for_3_or_12_jobs(client, photo_staff_user):
    client.force_login(photo_staff_user)

    def add_jobs(count):
        for number in range(count):
            if number % 3 == 0:
                photo_job_with_result()
            elif number % 3 == 1:
                TryOnResultFactory.create_batch(2, job=TryOnJobFactory(status=Status.SUCCEEDED))
            else:
                TryOnJobFactory(status=Status.QUEUED)

    changelist = reverse("admin:tryon_tryonjob_changelist")
    add_jobs(3)
    with CaptureQueriesContext(connection) as few:
        assert client.get(changelist).status_code == 200
    add_jobs(9)
    assert TryOnJob.objects.count() == 12
    with CaptureQueriesContext(connection) as many:
        response = client.get(changelist)
    assert len(shown(response)) == 12
    assert response.content.decode().count('<img src="/files/results/') == 8
    assert len(many) == len(few), [query["sql"] for query in many.captured_queries]


# --- jobs: detail page ---------------------------------------------------------------------------


def test_job_detail_shows_parameters_progress_error_and_each_result_with_its_maps(staff_client):
    job = TryOnJobFactory(
        status=Status.FAILED,
        progress=0.5,
        step="sampling 1/2",
        error_type="GenerationError",
        error_message="the sampler blew up",
        worker="gpu-1:42",
        timings={"diffusion": 1234},
        params={"steps": 2, "seed": 77, "prompt": "studio <light>"},
    )
    first = TryOnResultFactory(job=job, index=0, seed=77, infotext="a prompt\nSteps: 2, Seed: 77")
    second = TryOnResultFactory(job=job, index=1, seed=78, infotext="another\nSteps: 2, Seed: 78")

    response = staff_client.get(reverse("admin:tryon_tryonjob_change", args=[job.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        "<pre>{\n  &quot;prompt&quot;: &quot;studio &lt;light&gt;&quot;,\n  &quot;seed&quot;: 77,"
        in html
    )
    for text in ("50%", "sampling 1/2", "GenerationError", "the sampler blew up", "gpu-1:42"):
        assert text in html
    assert "&quot;diffusion&quot;: 1234" in html
    assert "<pre>a prompt\nSteps: 2, Seed: 77</pre>" in html
    assert "<pre>another\nSteps: 2, Seed: 78</pre>" in html
    for result in (first, second):
        side_by_side = re.search(
            rf'<div class="tryon-maps"[^>]*>((?:(?!</div>).)*{re.escape(result_url(result))}'
            r"(?:(?!</div>).)*)</div>",
            html,
            re.S,
        )
        assert side_by_side, f"no maps block for result {result.index}"
        urls = re.findall(r'<img src="([^"]+)"', side_by_side.group(1))
        assert urls == [result_url(result, field) for field in MAPS]
    # Read only: no input for any of the job's inputs, no save button.
    assert 'name="params"' not in html
    assert 'name="_save"' not in html


def test_job_detail_cannot_be_saved(staff_client):
    job = TryOnJobFactory(pose="front_standing")
    url = reverse("admin:tryon_tryonjob_change", args=[job.pk])
    response = staff_client.post(url, {"pose": "side", "status": "succeeded"})
    assert response.status_code == 403
    job.refresh_from_db()
    assert (job.pose, job.status) == ("front_standing", Status.QUEUED)


# --- shoppers' photos ----------------------------------------------------------------------------


def test_photo_pictures_are_hidden_without_the_permission(plain_staff):
    job, result = photo_job_with_result()
    model_shot = TryOnResultFactory()
    private_urls = [job_url(job)] + [result_url(result, field) for field in MAPS]

    pages = [
        reverse("admin:tryon_tryonjob_changelist"),
        reverse("admin:tryon_tryonjob_change", args=[job.pk]),
        reverse("admin:tryon_tryonresult_changelist"),
        reverse("admin:tryon_tryonresult_change", args=[result.pk]),
    ]
    for page in pages:
        response = plain_staff.get(page)
        html = response.content.decode()
        assert response.status_code == 200, page
        assert HIDDEN in html, page
        assert not [url for url in private_urls if url in html], page
    changelist = plain_staff.get(reverse("admin:tryon_tryonresult_changelist"))
    assert f'<img src="{result_url(model_shot)}"' in changelist.content.decode()


def test_photo_pictures_are_shown_with_the_permission_and_viewing_the_page_records_nothing(
    photo_staff,
):
    job, result = photo_job_with_result()

    detail = photo_staff.get(reverse("admin:tryon_tryonjob_change", args=[job.pk])).content
    html = detail.decode()
    assert f'<img src="{job_url(job)}"' in html
    for field in MAPS:
        assert f'<img src="{result_url(result, field)}"' in html
    assert HIDDEN not in html
    result_page = photo_staff.get(reverse("admin:tryon_tryonresult_change", args=[result.pk]))
    assert f'<img src="{result_url(result, "canny")}"' in result_page.content.decode()
    changelist = photo_staff.get(reverse("admin:tryon_tryonresult_changelist"))
    assert f'<img src="{result_url(result)}"' in changelist.content.decode()
    assert PhotoAccess.objects.count() == 0


def _body(response) -> bytes:
    return b"".join(response.streaming_content)  # the test client closes the file after it


def test_opening_a_photo_from_admin_records_one_access_and_serves_it_privately(
    photo_staff, photo_staff_user
):
    job, result = photo_job_with_result()
    html = photo_staff.get(reverse("admin:tryon_tryonjob_change", args=[job.pk])).content.decode()
    photo_src = re.search(r'<img src="(/files/jobs/[^"]+)"', html).group(1)

    response = photo_staff.get(photo_src)
    assert response.status_code == 200
    with job.person_photo.open("rb") as stored:
        assert _body(response) == stored.read()
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"].startswith("private")
    access = PhotoAccess.objects.get()
    assert (access.user, access.job, access.job_ref, access.what) == (
        photo_staff_user,
        job,
        str(job.pk),
        "person_photo",
    )

    mask = photo_staff.get(result_url(result, "mask"))
    with result.mask.open("rb") as stored:
        assert _body(mask) == stored.read()
    assert PhotoAccess.objects.count() == 2
    assert PhotoAccess.objects.filter(what="result mask", user=photo_staff_user).count() == 1


def test_staff_without_the_permission_get_404_and_nothing_is_recorded(plain_staff):
    job, result = photo_job_with_result()
    for url in [job_url(job), result_url(result), result_url(result, "openpose")]:
        assert plain_staff.get(url).status_code == 404
    assert PhotoAccess.objects.count() == 0


def test_the_photo_access_trail_is_read_only_even_for_superusers(
    staff_client, photo_staff_user, admin_user
):
    job, _ = photo_job_with_result()
    PhotoAccess.objects.create(user=photo_staff_user, job=job, job_ref=str(job.pk), what="x")
    PhotoAccess.objects.create(user=admin_user, job=job, job_ref=str(job.pk), what="y")
    access = PhotoAccess.objects.get(what="x")
    changelist = reverse("admin:tryon_photoaccess_changelist")

    response = staff_client.get(changelist)
    assert response.status_code == 200
    assert str(job.pk) in response.content.decode()
    assert shown(staff_client.get(changelist, {"user__id__exact": photo_staff_user.pk})) == {
        access.pk
    }
    assert staff_client.get(reverse("admin:tryon_photoaccess_add")).status_code == 403
    change = reverse("admin:tryon_photoaccess_change", args=[access.pk])
    assert 'name="_save"' not in staff_client.get(change).content.decode()
    assert staff_client.post(change, {"what": "edited"}).status_code == 403
    delete = reverse("admin:tryon_photoaccess_delete", args=[access.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    staff_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [access.pk], "post": "yes"}
    )
    assert PhotoAccess.objects.count() == 2


# --- results: list and review --------------------------------------------------------------------


def test_result_changelist_shows_thumbnails_columns_filters_and_search(staff_client, admin_user):
    shot = TryOnResultFactory(seed=4242, job__garment__title="Velvet dress")
    approved = TryOnResultFactory(
        seed=5151,
        review_status=TryOnResult.Review.APPROVED,
        reviewer=admin_user,
        reviewed_at=timezone.now(),
        published=True,
    )
    _, photo = photo_job_with_result()
    TryOnResult.objects.filter(pk=approved.pk).update(
        created_at=timezone.now() - timedelta(days=40)
    )
    changelist = reverse("admin:tryon_tryonresult_changelist")

    response = staff_client.get(changelist)
    html = response.content.decode()
    assert f'<img src="{result_url(shot)}"' in html
    assert "Velvet dress" in html
    assert "Model shot" in html and "Photo try-on" in html
    assert shown(response) == {shot.pk, approved.pk, photo.pk}

    assert shown(staff_client.get(changelist, {"review_status__exact": "approved"})) == {
        approved.pk
    }
    assert shown(staff_client.get(changelist, {"published__exact": "1"})) == {approved.pk}
    assert shown(staff_client.get(changelist, {"job__kind__exact": "photo"})) == {photo.pk}
    merchant = {"job__garment__merchant__id__exact": shot.job.garment.merchant_id}
    assert shown(staff_client.get(changelist, merchant)) == {shot.pk}
    past_week = filter_link(response, "created at", "Past 7 days")
    assert shown(staff_client.get(changelist + past_week)) == {shot.pk, photo.pk}
    assert shown(staff_client.get(changelist, {"q": "Velvet"})) == {shot.pk}
    assert shown(staff_client.get(changelist, {"q": "5151"})) == {approved.pk}


def test_bulk_approve_asks_for_a_note_on_a_confirmation_page_then_reviews(staff_client, admin_user):
    first, second = TryOnResultFactory.create_batch(2)
    left_alone = TryOnResultFactory()
    changelist = reverse("admin:tryon_tryonresult_changelist")
    chosen = {"action": "approve", "_selected_action": [first.pk, second.pk], "index": "0"}

    confirm = staff_client.post(changelist, chosen)
    assert confirm.status_code == 200
    assert "admin/tryon/review_confirmation.html" in [t.name for t in confirm.templates]
    html = confirm.content.decode()
    for result in (first, second):
        assert f'<img src="{result_url(result)}"' in html
    assert result_url(left_alone) not in html
    assert 'name="note"' in html
    assert TryOnResult.objects.filter(review_status="pending").count() == 3

    before = timezone.now()
    done = staff_client.post(
        changelist,
        {
            "action": "approve",
            "_selected_action": [first.pk, second.pk],
            "post": "yes",
            "note": "Logo intact, hands fine.",
        },
        follow=True,
    )
    assert "2 result(s) approved" in done.content.decode()
    for result in (first, second):
        result.refresh_from_db()
        assert result.review_status == TryOnResult.Review.APPROVED
        assert result.reviewer == admin_user
        assert result.reviewed_at >= before
        assert result.review_note == "Logo intact, hands fine."
    left_alone.refresh_from_db()
    assert left_alone.review_status == TryOnResult.Review.PENDING


def test_bulk_reject_unpublishes(staff_client, admin_user):
    published = TryOnResultFactory(
        review_status=TryOnResult.Review.APPROVED, reviewer=admin_user, published=True
    )
    changelist = reverse("admin:tryon_tryonresult_changelist")
    staff_client.post(
        changelist, {"action": "reject", "_selected_action": [published.pk], "index": "0"}
    )
    staff_client.post(
        changelist,
        {"action": "reject", "_selected_action": [published.pk], "post": "yes", "note": ""},
    )
    published.refresh_from_db()
    assert published.review_status == TryOnResult.Review.REJECTED
    assert published.published is False
    assert published.reviewed_at is not None


# --- job actions ---------------------------------------------------------------------------------


def test_a_rerun_past_the_owners_cap_is_refused_and_said(staff_client, settings):
    settings.MAX_ACTIVE_MODEL_SHOTS = 1
    original = TryOnJobFactory(status=Status.SUCCEEDED)
    TryOnJobFactory(garment=original.garment, status=Status.QUEUED)
    response = staff_client.post(
        reverse("admin:tryon_tryonjob_changelist"),
        {"action": "rerun_same", "_selected_action": [original.pk], "index": "0"},
        follow=True,
    )
    page = response.content.decode()
    assert "queued again" not in page
    assert "1 not queued: their owner already has as many jobs waiting or running" in page
    assert TryOnJob.objects.count() == 2


@pytest.mark.parametrize(("action", "new_seed"), [("rerun_same", False), ("rerun_new_seed", True)])
def test_rerun_actions_queue_new_jobs(
    staff_client, action, new_seed, django_capture_on_commit_callbacks
):
    original = TryOnJobFactory(
        status=Status.SUCCEEDED, params={"steps": 2, "seed": 1234, "prompt": "red"}
    )
    changelist = reverse("admin:tryon_tryonjob_changelist")
    with (
        mock.patch("tryon.tasks.tryon_job_run_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = staff_client.post(
            changelist,
            {"action": action, "_selected_action": [original.pk], "index": "0"},
            follow=True,
        )
    copy = TryOnJob.objects.exclude(pk=original.pk).get()
    delay.assert_called_once_with(str(copy.pk))
    assert copy.status == Status.QUEUED
    assert (copy.garment, copy.owner, copy.pose) == (
        original.garment,
        original.owner,
        "front_standing",
    )
    assert {k: v for k, v in copy.params.items() if k != "seed"} == {"steps": 2, "prompt": "red"}
    assert (copy.params["seed"] != 1234) is new_seed
    assert "1 job(s) queued again" in response.content.decode()


def test_cancel_action_cancels_queued_jobs(staff_client):
    queued = TryOnJobFactory(status=Status.QUEUED)
    finished = TryOnJobFactory(status=Status.SUCCEEDED)
    staff_client.post(
        reverse("admin:tryon_tryonjob_changelist"),
        {"action": "cancel", "_selected_action": [queued.pk, finished.pk], "index": "0"},
    )
    queued.refresh_from_db()
    finished.refresh_from_db()
    assert queued.status == Status.CANCELLED
    assert finished.status == Status.SUCCEEDED


@pytest.mark.parametrize("how", ["delete_view", "delete_selected"])
def test_admin_delete_removes_the_jobs_private_files(
    staff_client, settings, how, django_capture_on_commit_callbacks
):
    job, _ = photo_job_with_result()
    private_root = settings.PRIVATE_MEDIA_ROOT
    assert len(stored_files(private_root)) == 6
    with django_capture_on_commit_callbacks(execute=True):
        if how == "delete_view":
            url = reverse("admin:tryon_tryonjob_delete", args=[job.pk])
            response = staff_client.post(url, {"post": "yes"})
        else:
            response = staff_client.post(
                reverse("admin:tryon_tryonjob_changelist"),
                {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"},
            )
    assert response.status_code == 302
    assert TryOnJob.objects.count() == 0
    assert TryOnResult.objects.count() == 0
    assert stored_files(private_root) == []


def test_a_result_is_not_deleted_on_its_own(staff_client, settings):
    result = TryOnResultFactory()
    files = stored_files(settings.PRIVATE_MEDIA_ROOT)
    url = reverse("admin:tryon_tryonresult_delete", args=[result.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert TryOnResult.objects.filter(pk=result.pk).exists()
    assert stored_files(settings.PRIVATE_MEDIA_ROOT) == files


def test_an_inpaint_without_a_garment_is_listed_and_shown(staff_client, admin_user):
    job = TryOnJobFactory(kind=TryOnJob.Kind.INPAINT, garment=None, owner=admin_user)
    result = TryOnResultFactory(job=job, index=0)
    for page in (
        reverse("admin:tryon_tryonjob_changelist"),
        reverse("admin:tryon_tryonjob_change", args=[job.pk]),
        reverse("admin:tryon_tryonresult_changelist"),
        reverse("admin:tryon_tryonresult_change", args=[result.pk]),
    ):
        response = staff_client.get(page)
        assert response.status_code == 200, page
        assert "Inpaint" in response.content.decode()


def test_bulk_review_leaves_shoppers_pictures_to_staff_with_the_photo_permission(client):
    reviewer = make_staff("reviewer", photo_permission=False)
    reviewer.user_permissions.add(Permission.objects.get(codename="change_tryonresult"))
    client.force_login(reviewer)
    shot = TryOnResultFactory()
    _, photo = photo_job_with_result()
    changelist = reverse("admin:tryon_tryonresult_changelist")
    done = client.post(
        changelist,
        {"action": "approve", "_selected_action": [shot.pk, photo.pk], "post": "yes", "note": ""},
        follow=True,
    )
    page = done.content.decode()
    assert "1 result(s) approved" in page
    assert "1 result(s) of shoppers&#x27; pictures were left as they were" in page
    shot.refresh_from_db(), photo.refresh_from_db()
    assert shot.review_status == TryOnResult.Review.APPROVED
    assert photo.review_status == TryOnResult.Review.PENDING and photo.reviewer is None
