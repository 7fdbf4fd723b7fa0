"""Forms of the try-on pages."""

from django import forms
from django.conf import settings

from catalog.forms import ACCEPT_ATTRIBUTE


class TryOnForm(forms.Form):
    """A shopper's photo (or the one from their last try-on) and their consent.

    The picture itself is checked by ``tryon.intake.tryon_job_create`` (format, size, pose),
    which reports problems on ``person_photo``.
    """

    person_photo = forms.FileField(
        label="Your photo",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT_ATTRIBUTE, "capture": "user"}),
    )
    reuse_photo = forms.BooleanField(label="Use the photo from my last try-on", required=False)
    consent = forms.BooleanField(required=False)

    def __init__(self, *args, reusable: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        hours = settings.PERSON_PHOTO_RETENTION_HOURS
        self.fields["consent"].label = (
            "I agree that my photo is processed to show this garment on me. It is private to "
            f"me and deleted after {hours} hours, or at once when I ask."
        )
        if not reusable:
            del self.fields["reuse_photo"]
