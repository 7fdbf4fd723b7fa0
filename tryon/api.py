"""The try-on API: jobs (``/api/tryons/``), results' review and publishing, and the lists a
client needs to build a request (poses, scenes, samplers, models). Thin: services do the work.

Ownership lives in the querysets: a job (or result) that is not the caller's answers 404,
exactly like one that does not exist.
"""

import copy
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import (
    action,
    api_view,
    authentication_classes,
    permission_classes,
)
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from catalog.models import Garment
from common.api_errors import ConflictError, errors
from common.client_address import client_address
from common.roles import is_merchant
from common.uploads import decode_base64_upload

from . import deletion, intake, review, selectors
from .models import TryOnJob, TryOnResult
from .views import delete_shopper_data, shopper_session_key


def _absolute(request, name: str, *args) -> str:
    return request.build_absolute_uri(reverse(name, args=args))


# ModelSerializer works its fields out of the model anew for every instance (about 0.5 ms of a
# status poll's 4), though they depend on the class alone: this works them out once per class
# and gives each instance a copy, as DRF does with declared fields. (A comment, not a docstring,
# which the schema would show as the serializers' description.)
class FieldsBuiltOnce:
    def get_fields(self):
        built = type(self).__dict__.get("_fields_built")
        if built is None:
            built = super().get_fields()
            type(self)._fields_built = built
        return copy.deepcopy(built)


class ResultSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
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


class JobSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """A job as its owner sees it; picture URLs point at views that check ownership."""

    garment = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)  # inpaint: null
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
            "notice", "results", "created_at", "started_at", "finished_at",
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
        try:
            return decode_base64_upload(super().to_internal_value(data), "photo")
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict["photo"]) from None


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(serializers.JSONField):
    """A JSON object (in a form: its JSON text)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class ModelAttributesField(JSONObjectField):
    """The model's looks, each a word: ``{"gender_presentation": "feminine", "hair": …}``."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        for name, word in value.items():
            if not isinstance(word, str):
                raise serializers.ValidationError(f"{name} must be text")
        return value


class JobCreateSerializer(serializers.Serializer):
    # Only the kinds this endpoint makes: TryOnJob.Kind has others (inpaint, made by sdapi).
    kind = serializers.ChoiceField(
        [(kind.value, kind.label) for kind in (TryOnJob.Kind.PHOTO, TryOnJob.Kind.MODEL_SHOT)],
        default=TryOnJob.Kind.PHOTO,
    )
    garment = serializers.PrimaryKeyRelatedField(queryset=Garment.objects.all())
    extra_garments = serializers.PrimaryKeyRelatedField(
        queryset=Garment.objects.all(), many=True, required=False
    )
    person_photo = serializers.FileField(required=False)
    person_photo_base64 = Base64Photo(required=False, help_text="instead of person_photo")
    consent = serializers.BooleanField(default=False)
    params = JSONObjectField(required=False, help_text="WebUI-style parameters")
    pose = serializers.CharField(required=False, default="front_standing")
    scene = serializers.CharField(required=False, allow_blank=True, default="")
    scene_text = serializers.CharField(required=False, allow_blank=True, default="")
    model_attributes = ModelAttributesField(required=False)
    count = serializers.IntegerField(min_value=1, max_value=8, default=1)
    callback_url = serializers.URLField(
        required=False, default="", help_text="POSTed, HMAC-signed, when each job ends"
    )


@contextmanager
def _model_attribute_errors():
    """The services name a model attribute "model.<key>" (as the merchant form's fields are
    named); this API's field is ``model_attributes``."""
    try:
        yield
    except DjangoValidationError as error:
        errors = getattr(error, "error_dict", {})
        keys = [key for key in errors if key == "model" or key.startswith("model.")]
        if not keys:
            raise
        _, _, attribute = keys[0].partition(".")
        message = errors[keys[0]][0].messages[0]
        raise serializers.ValidationError(
            {"model_attributes": [f"{attribute}: {message}" if attribute else message]}
        ) from None


class DeletedSerializer(serializers.Serializer):
    deleted = serializers.IntegerField(help_text="how many jobs were deleted")


class MayReview(permissions.BasePermission):
    """Staff with the result change permission (admin asks the same); which results each may
    review is ``selectors.can_review``'s question, asked by the service."""

    message = "reviewing needs a staff account with the “Can change try-on result” permission"

    def has_permission(self, request, view):
        return selectors.is_reviewer(request.user)


@extend_schema_view(
    # A page past the last answers 404; a token that is not valid, 401 (on every operation).
    list=extend_schema(responses={200: JobSerializer, **errors(401, 404)}),
    retrieve=extend_schema(responses={200: JobSerializer, **errors(401, 404)}),
    destroy=extend_schema(responses={204: None, **errors(401, 403, 404)}),
)
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
        # What JobSerializer reads and no more: garments are shown by id (the job's own
        # garment_id column), so no garment row is joined or loaded. Clients poll this.
        return selectors.jobs_of(user=self.request.user, session_key=session_key).prefetch_related(
            "results", Prefetch("extra_garments", queryset=Garment.objects.only("pk"))
        )

    @extend_schema(
        request=JobCreateSerializer,
        responses={201: JobSerializer, **errors(400, 401, 403, 409, 415)},
    )
    def create(self, request):
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        try:
            jobs = self._create_jobs(request, data)
        except intake.TooManyActiveJobs as error:
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
            with _model_attribute_errors():
                return intake.model_shot_batch_create(
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
        # The session row is made before the job's transaction: a refused job rolls back,
        # and the session must survive that for the response to carry its cookie. The service
        # opens that transaction itself, only around its writes, after the photo is cleaned and
        # its pose checked: a transaction around all of it held SQLite's one write lock for
        # that CPU work, and every other try-on request (and the workers' writes) waited.
        session_key = shopper_session_key(request)
        job = intake.tryon_job_create(
            kind=TryOnJob.Kind.PHOTO,
            garment=data["garment"],
            extra_garments=data.get("extra_garments", []),
            owner=user,
            session_key=session_key,
            person_photo=photo,
            consent=data["consent"],
            params=params,
            callback_url=data["callback_url"],
            client_address=client_address(request),
        )
        return [job]

    def perform_destroy(self, job):
        deletion.tryon_job_delete(job=job)

    @extend_schema(request=None, responses={200: JobSerializer, **errors(401, 403, 404)})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = deletion.tryon_job_cancel(job=self.get_object())
        return Response(self.get_serializer(job).data)

    @extend_schema(request=None, responses={200: DeletedSerializer, **errors(401, 403)})
    @action(detail=False, methods=["post"], url_path="delete-all")
    def delete_all(self, request):
        """Delete my data: every photo try-on and inpaint of yours (your account's, or your
        session's when anonymous) with its photo, results, previews and files, at once.
        A merchant's garments and model shots stay."""
        return Response(DeletedSerializer({"deleted": delete_shopper_data(request)}).data)


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
            return self.queryset
        # Publishing is about the merchant's own model shots; any other result, a shopper's
        # try-on of their garment included, is not theirs to see: 404, as if it did not exist.
        return self.queryset.filter(
            job__kind=TryOnJob.Kind.MODEL_SHOT, job__owner=user, job__garment__merchant=user
        )

    @extend_schema(
        request=ReviewSerializer,
        responses={200: ResultSerializer, **errors(400, 401, 403, 404, 415)},
    )
    @action(detail=True, methods=["post"], permission_classes=[MayReview])
    def review(self, request, pk=None):
        incoming = ReviewSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        result = review.result_review(
            result=self.get_object(), reviewer=request.user, **incoming.validated_data
        )
        return Response(self.get_serializer(result).data)

    @extend_schema(request=None, responses={200: ResultSerializer, **errors(400, 401, 403, 404)})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def publish(self, request, pk=None):
        result = review.result_publish(result=self.get_object(), user=request.user)
        return Response(self.get_serializer(result).data)

    @extend_schema(request=None, responses={200: ResultSerializer, **errors(400, 401, 403, 404)})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def unpublish(self, request, pk=None):
        result = review.result_publish(result=self.get_object(), user=request.user, published=False)
        return Response(self.get_serializer(result).data)


# --- what a client can ask for -------------------------------------------------------------------


class PoseSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    body = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3),
        help_text="OpenPose-18 keypoints, each [x, y, score]",
    )


class SceneSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    prompt = serializers.CharField()


class SamplerSerializer(serializers.Serializer):
    name = serializers.CharField()
    schedule_type = serializers.CharField()
    approximate = serializers.BooleanField()


class InstalledModelSerializer(serializers.Serializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    filename = serializers.CharField()
    format = serializers.CharField()


@extend_schema(responses={200: PoseSerializer(many=True), **errors(401)})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def poses(request):
    """The model-shot pose presets: OpenPose-18 keypoints (x, y, score) on a 512×768 canvas."""
    from pipelines.poses import PRESETS

    return Response(PoseSerializer(PRESETS.values(), many=True).data)


@extend_schema(responses={200: SceneSerializer(many=True), **errors(401)})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def scenes(request):
    """The scene presets for model shots (free words are accepted too)."""
    from pipelines.scenes import SCENES

    return Response(SceneSerializer(SCENES.values(), many=True).data)


@extend_schema(responses={200: SamplerSerializer(many=True), **errors(401)})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def samplers(request):
    """The WebUI sampler names the engine understands, with their default schedule type."""
    from pipelines.samplers import SAMPLERS

    listed = [
        {"name": name, "schedule_type": spec.schedule_type, "approximate": spec.approximate}
        for name, spec in SAMPLERS.items()
    ]
    return Response(SamplerSerializer(listed, many=True).data)


@extend_schema(responses={200: InstalledModelSerializer(many=True), **errors(401)})
@api_view(["GET"])
@permission_classes([permissions.AllowAny])
def models(request):
    """The models installed in MODELS_DIR, by kind (names only: hashing is the worker's job)."""
    from pipelines.registry import scan_models

    return Response(InstalledModelSerializer(scan_models(settings.MODELS_DIR), many=True).data)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])  # nothing is there for anyone: a bad token changes nothing
@permission_classes([permissions.AllowAny])
def not_found(request):
    """Any other path under /api/: the API's 404, in JSON like every API error."""
    raise NotFound("no such endpoint or object; see /api/docs/")
