"""Writes of the catalog. Views, admin and (later) the API all go through these functions."""

import io
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from pipelines.errors import PipelineError

from .models import Garment

logger = logging.getLogger(__name__)

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


def _enqueue_analysis(garment: Garment) -> None:
    from .tasks import garment_analyze

    pk = garment.pk
    transaction.on_commit(lambda: garment_analyze.delay(pk))


def garment_ingest(*, garment: Garment) -> Garment:
    """Store a new garment (merchant set, picture already cleaned) and queue its analysis."""
    garment.analysis_status = Garment.AnalysisStatus.PENDING
    garment.analysis_message = ""
    garment.full_clean()
    with transaction.atomic():
        garment.save()
        _enqueue_analysis(garment)
    return garment


def garment_update(*, garment: Garment, changed_fields) -> Garment:
    """Save the edits made to ``garment``; a replaced product image resets its analysis."""
    previous = Garment.objects.get(pk=garment.pk)
    # The analysis depends on the picture and on the category (which landmarks to look for).
    reanalyse = bool({"image", "category"} & set(changed_fields))
    if reanalyse:
        _reset_analysis(garment)
    garment.full_clean()
    with transaction.atomic():
        garment.save()
        if reanalyse:
            _enqueue_analysis(garment)
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


def _reset_analysis(garment: Garment) -> None:
    for field in ANALYSIS_FILE_FIELDS:
        setattr(garment, field, None)
    garment.landmarks = {}
    garment.analysis_status = Garment.AnalysisStatus.PENDING
    garment.analysis_message = ""


def garment_reanalyse(*, garment: Garment) -> None:
    """Throw away the garment's analysis and queue a new one (admin's "re-analyse")."""
    old_files = [
        getattr(garment, field) for field in ANALYSIS_FILE_FIELDS if getattr(garment, field)
    ]
    _reset_analysis(garment)
    with transaction.atomic():
        garment.save()
        _delete_files_on_commit(old_files)
        _enqueue_analysis(garment)


def _png(image: Image.Image, name: str) -> ContentFile:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name=f"{name}.png")


def _sam_predictor():
    """The SAM predictor when a checkpoint is installed, loaded once per worker process."""
    from pipelines.cache import cached_model
    from pipelines.garment import find_sam_checkpoint, load_sam_predictor

    checkpoint = find_sam_checkpoint(settings.MODELS_DIR)
    if checkpoint is None:
        return None
    try:
        return cached_model(checkpoint, load_sam_predictor, kind="sam")
    except PipelineError:
        # A broken or refused checkpoint must not stop every garment from being cut out: the
        # classical cut-out still works. Staff see the reason in the worker's log.
        logger.exception("SAM checkpoint %s refused; using the classical cut-out", checkpoint)
        return None


def garment_analyze(*, garment_id: int) -> Garment | None:
    """Run the garment analysis (worker side) and store the cut-out, mask, Canny map, landmarks.

    A picture the analysis cannot use is recorded on the garment as a readable message; an
    unexpected failure is logged with its traceback and recorded as a generic message. If the
    picture was replaced while the analysis ran, the stale result is dropped.
    """
    from pipelines.garment import analyze_garment

    garment = Garment.objects.filter(pk=garment_id).first()
    if garment is None:
        return None  # deleted meanwhile: nothing to do
    image_name = garment.image.name
    Garment.objects.filter(pk=garment_id).update(analysis_status=Garment.AnalysisStatus.RUNNING)
    try:
        with garment.image.open("rb") as stored, Image.open(stored) as picture:
            analysis = analyze_garment(
                picture.convert("RGB"), garment.category, sam_predictor=_sam_predictor()
            )
    except PipelineError as error:
        return _record_failure(garment_id, image_name, str(error))
    except Exception:
        logger.exception("garment %s: analysis failed", garment_id)
        return _record_failure(
            garment_id, image_name, "The analysis failed unexpectedly; try “re-analyse” later."
        )
    return _record_analysis(garment_id, image_name, analysis)


def _record_failure(garment_id: int, image_name: str, message: str) -> Garment | None:
    Garment.objects.filter(pk=garment_id, image=image_name).update(
        analysis_status=Garment.AnalysisStatus.FAILED, analysis_message=message
    )
    return Garment.objects.filter(pk=garment_id).first()


def _record_analysis(garment_id: int, image_name: str, analysis) -> Garment | None:
    with transaction.atomic():
        garment = Garment.objects.select_for_update().filter(pk=garment_id).first()
        if garment is None or garment.image.name != image_name:
            return garment  # deleted or given a new picture while we worked
        old_files = [getattr(garment, f) for f in ANALYSIS_FILE_FIELDS if getattr(garment, f)]
        garment.cutout = _png(analysis.cutout, "cutout")
        garment.mask = _png(analysis.mask, "mask")
        garment.canny = _png(analysis.canny, "canny")
        garment.landmarks = {
            name: [round(x, 1), round(y, 1)] for name, (x, y) in analysis.landmarks.items()
        }
        garment.analysis_status = Garment.AnalysisStatus.DONE
        garment.analysis_message = ""
        garment.save()
        _delete_files_on_commit(old_files)
    return garment
