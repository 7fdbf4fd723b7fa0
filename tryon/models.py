"""Try-on data: jobs, their results, staff access to private photos, and worker liveness.

The job row is the source of truth (the broker only carries its id): a worker claims it with a
conditional UPDATE, writes its progress and heartbeat into it, and records the outcome there.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from common.storage import RandomName, private_storage


class WorkerHeartbeat(models.Model):
    """The last time a Celery worker said it was alive (one row per worker hostname)."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self):
        return f"{self.hostname} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class TryOnJob(models.Model):
    """One requested picture (or batch of seeds) and what became of it."""

    class Kind(models.TextChoices):
        PHOTO = "photo", "Photo try-on"
        MODEL_SHOT = "model_shot", "Model shot"
        # The WebUI's img2img (/sdapi/v1/img2img): a client's own picture, no garment.
        INPAINT = "inpaint", "Inpaint"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    # Unguessable: job ids appear in URLs that anonymous shoppers hold.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tryon_jobs",
    )
    # An anonymous shopper owns their jobs through their session.
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    garment = models.ForeignKey(
        "catalog.Garment",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tryon_jobs",
    )
    # An outfit: further garments worn with ``garment``, one per category.
    extra_garments = models.ManyToManyField(
        "catalog.Garment", blank=True, related_name="outfit_jobs"
    )
    # The shopper's photo; for an inpaint, the client's picture.
    person_photo = models.ImageField(
        upload_to=RandomName("photos"), storage=private_storage, blank=True
    )
    # An inpaint's own inputs: its mask (white = repaint; none = all of it), the pictures its
    # ControlNet units read (none: the init picture) and each slot's preprocessor, as
    # {"openpose": {"module": …}, "canny": {"module": …, "thresholds": [low, high]}}, plus
    # "reference": {} when its reference/IP-Adapter units read a picture.
    mask = models.ImageField(upload_to=RandomName("masks"), storage=private_storage, blank=True)
    openpose_input = models.ImageField(
        upload_to=RandomName("controls"), storage=private_storage, blank=True
    )
    canny_input = models.ImageField(
        upload_to=RandomName("controls"), storage=private_storage, blank=True
    )
    # The picture an inpaint's reference and IP-Adapter units read (none: the init picture,
    # when controls["reference"] says they are on).
    reference_input = models.ImageField(
        upload_to=RandomName("controls"), storage=private_storage, blank=True
    )
    controls = models.JSONField(default=dict, blank=True)
    pose = models.CharField(max_length=40, blank=True)
    scene = models.CharField(max_length=40, blank=True)
    scene_text = models.CharField(max_length=300, blank=True)
    model_attributes = models.JSONField(default=dict, blank=True)
    # Validated WebUI-style parameters (pipelines.params.GenerationParams.to_dict()).
    params = models.JSONField(default=dict, blank=True)
    engine = models.CharField(max_length=10, default="auto")
    # Model shots of one submitted batch share this id.
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    # When the person's photo (an inpaint's picture) was uploaded. A re-run or a reused photo
    # keeps the original's time: retention counts from here, not from the job's creation.
    photo_uploaded_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # POSTed (HMAC-signed) when the job ends; see tryon.callbacks.
    callback_url = models.URLField(max_length=500, blank=True)
    # An anonymous shopper's client address, keyed-hashed (tryon.intake.client_key): a fresh
    # cookie per request must not escape the active-job cap. Not the address itself: the cap
    # needs to tell addresses apart, not to know them.
    client_key = models.CharField(max_length=64, blank=True, db_index=True)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    step = models.CharField(max_length=200, blank=True)
    preview = models.ImageField(
        upload_to=RandomName("previews"), storage=private_storage, blank=True
    )
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_type = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    # What a job that succeeded wants its owner to know (pictures the content filter withheld).
    notice = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_0_to_1"
            ),
            models.CheckConstraint(
                condition=~Q(kind="photo") | Q(consent_at__isnull=False),
                name="photo_job_needs_consent",
            ),
            models.CheckConstraint(
                condition=Q(kind="inpaint") | Q(garment__isnull=False),
                name="tryon_job_needs_garment",
            ),
        ]
        permissions = [
            ("view_person_photo", "Can view shoppers' photos and photo try-on results"),
        ]

    def __str__(self):
        subject = f"garment {self.garment_id}" if self.garment_id else "a client's picture"
        return f"{self.get_kind_display()} of {subject} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def stored_files(self):
        """The private files the job owns (its results' files come with the results)."""
        files = (
            self.person_photo,
            self.preview,
            self.mask,
            self.openpose_input,
            self.canny_input,
            self.reference_input,
        )
        return [f for f in files if f]


class TryOnResult(models.Model):
    """One generated picture of a job, with the maps staff review it by."""

    class Review(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    job = models.ForeignKey(TryOnJob, on_delete=models.CASCADE, related_name="results")
    index = models.PositiveSmallIntegerField()
    image = models.ImageField(upload_to=RandomName("results"), storage=private_storage)
    seed = models.BigIntegerField()
    infotext = models.TextField(blank=True)
    mask = models.ImageField(upload_to=RandomName("maps"), storage=private_storage, blank=True)
    openpose = models.ImageField(upload_to=RandomName("maps"), storage=private_storage, blank=True)
    canny = models.ImageField(upload_to=RandomName("maps"), storage=private_storage, blank=True)
    composite = models.ImageField(upload_to=RandomName("maps"), storage=private_storage, blank=True)
    review_status = models.CharField(
        max_length=10, choices=Review.choices, default=Review.PENDING, db_index=True
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reviewed_results",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    published = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    FILE_FIELDS = ("image", "mask", "openpose", "canny", "composite")

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            # Storing results is idempotent: a retried job overwrites, never duplicates.
            models.UniqueConstraint(fields=["job", "index"], name="one_result_per_job_index"),
            models.CheckConstraint(
                condition=Q(published=False) | Q(review_status="approved"),
                name="published_only_when_approved",
            ),
        ]

    def __str__(self):
        return f"result {self.index} of job {self.job_id}"

    def stored_files(self):
        return [f for f in (getattr(self, name) for name in self.FILE_FIELDS) if f]


class PhotoAccess(models.Model):
    """A record of a staff member looking at a shopper's private picture (the audit trail)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(TryOnJob, null=True, on_delete=models.SET_NULL, related_name="+")
    job_ref = models.CharField(max_length=36)  # kept when the job itself is deleted
    what = models.CharField(max_length=40)
    accessed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-accessed_at"]
        verbose_name_plural = "photo accesses"

    def __str__(self):
        return f"{self.user} viewed {self.what} of job {self.job_ref} at {self.accessed_at}"


class ClientOptions(models.Model):
    """A WebUI API client's own options (``/sdapi/v1/options``), kept per API token.

    The WebUI's options are global; a shop serves many clients, so one client's choice of
    checkpoint, VAE or clip skip is only that token's default for its later requests. A new
    token starts afresh (these go with the old one).
    """

    token = models.OneToOneField(
        "authtoken.Token", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    sd_model_checkpoint = models.CharField(max_length=300, blank=True)  # "": the default
    sd_vae = models.CharField(max_length=300, default="Automatic")
    clip_skip = models.PositiveSmallIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "client options"

    def __str__(self):
        return f"WebUI options of {self.token.user}"
