"""The AUTOMATIC1111 WebUI API subset (``/sdapi/v1/…``) that existing clients speak.

Field names and response shapes follow the WebUI's ``modules/api/models.py`` and the ControlNet
extension's ``/controlnet/model_list``, so editor plugins, bots and batch scripts work unchanged.
A token is required: as the password of HTTP Basic (with the username), as WebUI clients
log in, or as ``Authorization: Token …``. ``txt2img`` makes a model shot: the garment,
pose and scene come in ``alwayson_scripts["try-on"]["args"][0]``, since a WebUI payload has no
place for them. ``img2img`` inpaints the client's own picture with its mask and ControlNet units
(an ``openpose*`` or ``canny`` preprocessor, or ``none`` with a map and an OpenPose or Canny
model; a ``reference_*`` or ``ip-adapter*`` unit reads its own ``image``, else the init
picture, as the extension's do). Generation runs in the workers; these endpoints wait for the
job, as the WebUI's do, up to JOB_DEADLINE.

Differences from the WebUI: the masked area always starts from the original picture (any
``inpainting_fill`` is read as "original"); without "only masked" the result keeps the init
picture's size; a ControlNet unit's ``image`` may be base64 or ``{"image": base64}``.

The body must be a JSON object (another content type gets 415). Its shape is checked here, at
the edge, before anything is stored: a value of the wrong JSON type is a 400 naming its place
(``alwayson_scripts.try-on.args.0.pose``), while keys we do not use are ignored and a null
means "the default", as in the WebUI.
"""

import base64
import json
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
)
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from catalog.models import Garment
from common.api_errors import ConflictError
from common.uploads import ANY_PICTURE_MAX_ASPECT, decode_base64_upload, open_untrusted_image
from pipelines.errors import InvalidInputError
from pipelines.infotext import parse_infotext, read_png_infotext
from pipelines.params import CONTROL_NAMES, REFERENCE_MODULES
from pipelines.request import CANNY_THRESHOLDS, control_slot

from . import deletion, intake, selectors
from .api_auth import TokenBasicAuthentication
from .client_options import AUTOMATIC_VAE, client_defaults
from .models import TryOnJob

# The WebUI names of our parameters; everything else in a payload is accepted and ignored, as
# the WebUI ignores what its scripts do not use.
PARAMS = (
    "prompt", "negative_prompt", "sampler_name", "scheduler", "steps", "cfg_scale", "seed",
    "width", "height", "denoising_strength", "mask_blur", "inpaint_full_res_padding",
    "enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps",
)  # fmt: skip
UNITS_FIELD = "alwayson_scripts.ControlNet.args"
REFERENCE = "reference"  # the slot of a reference_* unit (the garment steers by its picture)
IP_ADAPTER = "ip_adapter"  # the slot of an ip-adapter_* unit (the garment, through CLIP vision)
# The units that read a picture rather than a map: the garment's (txt2img), or in img2img
# their own image or the init picture. The same slots as intake's.
GARMENT_UNITS = intake.GARMENT_UNITS
TRYON_FIELD = "alwayson_scripts.try-on.args.0"
GARMENT_HINT = (
    'give {"try-on": {"args": [{"garment": <id of your garment>, "pose": …, "scene": …}]}}'
)
MAX_PICTURES = 8  # n_iter × batch_size, as the API's ``count`` allows
POLL_SECONDS = 0.25


def sdapi(methods):
    """A WebUI endpoint: HTTP Basic with an API token as the password (as WebUI clients log
    in), or the ``Authorization: Token …`` header; signed-in users only. Basic comes first, so
    a missing or wrong credential gets 401 with ``WWW-Authenticate: Basic``."""

    def decorate(view):
        view = permission_classes([permissions.IsAuthenticated])(view)
        view = authentication_classes([TokenBasicAuthentication, TokenAuthentication])(view)
        # The WebUI speaks JSON only; a form's values would all be text (415 instead).
        view = parser_classes([JSONParser])(view)
        # The WebUI documents these shapes; our OpenAPI schema describes our own API only.
        return extend_schema(exclude=True)(api_view(methods)(view))

    return decorate


def _b64_png(stored) -> str:
    with stored.open("rb") as picture:
        return base64.b64encode(picture.read()).decode()


# --- reading the payload: each reader refuses a value of the wrong JSON type, naming its place.


def _refused(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: [message]})


def _payload(request) -> dict:
    """The body, a JSON object (an empty body is an empty one)."""
    if not isinstance(request.data, dict):
        raise serializers.ValidationError("the body must be a JSON object")
    return request.data


def _object(value, field: str) -> dict:
    """``value``, a JSON object; null is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refused(field, "must be a JSON object")
    return value


def _list(value, field: str) -> list:
    """``value``, a JSON list; null is an empty one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _refused(field, "must be a list")
    return value


def _text(value, field: str) -> str:
    """``value``, text; null is empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _refused(field, "must be text")
    return value


def _whole_number(value, field: str, *, high: int) -> int:
    """``value``, a whole number from 1 to ``high``; null is 1."""
    if value is None:
        return 1
    # bool is an int in Python; "n_iter": true is a client bug, not 1 batch.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise _refused(field, f"must be a whole number from 1 to {high}")
    return value


def _flag(value, field: str) -> bool | None:
    """``value``, a WebUI flag: true or false, or 1 or 0 as its int fields take; null is None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _refused(field, "must be true or false (or 1 or 0)")


def _or_default(value, default):
    """``value``, or ``default`` where the client sent null (the WebUI's "not set")."""
    return default if value is None else value


def _script_args(payload: dict, script: str) -> list:
    """``alwayson_scripts[script]["args"]``, the arguments the WebUI gives that script."""
    scripts = _object(payload.get("alwayson_scripts"), "alwayson_scripts")
    field = f"alwayson_scripts.{script}"
    return _list(_object(scripts.get(script), field).get("args"), f"{field}.args")


# The WebUI's override_settings keys we honour, by our parameter's name.
OVERRIDES = {
    "checkpoint": "sd_model_checkpoint",
    "vae": "sd_vae",
    "clip_skip": "CLIP_stop_at_last_layers",
}


def _params_from_payload(request, payload: dict, units: dict[str, dict]) -> dict:
    """Our parameters from a WebUI payload and its ControlNet ``units`` (by slot), on top of
    the calling token's options (``client_options``), which ``override_settings`` overrides.

    Their values are checked by ``services`` (``pipelines.params``), which names each field.
    """
    params = client_defaults(request)
    params |= {name: payload[name] for name in PARAMS if payload.get(name) is not None}
    overrides = _object(payload.get("override_settings"), "override_settings")
    for ours, theirs in OVERRIDES.items():
        for key in (theirs, ours):  # "clip_skip" too, as earlier clients sent it
            if overrides.get(key) is not None:
                params[ours] = overrides[key]
    if params.get("vae") in AUTOMATIC_VAE:
        params.pop("vae")
    if any(slot in units for slot in CONTROL_NAMES):
        # A slot without a unit keeps its default (txt2img) or gets weight 0 (img2img).
        params["controlnet"] = [
            _unit(units[slot]) if slot in units else {} for slot in CONTROL_NAMES
        ]
    if REFERENCE in units:
        params["reference"] = _reference_unit(units[REFERENCE])
    if IP_ADAPTER in units:
        params["ip_adapter"] = _ip_adapter_unit(units[IP_ADAPTER])
    return params


def _units(payload: dict) -> dict[str, dict]:
    """The payload's enabled ControlNet units, by the slot ("openpose", "canny") each drives."""
    units: dict[str, dict] = {}
    for index, unit in enumerate(_script_args(payload, "ControlNet")):
        field = f"{UNITS_FIELD}.{index}"
        if not isinstance(unit, dict):
            raise _refused(field, "must be a JSON object")
        if unit.get("enabled") is False:
            continue  # as in the WebUI: a disabled unit does nothing
        module = _text(unit.get("module"), f"{field}.module") or "none"
        try:
            slot = _slot(module, _text(unit.get("model"), f"{field}.model"))
        except InvalidInputError as error:
            raise _refused(f"{field}.{error.argument}", error.message) from None
        if slot in units:
            raise _refused(field, f"one unit per kind: {slot} already has one")
        units[slot] = unit
    return units


def _slot(module: str, model: str) -> str:
    """Which of our units a WebUI unit drives, by its module (and model, for "none")."""
    if module in REFERENCE_MODULES:
        return REFERENCE
    if module.startswith("ip-adapter"):  # ip-adapter_clip_h, ip-adapter_clip_sd15, ...
        return IP_ADAPTER
    return control_slot(module, model)


def _unit(unit: dict) -> dict:
    """One sd-webui-controlnet unit's weight, range, model and control mode (a name or 0/1/2)."""
    known = {"weight", "guidance_start", "guidance_end", "model", "control_mode"}
    return {key: unit[key] for key in known if unit.get(key) not in (None, "", "None")}


def _reference_unit(unit: dict) -> dict:
    """A ``reference_*`` unit as our reference unit: its style fidelity is ``threshold_a``."""
    names = {"weight": "weight", "guidance_start": "guidance_start"}
    names |= {"guidance_end": "guidance_end", "threshold_a": "style_fidelity", "module": "module"}
    return {ours: unit[theirs] for theirs, ours in names.items() if unit.get(theirs) is not None}


def _ip_adapter_unit(unit: dict) -> dict:
    """An ``ip-adapter_*`` unit as our IP-Adapter unit: its weight and model (an installed
    IP-Adapter's name, ``[hash]`` allowed; the encoder is the one that fits it)."""
    found = {"weight": unit.get("weight"), "model": unit.get("model")}
    return {key: value for key, value in found.items() if value not in (None, "", "None")}


def _unit_image(unit: dict, field: str) -> str | None:
    """A unit's picture as the client sent it (base64, or ``{"image": base64}``), or None;
    anything else is refused, naming ``field``."""
    image = unit.get("image") or unit.get("input_image")
    if isinstance(image, dict):  # {"image": …, "mask": …} in newer extension versions
        image = image.get("image")
    if image and not isinstance(image, str):
        raise _refused(f"{field}.image", "must be a base64-encoded picture")
    return image or None


def _reference_input(units: dict[str, dict]) -> dict | None:
    """img2img's reference and IP-Adapter units' picture as ``intake.inpaint_job_create``'s
    ``reference``: a unit's own image, else (as the extension does) the init picture; None
    without either unit. Both read one picture, so two different ones are refused."""
    slots = [slot for slot in GARMENT_UNITS if slot in units]
    if not slots:
        return None
    given = {
        slot: image
        for slot in slots
        if (image := _unit_image(units[slot], f"{UNITS_FIELD}.{slot}")) is not None
    }
    if len(set(given.values())) > 1:
        raise _refused(UNITS_FIELD, "the reference and IP-Adapter units must read one picture")
    if not given:
        return {"image": None}
    slot, image = next(iter(given.items()))
    return {"image": decode_base64_upload(image, f"{UNITS_FIELD}.{slot}.image")}


def _control_inputs(units: dict[str, dict]) -> dict[str, dict]:
    """img2img's ControlNet units as ``intake.inpaint_job_create``'s ``controls``."""
    controls = {}
    for slot, unit in units.items():
        if slot in GARMENT_UNITS:
            continue
        field = f"{UNITS_FIELD}.{slot}"
        image = _unit_image(unit, field)
        controls[slot] = {
            "module": unit.get("module") or "none",  # text: _units checked it
            "image": decode_base64_upload(image, f"{field}.image") if image else None,
            "thresholds": (
                _or_default(unit.get("threshold_a"), CANNY_THRESHOLDS[0]),
                _or_default(unit.get("threshold_b"), CANNY_THRESHOLDS[1]),
            ),
        }
    return controls


def _wait(job: TryOnJob) -> TryOnJob:
    deadline = time.monotonic() + settings.JOB_DEADLINE
    while job.is_active and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        job.refresh_from_db()
    return job


def _images_response(payload: dict, jobs: list[TryOnJob]) -> Response:
    images, infotexts, seeds = [], [], []
    jobs = [_wait(job) for job in jobs]
    for job in jobs:
        if job.status == TryOnJob.Status.CANCELLED:
            continue  # interrupted: as the WebUI, answer with what was finished (see notices)
        if job.status != TryOnJob.Status.SUCCEEDED:
            body = {
                "error": job.error_type or job.status,
                "detail": job.error_message,
                "errors": job.error_message,
            }
            return Response(body, status=500 if job.status == TryOnJob.Status.FAILED else 409)
        for result in job.results.all():
            images.append(_b64_png(result.image))
            infotexts.append(result.infotext)
            seeds.append(result.seed)
    info = {
        "prompt": payload.get("prompt", ""),
        "negative_prompt": payload.get("negative_prompt", ""),
        "seed": seeds[0] if seeds else -1,
        "all_seeds": seeds,
        "infotexts": infotexts,
        "job_ids": [str(job.pk) for job in jobs],
        # Not the WebUI's: why fewer pictures came back than were asked for, if they did.
        "notices": [job.notice for job in jobs if job.notice]
        + [f"job {job.pk} was interrupted" for job in jobs if job.status == job.Status.CANCELLED],
    }
    return Response({"images": images, "parameters": payload, "info": json.dumps(info)})


def _model_shot_choice(payload: dict) -> dict:
    """``alwayson_scripts["try-on"]["args"][0]`` as ``intake.model_shot_batch_create``'s
    arguments: the garment's id (unchecked), the pose, the scene and the model's looks."""
    args = _script_args(payload, "try-on")
    choice = _object(args[0] if args else None, TRYON_FIELD)
    looks = _object(choice.get("model_attributes"), f"{TRYON_FIELD}.model_attributes")
    return {
        "garment": choice.get("garment"),
        "poses": [_text(choice.get("pose"), f"{TRYON_FIELD}.pose") or "front_standing"],
        "scenes": [_text(choice.get("scene"), f"{TRYON_FIELD}.scene")],
        "model_attributes": {
            name: _text(word, f"{TRYON_FIELD}.model_attributes.{name}")
            for name, word in looks.items()
        },
    }


def _garment(garment_id, owner) -> Garment:
    """``owner``'s garment with this id."""
    field = f"{TRYON_FIELD}.garment"
    if garment_id is None:
        raise _refused(field, GARMENT_HINT)
    if isinstance(garment_id, bool) or not isinstance(garment_id, int):
        raise _refused(field, "must be the id (a whole number) of one of your garments")
    garment = Garment.objects.filter(pk=garment_id, merchant=owner).first()
    if garment is None:
        raise _refused(field, f"you have no garment with id {garment_id}")
    return garment


@sdapi(["POST"])
def txt2img(request):
    """A model shot: ``alwayson_scripts["try-on"]["args"][0]`` = {garment, pose, scene}."""
    payload = _payload(request)
    choice = _model_shot_choice(payload)
    garment = _garment(choice.pop("garment"), request.user)
    params = _params_from_payload(request, payload, _units(payload))
    # The WebUI's txt2img: no hires pass unless enable_hr, whose strength is then
    # denoising_strength (the first pass paints from nothing).
    params["enable_hr"] = bool(_flag(params.get("enable_hr"), "enable_hr"))
    if params["enable_hr"] is True and "denoising_strength" in params:
        params["hr_denoising_strength"] = params.pop("denoising_strength")
    try:
        jobs = intake.model_shot_batch_create(
            owner=request.user, garment=garment, count=_count(payload), params=params, **choice
        )
    except intake.TooManyActiveJobs as error:
        raise ConflictError(str(error)) from None
    return _images_response(payload, jobs)


@sdapi(["POST"])
def img2img(request):
    """Inpaint ``init_images[0]`` where ``mask`` is white (all of it without a mask)."""
    payload = _payload(request)
    images = _list(payload.get("init_images"), "init_images")
    if not images or not images[0]:
        raise _refused("init_images", "give one base64-encoded picture")
    units = _units(payload)
    params = _params_from_payload(request, payload, units)
    for slot in GARMENT_UNITS:
        if slot not in units:
            params[slot] = {"weight": 0.0}  # as in the WebUI: only the units given steer
    params["batch_size"] = _count(payload)
    only_masked = _flag(payload.get("inpaint_full_res"), "inpaint_full_res")
    if only_masked is not None:
        params["inpaint_full_res"] = only_masked
    invert = _flag(payload.get("inpainting_mask_invert"), "inpainting_mask_invert")
    mask = payload.get("mask")
    try:
        job = intake.inpaint_job_create(
            owner=request.user,
            image=decode_base64_upload(images[0], "init_images"),
            mask=decode_base64_upload(mask, "mask") if mask else None,
            invert_mask=bool(invert),
            controls=_control_inputs(units),
            reference=_reference_input(units),
            params=params,
        )
    except intake.TooManyActiveJobs as error:
        raise ConflictError(str(error)) from None
    # As the WebUI does unless include_init_images: the pictures are not sent back.
    return _images_response({**payload, "init_images": None, "mask": None}, [job])


def _count(payload: dict) -> int:
    """Pictures asked for: ``n_iter`` batches of ``batch_size``."""
    batches = _whole_number(payload.get("n_iter"), "n_iter", high=MAX_PICTURES)
    count = batches * _whole_number(payload.get("batch_size"), "batch_size", high=MAX_PICTURES)
    if count > MAX_PICTURES:
        raise _refused("n_iter", f"n_iter × batch_size must be from 1 to {MAX_PICTURES}")
    return count


@sdapi(["GET"])
def progress(request):
    """The WebUI's progress of the caller's current job (the oldest active one)."""
    job = (
        selectors.jobs_of(user=request.user, session_key=None)
        .filter(status__in=TryOnJob.ACTIVE)
        .order_by("created_at")
        .first()
    )
    if job is None:
        state = {
            "skipped": False,
            "interrupted": False,
            "job": "",
            "job_count": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        }
        return Response(
            {
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": state,
                "current_image": None,
                "textinfo": None,
            }
        )
    count = selectors.jobs_of(user=request.user, session_key=None).filter(
        status__in=TryOnJob.ACTIVE
    )
    state = {
        "skipped": False,
        "interrupted": job.cancel_requested,
        "job": str(job.pk),
        "job_count": count.count(),
        "job_timestamp": job.created_at.strftime("%Y%m%d%H%M%S"),
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": int(job.params.get("steps", 0)),
    }
    return Response(
        {
            "progress": job.progress,
            "eta_relative": 0.0,
            "state": state,
            "current_image": _b64_png(job.preview) if job.preview else None,
            "textinfo": job.step,
        }
    )


@sdapi(["POST"])
def interrupt(request):
    """Stop the caller's queued and running jobs (the WebUI stops its current one)."""
    for job in selectors.jobs_of(user=request.user, session_key=None).filter(
        status__in=TryOnJob.ACTIVE
    ):
        deletion.tryon_job_cancel(job=job)
    return Response({})


@sdapi(["GET"])
def samplers(request):
    from pipelines.samplers import sampler_aliases, webui_sampler_names

    return Response(
        [
            {"name": name, "aliases": list(sampler_aliases(name)), "options": {}}
            for name in webui_sampler_names()
        ]
    )


@sdapi(["POST"])
def png_info(request):
    """The generation parameters inside a picture, as the WebUI's PNG Info reads them."""
    upload = decode_base64_upload(_payload(request).get("image"), "image")
    try:
        picture = open_untrusted_image(upload.read(), max_aspect=ANY_PICTURE_MAX_ASPECT)
    except ValidationError as error:
        raise ValidationError({"image": error.messages}) from None
    text = read_png_infotext(picture) or ""
    items = {key: value for key, value in picture.info.items() if isinstance(value, str)}
    return Response(
        {"info": text, "items": items, "parameters": parse_infotext(text) if text else {}}
    )
