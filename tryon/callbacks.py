"""Job callbacks: when a job ends, its ``callback_url`` receives a signed JSON POST.

The body is the job's id, status, error and results; the ``X-Tryon-Signature`` header is
``sha256=`` + the HMAC-SHA256 of the exact body with CALLBACK_SECRET, so the receiver can check
it came from us. A failed delivery is retried with exponential backoff by the Celery task.
Callback addresses are refused when they point at loopback, private or link-local networks
(a request from our servers to an intranet address is a classic server-side request forgery).
"""

import hashlib
import hmac
import ipaddress
import json
import socket
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.crypto import salted_hmac

from .models import TryOnJob

TIMEOUT_SECONDS = 10


def _secret() -> bytes:
    if settings.CALLBACK_SECRET:
        return settings.CALLBACK_SECRET.encode()
    return salted_hmac("tryon.callbacks", "secret").hexdigest().encode()


def signature(body: bytes) -> str:
    """The ``X-Tryon-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(_secret(), body, hashlib.sha256).hexdigest()


def check_callback_url(url: str) -> None:
    """Refuse a callback address that is not http(s) or that leads into a private network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"callback_url": ["must be an http or https address"]})
    if settings.CALLBACK_ALLOW_PRIVATE:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError:
        raise ValidationError({"callback_url": [f"{parts.hostname} cannot be resolved"]}) from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            raise ValidationError({"callback_url": ["may not point at a private network"]})


def payload(job: TryOnJob) -> bytes:
    """The JSON body describing how ``job`` ended."""
    results = [
        {"id": r.pk, "index": r.index, "seed": r.seed, "review_status": r.review_status}
        for r in job.results.all()
    ]
    body = {
        "id": str(job.pk),
        "kind": job.kind,
        "status": job.status,
        "error_type": job.error_type,
        "error_message": job.error_message,
        "results": results,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    return json.dumps(body, sort_keys=True).encode()


def deliver(job: TryOnJob) -> int:
    """POST the job's end to its callback URL; raises ``OSError`` when it is not accepted."""
    check_callback_url(job.callback_url)  # the address may resolve elsewhere by now
    body = payload(job)
    # http(s) only: check_callback_url refused every other scheme.
    request = urllib.request.Request(  # noqa: S310
        job.callback_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Tryon-Signature": signature(body)},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        return response.status
