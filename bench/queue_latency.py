"""How long a try-on job waits between ``tryon_job_create`` and a worker starting it.

Runs a real generation worker against a throw-away SQLite database, first over the embedded
SQLite broker, then over Redis when ``redis-server`` is installed (started on a free loopback
port). Jobs use the ``preview`` engine and run one at a time, so the figure is the queue's own
latency: the job's ``started_at`` minus its ``created_at``, as the database recorded them.

The embedded broker is polled: kombu's SQLAlchemy transport looks for new messages every
``polling_interval`` seconds (CELERY_BROKER_TRANSPORT_OPTIONS), which bounds its latency; Redis
pushes messages to a blocked worker. Last stdout line: one JSON object.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS = 12


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(work: Path, broker: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{work / 'results.sqlite3'}",
        "MEDIA_ROOT": str(work / "media"),
        "PRIVATE_MEDIA_ROOT": str(work / "private"),
        "MODELS_DIR": str(work / "models"),
        "PYTHONPATH": str(ROOT),
    }


def _measure(work: Path, broker: str) -> dict:
    """Median and spread of the queue wait over JOBS jobs, after one warm-up job."""
    env = _environment(work, broker)
    command = [sys.executable, "-m", "celery", "-A", "tryon", "worker", "--queues=generation"]
    command += ["--pool=solo", "--loglevel=WARNING", "--hostname=bench@%h"]
    worker = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = subprocess.run(
            [sys.executable, __file__, "--create-jobs", str(JOBS + 1)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        worker.terminate()
        worker.wait(30)
    waits = json.loads(result.stdout.strip().splitlines()[-1])[1:]  # the first one warms up
    return {
        "median_ms": round(statistics.median(waits), 1),
        "p90_ms": round(sorted(waits)[int(0.9 * len(waits)) - 1], 1),
        "max_ms": round(max(waits), 1),
        "jobs": len(waits),
    }


def _create_jobs(count: int) -> None:
    """In the benchmark's Django process: one analysed garment, then jobs one at a time."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tryon.settings")
    django.setup()

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from catalog.demo import analysed_tee
    from tryon.intake import tryon_job_create
    from tryon.models import TryOnJob

    call_command("migrate", verbosity=0)
    merchant = get_user_model().objects.create_user("bench-merchant")
    garment = analysed_tee(merchant, title="Bench tee", sku="BENCH")
    waits = []
    for _ in range(count):
        job = tryon_job_create(
            kind="model_shot",
            garment=garment,
            owner=merchant,
            engine="preview",
            params={"width": 256, "height": 384},
        )
        deadline = time.monotonic() + 120
        while True:
            job.refresh_from_db()
            if job.status not in TryOnJob.ACTIVE:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job.pk} did not finish: {job.status}")
            time.sleep(0.02)
        if job.status != TryOnJob.Status.SUCCEEDED:
            raise SystemExit(f"job failed: {job.error_message}")
        waits.append((job.started_at - job.created_at).total_seconds() * 1000)
    print(json.dumps(waits))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--create-jobs":
        _create_jobs(int(sys.argv[2]))
        return
    figures: dict = {}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary) / "sqlite"
        work.mkdir()
        print("embedded SQLite broker...", file=sys.stderr)
        figures["sqlite_broker"] = _measure(work, f"sqla+sqlite:///{work / 'broker.sqlite3'}")
        server = shutil.which("redis-server")
        if server is None:
            figures["redis_broker"] = {"skipped": "redis-server is not installed"}
        else:
            port = _free_port()
            redis = subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                stdout=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.5)
                work = Path(temporary) / "redis"
                work.mkdir()
                print("Redis broker...", file=sys.stderr)
                figures["redis_broker"] = _measure(work, f"redis://127.0.0.1:{port}/0")
            finally:
                redis.terminate()
                redis.wait(10)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
