"""The Celery application. Workers start it with ``celery -A tryon worker``."""

import os

from celery import Celery, bootsteps, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tryon.settings")


def _use_polling_sql_transport() -> None:
    from django.conf import settings

    from tryon.broker import use_polling_sql_transport

    use_polling_sql_transport(settings.SQL_BROKER_POLLING_INTERVAL)


app = Celery("tryon")
app.config_from_object("django.conf:settings", namespace="CELERY")
_use_polling_sql_transport()
app.autodiscover_tasks()


REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")
# What kombu's Redis transport uses when no visibility_timeout is given.
KOMBU_REDIS_VISIBILITY_TIMEOUT = 3600


def broker_visibility_problem(broker_url: str, transport_options: dict, job_deadline: float) -> str:
    """Why this broker could hand a job that is still running to a second worker; "" if not.

    Redis gives an unacknowledged message (tasks acknowledge when they end) to another worker
    once its visibility timeout has passed, whether or not the first is still at it.
    """
    if broker_url.partition("://")[0] not in REDIS_SCHEMES:
        return ""
    timeout = (transport_options or {}).get("visibility_timeout", KOMBU_REDIS_VISIBILITY_TIMEOUT)
    if timeout > job_deadline:
        return ""
    return (
        f"the Redis broker's visibility timeout ({timeout:g} s) must be longer than JOB_DEADLINE "
        f"({job_deadline:g} s), or a job still running is handed to a second worker: raise "
        "CELERY_VISIBILITY_TIMEOUT (by default JOB_DEADLINE + 900)"
    )


@signals.celeryd_init.connect
def _refuse_to_start_where_unsafe(**kwargs):
    """A worker does not start where torch would unpickle model files fully, nor where Redis
    could hand a running job to a second worker.

    Celery logs and swallows a signal handler's exceptions, so this one exits the process.
    """
    from django.conf import settings

    from pipelines.errors import PipelineError
    from pipelines.loading import check_safe_loading_environment

    try:
        check_safe_loading_environment()
        problem = broker_visibility_problem(
            app.conf.broker_url, app.conf.broker_transport_options, settings.JOB_DEADLINE
        )
    except PipelineError as error:
        problem = str(error)
    if problem:
        raise SystemExit(f"error: the worker does not start: {problem}")


class HeartbeatStep(bootsteps.StartStopStep):
    """Records that this worker is alive, so /healthz can tell whether jobs will be picked up.

    Kombu's SQLAlchemy transport (the embedded default) has no broadcast channel, so
    ``celery inspect ping`` cannot answer there; a row in the database works with every broker.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, parent):
        from django.conf import settings

        from tryon.runner import worker_heartbeat

        hostname = parent.hostname
        worker_heartbeat(hostname=hostname)
        self.timer_ref = parent.timer.call_repeatedly(
            settings.WORKER_HEARTBEAT_SECONDS, worker_heartbeat, kwargs={"hostname": hostname}
        )

    def stop(self, parent):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None


class JobSweepStep(bootsteps.StartStopStep):
    """Puts back in the queue the jobs a dead worker left ``running``, at start and on a timer
    (which also deletes shoppers' photos past their retention).

    At start, jobs claimed by an earlier process of this same worker name are orphans at once
    (a restarted worker); later, any job whose heartbeat went stale is. A timer inside every
    worker needs no separate beat process, and the sweep is safe to run from several workers:
    each re-queue is a conditional update.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, parent):
        from django.conf import settings

        from tryon.housekeeping import jobs_sweep

        _safely(jobs_sweep, restarted_worker=parent.hostname)
        self.timer_ref = parent.timer.call_repeatedly(settings.JOB_SWEEP_SECONDS, _housekeeping)

    def stop(self, parent):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None


def _housekeeping() -> None:
    from tryon.housekeeping import jobs_sweep, purge_expired
    from tryon.login_lockout import forget_expired_failures

    _safely(jobs_sweep)
    _safely(purge_expired)
    _safely(forget_expired_failures)


def _safely(work, **kwargs):
    """Run a housekeeping ``work``; a failure is logged and tried again next time."""
    import logging

    try:
        work(**kwargs)
    except Exception:
        logging.getLogger(__name__).exception("%s failed", work.__name__)


app.steps["consumer"].add(HeartbeatStep)
app.steps["consumer"].add(JobSweepStep)
