"""Writes of the catalog. Views, admin and (later) the API all go through these functions."""

import io
import logging
import warnings

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from PIL import Image, UnidentifiedImageError

from common.forms import refusals_as_errors
from common.storage import delete_files_on_commit, png_file
from pipelines.errors import PipelineError
from pipelines.garment import check_mask_coverage

from .models import Garment
from .selectors import analysis_in_progress

logger = logging.getLogger(__name__)

# The analysis outputs describe one product image; a new image makes them stale.
ANALYSIS_FILE_FIELDS = ("cutout", "mask", "canny")
FILE_FIELDS = ("image", *ANALYSIS_FILE_FIELDS)


def _enqueue_analysis(garment: Garment) -> None:
    from .tasks import garment_analyze

    pk = garment.pk
    transaction.on_commit(lambda: garment_analyze.delay(pk))


def garment_ingest(*, garment: Garment, analyse_now: bool = False) -> Garment:
    """Store a new garment (merchant set, picture already cleaned) and queue its analysis.

    ``analyse_now`` runs the analysis in this process instead (scripts and benchmarks that run
    without an analysis worker) and returns the garment with its results.
    """
    garment.analysis_status = Garment.AnalysisStatus.PENDING
    garment.analysis_message = ""
    garment.full_clean()
    with transaction.atomic():
        garment.save()
        if not analyse_now:
            _enqueue_analysis(garment)
    if analyse_now:
        return garment_analyze(garment_id=garment.pk)
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
        delete_files_on_commit(f for f in old_files if f and f.name not in current_names)
    return garment


def garment_delete(*, garment: Garment) -> None:
    """Delete the garment's row and every file it owns."""
    files = garment.stored_files()
    with transaction.atomic():
        garment.delete()
        delete_files_on_commit(files)


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
        delete_files_on_commit(old_files)
        _enqueue_analysis(garment)


def _sam_predictor():
    """The SAM predictor when a checkpoint is installed, loaded once per worker process."""
    from pipelines.cache import cached_model
    from pipelines.garment import find_sam_checkpoint, load_sam_predictor

    checkpoint = find_sam_checkpoint(settings.MODELS_DIR)
    if checkpoint is None:
        return None
    try:
        return cached_model(
            checkpoint,
            lambda path: load_sam_predictor(
                path, models_dir=settings.MODELS_DIR, manifest=settings.MODELS_MANIFEST
            ),
            kind="sam",
        )
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


def _record_analysis(
    garment_id: int, image_name: str, analysis, *, painted_mask: str | None = None
) -> Garment | None:
    """Store ``analysis`` on the garment, replacing the old files, unless the garment changed
    while the worker ran: deleted, given a new picture or, for a ``painted_mask``, painted again.
    A painted mask is the merchant's own: it stays, and only what is made from it is replaced.
    """
    made_from_mask = painted_mask is not None
    replaced = ("cutout", "canny") if made_from_mask else ANALYSIS_FILE_FIELDS
    with transaction.atomic():
        garment = Garment.objects.select_for_update().filter(pk=garment_id).first()
        if garment is None or garment.image.name != image_name:
            return garment  # deleted or given a new picture while we worked
        if made_from_mask and garment.mask.name != painted_mask:
            return garment
        old_files = [getattr(garment, f) for f in replaced if getattr(garment, f)]
        for field in replaced:
            setattr(garment, field, png_file(getattr(analysis, field), field))
        garment.landmarks = _stored_landmarks(analysis)
        garment.analysis_status = Garment.AnalysisStatus.DONE
        garment.analysis_message = ""
        garment.save()
        delete_files_on_commit(old_files)
    return garment


def _stored_landmarks(analysis) -> dict[str, list[float]]:
    return {name: [round(x, 1), round(y, 1)] for name, (x, y) in analysis.landmarks.items()}


# --- the merchant's painted mask -----------------------------------------------------------------


def _enqueue_mask_apply(garment: Garment) -> None:
    from .tasks import garment_mask_apply

    pk, mask_name = garment.pk, garment.mask.name
    transaction.on_commit(lambda: garment_mask_apply.delay(pk, mask_name))


def _decode_mask(mask_png: bytes, size: tuple[int, int]) -> np.ndarray:
    """The painted mask as a bool array (True = garment); ``ValidationError`` on ``mask``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(mask_png), formats=["PNG"]) as painted:
                # The size is read from the header: a wrong one is refused before decoding.
                if painted.size != size:
                    width, height = painted.size
                    raise ValidationError(
                        {
                            "mask": [
                                f"The mask is {width}×{height} pixels; it must be exactly the "
                                f"product image's size, {size[0]}×{size[1]}."
                            ]
                        }
                    )
                painted.load()
                # White (and, in a picture with transparency, opaque) pixels are the garment.
                grey_alpha = np.asarray(painted.convert("LA"))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError({"mask": ["The mask is not a PNG picture."]}) from None
    except (OSError, SyntaxError, ValueError):
        raise ValidationError({"mask": ["The mask picture is damaged or incomplete."]}) from None
    return (grey_alpha[..., 0] >= 128) & (grey_alpha[..., 1] >= 128)


def garment_mask_update(*, garment: Garment, mask_png: bytes) -> Garment:
    """Replace the garment's mask by one the merchant painted, and queue the recomputation of
    its cut-out, Canny map and landmarks from it.

    ``mask_png`` is a PNG of exactly the product image's size; white pixels are the garment
    (transparent ones never are). It is stored binarised, as the analysis stores its own mask.
    Raises ``ValidationError`` on ``mask`` for a picture that is not such a PNG, or that is
    empty or covers everything; on ``garment`` while an automatic analysis is still to come (it
    would overwrite the painted mask).
    """
    if analysis_in_progress(garment):
        raise ValidationError(
            {"garment": ["The garment is still being analysed; paint its mask when that is done."]}
        )
    with garment.image.open("rb") as stored, Image.open(stored) as picture:
        size = picture.size
    mask = _decode_mask(mask_png, size)
    with refusals_as_errors("mask"):
        check_mask_coverage(mask)
    old_mask = garment.mask if garment.mask else None
    with transaction.atomic():
        garment.mask = png_file(Image.fromarray(mask.astype(np.uint8) * 255, "L"), "mask")
        # Until the task has run, the cut-out and maps describe the old mask: no new jobs.
        garment.analysis_status = Garment.AnalysisStatus.PENDING
        garment.analysis_message = ""
        garment.save(update_fields=["mask", "analysis_status", "analysis_message", "updated_at"])
        if old_mask is not None:
            delete_files_on_commit([old_mask])
        _enqueue_mask_apply(garment)
    return garment


def garment_mask_apply(*, garment_id: int, mask_name: str) -> Garment | None:
    """Recompute the cut-out, Canny map and landmarks from the garment's (painted) mask
    (worker side), replacing the old files. A mask replaced meanwhile is left to its own task.
    """
    from pipelines.garment import garment_from_mask

    garment = Garment.objects.filter(pk=garment_id, mask=mask_name).first()
    if garment is None:
        return None  # deleted, re-analysed or painted again meanwhile: that run owns the garment
    image_name = garment.image.name
    try:
        with garment.image.open("rb") as stored, Image.open(stored) as picture:
            rgb = picture.convert("RGB")
        with garment.mask.open("rb") as stored, Image.open(stored) as painted:
            mask = painted.convert("L")
        analysis = garment_from_mask(rgb, mask, garment.category)
    except Exception:
        logger.exception("garment %s: applying the painted mask failed", garment_id)
        return _record_failure(
            garment_id,
            image_name,
            "Your mask could not be applied; paint it again or try “re-analyse” later.",
        )
    return _record_analysis(garment_id, image_name, analysis, painted_mask=mask_name)
