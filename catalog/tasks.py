"""Celery tasks of the catalog: thin wrappers around services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def garment_analyze(garment_id: int) -> None:
    """Analyse a garment's product image (cut-out, mask, Canny map, landmarks)."""
    services.garment_analyze(garment_id=garment_id)


@shared_task(acks_late=True, ignore_result=True)
def garment_mask_apply(garment_id: int, mask_name: str) -> None:
    """Recompute a garment's cut-out, Canny map and landmarks from the mask its merchant painted."""
    services.garment_mask_apply(garment_id=garment_id, mask_name=mask_name)
