"""The try-on API: jobs (``/api/tryons/``), results' review and publishing, and the lists a
client needs to build a request (poses, scenes, samplers, models). Thin: services do the work.

Ownership lives in the querysets: a job (or result) that is not the caller's answers 404,
exactly like one that does not exist.
"""

import base64
import binascii

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.response import Response

from catalog.models import Garment
from catalog.selectors import is_merchant

from . import selectors, services
from .api_errors import ConflictError
from .models import TryOnJob, TryOnResult
from .views import shopper_session_key


def _absolute(request, name: str, *args) -> str:
    return request.build_absolute_uri(reverse(name, args=args))


class ResultSerializer(serializers.ModelSerializer):
    image = serializers.SerializerMethodField()
    maps = serializers.SerializerMethodField()

    class Meta:
        model = TryOnResult
        fields = ["id", "index", "image", "maps", "seed", "infotext", "review_status", "published"]

    def get_image(self, result) -> str:
        return _absolute(self.context["request"], "result_file", result.pk, "image")

    def get_maps(self, result) -> dict[str, str]:
        request = self.context["request"]
        names = [name for name in TryOnResult.FILE_FIELDS if name != "image"]
        return {name: _absolute(request, "result_file", result.pk, name) for name in names}


class JobSerializer(serializers.ModelSerializer):
    """A job as its owner sees it; picture URLs point at views that check ownership."""

    garment = serializers.PrimaryKeyRelatedField(read_only=True)
    extra_garments = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    person_photo = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField()
    results = ResultSerializer(many=True, read_only=True)
    batch_jobs = serializers.SerializerMethodField()

    class Meta:
        model = TryOnJob
        fields = [
            "id", "kind", "status", "progress", "step", "preview", "person_photo", "garment",
            "extra_garments", "pose", "scene", "scene_text", "model_attributes", "params",
            "engine", "batch", "batch_jobs", "attempts", "error_type", "error_message",
            "results", "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_person_photo(self, job) -> str | None:
        if not job.person_photo:
            return None
        return _absolute(self.context["request"], "job_file", job.pk, "person_photo")

    def get_preview(self, job) -> str | None:
        if not job.preview:
            return None
        return _absolute(self.context["request"], "job_file", job.pk, "preview")

    def get_batch_jobs(self, job) -> list[str]:
        return [str(pk) for pk in self.context.get("batch_jobs", [])]


class Base64Photo(serializers.CharField):
    """A picture sent inside JSON as base64 (optionally a ``data:`` URL)."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        _, _, payload = text.rpartition(",") if text.startswith("data:") else ("", "", text)
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("is not valid base64") from None
        return SimpleUploadedFile("photo", raw)


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(TryOnJob.Kind.choices, default=TryOnJob.Kind.PHOTO)
    garment = serializers.PrimaryKeyRelatedField(queryset=Garment.objects.all())
    extra_garments = serializers.PrimaryKeyRelatedField(
        queryset=Garment.objects.all(), many=True, required=False
    )
    person_photo = serializers.FileField(required=False)
    person_photo_base64 = Base64Photo(required=False, help_text="instead of person_photo")
    consent = serializers.BooleanField(default=False)
    params = serializers.JSONField(required=False, help_text="WebUI-style parameters")
    pose = serializers.CharField(required=False, default="front_standing")
    scene = serializers.CharField(required=False, allow_blank=True, default="")
    scene_text = serializers.CharField(required=False, allow_blank=True, default="")
    model_attributes = serializers.JSONField(required=False)
    count = serializers.IntegerField(min_value=1, max_value=8, default=1)
    callback_url = serializers.URLField(
        required=False, default="", help_text="POSTed, HMAC-signed, when each job ends"
    )


class IsStaff(permissions.BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff)


class TryOnViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your try-on jobs: create, follow, cancel, delete. Anonymous clients own jobs through
    their session cookie."""

    serializer_class = JobSerializer
    queryset = TryOnJob.objects.none()  # the model, for the schema; get_queryset decides

    def get_queryset(self):
        session_key = self.request.session.session_key
        return (
            selectors.jobs_of(user=self.request.user, session_key=session_key)
            .select_related("garment")
            .prefetch_related("results", "extra_garments")
        )

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    def create(self, request):
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        try:
            jobs = self._create_jobs(request, data)
        except services.TooManyActiveJobs as error:
            raise ConflictError(str(error)) from None
        context = {**self.get_serializer_context(), "batch_jobs": [j.pk for j in jobs[1:]]}
        return Response(JobSerializer(jobs[0], context=context).data, status=201)

    def _create_jobs(self, request, data) -> list[TryOnJob]:
        user = request.user if request.user.is_authenticated else None
        params = data.get("params") or {}
        if data["kind"] == TryOnJob.Kind.MODEL_SHOT:
            garment = data["garment"]
            if user is None or not is_merchant(user) or garment.merchant_id != user.pk:
                raise serializers.ValidationError(
                    {"garment": ["model shots are made by the garment's merchant"]}
                )
            return services.model_shot_batch_create(
                owner=user,
                garment=garment,
                poses=[data["pose"]],
                scenes=[data["scene"] or data["scene_text"]],
                count=data["count"],
                model_attributes=data.get("model_attributes") or {},
                params=params,
                extra_garments=data.get("extra_garments", []),
                callback_url=data["callback_url"],
            )
        photo = data.get("person_photo") or data.get("person_photo_base64")
        # The session row is made outside the job's transaction: a refused job rolls back,
        # and the session must survive that for the response to carry its cookie.
        session_key = shopper_session_key(request)
        with transaction.atomic():
            job = services.tryon_job_create(
                kind=TryOnJob.Kind.PHOTO,
                garment=data["garment"],
                extra_garments=data.get("extra_garments", []),
                owner=user,
                session_key=session_key,
                person_photo=photo,
                consent=data["consent"],
                params=params,
                callback_url=data["callback_url"],
            )
        return [job]

    def perform_destroy(self, job):
        services.tryon_job_delete(job=job)

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = services.tryon_job_cancel(job=self.get_object())
        return Response(self.get_serializer(job).data)


class ReviewSerializer(serializers.Serializer):
    approve = serializers.BooleanField()
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ResultViewSet(viewsets.GenericViewSet):
    """Staff review results; the garment's merchant publishes approved model shots."""

    serializer_class = ResultSerializer
    queryset = TryOnResult.objects.select_related("job__garment")

    def get_queryset(self):
        user = self.request.user
        if not user.is_authenticated:
            return TryOnResult.objects.none()
        if self.action == "review":
            return self.queryset if user.is_staff else TryOnResult.objects.none()
        return self.queryset.filter(job__garment__merchant=user)

    @extend_schema(request=ReviewSerializer, responses={200: ResultSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def review(self, request, pk=None):
        incoming = ReviewSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        result = services.result_review(
            result=self.get_object(), reviewer=request.user, **incoming.validated_data
        )
        return Response(self.get_serializer(result).data)

    @extend_schema(request=None, responses={200: ResultSerializer})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def publish(self, request, pk=None):
        result = services.result_publish(result=self.get_object(), user=request.user)
        return Response(self.get_serializer(result).data)

    @extend_schema(request=None, responses={200: ResultSerializer})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def unpublish(self, request, pk=None):
        result = services.result_publish(
            result=self.get_object(), user=request.user, published=False
        )
        return Response(self.get_serializer(result).data)


# --- what a client can ask for -------------------------------------------------------------------


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def poses(request):
    """The model-shot pose presets: OpenPose-18 keypoints (x, y, score) on a 512×768 canvas."""
    from pipelines.poses import PRESETS

    return Response(
        [
            {"name": p.name, "title": p.title, "description": p.description, "body": p.body}
            for p in PRESETS.values()
        ]
    )


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def scenes(request):
    """The scene presets for model shots (free words are accepted too)."""
    from pipelines.scenes import SCENES

    return Response(
        [{"name": s.name, "title": s.title, "prompt": s.prompt} for s in SCENES.values()]
    )


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def samplers(request):
    """The WebUI sampler names the engine understands, with their default schedule type."""
    from pipelines.samplers import SAMPLERS

    return Response(
        [
            {"name": name, "schedule_type": spec.schedule_type, "approximate": spec.approximate}
            for name, spec in SAMPLERS.items()
        ]
    )


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def models(request):
    """The models installed in MODELS_DIR, by kind (names only: hashing is the worker's job)."""
    from pipelines.registry import scan_models

    return Response(
        [
            {"kind": e.kind, "name": e.name, "filename": e.filename, "format": e.format}
            for e in scan_models(settings.MODELS_DIR)
        ]
    )
