"""Taking jobs in (web side): photo try-ons, model shots and inpaints are checked, stored and
queued; re-runs copy a job. An owner's active jobs are capped atomically."""

import secrets
import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from PIL import Image

from catalog.models import Garment
from common.forms import refusals_as_errors
from common.storage import png_file
from common.uploads import ANY_PICTURE_MAX_ASPECT, clean_image, clean_image_upload
from pipelines.engines import ENGINES
from pipelines.params import MAX_SEED
from pipelines.request import (
    CANNY_THRESHOLDS,
    check_control,
    check_model_shot,
    check_outfit,
    check_params,
)

from .models import TryOnJob
from .runner import enqueue

Status = TryOnJob.Status

INPUT_FILE_FIELDS = ("person_photo", "mask", "openpose_input", "canny_input", "reference_input")
# The kinds made by tryon_job_create; an inpaint has its own service and no garment.
GARMENT_KINDS = (TryOnJob.Kind.PHOTO, TryOnJob.Kind.MODEL_SHOT)


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


# --- creating jobs -------------------------------------------------------------------------------


def _check_garments(garment: Garment, extra: list[Garment]) -> None:
    for item in (garment, *extra):
        if item.analysis_status != Garment.AnalysisStatus.DONE:
            raise ValidationError({"garment": [f"“{item.title}” is not analysed yet; try later"]})
    with refusals_as_errors():
        check_outfit([item.category for item in (garment, *extra)])


def _check_model_shot(*, pose: str, scene: str, scene_text: str, model_attributes: dict) -> None:
    with refusals_as_errors():
        check_model_shot(
            pose=pose, scene=scene, scene_text=scene_text, model_attributes=model_attributes
        )


def _check_params(params: dict | None, category: str | None):
    """Validated parameters; ``category`` None: an inpaint's, whose prompt is all free text."""
    with refusals_as_errors():
        return check_params(params, category)


def check_photo_pose(picture: Image.Image, category: str) -> None:
    # The body's keypoints decide; hands, face and silhouette wait for the worker.
    from pipelines.person import check_pose_usable, detect_body

    with refusals_as_errors("person_photo"):
        check_pose_usable(detect_body(picture.convert("RGB")), category)


def _clean_photo(upload, category: str, *, check_pose: bool) -> ContentFile:
    """The shopper's photo re-encoded (see ``common.uploads``), refused without a usable pose."""
    try:
        picture, cleaned = clean_image(upload)
    except ValidationError as error:
        raise ValidationError({"person_photo": error.messages}) from None
    if check_pose:
        check_photo_pose(picture, category)
    return cleaned


def _reused_photo(job: TryOnJob, category: str, *, check_pose: bool) -> ContentFile:
    """A copy of an earlier job's (already cleaned) photo, checked for this garment's pose."""
    photo = _file_copy(job.person_photo)
    if check_pose:
        with Image.open(photo) as picture:
            check_photo_pose(picture, category)
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
        enqueue(job)
    return job


def inpaint_job_create(
    *,
    owner,
    image,
    mask=None,
    invert_mask: bool = False,
    controls: dict | None = None,
    reference: dict | None = None,
    params: dict | None = None,
    engine: str | None = None,
) -> TryOnJob:
    """Store and queue an inpaint of ``owner``'s own picture (the WebUI's img2img).

    ``image`` and ``mask`` are uploads, cleaned like every picture; the mask must have the
    picture's size once both are upright. ``controls`` maps a slot ("openpose", "canny") to
    ``{"module", "image" (an upload or None), "thresholds"}``; a slot left out gets no guidance
    (its unit's weight is set to 0, so the picture's parameters say so). ``reference``
    (``{"image": an upload or None}``; None: the init picture) turns on the reference unit and
    IP-Adapter, which read it; without it both get weight 0. Raises ``ValidationError`` keyed
    by the offending field; nothing is stored then.
    """

    if owner is None or not owner.is_authenticated:
        raise ValidationError({"owner": ["an inpaint needs a signed-in owner"]})
    engine = engine or settings.TRYON_ENGINE
    if engine not in ENGINES:
        raise ValidationError({"engine": [f"must be one of {', '.join(ENGINES)}"]})
    controls = controls or {}
    params = _unguided(params or {}, controls)
    if reference is None:
        # Nothing to read: the stored parameters say both are off.
        params = {**params, **{unit: _weight_zero(params.get(unit)) for unit in GARMENT_UNITS}}
    checked = _check_params(params, category=None)
    files = {"person_photo": _clean_picture(image, "init_images")}
    if reference is not None and reference.get("image") is not None:
        files["reference_input"] = _clean_picture(reference["image"], "reference.image")
    size = _picture_size(files["person_photo"])
    if mask is not None:
        files["mask"] = _clean_mask(mask, size, invert=invert_mask)
    stored_controls = {}
    for slot, control in controls.items():
        picture = control.get("image")
        thresholds = tuple(control.get("thresholds") or CANNY_THRESHOLDS)
        with refusals_as_errors(prefix=f"controlnet.{slot}."):
            check_control(
                slot, control["module"], has_image=picture is not None, thresholds=thresholds
            )
        if picture is not None:
            files[f"{slot}_input"] = _clean_picture(picture, f"controlnet.{slot}.image")
        stored_controls[slot] = {"module": control["module"], "thresholds": list(thresholds)}
    job = TryOnJob(
        kind=TryOnJob.Kind.INPAINT,
        owner=owner,
        params=checked.to_dict(),
        engine=engine,
        controls={**stored_controls, **({"reference": {}} if reference is not None else {})},
        photo_uploaded_at=timezone.now(),
    )
    return _save_new_job(job, files)


# The units that read a garment's (or an inpaint's reference) picture.
GARMENT_UNITS = ("reference", "ip_adapter")


def _weight_zero(unit):
    """A unit's JSON object at weight 0 (a value of the wrong type is left for the check)."""
    if unit is None:
        return {"weight": 0.0}
    return {**unit, "weight": 0.0} if isinstance(unit, dict) else unit


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
    with Image.open(content) as picture, refusals_as_errors("mask"):
        grey = inpaint_mask(picture, size, blur=0)
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
    first when the seed is -1), so each picture can be re-made on its own. ``enable_hr``
    defaults to true here: model shots get the hires pass (twice the size).
    """
    from pipelines.scenes import SCENES

    if not poses:
        raise ValidationError({"poses": ["choose at least one pose"]})
    if not 1 <= count <= 8:
        raise ValidationError({"count": ["must be from 1 to 8"]})
    if len(poses) * len(scenes or [""]) * count > 24:
        raise ValidationError({"count": ["at most 24 pictures in one batch"]})
    # Model shots take the hires pass unless asked not to: a merchant gets pictures at twice
    # the checkpoint's native size (1024 × 1536 with SD 1.5).
    checked = _check_params({"enable_hr": True, **(params or {})}, garment.category)
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
    files = {name: _file_copy(getattr(job, name)) for name in INPUT_FILE_FIELDS}
    # One way to store a new job: a failure leaves no orphan file behind.
    return _save_new_job(copy, files, job.extra_garments.all())


def _file_copy(original) -> ContentFile | None:
    """The stored file's bytes under its own base name, or None when there is no file."""
    if not original:
        return None
    with original.open("rb") as stored:
        return ContentFile(stored.read(), name=Path(original.name).name)
