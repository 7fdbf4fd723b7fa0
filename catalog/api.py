"""The garment API (``/api/garments/``): a public catalog to read, the merchant's own to write.

Writes go through the same services as the merchant pages (upload cleaning, analysis queued on
commit, files deleted with the row); another merchant's garment answers 404 to a write.
"""

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, viewsets

from common.api_errors import errors
from common.roles import is_merchant
from common.uploads import clean_image_upload

from . import selectors, services
from .models import Garment

FILTERS = [
    OpenApiParameter("category", OpenApiTypes.STR, enum=Garment.Category.values),
    OpenApiParameter("merchant", OpenApiTypes.STR, description="the merchant's username"),
    OpenApiParameter("search", OpenApiTypes.STR, description="title, colour, material, SKU"),
]


class GarmentSerializer(serializers.ModelSerializer):
    merchant = serializers.SlugRelatedField(slug_field="username", read_only=True)
    image = serializers.FileField(help_text="JPEG, PNG or WebP")
    cutout = serializers.FileField(read_only=True)
    mask = serializers.FileField(read_only=True)
    canny = serializers.FileField(read_only=True)

    class Meta:
        model = Garment
        fields = [
            "id", "merchant", "title", "sku", "category", "description", "colour", "material",
            "price", "image", "cutout", "mask", "canny", "analysis_status", "analysis_message",
            "landmarks", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["analysis_status", "analysis_message", "landmarks"]

    def validate_image(self, upload):
        # The same cleaning as every upload: decided by content, limits, re-encoded.
        return clean_image_upload(upload) if isinstance(upload, UploadedFile) else upload

    def validate(self, data):
        merchant = self.context["request"].user
        sku = data.get("sku", getattr(self.instance, "sku", None))
        others = Garment.objects.filter(merchant=merchant, sku=sku)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError({"sku": ["you already have a garment with this SKU"]})
        return data


class IsMerchantOrReadOnly(permissions.BasePermission):
    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        return request.user.is_authenticated and is_merchant(request.user)


@extend_schema_view(
    # A page past the last answers 404; a token that is not valid, 401 (on every operation).
    list=extend_schema(parameters=FILTERS, responses={200: GarmentSerializer, **errors(401, 404)}),
    retrieve=extend_schema(responses={200: GarmentSerializer, **errors(401, 404)}),
    create=extend_schema(responses={201: GarmentSerializer, **errors(400, 401, 403, 415)}),
    update=extend_schema(responses={200: GarmentSerializer, **errors(400, 401, 403, 404, 415)}),
    partial_update=extend_schema(
        responses={200: GarmentSerializer, **errors(400, 401, 403, 404, 415)}
    ),
    destroy=extend_schema(responses={204: None, **errors(401, 403, 404)}),
)
class GarmentViewSet(viewsets.ModelViewSet):
    """The catalog: anyone reads it; merchants add, change and delete their own garments."""

    serializer_class = GarmentSerializer
    permission_classes = [IsMerchantOrReadOnly]
    queryset = Garment.objects.none()  # the model, for the schema; get_queryset decides

    def get_queryset(self):
        params = self.request.query_params
        if self.request.method not in permissions.SAFE_METHODS:
            return selectors.merchant_garment_list(merchant=self.request.user)
        garments = selectors.garment_list(
            category=params.get("category"), search=params.get("search")
        )
        if params.get("merchant"):
            garments = garments.filter(merchant__username=params["merchant"])
        return garments.select_related("merchant")

    def perform_create(self, serializer):
        garment = Garment(merchant=self.request.user, **serializer.validated_data)
        serializer.instance = services.garment_ingest(garment=garment)

    def perform_update(self, serializer):
        garment = serializer.instance
        changed = [name for name, value in serializer.validated_data.items()]
        for name, value in serializer.validated_data.items():
            setattr(garment, name, value)
        serializer.instance = services.garment_update(garment=garment, changed_fields=changed)

    def perform_destroy(self, garment):
        services.garment_delete(garment=garment)
