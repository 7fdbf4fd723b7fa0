"""The generation parameters, named and bounded as in the AUTOMATIC1111 WebUI's API.

``GenerationParams`` is a frozen, validated value: building one with a value out of range raises
``InvalidInputError`` naming the field, and nothing is silently "fixed". ``params_from_dict``
reads the WebUI's JSON spelling (``steps``, ``cfg_scale``, ``sampler_name``, ...) with the
ControlNet units under ``controlnet``. Nothing here imports torch: the web process validates a
request with it before queueing a job.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import InvalidInputError
from .samplers import resolve_sampler

MAX_SEED = 2**32 - 1
SIZE_RANGE = (64, 2048)
# sd-webui-controlnet's control modes (its API also takes 0, 1, 2).
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
CONTROL_NAMES = ("openpose", "canny")


def _fail(name: str, message: str) -> None:
    raise InvalidInputError(name, message)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    # bool is an int in Python; "steps": true is a client bug, not 1 step.
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        _fail(name, f"must be from {low} to {high}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float, *, open_low: bool = False):
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(name, f"must be a number, got {value!r}")
    if value > high or value < low or (open_low and value == low):
        bound = f"above {low}" if open_low else f"from {low}"
        _fail(name, f"must be {bound} to {high}, got {value}")


def _check_text(name: str, value: Any, limit: int) -> None:
    if not isinstance(value, str):
        _fail(name, f"must be text, got {type(value).__name__}")
    if len(value) > limit:
        _fail(name, f"is {len(value)} characters long; at most {limit} are allowed")


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet unit: how strongly and during which part of sampling it steers.

    ``guidance_start``/``guidance_end`` are fractions of the sampling steps, as in the WebUI.
    """

    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    model: str = ""  # an installed ControlNet's name; empty: found by its kind

    def __post_init__(self) -> None:
        _check_float("weight", self.weight, 0.0, 2.0)
        _check_float("guidance_start", self.guidance_start, 0.0, 1.0)
        _check_float("guidance_end", self.guidance_end, 0.0, 1.0)
        if self.guidance_end <= self.guidance_start:
            _fail("guidance_end", "must be greater than guidance_start")
        mode = self.control_mode
        if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode < len(CONTROL_MODES):
            object.__setattr__(self, "control_mode", CONTROL_MODES[mode])
        elif mode not in CONTROL_MODES:
            _fail("control_mode", f"must be one of {', '.join(CONTROL_MODES)} (or 0, 1, 2)")
        _check_text("model", self.model, 200)


# The WebUI's latent upscale modes: the first pass's latents enlarged by torch's interpolate in
# this mode (antialiased or not), as its ``shared.latent_upscale_modes`` does.
LATENT_UPSCALE_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# The WebUI's "Hires. fix" upscalers this engine has: pixel ones, then the latent ones.
PIXEL_UPSCALERS = ("Lanczos", "Nearest")
HR_UPSCALERS = (*PIXEL_UPSCALERS, *LATENT_UPSCALE_MODES)
HIRES_MAX_SIDE = 4096  # the final picture's longest side with the hires pass

# The WebUI ControlNet extension's reference preprocessors (pipelines.reference).
REFERENCE_MODULES = ("reference_only", "reference_adain", "reference_adain+attn")


@dataclass(frozen=True)
class ReferenceUnit:
    """The reference unit: the garment's own picture steering what is painted inside its edges.

    As the WebUI ControlNet extension's third kind of unit: ``module`` one of
    ``REFERENCE_MODULES``; ``weight`` 0 turns it off, 1 uses every layer; ``style_fidelity``
    (the extension's ``threshold_a``) from 0 to 1; ``guidance_start``/``guidance_end`` as for
    a ControlNet unit.
    """

    module: str = "reference_only"
    weight: float = 0.8
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    style_fidelity: float = 0.5

    def __post_init__(self) -> None:
        if self.module not in REFERENCE_MODULES:
            _fail("module", f"must be one of {', '.join(REFERENCE_MODULES)}, got {self.module!r}")
        _check_float("weight", self.weight, 0.0, 2.0)
        _check_float("guidance_start", self.guidance_start, 0.0, 1.0)
        _check_float("guidance_end", self.guidance_end, 0.0, 1.0)
        if self.guidance_end <= self.guidance_start:
            _fail("guidance_end", "must be greater than guidance_start")
        _check_float("style_fidelity", self.style_fidelity, 0.0, 1.0)

    @property
    def enabled(self) -> bool:
        return self.weight > 0


@dataclass(frozen=True)
class IPAdapterUnit:
    """The IP-Adapter unit: the garment's picture, through a CLIP vision encoder, as extra
    cross-attention tokens (``pipelines.ip_adapter``).

    ``model`` names an installed IP-Adapter (empty: the first of the checkpoint's family that
    an installed CLIP vision encoder fits); ``weight`` is diffusers' ``ip_adapter_scale`` (the
    WebUI unit's weight), 0 turns it off. With no IP-Adapter installed the unit is simply off.
    """

    model: str = ""
    weight: float = 0.6

    def __post_init__(self) -> None:
        _check_text("model", self.model, 200)
        _check_float("weight", self.weight, 0.0, 2.0)

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def _default_units() -> tuple[ControlUnit, ControlUnit]:
    # The pose steers the whole run; the garment's edges matter most while the shapes form.
    return (ControlUnit(weight=1.0), ControlUnit(weight=0.7, guidance_end=0.8))


@dataclass(frozen=True)
class GenerationParams:
    """Everything that decides the generated picture besides the inputs and the weights.

    ``prompt`` and ``negative_prompt`` are added to the server-built prompts; ``width`` and
    ``height`` are the processing size (the canvas of a model shot; the size the masked area of
    a photo is processed at); None means the checkpoint's native size, 512 × 768 for SD 1.5
    and 832 × 1216 for SDXL (``selection.at_native_size``, which a run applies first).
    ``mask_blur`` None means 2.5% of the shoulder width;
    ``denoising_strength`` None means the mode's default (0.75 for a photo, whose composite
    already shows the garment; 1.0 for a model shot, whose model is painted from nothing).
    ``controlnets`` holds the OpenPose unit, then the Canny unit.
    """

    prompt: str = ""
    negative_prompt: str = ""
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    width: int | None = None
    height: int | None = None
    batch_size: int = 1
    denoising_strength: float | None = None
    clip_skip: int = 1
    mask_blur: float | None = None
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 32
    color_correction: bool = True
    controlnets: tuple[ControlUnit, ...] = field(default_factory=_default_units)
    checkpoint: str = ""
    vae: str = ""
    reference: ReferenceUnit = field(default_factory=ReferenceUnit)
    ip_adapter: IPAdapterUnit = field(default_factory=IPAdapterUnit)
    # The WebUI's "Hires. fix": the first pass at the size above, upscaled by ``hr_scale`` with
    # ``hr_upscaler``, then a second pass at ``hr_denoising_strength`` (``hr_second_pass_steps``
    # steps; 0: ``steps``) with the same ControlNets, maps re-scaled, and reference.
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = "Lanczos"
    hr_second_pass_steps: int = 0
    hr_denoising_strength: float = 0.5

    def __post_init__(self) -> None:
        _check_text("prompt", self.prompt, 2000)
        _check_text("negative_prompt", self.negative_prompt, 2000)
        resolve_sampler(self.sampler_name, self.scheduler)
        _check_int("steps", self.steps, 1, 150)
        _check_float("cfg_scale", self.cfg_scale, 1.0, 30.0)
        _check_int("seed", self.seed, -1, MAX_SEED)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            _check_int(name, value, *SIZE_RANGE)
            if value % 8:
                _fail(name, f"must be a multiple of 8, got {value}")
        _check_int("batch_size", self.batch_size, 1, 8)
        if self.denoising_strength is not None:
            _check_float("denoising_strength", self.denoising_strength, 0.0, 1.0, open_low=True)
        _check_int("clip_skip", self.clip_skip, 1, 12)
        if self.mask_blur is not None:
            _check_float("mask_blur", self.mask_blur, 0.0, 64.0)
        for name in ("inpaint_full_res", "color_correction"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, f"must be true or false, got {getattr(self, name)!r}")
        _check_int("inpaint_full_res_padding", self.inpaint_full_res_padding, 0, 256)
        units = tuple(self.controlnets)
        if len(units) != len(CONTROL_NAMES) or not all(isinstance(u, ControlUnit) for u in units):
            _fail("controlnets", f"needs {len(CONTROL_NAMES)} units: {', '.join(CONTROL_NAMES)}")
        object.__setattr__(self, "controlnets", units)
        _check_text("checkpoint", self.checkpoint, 200)
        _check_text("vae", self.vae, 200)
        if not isinstance(self.reference, ReferenceUnit):
            _fail("reference", "must be a reference unit")
        if not isinstance(self.ip_adapter, IPAdapterUnit):
            _fail("ip_adapter", "must be an IP-Adapter unit")
        if not isinstance(self.enable_hr, bool):
            _fail("enable_hr", f"must be true or false, got {self.enable_hr!r}")
        _check_float("hr_scale", self.hr_scale, 1.0, 4.0)
        if self.hr_upscaler not in HR_UPSCALERS:
            _fail(
                "hr_upscaler",
                f"must be one of {', '.join(HR_UPSCALERS)} (model upscalers such as ESRGAN are "
                f"not available here), got {self.hr_upscaler!r}",
            )
        _check_int("hr_second_pass_steps", self.hr_second_pass_steps, 0, 150)
        _check_float("hr_denoising_strength", self.hr_denoising_strength, 0.0, 1.0, open_low=True)

    @property
    def hires_scale(self) -> float:
        """How much the hires pass enlarges the picture: 1 when it is off."""
        return self.hr_scale if self.enable_hr else 1.0

    def hires_size(self) -> tuple[int, int]:
        """The second pass's size (the first pass's when the hires pass is off): the size times
        ``hr_scale``, down to a multiple of 8. Needs the size set (``at_native_size``)."""
        size = (self.width, self.height)
        if self.hires_scale == 1.0:
            return size
        scaled = tuple(int(side * self.hires_scale) // 8 * 8 for side in size)
        if max(scaled) > HIRES_MAX_SIDE:
            _fail(
                "hr_scale",
                f"{size[0]}×{size[1]} × {self.hr_scale} is {scaled[0]}×{scaled[1]}; the hires "
                f"pass makes at most {HIRES_MAX_SIDE} pixels a side",
            )
        return scaled

    @property
    def sampler(self):
        """The resolved ``SamplerSpec``."""
        return resolve_sampler(self.sampler_name, self.scheduler)

    def with_seed(self, seed: int) -> "GenerationParams":
        return replace(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, readable back by ``params_from_dict``."""
        data = asdict(self)
        data["controlnet"] = [asdict(unit) for unit in self.controlnets]
        del data["controlnets"]
        return data


# The units given as one JSON object each, by parameter name.
_OBJECT_UNITS = {"reference": ReferenceUnit, "ip_adapter": IPAdapterUnit}
_PARAM_NAMES = {f.name for f in fields(GenerationParams)} - {"controlnets", *_OBJECT_UNITS}
_UNIT_NAMES = {f.name for f in fields(ControlUnit)}
_KNOWN = _PARAM_NAMES | {"controlnet", *_OBJECT_UNITS}


def params_from_dict(data: Mapping[str, Any]) -> GenerationParams:
    """``GenerationParams`` from the WebUI's JSON names; unknown names are refused.

    ``controlnet`` is a list of at most two unit objects (OpenPose, then Canny) with ``weight``,
    ``guidance_start``, ``guidance_end``, ``control_mode`` and ``model``; units left out keep
    their defaults.
    """
    if not isinstance(data, Mapping):
        raise InvalidInputError("params", "must be an object of named parameters")
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise InvalidInputError(
            "params",
            f"unknown parameters {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}",
        )
    values = {name: data[name] for name in _PARAM_NAMES if name in data}
    if "controlnet" in data:
        values["controlnets"] = _units_from_list(data["controlnet"])
    for name, unit_class in _OBJECT_UNITS.items():
        if name in data:
            values[name] = _object_unit(name, unit_class, data[name])
    try:
        return GenerationParams(**values)
    except TypeError as error:  # a value of a type the checks never expected
        raise InvalidInputError("params", str(error)) from None


def _units_from_list(items: Any) -> tuple[ControlUnit, ...]:
    if not isinstance(items, list | tuple) or len(items) > len(CONTROL_NAMES):
        raise InvalidInputError(
            "controlnet", f"must be a list of at most {len(CONTROL_NAMES)} units"
        )
    units = list(_default_units())
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"controlnet.{index}", "must be an object")
        unknown = sorted(set(item) - _UNIT_NAMES)
        if unknown:
            raise InvalidInputError(f"controlnet.{index}", f"unknown fields {', '.join(unknown)}")
        try:
            units[index] = replace(units[index], **item)
        except InvalidInputError as error:
            raise InvalidInputError(f"controlnet.{index}.{error.argument}", error.message) from None
    return tuple(units)


def _object_unit(name: str, unit_class: type, item: Any):
    """The ``reference`` or ``ip_adapter`` unit from its JSON object; fields left out keep their
    defaults."""
    if not isinstance(item, Mapping):
        raise InvalidInputError(name, "must be an object")
    unknown = sorted(set(item) - {f.name for f in fields(unit_class)})
    if unknown:
        raise InvalidInputError(name, f"unknown fields {', '.join(unknown)}")
    try:
        return unit_class(**item)
    except InvalidInputError as error:
        raise InvalidInputError(f"{name}.{error.argument}", error.message) from None
