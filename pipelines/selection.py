"""Which installed files a run uses, and the size it paints at when none is asked for.

The checkpoint, the OpenPose and Canny ControlNets and the VAE are picked from MODELS_DIR by
name, or, unnamed, by what the files are: the checkpoint that inpaints first, then ControlNets
of the checkpoint's family (SD 1.5 or SDXL), so a folder holding both starter sets works
without naming anything. What a file is comes from its config or its safetensors header (a
pickle's keys only when two candidates must be told apart), remembered per file version.

This module does not import torch; reading a pickle's keys does, lazily.
"""

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from .architectures import CONTEXT_FAMILY, Architecture, detect_file
from .engines import FETCH_HINT
from .errors import ModelNotFoundError, PipelineError
from .ip_adapter import IPAdapterModels, fitting_encoder, pick, require_fit
from .params import CONTROL_NAMES, GenerationParams, IPAdapterUnit
from .registry import ModelEntry, resolve_model, scan_models

# The size each family was trained at, portrait (the shape of a fashion picture): SD 1.5's
# 512-pixel class and SDXL's 1024-pixel class (one of its training buckets, 2:3 as 512 × 768 is
# nearly). A run whose ``width``/``height`` are unset paints at its checkpoint's.
NATIVE_SIZES = {"sd15": (512, 768), "sdxl": (832, 1216)}
DEFAULT_FAMILY = "sd15"


@dataclass(frozen=True)
class EngineModels:
    """The installed models one run uses."""

    checkpoint: ModelEntry
    controlnets: tuple[ModelEntry, ...]
    vae: ModelEntry | None = None
    ip_adapter: IPAdapterModels | None = None


def select_models(
    models_dir: Path, params: GenerationParams, *, garment: bool = True
) -> EngineModels:
    """The checkpoint, the OpenPose and Canny ControlNets, the VAE and, for a run that paints
    a ``garment``, the IP-Adapter with its CLIP vision encoder.

    Names in ``params`` pick installed models (WebUI spelling, ``[hash]`` allowed); left empty,
    the checkpoint is one that inpaints, each ControlNet one whose name holds its kind
    ("openpose", "canny"), of the checkpoint's family when several are; the IP-Adapter the
    first of that family an installed encoder fits, none when there is none (it is optional).
    Raises ``ModelNotFoundError`` listing everything missing at once.
    """
    models_dir = Path(models_dir)
    entries = scan_models(models_dir)
    missing: list[str] = []
    if params.checkpoint:
        checkpoint = _named(entries, "checkpoints", params.checkpoint, missing)
    else:
        checkpoint = default_checkpoint(entries)
        if checkpoint is None:
            missing.append(f"an SD 1.5 or SDXL checkpoint in {models_dir / 'checkpoints'}")
    family = checkpoint_family(checkpoint) if checkpoint is not None else None
    nets = []
    for kind, unit in zip(CONTROL_NAMES, params.controlnets, strict=True):
        if unit.model:
            nets.append(_named(entries, "controlnet", unit.model, missing))
            continue
        net = _controlnet_for(entries, kind, family)
        if net is None:
            missing.append(
                f"a {kind} ControlNet (a name containing {kind!r}) in {models_dir / 'controlnet'}"
            )
        nets.append(net)
    vae = None
    if params.vae not in ("", "Automatic", "None"):
        vae = _named(entries, "vae", params.vae, missing)
    ip_adapter = None
    if garment and params.ip_adapter.enabled and checkpoint is not None:
        ip_adapter = _ip_adapter(entries, params.ip_adapter, family, missing)
    if missing:
        raise ModelNotFoundError(f"missing model files: {'; '.join(missing)}. {FETCH_HINT}")
    return EngineModels(checkpoint, tuple(nets), vae, ip_adapter)


def _ip_adapter(
    entries: list[ModelEntry], unit: IPAdapterUnit, family: str, missing: list[str]
) -> IPAdapterModels | None:
    """The named IP-Adapter with an encoder that fits it (either missing is added to
    ``missing``), or, unnamed, the first installed pair of ``family`` (None: off)."""
    if not unit.model:
        return pick(entries, family)
    adapter = _named(entries, "ipadapter", unit.model, missing)
    if adapter is None:
        return None
    needs = require_fit(adapter, family)
    encoder = fitting_encoder([e for e in entries if e.kind == "clip_vision"], needs)
    if encoder is None:
        missing.append(
            f"a CLIP vision encoder giving {needs.describe()} for {adapter.filename} in "
            f"{adapter.models_dir / 'clip_vision' if adapter.models_dir else 'clip_vision/'}"
        )
        return None
    return IPAdapterModels(adapter, encoder)


def default_checkpoint(entries: list[ModelEntry]) -> ModelEntry | None:
    """An inpainting checkpoint (9 UNet channels) before a normal one, told from the file: a
    diffusers folder's UNet config, a ``.safetensors`` header; a pickle by "inpaint" in its name
    (its keys would mean reading all of it). Then by name, as listed."""
    candidates = [entry for entry in entries if entry.kind == "checkpoints"]
    return next((e for e in candidates if _inpaints(e)), candidates[0] if candidates else None)


def checkpoint_family(entry: ModelEntry) -> str:
    """``sd15`` or ``sdxl``, from the checkpoint's config or keys; SD 1.5 when they cannot be
    read (loading it then says why)."""
    found = _architecture(entry, read_pickles=True)
    return found.family if found is not None and found.family else DEFAULT_FAMILY


def native_size(models_dir: Path, engine: str, params: GenerationParams) -> tuple[int, int]:
    """The size ``params``' checkpoint paints at natively: SDXL's for an SDXL checkpoint under
    the ``sd`` engine, SD 1.5's otherwise (the preview and tiny engines included)."""
    if engine != "sd":
        return NATIVE_SIZES[DEFAULT_FAMILY]
    entries = scan_models(Path(models_dir))
    if params.checkpoint:
        try:
            entry = resolve_model(entries, "checkpoints", params.checkpoint)
        except ModelNotFoundError:
            return NATIVE_SIZES[DEFAULT_FAMILY]  # selecting the models says it is missing
    else:
        entry = default_checkpoint(entries)
    return NATIVE_SIZES[checkpoint_family(entry) if entry else DEFAULT_FAMILY]


def at_native_size(models_dir: Path, engine: str, params: GenerationParams) -> GenerationParams:
    """``params`` with an unset ``width``/``height`` filled in from ``native_size``."""
    if params.width is not None and params.height is not None:
        return params
    width, height = native_size(models_dir, engine, params)
    return replace(params, width=params.width or width, height=params.height or height)


def _inpaints(entry: ModelEntry) -> bool:
    found = _architecture(entry, read_pickles=False)
    if found is None:
        return "inpaint" in entry.name.lower()
    return found.inpainting


def _architecture(entry: ModelEntry, *, read_pickles: bool) -> Architecture | None:
    """What ``entry`` is, or None where it cannot be told (cheaply, for a pickle unless
    ``read_pickles``)."""
    if entry.format == "diffusers":
        read = entry.path / ("unet" if entry.kind == "checkpoints" else "") / "config.json"
    elif entry.format == "safetensors" or read_pickles:
        read = entry.path
    else:
        return None
    try:
        return _architecture_of_file(read, entry.kind, read.stat().st_mtime_ns)
    except OSError:
        return None


@lru_cache(maxsize=256)
def _architecture_of_file(path: Path, kind: str, mtime_ns: int) -> Architecture | None:
    """What a diffusers config or a weights file says; remembered per file version, since every
    job asks (``mtime_ns`` is part of the key)."""
    try:
        if path.name == "config.json":
            config = json.loads(path.read_text())
            family = CONTEXT_FAMILY.get(config.get("cross_attention_dim"))
            return Architecture(kind, family, inpainting=config.get("in_channels") == 9)
        return detect_file(path)
    except (OSError, ValueError, PipelineError):
        return None  # unreadable: loading it says why, if it is ever picked


def _controlnet_for(entries: list[ModelEntry], kind: str, family: str | None):
    """The first ControlNet whose name holds ``kind``; of ``family`` when several do."""
    hinted = [e for e in entries if e.kind == "controlnet" and kind in e.name.lower()]
    if len(hinted) > 1 and family is not None:
        of_family = [e for e in hinted if _family_of(e) == family]
        hinted = of_family or hinted
    return hinted[0] if hinted else None


def _family_of(entry: ModelEntry) -> str | None:
    found = _architecture(entry, read_pickles=True)
    return found.family if found is not None else None


def _named(entries: list[ModelEntry], kind: str, name: str, missing: list[str]):
    """The installed model called ``name``; one that is not installed is added to
    ``missing``."""
    try:
        return resolve_model(entries, kind, name)
    except ModelNotFoundError as error:
        missing.append(str(error))
        return None
