"""Try-on data. Jobs and results arrive with the jobs issue; for now, worker liveness."""

from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time a Celery worker said it was alive (one row per worker hostname)."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self):
        return f"{self.hostname} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"
