"""Celery tasks of the try-on app: thin wrappers around services."""

import os

from celery import shared_task

from . import runner


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def tryon_job_run_task(self, job_id: str) -> None:
    """Run one try-on job. The job row decides everything; the message only carries its id."""
    hostname = self.request.hostname or runner.worker_name()
    runner.tryon_job_run(job_id=job_id, worker=f"{hostname}:{os.getpid()}")


@shared_task(
    autoretry_for=(OSError,),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=6,
    ignore_result=True,
)
def job_callback_task(job_id: str) -> None:
    """Tell a job's callback URL how it ended; retried with backoff while delivery fails."""
    from .callbacks import deliver
    from .models import TryOnJob

    job = TryOnJob.objects.filter(pk=job_id).first()
    if job is not None and job.callback_url:
        deliver(job)
