"""Job callbacks: a signed POST when a job ends, retried while the receiver fails."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import photo_upload
from tryon.callbacks import _secret
from tryon.services import tryon_job_cancel, tryon_job_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    """An HTTP server on loopback that records POSTs; ``fail_first`` answers 500 first."""
    settings.CALLBACK_ALLOW_PRIVATE = True
    received, state = [], {"fail_first": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state["fail_first"] > 0:
                state["fail_first"] -= 1
                self.send_response(500)
            else:
                received.append((body, self.headers["X-Tryon-Signature"]))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received, state
    server.shutdown()


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
