"""Reads of the catalog."""

from django.db.models import Prefetch, Q, QuerySet

from tryon.models import TryOnJob, TryOnResult

from .models import Garment

MERCHANTS_GROUP = "merchants"


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


def merchant_garment_jobs(*, merchant, garment: Garment) -> QuerySet:
    """The try-on jobs ``merchant`` asked for on their ``garment``, newest first, with their
    results (two queries however many jobs there are)."""
    return (
        TryOnJob.objects.filter(garment=garment, owner=merchant)
        .prefetch_related(Prefetch("results", TryOnResult.objects.order_by("index")))
        .order_by("-created_at")
    )


def merchant_job_get(*, merchant, garment: Garment, pk) -> TryOnJob:
    """A job ``merchant`` asked for on ``garment``; any other raises ``TryOnJob.DoesNotExist``."""
    return TryOnJob.objects.get(pk=pk, garment=garment, owner=merchant)


def merchant_result_get(*, merchant, garment: Garment, pk: int) -> TryOnResult:
    """A result of a job ``merchant`` asked for on ``garment``; raises ``DoesNotExist`` else."""
    return TryOnResult.objects.select_related("job__garment").get(
        pk=pk, job__garment=garment, job__owner=merchant
    )


def is_merchant(user) -> bool:
    """Whether ``user`` may use the merchant area (members of the ``merchants`` group)."""
    return user.is_authenticated and user.groups.filter(name=MERCHANTS_GROUP).exists()
