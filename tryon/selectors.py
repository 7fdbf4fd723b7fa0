"""Reads of the try-on app."""

from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from catalog.models import Garment
from pipelines.engines import find_weights, resolve_engine
from pipelines.errors import PipelineError

from .models import TryOnJob, TryOnResult, WorkerHeartbeat

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
    # Optional: without it the engine still runs, so it never makes the check degraded.
    report["ip_adapter"] = weights.ip_adapter_missing or "installed"
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


# --- who may see a job's private files -----------------------------------------------------------

PHOTO_PERMISSION = "tryon.view_person_photo"
JOB_FILE_FIELDS = ("person_photo", "preview")


def owns_job(job: TryOnJob, *, user, session_key: str | None) -> bool:
    """Whether the request's user (or anonymous session) is the one who asked for ``job``."""
    if job.owner_id is not None:
        return bool(user and user.is_authenticated and user.pk == job.owner_id)
    return bool(session_key) and session_key == job.session_key


def file_access(job: TryOnJob, *, user, session_key: str | None, published: bool = False) -> str:
    """How a request may see a file of ``job``: "owner", "audited" (staff holding the photo
    permission: the view is recorded), "merchant" (model shots of their own garment), "public"
    (a published model shot) or "" (not at all).
    """
    if owns_job(job, user=user, session_key=session_key):
        return "owner"
    if published and job.kind == TryOnJob.Kind.MODEL_SHOT:
        return "public"
    if not (user and user.is_authenticated):
        return ""
    if job.kind == TryOnJob.Kind.MODEL_SHOT:
        if job.garment.merchant_id == user.pk or user.has_perm("tryon.view_tryonresult"):
            return "merchant"
        return ""
    # A shopper's photo and the try-ons made from it show a real person: staff need the
    # dedicated permission, and every look is recorded.
    return "audited" if user.is_staff and user.has_perm(PHOTO_PERMISSION) else ""


REVIEW_PERMISSION = "tryon.change_tryonresult"


def is_reviewer(user) -> bool:
    """Whether ``user`` reviews results at all: staff holding the result change permission."""
    staff = bool(user and user.is_authenticated and user.is_staff)
    return staff and user.has_perm(REVIEW_PERMISSION)


def can_review(user, job: TryOnJob) -> bool:
    """Whether ``user`` may approve or reject ``job``'s results, on any interface.

    Reviewers (``is_reviewer``) review model shots; a shopper's photo try-on or a client's
    inpaint shows a real person's picture, so it also needs the photo permission.
    """
    if not is_reviewer(user):
        return False
    return job.kind == TryOnJob.Kind.MODEL_SHOT or user.has_perm(PHOTO_PERMISSION)


def jobs_of(*, user, session_key: str | None):
    """The jobs a shopper or merchant asked for, newest first."""
    if user and user.is_authenticated:
        return TryOnJob.objects.filter(owner=user)
    if session_key:
        return TryOnJob.objects.filter(owner=None, session_key=session_key)
    return TryOnJob.objects.none()


def published_model_shots(*, garment) -> QuerySet:
    """The staff-approved model shots the merchant chose to show on ``garment``'s page."""
    return TryOnResult.objects.filter(
        job__garment=garment,
        job__kind=TryOnJob.Kind.MODEL_SHOT,
        review_status=TryOnResult.Review.APPROVED,
        published=True,
    ).order_by("-created_at")


def merchant_garment_jobs(*, merchant, garment: Garment) -> QuerySet:
    """The try-on jobs ``merchant`` asked for on their ``garment``, newest first, with their
    results (two queries however many jobs there are)."""
    return (
        TryOnJob.objects.filter(garment=garment, owner=merchant)
        .prefetch_related(Prefetch("results", TryOnResult.objects.order_by("index")))
        .order_by("-created_at")
    )


def merchant_job_get(*, merchant, garment: Garment, pk) -> TryOnJob:
    """A job ``merchant`` asked for on ``garment``; any other raises ``TryOnJob.DoesNotExist``."""
    return TryOnJob.objects.get(pk=pk, garment=garment, owner=merchant)


def merchant_result_get(*, merchant, garment: Garment, pk: int) -> TryOnResult:
    """A result of a job ``merchant`` asked for on ``garment``; raises ``DoesNotExist`` else."""
    return TryOnResult.objects.select_related("job__garment").get(
        pk=pk, job__garment=garment, job__owner=merchant
    )
