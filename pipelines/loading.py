"""Loading installed models into torch and diffusers, never running code from a weights file.

``.safetensors`` files hold only tensors; pickles are read with ``weights_only=True``; every file
is checked against MODELS_DIR and the sha256 manifest first (``pipelines.registry``), and nothing
loads while torch is told to unpickle fully. torch and diffusers are imported inside the loading
functions: a worker checks its environment (``check_safe_loading_environment``) before either.
"""

import os
import pickle
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import cached_model
from .errors import InvalidInputError, ModelNotFoundError, UntrustedModelError
from .registry import (
    CONFIG_DIR_SUFFIX,
    WEIGHT_SUFFIXES,
    ModelEntry,
    check_inside_models_dir,
    checked_path,
    is_diffusers_folder,
    model_files,
    require_listed,
    weights_file,
)

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionControlNetInpaintPipeline

    from .architectures import Architecture

PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
# torch reads this variable to turn full unpickling back on for ``torch.load`` calls that do not
# pass ``weights_only``, as some libraries' loaders do; these are the values it takes as "on".
NO_WEIGHTS_ONLY_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_TORCH_TRUE_VALUES = ("1", "y", "yes", "true")


def check_safe_loading_environment(environ: dict[str, str] | None = None) -> None:
    """Refuse to go on when torch is told to unpickle checkpoints fully (which can run code).

    Workers and the CLI call this before loading anything; ``environ`` defaults to the process's.
    """
    value = (os.environ if environ is None else environ).get(NO_WEIGHTS_ONLY_VARIABLE, "")
    if value.lower() in _TORCH_TRUE_VALUES:
        raise UntrustedModelError(
            f"{NO_WEIGHTS_ONLY_VARIABLE}={value} is set: torch would then unpickle checkpoints "
            "fully, which can run code hidden in them; unset it to load models"
        )


def load_state_dict(
    path: Path, *, models_dir: Path | None = None, manifest: Path | None = None
) -> "dict[str, torch.Tensor]":
    """The tensors of a weights file, by name, never running code from the file.

    ``.safetensors`` files hold only tensors; pickles (``.ckpt``, ``.pth``, ``.pt``, ``.bin``)
    are read with ``weights_only=True``, which refuses anything but tensors and plain containers.
    A Lightning checkpoint's ``state_dict`` is unwrapped. With a ``manifest``, the file must be
    listed there with its sha256 (``UntrustedModelError`` otherwise).
    """
    resolved = checked_path(path, models_dir)
    if not resolved.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    require_listed(Path(path), manifest, models_dir=models_dir)
    suffix = resolved.suffix.lower()
    if suffix == ".safetensors":
        return _load_safetensors(resolved, Path(path).name)
    if suffix in PICKLE_SUFFIXES:
        return _tensors_only(_load_pickle(resolved, Path(path).name), Path(path).name)
    raise InvalidInputError(
        "model", f"{Path(path).name}: weights must be {', '.join(WEIGHT_SUFFIXES)} files"
    )


def _load_safetensors(path: Path, shown: str) -> "dict[str, torch.Tensor]":
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise InvalidInputError("model", f"{shown} is not a readable .safetensors file") from error


def _load_pickle(path: Path, shown: str) -> Any:

    try:
        return _torch_load(path)
    except pickle.UnpicklingError as error:
        raise InvalidInputError(
            "model",
            f"{shown} needs full unpickling, which can run code, so it is refused; convert it to "
            ".safetensors (e.g. on a trusted machine: safetensors.torch.save_file("
            "torch.load(path, weights_only=False)['state_dict'], 'model.safetensors'))",
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise InvalidInputError("model", f"{shown} is not a readable checkpoint") from error


def _torch_load(path: Path) -> Any:
    """``torch.load`` of tensors only, memory-mapped where the file's format allows (torch's
    zip format): listing a folder of multi-gigabyte pickles then reads their headers, not them.
    Older pickles cannot be mapped and are read whole."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def _tensors_only(state: Any, shown: str) -> "dict[str, torch.Tensor]":
    import torch

    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and state and all(isinstance(v, dict) for v in state.values()):
        # Groups of tensors, as an IP-Adapter's .bin has them ({"image_proj": {...},
        # "ip_adapter": {...}}): named "group.key", as in its .safetensors.
        state = {
            f"{group}.{key}": value for group, part in state.items() for key, value in part.items()
        }
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise InvalidInputError("model", f"{shown} is not a state dict of tensors")
    return state


def load_pipeline(
    checkpoint: ModelEntry,
    controlnets: list[ModelEntry],
    *,
    vae: ModelEntry | None = None,
    dtype: "torch.dtype | None" = None,
    manifest: Path | None = None,
) -> "StableDiffusionControlNetInpaintPipeline":
    """A ControlNet inpainting pipeline from installed models, without touching the network.

    Several ControlNets are combined in a ``MultiControlNetModel`` (in the order given). Each
    component is loaded once per process and shared (see ``pipelines.cache``); the pipeline
    object and its scheduler are new on every call, so changing the sampler stays local.
    A single file (a WebUI/ComfyUI checkpoint, a lllyasviel ``.pth`` ControlNet, a VAE) is read
    with the shipped configs of the architecture its keys show (``pipelines.architectures``);
    a diffusers config folder beside it, named ``<file>.config``, wins where present.
    With a ``manifest``, every weights file must be listed there with its sha256.
    """
    from diffusers import (
        MultiControlNetModel,
        StableDiffusionControlNetInpaintPipeline,
        StableDiffusionXLControlNetInpaintPipeline,
    )

    _require_kind(checkpoint, "checkpoints")
    if not controlnets:
        raise InvalidInputError("controlnets", "at least one ControlNet is needed")
    for entry in (checkpoint, *controlnets, *([vae] if vae is not None else [])):
        check_inside_models_dir(entry)
        for path in model_files(entry):
            require_listed(path, manifest, models_dir=entry.models_dir)
    components = dict(_cached(checkpoint, dtype, _load_checkpoint_components))
    sdxl = "text_encoder_2" in components
    nets = [
        _cached(_require_kind(net, "controlnet"), dtype, _load_controlnet) for net in controlnets
    ]
    for entry, net in zip(controlnets, nets, strict=True):
        _require_fit(entry, net, checkpoint, components["unet"])
    if vae is not None:
        loader = _load_sdxl_vae if sdxl else _load_vae
        components["vae"] = _cached(_require_kind(vae, "vae"), dtype, loader)
    scheduler = components["scheduler"]
    components["scheduler"] = type(scheduler).from_config(scheduler.config)
    controlnet = MultiControlNetModel(nets) if len(nets) > 1 else nets[0]
    if sdxl:
        return StableDiffusionXLControlNetInpaintPipeline(
            **components, controlnet=controlnet, requires_aesthetics_score=False
        )
    return StableDiffusionControlNetInpaintPipeline(
        **components,
        controlnet=controlnet,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _require_fit(entry: ModelEntry, net: Any, checkpoint: ModelEntry, unet: Any) -> None:
    """A ControlNet reads the UNet's text conditioning: an SD 1.5 one cannot guide SDXL."""
    width, wanted = net.config.cross_attention_dim, unet.config.cross_attention_dim
    if width != wanted:
        raise InvalidInputError(
            "controlnet",
            f"{entry.filename} (text width {width}) does not fit {checkpoint.filename} "
            f"(text width {wanted}): an SD 1.5 ControlNet guides SD 1.5, an SDXL one SDXL",
        )


def _require_kind(entry: ModelEntry, kind: str) -> ModelEntry:
    if entry.kind != kind:
        raise InvalidInputError(kind, f"{entry.filename} is a {entry.kind} model, not {kind}")
    return entry


def _cached(entry: ModelEntry, dtype: Any, loader: Any) -> Any:
    return cached_model(
        weights_file(entry),
        lambda _: loader(entry, dtype),
        kind=f"{loader.__name__}:{entry.path}:{dtype}",
    )


def _load_kwargs(dtype: Any) -> dict[str, Any]:
    # local_files_only: a missing file is an error here, never a download.
    return {"local_files_only": True, **({"dtype": dtype} if dtype is not None else {})}


def _single_file_config(entry: ModelEntry, architecture: "Architecture") -> Path:
    """The diffusers configs a single file is read with: a ``<file>.config`` folder beside it
    when there is one (a model of unusual shape), else the shipped configs of the architecture
    its keys show (``pipelines/configs``)."""
    beside = entry.path.with_name(entry.path.name + CONFIG_DIR_SUFFIX)
    if is_diffusers_folder(beside):
        return beside
    try:
        return architecture.config_folder()
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"{entry.filename} is an {architecture.label}: its diffusers configs are needed in "
            f"the folder {beside} (model_index.json or config.json), since nothing is downloaded"
        ) from None


def _single_file_state(entry: ModelEntry, kind: str) -> "tuple[dict, Architecture]":
    """A single file's tensors (tensor-only reads, see ``load_state_dict``) and the architecture
    they show, which must be of ``kind``."""
    from .architectures import detect, shapes_of

    state = load_state_dict(entry.path)
    architecture = detect(shapes_of(state), shown=entry.filename)
    if architecture.kind != kind:
        raise InvalidInputError(
            kind, f"{entry.filename} is a {architecture.label}, not a model for {kind}/"
        )
    return state, architecture


def _load_checkpoint_components(entry: ModelEntry, dtype: Any) -> dict[str, Any]:
    if entry.format == "diffusers":
        return _folder_components(entry.path, dtype)
    state, architecture = _single_file_state(entry, "checkpoints")
    folder = _single_file_config(entry, architecture)
    return _checkpoint_components(state, folder, dtype, sdxl=architecture.family == "sdxl")


def _folder_components(folder: Path, dtype: Any) -> dict[str, Any]:
    """A diffusers pipeline folder's components; SDXL's (its model_index names an XL pipeline)
    with the second text encoder and tokenizer."""
    import json

    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

    index = json.loads((folder / "model_index.json").read_text())
    names = ["vae", "text_encoder", "tokenizer", "unet", "scheduler"]
    if "XL" in index.get("_class_name", ""):
        pipe = StableDiffusionXLInpaintPipeline.from_pretrained(folder, **_load_kwargs(dtype))
        names += ["text_encoder_2", "tokenizer_2"]
    else:
        options = {**_load_kwargs(dtype), "safety_checker": None, "requires_safety_checker": False}
        pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, **options)
    return {name: pipe.components[name] for name in names}


def _checkpoint_components(state: dict, folder: Path, dtype: Any, *, sdxl: bool) -> dict[str, Any]:
    """A checkpoint's UNet, VAE and CLIP text encoder(s) converted from the original layout by
    diffusers' converters, with the configs in ``folder``; the tokenizers from the folder or,
    as a single file has none, CLIP's own (``pipelines.clip_tokenizer``; SDXL's second pads
    with "!"). SDXL adds bigG (``text_encoder_2``) and its tokenizer."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    options = {"config": str(folder), **_load_kwargs(dtype)}
    components = {
        "unet": UNet2DConditionModel.from_single_file(state, subfolder="unet", **options),
        "vae": AutoencoderKL.from_single_file(state, subfolder="vae", **options),
        "scheduler": _scheduler(folder),
    }
    encoders = {"text_encoder": (CLIPTextModel, "<|endoftext|>")}
    if sdxl:
        encoders["text_encoder_2"] = (CLIPTextModelWithProjection, "!")
    for name, (model_class, pad) in encoders.items():
        components[name] = create_diffusers_clip_model_from_ldm(
            model_class,
            state,
            subfolder=name,
            config=str(folder),
            torch_dtype=dtype,
            local_files_only=True,
        )
        tokenizer = name.replace("text_encoder", "tokenizer")
        components[tokenizer] = _tokenizer(folder / tokenizer, pad)
    return components


def _tokenizer(folder: Path, pad: str) -> Any:
    from transformers import CLIPTokenizer

    from .clip_tokenizer import tokenizer_folder

    if folder.is_dir():
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    return CLIPTokenizer.from_pretrained(tokenizer_folder(), pad_token=pad, local_files_only=True)


def _scheduler(folder: Path) -> Any:
    """The scheduler the config folder names (PNDM for SD 1.5, Euler for SDXL)."""
    import json

    import diffusers

    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return getattr(diffusers, config["_class_name"]).from_pretrained(folder, subfolder="scheduler")


def _load_controlnet(entry: ModelEntry, dtype: Any) -> Any:
    from diffusers import ControlNetModel

    return _load_model(ControlNetModel, entry, dtype)


def _load_vae(entry: ModelEntry, dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    return _load_model(AutoencoderKL, entry, dtype)


def _load_sdxl_vae(entry: ModelEntry, dtype: Any) -> Any:
    """A VAE for an SDXL checkpoint: the same network, SDXL's latent scaling (0.13025)."""
    from diffusers import AutoencoderKL

    return _load_model(AutoencoderKL, entry, dtype, family="sdxl")


def _load_model(model_class: Any, entry: ModelEntry, dtype: Any, family: str | None = None) -> Any:
    """A ControlNet or VAE: a diffusers folder, or a single file of either key layout (a
    lllyasviel ``.pth``, an original VAE, or diffusers' own keys in one file)."""
    if entry.format == "diffusers":
        return model_class.from_pretrained(entry.path, **_load_kwargs(dtype))
    state, architecture = _single_file_state(entry, entry.kind)
    if architecture.layout == "union" or (
        architecture.family == "sdxl" and architecture.layout == "original"
    ):
        # diffusers 0.42's converter drops an SDXL ControlNet's label_emb in lllyasviel's layout,
        # and a union ControlNet needs its own model class and task embedding.
        raise InvalidInputError(
            "controlnet",
            f"{entry.filename} is an {architecture.label} in a layout not loaded yet; use an "
            "SDXL ControlNet published as a diffusers single file (e.g. controlnet-canny-sdxl-1.0)",
        )
    if family is not None:
        architecture = replace(architecture, family=family)
    config = _single_file_config(entry, architecture)
    if architecture.layout == "diffusers":
        model = model_class.from_config(model_class.load_config(config))
        model.load_state_dict(state)
        return model.to(dtype) if dtype is not None else model
    return model_class.from_single_file(state, config=str(config), **_load_kwargs(dtype))
