"""Download the recommended model set into MODELS_DIR: the one place that touches the network.

Everything is fetched from the Hugging Face Hub with ``huggingface_hub`` and verified before it
is kept: large (LFS) files against the sha256 the Hub publishes for them, small files against
their git blob id. A file that does not match is deleted, never left half-trusted. Files already
present and matching are not downloaded again, so a broken run can simply be repeated.
"""

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import PipelineError

BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """Files of one Hub repository, stored as ``MODELS_DIR/<kind>/<target>``.

    With ``flatten`` the single file is stored as ``<target>`` itself (a SAM checkpoint);
    otherwise ``<target>`` is a folder keeping the repository's layout (a diffusers model).
    """

    kind: str
    target: str
    repo_id: str
    files: tuple[str, ...]
    revision: str = "main"
    flatten: bool = False


_SD_TOKENIZER = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")
_DIFFUSERS_MODEL = ("config.json", "diffusion_pytorch_model.safetensors")

RECOMMENDED: tuple[Download, ...] = (
    Download(
        "checkpoints",
        "sd15-inpainting",
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        (
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            *(f"tokenizer/{name}" for name in _SD_TOKENIZER),
            *(f"unet/{name}" for name in _DIFFUSERS_MODEL),
            *(f"vae/{name}" for name in _DIFFUSERS_MODEL),
        ),
    ),
    Download(
        "controlnet",
        "control_v11p_sd15_openpose",
        "lllyasviel/control_v11p_sd15_openpose",
        _DIFFUSERS_MODEL,
    ),
    Download(
        "controlnet",
        "control_v11p_sd15_canny",
        "lllyasviel/control_v11p_sd15_canny",
        _DIFFUSERS_MODEL,
    ),
    Download(
        "sams",
        "sam_vit_b_01ec64.pth",
        "ybelkada/segment-anything",
        ("checkpoints/sam_vit_b_01ec64.pth",),
        flatten=True,
    ),
)


class VerificationError(PipelineError):
    """A downloaded file does not match what the Hub says it should be."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_id(path: Path) -> str:
    """Git's object id of a file: sha1 of "blob <size>\\0" + content (the Hub's ``blob_id``)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, info) -> bool:
    if not path.is_file() or path.stat().st_size != info.size:
        return False
    if info.lfs is not None:
        return _sha256(path) == info.lfs.sha256
    return _git_blob_id(path) == info.blob_id


def _destination(models_dir: Path, item: Download, file: str) -> Path:
    folder = models_dir / item.kind
    return folder / item.target if item.flatten else folder / item.target / file


def fetch_recommended(
    models_dir: Path,
    *,
    api=None,
    download: Callable[..., str] | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Download and verify ``RECOMMENDED`` into ``models_dir``; return the files now in place.

    ``api`` (an ``HfApi``) and ``download`` (``hf_hub_download``) can be replaced in tests.
    Raises ``VerificationError`` when a file does not match its published hash.
    """
    from huggingface_hub import HfApi, hf_hub_download

    api = api or HfApi()
    download = download or hf_hub_download
    models_dir = Path(models_dir)
    placed = []
    for item in RECOMMENDED:
        infos = {
            info.path: info
            for info in api.get_paths_info(item.repo_id, list(item.files), revision=item.revision)
        }
        for file in item.files:
            if file not in infos:
                raise VerificationError(f"{item.repo_id} has no file {file}")
            placed.append(_fetch_file(models_dir, item, file, infos[file], download, log))
    return placed


def _fetch_file(models_dir: Path, item: Download, file: str, info, download, log) -> Path:
    destination = _destination(models_dir, item, file)
    if _matches(destination, info):
        log(f"ok       {destination.relative_to(models_dir)} (already verified)")
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as scratch:
        log(f"download {item.repo_id}/{file} ({info.size / 1e6:.1f} MB)")
        fetched = Path(
            download(item.repo_id, filename=file, revision=item.revision, local_dir=scratch)
        )
        if not _matches(fetched, info):
            # The scratch folder and the bad file go away with the context manager.
            raise VerificationError(
                f"{item.repo_id}/{file} does not match the hash the Hub publishes; not kept"
            )
        shutil.move(fetched, destination)
    log(f"verified {destination.relative_to(models_dir)}")
    return destination
