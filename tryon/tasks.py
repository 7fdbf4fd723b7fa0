"""Celery tasks of the try-on app: thin wrappers around services."""

import os

from celery import shared_task

from . import services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def tryon_job_run_task(self, job_id: str) -> None:
    """Run one try-on job. The job row decides everything; the message only carries its id."""
    hostname = self.request.hostname or services.worker_name()
    services.tryon_job_run(job_id=job_id, worker=f"{hostname}:{os.getpid()}")


@shared_task(ignore_result=True)
def jobs_sweep_task() -> None:
    """Queue again the jobs of workers that died (also run by every worker on a timer)."""
    services.jobs_sweep()
