"""Reads of the catalog."""

from django.db.models import Q, QuerySet

from .models import Garment


def garment_list(*, category: str | None = None, search: str | None = None) -> QuerySet:
    """Garments for the public catalog, newest first, optionally filtered."""
    garments = Garment.objects.all()
    if category:
        garments = garments.filter(category=category)
    if search:
        garments = garments.filter(
            Q(title__icontains=search)
            | Q(description__icontains=search)
            | Q(sku__iexact=search)
            | Q(colour__icontains=search)
            | Q(material__icontains=search)
        )
    return garments


def garment_get(*, pk: int) -> Garment:
    """One garment of the public catalog; raises ``Garment.DoesNotExist``."""
    return Garment.objects.select_related("merchant").get(pk=pk)


def merchant_garment_list(*, merchant) -> QuerySet:
    """The garments ``merchant`` owns, newest first."""
    return Garment.objects.filter(merchant=merchant)


def merchant_garment_get(*, merchant, pk: int) -> Garment:
    """A garment ``merchant`` owns; another merchant's garment raises ``Garment.DoesNotExist``."""
    return Garment.objects.get(merchant=merchant, pk=pk)


def analysis_in_progress(garment: Garment) -> bool:
    """Whether an automatic analysis of the garment is queued or running: it would replace a
    mask painted now. (A painted mask waiting for its cut-out is pending too, but keeps its mask.)
    """
    status = garment.analysis_status
    return status == Garment.AnalysisStatus.RUNNING or (
        status == Garment.AnalysisStatus.PENDING and not garment.mask
    )
