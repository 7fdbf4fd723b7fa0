"""Writes of the try-on app (keyword-only arguments, one function per use case).

A job's life: ``tryon_job_create`` validates and stores it and queues its id once the
transaction commits; a worker's ``tryon_job_run`` claims it with a conditional UPDATE (so two
workers never run the same job), runs ``pipelines.tryon`` with a heartbeat, and stores the
results keyed by (job, index), so a retried job overwrites instead of duplicating.
``jobs_sweep`` puts back in the queue a job whose worker died (its heartbeat went stale).
"""

import io
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from PIL import Image

from catalog.models import Garment
from catalog.selectors import is_merchant
from pipelines.engines import ENGINES
from pipelines.errors import GenerationCancelled, InvalidInputError, PipelineError
from pipelines.params import MAX_SEED, params_from_dict

from .models import PhotoAccess, TryOnJob, TryOnResult, WorkerHeartbeat
from .selectors import can_review, jobs_of
from .storage import delete_files_on_commit, png_file
from .uploads import ANY_PICTURE_MAX_ASPECT, clean_image, clean_image_upload

logger = logging.getLogger(__name__)

Status = TryOnJob.Status
# What a client gave a job, besides its fields: copied when the job is re-run.
INPUT_FILE_FIELDS = ("person_photo", "mask", "openpose_input", "canny_input")
# The kinds made by tryon_job_create; an inpaint has its own service and no garment.
GARMENT_KINDS = (TryOnJob.Kind.PHOTO, TryOnJob.Kind.MODEL_SHOT)


def worker_heartbeat(*, hostname: str) -> None:
    """Record that the worker ``hostname`` is alive now."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"last_seen": timezone.now()}
    )


def _invalid(error: InvalidInputError) -> ValidationError:
    """A pipeline's refusal as a form/API error on the field it names."""
    return ValidationError({error.argument: [error.message]})


class TooManyActiveJobs(Exception):
    """The owner already has as many queued or running jobs as allowed (the API's 409)."""


def _claim_a_slot(job: TryOnJob) -> None:
    """Refuse ``job`` when its owner is at the active-job cap, atomically.

    Called inside the transaction that inserts the job: SQLite's IMMEDIATE transactions
    serialize writers, and on PostgreSQL an advisory lock per owner does, so two requests at
    once cannot both take the last slot.
    """
    owner_key = f"user:{job.owner_id}" if job.owner_id else f"session:{job.session_key}"
    # Always in this order (owner, then address), so two requests never wait on each other.
    _lock_on_postgresql(owner_key)
    mine = (
        TryOnJob.objects.filter(owner_id=job.owner_id)
        if job.owner_id
        else TryOnJob.objects.filter(owner=None, session_key=job.session_key)
    )
    limit = (
        settings.MAX_ACTIVE_JOBS
        if job.kind == TryOnJob.Kind.PHOTO
        else settings.MAX_ACTIVE_MODEL_SHOTS
    )
    kind = job.get_kind_display().lower()
    if mine.filter(kind=job.kind, status__in=TryOnJob.ACTIVE).count() >= limit:
        raise TooManyActiveJobs(
            f"you already have {limit} {kind}s waiting or running; "
            "wait for one to finish or cancel one"
        )
    if job.owner_id is None and job.client_key:
        # A fresh cookie per request is a fresh session: the address caps them all.
        _lock_on_postgresql(f"address:{job.client_key}")
        from_address = TryOnJob.objects.filter(
            owner=None, client_key=job.client_key, status__in=TryOnJob.ACTIVE
        )
        if from_address.count() >= settings.MAX_ACTIVE_JOBS_PER_ADDRESS:
            raise TooManyActiveJobs(
                f"{settings.MAX_ACTIVE_JOBS_PER_ADDRESS} {kind}s from your network are already "
                "waiting or running; wait for one to finish"
            )


def _lock_on_postgresql(key: str) -> None:
    """Serialize the transactions that check ``key``'s cap (SQLite's IMMEDIATE transactions
    already serialize every writer)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [key])


def client_key(address: str | None) -> str:
    """An anonymous client's address as stored on its jobs: keyed-hashed, "" when unknown."""
    if not address:
        return ""
    return salted_hmac("tryon.client_key", address, algorithm="sha256").hexdigest()


def _enqueue(job: TryOnJob) -> None:
    from .tasks import tryon_job_run_task

    job_id = str(job.pk)
    transaction.on_commit(lambda: tryon_job_run_task.delay(job_id))


# --- creating jobs -------------------------------------------------------------------------------


def _check_garments(garment: Garment, extra: list[Garment]) -> None:
    from pipelines.tryon import check_outfit

    for item in (garment, *extra):
        if item.analysis_status != Garment.AnalysisStatus.DONE:
            raise ValidationError({"garment": [f"“{item.title}” is not analysed yet; try later"]})
    try:
        check_outfit([item.category for item in (garment, *extra)])
    except InvalidInputError as error:
        raise _invalid(error) from None


def _check_model_shot(*, pose: str, scene: str, scene_text: str, model_attributes: dict) -> None:
    from pipelines.poses import get_preset
    from pipelines.prompts import build_prompt
    from pipelines.scenes import resolve_scene

    try:
        get_preset(pose)
        resolve_scene(scene, scene_text)
        build_prompt(category="upper", model=model_attributes)
    except InvalidInputError as error:
        raise _invalid(error) from None


def _check_params(params: dict | None, category: str | None):
    """Validated parameters; ``category`` None: an inpaint's, whose prompt is all free text."""
    from pipelines.prompts import build_free_prompt, build_prompt

    try:
        checked = params_from_dict(params or {})
        # Free text is capped and its weights clamped by the builder: refuse what it refuses.
        if category is None:
            build_free_prompt(checked.prompt, checked.negative_prompt)
        else:
            build_prompt(
                category=category, user_text=checked.prompt, user_negative=checked.negative_prompt
            )
    except InvalidInputError as error:
        raise _invalid(error) from None
    return checked


def _check_pose(picture: Image.Image, category: str) -> None:
    # The body's keypoints decide; hands, face and silhouette wait for the worker.
    from pipelines.person import check_pose_usable, detect_body

    try:
        check_pose_usable(detect_body(picture.convert("RGB")), category)
    except InvalidInputError as error:
        raise ValidationError({"person_photo": [error.message]}) from None


def _clean_photo(upload, category: str, *, check_pose: bool) -> ContentFile:
    """The shopper's photo re-encoded (see ``tryon.uploads``), refused without a usable pose."""
    try:
        picture, cleaned = clean_image(upload)
    except ValidationError as error:
        raise ValidationError({"person_photo": error.messages}) from None
    if check_pose:
        _check_pose(picture, category)
    return cleaned


def _reused_photo(job: TryOnJob, category: str, *, check_pose: bool) -> ContentFile:
    """A copy of an earlier job's (already cleaned) photo, checked for this garment's pose."""
    with job.person_photo.open("rb") as stored:
        photo = ContentFile(stored.read(), name=Path(job.person_photo.name).name)
    if check_pose:
        with Image.open(io.BytesIO(photo.read())) as picture:
            _check_pose(picture, category)
        photo.seek(0)
    return photo


def tryon_job_create(
    *,
    kind: str,
    garment: Garment,
    owner=None,
    session_key: str = "",
    extra_garments: Iterable[Garment] = (),
    person_photo=None,
    consent: bool = False,
    pose: str = "",
    scene: str = "",
    scene_text: str = "",
    model_attributes: dict | None = None,
    params: dict | None = None,
    engine: str | None = None,
    batch: uuid.UUID | None = None,
    check_pose: bool = True,
    photo_from: TryOnJob | None = None,
    callback_url: str = "",
    client_address: str | None = None,
) -> TryOnJob:
    """Validate a try-on request, store it and queue it (after the transaction commits).

    ``owner`` is a signed-in user; an anonymous shopper is identified by ``session_key``, and
    ``client_address`` caps an address's active jobs whatever its sessions
    (MAX_ACTIVE_JOBS_PER_ADDRESS).
    A photo try-on needs ``person_photo`` (an upload, cleaned like every picture, and checked
    for a usable pose unless ``check_pose`` is false) and ``consent``. Raises
    ``ValidationError`` keyed by the offending field; nothing is stored then.
    """
    extra = list(extra_garments)
    if kind not in GARMENT_KINDS:
        raise ValidationError({"kind": [f"must be one of {', '.join(GARMENT_KINDS)}"]})
    if owner is None and not session_key:
        raise ValidationError({"owner": ["a job needs an owner: a user or a session"]})
    engine = engine or settings.TRYON_ENGINE
    if engine not in ENGINES:
        raise ValidationError({"engine": [f"must be one of {', '.join(ENGINES)}"]})
    _check_garments(garment, extra)
    checked = _check_params(params, garment.category)
    if callback_url:
        from .callbacks import check_callback_url

        check_callback_url(callback_url)
    model_attributes = model_attributes or {}
    photo = photo_uploaded_at = None
    if kind == TryOnJob.Kind.PHOTO:
        if not consent:
            raise ValidationError(
                {"consent": ["please agree to the processing of your photo to try it on"]}
            )
        if photo_from is not None and photo_from.person_photo:
            photo = _reused_photo(photo_from, garment.category, check_pose=check_pose)
            photo_uploaded_at = _photo_uploaded_at(photo_from)
        elif person_photo is None:
            raise ValidationError({"person_photo": ["a photo of the person is required"]})
        else:
            photo = _clean_photo(person_photo, garment.category, check_pose=check_pose)
            photo_uploaded_at = timezone.now()
    else:
        pose = pose or "front_standing"
        _check_model_shot(
            pose=pose, scene=scene, scene_text=scene_text, model_attributes=model_attributes
        )
    job = TryOnJob(
        kind=kind,
        garment=garment,
        owner=owner if owner is not None and owner.is_authenticated else None,
        session_key=session_key if owner is None or not owner.is_authenticated else "",
        pose=pose,
        scene=scene,
        scene_text=scene_text,
        model_attributes=model_attributes,
        params=checked.to_dict(),
        engine=engine,
        batch=batch,
        consent_at=timezone.now() if consent else None,
        photo_uploaded_at=photo_uploaded_at,
        callback_url=callback_url,
    )
    if job.owner is None:
        job.client_key = client_key(client_address)
    if job.owner is None and not job.session_key:
        raise ValidationError({"owner": ["a job needs an owner: a user or a session"]})
    return _save_new_job(job, {"person_photo": photo}, extra)


def _photo_uploaded_at(job: TryOnJob):
    """When ``job``'s photo was first uploaded (a job made before that was recorded: its own
    creation), for a copy of the photo to expire with the original."""
    return job.photo_uploaded_at or job.created_at


def _save_new_job(job: TryOnJob, files: dict, extra_garments=()) -> TryOnJob:
    """Insert ``job`` with its input ``files`` (field name -> ContentFile or None) and queue it,
    if its owner has a free slot; on any failure no file is left behind."""
    with transaction.atomic():
        _claim_a_slot(job)
        try:
            for name, content in files.items():
                if content is not None:
                    getattr(job, name).save(content.name, content, save=False)
            job.save()
            job.extra_garments.set(extra_garments)
        except Exception:
            for stored in job.stored_files():
                stored.storage.delete(stored.name)
            raise
        _enqueue(job)
    return job


def inpaint_job_create(
    *,
    owner,
    image,
    mask=None,
    invert_mask: bool = False,
    controls: dict | None = None,
    params: dict | None = None,
    engine: str | None = None,
) -> TryOnJob:
    """Store and queue an inpaint of ``owner``'s own picture (the WebUI's img2img).

    ``image`` and ``mask`` are uploads, cleaned like every picture; the mask must have the
    picture's size once both are upright. ``controls`` maps a slot ("openpose", "canny") to
    ``{"module", "image" (an upload or None), "thresholds"}``; a slot left out gets no guidance
    (its unit's weight is set to 0, so the picture's parameters say so). Raises
    ``ValidationError`` keyed by the offending field; nothing is stored then.
    """
    from pipelines.inpaint import CANNY_THRESHOLDS, check_control

    if owner is None or not owner.is_authenticated:
        raise ValidationError({"owner": ["an inpaint needs a signed-in owner"]})
    engine = engine or settings.TRYON_ENGINE
    if engine not in ENGINES:
        raise ValidationError({"engine": [f"must be one of {', '.join(ENGINES)}"]})
    controls = controls or {}
    checked = _check_params(_unguided(params or {}, controls), category=None)
    files = {"person_photo": _clean_picture(image, "init_images")}
    size = _picture_size(files["person_photo"])
    if mask is not None:
        files["mask"] = _clean_mask(mask, size, invert=invert_mask)
    stored_controls = {}
    for slot, control in controls.items():
        picture = control.get("image")
        thresholds = tuple(control.get("thresholds") or CANNY_THRESHOLDS)
        try:
            check_control(
                slot, control["module"], has_image=picture is not None, thresholds=thresholds
            )
        except InvalidInputError as error:
            raise ValidationError(
                {f"controlnet.{slot}.{error.argument}": [error.message]}
            ) from None
        if picture is not None:
            files[f"{slot}_input"] = _clean_picture(picture, f"controlnet.{slot}.image")
        stored_controls[slot] = {"module": control["module"], "thresholds": list(thresholds)}
    job = TryOnJob(
        kind=TryOnJob.Kind.INPAINT,
        owner=owner,
        params=checked.to_dict(),
        engine=engine,
        controls=stored_controls,
        photo_uploaded_at=timezone.now(),
    )
    return _save_new_job(job, files)


def _unguided(params: dict, controls: dict) -> dict:
    """``params`` with the unit of every slot that has no input at weight 0."""
    from pipelines.params import CONTROL_NAMES

    units = list(params.get("controlnet") or [{}, {}])
    units += [{}] * (len(CONTROL_NAMES) - len(units))
    for index, slot in enumerate(CONTROL_NAMES):
        if slot not in controls and isinstance(units[index], dict):
            units[index] = {**units[index], "weight": 0.0}
    return {**params, "controlnet": units}


def _clean_picture(upload, field: str) -> ContentFile:
    """An inpaint's picture, mask or control map: the client's own, as thin as the pictures
    this site makes (not only a person photo's shape)."""
    try:
        return clean_image_upload(upload, max_aspect=ANY_PICTURE_MAX_ASPECT)
    except ValidationError as error:
        raise ValidationError({field: error.messages}) from None


def _picture_size(content: ContentFile) -> tuple[int, int]:
    content.seek(0)
    with Image.open(content) as picture:
        size = picture.size
    content.seek(0)
    return size


def _clean_mask(upload, size: tuple[int, int], *, invert: bool) -> ContentFile:
    """The mask as a greyscale PNG (white = repaint), inverted on request, checked against the
    picture's ``size``."""
    from pipelines.inpaint import inpaint_mask

    content = _clean_picture(upload, "mask")
    with Image.open(content) as picture:
        try:
            grey = inpaint_mask(picture, size, blur=0)
        except InvalidInputError as error:
            raise ValidationError({"mask": [error.message]}) from None
    if invert:
        grey = Image.eval(grey, lambda value: 255 - value)
        if not grey.getbbox():
            raise ValidationError({"mask": ["inverted, it is empty: nothing would be repainted"]})
    return png_file(grey, "mask")


def model_shot_batch_create(
    *,
    owner,
    garment: Garment,
    poses: list[str],
    scenes: list[str],
    count: int = 1,
    model_attributes: dict | None = None,
    params: dict | None = None,
    extra_garments: Iterable[Garment] = (),
    engine: str | None = None,
    callback_url: str = "",
) -> list[TryOnJob]:
    """One model-shot job per pose × scene × variation, all sharing a batch id.

    A scene is a preset's name or free words. Variation *i* gets seed + *i* (a random seed
    first when the seed is -1), so each picture can be re-made on its own.
    """
    from pipelines.scenes import SCENES

    if not poses:
        raise ValidationError({"poses": ["choose at least one pose"]})
    if not 1 <= count <= 8:
        raise ValidationError({"count": ["must be from 1 to 8"]})
    if len(poses) * len(scenes or [""]) * count > 24:
        raise ValidationError({"count": ["at most 24 pictures in one batch"]})
    checked = _check_params(params, garment.category)
    base_seed = checked.seed if checked.seed != -1 else secrets.randbelow(MAX_SEED + 1)
    batch = uuid.uuid4()
    extra = list(extra_garments)
    jobs = []
    with transaction.atomic():
        for pose in poses:
            for scene in scenes or [""]:
                preset, text = (scene, "") if scene in SCENES or not scene else ("", scene)
                for variation in range(count):
                    seeded = {**checked.to_dict(), "seed": (base_seed + variation) % (MAX_SEED + 1)}
                    jobs.append(
                        tryon_job_create(
                            kind=TryOnJob.Kind.MODEL_SHOT,
                            garment=garment,
                            owner=owner,
                            extra_garments=extra,
                            pose=pose,
                            scene=preset,
                            scene_text=text,
                            model_attributes=model_attributes,
                            params={**seeded, "batch_size": 1},
                            engine=engine,
                            batch=batch,
                            callback_url=callback_url,
                        )
                    )
    return jobs


def tryon_job_rerun(*, job: TryOnJob, new_seed: bool) -> TryOnJob:
    """A new job with ``job``'s inputs and parameters; ``new_seed`` picks a fresh random seed.

    The copy gets its own copies of the input files (a photo, an inpaint's mask and control
    pictures), so deleting either job leaves the other whole; its photo keeps the original's
    upload time, so the copy is purged with it. Raises ``TooManyActiveJobs`` when the owner is
    at the active-job cap, as a new request would.
    """
    params = dict(job.params)
    if new_seed:
        params["seed"] = secrets.randbelow(MAX_SEED + 1)
    copy = TryOnJob(
        kind=job.kind,
        garment=job.garment,
        owner=job.owner,
        session_key=job.session_key,
        pose=job.pose,
        scene=job.scene,
        scene_text=job.scene_text,
        model_attributes=job.model_attributes,
        params=params,
        engine=job.engine,
        consent_at=job.consent_at,
        controls=job.controls,
        photo_uploaded_at=_photo_uploaded_at(job) if job.person_photo else None,
        client_key=job.client_key,
    )
    with transaction.atomic():
        _claim_a_slot(copy)
        for name in INPUT_FILE_FIELDS:
            original = getattr(job, name)
            if original:
                with original.open("rb") as stored:
                    content = ContentFile(stored.read())
                getattr(copy, name).save(Path(original.name).name, content, save=False)
        copy.save()
        copy.extra_garments.set(job.extra_garments.all())
        _enqueue(copy)
    return copy


# --- cancelling and deleting ---------------------------------------------------------------------


def tryon_job_cancel(*, job: TryOnJob) -> TryOnJob:
    """Stop a job: a queued one at once, a running one at its next sampling step."""
    now = timezone.now()
    if TryOnJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, finished_at=now, step="cancelled"
    ):
        _notify(job)
    TryOnJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def tryon_job_delete(*, job: TryOnJob) -> None:
    """Delete the job, its results and every file they own (a running job is stopped first)."""
    with transaction.atomic():
        files = job.stored_files()
        for result in job.results.all():
            files += result.stored_files()
        TryOnJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(cancel_requested=True)
        job.delete()
        delete_files_on_commit(files)


# The jobs that hold a person's picture: "delete my data" removes them all. A merchant's
# catalog and model shots are their business records, not personal data, and stay.
PERSONAL_KINDS = (TryOnJob.Kind.PHOTO, TryOnJob.Kind.INPAINT)


def shopper_data_delete(*, user, session_key: str | None) -> int:
    """ "Delete my data": every photo try-on and inpaint of ``user`` (signed in) or of the
    anonymous ``session_key``, with their photos, results, previews and files, at once.

    Returns how many jobs were deleted; running ones are stopped (see ``tryon_job_delete``).
    """
    jobs = jobs_of(user=user, session_key=session_key).filter(kind__in=PERSONAL_KINDS)
    count = 0
    with transaction.atomic():
        for job in jobs.prefetch_related("results"):
            tryon_job_delete(job=job)
            count += 1
    if count:
        logger.info("deleted %s photo job(s) at their owner's request", count)
    return count


def record_photo_access(*, user, job: TryOnJob, what: str) -> None:
    """Note that a staff member looked at a shopper's private picture (the audit trail)."""
    PhotoAccess.objects.create(user=user, job=job, job_ref=str(job.pk), what=what)


# --- review and publishing -----------------------------------------------------------------------


def result_review(*, result: TryOnResult, reviewer, approve: bool, note: str = "") -> TryOnResult:
    """Staff's verdict on a result; a rejected result is unpublished.

    Raises ``PermissionDenied`` unless ``selectors.can_review`` allows ``reviewer``.
    """
    if not can_review(reviewer, result.job):
        raise PermissionDenied(
            "reviewing needs the “Can change try-on result” permission, and for a shopper's "
            "picture also “Can view shoppers' photos”"
        )
    result.review_status = TryOnResult.Review.APPROVED if approve else TryOnResult.Review.REJECTED
    result.reviewer = reviewer
    result.reviewed_at = timezone.now()
    result.review_note = note
    if not approve:
        result.published = False
    result.save(
        update_fields=["review_status", "reviewer", "reviewed_at", "review_note", "published"]
    )
    return result


def result_publish(*, result: TryOnResult, user, published: bool = True) -> TryOnResult:
    """Show (or hide) a staff-approved model shot on its product page; the garment's merchant.

    A result of a job someone else asked for raises ``PermissionDenied``: a shopper's try-on
    of the merchant's garment is the shopper's, and stays private. The merchant's own photo
    try-ons (of their model) are never published either (``ValidationError``).
    """
    job = result.job
    if job.garment is None or job.garment.merchant_id != user.pk or job.owner_id != user.pk:
        raise PermissionDenied("only the garment's merchant publishes its model shots")
    if published:
        if job.kind != TryOnJob.Kind.MODEL_SHOT:
            raise ValidationError(
                {"result": ["only model shots are published; try-ons stay private"]}
            )
        if result.review_status != TryOnResult.Review.APPROVED:
            raise ValidationError({"result": ["staff have not approved this picture yet"]})
    result.published = published
    result.save(update_fields=["published"])
    return result


# --- running jobs (worker side) ------------------------------------------------------------------


def worker_name() -> str:
    """This process's worker id, for the job row (a Celery task passes its hostname)."""
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def _claim(job_id, worker: str) -> TryOnJob | None:
    """Take a queued job for ``worker``; None if another worker has it or it is finished."""
    now = timezone.now()
    taken = TryOnJob.objects.filter(pk=job_id, status=Status.QUEUED).update(
        status=Status.RUNNING,
        attempts=F("attempts") + 1,
        worker=worker,
        heartbeat=now,
        started_at=now,
        finished_at=None,
        progress=0.0,
        step="starting",
        error_type="",
        error_message="",
        cancel_requested=False,
    )
    return TryOnJob.objects.filter(pk=job_id).first() if taken else None


def _mine(job: TryOnJob):
    """The job's row while this claim still holds it (a swept job belongs to the next claim)."""
    return TryOnJob.objects.filter(
        pk=job.pk, status=Status.RUNNING, worker=job.worker, attempts=job.attempts
    )


class _Heartbeat:
    """Writes the job's heartbeat from a thread while the job runs (analysis and loading
    included, which report no progress)."""

    def __init__(self, job: TryOnJob):
        self.job = job
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()

    def _beat(self):
        try:
            while not self.stop.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    _mine(self.job).update(heartbeat=timezone.now())
                except DatabaseError:
                    # A busy database delays one beat; the next one will do.
                    logger.warning("job %s: heartbeat not written", self.job.pk, exc_info=True)
        finally:
            connection.close()


class _Reporter:
    """Progress, live preview and cancel checks for one running job.

    Progress is written at most every JOB_PROGRESS_INTERVAL seconds (the last report, 1.0,
    always); cancel and the deadline are checked at every step.
    """

    def __init__(self, job: TryOnJob):
        self.job = job
        self.started = time.monotonic()
        self.last_write = 0.0
        self.deadline_hit = False

    def progress(self, report) -> None:
        now = time.monotonic()
        if now - self.last_write < settings.JOB_PROGRESS_INTERVAL and report.fraction < 1.0:
            return
        self.last_write = now
        fields = {
            "progress": max(0.0, min(1.0, report.fraction)),
            "step": report.text[:200],
            "heartbeat": timezone.now(),
        }
        if report.preview is not None:
            fields["preview"] = self._save_preview(report.preview)
        _mine(self.job).update(**fields)

    def _save_preview(self, preview: Image.Image) -> str:
        field = self.job.preview
        name = f"previews/{self.job.pk}.png"
        buffer = io.BytesIO()
        # The latent preview is 1/8 of the size; enlarged here so a page can show it as is.
        preview.resize((preview.width * 4, preview.height * 4), Image.NEAREST).save(buffer, "PNG")
        field.storage.delete(name)
        return field.storage.save(name, ContentFile(buffer.getvalue()))

    def should_cancel(self) -> bool:
        if time.monotonic() - self.started > settings.JOB_DEADLINE:
            self.deadline_hit = True
            return True
        # Cancelled, deleted or taken over by another claim: no reason to keep painting.
        return not _mine(self.job).filter(cancel_requested=False).exists()


def _garment_input(garment: Garment):
    from pipelines.tryon import GarmentInput
    from pipelines.types import GarmentAnalysis

    def load(field, mode):
        with field.open("rb") as stored, Image.open(stored) as picture:
            return picture.convert(mode)

    analysis = GarmentAnalysis(
        category=garment.category,
        cutout=load(garment.cutout, "RGBA"),
        mask=load(garment.mask, "L"),
        canny=load(garment.canny, "RGB"),
        landmarks={name: (float(x), float(y)) for name, (x, y) in garment.landmarks.items()},
    )
    return GarmentInput(
        analysis, colour=garment.colour, material=garment.material, description=garment.description
    )


def _stored_picture(field, mode: str = "RGB"):
    if not field:
        return None
    with field.open("rb") as stored, Image.open(stored) as picture:
        return picture.convert(mode)


def _control_inputs(job: TryOnJob) -> tuple:
    """An inpaint's ControlNet inputs per slot (OpenPose, Canny), None where it gave none."""
    from pipelines.inpaint import ControlInput
    from pipelines.params import CONTROL_NAMES

    inputs = []
    for slot in CONTROL_NAMES:
        given = job.controls.get(slot)
        picture = _stored_picture(getattr(job, f"{slot}_input"))
        inputs.append(
            ControlInput(given["module"], picture, tuple(given["thresholds"])) if given else None
        )
    return tuple(inputs)


def _request(job: TryOnJob):
    from pipelines.tryon import TryOnRequest

    inpaint = job.kind == TryOnJob.Kind.INPAINT
    garments = () if inpaint else (job.garment, *job.extra_garments.all())
    return TryOnRequest(
        mode=job.kind,
        garments=tuple(_garment_input(garment) for garment in garments),
        person_photo=_stored_picture(job.person_photo),
        mask=_stored_picture(job.mask, "L") if inpaint else None,
        controls=_control_inputs(job) if inpaint else (),
        pose=job.pose or "front_standing",
        scene=job.scene,
        scene_text=job.scene_text,
        model_attributes=job.model_attributes,
        params=params_from_dict(job.params),
        engine=job.engine,
        # Only a merchant's or staff's own words may load LoRAs; a shopper's tags are dropped.
        allow_loras=bool(
            job.owner_id
            and (job.owner.is_staff or (job.kind != "photo" and is_merchant(job.owner)))
        ),
    )


def runtime_config():
    """The worker's ``pipelines.generate.RuntimeConfig``, from settings."""
    from pipelines.generate import RuntimeConfig

    return RuntimeConfig(
        device=settings.TRYON_DEVICE,
        dtype=settings.TRYON_DTYPE,
        offload=settings.TRYON_CPU_OFFLOAD,
        vae_tiling=settings.TRYON_VAE_TILING,
        hash_cache=settings.VAR_DIR / "model-hashes.json",
        manifest=settings.MODELS_MANIFEST,
        content_filter=settings.TRYON_CONTENT_FILTER == "auto",
        watermark=settings.TRYON_WATERMARK,
    )


def _finish(job: TryOnJob, status: str, *, error: Exception | None = None, message: str = ""):
    fields = {"status": status, "finished_at": timezone.now(), "cancel_requested": False}
    if status == Status.SUCCEEDED:
        fields.update(progress=1.0, step="done")
    if error is not None:
        fields.update(error_type=type(error).__name__, error_message=message or str(error))
    finished = _mine(job).update(**fields)
    if finished:
        _notify(job)
    return finished


def _notify(job: TryOnJob) -> None:
    """Queue the job's callback, if it asked for one, once its end is committed."""
    if job.callback_url:
        from .tasks import job_callback_task

        job_id = str(job.pk)
        transaction.on_commit(lambda: job_callback_task.delay(job_id))


def _retry_or_fail(job: TryOnJob, error: Exception) -> None:
    if job.attempts < settings.JOB_MAX_ATTEMPTS:
        with transaction.atomic():
            requeued = _mine(job).update(
                status=Status.QUEUED,
                worker="",
                error_type=type(error).__name__,
                error_message=f"attempt {job.attempts} failed; trying again",
            )
            if requeued:
                _enqueue(job)
        return
    _finish(
        job,
        Status.FAILED,
        error=error,
        message=f"The generation failed {job.attempts} times; staff can see the details in "
        "the worker's log.",
    )


def tryon_job_run(*, job_id, worker: str) -> TryOnJob | None:
    """Run a queued job (worker side) and record its outcome; None if it was not ours to run.

    Bad input and missing weights fail at once with their message; an unexpected error is
    retried until JOB_MAX_ATTEMPTS; a cancel request ends it ``cancelled`` at the next step.
    When the content filter refuses the photo or withholds every result, the job fails with
    ``ContentFiltered`` and keeps no picture (its last live preview included).
    """
    from pipelines.safety import ContentFiltered
    from pipelines.tryon import run

    job = _claim(job_id, worker)
    if job is None:
        return None
    if job.attempts > settings.JOB_MAX_ATTEMPTS:
        _finish(
            job,
            Status.FAILED,
            error=RuntimeError(),
            message=f"Gave up after {settings.JOB_MAX_ATTEMPTS} attempts.",
        )
        return TryOnJob.objects.get(pk=job.pk)
    reporter = _Reporter(job)
    try:
        with _Heartbeat(job):
            output = run(
                _request(job),
                models_dir=settings.MODELS_DIR,
                runtime=runtime_config(),
                on_progress=reporter.progress,
                should_cancel=reporter.should_cancel,
            )
    except GenerationCancelled as error:
        if reporter.deadline_hit:
            _finish(
                job,
                Status.FAILED,
                error=error,
                message=f"The job took longer than {settings.JOB_DEADLINE} s and was stopped.",
            )
        else:
            _finish(job, Status.CANCELLED)
    except ContentFiltered as error:
        _finish(job, Status.FAILED, error=error)
        _discard_preview(job)
    except PipelineError as error:
        _finish(job, Status.FAILED, error=error)
    except Exception as error:
        logger.exception("try-on job %s failed (attempt %s)", job.pk, job.attempts)
        _retry_or_fail(job, error)
    else:
        if output.withheld:
            logger.info("job %s: the content filter withheld %s", job.pk, output.withheld)
        _store_results(job, output)
    return TryOnJob.objects.filter(pk=job.pk).first()


def _discard_preview(job: TryOnJob) -> None:
    """Delete the job's live preview: it shows what the content filter withheld."""
    job.refresh_from_db(fields=["preview"])
    if job.preview:
        with transaction.atomic():
            TryOnJob.objects.filter(pk=job.pk).update(preview="")
            delete_files_on_commit([job.preview])


def withheld_notice(withheld: int, kept: int) -> str:
    """What the owner is told when the content filter held back ``withheld`` of a job's
    pictures and let ``kept`` through."""
    if not withheld:
        return ""
    asked = withheld + kept
    verb = "was" if withheld == 1 else "were"
    return (
        f"{withheld} of {asked} pictures {verb} withheld by the content filter; "
        "try another seed or other words for more."
    )


def _store_results(job: TryOnJob, output) -> None:
    """Save the pictures and maps and mark the job done, unless this claim was lost."""
    maps = {name: png_file(picture, name).read() for name, picture in output.maps.items()}
    saved: list = []
    try:
        with transaction.atomic():
            if not _finish(job, Status.SUCCEEDED):
                return  # cancelled, deleted or taken over meanwhile: nothing of ours is stored
            notice = withheld_notice(output.withheld, len(output.images))
            TryOnJob.objects.filter(pk=job.pk).update(timings=output.timings_ms, notice=notice)
            for index, generated in enumerate(output.images):
                saved += _store_result(job, index, generated, maps)
            TryOnResult.objects.filter(job=job, index__gte=len(output.images)).delete()
    except Exception:
        for stored in saved:  # rolled back: these files belong to no row
            stored.storage.delete(stored.name)
        raise


def _store_result(job: TryOnJob, index: int, generated, maps: dict[str, bytes]) -> list:
    """Create or overwrite result ``index`` of ``job``; returns the files it now owns."""
    result, _ = TryOnResult.objects.get_or_create(
        job=job, index=index, defaults={"seed": generated.seed}
    )
    old = result.stored_files()
    result.seed = generated.seed
    result.infotext = generated.infotext
    result.review_status = TryOnResult.Review.PENDING
    result.published = False
    result.image.save("result.png", ContentFile(generated.png_bytes()), save=False)
    for name, content in maps.items():
        getattr(result, name).save(f"{name}.png", ContentFile(content), save=False)
    result.save()
    delete_files_on_commit(old)
    return result.stored_files()


# --- retention ----------------------------------------------------------------------------------


def purge_expired() -> int:
    """Delete shoppers' photo jobs (photo, results, files) whose photo was uploaded more than
    PERSON_PHOTO_RETENTION_HOURS ago.

    The age is the photo's, not the job's: a re-run or a reused photo is a new job with the
    same photo, and goes with the first upload. Returns how many jobs were deleted. Inpaints go
    too, since a client's picture may show a person; model shots carry no one's photo and are
    kept.
    """
    cutoff = timezone.now() - timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS)
    uploaded_before = Q(photo_uploaded_at__lt=cutoff) | Q(
        photo_uploaded_at__isnull=True, created_at__lt=cutoff
    )
    expired = TryOnJob.objects.filter(uploaded_before, kind__in=PERSONAL_KINDS)
    count = 0
    for job in expired.iterator():
        tryon_job_delete(job=job)
        count += 1
    if count:
        logger.info("deleted %s photo job(s) past their retention", count)
    return count


# --- the sweeper ---------------------------------------------------------------------------------


def jobs_sweep(*, restarted_worker: str = "") -> int:
    """Queue again the running jobs whose worker died; fail those out of attempts.

    A job is orphaned when its heartbeat is older than JOB_STALE_AFTER, or, at a worker's
    start, when it was claimed by a process of that same worker name (which cannot be running
    it any more). Returns how many jobs were put back in the queue.
    """
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER)
    orphaned = Q(heartbeat__lt=stale) | Q(heartbeat__isnull=True)
    if restarted_worker:
        orphaned |= Q(worker__startswith=f"{restarted_worker}:")
    requeued = 0
    for job in TryOnJob.objects.filter(Q(status=Status.RUNNING) & orphaned):
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _finish(
                job,
                Status.FAILED,
                error=RuntimeError("worker lost"),
                message=f"The worker running this job stopped {job.attempts} times; gave up.",
            )
            continue
        with transaction.atomic():
            if _mine(job).update(status=Status.QUEUED, worker="", step="queued again"):
                _enqueue(job)
                requeued += 1
    if requeued:
        logger.warning("re-queued %s job(s) left by a stopped worker", requeued)
    return requeued
