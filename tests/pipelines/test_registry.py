"""pipelines.registry: listing, WebUI hashes and names. Loading them: test_loading.py."""

import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipelines import registry
from pipelines.errors import ModelNotFoundError
from pipelines.registry import (
    ModelEntry,
    extension_hash,
    model_hash,
    resolve_model,
    scan_models,
)


def _sha256(path: Path, start: int = 0) -> str:
    return hashlib.sha256(path.read_bytes()[start:]).hexdigest()


def _touch(models_dir: Path, *relative_paths: str) -> None:
    for relative in relative_paths:
        path = models_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(relative.encode())


def _save_tensors(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.full((2, 2), value)}, str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_hashes():
    registry._hashes.clear()


# --- listing ------------------------------------------------------------------------------------


def test_scan_finds_the_tiny_kit(tiny_kit):
    found = {(e.kind, e.name, e.format) for e in scan_models(tiny_kit)}
    assert found == {
        ("checkpoints", "tiny-sd-inpaint", "diffusers"),
        ("controlnet", "tiny-canny", "diffusers"),
        ("controlnet", "tiny-openpose", "diffusers"),
        ("loras", "tiny-lora", "safetensors"),
    }


def test_scan_reads_webui_folder_names_and_prefers_safetensors(tmp_path):
    _touch(
        tmp_path,
        "Stable-diffusion/sd15/realistic.ckpt",
        "Stable-diffusion/sd15/realistic.safetensors",
        "Stable-diffusion/sd15/realistic.safetensors.config/model_index.json",
        "ControlNet/control_v11p_sd15_canny.pth",
        "Lora/detail.safetensors",
        "VAE/vae-ft-mse.safetensors",
        "Lora/notes.txt",
    )
    entries = scan_models(tmp_path)
    assert [(e.kind, e.filename) for e in entries] == [
        ("checkpoints", "sd15/realistic.safetensors"),
        ("checkpoints", "sd15/realistic.ckpt"),
        ("controlnet", "control_v11p_sd15_canny.pth"),
        ("vae", "vae-ft-mse.safetensors"),
        ("loras", "detail.safetensors"),
    ]
    assert all(e.models_dir == tmp_path for e in entries)


# --- hashes -------------------------------------------------------------------------------------


def test_hashes_are_the_webuis(tiny_kit, tmp_path):
    entries = scan_models(tiny_kit)
    checkpoint = resolve_model(entries, "checkpoints", "tiny-sd-inpaint")
    unet = tiny_kit / "checkpoints/tiny-sd-inpaint/unet/diffusion_pytorch_model.safetensors"
    assert model_hash(checkpoint) == _sha256(unet)[:10]
    canny = resolve_model(entries, "controlnet", "tiny-canny")
    canny_file = canny.path / "diffusion_pytorch_model.safetensors"
    assert model_hash(canny) == _sha256(canny_file)[:10]
    one = _save_tensors(tmp_path / "one.safetensors")
    single = ModelEntry("checkpoints", "one", one, "safetensors")
    assert model_hash(single) == _sha256(single.path)[:10]


def test_lora_hashes_skip_the_safetensors_header_like_the_webui(tiny_kit, tmp_path):
    lora = resolve_model(scan_models(tiny_kit), "loras", "tiny-lora")
    header_length = int.from_bytes(lora.path.read_bytes()[:8], "little")
    assert model_hash(lora) == _sha256(lora.path, 8 + header_length)[:12]
    assert model_hash(lora) != _sha256(lora.path)[:12]
    pickled = tmp_path / "old.pt"
    torch.save({"w": torch.ones(1)}, pickled)
    assert model_hash(ModelEntry("loras", "old", pickled, "pt")) == _sha256(pickled)[:12]


def test_hashes_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    hashed = []
    real_hash_file = registry._hash_file
    monkeypatch.setattr(
        registry, "_hash_file", lambda path, skip: hashed.append(path) or real_hash_file(path, skip)
    )
    entry = ModelEntry("vae", "v", _save_tensors(tmp_path / "v.safetensors"), "safetensors")
    first = model_hash(entry)
    assert model_hash(entry) == first
    assert len(hashed) == 1
    _save_tensors(entry.path, value=2.0)
    os.utime(entry.path, ns=(1, 1))
    assert model_hash(entry) == _sha256(entry.path)[:10] != first
    assert len(hashed) == 2


def test_the_hash_cache_file_serves_other_processes(tmp_path, monkeypatch):
    entry = ModelEntry("vae", "v", _save_tensors(tmp_path / "v.safetensors"), "safetensors")
    cache_file = tmp_path / "hash-cache.json"
    first = model_hash(entry, cache_file=cache_file)
    registry._hashes.clear()  # as in a new process

    def must_not_hash(path, skip):
        raise AssertionError("hashed again despite the cache file")

    monkeypatch.setattr(registry, "_hash_file", must_not_hash)
    assert model_hash(entry, cache_file=cache_file) == first


# --- names --------------------------------------------------------------------------------------


def test_webui_names_resolve(tmp_path):
    safe = _save_tensors(tmp_path / "checkpoints/v1-5-pruned-emaonly.safetensors")
    pickled = tmp_path / "checkpoints/v1-5-pruned-emaonly.ckpt"
    torch.save({"weight": torch.zeros(3)}, pickled)
    entries = scan_models(tmp_path)
    safe_hash = _sha256(safe)[:10]
    for name in (
        "v1-5-pruned-emaonly",
        "v1-5-pruned-emaonly.safetensors",
        f"v1-5-pruned-emaonly [{safe_hash}]",
        f"v1-5-pruned-emaonly.safetensors [{safe_hash}]",
        "V1-5-Pruned-EmaOnly",
    ):
        assert resolve_model(entries, "checkpoints", name).path == safe, name
    pickled_hash = _sha256(pickled)[:10]
    assert resolve_model(entries, "checkpoints", "v1-5-pruned-emaonly.ckpt").path == pickled
    assert resolve_model(entries, "checkpoints", f"v1-5-pruned-emaonly [{pickled_hash}]").path == (
        pickled
    )
    assert resolve_model(entries, "checkpoints", f"renamed-since [{pickled_hash}]").path == pickled


def test_an_unknown_name_lists_what_is_installed(tiny_kit):
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model(scan_models(tiny_kit), "controlnet", "control_v11p_sd15_openpose")
    message = str(error.value)
    assert "controlnet" in message and "control_v11p_sd15_openpose" in message
    assert "tiny-canny, tiny-openpose" in message
    with pytest.raises(ModelNotFoundError, match=r"\[0123456789\]"):
        resolve_model(scan_models(tiny_kit), "controlnet", "tiny-canny [0123456789]")


def test_controlnets_carry_the_extensions_hash_and_are_found_by_it(tmp_path):
    # The extension's names (control_v11p_sd15_openpose [cab727d4]) hash 64 KiB at 1 MiB.
    path = tmp_path / "controlnet" / "control_v11p_sd15_openpose.pth"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 * 2**20))
    net = ModelEntry("controlnet", "control_v11p_sd15_openpose", path, "pth", tmp_path)
    short = hashlib.sha256(path.read_bytes()[2**20 : 2**20 + 2**16]).hexdigest()[:8]
    assert extension_hash(net) == short != model_hash(net)[:8]
    other = ModelEntry("controlnet", "copy", tmp_path / "copy.pth", "pth", tmp_path)
    other.path.write_bytes(os.urandom(3 * 2**20))
    # A hardcoded extension name finds its file, by name and hash or, renamed, by hash alone.
    assert resolve_model([other, net], "controlnet", f"{net.name} [{short}]") == net
    assert resolve_model([other, net], "controlnet", f"renamed [{short}]") == net
    assert resolve_model([other, net], "controlnet", f"x [{model_hash(net)[:8]}]") == net
    # A file under 1 MiB hashes nothing, as in the WebUI.
    small = ModelEntry("controlnet", "small", tmp_path / "small.pth", "pth", tmp_path)
    small.path.write_bytes(b"tiny")
    assert extension_hash(small) == hashlib.sha256(b"").hexdigest()[:8]
