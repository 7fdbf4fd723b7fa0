"""A real Celery worker process reports itself alive, and /healthz sees it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from tryon.models import WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_a_started_worker_shows_up_in_healthz(client, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("this test shares the SQLite test database file with the worker")
    env = {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tryon",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--hostname=test-worker@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not WorkerHeartbeat.objects.exists() and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stdout.read()
            time.sleep(0.5)
        first = WorkerHeartbeat.objects.get()
        assert first.hostname.startswith("test-worker@")
        body = client.get(reverse("healthz")).json()
        assert body["checks"]["worker"]["status"] == "ok"
        # The heartbeat keeps going while the worker runs.
        time.sleep(2.5)
        assert WorkerHeartbeat.objects.get().last_seen > first.last_seen
    finally:
        worker.terminate()
        worker.wait(20)
