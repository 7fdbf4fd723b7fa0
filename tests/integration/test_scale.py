"""The site at scale: PostgreSQL, Redis and S3-compatible storage, chosen by the environment
alone, with an analysis worker and two generation workers run as GPU workers are.

Every process here (web, workers, migrate) is the unchanged code started with the stack's
environment (conftest.py); the tests watch from outside: the API over HTTP, the database over
SQL, the buckets over S3.
"""

import json
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests

from tests.conftest import product_shot_upload
from tests.workers import ROOT, wait_for

from .conftest import JOB_STALE_AFTER, PRIVATE_BUCKET, PUBLIC_BUCKET

pytestmark = pytest.mark.integration
RESULT_FIELDS = ("image", "mask", "openpose", "canny", "composite")


def sql(stack, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack.database_url) as db:
        return db.execute(query, params).fetchall()


def jobs(stack, ids) -> dict[str, dict]:
    rows = sql(
        stack,
        "SELECT id::text, status, attempts, worker, progress FROM tryon_tryonjob "
        "WHERE id::text = ANY(%s)",
        list(ids),
    )
    fields = ("status", "attempts", "worker", "progress")
    return {row[0]: dict(zip(fields, row[1:], strict=True)) for row in rows}


def results(stack, ids) -> list[dict]:
    rows = sql(
        stack,
        "SELECT job_id::text, index, image, mask, openpose, canny, composite "
        "FROM tryon_tryonresult WHERE job_id::text = ANY(%s) ORDER BY job_id, index",
        list(ids),
    )
    return [dict(zip(("job", "index", *RESULT_FIELDS), row, strict=True)) for row in rows]


def bucket_keys(stack, bucket: str, prefixes=("results/", "maps/")) -> set[str]:
    s3, keys = stack.s3(), set()
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys |= {item["Key"] for item in page.get("Contents", [])}
    return keys


def succeeded(stack, ids) -> bool:
    found = jobs(stack, ids)
    return len(found) == len(ids) and all(job["status"] == "succeeded" for job in found.values())


@pytest.fixture(scope="module")
def ready_workers(stack, workers):
    """The workers, once each has reported in (so both generation workers get jobs)."""
    names = tuple(f"{name}@" for name in workers)
    wait_for(
        lambda: all(
            sql(stack, "SELECT 1 FROM tryon_workerheartbeat WHERE hostname LIKE %s", f"{name}%")
            for name in names
        ),
        seconds=120,
        processes=workers.values(),
    )
    return workers


@pytest.fixture(scope="module")
def api(stack, web) -> requests.Session:
    """A merchant's API session (a token made in a process on the stack)."""
    code = (
        "from django.contrib.auth.models import Group, User; "
        "from rest_framework.authtoken.models import Token; "
        "from common.roles import MERCHANTS_GROUP; "
        "user = User.objects.create_user('scale-merchant'); "
        "user.groups.add(Group.objects.get_or_create(name=MERCHANTS_GROUP)[0]); "
        "print(Token.objects.create(user=user).key)"
    )
    made = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    session = requests.Session()
    session.headers["Authorization"] = f"Token {made.stdout.split()[-1]}"
    return session


@pytest.fixture(scope="module")
def garment(api, web, ready_workers) -> dict:
    """A garment uploaded through the API and analysed by the analysis worker."""
    shot = product_shot_upload()
    created = api.post(
        f"{web}/api/garments/",
        data={"title": "Scale tee", "sku": "SCALE-1", "category": "upper", "price": "12.00"},
        files={"image": ("shot.png", shot.read(), "image/png")},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    url = f"{web}/api/garments/{created.json()['id']}/"
    wait_for(
        lambda: api.get(url, timeout=10).json()["analysis_status"] == "done",
        seconds=120,
        processes=ready_workers.values(),
    )
    return api.get(url, timeout=10).json()


def test_the_active_job_cap_holds_for_concurrent_requests_on_postgresql(stack):
    raced = subprocess.run(
        [sys.executable, "-m", "tests.integration.active_job_race", "12"],
        cwd=ROOT,
        env={**stack.env, "MAX_ACTIVE_MODEL_SHOTS": "3"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert raced.returncode == 0, raced.stderr
    assert json.loads(raced.stdout.splitlines()[-1]) == {"accepted": 3, "refused": 9, "limit": 3}


def test_jobs_run_exactly_once_on_two_workers_and_every_result_is_in_the_private_bucket(
    stack, web, api, garment, ready_workers
):
    # The garment's picture is in the public bucket, and its URL reads it from there.
    image_url = garment["image"]
    assert image_url.startswith(f"{stack.s3_endpoint}/{PUBLIC_BUCKET}/garments/images/")
    assert requests.get(image_url, timeout=10).content[:8] == b"\x89PNG\r\n\x1a\n"

    created = api.post(
        f"{web}/api/tryons/",
        json={
            "kind": "model_shot",
            "garment": garment["id"],
            "count": 6,
            "params": {"steps": 2, "width": 128, "height": 192, "seed": 3},
        },
        timeout=60,
    )
    assert created.status_code == 201, created.text
    ids = [created.json()["id"], *created.json()["batch_jobs"]]
    assert len(ids) == 6
    generation = [ready_workers["gen-a"], ready_workers["gen-b"]]
    wait_for(lambda: succeeded(stack, ids), seconds=240, processes=generation)

    ran = jobs(stack, ids)
    assert [job["attempts"] for job in ran.values()] == [1] * 6
    assert {job["worker"].split("@")[0] for job in ran.values()} == {"gen-a", "gen-b"}
    stored = results(stack, ids)
    assert sorted((result["job"], result["index"]) for result in stored) == sorted(
        (job_id, 0) for job_id in ids
    )
    # Every file of every result is in the private bucket, and nothing else is there.
    names = {result[field] for result in stored for field in RESULT_FIELDS}
    assert len(names) == 6 * len(RESULT_FIELDS)
    assert bucket_keys(stack, PRIVATE_BUCKET) == names
    # Nothing went to local disk.
    assert not any(stack.folder.joinpath("media").iterdir())
    assert not any(stack.folder.joinpath("private").iterdir())

    # The owner's file URL answers with a short-lived signed URL of the private bucket ...
    job = api.get(f"{web}/api/tryons/{ids[0]}/", timeout=10).json()
    answer = api.get(job["results"][0]["image"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    assert answer.headers["Cache-Control"] == "private, no-store"
    signed = answer.headers["Location"]
    assert signed.startswith(f"{stack.s3_endpoint}/{PRIVATE_BUCKET}/results/")
    query = parse_qs(urlsplit(signed).query)
    if "X-Amz-Expires" in query:
        assert int(query["X-Amz-Expires"][0]) == 120
    else:
        assert 0 < int(query["Expires"][0]) - time.time() <= 120
    picture = requests.get(signed, timeout=10)
    assert picture.status_code == 200
    (first,) = (result for result in stored if result["job"] == ids[0])
    kept = stack.s3().get_object(Bucket=PRIVATE_BUCKET, Key=first["image"])["Body"].read()
    assert picture.content == kept and kept[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.headers["Cache-Control"] == "private, no-store"
    # ... which nobody else gets, and the object itself is not readable without a signature.
    assert requests.get(job["results"][0]["image"], timeout=10).status_code == 404
    assert requests.get(signed.split("?")[0], timeout=10).status_code == 403


def test_a_job_whose_worker_is_killed_is_taken_over_and_finishes_once(
    stack, web, api, garment, ready_workers
):
    before = bucket_keys(stack, PRIVATE_BUCKET)
    created = api.post(
        f"{web}/api/tryons/",
        json={
            "kind": "model_shot",
            "garment": garment["id"],
            "params": {"steps": 40, "width": 192, "height": 256, "seed": 5},
        },
        timeout=60,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    generation = {name: ready_workers[name] for name in ("gen-a", "gen-b")}
    wait_for(
        lambda: jobs(stack, [job_id])[job_id]["progress"] > 0.1,
        seconds=180,
        processes=generation.values(),
    )
    claimed_by = jobs(stack, [job_id])[job_id]["worker"]
    victim_name = claimed_by.split("@")[0]
    (survivor_name,) = set(generation) - {victim_name}
    victim, survivor = generation[victim_name], generation[survivor_name]
    assert claimed_by.endswith(f":{victim.pid}")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert jobs(stack, [job_id])[job_id]["status"] == "running"  # killed mid-job indeed

    # Redis still holds the message the dead worker never acknowledged ...
    broker = redis.Redis.from_url(f"{stack.redis_url}/0")
    assert any(job_id in message.decode() for message in broker.hvals("unacked"))
    # ... and the survivor's sweeper takes the job over once its heartbeat is stale.
    wait_for(
        lambda: jobs(stack, [job_id])[job_id]["status"] == "succeeded",
        seconds=JOB_STALE_AFTER + 240,
        processes=[survivor],
    )
    job = jobs(stack, [job_id])[job_id]
    assert job["attempts"] == 2 and job["worker"].startswith(f"{survivor_name}@")
    (result,) = results(stack, [job_id])
    assert bucket_keys(stack, PRIVATE_BUCKET) - before == {result[f] for f in RESULT_FIELDS}

    # When the visibility timeout passes Redis delivers the dead worker's message again: it
    # finds the job done and changes nothing.
    _redeliver_unacknowledged(stack)
    wait_for(lambda: not broker.hlen("unacked") and not broker.llen("generation"), seconds=60)
    time.sleep(1)
    assert jobs(stack, [job_id])[job_id]["attempts"] == 2
    assert len(results(stack, [job_id])) == 1
    assert bucket_keys(stack, PRIVATE_BUCKET) - before == {result[f] for f in RESULT_FIELDS}


def _redeliver_unacknowledged(stack) -> None:
    """What kombu does for every message unacknowledged past the visibility timeout (here:
    now), without waiting JOB_DEADLINE + 900 s for it."""
    from kombu import Connection

    with Connection(
        f"{stack.redis_url}/0", transport_options={"visibility_timeout": 0}
    ) as connection:
        connection.default_channel.qos.restore_visible(interval=1)


def test_a_burst_gets_exactly_the_budget_through_on_redis(redis_url, settings):
    # At scale every web process counts in Redis: its INCR is the atomic step, no lock.
    from common import ratelimit
    from tests.tryon.test_ratelimit import _burst

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{redis_url}/3",
        }
    }
    key = f"burst-{time.time()}"
    outcomes = _burst(lambda: ratelimit.hit(key, 60, 60) is None)
    assert len(outcomes) == 128 and outcomes.count(True) == 60
