"""The Celery application. Workers start it with ``celery -A tryon worker``."""

import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tryon.settings")

app = Celery("tryon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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

        from tryon.services import worker_heartbeat

        hostname = parent.hostname
        worker_heartbeat(hostname=hostname)
        self.timer_ref = parent.timer.call_repeatedly(
            settings.WORKER_HEARTBEAT_SECONDS, worker_heartbeat, kwargs={"hostname": hostname}
        )

    def stop(self, parent):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None


app.steps["consumer"].add(HeartbeatStep)
