"""Real Celery worker processes running try-on jobs with the embedded SQLite broker.

A worker SIGKILLed in the middle of a job: the restarted worker finds the job orphaned and runs
it again, once, with one set of results. Two workers fed duplicate messages never run a job
twice. These tests share the SQLite test database file with the worker processes.
"""

import os
import signal
import time
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection

from catalog.models import Garment
from catalog.services import garment_analyze, garment_ingest
from tests.conftest import product_shot_upload
from tests.workers import start_worker as start_celery_worker
from tests.workers import stop, wait_for
from tryon.celery import app
from tryon.intake import tryon_job_create
from tryon.models import TryOnJob, TryOnResult
from tryon.tasks import tryon_job_run_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _tasks_go_to_the_broker():
    """Unlike the rest of the suite, tasks here travel through a real broker to the workers."""
    app.conf.task_always_eager = False


@pytest.fixture
def broker_url(tmp_path) -> str:
    if connection.vendor != "sqlite":
        pytest.skip("these tests share the SQLite test database file with the workers")
    return f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"


@pytest.fixture
def start_worker(broker_url, tiny_models_dir, tmp_path):
    """Start a generation worker process; all are stopped when the test ends."""
    started = []
    env = {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
        "MODELS_DIR": str(tiny_models_dir),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PRIVATE_MEDIA_ROOT": str(settings.PRIVATE_MEDIA_ROOT),
        "JOB_HEARTBEAT_SECONDS": "1",
        "JOB_PROGRESS_INTERVAL": "0.2",
    }

    def start(hostname: str):
        log = tmp_path / f"{hostname}-{len(started)}.log"
        started.append(start_celery_worker(env=env, hostname=hostname, log=log))
        return started[-1]

    yield start
    stop(started)


@pytest.fixture
def garment(merchant, tiny_models_dir) -> Garment:
    with mock.patch("catalog.tasks.garment_analyze.delay"):
        made = garment_ingest(
            garment=Garment(
                merchant=merchant,
                title="Tee",
                sku="TEE-W",
                category="upper",
                price="10.00",
                image=product_shot_upload(),
            )
        )
    garment_analyze(garment_id=made.pk)  # here, not in an analysis worker
    made.refresh_from_db()
    assert made.analysis_status == Garment.AnalysisStatus.DONE
    return made


def _model_shot(garment, merchant, **params) -> TryOnJob:
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        return tryon_job_create(
            kind="model_shot",
            garment=garment,
            owner=merchant,
            params={"steps": 2, "width": 128, "height": 192, "seed": 3, **params},
            engine="tiny",
        )


def _send(broker_url: str, job: TryOnJob) -> None:
    with app.connection_for_write(broker_url) as broker:
        tryon_job_run_task.apply_async(args=[str(job.pk)], connection=broker, queue="generation")


def _result_files() -> list[Path]:
    root = Path(settings.PRIVATE_MEDIA_ROOT)
    return [p for folder in ("results", "maps") for p in (root / folder).glob("*") if p.is_file()]


def test_a_job_whose_worker_is_killed_finishes_once_on_the_restarted_worker(
    garment, merchant, start_worker, broker_url
):
    job = _model_shot(garment, merchant, steps=40, width=256, height=384)
    first = start_worker("gen")
    _send(broker_url, job)
    wait_for(lambda: TryOnJob.objects.get(pk=job.pk).progress > 0.1, seconds=180, processes=[first])
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert TryOnJob.objects.get(pk=job.pk).status == TryOnJob.Status.RUNNING

    second = start_worker("gen")  # the same worker name: it knows the job is an orphan
    wait_for(
        lambda: TryOnJob.objects.get(pk=job.pk).status == TryOnJob.Status.SUCCEEDED,
        seconds=180,
        processes=[second],
    )
    job.refresh_from_db()
    assert job.attempts == 2 and job.progress == 1.0
    assert TryOnResult.objects.filter(job=job).count() == 1
    assert len(_result_files()) == 5  # one picture and its four maps: no leftovers


def test_two_workers_fed_duplicate_messages_run_each_job_once(
    garment, merchant, start_worker, broker_url
):
    jobs = [_model_shot(garment, merchant, seed=seed) for seed in range(4)]
    workers = [start_worker("gen-a"), start_worker("gen-b")]
    for job in jobs:
        _send(broker_url, job)
        _send(broker_url, job)  # as a broker redelivering after a lost acknowledgement would
    wait_for(
        lambda: TryOnJob.objects.filter(status=TryOnJob.Status.SUCCEEDED).count() == 4,
        seconds=240,
        processes=workers,
    )
    time.sleep(2)  # let the duplicate messages arrive; they must find nothing to do
    assert [job.attempts for job in TryOnJob.objects.all()] == [1, 1, 1, 1]
    assert TryOnResult.objects.count() == 4 and len(_result_files()) == 4 * 5
