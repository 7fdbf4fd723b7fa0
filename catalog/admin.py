from django.contrib import admin
from django.utils.html import format_html

from . import services
from .forms import GarmentAdminForm
from .models import Garment


def _thumbnail(file, size=64):
    if not file:
        return "—"
    # A class, not a style attribute, which the Content-Security-Policy refuses:
    # static/css/admin.css has one per size.
    return format_html('<img src="{}" alt="" class="picture-{}">', file.url, size)


@admin.register(Garment)
class GarmentAdmin(admin.ModelAdmin):
    form = GarmentAdminForm
    list_display = (
        "thumbnail",
        "title",
        "sku",
        "category",
        "merchant",
        "price",
        "analysis_status",
        "created_at",
    )
    list_display_links = ("thumbnail", "title")
    list_filter = ("category", "analysis_status", "merchant")
    search_fields = ("title", "sku", "description", "colour", "material", "merchant__username")
    list_select_related = ("merchant",)
    actions = ["reanalyse"]
    readonly_fields = (
        "analysis_status",
        "analysis_message",
        "landmarks",
        "preview",
        "cutout_preview",
        "mask_preview",
        "canny_preview",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("merchant", "title", "sku", "category", "price")}),
        ("Description", {"fields": ("colour", "material", "description")}),
        ("Product image", {"fields": ("image", "preview")}),
        (
            "Analysis",
            {
                "fields": (
                    "analysis_status",
                    "analysis_message",
                    "landmarks",
                    "cutout_preview",
                    "mask_preview",
                    "canny_preview",
                )
            },
        ),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Image")
    def thumbnail(self, garment):
        return _thumbnail(garment.image)

    @admin.display(description="Preview")
    def preview(self, garment):
        return _thumbnail(garment.image, 240)

    @admin.display(description="Cut-out")
    def cutout_preview(self, garment):
        return _thumbnail(garment.cutout, 240)

    @admin.display(description="Mask")
    def mask_preview(self, garment):
        return _thumbnail(garment.mask, 240)

    @admin.display(description="Canny map")
    def canny_preview(self, garment):
        return _thumbnail(garment.canny, 240)

    @admin.action(description="Re-analyse the selected garments")
    def reanalyse(self, request, queryset):
        for garment in queryset:
            services.garment_reanalyse(garment=garment)
        self.message_user(request, f"{queryset.count()} garment(s) queued for analysis.")

    def get_changeform_initial_data(self, request):
        return {"merchant": request.user.pk, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        if change:
            services.garment_update(garment=obj, changed_fields=form.changed_data)
        else:
            services.garment_ingest(garment=obj)

    def delete_model(self, request, obj):
        services.garment_delete(garment=obj)

    def delete_queryset(self, request, queryset):
        for garment in queryset:
            services.garment_delete(garment=garment)
