"""Celery tasks of the catalog: thin wrappers around services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def garment_analyze(garment_id: int) -> None:
    """Analyse a garment's product image (cut-out, mask, Canny map, landmarks)."""
    services.garment_analyze(garment_id=garment_id)
