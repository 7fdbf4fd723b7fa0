"""The REST API: a try-on round trip, model shots, review and publishing, errors, permissions."""

import base64
import io
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from skimage import data

from tests.conftest import photo_upload
from tests.factories import GarmentFactory, TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon.models import TryOnJob, TryOnResult

pytestmark = pytest.mark.django_db
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 9}


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def garment(analysed_garment, tiny_models_dir, settings):
    settings.TRYON_ENGINE = "tiny"
    return analysed_garment


def _as(api, user):
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def test_a_try_on_round_trip_through_the_api(api, garment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/tryons/",
            {"garment": garment.pk, "person_photo": photo_upload(), "consent": "true",
             "params": '{"steps": 2, "width": 128, "height": 192, "seed": 9}'},
            format="multipart",
        )  # fmt: skip
    assert created.status_code == 201, created.json()
    job_id = created.json()["id"]

    job = api.get(f"/api/tryons/{job_id}/").json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert job["params"]["steps"] == 2 and job["kind"] == "photo"
    (result,) = job["results"]
    assert result["seed"] == 9 and "Steps: 2" in result["infotext"]
    assert result["review_status"] == "pending"
    picture = api.get(result["image"])
    assert picture.status_code == 200
    assert Image.open(io.BytesIO(b"".join(picture.streaming_content))).size == (512, 512)
    assert api.get(job["person_photo"]).status_code == 200
    assert [j["id"] for j in api.get("/api/tryons/").json()["results"]] == [job_id]

    # Anyone else: the job, its photo and its picture are not found.
    stranger = APIClient()
    assert stranger.get(f"/api/tryons/{job_id}/").status_code == 404
    assert stranger.get(job["person_photo"]).status_code == 404
    assert stranger.get(result["image"]).status_code == 404
    assert stranger.get("/api/tryons/").json()["results"] == []

    assert api.delete(f"/api/tryons/{job_id}/").status_code == 204
    assert not TryOnJob.objects.exists()


def test_a_photo_may_come_as_base64_json(api, garment, django_capture_on_commit_callbacks):
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/tryons/",
            {"garment": garment.pk, "person_photo_base64": encoded, "consent": True,
             "params": FAST},
            format="json",
        )  # fmt: skip
    assert created.status_code == 201, created.json()


@pytest.mark.parametrize(
    ("payload", "status", "field", "message"),
    [
        ({"consent": False}, 400, "consent", "please agree"),
        ({"params": {"steps": 500}}, 400, "steps", "from 1 to 150"),
        ({"params": {"cfg": 7}}, 400, "params", "unknown parameters cfg"),
        ({"person_photo_base64": "###"}, 400, "person_photo_base64", "base64"),
        ({"garment": 999999}, 400, "garment", ""),
        ({"callback_url": "http://10.0.0.1/hook"}, 400, "callback_url", "private network"),
    ],
)
def test_bad_requests_get_a_message_and_the_field(api, garment, payload, status, field, message):
    body = {"garment": garment.pk, "consent": True, "params": FAST}
    body["person_photo_base64"] = base64.b64encode(photo_upload().read()).decode()
    response = api.post("/api/tryons/", {**body, **payload}, format="json")
    assert response.status_code == status
    error = response.json()
    assert error["field"] == field and message in error["message"]
    assert not TryOnJob.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        # Each was a 500 (found by test_api_fuzz.py): the prompt builder got a list, or a
        # list or an object for a word.
        ({"model_attributes": ["hair"]}, "model_attributes", "must be a JSON object"),
        ({"model_attributes": {"hair": ["short"]}}, "model_attributes", "hair must be text"),
        ({"model_attributes": {"hair": {"a": 1}}}, "model_attributes", "hair must be text"),
        ({"model_attributes": "hair"}, "model_attributes", "must be a JSON object"),
        ({"params": [2]}, "params", "must be a JSON object"),
        # The prompt builder calls them "model": the client sent "model_attributes".
        ({"model_attributes": {"hair": "purple mohawk"}}, "model_attributes", "hair: must be"),
        ({"model_attributes": {"wings": "yes"}}, "model_attributes", "unknown keys wings"),
        # Made by the WebUI API only: here it was made a photo try-on.
        ({"kind": "inpaint"}, "kind", "not a valid choice"),
    ],
)
def test_model_shot_requests_are_checked_for_their_shape(
    api, garment, merchant, payload, field, message
):
    _as(api, merchant)
    body = {"kind": "model_shot", "garment": garment.pk, "params": FAST, **payload}
    response = api.post("/api/tryons/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["field"] == field and message in error["message"]
    assert not TryOnJob.objects.exists()


def test_only_a_validation_error_names_a_field(api, merchant):
    # DRF's other errors come as {"detail": ...}: "detail" was reported as the field at fault.
    assert api.get(f"/api/tryons/{'0' * 8}/").json() == {"message": "Not found."}
    assert api.get("/api/garments/", {"page": 99}).json() == {"message": "Invalid page."}
    assert "field" not in api.post("/api/garments/", {}).json()  # 401
    _as(api, UserFactory())
    assert "field" not in api.post("/api/garments/", {}).json()  # 403
    api.credentials(HTTP_AUTHORIZATION="Token not-a-key")
    refused = api.get("/api/poses/")
    assert refused.status_code == 401 and set(refused.json()) == {"message"}


def test_wrong_paths_and_oversized_bodies_answer_in_the_apis_json(api, settings):
    for path in ("/api/tryons/1.5/", "/api/garments/a/b/", "/api/nothing-here/"):
        response = api.post(path) if path.endswith("b/") else api.get(path)
        assert response.status_code == 404 and set(response.json()) == {"message"}, path
    assert api.get("/api/tryons").status_code == 301  # a missing slash is still redirected
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = api.post("/api/tryons/", {"person_photo_base64": "A" * 2000}, format="json")
    assert big.status_code == 413 and "REQUEST_BODY_MAX_BYTES" in big.json()["message"]


def test_the_error_module_imports_first():
    # It holds the throttle named in DEFAULT_THROTTLE_CLASSES, which rest_framework.views reads
    # when it is first imported: importing that at the top of common.api_errors was circular.
    code = "import django; django.setup(); import common.api_errors"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tryon.settings", "DJANGO_DEBUG": "true"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_active_jobs_are_capped_with_409(api, garment, settings):
    settings.MAX_ACTIVE_JOBS = 1
    api.get("/api/tryons/")  # a session
    body = {"garment": garment.pk, "consent": True, "params": FAST}
    body["person_photo_base64"] = base64.b64encode(photo_upload().read()).decode()
    from unittest import mock

    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        assert api.post("/api/tryons/", body, format="json").status_code == 201
        second = api.post("/api/tryons/", body, format="json")
    assert second.status_code == 409 and "already have 1" in second.json()["message"]
    assert TryOnJob.objects.count() == 1


def test_a_merchant_makes_a_model_shot_batch_and_follows_it(
    api, garment, merchant, django_capture_on_commit_callbacks
):
    _as(api, merchant)
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/tryons/",
            {"kind": "model_shot", "garment": garment.pk, "pose": "three_quarter",
             "scene": "beach", "count": 2, "params": FAST,
             "model_attributes": {"gender_presentation": "masculine"}},
            format="json",
        )  # fmt: skip
    assert created.status_code == 201, created.json()
    first = created.json()
    assert len(first["batch_jobs"]) == 1 and first["batch"]
    jobs = api.get("/api/tryons/").json()["results"]
    assert {j["status"] for j in jobs} == {"succeeded"}
    assert sorted(j["params"]["seed"] for j in jobs) == [9, 10]

    shopper = _as(APIClient(), UserFactory())
    refused = shopper.post(
        "/api/tryons/", {"kind": "model_shot", "garment": garment.pk}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["field"] == "garment"


def test_review_and_publish_through_the_api(api, merchant, admin_user):
    result = TryOnResultFactory(job__garment__merchant=merchant, job__owner=merchant)
    url = f"/api/results/{result.pk}/"
    merchant_api = _as(APIClient(), merchant)
    staff_api = _as(APIClient(), admin_user)

    assert merchant_api.post(url + "review/", {"approve": True}).status_code == 403
    assert merchant_api.post(url + "publish/").json()["field"] == "result"  # not approved
    reviewed = staff_api.post(url + "review/", {"approve": True, "note": "ok"}, format="json")
    assert reviewed.status_code == 200 and reviewed.json()["review_status"] == "approved"
    assert merchant_api.post(url + "publish/").json()["published"] is True
    other_merchant = _as(APIClient(), UserFactory())
    assert other_merchant.post(url + "unpublish/").status_code == 404
    assert merchant_api.post(url + "unpublish/").json()["published"] is False
    assert TryOnResult.objects.get(pk=result.pk).review_note == "ok"


@pytest.mark.parametrize("kind", ["photo", "inpaint"])
def test_a_merchant_reaches_no_result_but_their_own_model_shots(api, merchant, kind):
    # Ids are sequential: a merchant trying them must learn nothing of a shopper's try-on of
    # their garment (its seed, infotext and review state), nor of anyone's inpaint.
    garment = GarmentFactory(merchant=merchant) if kind == "photo" else None
    shopper_job = TryOnJobFactory(kind=kind, garment=garment, owner=UserFactory())
    theirs = TryOnResultFactory(job=shopper_job, infotext="the shopper's own words")
    own = TryOnResultFactory(job__garment=GarmentFactory(merchant=merchant), job__owner=merchant)
    _as(api, merchant)
    for verb in ("publish", "unpublish"):
        refused = api.post(f"/api/results/{theirs.pk}/{verb}/")
        assert refused.status_code == 404, refused.json()
        assert "shopper's own words" not in refused.content.decode()
    assert api.post(f"/api/results/{own.pk}/unpublish/").status_code == 200


def _staff(*codenames):
    user = UserFactory(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.mark.parametrize(
    ("codenames", "model_shot", "photo"),
    [
        ((), 403, 403),
        (("view_tryonresult",), 403, 403),
        (("change_tryonresult",), 200, 403),
        (("change_tryonresult", "view_person_photo"), 200, 200),
    ],
    ids=["no-permissions", "view-only", "change", "change-and-photo"],
)
def test_reviewing_needs_the_change_permission_and_for_photos_the_photo_one(
    api, codenames, model_shot, photo
):
    shot = TryOnResultFactory(infotext="a merchant's prompt")
    photo_result = TryOnResultFactory(job__kind="photo", infotext="a shopper's own words")
    _as(api, _staff(*codenames))
    for result, expected in ((shot, model_shot), (photo_result, photo)):
        answer = api.post(f"/api/results/{result.pk}/review/", {"approve": True}, format="json")
        assert answer.status_code == expected, answer.json()
        result.refresh_from_db()
        assert result.review_status == ("approved" if expected == 200 else "pending")
        if expected != 200:
            assert "infotext" not in answer.json() and "message" in answer.json()


@pytest.mark.parametrize("who", ["anonymous", "owner", "other", "staff", "merchant"])
def test_permission_matrix(api, who, merchant, admin_user, make_merchant):
    owner = UserFactory(username="shopper")
    garment = GarmentFactory(merchant=merchant)
    job = TryOnJobFactory(kind="photo", garment=garment, owner=owner)
    result = TryOnResultFactory(job=job)
    users = {"owner": owner, "other": UserFactory(), "staff": admin_user, "merchant": merchant}
    if who != "anonymous":
        _as(api, users[who])

    expected_job = 200 if who == "owner" else 404
    assert api.get(f"/api/tryons/{job.pk}/").status_code == expected_job
    assert api.post(f"/api/tryons/{job.pk}/cancel/").status_code == expected_job
    listed = [j["id"] for j in api.get("/api/tryons/").json()["results"]]
    assert listed == ([str(job.pk)] if who == "owner" else [])
    review = api.post(f"/api/results/{result.pk}/review/", {"approve": True}, format="json")
    assert review.status_code == {"anonymous": 401, "staff": 200}.get(who, 403)
    # A shopper's try-on is never published, by anyone, nor even seen by the garment's merchant.
    for verb in ("publish", "unpublish"):
        answer = api.post(f"/api/results/{result.pk}/{verb}/")
        assert answer.status_code == (401 if who == "anonymous" else 404)
        assert "infotext" not in answer.json() and "seed" not in answer.json()
    garment_write = api.patch(f"/api/garments/{garment.pk}/", {"title": "x"}, format="json")
    assert garment_write.status_code == {"anonymous": 401, "merchant": 200}.get(who, 403)
    assert api.get(f"/api/garments/{garment.pk}/").status_code == 200
    assert api.delete(f"/api/tryons/{job.pk}/").status_code == (204 if who == "owner" else 404)


def test_garments_list_filters_and_merchant_writes(api, make_merchant, settings):
    settings.TRYON_ENGINE = "preview"
    merchant = make_merchant("shop-a")
    GarmentFactory(merchant=merchant, title="Red dress", category="dress", colour="red")
    GarmentFactory(title="Blue tee", category="upper")
    listed = api.get("/api/garments/", {"category": "dress"}).json()
    assert [g["title"] for g in listed["results"]] == ["Red dress"]
    assert api.get("/api/garments/", {"search": "blue"}).json()["count"] == 1
    assert api.get("/api/garments/", {"merchant": "shop-a"}).json()["count"] == 1

    _as(api, merchant)
    buffer = io.BytesIO()
    from pipelines.samples import draw_product_shot

    draw_product_shot("tshirt", size=(384, 512)).image.save(buffer, format="PNG")
    buffer.name = "tee.png"
    buffer.seek(0)
    created = api.post(
        "/api/garments/",
        {"title": "API tee", "sku": "API-1", "category": "upper", "price": "12.00",
         "image": buffer},
        format="multipart",
    )  # fmt: skip
    assert created.status_code == 201, created.json()
    assert created.json()["merchant"] == "shop-a"
    not_a_picture = io.BytesIO(b"<svg/>")
    not_a_picture.name = "x.png"
    refused = api.post(
        "/api/garments/",
        {"title": "Bad", "sku": "API-2", "category": "upper", "price": "1", "image": not_a_picture},
        format="multipart",
    )
    assert refused.status_code == 400 and refused.json()["field"] == "image"


def test_reference_lists_and_the_schema(api):
    assert len(api.get("/api/poses/").json()) == 9
    assert any(scene["name"] == "beach" for scene in api.get("/api/scenes/").json())
    assert any(s["name"] == "DPM++ 2M" for s in api.get("/api/samplers/").json())
    assert api.get("/api/models/").status_code == 200
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "/api/tryons/{id}/cancel/" in schema["paths"]
    # The lists are documented as lists (they were "object"), and errors with their shape.
    for name in ("poses", "scenes", "samplers", "models"):
        ok = schema["paths"][f"/api/{name}/"]["get"]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"]["type"] == "array"
    create = schema["paths"]["/api/tryons/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "409"} <= set(create)
    error = create["409"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["message"]
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content and b"cdn" not in docs.content


def test_errors_never_become_500s(api, garment):
    for body in ({}, {"garment": "x"}, {"garment": garment.pk, "params": "not json"}, []):
        response = api.post("/api/tryons/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert "message" in response.json()
    assert api.get(f"/api/tryons/{'0' * 8}/").status_code == 404
    assert api.get(reverse("tryon-detail", args=["not-a-uuid"])).status_code == 404


def test_the_schema_generates_cleanly_and_validates(capsys):
    from django.core.management import call_command

    # --fail-on-warn: any view the generator cannot describe fails the build.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    assert "Error" not in capsys.readouterr().err
