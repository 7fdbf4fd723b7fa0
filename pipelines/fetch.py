"""Download a starter set of weights into MODELS_DIR: the one place that touches the network.

Two sets, both allowed for commercial use: ``sd15`` (the default: SD 1.5 inpainting, ControlNet
1.1 OpenPose and Canny, the ft-MSE VAE, SAM ViT-B) and ``sdxl`` (SDXL 1.0 inpainting 0.1, SDXL
OpenPose and Canny ControlNets, the fp16-fix SDXL VAE, SAM ViT-B). Every file is a single file
as the WebUI and ComfyUI users have it, stored under ComfyUI's folder names.

Everything is fetched from the Hugging Face Hub with ``huggingface_hub`` and verified before it
is kept. The SD 1.5 set's files carry a **pinned sha256** (``Download.sha256``): the Hub must
still publish that hash for the file, and the downloaded bytes must have it, so a file that was
changed on the Hub (or in transit) is refused even when the Hub vouches for it. The SDXL set's
files are checked against the sha256 the Hub publishes (their hashes could not be read from
here to pin them). A file that does not match is deleted, never left half-trusted. Files
already present and matching are not downloaded again, and a download that broke off resumes
from its partial file (kept in ``MODELS_DIR/.downloads``), so a broken run can simply be
repeated. Offline, it says so and lists each file's URL and where it goes, for a copy by hand.
"""

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, PipelineError

BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """One file of a Hub repository, stored as ``MODELS_DIR/<kind>/<target>``.

    ``sha256`` pins the file's content (empty: the hash the Hub publishes is trusted);
    ``licence`` is what its model card says, shown before the download.
    """

    kind: str
    target: str
    repo_id: str
    file: str
    licence: str
    sha256: str = ""
    revision: str = "main"


_SAM = Download(
    "sams",
    "sam_vit_b_01ec64.pth",
    "ybelkada/segment-anything",
    "checkpoints/sam_vit_b_01ec64.pth",
    "Apache-2.0",
    # Meta's published sam_vit_b_01ec64.pth; the Hub copy is the same file.
    sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
)
_OPENRAIL = "CreativeML Open RAIL-M"
_OPENRAIL_XL = "CreativeML Open RAIL++-M"
_CONTROLNET_11 = "OpenRAIL"  # lllyasviel/ControlNet-v1-1's model card

# The hashes below are the files' sha256 as published for them (each one found in more than
# one independent public listing, and re-checked by the Hub's own hash at download time).
STARTER_SETS: dict[str, tuple[Download, ...]] = {
    "sd15": (
        # The WebUI's own single-file copy of runwayml's SD 1.5 inpainting (9 UNet channels).
        Download(
            "checkpoints",
            "sd-v1-5-inpainting.safetensors",
            "webui/stable-diffusion-inpainting",
            "sd-v1-5-inpainting.safetensors",
            _OPENRAIL,
            sha256="0ec8f8585b104417a8c34a9fbcc1e922a70b8c15490ec4553087f01c8cf33673",
        ),
        # ControlNet 1.1 as lllyasviel publishes it, one .pth per model (tensor-only pickles).
        Download(
            "controlnet",
            "control_v11p_sd15_openpose.pth",
            "lllyasviel/ControlNet-v1-1",
            "control_v11p_sd15_openpose.pth",
            _CONTROLNET_11,
            sha256="db97becd92cd19aff71352a60e93c2508decba3dee64f01f686727b9b406a9dd",
        ),
        Download(
            "controlnet",
            "control_v11p_sd15_canny.pth",
            "lllyasviel/ControlNet-v1-1",
            "control_v11p_sd15_canny.pth",
            _CONTROLNET_11,
            sha256="f99cfe4c70910e38e3fece9918a4979ed7d3dcf9b81cee293e1755363af5406a",
        ),
        Download(
            "vae",
            "vae-ft-mse-840000-ema-pruned.safetensors",
            "stabilityai/sd-vae-ft-mse-original",
            "vae-ft-mse-840000-ema-pruned.safetensors",
            "MIT",
            sha256="735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75",
        ),
        _SAM,
    ),
    "sdxl": (
        Download(
            "checkpoints",
            "sd_xl_base_1.0_inpainting_0.1.safetensors",
            "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
            "sd_xl_base_1.0_inpainting_0.1.safetensors",
            _OPENRAIL_XL,
        ),
        # SDXL ControlNets are published as diffusers single files; stored under names that
        # say their kind, which is how an unnamed unit finds them.
        Download(
            "controlnet",
            "controlnet-openpose-sdxl-1.0.safetensors",
            "xinsir/controlnet-openpose-sdxl-1.0",
            "diffusion_pytorch_model.safetensors",
            "Apache-2.0",
        ),
        Download(
            "controlnet",
            "controlnet-canny-sdxl-1.0.safetensors",
            "diffusers/controlnet-canny-sdxl-1.0",
            "diffusion_pytorch_model.fp16.safetensors",
            _OPENRAIL_XL,
        ),
        # SDXL's VAE re-trained to stay finite in fp16 (the original overflows on GPUs).
        Download(
            "vae",
            "sdxl-vae-fp16-fix.safetensors",
            "madebyollin/sdxl-vae-fp16-fix",
            "sdxl.vae.safetensors",
            "MIT",
        ),
        _SAM,
    ),
}
DEFAULT_SET = "sd15"


def starter_set(name: str) -> tuple[Download, ...]:
    """The files of the starter set called ``name``; refuses an unknown name."""
    if name not in STARTER_SETS:
        raise InvalidInputError("set", f"{name!r} is not one of {', '.join(STARTER_SETS)}")
    return STARTER_SETS[name]


class VerificationError(PipelineError):
    """A downloaded file does not match what the Hub says it should be."""


class OfflineError(PipelineError):
    """The Hub cannot be reached; the message says which files to copy where by hand."""


HUB = "https://huggingface.co"
DOWNLOADS = ".downloads"  # MODELS_DIR/.downloads: partial files, kept so a rerun resumes


def download_url(item: Download) -> str:
    """Where a browser or ``curl -L`` gets ``item``."""
    return f"{HUB}/{item.repo_id}/resolve/{item.revision}/{item.file}"


def manual_copy(models_dir: Path, items: tuple[Download, ...]) -> list[str]:
    """One line per file: its URL and where it goes under ``models_dir`` (with its pinned
    sha256, to check a copy made by hand)."""
    return [
        f"{download_url(item)}  ->  {_destination(Path(models_dir), item)}"
        + (f"  (sha256 {item.sha256})" if item.sha256 else "")
        for item in items
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


def _expected_sha256(item: Download, info) -> str:
    """The hash ``item`` must have: its pinned one, which the Hub must still publish; else the
    Hub's. Refuses before any download when the Hub now serves other bytes than were pinned."""
    published = info.lfs.sha256 if info.lfs is not None else None
    if published is None:
        raise VerificationError(
            f"{item.repo_id}/{item.file} is not stored as a large file on the Hub; a weights "
            "file should be, so it is not downloaded"
        )
    if item.sha256 and published != item.sha256:
        raise VerificationError(
            f"{item.repo_id}/{item.file}: the Hub now publishes sha256 {published}, not the "
            f"pinned {item.sha256}; the file changed upstream, so it is not downloaded"
        )
    return published


def _matches(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and _sha256(path) == sha256


def _destination(models_dir: Path, item: Download) -> Path:
    return models_dir / item.kind / item.target


def fetch_recommended(
    models_dir: Path,
    *,
    set_name: str = DEFAULT_SET,
    api=None,
    download: Callable[..., str] | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Download and verify the starter set ``set_name`` into ``models_dir``; return the files
    now in place.

    ``api`` (an ``HfApi``) and ``download`` (``hf_hub_download``) can be replaced in tests.
    Raises ``VerificationError`` when a file does not match its pinned or published hash,
    ``OfflineError`` (listing what to copy where) when the Hub cannot be reached.
    """
    from huggingface_hub import HfApi, hf_hub_download

    items = starter_set(set_name)
    api = api or HfApi()
    download = download or hf_hub_download
    models_dir = Path(models_dir)
    placed = []
    for item in items:
        try:
            published = api.get_paths_info(item.repo_id, [item.file], revision=item.revision)
        except _network_errors() as error:
            lines = "\n".join(f"  {line}" for line in manual_copy(models_dir, items))
            raise OfflineError(
                f"cannot reach {HUB} ({error}); this machine looks offline. Copy these files "
                f"there by hand (then run this again to verify them):\n{lines}"
            ) from None
        info = next((found for found in published if found.path == item.file), None)
        if info is None:
            raise VerificationError(f"{item.repo_id} has no file {item.file}")
        placed.append(_fetch_file(models_dir, item, info, download, log))
    return placed


def _fetch_file(models_dir: Path, item: Download, info, download, log) -> Path:
    destination = _destination(models_dir, item)
    sha256 = _expected_sha256(item, info)
    if _matches(destination, info.size, sha256):
        log(f"ok       {destination.relative_to(models_dir)} (already verified)")
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    # A download that breaks off leaves its partial file here, and the next run resumes it
    # (huggingface_hub continues an ".incomplete" file in the same local_dir).
    scratch = models_dir / DOWNLOADS / item.repo_id.replace("/", "--")
    log(f"download {download_url(item)} ({info.size / 1e6:.1f} MB, licence: {item.licence})")
    fetched = Path(
        download(item.repo_id, filename=item.file, revision=item.revision, local_dir=scratch)
    )
    if not _matches(fetched, info.size, sha256):
        fetched.unlink()
        raise VerificationError(
            f"{item.repo_id}/{item.file} does not match its sha256 {sha256}; not kept"
        )
    shutil.move(fetched, destination)
    log(f"verified {destination.relative_to(models_dir)}")
    return destination
