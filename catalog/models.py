"""The garment catalog."""

from django.conf import settings
from django.core.validators import MaxLengthValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from common.storage import RandomName
from pipelines.prompts import DESCRIPTION_PROMPT_WORDS

# Room for a product page's text; everything that writes a description (the API, the merchant's
# form, the admin, full_clean) refuses more. Rows saved before the cap keep their text: they
# only cannot be saved through those again until the description is shortened. Only the first
# DESCRIPTION_PROMPT_WORDS words ever reach a prompt.
DESCRIPTION_MAX = 5000


class Garment(models.Model):
    class Category(models.TextChoices):
        UPPER = "upper", "Top (upper body)"
        LOWER = "lower", "Bottom (trousers, skirt)"
        DRESS = "dress", "Dress"
        OUTER = "outer", "Outerwear"

    class AnalysisStatus(models.TextChoices):
        PENDING = "pending", "Waiting for analysis"
        RUNNING = "running", "Being analysed"
        DONE = "done", "Analysed"
        FAILED = "failed", "Analysis failed"

    merchant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="garments"
    )
    title = models.CharField(max_length=200)
    sku = models.CharField("SKU", max_length=64)
    category = models.CharField(max_length=10, choices=Category.choices)
    # A TextField's max_length sizes forms and DRF's field but is no model validator by itself.
    description = models.TextField(
        blank=True,
        max_length=DESCRIPTION_MAX,
        validators=[MaxLengthValidator(DESCRIPTION_MAX)],
        help_text=f"Up to {DESCRIPTION_MAX:,} characters; the first {DESCRIPTION_PROMPT_WORDS} "
        "words also describe the garment to the image generator.",
    )
    colour = models.CharField(max_length=60, blank=True)
    material = models.CharField(max_length=100, blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(0)])
    image = models.ImageField("product image", upload_to=RandomName("garments/images"))

    # Filled by the garment analysis (pipelines.garment), empty until it has run.
    cutout = models.ImageField(upload_to=RandomName("garments/cutouts"), blank=True)
    mask = models.ImageField(upload_to=RandomName("garments/masks"), blank=True)
    canny = models.ImageField("Canny map", upload_to=RandomName("garments/canny"), blank=True)
    analysis_status = models.CharField(
        max_length=10, choices=AnalysisStatus.choices, default=AnalysisStatus.PENDING
    )
    analysis_message = models.TextField(blank=True)
    # Named garment points (pipelines.types.GarmentAnalysis.landmarks) the warp fits to a body.
    landmarks = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "sku"], name="unique_sku_per_merchant")
        ]
        indexes = [models.Index(fields=["category", "-created_at"])]

    def __str__(self):
        return f"{self.title} ({self.sku})"

    def get_absolute_url(self):
        return reverse("catalog:garment", args=[self.pk])

    def stored_files(self):
        """The files this garment owns in storage (for clean-up when it goes)."""
        return [f for f in (self.image, self.cutout, self.mask, self.canny) if f]
