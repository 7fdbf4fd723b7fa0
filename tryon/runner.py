"""Running jobs (worker side): claim a job with a conditional UPDATE (two workers never run the
same job), run ``pipelines.tryon`` with a heartbeat and a progress reporter, and store the results
keyed by (job, index), so a retried job overwrites instead of duplicating."""

import logging
import socket
import threading
import time

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from catalog.models import Garment
from common.roles import is_merchant
from common.storage import delete_files_on_commit, png_file
from pipelines.errors import GenerationCancelled, PipelineError
from pipelines.params import params_from_dict

from .models import TryOnJob, TryOnResult, WorkerHeartbeat

logger = logging.getLogger(__name__)

Status = TryOnJob.Status


def enqueue(job: TryOnJob) -> None:
    """Put the job's id on the queue once the current transaction commits."""
    from .tasks import tryon_job_run_task

    job_id = str(job.pk)
    transaction.on_commit(lambda: tryon_job_run_task.delay(job_id))


def worker_heartbeat(*, hostname: str) -> None:
    """Record that the worker ``hostname`` is alive now."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"last_seen": timezone.now()}
    )


def worker_name() -> str:
    """This process's worker id, for the job row (a Celery task passes its hostname)."""
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def claim(job_id, worker: str) -> TryOnJob | None:
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


def mine(job: TryOnJob):
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
                    mine(self.job).update(heartbeat=timezone.now())
                except DatabaseError:
                    # A busy database delays one beat; the next one will do.
                    logger.warning("job %s: heartbeat not written", self.job.pk, exc_info=True)
        finally:
            connection.close()


class ProgressReporter:
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
        mine(self.job).update(**fields)

    def _save_preview(self, preview: Image.Image) -> str:
        field = self.job.preview
        name = f"previews/{self.job.pk}.png"
        # The latent preview is 1/8 of the size; enlarged here so a page can show it as is.
        enlarged = preview.resize((preview.width * 4, preview.height * 4), Image.NEAREST)
        field.storage.delete(name)
        return field.storage.save(name, png_file(enlarged, "preview"))

    def should_cancel(self) -> bool:
        if time.monotonic() - self.started > settings.JOB_DEADLINE:
            self.deadline_hit = True
            return True
        # Cancelled, deleted or taken over by another claim: no reason to keep painting.
        return not mine(self.job).filter(cancel_requested=False).exists()


def _garment_input(garment: Garment):
    from pipelines.request import GarmentInput
    from pipelines.types import GarmentAnalysis

    analysis = GarmentAnalysis(
        category=garment.category,
        cutout=_stored_picture(garment.cutout, "RGBA"),
        mask=_stored_picture(garment.mask, "L"),
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
    from pipelines.params import CONTROL_NAMES
    from pipelines.request import ControlInput

    inputs = []
    for slot in CONTROL_NAMES:
        given = job.controls.get(slot)
        picture = _stored_picture(getattr(job, f"{slot}_input"))
        inputs.append(
            ControlInput(given["module"], picture, tuple(given["thresholds"])) if given else None
        )
    return tuple(inputs)


def _reference_picture(job: TryOnJob, init_picture):
    """The picture an inpaint's reference and IP-Adapter units read: its own, else the init
    picture (already read); None when it asked for neither."""
    if "reference" not in job.controls:
        return None
    return _stored_picture(job.reference_input) or init_picture


def _request(job: TryOnJob):
    from pipelines.request import TryOnRequest

    inpaint = job.kind == TryOnJob.Kind.INPAINT
    garments = () if inpaint else (job.garment, *job.extra_garments.all())
    person_photo = _stored_picture(job.person_photo)
    return TryOnRequest(
        mode=job.kind,
        garments=tuple(_garment_input(garment) for garment in garments),
        person_photo=person_photo,
        mask=_stored_picture(job.mask, "L") if inpaint else None,
        controls=_control_inputs(job) if inpaint else (),
        reference_picture=_reference_picture(job, person_photo) if inpaint else None,
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
    """The worker's ``pipelines.request.RuntimeConfig``, from settings."""
    from pipelines.request import RuntimeConfig

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


def finish(job: TryOnJob, status: str, *, error: Exception | None = None, message: str = ""):
    fields = {"status": status, "finished_at": timezone.now(), "cancel_requested": False}
    if status == Status.SUCCEEDED:
        fields.update(progress=1.0, step="done")
    if error is not None:
        fields.update(error_type=type(error).__name__, error_message=message or str(error))
    finished = mine(job).update(**fields)
    if finished:
        notify(job)
    return finished


def notify(job: TryOnJob) -> None:
    """Queue the job's callback, if it asked for one, once its end is committed."""
    if job.callback_url:
        from .tasks import job_callback_task

        job_id = str(job.pk)
        transaction.on_commit(lambda: job_callback_task.delay(job_id))


def _retry_or_fail(job: TryOnJob, error: Exception) -> None:
    if job.attempts < settings.JOB_MAX_ATTEMPTS:
        with transaction.atomic():
            requeued = mine(job).update(
                status=Status.QUEUED,
                worker="",
                error_type=type(error).__name__,
                error_message=f"attempt {job.attempts} failed; trying again",
            )
            if requeued:
                enqueue(job)
        return
    finish(
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
    from pipelines.content_filter import ContentFiltered
    from pipelines.tryon import run

    job = claim(job_id, worker)
    if job is None:
        return None
    if job.attempts > settings.JOB_MAX_ATTEMPTS:
        finish(
            job,
            Status.FAILED,
            error=RuntimeError(),
            message=f"Gave up after {settings.JOB_MAX_ATTEMPTS} attempts.",
        )
        return TryOnJob.objects.get(pk=job.pk)
    reporter = ProgressReporter(job)
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
            finish(
                job,
                Status.FAILED,
                error=error,
                message=f"The job took longer than {settings.JOB_DEADLINE} s and was stopped.",
            )
        else:
            finish(job, Status.CANCELLED)
    except ContentFiltered as error:
        finish(job, Status.FAILED, error=error)
        _discard_preview(job)
    except PipelineError as error:
        finish(job, Status.FAILED, error=error)
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
            if not finish(job, Status.SUCCEEDED):
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
