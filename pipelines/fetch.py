"""Download the recommended model set into MODELS_DIR: the one place that touches the network.

Everything is fetched from the Hugging Face Hub with ``huggingface_hub`` and verified before it
is kept: large (LFS) files against the sha256 the Hub publishes for them, small files against
their git blob id. A file that does not match is deleted, never left half-trusted. Files already
present and matching are not downloaded again, and a download that broke off resumes from its
partial file (kept in ``MODELS_DIR/.downloads``), so a broken run can simply be repeated.
Files land in ComfyUI's folder names, single files as their authors publish them (ControlNet
1.1's ``.pth``, the VAE's ``.safetensors``). Offline, it says so and lists each file's URL and
where it goes, for a copy by hand.

The hashes checked are the ones the Hub publishes for the files at ``revision``; pinning them
here as well needs a machine that can reach the Hub to read them off, which ours cannot.
"""

import hashlib
import shutil
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
    # ControlNet 1.1 as lllyasviel publishes it, one .pth per model (tensor-only pickles).
    Download(
        "controlnet",
        "control_v11p_sd15_openpose.pth",
        "lllyasviel/ControlNet-v1-1",
        ("control_v11p_sd15_openpose.pth",),
        flatten=True,
    ),
    Download(
        "controlnet",
        "control_v11p_sd15_canny.pth",
        "lllyasviel/ControlNet-v1-1",
        ("control_v11p_sd15_canny.pth",),
        flatten=True,
    ),
    Download(
        "vae",
        "vae-ft-mse-840000-ema-pruned.safetensors",
        "stabilityai/sd-vae-ft-mse-original",
        ("vae-ft-mse-840000-ema-pruned.safetensors",),
        flatten=True,
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


class OfflineError(PipelineError):
    """The Hub cannot be reached; the message says which files to copy where by hand."""


HUB = "https://huggingface.co"
DOWNLOADS = ".downloads"  # MODELS_DIR/.downloads: partial files, kept so a rerun resumes


def download_url(item: Download, file: str) -> str:
    """Where a browser or ``curl -L`` gets ``file`` of ``item``."""
    return f"{HUB}/{item.repo_id}/resolve/{item.revision}/{file}"


def manual_copy(models_dir: Path) -> list[str]:
    """One line per file: its URL and where it goes under ``models_dir``."""
    return [
        f"{download_url(item, file)}  ->  {_destination(Path(models_dir), item, file)}"
        for item in RECOMMENDED
        for file in item.files
    ]


def _network_errors() -> tuple[type[BaseException], ...]:
    """What "no connection" looks like: OSError (huggingface_hub's offline mode, requests),
    and the HTTP client's transport errors (httpx2 in huggingface_hub 2.x, or httpx)."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


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
        try:
            published = api.get_paths_info(item.repo_id, list(item.files), revision=item.revision)
        except _network_errors() as error:
            lines = "\n".join(f"  {line}" for line in manual_copy(models_dir))
            raise OfflineError(
                f"cannot reach {HUB} ({error}); this machine looks offline. Copy these files "
                f"there by hand (then run this again to verify them):\n{lines}"
            ) from None
        infos = {info.path: info for info in published}
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
    # A download that breaks off leaves its partial file here, and the next run resumes it
    # (huggingface_hub continues an ".incomplete" file in the same local_dir).
    scratch = models_dir / DOWNLOADS / item.repo_id.replace("/", "--")
    log(f"download {download_url(item, file)} ({info.size / 1e6:.1f} MB)")
    fetched = Path(download(item.repo_id, filename=file, revision=item.revision, local_dir=scratch))
    if not _matches(fetched, info):
        fetched.unlink()
        raise VerificationError(
            f"{item.repo_id}/{file} does not match the hash the Hub publishes; not kept"
        )
    shutil.move(fetched, destination)
    log(f"verified {destination.relative_to(models_dir)}")
    return destination
