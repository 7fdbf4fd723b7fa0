"""Which architecture a weights file holds, told from its tensor names and shapes.

As ComfyUI's model detection and diffusers' ``infer_diffusers_model_type`` do, a file is
recognised by keys only its architecture has, so a WebUI or ComfyUI models folder needs no
config folders beside its files: the diffusers configs of each architecture ship in
``pipelines/configs/`` (written from the architectures' published parameters).

Known: SD 1.5 and SDXL checkpoints in the original (CompVis/LDM, Stability) layout, normal
(4 UNet input channels) or inpainting (9); ControlNets for either, in lllyasviel's ``.pth``
layout or diffusers' single file; VAEs (original or diffusers keys); LoRAs in kohya, diffusers
/peft or LyCORIS layouts; IP-Adapters (h94's layout, as ComfyUI keeps them) and the CLIP vision
encoders they read (transformers' keys). Anything else is refused with what was found.

Reading a ``.safetensors`` header costs a few kilobytes; a pickle is opened memory-mapped with
``weights_only=True`` (``pipelines.loading``'s rule), so listing a folder stays cheap.
"""

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, ModelNotFoundError, PipelineError

CONFIGS = Path(__file__).with_name("configs")
FAMILY_NAMES = {"sd15": "SD 1.5", "sdxl": "SDXL"}
# Cross-attention width: what the UNet's text conditioning is (CLIP-L; CLIP-L + bigG; SD 2's H).
CONTEXT_FAMILY = {768: "sd15", 2048: "sdxl"}
HEADER_LIMIT = 100 * 1024 * 1024  # a safetensors header larger than this is not a model's

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Architecture:
    """What a weights file is: its ``kind`` (a MODELS_DIR folder's name: ``checkpoints``,
    ``controlnet``, ``vae``, ``loras``), ``family`` (``sd15``, ``sdxl``; None for a VAE, which
    both share), whether a checkpoint inpaints (9 input channels), and its key ``layout``."""

    kind: str
    family: str | None
    inpainting: bool = False
    # original, diffusers, kohya, peft, lycoris, union; an IP-Adapter's: plain, plus, faceid,
    # full-face; a CLIP vision encoder's: transformers
    layout: str = "original"

    @property
    def label(self) -> str:
        """How a person would name it: "SD 1.5 inpainting checkpoint", "SDXL ControlNet"."""
        family = FAMILY_NAMES.get(self.family or "", "unknown-family")
        if self.kind == "checkpoints":
            return f"{family} {'inpainting' if self.inpainting else 'normal'} checkpoint"
        if self.kind == "controlnet":
            return f"{family} ControlNet{' (union)' if self.layout == 'union' else ''}"
        if self.kind == "vae":
            return "VAE"
        if self.kind == "ipadapter":
            return f"{family} IP-Adapter ({self.layout})"
        if self.kind == "clip_vision":
            return "CLIP vision encoder"
        return f"{family} LoRA ({self.layout})"

    def config_folder(self) -> Path:
        """The shipped diffusers configs for this architecture (a pipeline's or one model's);
        a model of no released family has none (``ModelNotFoundError``)."""
        if self.family is None and self.kind != "vae":
            raise ModelNotFoundError(f"no shipped configs fit an {self.label}")
        if self.kind == "checkpoints":
            name = f"{self.family}-inpainting" if self.inpainting else str(self.family)
        elif self.kind == "controlnet":
            name = f"controlnet-{self.family}"
        elif self.kind == "vae":
            name = "vae-sdxl" if self.family == "sdxl" else "vae-sd"
        else:
            raise InvalidInputError("model", f"a {self.label} has no config folder")
        return CONFIGS / name


def architecture_of(entry) -> str:
    """What a listing says of an installed model (a ``registry.ModelEntry``): its architecture's
    label, "diffusers folder", "SAM" or "annotator", or why it cannot be used."""
    if entry.format == "diffusers":
        return "diffusers folder"
    if entry.kind in ("sams", "annotators"):
        return {"sams": "SAM", "annotators": "annotator"}[entry.kind]
    try:
        found = detect_file(entry.path)
    except PipelineError as error:
        return f"refused: {error}"
    if found.kind != entry.kind:
        article = "an" if found.label.startswith("SD") else "a"
        return f"refused: {article} {found.label} in {entry.kind}/ (it belongs in {found.kind}/)"
    return found.label


def detect_file(path: Path) -> Architecture:
    """The architecture of the weights file at ``path``; refuses one it does not know."""
    return detect(tensor_shapes(path), shown=Path(path).name)


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, without reading the tensors where the format allows."""
    if Path(path).suffix.lower() == ".safetensors":
        return _safetensors_shapes(Path(path))
    return _pickle_shapes(Path(path))


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with path.open("rb") as stream:
        prefix = stream.read(8)
        size = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        if not 0 < size <= HEADER_LIMIT:
            raise InvalidInputError("model", f"{path.name} is not a readable .safetensors file")
        try:
            header = json.loads(stream.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidInputError(
                "model", f"{path.name} is not a readable .safetensors file"
            ) from None
    return {
        name: tuple(entry["shape"])
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "shape" in entry
    }


def _pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from .loading import load_state_dict

    return shapes_of(load_state_dict(path))


def shapes_of(state: Mapping) -> dict[str, tuple[int, ...]]:
    """Each tensor's name and shape, from a loaded state dict."""
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def detect(shapes: Shapes, *, shown: str = "the file") -> Architecture:
    """The architecture whose keys ``shapes`` has (names → shapes); refuses anything else."""
    for recognise in (_lora, _checkpoint, _controlnet, _vae, _ip_adapter, _clip_vision):
        found = recognise(shapes, shown)
        if found is not None:
            return found
    examples = ", ".join(sorted(shapes)[:3]) or "no tensors"
    raise InvalidInputError(
        "model",
        f"{shown}: not an SD 1.5 or SDXL checkpoint, ControlNet, VAE, LoRA, IP-Adapter or "
        "CLIP vision encoder "
        f"(found {len(shapes)} tensors, e.g. {examples})",
    )


def _family_of_context(width: int | None, shown: str, what: str) -> str | None:
    """The family whose text conditioning is ``width`` wide; None for a width of no released
    family (a home-made model: it needs its own configs beside it)."""
    if width == 1024:
        raise InvalidInputError("model", f"{shown}: an SD 2.x {what}, which is not supported")
    return CONTEXT_FAMILY.get(width)


def _context_width(shapes: Shapes, prefix: str) -> int | None:
    """The cross-attention's input width of the first attention under ``prefix``."""
    for name in sorted(shapes):
        if name.startswith(prefix) and name.endswith("attn2.to_k.weight"):
            return shapes[name][1]
    return None


def _checkpoint(shapes: Shapes, shown: str) -> Architecture | None:
    first = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if first is None:
        return None
    if "model.diffusion_model.label_emb.0.0.weight" in shapes:
        family = "sdxl"
    else:
        context = _context_width(shapes, "model.diffusion_model.")
        family = _family_of_context(context, shown, "checkpoint")
    if len(first) != 4 or first[1] not in (4, 9):
        raise InvalidInputError(
            "model", f"{shown}: a UNet with {first[1]} input channels (4 or 9 expected)"
        )
    return Architecture("checkpoints", family, inpainting=first[1] == 9)


def _controlnet(shapes: Shapes, shown: str) -> Architecture | None:
    if "control_model.input_blocks.0.0.weight" in shapes:  # lllyasviel's layout
        if "control_model.label_emb.0.0.weight" in shapes:
            return Architecture("controlnet", "sdxl")
        context = _context_width(shapes, "control_model.")
        family = _family_of_context(context, shown, "ControlNet")
        return Architecture("controlnet", family)
    if "controlnet_cond_embedding.conv_in.weight" not in shapes:
        return None
    layout = "union" if "task_embedding" in shapes else "diffusers"
    if "add_embedding.linear_1.weight" in shapes:
        return Architecture("controlnet", "sdxl", layout=layout)
    family = _family_of_context(_context_width(shapes, ""), shown, "ControlNet")
    return Architecture("controlnet", family, layout=layout)


def _vae(shapes: Shapes, shown: str) -> Architecture | None:
    names = {name.removeprefix("first_stage_model.") for name in shapes}
    if not {"encoder.conv_in.weight", "decoder.conv_out.weight"} <= names:
        return None
    diffusers = any(name.startswith("decoder.up_blocks.") for name in names)
    return Architecture("vae", None, layout="diffusers" if diffusers else "original")


_LYCORIS_PARTS = (".hada_w1_a", ".lokr_w1", ".lokr_w1_a", ".oft_blocks", ".b1.weight")
_SDXL_KOHYA = ("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_output_blocks_")
_SD15_KOHYA = ("lora_te_", "lora_unet_down_blocks_", "lora_unet_up_blocks_")


def _lora(shapes: Shapes, shown: str) -> Architecture | None:
    names = list(shapes)
    if any(part in name for name in names for part in _LYCORIS_PARTS):
        layout = "lycoris"
    elif any(name.startswith("lora_") and ".lora_down." in name for name in names):
        layout = "kohya"
    elif any(".lora_A." in name or ".lora.down." in name for name in names):
        layout = "peft"
    else:
        return None
    if any(name.startswith(_SDXL_KOHYA) for name in names):
        return Architecture("loras", "sdxl", layout=layout)
    if any(name.startswith(_SD15_KOHYA) for name in names):
        return Architecture("loras", "sd15", layout=layout)
    widths = [
        shape[1]
        for name, shape in shapes.items()
        if "attn2" in name
        and ("to_k" in name or "to_v" in name)
        and len(shape) == 2
        and (".lora_down." in name or ".lora_A." in name or ".lora.down." in name)
    ]
    family = _family_of_context(widths[0] if widths else None, shown, "LoRA")
    return Architecture("loras", family, layout=layout)


def _ip_adapter(shapes: Shapes, shown: str) -> Architecture | None:
    """h94's IP-Adapter layout: ``image_proj.*`` (the picture's tokens) and
    ``ip_adapter.N.to_k_ip/to_v_ip`` (one pair per cross-attention, N odd)."""
    first = shapes.get("ip_adapter.1.to_k_ip.weight")
    if first is None or not any(name.startswith("image_proj.") for name in shapes):
        return None
    if any("lora" in name for name in shapes):
        layout = "faceid"  # its LoRA and insightface embeddings
    elif "image_proj.proj.weight" in shapes:
        layout = "plain"
    elif "image_proj.proj_in.weight" in shapes and "image_proj.latents" in shapes:
        layout = "plus"
    elif "image_proj.proj.3.weight" in shapes:
        layout = "full-face"
    else:
        layout = "faceid"
    family = _family_of_context(first[1] if len(first) == 2 else None, shown, "IP-Adapter")
    return Architecture("ipadapter", family, layout=layout)


def _clip_vision(shapes: Shapes, shown: str) -> Architecture | None:
    """A CLIP vision tower with its projection, in transformers' ``CLIPVisionModelWithProjection``
    keys (the file ComfyUI's ``clip_vision/`` holds)."""
    wanted = {"vision_model.embeddings.class_embedding", "visual_projection.weight"}
    if not wanted <= set(shapes):
        return None
    return Architecture("clip_vision", None, layout="transformers")
