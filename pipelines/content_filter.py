"""An optional NSFW filter on a run's inputs and outputs: diffusers' Stable Diffusion safety
checker, when its weights are installed.

``MODELS_DIR/safety_checker/`` holds the checker in the layout of
CompVis/stable-diffusion-safety-checker: ``config.json``, ``model.safetensors`` and
``preprocessor_config.json`` (without the last, CLIP ViT-L/14's own preprocessing, which is the
checker's). No folder, no filter. A folder without its config or ``.safetensors`` weights is an
error, not a silent "no filter": whoever installed it expects pictures to be checked. Pickled
weights (``pytorch_model.bin``) are never read, and a link out of MODELS_DIR is refused.

The checker compares a picture's CLIP embedding with concept embeddings it ships; a picture is
flagged when any concept's similarity passes that concept's threshold (diffusers'
``StableDiffusionSafetyChecker.forward``, unchanged).
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .errors import ModelNotFoundError, PipelineError
from .registry import ModelEntry, check_inside_models_dir, require_listed

SAFETY_FOLDER = "safety_checker"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"


class ContentFiltered(PipelineError):
    """The content filter flagged a picture: an input was refused, or every result withheld."""


class ContentFilter(Protocol):
    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        """One flag per picture: True where the picture must not be used or shown."""
        ...


@dataclass(frozen=True, eq=False)
class SafetyChecker:
    """diffusers' safety checker with the CLIP image processor that prepares its input."""

    model: Any
    processor: Any

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        import torch

        if not images:
            return []
        pixels = self.processor(
            images=[image.convert("RGB") for image in images], return_tensors="pt"
        ).pixel_values
        weights = next(self.model.parameters())
        # forward() blacks out the flagged entries of ``images``; only its flags are used, so
        # it gets 1-pixel stand-ins instead of copies of the pictures.
        stand_ins = np.zeros((len(images), 1, 1, 3), np.float32)
        with torch.inference_mode():
            _, flagged = self.model(
                clip_input=pixels.to(weights.device, weights.dtype), images=stand_ins
            )
        return [bool(flag) for flag in flagged]


def load_content_filter(
    models_dir: Path, *, device: str = "auto", manifest: Path | None = None
) -> ContentFilter | None:
    """The safety checker installed under ``models_dir``, or None when there is none.

    Loaded once per process while its weights file stays the same (path, size, mtime).
    ``device`` is ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; on a GPU it runs in fp16.
    With a ``manifest`` (``RuntimeConfig.manifest``) its weights must be listed there.
    """
    models_dir = Path(models_dir)
    folder = models_dir / SAFETY_FOLDER
    if not folder.exists() and not folder.is_symlink():
        return None
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"the content filter in {folder} lacks {' and '.join(missing)}; install "
            f"CompVis/stable-diffusion-safety-checker there ({CONFIG_FILE}, {WEIGHTS_FILE}, "
            f"{PREPROCESSOR_FILE}; pickled .bin weights are not read), or remove the folder"
        )
    check_inside_models_dir(
        ModelEntry("safety_checker", SAFETY_FOLDER, folder, "diffusers", models_dir)
    )
    require_listed(folder / WEIGHTS_FILE, manifest, models_dir=models_dir)
    weights = (folder / WEIGHTS_FILE).stat()
    return _load(str(folder.resolve()), weights.st_size, weights.st_mtime_ns, device)


@functools.lru_cache(maxsize=1)
def _load(folder: str, size: int, mtime_ns: int, device: str) -> SafetyChecker:
    """The checker from ``folder``; ``size`` and ``mtime_ns`` key the cache to the file's state.

    Kept apart from ``pipelines.cache``, whose few slots the diffusion models fill.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    target = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    dtype = torch.float16 if target.type == "cuda" else torch.float32
    # use_safetensors: a missing .safetensors file is an error, never a fallback to a pickle.
    model = StableDiffusionSafetyChecker.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, dtype=dtype
    )
    model.to(target).eval()
    if (Path(folder) / PREPROCESSOR_FILE).is_file():
        processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    else:
        processor = CLIPImageProcessor()
    return SafetyChecker(model, processor)
