"""Writes of the try-on app (keyword-only arguments, one function per use case)."""

from django.utils import timezone

from .models import WorkerHeartbeat


def worker_heartbeat(*, hostname: str) -> None:
    """Record that the worker ``hostname`` is alive now."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"last_seen": timezone.now()}
    )
