"""Housekeeping: retention (expired jobs and their files go) and the sweeper (a job whose worker
died goes back in the queue)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .deletion import PERSONAL_KINDS, tryon_job_delete
from .models import TryOnJob
from .runner import enqueue, finish, mine

logger = logging.getLogger(__name__)

Status = TryOnJob.Status


# --- retention ----------------------------------------------------------------------------------


def purge_expired() -> int:
    """Delete shoppers' photo jobs (photo, results, files) whose photo was uploaded more than
    PERSON_PHOTO_RETENTION_HOURS ago.

    The age is the photo's, not the job's: a re-run or a reused photo is a new job with the
    same photo, and goes with the first upload. Returns how many jobs were deleted. Inpaints go
    too, since a client's picture may show a person; model shots carry no one's photo and are
    kept.
    """
    cutoff = timezone.now() - timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS)
    uploaded_before = Q(photo_uploaded_at__lt=cutoff) | Q(
        photo_uploaded_at__isnull=True, created_at__lt=cutoff
    )
    expired = TryOnJob.objects.filter(uploaded_before, kind__in=PERSONAL_KINDS)
    count = 0
    for job in expired.iterator():
        tryon_job_delete(job=job)
        count += 1
    if count:
        logger.info("deleted %s photo job(s) past their retention", count)
    return count


# --- the sweeper ---------------------------------------------------------------------------------


def jobs_sweep(*, restarted_worker: str = "") -> int:
    """Queue again the running jobs whose worker died; fail those out of attempts.

    A job is orphaned when its heartbeat is older than JOB_STALE_AFTER, or, at a worker's
    start, when it was claimed by a process of that same worker name (which cannot be running
    it any more). Returns how many jobs were put back in the queue.
    """
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER)
    orphaned = Q(heartbeat__lt=stale) | Q(heartbeat__isnull=True)
    if restarted_worker:
        orphaned |= Q(worker__startswith=f"{restarted_worker}:")
    requeued = 0
    for job in TryOnJob.objects.filter(Q(status=Status.RUNNING) & orphaned):
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            finish(
                job,
                Status.FAILED,
                error=RuntimeError("worker lost"),
                message=f"The worker running this job stopped {job.attempts} times; gave up.",
            )
            continue
        with transaction.atomic():
            if mine(job).update(status=Status.QUEUED, worker="", step="queued again"):
                enqueue(job)
                requeued += 1
    if requeued:
        logger.warning("re-queued %s job(s) left by a stopped worker", requeued)
    return requeued
