"""The models installed under MODELS_DIR: what they are, their WebUI hashes, and the manifest.

Listing, hashing, name resolution and the sha256 manifest only read files, so the web process may
use them; loading the weights with torch is ``pipelines.loading``, which only workers call.
"""

import functools
import hashlib
import json
import os
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError, ModelNotFoundError, UntrustedModelError

# ComfyUI's folder names are the model kinds; the WebUI's names for the same folders are accepted
# too, so MODELS_DIR can be an existing ComfyUI or WebUI models folder.
MODEL_KINDS = (
    "checkpoints",
    "controlnet",
    "vae",
    "loras",
    "ipadapter",
    "clip_vision",
    "sams",
    "annotators",
)
FOLDER_KINDS: dict[str, str] = {
    **{kind: kind for kind in MODEL_KINDS},
    "Stable-diffusion": "checkpoints",
    "ControlNet": "controlnet",
    "Lora": "loras",
    "VAE": "vae",
}
# In order of preference: when a model exists in several formats, a bare name picks the first.
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin")
# A folder beside a single-file model that holds its diffusers configs (from_single_file needs
# them, and fetching them from the Hub is not allowed at run time).
CONFIG_DIR_SUFFIX = ".config"
# The WebUI shows 10 hex digits for checkpoints ("Model hash") and 12 for LoRAs ("Lora hashes").
# The kinds the ControlNet extension names with its own hash (``extension_hash``).
EXTENSION_HASHED = ("controlnet", "ipadapter")
SHORT_HASH_LENGTH = {"loras": 12}
DEFAULT_SHORT_HASH_LENGTH = 10
_BLOCK_SIZE = 1024 * 1024
_EXTENSION_HASH_OFFSET, _EXTENSION_HASH_SPAN = 0x100000, 0x10000
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


def extension_hash(entry: ModelEntry) -> str:
    """The hash the WebUI ControlNet extension writes after a model's name
    (``control_v11p_sd15_openpose [cab727d4]``, in its model list and infotexts): the WebUI's
    old model hash, sha256 of the 64 KiB at 1 MiB into the weights file, 8 hex digits. It
    reads 64 KiB whatever the file's size (a file under 1 MiB hashes nothing, as there)."""
    with weights_file(entry).open("rb") as weights:
        weights.seek(_EXTENSION_HASH_OFFSET)
        return hashlib.sha256(weights.read(_EXTENSION_HASH_SPAN)).hexdigest()[:8]


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
            entry for entry in (found or candidates) if _hash_matches(entry, short_hash, cache_file)
        ]
    if not found:
        available = ", ".join(entry.filename for entry in candidates) or "none"
        raise ModelNotFoundError(f"no {kind} model named {name!r}; installed: {available}")
    return found[0]


def _hash_matches(entry: ModelEntry, short_hash: str, cache_file: Path | None) -> bool:
    """Whether ``short_hash`` is ``entry``'s: the extension's 8 digits (``extension_hash``), or
    the start of its sha256 as the WebUI writes it (``model_hash``)."""
    if (
        len(short_hash) == 8
        and entry.kind in EXTENSION_HASHED
        and extension_hash(entry) == short_hash
    ):
        return True
    return model_hash(entry, cache_file=cache_file).startswith(short_hash)


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


# --- paths inside MODELS_DIR --------------------------------------------------------------------


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
