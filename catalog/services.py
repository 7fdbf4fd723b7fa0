"""Writes of the catalog. Views, admin and (later) the API all go through these functions."""

from django.db import transaction

from .models import Garment

# The analysis outputs describe one product image; a new image makes them stale.
ANALYSIS_FILE_FIELDS = ("cutout", "mask", "canny")
FILE_FIELDS = ("image", *ANALYSIS_FILE_FIELDS)


def _delete_files_on_commit(files) -> None:
    """Remove stored files once the transaction that stopped referencing them has committed.

    Deleting before the commit could leave a row pointing at a missing file if the transaction
    rolled back; deleting after means a crash can at worst leave an orphan file, never a broken row.
    """
    for stored in files:
        storage, name = stored.storage, stored.name
        transaction.on_commit(lambda storage=storage, name=name: storage.delete(name))


def garment_ingest(*, garment: Garment) -> Garment:
    """Store a new garment (its merchant set, its picture already cleaned) and queue its analysis.

    The analysis itself arrives with the pipelines issue; until then the garment waits as
    ``pending``.
    """
    garment.analysis_status = Garment.AnalysisStatus.PENDING
    garment.analysis_message = ""
    garment.full_clean()
    with transaction.atomic():
        garment.save()
    return garment


def garment_update(*, garment: Garment, changed_fields) -> Garment:
    """Save the edits made to ``garment``; a replaced product image resets its analysis."""
    previous = Garment.objects.get(pk=garment.pk)
    if "image" in changed_fields:
        for field in ANALYSIS_FILE_FIELDS:
            setattr(garment, field, None)
        garment.analysis_status = Garment.AnalysisStatus.PENDING
        garment.analysis_message = ""
    garment.full_clean()
    with transaction.atomic():
        garment.save()
        old_files = (getattr(previous, field) for field in FILE_FIELDS)
        current_names = {getattr(garment, field).name for field in FILE_FIELDS}
        _delete_files_on_commit(f for f in old_files if f and f.name not in current_names)
    return garment


def garment_delete(*, garment: Garment) -> None:
    """Delete the garment's row and every file it owns."""
    files = garment.stored_files()
    with transaction.atomic():
        garment.delete()
        _delete_files_on_commit(files)
