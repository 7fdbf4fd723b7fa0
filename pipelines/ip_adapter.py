"""IP-Adapter: the garment's picture steering the painting through extra cross-attention tokens.

A CLIP vision encoder (MODELS_DIR ``clip_vision/``) reads the garment's cut-out; the
IP-Adapter (``ipadapter/``) turns what it saw into a few tokens that every cross-attention of
the UNet attends to beside the prompt's, weighted by the unit's ``weight`` (diffusers'
IP-Adapter scale). The files are ComfyUI's, under its folder names: h94/IP-Adapter's
``ip-adapter_sd15.safetensors``, ``ip-adapter-plus_sd15.safetensors`` and
``ip-adapter_sdxl_vit-h.safetensors`` (Apache-2.0) read
``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`` (MIT); ``ip-adapter_sdxl.safetensors`` reads
``CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors``. ``.bin`` adapters load too (tensors only).

Which encoder an adapter reads is told from the shapes: a plain adapter projects the encoder's
image embedding (its ``visual_projection`` width), a "plus" adapter its penultimate hidden
states (its hidden width). FaceID adapters need insightface's face embeddings (whose models do
not allow commercial use) and are refused by name, as are full-face ones.

Picking the files reads only their shapes; loading (``load_adapter``, ``load_encoder``,
``attach``) imports torch and transformers lazily.
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .architectures import FAMILY_NAMES, Architecture, detect, tensor_shapes
from .cache import cached_model
from .errors import InvalidInputError, PipelineError, is_out_of_memory
from .registry import (
    CONFIG_DIR_SUFFIX,
    ModelEntry,
    check_inside_models_dir,
    require_listed,
    weights_file,
)

SUPPORTED_LAYOUTS = ("plain", "plus")
# The attention heads of the released CLIP vision towers, by hidden width (ViT-B/16 and /32,
# ViT-L/14, ViT-H/14, ViT-bigG/14); shapes do not show them. Other widths: 64-wide heads.
_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
_PROJECTION = "visual_projection.weight"
_CLASS = "vision_model.embeddings.class_embedding"


@dataclass(frozen=True)
class Needs:
    """What an IP-Adapter reads from its encoder: ``image_embeds`` (the projected embedding)
    or ``hidden_states`` (the penultimate layer), ``width`` wide."""

    feature: str
    width: int

    def describe(self) -> str:
        what = "image embeddings" if self.feature == "image_embeds" else "hidden states"
        return f"{self.width}-wide {what}"


@dataclass(frozen=True)
class IPAdapterModels:
    """The IP-Adapter a run uses and the CLIP vision encoder that feeds it."""

    adapter: ModelEntry
    encoder: ModelEntry


def adapter_architecture(entry: ModelEntry) -> Architecture:
    """What the IP-Adapter file ``entry`` is (kind ``ipadapter``); refuses anything else."""
    found = detect(_shapes(entry), shown=entry.filename)
    if found.kind != "ipadapter":
        raise InvalidInputError(
            "ip_adapter", f"{entry.filename} is a {found.label}, not an IP-Adapter"
        )
    return found


def adapter_needs(entry: ModelEntry) -> Needs:
    """What ``entry``'s IP-Adapter reads from its encoder; refuses the layouts not supported."""
    found = adapter_architecture(entry)
    if found.layout not in SUPPORTED_LAYOUTS:
        why = (
            "it needs insightface's face embeddings, whose models do not allow commercial use"
            if found.layout == "faceid"
            else "only plain and plus IP-Adapters are supported"
        )
        raise InvalidInputError("ip_adapter", f"{entry.filename} is a {found.label}: {why}")
    shapes = _shapes(entry)
    if found.layout == "plain":
        return Needs("image_embeds", shapes["image_proj.proj.weight"][1])
    return Needs("hidden_states", shapes["image_proj.proj_in.weight"][1])


def encoder_gives(entry: ModelEntry) -> dict[str, int]:
    """The widths a CLIP vision encoder file gives: ``image_embeds`` and ``hidden_states``."""
    shapes = _shapes(entry)
    if _PROJECTION not in shapes or _CLASS not in shapes:
        raise InvalidInputError(
            "ip_adapter", f"{entry.filename} is not a CLIP vision encoder with its projection"
        )
    return {"image_embeds": shapes[_PROJECTION][0], "hidden_states": shapes[_CLASS][0]}


def fitting_encoder(encoders: list[ModelEntry], needs: Needs) -> ModelEntry | None:
    """The first encoder that gives what an adapter needs; unreadable files are passed over."""
    for encoder in encoders:
        try:
            if encoder_gives(encoder).get(needs.feature) == needs.width:
                return encoder
        except (OSError, PipelineError):
            continue
    return None


def pick(entries: list[ModelEntry], family: str) -> IPAdapterModels | None:
    """The first installed IP-Adapter of ``family`` (``sd15``/``sdxl``; or of no released
    family) that an installed encoder fits, or None. Adapters that cannot be used are passed
    over."""
    encoders = [entry for entry in entries if entry.kind == "clip_vision"]
    for adapter in (entry for entry in entries if entry.kind == "ipadapter"):
        try:
            if adapter_architecture(adapter).family not in (None, family):
                continue
            encoder = fitting_encoder(encoders, adapter_needs(adapter))
        except (OSError, PipelineError):
            continue
        if encoder is not None:
            return IPAdapterModels(adapter, encoder)
    return None


def require_fit(adapter: ModelEntry, family: str) -> Needs:
    """``adapter``'s needs, refusing (by name) an adapter of the other family (one of no
    released family, a home-made one, is tried: loading says whether it fits)."""
    found = adapter_architecture(adapter)
    if found.family not in (None, family):
        raise InvalidInputError(
            "ip_adapter.model",
            f"{adapter.filename} is an {found.label}; the checkpoint is {FAMILY_NAMES[family]}",
        )
    return adapter_needs(adapter)


def _shapes(entry: ModelEntry) -> dict[str, tuple[int, ...]]:
    path = weights_file(entry)
    return _shapes_of_file(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _shapes_of_file(path: Path, mtime_ns: int) -> dict[str, tuple[int, ...]]:
    """A file's tensor shapes, remembered per file version (``mtime_ns`` is in the key)."""
    return tensor_shapes(path)


# --- loading (torch) --------------------------------------------------------------------------


def encoder_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """``CLIPVisionConfig`` values for the tower these shapes belong to (LAION's towers, which
    the IP-Adapters were trained with, use GELU)."""
    hidden = shapes[_CLASS][0]
    layers = sum(
        1 for name in shapes if name.endswith(".self_attn.q_proj.weight") and ".layers." in name
    )
    patch = shapes["vision_model.embeddings.patch_embedding.weight"][2]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    return {
        "hidden_size": hidden,
        "intermediate_size": shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
        "projection_dim": shapes[_PROJECTION][0],
        "num_hidden_layers": layers,
        "num_attention_heads": _HEADS.get(hidden, max(1, hidden // 64)),
        "patch_size": patch,
        "image_size": patch * math.isqrt(positions - 1),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
    }


def load_encoder(entry: ModelEntry, dtype: Any = None) -> Any:
    """The CLIP vision encoder in ``entry``, cached per process (``pipelines.cache``): its
    config from ``<file>.config/config.json`` when there is one, else from its shapes."""
    return cached_model(
        weights_file(entry),
        lambda _: _load_encoder(entry, dtype),
        kind=f"clip_vision:{entry.path}:{dtype}",
    )


def _load_encoder(entry: ModelEntry, dtype: Any) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .loading import load_state_dict

    beside = entry.path.with_name(entry.path.name + CONFIG_DIR_SUFFIX) / "config.json"
    state = load_state_dict(entry.path, models_dir=entry.models_dir)
    if beside.is_file():
        config = CLIPVisionConfig.from_json_file(str(beside))
    else:
        config = CLIPVisionConfig(**encoder_config(_shapes(entry)))
    model = CLIPVisionModelWithProjection(config)
    state.pop("vision_model.embeddings.position_ids", None)  # a buffer older files carry
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise InvalidInputError(
            "ip_adapter", f"{entry.filename} is not a CLIP vision encoder this can read: {error}"
        ) from None
    model.eval()
    return model.to(dtype) if dtype is not None else model


def load_adapter(entry: ModelEntry, dtype: Any = None) -> dict[str, dict]:
    """The IP-Adapter's tensors as diffusers' ``load_ip_adapter`` takes them:
    ``{"image_proj": {...}, "ip_adapter": {...}}``, in ``dtype``; cached per process (diffusers
    builds new layers from them for each run, and inference never changes them)."""
    return cached_model(
        weights_file(entry),
        lambda _: _load_adapter(entry, dtype),
        kind=f"ipadapter:{entry.path}:{dtype}",
    )


def _load_adapter(entry: ModelEntry, dtype: Any) -> dict[str, dict]:
    from .loading import load_state_dict

    state = load_state_dict(entry.path, models_dir=entry.models_dir)
    parts: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    for name, tensor in state.items():
        group, _, key = name.partition(".")
        if group in parts:
            parts[group][key] = tensor.to(dtype) if dtype is not None else tensor
    return parts


def attach(pipe: Any, models: IPAdapterModels, *, dtype: Any, manifest: Any) -> None:
    """Load ``models``' IP-Adapter into ``pipe``'s UNet, with its encoder and an image processor
    of the encoder's size (the scale is set per call, ``set_ip_adapter_scale``). The UNet is
    cached and shared by later runs: ``pipe.unload_ip_adapter()`` takes it out again once the
    run is over. With a ``manifest``, both files must be listed."""
    from transformers import CLIPImageProcessor

    for entry in (models.adapter, models.encoder):
        check_inside_models_dir(entry)
        require_listed(entry.path, manifest, models_dir=entry.models_dir)
    encoder = load_encoder(models.encoder, dtype)
    side = encoder.config.image_size
    pipe.register_modules(
        image_encoder=encoder, feature_extractor=CLIPImageProcessor(size=side, crop_size=side)
    )
    try:
        pipe.load_ip_adapter(
            load_adapter(models.adapter, dtype),
            subfolder=None,
            weight_name=None,
            image_encoder_folder=None,
        )
    except (RuntimeError, KeyError, ValueError) as error:
        # diffusers swaps the UNet's attention processors before it builds the image
        # projection, so a failure there would leave the shared UNet half converted.
        pipe.unload_ip_adapter()
        if is_out_of_memory(error):
            raise  # the caller retries with offloading
        raise InvalidInputError(
            "ip_adapter",
            f"{models.adapter.filename} does not fit this checkpoint's UNet: {error}",
        ) from None


def ip_adapter_module(models: IPAdapterModels) -> str:
    """The WebUI ControlNet extension's preprocessor name for ``models``' encoder:
    ``ip-adapter_clip_h`` (ViT-H), ``ip-adapter_clip_g`` (ViT-bigG), else ``ip-adapter_clip``."""
    width = encoder_gives(models.encoder)["hidden_states"]
    return {1280: "ip-adapter_clip_h", 1664: "ip-adapter_clip_g"}.get(width, "ip-adapter_clip")
