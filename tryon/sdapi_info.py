"""The WebUI API's lists and options (``/sdapi/v1/…``, ``/controlnet/…``): what clients ask
before their first picture.

Lists tell the truth: models are those the configured engine would use (the tiny kit's under
``TRYON_ENGINE=tiny``, MODELS_DIR's under ``sd``, none under ``preview``), with the WebUI's
``title``/``model_name``/``hash``/``filename`` so a client can send a name back. Where the
WebUI does something a shop must not let one client do, the answer keeps the WebUI's shape and
the README says how it differs: options set here are this token's own defaults (``ClientOptions``),
never the server's; refreshing is a no-op (every list is read afresh); no file path outside
MODELS_DIR is shown. Nothing here imports torch.
"""

import os
from pathlib import Path

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response

from pipelines.engines import find_weights, resolve_engine
from pipelines.errors import ModelNotFoundError, PipelineError
from pipelines.params import LATENT_UPSCALE_MODES, PIXEL_UPSCALERS, REFERENCE_MODULES
from pipelines.registry import (
    ModelEntry,
    extension_hash,
    file_sha256,
    model_hash,
    resolve_model,
    scan_models,
    weights_file,
)
from pipelines.request import MODULES
from pipelines.samplers import webui_schedulers

from .admin_models import HASH_CACHE_NAME
from .client_options import AUTOMATIC_VAE, client_options
from .models import ClientOptions
from .sdapi import _payload, _refused, _text, sdapi

# The IP-Adapter modules a unit may name (the extension's; the encoder is the one that fits).
IP_ADAPTER_MODULES = ("ip-adapter_clip_h", "ip-adapter_clip_g", "ip-adapter_clip_sd15")
CONTROLNET_API_VERSION = 2  # what sd-webui-controlnet's /controlnet/version says
CLIP_SKIP_RANGE = (1, 12)


# --- what the engine would use -------------------------------------------------------------------


def engine_models_dir() -> Path | None:
    """The folder the configured engine loads from: MODELS_DIR, its ``tiny/`` kit, or None
    (the preview engine, or ``sd`` without weights). Only names are read: no torch here."""
    try:
        engine = resolve_engine(settings.TRYON_ENGINE, find_weights(settings.MODELS_DIR))
    except PipelineError:
        return None
    if engine == "preview":
        return None
    return Path(settings.MODELS_DIR) / "tiny" if engine == "tiny" else Path(settings.MODELS_DIR)


def installed(kind: str) -> list[ModelEntry]:
    """The configured engine's models of ``kind`` (a MODELS_DIR folder's kind)."""
    folder = engine_models_dir()
    return [e for e in scan_models(folder) if e.kind == kind] if folder else []


def _hash_cache() -> Path:
    return Path(settings.VAR_DIR) / HASH_CACHE_NAME


def _short(entry: ModelEntry) -> str | None:
    try:
        return model_hash(entry, cache_file=_hash_cache())
    except (OSError, ModelNotFoundError):
        return None


def _extension_name(entry: ModelEntry) -> str:
    try:
        return f"{entry.name} [{extension_hash(entry)}]"
    except (OSError, ModelNotFoundError):
        return entry.name


def _title(entry: ModelEntry) -> str:
    """The WebUI's title of a checkpoint: ``file.safetensors [0123456789]``."""
    short = _short(entry)
    return f"{entry.filename} [{short}]" if short else entry.filename


def _shown_path(entry: ModelEntry) -> str:
    """The model's path below MODELS_DIR: clients only show it, and the server's layout is no
    one else's business."""
    return entry.path.relative_to(entry.models_dir).as_posix()


def _checkpoint_row(entry: ModelEntry) -> dict:
    try:
        sha256 = file_sha256(weights_file(entry), cache_file=_hash_cache())
    except (OSError, ModelNotFoundError):
        sha256 = None
    return {
        "title": _title(entry),
        "model_name": entry.name,
        "hash": sha256[:10] if sha256 else None,
        "sha256": sha256,
        "filename": _shown_path(entry),
        "config": None,
    }


@sdapi(["GET"])
def sd_models(request):
    return Response([_checkpoint_row(entry) for entry in installed("checkpoints")])


@sdapi(["GET"])
def loras(request):
    return Response(
        [
            {"name": e.name, "alias": e.name, "path": _shown_path(e), "metadata": {}}
            for e in installed("loras")
        ]
    )


@sdapi(["GET"])
def sd_vae(request):
    return Response([{"model_name": e.name, "filename": _shown_path(e)} for e in installed("vae")])


@sdapi(["GET"])
def controlnet_model_list(request):
    """The ControlNets and IP-Adapters, as the extension names them: ``name [8 hex]``, its
    own hash (``extension_hash``: 64 KiB read per file, never the whole file)."""
    entries = installed("controlnet") + installed("ipadapter")
    names = [_extension_name(e) for e in entries]
    return Response({"model_list": names})


# --- per-token options ---------------------------------------------------------------------------


def _current_checkpoint(options: ClientOptions) -> ModelEntry | None:
    from pipelines.selection import default_checkpoint

    entries = installed("checkpoints")
    if options.sd_model_checkpoint:
        try:
            return resolve_model(entries, "checkpoints", options.sd_model_checkpoint)
        except ModelNotFoundError:
            return None  # removed since: the next picture says so
    return default_checkpoint(entries)


@sdapi(["GET", "POST"])
def options(request):
    """GET: the options WebUI clients read (the checkpoint, VAE, clip skip, picture format).
    POST: set ``sd_model_checkpoint``, ``sd_vae`` or ``CLIP_stop_at_last_layers`` for this
    token only; other options are the server's and are left as they are (as the WebUI's own
    API does with an option it does not know)."""
    found = client_options(request)
    if request.method == "POST":
        _set_options(found, _payload(request))
        return JsonResponse(None, safe=False)  # the WebUI answers null
    checkpoint = _current_checkpoint(found)
    row = _checkpoint_row(checkpoint) if checkpoint else {"title": "", "sha256": None}
    return Response(
        {
            "sd_model_checkpoint": row["title"],
            "sd_checkpoint_hash": row["sha256"],
            "sd_vae": found.sd_vae,
            "CLIP_stop_at_last_layers": found.clip_skip,
            "samples_format": "png",
            "grid_format": "png",
            "control_net_unit_count": 4,
        }
    )


def _set_options(found: ClientOptions, data: dict) -> None:
    """Check every option given, then store them together (nothing is stored on a refusal)."""
    if data.get("sd_model_checkpoint") is not None:
        name = _text(data["sd_model_checkpoint"], "sd_model_checkpoint")
        try:
            entry = resolve_model(installed("checkpoints"), "checkpoints", name)
        except ModelNotFoundError as error:
            raise _refused("sd_model_checkpoint", str(error)) from None
        found.sd_model_checkpoint = entry.filename
    if data.get("sd_vae") is not None:
        name = _text(data["sd_vae"], "sd_vae")
        if name not in AUTOMATIC_VAE:
            try:
                name = resolve_model(installed("vae"), "vae", name).filename
            except ModelNotFoundError as error:
                raise _refused("sd_vae", str(error)) from None
        found.sd_vae = name
    if data.get("CLIP_stop_at_last_layers") is not None:
        value = data["CLIP_stop_at_last_layers"]
        low, high = CLIP_SKIP_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _refused("CLIP_stop_at_last_layers", f"must be a whole number {low} to {high}")
        found.clip_skip = value
    if found.token_id is not None:
        found.save()


# --- lists that do not depend on the models ------------------------------------------------------


@sdapi(["GET"])
def scripts(request):
    """The always-on scripts this server reads from ``alwayson_scripts``."""
    return Response({"txt2img": ["controlnet", "try-on"], "img2img": ["controlnet"]})


@sdapi(["GET"])
def upscalers(request):
    rows = [{"name": "None", "model_name": None, "model_path": None, "model_url": None}]
    rows += [
        {"name": name, "model_name": None, "model_path": None, "model_url": None}
        for name in PIXEL_UPSCALERS
    ]
    return Response([{**row, "scale": 4} for row in rows])


@sdapi(["GET"])
def latent_upscale_modes(request):
    return Response([{"name": name} for name in LATENT_UPSCALE_MODES])


@sdapi(["GET"])
def schedulers(request):
    return Response(webui_schedulers())


@sdapi(["GET"])
def embeddings(request):
    """Textual-inversion embeddings are not loaded here: both lists are empty."""
    return Response({"loaded": {}, "skipped": {}})


@sdapi(["GET"])
def memory(request):
    """This web process's memory; the GPU belongs to the workers, which it does not see."""
    return Response(
        {"ram": _ram(), "cuda": {"error": "the GPU is used by the workers, not this process"}}
    )


def _ram() -> dict:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        used = int(Path("/proc/self/statm").read_text().split()[1]) * page
    except (OSError, ValueError, IndexError):
        return {"error": "memory figures are not available on this system"}
    return {"free": total - used, "used": used, "total": total}


@sdapi(["GET"])
def cmd_flags(request):
    """The WebUI's flags that describe this server (credentials and paths are never shown)."""
    return Response(
        {
            "api": True,
            "nowebui": False,
            "api_auth": None,
            "listen": False,
            "ckpt_dir": None,
            "lora_dir": None,
            "medvram": False,
            "lowvram": False,
            "no_half": False,
            "xformers": False,
        }
    )


@sdapi(["POST"])
def refresh(request):
    """refresh-checkpoints, -loras, -vae, -embeddings: every list is read afresh anyway."""
    return JsonResponse(None, safe=False)


@sdapi(["GET"])
def extensions(request):
    """What this server answers for, as the WebUI lists its extensions: the ControlNet
    extension's API and the try-on script are built in, not installed extensions."""
    built_in = {"remote": "", "branch": "", "commit_hash": "", "commit_date": 0}
    return Response(
        [
            {"name": "sd-webui-controlnet", **built_in, "version": "built-in", "enabled": True},
            {"name": "try-on", **built_in, "version": "built-in", "enabled": True},
        ]
    )


# --- the ControlNet extension's API --------------------------------------------------------------


@sdapi(["GET"])
def controlnet_version(request):
    return Response({"version": CONTROLNET_API_VERSION})


@sdapi(["GET"])
def controlnet_module_list(request):
    """The preprocessors a unit may name: OpenPose, Canny, none, reference and IP-Adapter."""
    modules = [*MODULES, *REFERENCE_MODULES, *IP_ADAPTER_MODULES]
    model_free = set(REFERENCE_MODULES)
    detail = {name: {"model_free": name in model_free, "sliders": []} for name in modules}
    return Response({"module_list": modules, "module_detail": detail})


@sdapi(["GET"])
def controlnet_settings(request):
    return Response({"control_net_unit_count": 4})


@csrf_exempt  # a client's POST to a path we lack gets the JSON 404, not Django's CSRF page
def not_found(request, path=""):
    """Any other ``/sdapi/v1/…`` or ``/controlnet/…`` path: FastAPI's JSON 404 (``detail``),
    with our API's ``message`` beside it, never a page."""
    message = f"no such endpoint: {request.path}"
    return JsonResponse({"detail": "Not Found", "message": message}, status=404)
