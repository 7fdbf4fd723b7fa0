"""The servers a shop at scale runs on, started on loopback for the integration suite.

PostgreSQL and Redis come from Debian (`.ci/run` installs `postgresql` and `redis-server`); the
S3-compatible store is moto's server (requirements-dev.txt). Each is started once per test
session on a free port and thrown away at the end. Without the Debian packages the suite is
skipped on a developer's machine and fails in CI.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.workers import ROOT, log_tail, start_worker, stop

PUBLIC_BUCKET = "tryon-public"
PRIVATE_BUCKET = "tryon-private"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "integration", "AWS_SECRET_ACCESS_KEY": "integration-secret"}
# Short enough for the tests to see a dead worker's job taken over in seconds, long enough for
# a busy machine never to take a live job for a dead one.
JOB_STALE_AFTER = 6


def _missing(what: str, package: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; .ci/run installs Debian's {package} package")
    pytest.skip(f"{what} is not installed (apt-get install {package})")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until(ready, what: str, process=None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what} exited at start:\n{log_tail(process)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not start in {seconds} s")
        time.sleep(0.2)


def _postgres_bindir() -> Path | None:
    def version(initdb: Path) -> int:
        name = initdb.parents[1].name
        return int(name) if name.isdigit() else 0

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server of our own in a temporary folder: the URL of an empty database."""
    bindir = _postgres_bindir()
    if bindir is None:
        _missing("PostgreSQL (initdb)", "postgresql")
    folder = Path(tempfile.mkdtemp(prefix="tryon-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    pg_ctl = [*as_owner, bindir / "pg_ctl", "-D", data]
    # Durability is not what these tests are about: no fsync makes migrations fast.
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
    options += "-c synchronous_commit=off -c full_page_writes=off"
    try:
        for command in (
            [*as_owner, bindir / "initdb", "-D", data, "-U", "tryon", "--auth=trust", "-E", "UTF8"],
            [*pg_ctl, "-l", folder / "log", "-w", "-o", options, "start"],
        ):
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
            if done.returncode:
                log = (folder / "log").read_text() if (folder / "log").exists() else ""
                pytest.fail(f"PostgreSQL did not start: {done.stdout}{done.stderr}{log}")
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=tryon dbname=postgres") as admin:
            admin.autocommit = True
            admin.execute("CREATE DATABASE tryon")
        yield f"postgres://tryon@127.0.0.1:{port}/tryon"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], cwd=folder, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A Redis server of our own, in memory only."""
    server = shutil.which("redis-server")
    if server is None:
        _missing("redis-server", "redis-server")
    import redis

    port, folder = _free_port(), tmp_path_factory.mktemp("redis")
    memory_only = ["--save", "", "--appendonly", "no"]
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    with open(folder / "log", "w") as log:
        process = subprocess.Popen([*command, *memory_only], stdout=log, stderr=subprocess.STDOUT)
    process.log = folder / "log"
    try:
        _wait_until(redis.Redis(port=port).ping, "redis-server", process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop([process])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's S3-compatible server with a public and a private bucket."""
    port, folder = _free_port(), tmp_path_factory.mktemp("s3")
    with open(folder / "log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log = folder / "log"
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = s3_client(endpoint)
        _wait_until(s3.list_buckets, "moto's S3 server", process)
        for bucket in (PUBLIC_BUCKET, PRIVATE_BUCKET):
            s3.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        stop([process])


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass
class Stack:
    """The servers, and the environment that points the site at them."""

    env: dict
    database_url: str
    redis_url: str
    s3_endpoint: str
    folder: Path

    def s3(self):
        return s3_client(self.s3_endpoint)


@pytest.fixture(scope="session")
def stack(postgres_url, redis_url, s3_endpoint, tiny_kit, tmp_path_factory) -> Stack:
    """PostgreSQL, Redis and S3 configured purely through the environment, database migrated.

    MEDIA_ROOT and PRIVATE_MEDIA_ROOT point at empty folders the tests check stay empty.
    """
    folder = tmp_path_factory.mktemp("stack")
    models = folder / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_kit)
    for name in ("media", "private"):
        (folder / name).mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CELERY_"))},
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": f"{redis_url}/0",
        "CELERY_RESULT_BACKEND": f"{redis_url}/1",
        "CACHE_URL": f"{redis_url.replace('redis://', 'rediscache://')}/2",
        "AWS_STORAGE_BUCKET_NAME": PUBLIC_BUCKET,
        "AWS_PRIVATE_STORAGE_BUCKET_NAME": PRIVATE_BUCKET,
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path",
        **S3_KEYS,
        "MEDIA_ROOT": str(folder / "media"),
        "PRIVATE_MEDIA_ROOT": str(folder / "private"),
        "MODELS_DIR": str(models),
        "TRYON_ENGINE": "tiny",
        "JOB_HEARTBEAT_SECONDS": "1",
        "JOB_STALE_AFTER": str(JOB_STALE_AFTER),
        "JOB_SWEEP_SECONDS": "1",
        "JOB_PROGRESS_INTERVAL": "0.2",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return Stack(env, postgres_url, redis_url, s3_endpoint, folder)


@pytest.fixture(scope="session")
def web(stack) -> str:
    """The site's web process on the stack (Django's server, enough for a test)."""
    port = _free_port()
    with open(stack.folder / "web.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log = stack.folder / "web.log"
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        _wait_until(lambda: requests.get(f"{url}/healthz", timeout=5).ok, "the web server", process)
        yield url
    finally:
        stop([process])


@pytest.fixture(scope="session")
def workers(stack) -> dict:
    """An analysis worker and two generation workers, run as GPU workers are, by name."""
    started = {
        "analysis": start_worker(
            env=stack.env, hostname="analysis", log=stack.folder / "analysis.log", queues="analysis"
        ),
        **{
            name: start_worker(env=stack.env, hostname=name, log=stack.folder / f"{name}.log")
            for name in ("gen-a", "gen-b")
        },
    }
    yield started
    stop(started.values())
