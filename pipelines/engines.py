"""Which generation engine runs, and which weights are installed.

This module only looks at file names, so the web process can report the engine in /healthz
without importing torch.
"""

from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, ModelNotFoundError

ENGINES = ("auto", "sd", "preview", "tiny")
# ComfyUI's folder names, so a user can point MODELS_DIR at an existing ComfyUI models folder.
MODEL_FOLDERS = ("checkpoints", "controlnet", "vae", "loras", "sams", "annotators")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".bin", ".pt")


@dataclass(frozen=True)
class InstalledWeights:
    """Model files found under MODELS_DIR, by folder, as paths relative to that folder."""

    models_dir: Path
    by_folder: dict[str, tuple[str, ...]]

    @property
    def can_run_sd(self) -> bool:
        """A checkpoint and at least one ControlNet: the minimum the ``sd`` engine needs."""
        return bool(self.by_folder.get("checkpoints")) and bool(self.by_folder.get("controlnet"))

    def counts(self) -> dict[str, int]:
        return {folder: len(names) for folder, names in self.by_folder.items()}


def _is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (
        (path / "model_index.json").is_file() or (path / "config.json").is_file()
    )


def find_weights(models_dir: Path) -> InstalledWeights:
    """List the model files and diffusers folders installed in each ComfyUI-style folder."""
    models_dir = Path(models_dir)
    by_folder = {}
    for folder in MODEL_FOLDERS:
        root = models_dir / folder
        names = []
        if root.is_dir():
            for entry in sorted(root.iterdir()):
                if (entry.is_file() and entry.suffix.lower() in WEIGHT_SUFFIXES) or (
                    _is_diffusers_folder(entry)
                ):
                    names.append(entry.name)
        by_folder[folder] = tuple(names)
    return InstalledWeights(models_dir=models_dir, by_folder=by_folder)


def resolve_engine(requested: str, weights: InstalledWeights) -> str:
    """The engine that actually runs: ``auto`` becomes ``sd`` with weights, else ``preview``."""
    if requested not in ENGINES:
        raise InvalidInputError("engine", f"{requested!r} is not one of {', '.join(ENGINES)}")
    if requested == "auto":
        return "sd" if weights.can_run_sd else "preview"
    if requested == "sd" and not weights.can_run_sd:
        raise ModelNotFoundError(
            f"engine 'sd' needs a checkpoint in {weights.models_dir / 'checkpoints'} and a "
            f"ControlNet in {weights.models_dir / 'controlnet'}; none found"
        )
    return requested
