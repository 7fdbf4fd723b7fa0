"""Cancelling and deleting jobs, erasing a shopper's data, and recording who saw a photo."""

import logging

from django.db import transaction
from django.utils import timezone

from common.storage import delete_files_on_commit

from .models import PhotoAccess, TryOnJob
from .runner import notify
from .selectors import jobs_of

logger = logging.getLogger(__name__)

Status = TryOnJob.Status


def tryon_job_cancel(*, job: TryOnJob) -> TryOnJob:
    """Stop a job: a queued one at once, a running one at its next sampling step."""
    now = timezone.now()
    if TryOnJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, finished_at=now, step="cancelled"
    ):
        notify(job)
    TryOnJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def tryon_job_delete(*, job: TryOnJob) -> None:
    """Delete the job, its results and every file they own (a running job is stopped first)."""
    with transaction.atomic():
        files = job.stored_files()
        for result in job.results.all():
            files += result.stored_files()
        TryOnJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(cancel_requested=True)
        job.delete()
        delete_files_on_commit(files)


# The jobs that hold a person's picture: "delete my data" removes them all. A merchant's
# catalog and model shots are their business records, not personal data, and stay.
PERSONAL_KINDS = (TryOnJob.Kind.PHOTO, TryOnJob.Kind.INPAINT)


def shopper_data_delete(*, user, session_key: str | None) -> int:
    """ "Delete my data": every photo try-on and inpaint of ``user`` (signed in) or of the
    anonymous ``session_key``, with their photos, results, previews and files, at once.

    Returns how many jobs were deleted; running ones are stopped (see ``tryon_job_delete``).
    """
    jobs = jobs_of(user=user, session_key=session_key).filter(kind__in=PERSONAL_KINDS)
    count = 0
    with transaction.atomic():
        for job in jobs.prefetch_related("results"):
            tryon_job_delete(job=job)
            count += 1
    if count:
        logger.info("deleted %s photo job(s) at their owner's request", count)
    return count


def record_photo_access(*, user, job: TryOnJob, what: str) -> None:
    """Note that a staff member looked at a shopper's private picture (the audit trail)."""
    PhotoAccess.objects.create(user=user, job=job, job_ref=str(job.pk), what=what)
