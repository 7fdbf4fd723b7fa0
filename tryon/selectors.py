"""Reads of the try-on app."""

from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from pipelines.engines import find_weights, resolve_engine
from pipelines.errors import PipelineError

from .models import WorkerHeartbeat

OK, DEGRADED = "ok", "degraded"


def _database_health() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure means "not usable": report it
        return {"status": DEGRADED, "error": str(error)}
    return {"status": OK, "vendor": connection.vendor}


def _broker_health() -> dict:
    from tryon.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=2)
            transport = conn.transport_cls
    except Exception as error:
        return {"status": DEGRADED, "error": str(error)}
    return {"status": OK, "transport": str(transport)}


def _worker_health() -> dict:
    try:
        latest = WorkerHeartbeat.objects.order_by("-last_seen").first()
    except DatabaseError as error:  # reachable but not migrated, for one
        return {"status": DEGRADED, "error": str(error)}
    if latest is None:
        return {"status": DEGRADED, "detail": "no worker has been seen yet"}
    age = (timezone.now() - latest.last_seen).total_seconds()
    fresh = age <= settings.WORKER_STALE_AFTER
    seen = WorkerHeartbeat.objects.filter(
        last_seen__gte=timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER)
    ).count()
    return {
        "status": OK if fresh else DEGRADED,
        "last_seen_seconds_ago": round(age, 1),
        "workers_alive": seen,
    }


def _engine_health() -> dict:
    weights = find_weights(settings.MODELS_DIR)
    report = {"requested": settings.TRYON_ENGINE, "weights": weights.counts()}
    try:
        report["engine"] = resolve_engine(settings.TRYON_ENGINE, weights)
    except PipelineError as error:
        return {**report, "status": DEGRADED, "engine": None, "error": str(error)}
    return {**report, "status": OK}


def system_health() -> dict:
    """Each dependency of the site with ``ok`` or ``degraded``, and an overall status."""
    database = _database_health()
    checks = {
        "database": database,
        "broker": _broker_health(),
        "worker": _worker_health()
        if database["status"] == OK
        else {"status": DEGRADED, "detail": "unknown: the database is not reachable"},
        "engine": _engine_health(),
    }
    overall = OK if all(check["status"] == OK for check in checks.values()) else DEGRADED
    return {"status": overall, "checks": checks}
