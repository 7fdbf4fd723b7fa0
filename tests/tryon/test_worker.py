"""A real Celery worker process reports itself alive, and /healthz sees it."""

import os
import time

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from tests.workers import start_worker, stop, wait_for
from tryon.models import WorkerHeartbeat


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
    worker = start_worker(env=env, hostname="test-worker", log=tmp_path / "worker.log", queues=None)
    try:
        wait_for(WorkerHeartbeat.objects.exists, seconds=60, processes=[worker])
        first = WorkerHeartbeat.objects.get()
        assert first.hostname.startswith("test-worker@")
        body = client.get(reverse("healthz")).json()
        assert body["checks"]["worker"]["status"] == "ok"
        # The heartbeat keeps going while the worker runs.
        time.sleep(2.5)
        assert WorkerHeartbeat.objects.get().last_seen > first.last_seen
    finally:
        stop([worker])
