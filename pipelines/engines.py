"""Which generation engine runs, and which weights are installed.

This module only looks at file names, so the web process can report the engine in /healthz
without importing torch.
"""

from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, ModelNotFoundError
from .registry import MODEL_KINDS, scan_models

ENGINES = ("auto", "sd", "preview", "tiny")
FETCH_HINT = (
    "install them with `python manage.py fetch_models` (needs internet) or copy them there; "
    "see models/README.md"
)

# The optional IP-Adapter's two folders (ComfyUI's names) and what each holds.
IP_ADAPTER_FOLDERS = {"ipadapter": "IP-Adapter", "clip_vision": "CLIP vision encoder"}


@dataclass(frozen=True)
class InstalledWeights:
    """Model files found under MODELS_DIR, by folder, as paths relative to that folder."""

    models_dir: Path
    by_folder: dict[str, tuple[str, ...]]

    @property
    def can_run_sd(self) -> bool:
        """A checkpoint and at least one ControlNet: the minimum the ``sd`` engine needs."""
        return bool(self.by_folder.get("checkpoints")) and bool(self.by_folder.get("controlnet"))

    @property
    def ip_adapter_missing(self) -> str:
        """What the optional IP-Adapter lacks, in a sentence; "" when both of its folders hold
        files (whether they fit each other and the checkpoint, a worker decides per run)."""
        lacking = [
            f"{what} in MODELS_DIR/{folder}"  # no server path: staff pages show this
            for folder, what in IP_ADAPTER_FOLDERS.items()
            if not self.by_folder.get(folder)
        ]
        if not lacking:
            return ""
        return f"IP-Adapter is off: no {' and no '.join(lacking)} (optional; see models/README.md)"

    def counts(self) -> dict[str, int]:
        return {folder: len(names) for folder, names in self.by_folder.items()}


def find_weights(models_dir: Path) -> InstalledWeights:
    """List the model files and diffusers folders installed for each kind of model.

    ComfyUI's folder names and the WebUI's (``Stable-diffusion/``, ``ControlNet/``, ``Lora/``,
    ``VAE/``) both count; names are paths below the folder, with the file suffix.
    """
    models_dir = Path(models_dir)
    by_folder: dict[str, list[str]] = {kind: [] for kind in MODEL_KINDS}
    for entry in scan_models(models_dir):
        by_folder[entry.kind].append(entry.filename)
    return InstalledWeights(
        models_dir=models_dir, by_folder={kind: tuple(names) for kind, names in by_folder.items()}
    )


def resolve_engine(requested: str, weights: InstalledWeights) -> str:
    """The engine that actually runs: ``auto`` becomes ``sd`` with weights, else ``preview``."""
    if requested not in ENGINES:
        raise InvalidInputError("engine", f"{requested!r} is not one of {', '.join(ENGINES)}")
    if requested == "auto":
        return "sd" if weights.can_run_sd else "preview"
    if requested == "sd" and not weights.can_run_sd:
        missing = [
            f"an SD 1.5 or SDXL checkpoint in {weights.models_dir / 'checkpoints'}"
            if not weights.by_folder.get("checkpoints")
            else "",
            f"OpenPose and Canny ControlNets in {weights.models_dir / 'controlnet'}"
            if not weights.by_folder.get("controlnet")
            else "",
        ]
        raise ModelNotFoundError(
            f"engine 'sd' is missing model files: {'; '.join(m for m in missing if m)}. "
            + FETCH_HINT
        )
    return requested


def engine_models_dir(engine: str, models_dir: Path) -> Path:
    """The MODELS_DIR an engine loads from; for ``tiny``, its kit, built on first use.

    Only workers call this: building the kit needs torch, which the web process never imports.
    """
    if engine != "tiny":
        return Path(models_dir)
    from .tiny import ensure_tiny

    return ensure_tiny(Path(models_dir))
