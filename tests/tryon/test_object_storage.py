"""Running at scale by configuration: object storage and the Redis broker's visibility timeout
chosen by environment variables, private files behind short-lived signed URLs.

moto's in-process S3 stands in for the store here; tests/integration runs real servers.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from tests.factories import GarmentFactory, TryOnResultFactory
from tests.workers import run_worker_to_exit
from tryon.celery import broker_visibility_problem
from tryon.review import result_publish, result_review

ROOT = Path(__file__).resolve().parents[2]
S3_ENV = {
    "AWS_STORAGE_BUCKET_NAME": "shop-public",
    "AWS_PRIVATE_STORAGE_BUCKET_NAME": "shop-private",
    "AWS_S3_REGION_NAME": "us-east-1",
}
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _settings_with(**env) -> dict:
    """The storage and broker settings a process started with ``env`` gets."""
    code = (
        "import json; from tryon import settings as s; print(json.dumps({"
        "'storages': s.STORAGES, 'deadline': s.JOB_DEADLINE, "
        "'transport': getattr(s, 'CELERY_BROKER_TRANSPORT_OPTIONS', None)}))"
    )
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CELERY_", "DJANGO_"))
    }
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**inherited, "DJANGO_DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode:
        return {"error": run.stderr.strip().splitlines()[-1]}
    return json.loads(run.stdout)


# --- settings ------------------------------------------------------------------------------------


def test_files_stay_on_disk_unless_buckets_are_configured():
    storages = _settings_with()["storages"]
    assert storages["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert storages["private"]["BACKEND"] == "common.storage.PrivateFileSystemStorage"


def test_buckets_and_a_custom_endpoint_come_from_the_environment():
    storages = _settings_with(
        **S3_ENV,
        AWS_S3_ENDPOINT_URL="http://minio.internal:9000",
        AWS_S3_ADDRESSING_STYLE="path",
        PRIVATE_URL_SECONDS="60",
    )["storages"]
    public, private = storages["default"], storages["private"]
    assert public["BACKEND"] == "storages.backends.s3.S3Storage"
    assert private["BACKEND"] == "common.s3.PrivateS3Storage"
    for storage in (public, private):
        assert storage["OPTIONS"]["endpoint_url"] == "http://minio.internal:9000"
        assert storage["OPTIONS"]["addressing_style"] == "path"
        assert storage["OPTIONS"]["region_name"] == "us-east-1"
    assert public["OPTIONS"]["bucket_name"] == "shop-public"
    assert public["OPTIONS"]["default_acl"] == "public-read"
    assert public["OPTIONS"]["querystring_auth"] is False
    assert private["OPTIONS"]["bucket_name"] == "shop-private"
    assert private["OPTIONS"]["default_acl"] == "private"
    assert private["OPTIONS"]["querystring_expire"] == 60
    # A store without ACLs (a bucket policy makes the public bucket readable): none are sent.
    without_acls = _settings_with(**S3_ENV, AWS_DEFAULT_ACL="")["storages"]
    assert without_acls["default"]["OPTIONS"]["default_acl"] is None
    assert without_acls["private"]["OPTIONS"]["default_acl"] is None


def test_private_files_get_a_bucket_of_their_own():
    same = _settings_with(**{**S3_ENV, "AWS_PRIVATE_STORAGE_BUCKET_NAME": "shop-public"})
    assert "must be another bucket than AWS_STORAGE_BUCKET_NAME" in same["error"]
    alone = _settings_with(AWS_STORAGE_BUCKET_NAME="shop-public")
    assert "Set both AWS_STORAGE_BUCKET_NAME" in alone["error"]


def test_a_redis_broker_keeps_a_message_longer_than_any_job_runs():
    redis = _settings_with(CELERY_BROKER_URL="redis://cache.internal:6379/0")
    assert redis["deadline"] == 900
    assert redis["transport"] == {"visibility_timeout": 900 + 900}
    longer = _settings_with(CELERY_BROKER_URL="rediss://cache.internal/0", JOB_DEADLINE="3000")
    assert longer["transport"] == {"visibility_timeout": 3000 + 900}
    # The embedded SQL broker hands its options to SQLAlchemy, which would refuse this one.
    assert _settings_with()["transport"] is None


# --- the worker's start-up check -----------------------------------------------------------------


def test_the_visibility_check_refuses_redis_timeouts_not_longer_than_the_deadline():
    redis = "redis://cache.internal:6379/0"
    assert broker_visibility_problem(redis, {"visibility_timeout": 901}, 900) == ""
    problem = broker_visibility_problem(redis, {"visibility_timeout": 900}, 900)
    assert problem.startswith("the Redis broker's visibility timeout (900 s) must be longer than")
    assert "JOB_DEADLINE (900 s)" in problem and "CELERY_VISIBILITY_TIMEOUT" in problem
    for url in ("rediss://cache/0", "sentinel://cache:26379", "redis+socket:///run/redis.sock"):
        assert broker_visibility_problem(url, {"visibility_timeout": 60}, 900)
    # kombu's own default (an hour) counts when none is given.
    assert broker_visibility_problem(redis, {}, 3000) == ""
    assert "(3600 s)" in broker_visibility_problem(redis, {}, 3600)
    # Other brokers do not redeliver on a timer.
    assert broker_visibility_problem("sqla+sqlite:///broker.sqlite3", {}, 10**6) == ""


def test_a_worker_does_not_start_when_redis_could_hand_a_running_job_to_another(tmp_path):
    env = {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        # Nothing listens there: the worker must stop before it tries to connect.
        "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
        "JOB_DEADLINE": "600",
        "CELERY_VISIBILITY_TIMEOUT": "600",
    }
    worker = run_worker_to_exit(env)
    assert worker.returncode != 0
    assert (
        "the worker does not start: the Redis broker's visibility timeout (600 s) must be "
        "longer than JOB_DEADLINE (600 s)" in worker.stderr
    )
    assert "Cannot connect" not in worker.stderr


# --- files in buckets ----------------------------------------------------------------------------


@pytest.fixture
def s3(settings):
    """The storages the S3 environment gives, on moto's in-process S3 with both buckets."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (
            S3_ENV["AWS_STORAGE_BUCKET_NAME"],
            S3_ENV["AWS_PRIVATE_STORAGE_BUCKET_NAME"],
        ):
            client.create_bucket(Bucket=bucket)
        settings.STORAGES = {**settings.STORAGES, **_settings_with(**S3_ENV)["storages"]}
        yield client


def _grantees(s3, bucket: str, key: str) -> set:
    grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return {grant["Grantee"].get("URI") for grant in grants if grant["Permission"] == "READ"}


@pytest.mark.django_db
def test_garment_pictures_are_public_and_results_private_in_their_buckets(s3):
    garment = GarmentFactory()
    assert _grantees(s3, "shop-public", garment.image.name) == {ALL_USERS}
    assert garment.image.url == f"https://shop-public.s3.amazonaws.com/{garment.image.name}"

    result = TryOnResultFactory(job__garment=garment)
    stored = s3.get_object(Bucket="shop-private", Key=result.image.name)["Body"].read()
    assert stored == result.image.open("rb").read()
    assert ALL_USERS not in _grantees(s3, "shop-private", result.image.name)
    with pytest.raises(ValueError, match="no public URL"):
        result.image.url  # noqa: B018


def _signed(response) -> dict:
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    location = urlsplit(response["Location"])
    assert location.netloc == "shop-private.s3.amazonaws.com"
    return {name: values[0] for name, values in parse_qs(location.query).items()}


@pytest.mark.django_db
def test_a_private_file_is_a_redirect_to_a_signed_url_after_the_check(s3, client, merchant):
    result = TryOnResultFactory(job__garment__merchant=merchant, job__owner=merchant)
    url = reverse("result_file", args=[result.pk, "image"])
    assert client.get(url).status_code == 404  # checked first: nobody else gets a URL

    client.force_login(merchant)
    query = _signed(client.get(url))
    filename = Path(result.image.name).name
    assert query["response-content-disposition"] == f'inline; filename="{filename}"'
    assert query["response-cache-control"] == "private, no-store"
    if "X-Amz-Expires" in query:  # signature v4: seconds; v2: the moment it expires
        assert query["X-Amz-Expires"] == "120"
    else:
        assert 110 < int(query["Expires"]) - time.time() <= 120
    download = _signed(client.get(url + "?download=1"))
    assert download["response-content-disposition"].startswith("attachment")


@pytest.mark.django_db
def test_a_published_model_shot_is_signed_for_anyone_and_revalidated_by_shared_caches(
    s3, client, admin_user
):
    result = TryOnResultFactory()
    result_review(result=result, reviewer=admin_user, approve=True)
    result_publish(result=result, user=result.job.garment.merchant)
    query = _signed(client.get(reverse("result_file", args=[result.pk, "image"])))
    # Hidden or rejected later, it must not live on in a CDN: shared caches ask every time.
    assert query["response-cache-control"] == "public, max-age=60, s-maxage=0"


@pytest.mark.django_db
def test_the_mask_painter_reads_a_bucket_mask_from_the_sites_own_origin(
    s3, merchant_client, merchant
):
    # A canvas cannot read the pixels of the bucket's picture (another origin, no CORS).
    garment = GarmentFactory(merchant=merchant)
    garment.mask.save("mask.png", ContentFile(b"\x89PNG a painted mask"))
    assert garment.mask.url.startswith("https://shop-public.s3.amazonaws.com/")

    page = merchant_client.get(reverse("merchant:garment_mask", args=[garment.pk]))
    mask_file = reverse("merchant:garment_mask_file", args=[garment.pk])
    assert f'data-mask-url="{mask_file}"' in page.content.decode()
    response = merchant_client.get(mask_file)
    assert b"".join(response.streaming_content) == b"\x89PNG a painted mask"
