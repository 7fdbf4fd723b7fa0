"""Engine choice and weights discovery (no torch involved)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.__main__ import main
from pipelines.engines import engine_models_dir, find_weights, resolve_engine
from pipelines.errors import InvalidInputError, ModelNotFoundError


def _install(models_dir, *relative_paths):
    for relative in relative_paths:
        path = models_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")


def test_finds_single_files_and_diffusers_folders_and_ignores_the_rest(tmp_path):
    _install(
        tmp_path,
        "checkpoints/sd15-inpainting.safetensors",
        "checkpoints/realistic/model_index.json",
        "checkpoints/notes.txt",
        "controlnet/control_v11p_sd15_openpose/config.json",
        "sams/sam_vit_b_01ec64.pth",
        "loras/empty-folder-without-config/readme.md",
    )
    weights = find_weights(tmp_path)
    assert weights.by_folder["checkpoints"] == ("realistic", "sd15-inpainting.safetensors")
    assert weights.by_folder["controlnet"] == ("control_v11p_sd15_openpose",)
    assert weights.by_folder["sams"] == ("sam_vit_b_01ec64.pth",)
    assert weights.by_folder["loras"] == ()
    assert weights.can_run_sd


def test_a_missing_models_dir_means_no_weights(tmp_path):
    weights = find_weights(tmp_path / "nowhere")
    assert not weights.can_run_sd
    assert set(weights.counts().values()) == {0}


def test_auto_picks_sd_only_with_a_checkpoint_and_a_controlnet(tmp_path):
    _install(tmp_path, "checkpoints/a.safetensors")
    assert resolve_engine("auto", find_weights(tmp_path)) == "preview"
    _install(tmp_path, "controlnet/canny.safetensors")
    assert resolve_engine("auto", find_weights(tmp_path)) == "sd"


def test_explicit_engines(tmp_path):
    weights = find_weights(tmp_path)
    assert resolve_engine("preview", weights) == "preview"
    assert resolve_engine("tiny", weights) == "tiny"
    with pytest.raises(ModelNotFoundError, match="checkpoints"):
        resolve_engine("sd", weights)
    with pytest.raises(InvalidInputError, match="engine: 'turbo' is not one of"):
        resolve_engine("turbo", weights)


def test_cli_lists_weights(tmp_path, capsys):
    _install(tmp_path, "vae/vae-ft-mse.safetensors")
    assert main(["weights", "--models-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"]["vae"] == ["vae-ft-mse.safetensors"]
    assert report["can_run_sd"] is False


def test_webui_folder_names_count_as_their_comfyui_kinds(tmp_path):
    _install(
        tmp_path,
        "Stable-diffusion/sd15/realistic.safetensors",
        "ControlNet/control_v11p_sd15_openpose.pth",
        "Lora/detail.safetensors",
        "VAE/vae-ft-mse.safetensors",
    )
    weights = find_weights(tmp_path)
    assert weights.by_folder["checkpoints"] == ("sd15/realistic.safetensors",)
    assert weights.by_folder["controlnet"] == ("control_v11p_sd15_openpose.pth",)
    assert weights.by_folder["loras"] == ("detail.safetensors",)
    assert weights.by_folder["vae"] == ("vae-ft-mse.safetensors",)
    assert resolve_engine("auto", weights) == "sd"


def test_only_the_tiny_engine_gets_its_own_models_dir(tmp_path, monkeypatch):
    from pipelines import tiny

    built = []
    monkeypatch.setattr(tiny, "ensure_tiny", lambda models_dir: built.append(models_dir) or "kit")
    assert engine_models_dir("sd", tmp_path) == tmp_path
    assert engine_models_dir("preview", tmp_path) == tmp_path
    assert built == []
    assert engine_models_dir("tiny", tmp_path) == "kit"
    assert built == [tmp_path]


def test_weights_discovery_does_not_import_torch(tmp_path):
    _install(tmp_path, "checkpoints/a.safetensors", "controlnet/b.safetensors")
    code = (
        "import sys; from pathlib import Path; from pipelines import engines, registry, tiny; "
        f"models = Path({str(tmp_path)!r}); "
        "engines.resolve_engine('auto', engines.find_weights(models)); "
        "registry.scan_models(models); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
