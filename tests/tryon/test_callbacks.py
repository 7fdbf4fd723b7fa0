"""Job callbacks: a signed POST when a job ends, retried while the receiver fails."""

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from tests.conftest import photo_upload
from tryon.callbacks import _secret, check_callback_url, deliver
from tryon.deletion import tryon_job_cancel
from tryon.intake import tryon_job_create
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db


class _Resolver:
    """``socket.getaddrinfo`` from a table, never from the network; an IP literal is itself."""

    def __init__(self):
        self.answers, self.calls = {}, []

    def answer(self, host, *answers):
        """``host`` resolves to each of ``answers`` (lists of addresses) in turn, then the last."""
        self.answers[host] = list(answers)

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append(host)
        answers = self.answers.get(host)
        if answers:
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        elif _is_ip(host):
            addresses = [host]
        else:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's table")
        return [_address_info(address, port) for address in addresses]


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address_info(address, port):
    if ipaddress.ip_address(address.partition("%")[0]).version == 4:
        return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))


@pytest.fixture(autouse=True)
def resolver(monkeypatch):
    """No name in these tests is resolved on the network: see ``_Resolver``."""
    fake = _Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def _recorder(received, state):
    """A handler that records POSTs; ``state["fail_first"]`` answers 500 first."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            state["requests"].append(("POST", self.headers["Host"]))
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state["fail_first"] > 0:
                state["fail_first"] -= 1
                self.send_response(500)
            else:
                received.append((body, self.headers["X-Tryon-Signature"]))
                self.send_response(204)
            self.end_headers()

        def do_GET(self):  # a client following a 302 comes back with a GET
            state["requests"].append(("GET", self.headers["Host"]))
            self.send_response(405)
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def _serving(handler, tls=None):
    """``handler`` answering on a loopback port (over TLS with the ``tls`` context): its URL."""
    # TCPServer rather than HTTPServer: that one looks its address's name up.
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(settings):
    """A server on loopback that records POSTs (``received``) and every request's method and
    ``Host`` (``state["requests"]``); ``state["fail_first"]`` answers 500 first."""
    settings.CALLBACK_ALLOW_PRIVATE = True
    received, state = [], {"fail_first": 0, "requests": []}
    with _serving(_recorder(received, state)) as url:
        yield url, received, state


def _job(garment, url, **overrides):
    return tryon_job_create(
        kind="photo", garment=garment, session_key="s", person_photo=photo_upload(),
        consent=True, params={"steps": 2, "width": 128, "height": 192}, engine="preview",
        callback_url=url, **overrides,
    )  # fmt: skip


def test_a_finished_job_posts_a_signed_callback(
    analysed_garment, receiver, django_capture_on_commit_callbacks
):
    url, received, _ = receiver
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(analysed_garment, url)
    ((body, signature),) = received
    expected = "sha256=" + hmac.new(_secret(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    sent = json.loads(body)
    assert sent["id"] == str(job.pk) and sent["status"] == "succeeded"
    assert len(sent["results"]) == 1


def test_a_failing_receiver_is_retried(analysed_garment, receiver):
    from tryon.celery import app
    from tryon.tasks import job_callback_task

    # As in a worker: a retry is scheduled, not raised into the caller (the suite's autouse
    # fixture sets this back for the next test).
    app.conf.task_eager_propagates = False
    url, received, state = receiver
    with mock.patch("tryon.tasks.tryon_job_run_task.delay"):
        job = _job(analysed_garment, url)
    tryon_job_cancel(job=job)
    state["fail_first"] = 2
    # Run as a worker would (apply() follows the task's retries here, without the wait).
    outcome = job_callback_task.apply(args=[str(job.pk)], throw=False)
    assert outcome.state == "SUCCESS" and state["fail_first"] == 0  # two refusals, then it
    assert len(received) == 1 and json.loads(received[0][0])["status"] == "cancelled"
    assert job_callback_task.max_retries >= 5 and OSError in job_callback_task.autoretry_for


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "http://127.0.0.1:9/hook", "http://10.1.2.3/hook"]
)
def test_callback_addresses_into_private_networks_are_refused(analysed_garment, url):
    with pytest.raises(ValidationError) as caught:
        _job(analysed_garment, url)
    assert "callback_url" in caught.value.message_dict


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("tryon.tasks.tryon_job_run_task", "generation"),
        ("tryon.tasks.job_callback_task", "analysis"),  # HTTP to the merchant: not on a GPU
        ("catalog.tasks.garment_analyze", "analysis"),
        ("catalog.tasks.garment_mask_apply", "analysis"),
    ],
)
def test_each_task_goes_to_the_queue_of_the_workers_meant_for_it(task, queue):
    from tryon.celery import app

    assert app.amqp.router.route({}, task)["queue"].name == queue


NOT_PUBLIC = [
    "100.100.100.200",  # a cloud metadata service, in carrier-grade NAT space
    "100.64.0.1",
    "100.127.255.254",
    "192.0.0.1",
    "192.0.0.100",
    "224.0.0.1",
    "239.255.255.250",
    "127.0.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "0.0.0.0",  # a value to refuse, not an address to bind  # noqa: S104
    "255.255.255.255",
    "198.18.0.1",
    "::1",
    "::",
    "fc00::1",
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "2002:7f00:1::1",  # 6to4, relayed to 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64, relayed to 169.254.169.254
    "fec0::1",  # deprecated site-local, which Python still calls global
    "::ffff:0:a9fe:a9fe",  # SIIT's IPv4-translated 169.254.169.254, likewise
]
PUBLIC = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:c5c3", "::ffff:93.184.215.14"]


@pytest.mark.parametrize(
    "addresses", [[address] for address in NOT_PUBLIC] + [["93.184.215.14", "10.0.0.1"]], ids=str
)
def test_a_callback_host_with_any_address_that_is_not_public_is_refused(
    resolver, settings, addresses
):
    settings.CALLBACK_ALLOW_PRIVATE = False
    resolver.answer("hooks.example.test", addresses)
    with pytest.raises(ValidationError) as caught:
        check_callback_url("https://hooks.example.test/hook")
    assert "private network" in caught.value.message_dict["callback_url"][0]


@pytest.mark.parametrize("addresses", [[address] for address in PUBLIC] + [PUBLIC[:2]], ids=str)
def test_a_callback_host_with_only_public_addresses_is_accepted(resolver, settings, addresses):
    settings.CALLBACK_ALLOW_PRIVATE = False
    resolver.answer("hooks.example.test", addresses)
    check_callback_url("https://hooks.example.test/hook")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("fe80::1%eth0", True),
        ("0.0.0.0", False),  # connects to this very host  # noqa: S104
        ("::", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
    ],
)
def test_an_intranet_allows_private_addresses_but_only_unicast_ones(
    resolver, settings, address, allowed
):
    settings.CALLBACK_ALLOW_PRIVATE = True
    resolver.answer("hooks.example.test", [address])
    if allowed:
        check_callback_url("http://hooks.example.test/hook")
    else:
        with pytest.raises(ValidationError):
            check_callback_url("http://hooks.example.test/hook")


def test_a_redirect_is_a_failed_delivery_and_is_not_followed(analysed_garment, receiver):
    target, received, state = receiver

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

        def log_message(self, *args):
            pass

    with _serving(Redirect) as redirecting:
        job = _job(analysed_garment, redirecting)
        with pytest.raises(OSError, match="302"):
            deliver(job)
    assert state["requests"] == [] and received == []


def test_a_delivery_connects_to_the_very_address_it_checked(
    analysed_garment, resolver, settings, monkeypatch
):
    settings.CALLBACK_ALLOW_PRIVATE = False
    resolver.answer("hooks.example.test", ["93.184.215.14"])
    job = _job(analysed_garment, "http://hooks.example.test/hook")
    # DNS rebinding: a public address when checked, loopback when asked again.
    resolver.answer("hooks.example.test", ["93.184.215.14"], ["127.0.0.1"])
    resolver.calls.clear()
    tried = []

    def refuse(sock, address):  # every connection, refused before anything leaves the machine
        tried.append(address[:2])
        raise ConnectionRefusedError

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(ConnectionRefusedError):
        deliver(job)
    assert tried == [("93.184.215.14", 80)] and len(resolver.calls) == 1
    with pytest.raises(ValidationError):  # the next try checks the new answer, and refuses it
        deliver(job)
    assert tried == [("93.184.215.14", 80)] and len(resolver.calls) == 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for hooks.example.test, and its key: two PEM files' paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.example.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.example.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_callback_reaches_the_checked_address_under_its_host_name(
    analysed_garment, receiver, resolver, certificate, monkeypatch, scheme,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    _, received, state = receiver
    tls = None
    if scheme == "https":  # our certificate is trusted, and still checked against the name
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*certificate)
        trusting = ssl.create_default_context
        monkeypatch.setattr(ssl, "create_default_context", lambda: trusting(cafile=certificate[0]))
    with _serving(_recorder(received, state), tls) as url:
        port = urlsplit(url).port
        resolver.answer("hooks.example.test", ["127.0.0.1"])
        with django_capture_on_commit_callbacks(execute=True):
            _job(analysed_garment, f"{scheme}://hooks.example.test:{port}/hook")
    assert state["requests"] == [("POST", f"hooks.example.test:{port}")]
    ((body, signature),) = received
    assert signature == "sha256=" + hmac.new(_secret(), body, hashlib.sha256).hexdigest()
    # Checked when the job was made (an intranet name must resolve too), then resolved once to
    # deliver: what was checked is where the POST went.
    assert resolver.calls == ["hooks.example.test", "hooks.example.test"]


def test_https_checks_the_certificate_against_the_host_name(
    analysed_garment, receiver, resolver, certificate, monkeypatch
):
    _, received, state = receiver
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    trusting = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda: trusting(cafile=certificate[0]))
    with _serving(_recorder(received, state), tls) as url:
        resolver.answer("other.example.test", ["127.0.0.1"])
        job = _job(analysed_garment, f"https://other.example.test:{urlsplit(url).port}/hook")
        with pytest.raises(ssl.SSLCertVerificationError):
            deliver(job)
    assert state["requests"] == [] and received == []


MALFORMED = [
    "http://hooks.example.test:99999/hook",
    "http://hooks.example.test:0/hook",
    "http://user:secret@hooks.example.test/hook",
    "ftp://hooks.example.test/hook",
    "http:///hook",
    "http://hooks.example.test/" + "a" * 500,
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_callback_url_is_refused(analysed_garment, resolver, url):
    resolver.answer("hooks.example.test", ["93.184.215.14"])  # were it resolved: public
    with pytest.raises(ValidationError) as caught:
        _job(analysed_garment, url)
    assert list(caught.value.message_dict) == ["callback_url"]
    assert not TryOnJob.objects.exists()


@pytest.mark.parametrize("url", MALFORMED)
def test_the_api_answers_400_to_a_malformed_callback_url(analysed_garment, resolver, url):
    resolver.answer("hooks.example.test", ["93.184.215.14"])
    photo = base64.b64encode(photo_upload().read()).decode()
    body = {"garment": analysed_garment.pk, "consent": True, "person_photo_base64": photo}
    response = APIClient().post("/api/tryons/", {**body, "callback_url": url}, format="json")
    assert response.status_code == 400
    error = response.json()
    assert error["field"] == "callback_url" and error["message"]
    assert not TryOnJob.objects.exists()


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(
    analysed_garment, receiver, monkeypatch
):
    # Each byte comes before the read timeout, so only a deadline on the whole delivery stops
    # it from holding a CPU worker (and the garment analyses behind it) for as long as it likes.
    monkeypatch.setattr("tryon.callbacks.DELIVERY_DEADLINE_SECONDS", 1.0)
    monkeypatch.setattr("tryon.callbacks.TIMEOUT_SECONDS", 0.5)
    stop = threading.Event()

    class Dripping(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            for _ in range(60):  # 12 s at most: without the deadline the test fails, not hangs
                if stop.wait(0.2):
                    return
                self.wfile.write(b"H")
                self.wfile.flush()

        def log_message(self, *args):
            pass

    with _serving(Dripping) as dripping:
        job = _job(analysed_garment, dripping)
        started = time.monotonic()
        try:
            with pytest.raises(OSError):
                deliver(job)
        finally:
            stop.set()  # before the one-request server is shut down: it waits for the handler
        took = time.monotonic() - started
    assert took < 10  # the deadline, not the receiver, ended it (no timing is asserted finer)


def test_a_name_with_many_dead_addresses_costs_a_few_tries(analysed_garment, resolver, settings):
    settings.CALLBACK_ALLOW_PRIVATE = True
    many = [f"127.0.0.{n}" for n in range(2, 22)]
    resolver.answer("hooks.example.test", many)
    job = _job(analysed_garment, "http://hooks.example.test:9/hook")  # nothing listens on 9
    tried = []
    real_connect = socket.socket.connect

    def record(sock, address):
        tried.append(address[0])
        return real_connect(sock, address)

    with mock.patch.object(socket.socket, "connect", record), pytest.raises(OSError):
        deliver(job)
    assert tried == many[:3]
