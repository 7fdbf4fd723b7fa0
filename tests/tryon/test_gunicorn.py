"""The production web process: gunicorn with gunicorn.conf.py and the production settings,
behind a (simulated) TLS proxy, serving the health check, whitenoise's static files and the API."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import own_files_env

ROOT = Path(__file__).resolve().parents[2]
HOST = "shop.example.com"
PROXIED = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _production_environment(work: Path, port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WEB_"))}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "tryon.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-" + "k9Z" * 20,
        "DJANGO_ALLOWED_HOSTS": HOST,
        **own_files_env(work),
        "STATIC_ROOT": str(work / "static"),
        "MODELS_DIR": str(work / "models"),
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "WEB_ACCESS_LOG": str(work / "access.log"),
    }


def _start(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn"], cwd=ROOT, env=env, stdout=log, stderr=log
        )


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _get(port: int, path: str, headers: dict[str, str]):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _prepare(env: dict[str, str], code: str) -> str:
    """Migrate the server's database, then run ``code`` with Django set up (its stdout)."""
    prepare = (
        "import django; django.setup(); from django.core.management import call_command; "
        f"call_command('migrate', verbosity=0); {code}"
    )
    done = subprocess.run(
        [sys.executable, "-c", prepare], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_until_serving(server: subprocess.Popen, port: int, log: Path) -> None:
    """Until gunicorn answers its health check (at most 30 s); its log's end if it died."""
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            _get(port, "/healthz", {"Host": HOST})
            return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)


@pytest.fixture
def production_server(tmp_path):
    """gunicorn on a free loopback port with the production settings, after migrate and
    collectstatic; yields the port and the access log's path, then stops the server."""
    port = _free_port()
    env = _production_environment(tmp_path, port)
    _prepare(env, "call_command('collectstatic', '--noinput', verbosity=0)")
    log = tmp_path / "gunicorn.log"
    server = _start(env, log)
    try:
        _wait_until_serving(server, port, log)
        yield port, tmp_path / "access.log"
    finally:
        _stop(server)


def test_gunicorn_serves_the_site_behind_a_tls_proxy(production_server):
    port, access_log = production_server

    # The health check answers over plain HTTP from inside (the proxy's or an orchestrator's
    # probe), where everything else is sent to HTTPS.
    status, _, body = _get(port, "/healthz", {"Host": HOST})
    assert status == 200
    assert json.loads(body)["checks"]["database"]["status"] == "ok"
    status, headers, _ = _get(port, "/api/poses/", {"Host": HOST})
    assert status == 301
    assert headers["location"] == f"https://{HOST}/api/poses/"

    # What the proxy forwards from an HTTPS client is answered, with HSTS.
    status, headers, body = _get(port, "/api/poses/", PROXIED)
    assert status == 200
    assert "front_standing" in [pose["name"] for pose in json.loads(body)]
    assert headers["strict-transport-security"].startswith("max-age=31536000")

    # Static files come from whitenoise, out of what collectstatic wrote: compressed for a
    # client that accepts it, with caching headers.
    status, headers, body = _get(
        port, "/static/css/site.css", {**PROXIED, "Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "public" in headers["cache-control"] and "max-age=" in headers["cache-control"]
    assert "etag" in headers
    plain = (ROOT / "static" / "css" / "site.css").read_bytes()
    assert len(body) < len(plain)
    status, headers, body = _get(port, "/static/css/site.css", PROXIED)
    assert status == 200 and "content-encoding" not in headers
    assert body == plain

    # Thread workers keep the proxy's connection open between requests (sync workers close
    # each one).
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(2):
            connection.request("GET", "/healthz", headers={"Host": HOST})
            response = connection.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close
    finally:
        connection.close()

    # The access log names the client as the proxy saw it, not the proxy.
    deadline = time.monotonic() + 5
    while "/static/css/site.css" not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "203.0.113.7 [" in access_log.read_text()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def test_gunicorn_serves_on_a_unix_socket(tmp_path):
    """A proxy on the same host may connect through a Unix socket, which the workers share
    (each worker's own socket, as on TCP, cannot be bound to one path twice)."""
    socket_path = tmp_path / "web.sock"
    env = {**_production_environment(tmp_path, 0), "WEB_BIND": f"unix:{socket_path}"}
    log = tmp_path / "gunicorn.log"
    server = _start(env, log)
    try:
        deadline = time.monotonic() + 20
        statuses = []
        while len(statuses) < 4:  # enough to reach both workers
            assert server.poll() is None, log.read_text()
            connection = _UnixConnection(socket_path)
            try:
                connection.request("GET", "/healthz", headers={"Host": HOST})
                statuses.append(connection.getresponse().status)
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            finally:
                connection.close()
        assert statuses == [200] * 4
        assert "ERROR" not in log.read_text()
    finally:
        _stop(server)


HEAVY_MODULES = ("torch", "torchvision", "diffusers", "transformers", "controlnet_aux")


def _imported_modules(log: str) -> set[str]:
    """The modules a process imported, from ``-X importtime``'s lines in its log
    ("import time: self [us] | cumulative | imported package")."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def test_a_try_on_post_to_gunicorn_never_imports_torch(tmp_path):
    """A shopper's photo try-on, posted to the production web server: the photo is cleaned and
    its pose checked in the web process (MediaPipe), and the job queued, without torch.

    Every import of the server's processes (master and workers) is logged by Python itself
    (``PYTHONPROFILEIMPORTTIME``), so this reads what the real process loaded, POST included.
    """
    port = _free_port()
    env = {**_production_environment(tmp_path, port), "WEB_CONCURRENCY": "1"}
    made = _prepare(
        env,
        "from django.contrib.auth import get_user_model; from catalog.demo import analysed_tee; "
        "print(analysed_tee(get_user_model().objects.create_user('m')).pk)",
    )
    garment_pk = int(made.split()[-1])
    log = tmp_path / "gunicorn.log"
    server = _start({**env, "PYTHONPROFILEIMPORTTIME": "1"}, log)
    try:
        _wait_until_serving(server, port, log)
        before = _imported_modules(log.read_text())
        status, body = _post_tryon(port, garment_pk)
        assert status == 201, body
        assert json.loads(body)["status"] == "queued"
    finally:
        _stop(server)
    after = _imported_modules(log.read_text())
    # The log does cover the POST: the pose check's MediaPipe is first imported by it.
    assert "mediapipe" not in before and "mediapipe" in after
    assert "tryon.intake" in after
    # The POST ran the web side's pose check, whose module only that imports.
    assert "pipelines.person" not in before and "pipelines.person" in after
    heavy = {name for name in after if name.split(".")[0] in HEAVY_MODULES}
    assert heavy == set()


def _post_tryon(port: int, garment_pk: int) -> tuple[int, bytes]:
    """POST /api/tryons/ as an anonymous shopper: the astronaut's photo, with consent."""
    import io
    import uuid

    from PIL import Image
    from skimage import data

    photo = io.BytesIO()
    Image.fromarray(data.astronaut()).save(photo, format="JPEG")
    boundary = uuid.uuid4().hex
    fields = {"garment": str(garment_pk), "consent": "true"}
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="person_photo"; '
        f'filename="me.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
        + photo.getvalue()
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = {**PROXIED, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/tryons/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
