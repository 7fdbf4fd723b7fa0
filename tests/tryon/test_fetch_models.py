"""`manage.py fetch_models`: downloads the recommended set and keeps only verified files.

The Hub is replaced by a fake that serves bytes and publishes their hashes; nothing here touches
the network.
"""

import hashlib
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from pipelines import fetch
from pipelines.errors import InvalidInputError
from pipelines.fetch import DOWNLOADS


def _content(repo_id: str, path: str) -> bytes:
    return f"{repo_id}/{path}".encode() * 50


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeHub:
    """Serves bytes and publishes their LFS sha256, like the Hub."""

    def __init__(self, corrupt: str | None = None):
        self.downloads: list[str] = []
        self.corrupt = corrupt
        self.published: dict[str, str] = {}  # path -> a hash to publish instead

    def get_paths_info(self, repo_id, paths, revision=None):
        infos = []
        for path in paths:
            data = _content(repo_id, path)
            sha256 = self.published.get(path, _sha256(data))
            infos.append(
                SimpleNamespace(path=path, size=len(data), lfs=SimpleNamespace(sha256=sha256))
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
    """The fake Hub, and the starter sets with each pinned hash replaced by the hash of the
    fake's bytes for that file (so the pins are still checked, against content we serve)."""
    fake = FakeHub()
    pinned = {
        name: tuple(
            replace(item, sha256=_sha256(_content(item.repo_id, item.file)))
            if item.sha256
            else item
            for item in items
        )
        for name, items in fetch.STARTER_SETS.items()
    }
    monkeypatch.setattr(fetch, "STARTER_SETS", pinned)
    real = fetch.fetch_recommended
    monkeypatch.setattr(
        fetch,
        "fetch_recommended",
        lambda models_dir, **kw: real(models_dir, api=fake, download=fake.download, **kw),
    )
    return fake


def test_downloads_the_sd15_set_as_single_files_in_the_comfyui_layout(
    hub, settings, tmp_path, capsys
):
    settings.MODELS_DIR = tmp_path
    call_command("fetch_models")
    # Single files as the WebUI has them, under the names it knows.
    for path in (
        "checkpoints/sd-v1-5-inpainting.safetensors",
        "controlnet/control_v11p_sd15_openpose.pth",
        "controlnet/control_v11p_sd15_canny.pth",
        "vae/vae-ft-mse-840000-ema-pruned.safetensors",
        "sams/sam_vit_b_01ec64.pth",
    ):
        assert (tmp_path / path).is_file(), path
    out = capsys.readouterr().out
    assert "5 files in place and verified" in out
    assert "licence: CreativeML Open RAIL-M" in out
    assert len(hub.downloads) == 5


def test_the_sdxl_set_lands_beside_it(hub, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    call_command("fetch_models", set="sdxl")
    placed = [p for p in tmp_path.rglob("*") if p.is_file() and DOWNLOADS not in p.parts]
    assert sorted(str(p.relative_to(tmp_path)) for p in placed) == [
        "checkpoints/sd_xl_base_1.0_inpainting_0.1.safetensors",
        "controlnet/controlnet-canny-sdxl-1.0.safetensors",
        "controlnet/controlnet-openpose-sdxl-1.0.safetensors",
        "sams/sam_vit_b_01ec64.pth",
        "vae/sdxl-vae-fp16-fix.safetensors",
    ]
    assert (
        "xinsir/controlnet-openpose-sdxl-1.0/diffusion_pytorch_model.safetensors" in hub.downloads
    )


def test_an_unknown_set_is_refused_by_name(hub, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    with pytest.raises(CommandError, match="invalid choice: 'sd3'"):
        call_command("fetch_models", "--set", "sd3")
    with pytest.raises(InvalidInputError, match="'sd3' is not one of sd15, sdxl"):
        fetch.starter_set("sd3")


def test_the_shipped_sd15_files_are_pinned_and_every_licence_allows_selling():
    for item in fetch.STARTER_SETS["sd15"]:
        assert len(item.sha256) == 64 and int(item.sha256, 16) >= 0, item.target
    for items in fetch.STARTER_SETS.values():
        for item in items:
            assert item.licence in (
                "CreativeML Open RAIL-M",
                "CreativeML Open RAIL++-M",
                "OpenRAIL",
                "MIT",
                "Apache-2.0",
            )


def test_a_file_the_hub_changed_since_it_was_pinned_is_not_downloaded(hub, settings, tmp_path):
    """The Hub vouching for new bytes is not enough: the pin says which bytes we want."""
    settings.MODELS_DIR = tmp_path
    hub.published["control_v11p_sd15_canny.pth"] = _sha256(b"other weights")
    with pytest.raises(CommandError, match=r"the Hub now publishes sha256 .* not the pinned"):
        call_command("fetch_models")
    assert not any("canny" in name for name in hub.downloads)
    assert not (tmp_path / "controlnet/control_v11p_sd15_canny.pth").exists()


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
    assert message.count("  ->  ") == len(fetch.STARTER_SETS["sd15"])
    assert "(sha256 735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75)" in message
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
        folders[1] == folders[0] == tmp_path / ".downloads" / "webui--stable-diffusion-inpainting"
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
