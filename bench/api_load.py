"""The web process under load: gunicorn (gunicorn.conf.py, 2 workers) on loopback, 50 clients.

Run from the repository root: ``python bench/api_load.py`` (under three minutes). The last
stdout line is one JSON object.

The server runs with the production settings (DJANGO_DEBUG=false, HTTPS behind a proxy: every
request carries the ``X-Forwarded-Proto: https`` and ``X-Forwarded-For`` a proxy would add) on a
throw-away SQLite database, its connections kept open between requests as docs/deploy.md sets up
PostgreSQL's (``?conn_max_age=60``); the throttles' cache and the broker are Redis when
``redis-server`` is installed (started on a free loopback port), as in docs/deploy.md's layout,
else the embedded defaults (files, an SQLite broker). The rate limits and the active-job cap
are raised through their environment variables, so that the load measures the work and not the
refusals; the throttles still count every request. Each of the 50 clients is its own shopper
with its own API token and its own finished photo try-on (one result with its four maps), as 50
people following their try-ons would be.

The load generator is this process: asyncio over raw keep-alive HTTP/1.1 connections, so it
costs little CPU; what it used, what gunicorn used and what the rest of the machine used during
each phase are reported (``client_cpu``, ``server_cpu``, ``other_cpu``, in cores), since on a
small machine the generator and the server share the cores. Phases, each after a warm-up:

- ``static``: a file served by whitenoise, the floor of the stack (gunicorn, WSGI, the first
  two middlewares, the access log);
- ``drf_floor``: ``GET /api/samplers/``, anonymous: the whole Django + DRF stack (middleware,
  authentication, throttle, rendering) without a database query;
- ``status``: ``GET /api/tryons/<id>/`` with the owner's token, clients sending back to back
  (closed loop): ``rps`` is the capacity, and the latencies are mostly time spent queueing,
  about 50 / rps by Little's law;
- ``status_paced``: the same request at a fixed pace, keyed by the total offered rate: at 50
  requests/s each client polls once a second, as the pages and scripts/api_client.py follow a
  job; the higher rates are the same clients polling faster (or more such shoppers). The
  latencies count from when each request was due, so a slow answer hides no waiting;
  ``status_paced_max_rps_within_target`` is the highest of these rates whose p99 is within
  ``status_p99_target_ms``;
- ``create``: ``POST /api/tryons/`` with a 1024×1024 JPEG photo (multipart) and consent; each
  goes through the upload cleaning and MediaPipe's pose pre-check, is stored and queued (no
  worker runs: the jobs stay queued). A fixed number of requests, back to back.

Latencies are milliseconds (p50/p95/p99 of every request in the phase); ``status_rps_vs_*``
put the status endpoint's capacity against the floors measured in the same run, which a noisy
machine disturbs less than the absolute figures.
"""

import asyncio
import io
import json
import os
import runpy
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "shop.example.com"
CLIENTS = 50
WORKERS = 2
PHASE_SECONDS = 10.0
WARM_UP_SECONDS = 2.0
PACED_RATES = (50, 100, 150, 200)  # requests per second, all clients together
CREATE_REQUESTS = 150
CREATE_WARM_UP = CLIENTS  # one each, so every worker has loaded the pose model
PHOTO_SIZE = (1024, 1024)
P99_TARGET_MS = 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(work: Path, port: int, redis_url: str | None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "tryon.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": HOST,
        # Persistent connections, as docs/deploy.md sets them up for PostgreSQL.
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}?conn_max_age=60&conn_health_checks=True",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{work / 'broker.sqlite3'}",
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{work / 'results.sqlite3'}",
        "CACHE_URL": f"filecache://{work / 'cache'}",
        "STATIC_ROOT": str(work / "static"),
        "MEDIA_ROOT": str(work / "media"),
        "PRIVATE_MEDIA_ROOT": str(work / "private"),
        "MODELS_DIR": str(work / "models"),
        "TRYON_ENGINE": "preview",
        "API_READ_RATE": "1000000/min",
        "API_WRITE_RATE": "1000000/min",
        "MAX_ACTIVE_JOBS": "1000000",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(WORKERS),
        "WEB_ACCESS_LOG": str(work / "access.log"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    if redis_url:
        env["CACHE_URL"] = f"{redis_url}/1"
        env["CELERY_BROKER_URL"] = env["CELERY_RESULT_BACKEND"] = f"{redis_url}/0"
    return env


def _photo_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    photo = Image.fromarray(data.astronaut()).resize(PHOTO_SIZE, Image.LANCZOS)
    photo.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _setup() -> None:
    """In the server's environment: the database, static files, CLIENTS shoppers with a token
    and a finished try-on each, and the garment to try on. Prints them as JSON."""
    import django

    django.setup()
    from unittest import mock

    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from catalog.demo import analysed_tee
    from tryon.intake import tryon_job_create
    from tryon.models import TryOnJob
    from tryon.runner import tryon_job_run

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    users = get_user_model().objects
    merchant = users.create_user("bench-merchant")
    garment = analysed_tee(merchant, title="Bench tee", sku="BENCH")

    # One real try-on, run by the preview engine; the other shoppers get copies of its rows
    # (sharing its files), which is all the status endpoint reads.
    shoppers = [users.create_user(f"bench-shopper-{i}") for i in range(CLIENTS)]
    photo = SimpleUploadedFile("me.jpg", _photo_jpeg(), content_type="image/jpeg")
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = tryon_job_create(
            kind=TryOnJob.Kind.PHOTO,
            garment=garment,
            owner=shoppers[0],
            person_photo=photo,
            consent=True,
        )
    tryon_job_run(job_id=job.pk, worker="bench")
    job.refresh_from_db()
    if job.status != TryOnJob.Status.SUCCEEDED:
        raise SystemExit(f"the set-up try-on failed: {job.error_message}")
    results = list(job.results.all())
    clients = [{"token": Token.objects.create(user=shoppers[0]).key, "job": str(job.pk)}]
    for shopper in shoppers[1:]:
        job.pk, job.owner = uuid.uuid4(), shopper
        job.save(force_insert=True)
        for result in results:
            result.pk, result.job = None, job
            result.save(force_insert=True)
        clients.append({"token": Token.objects.create(user=shopper).key, "job": str(job.pk)})
    print(json.dumps({"garment": garment.pk, "clients": clients}))


# --- the load generator ---------------------------------------------------------------------------


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "X-Forwarded-Proto: https"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader, writer, request: bytes) -> tuple[int, bool]:
    """Send one request and read its response: (status, whether the server closes)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise RuntimeError(f"a response without Content-Length: {lines[0]}")
    await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() == "close"


class Phase:
    """The requests of one client each (``requests[i]`` is client i's), sent for ``seconds``
    or until ``total`` have been answered; ``interval`` paces each client (None: back to back).
    """

    def __init__(self, port, requests, *, seconds=None, total=None, interval=None):
        self.port, self.requests = port, requests
        self.seconds, self.total, self.interval = seconds, total, interval
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.started = 0

    async def _client(self, index: int, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        due = time.perf_counter() + (self.interval or 0) * index / len(self.requests)
        try:
            while time.perf_counter() < stop_at:
                if self.total is not None:
                    if self.started >= self.total:
                        break
                    self.started += 1
                if self.interval:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    start = due
                    due += self.interval
                else:
                    start = time.perf_counter()
                status, closing = await _exchange(reader, writer, self.requests[index])
                self.latencies.append(time.perf_counter() - start)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if closing:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        finally:
            writer.close()

    async def _run(self) -> float:
        stop_at = time.perf_counter() + (self.seconds or 3600)
        start = time.perf_counter()
        await asyncio.gather(*(self._client(i, stop_at) for i in range(len(self.requests))))
        return time.perf_counter() - start

    def run(self, server: psutil.Process) -> dict:
        cpu_before = _cpu_seconds(server), time.process_time(), _machine_busy_seconds()
        elapsed = asyncio.run(self._run())
        used = {
            pid: seconds - cpu_before[0].get(pid, 0.0)
            for pid, seconds in _cpu_seconds(server).items()
        }
        server_cpu = sum(used.values())
        workers = sorted(
            (seconds for pid, seconds in used.items() if pid != server.pid), reverse=True
        )
        client_cpu = time.process_time() - cpu_before[1]
        busy = _machine_busy_seconds() - cpu_before[2]
        ok = self.statuses.get(200, 0) + self.statuses.get(201, 0)
        latencies = sorted(self.latencies)
        return {
            "requests": len(latencies),
            "errors": len(latencies) - ok,
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "rps": round(ok / elapsed, 1),
            "p50_ms": _percentile(latencies, 50),
            "p95_ms": _percentile(latencies, 95),
            "p99_ms": _percentile(latencies, 99),
            "max_ms": round(latencies[-1] * 1000, 1),
            "seconds": round(elapsed, 2),
            "server_cpu": round(server_cpu / elapsed, 2),
            "worker_cpu": [round(seconds / elapsed, 2) for seconds in workers],
            "client_cpu": round(client_cpu / elapsed, 2),
            "other_cpu": round(max(0.0, busy - server_cpu - client_cpu) / elapsed, 2),
        }


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return round(ordered[index] * 1000, 1)


def _cpu_seconds(server: psutil.Process) -> dict[int, float]:
    """CPU seconds so far of gunicorn's master and each worker, by process id."""
    seconds = {}
    for process in [server, *server.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def _multipart(fields: dict[str, str], photo: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="person_photo"; '
        'filename="me.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    )
    parts.append(head.encode() + photo + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def _wait_until_up(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start:\n{log.read_text()}") from None
            time.sleep(0.1)


def _load(port: int, server: psutil.Process, setup: dict) -> dict:
    clients = setup["clients"]
    forwarded = [{"X-Forwarded-For": f"203.0.113.{i + 1}"} for i in range(CLIENTS)]

    def authorised(i: int) -> dict[str, str]:
        return {**forwarded[i], "Authorization": f"Token {clients[i]['token']}"}

    static = [_request("GET", "/static/css/site.css", forwarded[i]) for i in range(CLIENTS)]
    samplers = [_request("GET", "/api/samplers/", forwarded[i]) for i in range(CLIENTS)]
    status = [
        _request("GET", f"/api/tryons/{c['job']}/", authorised(i)) for i, c in enumerate(clients)
    ]
    body, boundary = _multipart(
        {"garment": str(setup["garment"]), "consent": "true"}, _photo_jpeg()
    )
    create = [
        _request(
            "POST",
            "/api/tryons/",
            {**authorised(i), "Content-Type": f"multipart/form-data; boundary={boundary}"},
            body,
        )
        for i in range(CLIENTS)
    ]
    figures: dict = {}

    def measure(name: str, requests: list[bytes], interval: float | None = None) -> dict:
        print(f"{name}...", file=sys.stderr)
        Phase(port, requests, seconds=WARM_UP_SECONDS, interval=interval).run(server)
        measured = Phase(port, requests, seconds=PHASE_SECONDS, interval=interval).run(server)
        print(f"  {measured}", file=sys.stderr)
        return measured

    figures["static"] = measure("static", static)
    figures["drf_floor"] = measure("drf_floor", samplers)
    figures["status"] = measure("status", status)
    figures["status_paced"] = {}
    for rate in PACED_RATES:
        figures["status_paced"][str(rate)] = measure(
            f"status at {rate} requests/s", status, interval=CLIENTS / rate
        )
    print("create...", file=sys.stderr)
    Phase(port, create, total=CREATE_WARM_UP).run(server)
    figures["create"] = Phase(port, create, total=CREATE_REQUESTS).run(server)
    print(f"  {figures['create']}", file=sys.stderr)
    return figures


def _run(work: Path, redis_url: str | None) -> dict:
    port = _free_port()
    env = _environment(work, port, redis_url)
    print("setting up (migrate, collectstatic, a try-on, 50 shoppers)...", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, __file__, "--setup"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"set-up failed:\n{done.stderr}")
    setup = json.loads(done.stdout.strip().splitlines()[-1])
    log = work / "gunicorn.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn"], cwd=ROOT, env=env, stdout=output, stderr=output
        )
    try:
        _wait_until_up(port, server, log)
        figures = _load(port, psutil.Process(server.pid), setup)
    finally:
        server.terminate()
        server.wait(30)
    return figures


def main() -> None:
    if sys.argv[1:] == ["--setup"]:
        _setup()
        return
    load_before = os.getloadavg()[0]
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        redis_server = shutil.which("redis-server")
        redis = None
        redis_url = None
        if redis_server:
            redis_port = _free_port()
            redis = subprocess.Popen(
                [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
                stdout=subprocess.DEVNULL,
            )
            redis_url = f"redis://127.0.0.1:{redis_port}"
            time.sleep(0.5)
        try:
            figures = _run(work, redis_url)
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait(10)
    status, static, drf = figures["status"], figures["static"], figures["drf_floor"]
    print(
        json.dumps(
            {
                "clients": CLIENTS,
                "workers": WORKERS,
                "worker_class": config["worker_class"],
                "threads": config["threads"],
                "database": "sqlite, persistent connections",
                "cache_and_broker": "redis" if redis_url else "files and sqlite",
                "cpus": os.cpu_count(),
                "load_before": round(load_before, 2),
                **figures,
                "status_rps_vs_static": round(status["rps"] / static["rps"], 3),
                "status_rps_vs_drf_floor": round(status["rps"] / drf["rps"], 3),
                "status_p99_target_ms": P99_TARGET_MS,
                "status_paced_max_rps_within_target": max(
                    (
                        int(rate)
                        for rate, paced in figures["status_paced"].items()
                        if paced["p99_ms"] <= P99_TARGET_MS
                    ),
                    default=None,
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
