"""The contract between the web side and the workers: what a try-on asks for, how it runs and
what it gives back, and the checks both sides make before anything is painted.

Nothing here imports torch or OpenCV, so a web process checks a request with the very code a
worker runs: ``check_outfit``, ``check_model_shot``, ``check_params`` and ``check_control`` at
intake, and ``check_request`` as the first step of ``pipelines.tryon.run``. A refusal is an
``InvalidInputError`` naming the field; the web side maps it to its error shape in one place.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .errors import InvalidInputError
from .infotext import save_png_with_infotext
from .params import CONTROL_NAMES, GenerationParams, params_from_dict
from .pictures import check_picture_size
from .types import GarmentAnalysis

if TYPE_CHECKING:  # a worker imports torch; the methods that need it import it themselves
    import torch

MODES = ("photo", "model_shot", "inpaint")
# Passes of an outfit, first to last: what is worn underneath is painted first.
PASS_ORDER = ("dress", "lower", "upper", "outer")

# sd-webui-controlnet's OpenPose preprocessors and what each draws besides the body.
OPENPOSE_MODULES = {
    "openpose": {"hands": False, "face": False},
    "openpose_hand": {"hands": True, "face": False},
    "openpose_face": {"hands": False, "face": True},
    "openpose_full": {"hands": True, "face": True},
    "dw_openpose_full": {"hands": True, "face": True},
}
CANNY_MODULES = ("canny",)
# "none": the unit's image already is the map.
MODULES = (*OPENPOSE_MODULES, *CANNY_MODULES, "none")
CANNY_THRESHOLDS = (100, 200)  # sd-webui-controlnet's defaults for threshold_a, threshold_b


@dataclass(frozen=True, eq=False)
class ControlInput:
    """One ControlNet slot's input: a preprocessor and the picture it reads.

    ``image`` None means the init picture (it must then not be "none", which needs a map).
    ``thresholds`` are Canny's low and high thresholds.
    """

    module: str
    image: Image.Image | None = None
    thresholds: tuple[int, int] = CANNY_THRESHOLDS


@dataclass(frozen=True, eq=False)
class GarmentInput:
    """An analysed garment and the catalog words that describe it in the prompt."""

    analysis: GarmentAnalysis
    colour: str = ""
    material: str = ""
    description: str = ""

    @property
    def category(self) -> str:
        return self.analysis.category


@dataclass(frozen=True, eq=False)
class TryOnRequest:
    """One try-on job's inputs.

    ``garments``: one per category at most (a dress goes with nothing but outerwear); none in
    inpaint mode. ``person_photo`` is required in photo mode, and is the picture to paint on in
    inpaint mode, with ``mask`` (white = repaint; None = all of it) and ``controls`` (the
    OpenPose, then the Canny slot's input, or None). ``pose``, ``scene`` (a preset name),
    ``scene_text`` (free words) and ``model_attributes`` (see ``prompts.MODEL_VOCABULARY``) are
    for model shots. ``params.prompt``/``negative_prompt`` are added to the built prompts;
    ``<lora:…>`` tags in them are honoured only with ``allow_loras`` (a trusted caller), and
    dropped otherwise, since loading a model is not a shopper's choice. ``reference_picture``
    (inpaint mode only) is the picture an inpaint's reference unit and IP-Adapter read, as a
    garment's cut-out is theirs in the other modes; None: they are off.
    """

    mode: str
    garments: tuple[GarmentInput, ...]
    person_photo: Image.Image | None = None
    pose: str = "front_standing"
    scene: str = ""
    scene_text: str = ""
    model_attributes: dict[str, str] = field(default_factory=dict)
    params: GenerationParams = field(default_factory=GenerationParams)
    engine: str = "auto"
    allow_loras: bool = False
    mask: Image.Image | None = None
    controls: tuple[ControlInput | None, ...] = ()
    reference_picture: Image.Image | None = None


@dataclass(frozen=True, eq=False)
class Progress:
    """How far a run is: ``fraction`` in [0, 1], a line for people, a live preview now and then."""

    fraction: float
    text: str
    preview: Image.Image | None = None


@dataclass(frozen=True, eq=False)
class GeneratedImage:
    image: Image.Image
    seed: int
    infotext: str

    def png_bytes(self) -> bytes:
        """The picture as PNG with its infotext and the AI-generated label."""
        buffer = BytesIO()
        save_png_with_infotext(self.image, buffer, self.infotext)
        return buffer.getvalue()


@dataclass(frozen=True, eq=False)
class TryOnOutput:
    """The pictures, the maps staff review them with, the parameters used and the timings.

    ``maps``: ``mask`` (the repainted area: the garment region for a photo, everything but the
    garment for a model shot), ``openpose``, ``canny`` and ``composite`` (the init picture).
    ``withheld``: how many pictures the content filter held back (they are not in ``images``).
    """

    engine: str
    mode: str
    images: tuple[GeneratedImage, ...]
    maps: dict[str, Image.Image]
    params: dict[str, Any]
    timings_ms: dict[str, float]
    withheld: int = 0


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the models run; the Django side builds it from settings.

    ``device`` "auto" takes CUDA when present, else the CPU; ``dtype`` "auto" is fp16 on a GPU
    and fp32 on the CPU. ``offload`` (model CPU offload) and ``vae_tiling`` let a small GPU run
    big pictures. ``preview_every`` is the number of steps between live previews (0: none).
    ``hash_cache`` is a JSON file keeping model hashes across processes. ``manifest``, a
    ``sha256sum``-style allow-list, makes every model file need a line there to be loaded.
    ``content_filter`` screens a run's input picture and its results with the safety checker
    when its weights are installed (``pipelines.content_filter``); ``watermark`` hides an invisible
    watermark in each result, which changes its pixels outside the mask too
    (``pipelines.watermark``).
    """

    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    vae_tiling: bool = False
    preview_every: int = 5
    hash_cache: Path | None = None
    manifest: Path | None = None
    content_filter: bool = True
    watermark: bool = False

    def torch_device(self) -> "torch.device":
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def torch_dtype(self) -> "torch.dtype":
        import torch

        names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
        if self.dtype == "auto":
            return torch.float16 if self.torch_device().type == "cuda" else torch.float32
        if self.dtype not in names:
            raise InvalidInputError(
                "dtype", f"must be auto, {', '.join(names)}; got {self.dtype!r}"
            )
        return names[self.dtype]


# --- checks ---------------------------------------------------------------------------------------


def control_slot(module: str, model: str = "") -> str:
    """Which of our ControlNets ("openpose" or "canny") a WebUI unit drives.

    Decided by its preprocessor, or for ``module="none"`` by its model's name (e.g.
    "control_v11p_sd15_openpose [cab727d4]"). Raises ``InvalidInputError`` naming "module".
    """
    module = (module or "none").lower()
    if module in OPENPOSE_MODULES:
        return "openpose"
    if module in CANNY_MODULES:
        return "canny"
    if module != "none":
        raise InvalidInputError(
            "module", f"{module!r} is not available; use one of {', '.join(MODULES)}"
        )
    named = [slot for slot in CONTROL_NAMES if slot in (model or "").lower()]
    if len(named) != 1:
        raise InvalidInputError(
            "model",
            f"with module 'none' the model's name must say openpose or canny; got {model!r}",
        )
    return named[0]


def check_control(
    slot: str, module: str, *, has_image: bool, thresholds: tuple = CANNY_THRESHOLDS
) -> None:
    """Refuse a slot input that cannot make a map; raises ``InvalidInputError`` naming the
    unit's field ("module", "image" or "threshold_a")."""
    module = (module or "none").lower()
    if module == "none":
        if not has_image:
            raise InvalidInputError("image", f"the {slot} unit with module 'none' needs an image")
    elif control_slot(module) != slot:
        raise InvalidInputError("module", f"{module!r} does not make a {slot} map")
    numbers = [value for value in thresholds if isinstance(value, int | float)]
    if len(numbers) != 2 or isinstance(thresholds, str) or not 0 <= numbers[0] <= numbers[1] <= 255:
        raise InvalidInputError("threshold_a", "Canny thresholds need 0 ≤ low ≤ high ≤ 255")


def check_outfit(categories: list[str]) -> None:
    """Refuse garments that cannot be worn together: one per category, a dress with no top
    or bottoms (outerwear over it is fine). Raises ``InvalidInputError`` naming "garments"."""
    if not categories:
        raise InvalidInputError("garments", "at least one garment is needed")
    repeated = sorted({c for c in categories if categories.count(c) > 1})
    if repeated:
        raise InvalidInputError(
            "garments", f"one garment per category; {', '.join(repeated)} is repeated"
        )
    if "dress" in categories and {"upper", "lower"} & set(categories):
        raise InvalidInputError(
            "garments", "a dress is worn alone or under outerwear, not with a top or bottoms"
        )


def check_request(request: TryOnRequest) -> list[GarmentInput]:
    """Refuse a request no run could paint; its garments in the order their passes paint them."""
    if request.mode not in MODES:
        raise InvalidInputError("mode", f"must be one of {', '.join(MODES)}, got {request.mode!r}")
    if not isinstance(request.params, GenerationParams):
        raise InvalidInputError("params", "must be GenerationParams")
    garments = _check_inpaint(request) if request.mode == "inpaint" else _check_garments(request)
    if request.reference_picture is not None and request.mode != "inpaint":
        raise InvalidInputError("reference_picture", "only an inpaint has one; garments steer")
    _check_picture_sizes(request)
    return garments


def _check_garments(request: TryOnRequest) -> list[GarmentInput]:
    """A photo's or model shot's outfit, in the order its passes paint it."""
    if not request.garments:
        raise InvalidInputError("garments", "at least one garment is needed")
    check_outfit([garment.category for garment in request.garments])
    if request.mode == "photo" and request.person_photo is None:
        raise InvalidInputError("person_photo", "a photo of the person is required")
    return sorted(request.garments, key=lambda garment: PASS_ORDER.index(garment.category))


def _check_picture_sizes(request: TryOnRequest) -> None:
    """Every picture of the request within what OpenCV and MediaPipe may be given."""
    named = [("person_photo", request.person_photo), ("mask", request.mask)]
    named += [("reference_picture", request.reference_picture)]
    named += [
        (f"controls.{slot}.image", control.image)
        for slot, control in zip(CONTROL_NAMES, request.controls, strict=False)
        if control is not None
    ]
    for garment in request.garments:
        named += [
            ("garments.cutout", garment.analysis.cutout),
            ("garments.mask", garment.analysis.mask),
        ]
    for name, picture in named:
        if picture is not None:
            check_picture_size(picture, name)


def _check_inpaint(request: TryOnRequest) -> list[GarmentInput]:
    if request.garments:
        raise InvalidInputError("garments", "an inpaint paints the client's picture; no garments")
    if request.person_photo is None:
        raise InvalidInputError("person_photo", "the picture to paint on is required")
    if len(request.controls) > len(CONTROL_NAMES):
        raise InvalidInputError("controls", f"at most {len(CONTROL_NAMES)}: {CONTROL_NAMES}")
    return []


def check_model_shot(*, pose: str, scene: str, scene_text: str, model_attributes: Mapping) -> None:
    """Refuse an unknown pose or scene, unsafe scene words or model attributes outside the
    vocabulary (``prompts.MODEL_VOCABULARY``)."""
    from .poses import get_preset
    from .prompts import build_prompt
    from .scenes import resolve_scene

    get_preset(pose)
    resolve_scene(scene, scene_text)
    build_prompt(category="upper", model=dict(model_attributes))


def check_params(params: Mapping | None, category: str | None) -> GenerationParams:
    """The generation parameters read and checked, their free text included: a prompt the
    builder would refuse is refused here. ``category`` None: an inpaint's, all free text."""
    from .prompts import build_free_prompt, build_prompt

    checked = params_from_dict(params or {})
    if category is None:
        build_free_prompt(checked.prompt, checked.negative_prompt)
    else:
        build_prompt(
            category=category, user_text=checked.prompt, user_negative=checked.negative_prompt
        )
    return checked
