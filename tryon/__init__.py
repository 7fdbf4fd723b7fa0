"""The Django project package and the try-on app (jobs, results, worker, health)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
