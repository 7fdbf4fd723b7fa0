"""Forms of the try-on pages: a shopper's photo, and a merchant's model shots and model photos."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from common.forms import form_errors_from
from common.uploads import ACCEPT_ATTRIBUTE
from pipelines.params import MAX_SEED, IPAdapterUnit, ReferenceUnit
from pipelines.poses import CANVAS, PRESETS
from pipelines.prompts import HAIR_WORDS, MODEL_VOCABULARY, USER_TEXT_MAX
from pipelines.scenes import SCENES
from pipelines.types import BODY_INDEX


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


# OpenPose's body limbs (the 17 its renderer draws) and its colours, so the picker shows each
# preset as the skeleton the OpenPose ControlNet receives.
OPENPOSE_LIMBS = (
    ("neck", "r_shoulder"),
    ("neck", "l_shoulder"),
    ("r_shoulder", "r_elbow"),
    ("r_elbow", "r_wrist"),
    ("l_shoulder", "l_elbow"),
    ("l_elbow", "l_wrist"),
    ("neck", "r_hip"),
    ("r_hip", "r_knee"),
    ("r_knee", "r_ankle"),
    ("neck", "l_hip"),
    ("l_hip", "l_knee"),
    ("l_knee", "l_ankle"),
    ("neck", "nose"),
    ("nose", "r_eye"),
    ("r_eye", "r_ear"),
    ("nose", "l_eye"),
    ("l_eye", "l_ear"),
)
OPENPOSE_COLOURS = (
    "#ff0000",
    "#ff5500",
    "#ffaa00",
    "#ffff00",
    "#aaff00",
    "#55ff00",
    "#00ff00",
    "#00ff55",
    "#00ffaa",
    "#00ffff",
    "#00aaff",
    "#0055ff",
    "#0000ff",
    "#5500ff",
    "#aa00ff",
    "#ff00ff",
    "#ff00aa",
    "#ff0055",
)


def _svg_number(value: float) -> str:
    """A coordinate as SVG reads it, whatever number format the page's locale uses."""
    return f"{value:.1f}"


def pose_skeleton(name: str) -> dict:
    """A pose preset as SVG shapes on its canvas: limbs as lines and keypoints as dots, leaving
    out every point the camera cannot see (score 0) and the limbs that touch one."""
    body = PRESETS[name].body
    lines = []
    for (start, end), colour in zip(OPENPOSE_LIMBS, OPENPOSE_COLOURS, strict=False):
        (x1, y1, s1), (x2, y2, s2) = body[BODY_INDEX[start]], body[BODY_INDEX[end]]
        if s1 > 0 and s2 > 0:
            ends = {"x1": x1, "y1": y1, "x2": x2, "y2": y2}
            lines.append({**{key: _svg_number(v) for key, v in ends.items()}, "colour": colour})
    points = [
        {"x": _svg_number(x), "y": _svg_number(y), "colour": colour}
        for (x, y, score), colour in zip(body, OPENPOSE_COLOURS, strict=True)
        if score > 0
    ]
    return {"width": CANVAS[0], "height": CANVAS[1], "lines": lines, "points": points}


def _words(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _attribute_field(key: str) -> forms.ChoiceField:
    choices = [("", "Any"), *((value, _words(value)) for value in MODEL_VOCABULARY[key])]
    return forms.ChoiceField(label=_words(key), choices=choices, required=False)


class ModelShotForm(forms.Form):
    """What the merchant asks for: poses × scenes × variations of a generated model wearing the
    garment. ``tryon.intake.model_shot_batch_create`` validates the combination."""

    poses = forms.MultipleChoiceField(
        label="Poses",
        choices=[(name, preset.title) for name, preset in PRESETS.items()],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one pose."},
    )
    scenes = forms.MultipleChoiceField(
        label="Scenes",
        choices=[(name, scene.title) for name, scene in SCENES.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="No scene chosen: a plain light grey studio.",
    )
    scene_text = forms.CharField(
        label="Your own scene",
        required=False,
        max_length=USER_TEXT_MAX,
        help_text="Adds one more scene in your words, e.g. “sunny park, autumn leaves”.",
    )
    gender_presentation = _attribute_field("gender_presentation")
    age_range = _attribute_field("age_range")
    skin_tone = _attribute_field("skin_tone")
    body_type = _attribute_field("body_type")
    hair = forms.CharField(
        label="Hair",
        required=False,
        max_length=80,
        help_text=f"A few of: {', '.join(HAIR_WORDS)}; or “bald”. Empty: any.",
    )
    count = forms.IntegerField(
        label="Variations of each",
        min_value=1,
        max_value=8,
        initial=1,
        help_text="1 to 8 pictures per pose and scene.",
    )
    seed = forms.IntegerField(
        label="Seed",
        min_value=-1,
        max_value=MAX_SEED,
        initial=-1,
        help_text="-1 picks a random one; variation n gets seed + n.",
    )

    # Advanced: the reference unit (pipelines.reference); left empty, its defaults.
    reference_module = forms.ChoiceField(
        label="Garment reference",
        choices=[
            ("reference_only", "Attention: prints and details (reference_only)"),
            ("reference_adain", "Colours and texture statistics (reference_adain)"),
            ("reference_adain+attn", "Both (reference_adain+attn)"),
        ],
        required=False,
        initial=ReferenceUnit.module,
    )
    reference_weight = forms.FloatField(
        label="Reference weight",
        min_value=0.0,
        max_value=2.0,
        required=False,
        initial=ReferenceUnit.weight,
        help_text="How strongly the garment's own picture steers what is painted; 0: off.",
    )
    style_fidelity = forms.FloatField(
        label="Style fidelity",
        min_value=0.0,
        max_value=1.0,
        required=False,
        initial=ReferenceUnit.style_fidelity,
        help_text="0 to 1: higher follows the garment's picture more closely.",
    )

    ip_adapter_weight = forms.FloatField(
        label="IP-Adapter weight",
        min_value=0.0,
        max_value=2.0,
        required=False,
        initial=IPAdapterUnit.weight,
        help_text=(
            "How strongly the garment's picture steers through the IP-Adapter, when one is "
            "installed; 0: off."
        ),
    )

    hires = forms.BooleanField(
        label="Twice the size (hires pass)",
        required=False,
        initial=True,
        help_text="Paints at the model's native size, then again at twice it: sharper, slower.",
    )

    ATTRIBUTE_FIELDS = tuple(MODEL_VOCABULARY)
    # Keys of the service's errors that name something this form calls differently.
    SERVICE_FIELDS = {
        "pose": "poses",
        "scene": "scenes",
        "reference.module": "reference_module",
        "reference.weight": "reference_weight",
        "reference.style_fidelity": "style_fidelity",
        "ip_adapter.weight": "ip_adapter_weight",
    }

    def generation_params(self) -> dict:
        """The parameters this form sets: the seed, the hires pass, the reference unit and the
        IP-Adapter's weight."""
        params = {
            "seed": self.cleaned_data["seed"],
            "enable_hr": self.cleaned_data["hires"],
            "reference": self.reference_params(),
        }
        if self.cleaned_data["ip_adapter_weight"] is not None:
            params["ip_adapter"] = {"weight": self.cleaned_data["ip_adapter_weight"]}
        return params

    def reference_params(self) -> dict:
        """The reference unit's fields the merchant set (the rest keep their defaults)."""
        chosen = {
            "module": self.cleaned_data["reference_module"] or None,
            "weight": self.cleaned_data["reference_weight"],
            "style_fidelity": self.cleaned_data["style_fidelity"],
        }
        return {name: value for name, value in chosen.items() if value is not None}

    def pose_options(self):
        """The pose checkboxes with the skeleton each one draws, in the presets' order."""
        chosen = set(self["poses"].value() or [])
        return [
            {
                "name": name,
                "title": preset.title,
                "description": preset.description,
                "checked": name in chosen,
                "skeleton": pose_skeleton(name),
            }
            for name, preset in PRESETS.items()
        ]

    def attribute_fields(self):
        return [self[name] for name in (*self.ATTRIBUTE_FIELDS, "hair")]

    def model_attributes(self) -> dict[str, str]:
        chosen = {key: self.cleaned_data[key] for key in self.ATTRIBUTE_FIELDS}
        chosen["hair"] = " ".join(self.cleaned_data["hair"].split())
        return {key: value for key, value in chosen.items() if value}

    def scene_list(self) -> list[str]:
        text = self.cleaned_data["scene_text"].strip()
        return [*self.cleaned_data["scenes"], *([text] if text else [])]

    def add_service_errors(self, error: ValidationError) -> None:
        form_errors_from(self, error, self.SERVICE_FIELDS)


class ModelPhotoForm(forms.Form):
    """The merchant's own model photo, to put the garment on (a photo try-on)."""

    person_photo = forms.FileField(
        label="Your model's photo",
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT_ATTRIBUTE}),
        help_text="One person, standing, the whole body or at least the torso in view.",
        error_messages={"required": "Choose a photo of your model."},
    )
    consent = forms.BooleanField(
        label="The person in this photo agreed that it is used to make pictures of them wearing "
        "my garments.",
        error_messages={"required": "Confirm that you have the model's consent."},
    )

    def add_service_errors(self, error: ValidationError) -> None:
        form_errors_from(self, error, {})
