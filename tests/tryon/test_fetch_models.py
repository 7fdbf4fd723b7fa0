"""`manage.py fetch_models`: downloads the recommended set and keeps only verified files.

The Hub is replaced by a fake that serves bytes and publishes their hashes; nothing here touches
the network.
"""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from pipelines import fetch


def _content(repo_id: str, path: str) -> bytes:
    return f"{repo_id}/{path}".encode() * (3 if path.endswith(".json") else 50)


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


class FakeHub:
    """Publishes LFS sha256 for weights and git blob ids for small files, like the Hub."""

    def __init__(self, corrupt: str | None = None):
        self.downloads: list[str] = []
        self.corrupt = corrupt

    def get_paths_info(self, repo_id, paths, revision=None):
        infos = []
        for path in paths:
            data = _content(repo_id, path)
            large = path.endswith((".safetensors", ".pth"))
            lfs = SimpleNamespace(sha256=hashlib.sha256(data).hexdigest()) if large else None
            infos.append(
                SimpleNamespace(path=path, size=len(data), blob_id=_git_blob_id(data), lfs=lfs)
            )
        return infos

    def download(self, repo_id, *, filename, revision, local_dir):
        self.downloads.append(f"{repo_id}/{filename}")
        data = _content(repo_id, filename)
        if filename == self.corrupt:
            data = data[:-1] + b"!"
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    real = fetch.fetch_recommended
    monkeypatch.setattr(
        fetch,
        "fetch_recommended",
        lambda models_dir, **kw: real(models_dir, api=fake, download=fake.download, **kw),
    )
    return fake


def test_downloads_the_recommended_set_into_the_comfyui_layout(hub, settings, tmp_path, capsys):
    settings.MODELS_DIR = tmp_path
    call_command("fetch_models")
    assert (tmp_path / "checkpoints/sd15-inpainting/model_index.json").is_file()
    assert (
        tmp_path / "checkpoints/sd15-inpainting/unet/diffusion_pytorch_model.safetensors"
    ).is_file()
    # Single files where their authors publish them so, under the names the WebUI knows.
    assert (tmp_path / "controlnet/control_v11p_sd15_openpose.pth").is_file()
    assert (tmp_path / "controlnet/control_v11p_sd15_canny.pth").is_file()
    assert (tmp_path / "vae/vae-ft-mse-840000-ema-pruned.safetensors").is_file()
    assert (tmp_path / "sams/sam_vit_b_01ec64.pth").is_file()
    total = sum(len(item.files) for item in fetch.RECOMMENDED)
    assert f"{total} files in place and verified" in capsys.readouterr().out
    assert len(hub.downloads) == total


def test_a_second_run_downloads_nothing(hub, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    call_command("fetch_models")
    hub.downloads.clear()
    call_command("fetch_models")
    assert hub.downloads == []


def test_a_file_that_does_not_match_its_hash_is_not_kept(hub, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    hub.corrupt = "checkpoints/sam_vit_b_01ec64.pth"
    with pytest.raises(CommandError, match=r"sam_vit_b_01ec64\.pth does not match"):
        call_command("fetch_models")
    assert not (tmp_path / "sams" / "sam_vit_b_01ec64.pth").exists()
    assert [p.name for p in (tmp_path / "sams").iterdir()] == []


def test_a_tampered_local_file_is_downloaded_again(hub, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    call_command("fetch_models")
    target = tmp_path / "controlnet/control_v11p_sd15_canny.pth"
    target.write_bytes(b"x" * target.stat().st_size)
    hub.downloads.clear()
    call_command("fetch_models")
    assert hub.downloads == ["lllyasviel/ControlNet-v1-1/control_v11p_sd15_canny.pth"]
    assert target.read_bytes() == _content(
        "lllyasviel/ControlNet-v1-1", "control_v11p_sd15_canny.pth"
    )


def test_offline_it_says_so_and_lists_what_to_copy_where(settings, tmp_path, monkeypatch):
    """No connection (huggingface_hub's offline mode raises this OSError): nothing is written,
    and each file's URL and target path are printed for a copy by hand."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    class OfflineHub:
        def get_paths_info(self, *args, **kwargs):
            raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode")

    real = fetch.fetch_recommended
    monkeypatch.setattr(
        fetch,
        "fetch_recommended",
        lambda models_dir, **kw: real(models_dir, api=OfflineHub(), **kw),
    )
    settings.MODELS_DIR = tmp_path
    with pytest.raises(CommandError, match="this machine looks offline") as refused:
        call_command("fetch_models")
    message = str(refused.value)
    pth = (
        "https://huggingface.co/lllyasviel/ControlNet-v1-1/resolve/main/control_v11p_sd15_canny.pth"
    )
    assert f"{pth}  ->  {tmp_path / 'controlnet' / 'control_v11p_sd15_canny.pth'}" in message
    assert message.count("  ->  ") == sum(len(item.files) for item in fetch.RECOMMENDED)
    assert not any((tmp_path / name).exists() for name in ("controlnet", "vae", ".downloads"))


def test_a_download_that_breaks_off_is_resumed_from_its_folder(hub, settings, tmp_path):
    """The partial file stays in MODELS_DIR/.downloads/<repo>, the folder the next run hands
    to huggingface_hub again (which continues an ".incomplete" file there)."""
    settings.MODELS_DIR = tmp_path
    folders = []
    real_download = hub.download

    def breaks_once(repo_id, *, filename, revision, local_dir):
        folders.append(Path(local_dir))
        if len(folders) == 1:
            Path(local_dir).mkdir(parents=True)
            (Path(local_dir) / "part.incomplete").write_bytes(b"half")
            raise OSError("connection reset")
        if len(folders) == 2:  # the next run finds the partial file where it left it
            assert (Path(local_dir) / "part.incomplete").read_bytes() == b"half"
        return real_download(repo_id, filename=filename, revision=revision, local_dir=local_dir)

    hub.download = breaks_once
    with pytest.raises(CommandError, match="connection reset"):
        call_command("fetch_models")
    assert (folders[0] / "part.incomplete").read_bytes() == b"half"
    call_command("fetch_models")
    assert (
        folders[1]
        == folders[0]
        == tmp_path / ".downloads" / "stable-diffusion-v1-5--stable-diffusion-inpainting"
    )


def test_the_cli_fetch_offline_exits_2_with_the_list(tmp_path):
    """``python -m pipelines fetch`` with huggingface_hub's offline mode on (it refuses before
    any request is made, so this test sends nothing anywhere)."""
    import subprocess
    import sys

    from tests.processes import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "fetch", "--models", str(tmp_path)],
        cwd=ROOT,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "this machine looks offline" in done.stderr
    assert f"{tmp_path / 'vae' / 'vae-ft-mse-840000-ema-pruned.safetensors'}" in done.stderr
