"""The models installed under MODELS_DIR: what they are, their WebUI hashes, and safe loading.

Listing, hashing and name resolution only read files, so the web process may use them; torch and
diffusers are imported inside the loading functions, which only workers call.
"""

import functools
import hashlib
import json
import os
import pickle
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import cached_model
from .errors import InvalidInputError, ModelNotFoundError, UntrustedModelError

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionControlNetInpaintPipeline

# ComfyUI's folder names are the model kinds; the WebUI's names for the same folders are accepted
# too, so MODELS_DIR can be an existing ComfyUI or WebUI models folder.
MODEL_KINDS = ("checkpoints", "controlnet", "vae", "loras", "sams", "annotators")
FOLDER_KINDS: dict[str, str] = {
    **{kind: kind for kind in MODEL_KINDS},
    "Stable-diffusion": "checkpoints",
    "ControlNet": "controlnet",
    "Lora": "loras",
    "VAE": "vae",
}
# In order of preference: when a model exists in several formats, a bare name picks the first.
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin")
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
# A folder beside a single-file model that holds its diffusers configs (from_single_file needs
# them, and fetching them from the Hub is not allowed at run time).
CONFIG_DIR_SUFFIX = ".config"
# The WebUI shows 10 hex digits for checkpoints ("Model hash") and 12 for LoRAs ("Lora hashes").
SHORT_HASH_LENGTH = {"loras": 12}
DEFAULT_SHORT_HASH_LENGTH = 10
HASH_CACHE_FILE = "hash-cache.json"
_BLOCK_SIZE = 1024 * 1024
# torch reads this variable to turn full unpickling back on for ``torch.load`` calls that do not
# pass ``weights_only``, as some libraries' loaders do; these are the values it takes as "on".
NO_WEIGHTS_ONLY_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_TORCH_TRUE_VALUES = ("1", "y", "yes", "true")
_MANIFEST_LINE = re.compile(r"^(?P<sha256>[0-9a-fA-F]{64}) [ *](?P<path>.+)$")
_HASHED_NAME = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]$")


@dataclass(frozen=True)
class ModelEntry:
    """One installed model: a diffusers folder or a single weights file.

    ``name`` is the path below the kind's folder without the file suffix (``sd15/realistic``);
    ``format`` is ``diffusers`` or the file suffix without its dot (``safetensors``, ``ckpt``...);
    ``models_dir`` is the MODELS_DIR it was found in, which loading will not leave.
    """

    kind: str
    name: str
    path: Path
    format: str
    models_dir: Path | None = None

    @property
    def filename(self) -> str:
        """The name with its suffix, as the WebUI lists it (``v1-5-pruned-emaonly.safetensors``)."""
        return self.name if self.format == "diffusers" else f"{self.name}.{self.format}"


def is_diffusers_folder(path: Path) -> bool:
    """A folder that diffusers' ``from_pretrained`` reads (a pipeline or a single model)."""
    return path.is_dir() and (
        (path / "model_index.json").is_file() or (path / "config.json").is_file()
    )


def kind_folders(models_dir: Path) -> Iterator[tuple[str, Path]]:
    """``(kind, folder)`` for each ComfyUI- or WebUI-named folder present in ``models_dir``."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return
    for folder, kind in FOLDER_KINDS.items():
        root = models_dir / folder
        if root.is_dir():
            yield kind, root


def scan_models(models_dir: Path) -> list[ModelEntry]:
    """Every model installed under ``models_dir``, grouped by kind, ``.safetensors`` first.

    Sub-folders are searched (people sort their checkpoints into folders), except inside a
    diffusers folder, which is one model.
    """
    models_dir = Path(models_dir)
    entries: list[ModelEntry] = []
    seen: set[tuple[str, Path]] = set()
    for kind, root in kind_folders(models_dir):
        for path in _model_paths(root):
            # On a case-insensitive file system "vae" and "VAE" are the same folder.
            if (kind, path.resolve()) in seen:
                continue
            seen.add((kind, path.resolve()))
            entries.append(_entry(kind, root, path, models_dir))
    order = {kind: i for i, kind in enumerate(MODEL_KINDS)}
    entries.sort(key=lambda e: (order[e.kind], e.name.lower(), _format_rank(e.format)))
    return entries


def _model_paths(root: Path) -> Iterator[Path]:
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if path.name.endswith(CONFIG_DIR_SUFFIX):
                continue
            if is_diffusers_folder(path):
                yield path
            else:
                yield from _model_paths(path)
        elif path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES:
            yield path


def _entry(kind: str, root: Path, path: Path, models_dir: Path) -> ModelEntry:
    relative = path.relative_to(root).as_posix()
    if path.is_dir():
        return ModelEntry(kind, relative, path, "diffusers", models_dir)
    name = relative[: -len(path.suffix)]
    return ModelEntry(kind, name, path, path.suffix.lower().lstrip("."), models_dir)


def _format_rank(format_: str) -> int:
    suffix = f".{format_}"
    return WEIGHT_SUFFIXES.index(suffix) if suffix in WEIGHT_SUFFIXES else -1


# --- hashes -------------------------------------------------------------------------------------

_hashes: dict[tuple, str] = {}
_hashes_lock = threading.Lock()


def model_hash(entry: ModelEntry, *, cache_file: Path | None = None) -> str:
    """The short hash the WebUI writes for this model (``Model hash``, ``Lora hashes``...).

    sha256 of the weights file, 10 hex digits (12 for LoRAs). A diffusers folder is hashed by its
    UNet weights (a pipeline) or its one weights file (a ControlNet or VAE folder). A LoRA
    ``.safetensors`` is hashed as the WebUI does, over the tensor data after the JSON header, so
    that editing its metadata does not change its hash. Results are kept per path, size and
    modification time, in memory and, with ``cache_file``, in that JSON file across processes.
    """
    addnet = entry.kind == "loras" and entry.format == "safetensors"
    digest = file_sha256(weights_file(entry), skip_header=addnet, cache_file=cache_file)
    return digest[: SHORT_HASH_LENGTH.get(entry.kind, DEFAULT_SHORT_HASH_LENGTH)]


def weights_file(entry: ModelEntry) -> Path:
    """The file that identifies the model: itself, or the main weights inside a diffusers folder."""
    if entry.format != "diffusers":
        return entry.path
    folder = entry.path / "unet" if (entry.path / "model_index.json").is_file() else entry.path
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise ModelNotFoundError(f"{entry.kind} {entry.name!r}: no weights file in {folder}")


def file_sha256(path: Path, *, skip_header: bool = False, cache_file: Path | None = None) -> str:
    """sha256 of ``path`` (only its tensor data with ``skip_header``), cached by size and mtime."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, skip_header)
    with _hashes_lock:
        if key in _hashes:
            return _hashes[key]
    digest = _from_cache_file(cache_file, key) or _hash_file(Path(path), skip_header)
    with _hashes_lock:
        _hashes[key] = digest
    if cache_file is not None:
        _to_cache_file(cache_file, key, digest)
    return digest


def _hash_file(path: Path, skip_header: bool) -> str:
    sha256 = hashlib.sha256()
    with path.open("rb") as file:
        if skip_header:
            # A .safetensors file starts with the 8-byte little-endian length of its JSON header.
            file.seek(8 + int.from_bytes(file.read(8), "little"))
        for block in iter(lambda: file.read(_BLOCK_SIZE), b""):
            sha256.update(block)
    return sha256.hexdigest()


def _cache_record_name(key: tuple) -> str:
    path, _, _, skip_header = key
    return f"addnet:{path}" if skip_header else path


def _from_cache_file(cache_file: Path | None, key: tuple) -> str | None:
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        record = json.loads(cache_file.read_text()).get(_cache_record_name(key))
    except (OSError, ValueError):
        return None  # a damaged cache only costs a rehash
    if isinstance(record, dict) and [record.get("size"), record.get("mtime_ns")] == list(key[1:3]):
        return record.get("sha256")
    return None


def _to_cache_file(cache_file: Path, key: tuple, digest: str) -> None:
    with _hashes_lock:
        try:
            records = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        except (OSError, ValueError):
            records = {}
        records[_cache_record_name(key)] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
        # Written beside and renamed, so a reader in another process never sees half a file.
        partial = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
        partial.write_text(json.dumps(records, indent=1, sort_keys=True))
        partial.replace(cache_file)


# --- names --------------------------------------------------------------------------------------


def resolve_model(
    entries: list[ModelEntry], kind: str, name: str, *, cache_file: Path | None = None
) -> ModelEntry:
    """The installed model of ``kind`` a WebUI-style ``name`` refers to.

    Accepts ``v1-5-pruned-emaonly``, ``v1-5-pruned-emaonly.safetensors`` and either of them
    followed by ``[6ce0161689]``, whose short hash picks among same-named files (or finds a
    renamed one); names are matched exactly first, then ignoring case.
    """
    candidates = [entry for entry in entries if entry.kind == kind]
    match = _HASHED_NAME.match(name.strip())
    base, short_hash = (match["name"], match["hash"].lower()) if match else (name.strip(), None)
    found = _by_name(candidates, base, str) or _by_name(candidates, base, str.lower)
    if short_hash is not None:
        found = [
            entry
            for entry in (found or candidates)
            if model_hash(entry, cache_file=cache_file).startswith(short_hash)
        ]
    if not found:
        available = ", ".join(entry.filename for entry in candidates) or "none"
        raise ModelNotFoundError(f"no {kind} model named {name!r}; installed: {available}")
    return found[0]


def _by_name(candidates: list[ModelEntry], name: str, fold: Any) -> list[ModelEntry]:
    return [e for e in candidates if fold(name) in (fold(e.name), fold(e.filename))]


# --- the sha256 manifest ------------------------------------------------------------------------


def model_files(entry: ModelEntry) -> list[Path]:
    """Every weights file loading ``entry`` reads: the file itself, or all in a diffusers folder."""
    if entry.format != "diffusers":
        return [entry.path]
    return [
        path
        for path in _paths_in(entry)
        if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES
    ]


def _paths_in(entry: ModelEntry) -> list[Path]:
    """Everything in a diffusers folder, sorted, linked folders included (their files load all
    the same), except those leading outside MODELS_DIR, which are listed but not entered:
    ``check_inside_models_dir`` refuses them, and a link to ``/`` must not be walked."""
    root = Path(entry.models_dir).resolve() if entry.models_dir is not None else None
    found, folders, seen = [], [entry.path], set()
    while folders:
        folder = folders.pop()
        if folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for path in folder.iterdir():
            found.append(path)
            inside = root is None or path.resolve().is_relative_to(root)
            if path.is_dir() and (inside or not path.is_symlink()):
                folders.append(path)
    return sorted(found)


def read_manifest(manifest: Path, models_dir: Path | None) -> dict[Path, str]:
    """``{resolved path: sha256}`` from a ``sha256sum``-style file, paths below ``models_dir``.

    Blank lines and ``#`` comments are skipped; any other line that is not ``<sha256>  <path>``
    makes the whole manifest unusable, so that a typo never quietly trusts or refuses a file.
    Parsed once while the file stays the same (size, modification time): every weights file of
    every job is checked against it. Do not change the returned dict.
    """
    manifest = Path(manifest)
    base = Path(models_dir) if models_dir is not None else Path.cwd()
    try:
        state = manifest.stat()
    except OSError as error:
        raise UntrustedModelError(
            f"the models manifest {manifest} cannot be read: {error}"
        ) from None
    return _parsed_manifest(manifest, state.st_size, state.st_mtime_ns, base)


@functools.lru_cache(maxsize=4)
def _parsed_manifest(manifest: Path, size: int, mtime_ns: int, base: Path) -> dict[Path, str]:
    """The manifest's lines as ``read_manifest`` gives them; ``size`` and ``mtime_ns`` key the
    cache to the file's state."""
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UntrustedModelError(
            f"the models manifest {manifest} cannot be read: {error}"
        ) from None
    listed: dict[Path, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _MANIFEST_LINE.match(line)
        if match is None:
            raise UntrustedModelError(
                f"the models manifest {manifest}, line {number}, is not `<sha256>  <path>` "
                "as sha256sum writes it"
            )
        listed[(base / match["path"]).resolve()] = match["sha256"].lower()
    return listed


def require_listed(
    path: Path, manifest: Path | None, *, models_dir: Path | None, cache_file: Path | None = None
) -> None:
    """Refuse ``path`` unless ``manifest`` (when there is one) lists it with its sha256.

    Hashes are cached by path, size and modification time (``file_sha256``); a ``cache_file``
    is shared with other processes, so pass one only where a listing is shown, not to decide.
    """
    if manifest is None:
        return
    listed = read_manifest(manifest, models_dir).get(Path(path).resolve())
    if listed is not None and file_sha256(path, cache_file=cache_file) == listed:
        return
    shown = _relative_to(Path(path), models_dir)
    add = _add_command(Path(path), models_dir, Path(manifest))
    if listed is None:
        raise UntrustedModelError(
            f"{shown} is not in the models manifest {manifest}; if you trust it, add it: {add}"
        )
    raise UntrustedModelError(
        f"{shown} changed since it was added to the models manifest {manifest} (its sha256 is "
        f"no longer {listed[:12]}…); if you trust the new file, replace its line with: {add}"
    )


def is_listed(entry: ModelEntry, manifest: Path, *, cache_file: Path | None = None) -> bool:
    """Whether every file of ``entry`` is in ``manifest`` with its sha256 (for listings)."""
    try:
        for path in model_files(entry):
            require_listed(path, manifest, models_dir=entry.models_dir, cache_file=cache_file)
    except UntrustedModelError:
        return False
    return True


def manifest_lines(entries: list[ModelEntry], models_dir: Path) -> list[str]:
    """``sha256sum`` lines for every file of ``entries``, paths relative to ``models_dir``."""
    return [
        f"{file_sha256(path)}  {_relative_to(path, models_dir)}"
        for entry in entries
        for path in model_files(entry)
    ]


def _relative_to(path: Path, models_dir: Path | None) -> str:
    if models_dir is not None and path.is_relative_to(Path(models_dir)):
        return path.relative_to(Path(models_dir)).as_posix()
    return str(path.resolve())


def _add_command(path: Path, models_dir: Path | None, manifest: Path) -> str:
    """The shell command that appends ``path``'s manifest line, as ``manifest_lines`` writes it."""
    target = shlex.quote(str(manifest.resolve()))
    line = f"sha256sum {shlex.quote(_relative_to(path, models_dir))} >> {target}"
    if models_dir is not None and path.is_relative_to(Path(models_dir)):
        return f"`cd {shlex.quote(str(models_dir))} && {line}`"
    return f"`{line}`"


# --- safe loading -------------------------------------------------------------------------------


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


def checked_path(path: Path, models_dir: Path | None) -> Path:
    """``path`` resolved, refused when it (through a link) lies outside ``models_dir``.

    A link out of MODELS_DIR would let whoever can write there make the worker read any file.
    """
    resolved = Path(path).resolve()
    if models_dir is not None and not resolved.is_relative_to(Path(models_dir).resolve()):
        raise InvalidInputError("model", f"{path} leads outside the models folder {models_dir}")
    return resolved


def check_inside_models_dir(entry: ModelEntry) -> None:
    """Refuse ``entry`` when it, or anything in its folder, leads outside its MODELS_DIR."""
    for path in (entry.path, *(_paths_in(entry) if entry.format == "diffusers" else ())):
        checked_path(path, entry.models_dir)


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
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InvalidInputError(
            "model",
            f"{shown} needs full unpickling, which can run code, so it is refused; convert it to "
            ".safetensors (e.g. on a trusted machine: safetensors.torch.save_file("
            "torch.load(path, weights_only=False)['state_dict'], 'model.safetensors'))",
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise InvalidInputError("model", f"{shown} is not a readable checkpoint") from error


def _tensors_only(state: Any, shown: str) -> "dict[str, torch.Tensor]":
    import torch

    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
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
    A single-file model needs a diffusers config folder beside it, named ``<file>.config``.
    With a ``manifest``, every weights file must be listed there with its sha256.
    """
    from diffusers import MultiControlNetModel, StableDiffusionControlNetInpaintPipeline

    _require_kind(checkpoint, "checkpoints")
    if not controlnets:
        raise InvalidInputError("controlnets", "at least one ControlNet is needed")
    for entry in (checkpoint, *controlnets, *([vae] if vae is not None else [])):
        check_inside_models_dir(entry)
        for path in model_files(entry):
            require_listed(path, manifest, models_dir=entry.models_dir)
    components = dict(_cached(checkpoint, dtype, _load_checkpoint_components))
    nets = [
        _cached(_require_kind(net, "controlnet"), dtype, _load_controlnet) for net in controlnets
    ]
    if vae is not None:
        components["vae"] = _cached(_require_kind(vae, "vae"), dtype, _load_vae)
    scheduler = components["scheduler"]
    components["scheduler"] = type(scheduler).from_config(scheduler.config)
    return StableDiffusionControlNetInpaintPipeline(
        **components,
        controlnet=MultiControlNetModel(nets) if len(nets) > 1 else nets[0],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
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


def _single_file_config(entry: ModelEntry) -> Path:
    config = entry.path.with_name(entry.path.name + CONFIG_DIR_SUFFIX)
    if not is_diffusers_folder(config):
        raise ModelNotFoundError(
            f"{entry.kind} {entry.filename} is a single file; it needs its diffusers configs in "
            f"the folder {config} (model_index.json or config.json), since nothing is downloaded"
        )
    return config


def _require_safetensors(entry: ModelEntry) -> None:
    if entry.format != "safetensors":
        # diffusers would read a pickle with full unpickling; only .safetensors is safe there.
        raise InvalidInputError(
            entry.kind, f"{entry.filename}: single-file models must be .safetensors files"
        )


def _load_checkpoint_components(entry: ModelEntry, dtype: Any) -> dict[str, Any]:
    from diffusers import StableDiffusionInpaintPipeline

    options = {**_load_kwargs(dtype), "safety_checker": None, "requires_safety_checker": False}
    if entry.format == "diffusers":
        pipe = StableDiffusionInpaintPipeline.from_pretrained(entry.path, **options)
    else:
        _require_safetensors(entry)
        config = _single_file_config(entry)
        pipe = StableDiffusionInpaintPipeline.from_single_file(
            str(entry.path), config=str(config), **options
        )
    return {
        name: pipe.components[name]
        for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
    }


def _load_controlnet(entry: ModelEntry, dtype: Any) -> Any:
    from diffusers import ControlNetModel

    return _load_model(ControlNetModel, entry, dtype)


def _load_vae(entry: ModelEntry, dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    return _load_model(AutoencoderKL, entry, dtype)


def _load_model(model_class: Any, entry: ModelEntry, dtype: Any) -> Any:
    if entry.format == "diffusers":
        return model_class.from_pretrained(entry.path, **_load_kwargs(dtype))
    _require_safetensors(entry)
    config = _single_file_config(entry)
    return model_class.from_single_file(str(entry.path), config=str(config), **_load_kwargs(dtype))
