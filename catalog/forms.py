"""Forms of the catalog: the merchant's garment form and the admin's."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from common.uploads import ACCEPT_ATTRIBUTE, clean_image_upload

from .models import Garment


class GarmentImageField(forms.FileField):
    """A file field whose validation is ours (content-sniffed, re-encoded), not Django's.

    Django's ``forms.ImageField`` accepts any format Pillow reads (TIFF, BMP, GIF, ...) and gives a
    vague message; :func:`clean_image_upload` accepts JPEG/PNG/WebP and says what is wrong.
    """

    widget = forms.ClearableFileInput(attrs={"accept": ACCEPT_ATTRIBUTE})

    def clean(self, data, initial=None):
        cleaned = super().clean(data, initial)
        if isinstance(cleaned, UploadedFile):
            return clean_image_upload(cleaned)
        return cleaned


class GarmentAdminForm(forms.ModelForm):
    image = GarmentImageField(label="Product image", help_text="JPEG, PNG or WebP.")

    class Meta:
        model = Garment
        fields = [
            "merchant",
            "title",
            "sku",
            "category",
            "price",
            "colour",
            "material",
            "description",
            "image",
        ]


class GarmentForm(forms.ModelForm):
    """The merchant's form; the merchant comes from the request, never from the form."""

    image = GarmentImageField(
        label="Product image",
        help_text="A photo of the garment alone, JPEG, PNG or WebP, at least 128 px on a side.",
    )

    class Meta:
        model = Garment
        fields = ["title", "sku", "category", "price", "colour", "material", "description", "image"]
        widgets = {"description": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args, merchant, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.merchant = merchant

    def clean_sku(self):
        sku = self.cleaned_data["sku"].strip()
        clash = Garment.objects.filter(merchant=self.instance.merchant, sku__iexact=sku)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"You already have a garment with SKU “{sku}”.")
        return sku


class GarmentMaskForm(forms.Form):
    """The mask the merchant painted (the painter fills this field from its canvas); the service
    checks the picture itself."""

    mask = forms.FileField(
        label="Mask (PNG, white where the garment is)",
        widget=forms.FileInput(attrs={"accept": "image/png"}),
        error_messages={"required": "Paint the mask before saving it."},
    )

    def clean_mask(self):
        mask = self.cleaned_data["mask"]
        if mask.size > settings.UPLOAD_MAX_BYTES:
            raise ValidationError("The mask file is too large.")
        return mask
