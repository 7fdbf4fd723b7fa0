"""The shopper's pages: try it on from the product page, follow it, see, download, delete."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from catalog.models import Garment
from tests.conftest import photo_upload
from tests.factories import TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db


def _private_files(settings) -> list:
    return [p for p in settings.PRIVATE_MEDIA_ROOT.rglob("*") if p.is_file()]


@pytest.fixture
def garment(analysed_garment, settings) -> Garment:
    settings.TRYON_ENGINE = "preview"
    return analysed_garment


def _try_on(client, garment, callbacks, **data):
    with callbacks(execute=True):
        return client.post(
            reverse("tryon:create", args=[garment.pk]),
            {"person_photo": photo_upload(), "consent": "on", **data},
        )


def test_the_product_page_offers_the_try_on_form(client, garment):
    page = client.get(garment.get_absolute_url()).content.decode()
    assert "Try it on" in page and 'name="person_photo"' in page and 'capture="user"' in page
    assert "deleted after 24 hours" in page
    assert "reuse_photo" not in page  # no earlier photo yet


def test_a_shopper_tries_on_follows_and_deletes(
    client, garment, settings, django_capture_on_commit_callbacks
):
    response = _try_on(client, garment, django_capture_on_commit_callbacks)
    job = TryOnJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "tryon:job", args=[job.pk]
    )
    assert job.owner is None and job.session_key == client.session.session_key

    page = client.get(response["Location"]).content.decode()
    result = job.results.get()
    assert reverse("result_file", args=[result.pk, "image"]) in page
    assert reverse("job_file", args=[job.pk, "person_photo"]) in page  # the "before"
    assert "data-compare-range" in page and "AI-generated" in page
    download = client.get(reverse("result_file", args=[result.pk, "image"]) + "?download=1")
    assert download["Content-Disposition"].startswith("attachment")
    assert Image.open(io.BytesIO(b"".join(download.streaming_content))).text["parameters"]

    mine = client.get(reverse("tryon:mine")).content.decode()
    assert "Linen tee" in mine

    with django_capture_on_commit_callbacks(execute=True):
        gone = client.post(reverse("tryon:job_delete", args=[job.pk]), follow=True)
    assert "Your photo and its try-on were deleted." in gone.content.decode()
    assert not TryOnJob.objects.exists() and _private_files(settings) == []


def _anonymous_shoppers_job(client, garment, **fields) -> TryOnJob:
    """A photo try-on owned by ``client``'s browser session, as a visitor's is."""
    client.get("/")
    session = client.session
    session.save()
    return TryOnJobFactory(
        kind="photo", garment=garment, owner=None, session_key=session.session_key, **fields
    )


def test_the_status_part_polls_only_while_the_job_is_active(client, garment):
    job = _anonymous_shoppers_job(
        client, garment, status="running", progress=0.4, step="image 1/1: step 8/20"
    )
    part = client.get(reverse("tryon:job_status", args=[job.pk])).content.decode()
    assert 'hx-trigger="every 1s"' in part and "step 8/20" in part and 'value="40"' in part
    TryOnJob.objects.filter(pk=job.pk).update(status="failed", error_message="no weights")
    part = client.get(reverse("tryon:job_status", args=[job.pk])).content.decode()
    assert "hx-trigger" not in part and "no weights" in part


def test_a_finished_try_on_shows_its_notice(client, garment):
    job = _anonymous_shoppers_job(
        client,
        garment,
        person_photo=photo_upload(),
        status="succeeded",
        notice="1 of 2 pictures was withheld by the content filter.",
    )
    TryOnResultFactory(job=job)
    part = client.get(reverse("tryon:job_status", args=[job.pk])).content.decode()
    assert '<p class="message" role="status">1 of 2 pictures was withheld' in part


def test_refusals_are_shown_in_place_and_nothing_is_stored(client, garment, settings):
    no_consent = client.post(
        reverse("tryon:create", args=[garment.pk]), {"person_photo": photo_upload()}
    )
    assert no_consent.status_code == 400
    assert "please agree" in no_consent.content.decode()
    empty_room = photo_upload(Image.new("RGB", (400, 500), (120, 150, 120)))
    no_pose = client.post(
        reverse("tryon:create", args=[garment.pk]), {"person_photo": empty_room, "consent": "on"}
    )
    assert no_pose.status_code == 400 and "no person found" in no_pose.content.decode()
    not_a_picture = SimpleUploadedFile("me.jpg", b"%PDF-1.4", content_type="image/jpeg")
    refused = client.post(
        reverse("tryon:create", args=[garment.pk]), {"person_photo": not_a_picture, "consent": "on"}
    )
    assert refused.status_code == 400 and "JPEG, PNG or WebP" in refused.content.decode()
    assert not TryOnJob.objects.exists() and _private_files(settings) == []


def test_the_web_checks_the_pose_with_the_body_graph_alone(client, garment, monkeypatch):
    # Hands, face and silhouette are the worker's business: the web process never runs them.
    from pipelines import person

    for graph in ("_hands_graph", "_face_graph", "_selfie_graph"):
        monkeypatch.setattr(person, graph, lambda: pytest.fail("the web ran more than the pose"))
    response = client.post(
        reverse("tryon:create", args=[garment.pk]),
        {"person_photo": photo_upload(), "consent": "on"},
    )
    assert response.status_code == 302
    assert TryOnJob.objects.count() == 1


def test_another_garment_reuses_thephoto_upload(
    client, garment, merchant, django_capture_on_commit_callbacks
):
    _try_on(client, garment, django_capture_on_commit_callbacks)
    other = Garment.objects.create(
        merchant=merchant,
        title="Other tee",
        sku="OT-1",
        category="upper",
        price="5",
        image=garment.image.name,
        cutout=garment.cutout.name,
        mask=garment.mask.name,
        canny=garment.canny.name,
        landmarks=garment.landmarks,
        analysis_status="done",
    )
    page = client.get(other.get_absolute_url()).content.decode()
    assert "Use the photo from my last try-on" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("tryon:create", args=[other.pk]), {"reuse_photo": "on", "consent": "on"}
        )
    first, second = TryOnJob.objects.order_by("created_at")
    assert second.garment == other and second.status == "succeeded"
    assert second.person_photo.name != first.person_photo.name  # its own copy


def test_other_peoples_try_ons_are_not_found(client, garment):
    job = TryOnJobFactory(kind="photo", garment=garment, owner=None, session_key="someone-else")
    for name in ("tryon:job", "tryon:job_status"):
        assert client.get(reverse(name, args=[job.pk])).status_code == 404
    assert client.post(reverse("tryon:job_delete", args=[job.pk])).status_code == 404
    assert TryOnJob.objects.filter(pk=job.pk).exists()


def test_signed_in_shoppers_see_their_try_ons_in_one_query_set(
    client, garment, django_assert_max_num_queries
):
    shopper = UserFactory()
    client.force_login(shopper)
    for _ in range(6):
        TryOnJobFactory(kind="photo", garment=garment, owner=shopper)
    TryOnJobFactory(kind="photo", garment=garment, owner=UserFactory())
    with django_assert_max_num_queries(8):
        page = client.get(reverse("tryon:mine")).content.decode()
    assert page.count('class="card"') == 6
