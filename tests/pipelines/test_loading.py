"""pipelines.loading: weights loaded safely, and the loaded pipeline, offline."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines.errors import InvalidInputError
from pipelines.loading import load_pipeline, load_state_dict
from pipelines.registry import resolve_model, scan_models


def _save_tensors(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.full((2, 2), value)}, str(path))
    return path


# --- safe loading -------------------------------------------------------------------------------


def _create_marker(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return _create_marker, (str(self.marker),)


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "checkpoints/evil.ckpt"
    checkpoint.parent.mkdir()
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": _Exploit(marker)}, checkpoint)
    with pytest.raises(InvalidInputError, match=r"needs full unpickling.*\.safetensors"):
        load_state_dict(checkpoint, models_dir=tmp_path)
    assert not marker.exists()
    # The fixture is live: full unpickling would indeed have run its code.
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_plain_pickled_tensors_load(tmp_path):
    plain = tmp_path / "plain.ckpt"
    torch.save({"w": torch.arange(3.0)}, plain)
    assert torch.equal(load_state_dict(plain)["w"], torch.arange(3.0))
    lightning = tmp_path / "lightning.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 7}, lightning)
    assert list(load_state_dict(lightning)) == ["w"]
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2], not_weights)
    with pytest.raises(InvalidInputError, match="not a state dict of tensors"):
        load_state_dict(not_weights)


def test_a_link_out_of_the_models_folder_is_refused(tmp_path):
    outside = _save_tensors(tmp_path / "elsewhere/secret.safetensors")
    models_dir = tmp_path / "models"
    (models_dir / "vae").mkdir(parents=True)
    (models_dir / "vae/linked.safetensors").symlink_to(outside)
    with pytest.raises(InvalidInputError, match="outside the models folder"):
        load_state_dict(models_dir / "vae/linked.safetensors", models_dir=models_dir)
    inside = _save_tensors(models_dir / "vae/own.safetensors")
    assert "weight" in load_state_dict(inside, models_dir=models_dir)


def test_a_linked_diffusers_folder_is_not_loaded(tiny_kit, tmp_path, no_network):
    models_dir = tmp_path / "models"
    (models_dir / "controlnet").mkdir(parents=True)
    (models_dir / "controlnet/linked").symlink_to(tiny_kit / "controlnet/tiny-canny")
    entries = scan_models(tiny_kit)
    checkpoint = resolve_model(entries, "checkpoints", "tiny-sd-inpaint")
    linked = resolve_model(scan_models(models_dir), "controlnet", "linked")
    with pytest.raises(InvalidInputError, match="outside the models folder"):
        load_pipeline(checkpoint, [linked])


# --- the pipeline -------------------------------------------------------------------------------


def test_the_kit_loads_and_inpaints_at_a_real_size_offline(tiny_kit, no_network):
    from diffusers import MultiControlNetModel, StableDiffusionControlNetInpaintPipeline

    entries = scan_models(tiny_kit)
    checkpoint = resolve_model(entries, "checkpoints", "tiny-sd-inpaint")
    nets = [resolve_model(entries, "controlnet", n) for n in ("tiny-openpose", "tiny-canny")]
    pipe = load_pipeline(checkpoint, nets)
    assert isinstance(pipe, StableDiffusionControlNetInpaintPipeline)
    assert isinstance(pipe.controlnet, MultiControlNetModel)
    assert len(pipe.controlnet.nets) == 2
    photo = Image.new("RGB", (512, 768), (120, 90, 60))
    mask = Image.new("L", (512, 768), 255)
    result = pipe(
        "a red shirt",
        image=photo,
        mask_image=mask,
        control_image=[photo, photo],
        height=768,
        width=512,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert result.size == (512, 768)

    again = load_pipeline(checkpoint, nets[:1])
    assert again.unet is pipe.unet  # loaded once per process
    assert again.scheduler is not pipe.scheduler  # a sampler change stays in its own pipeline
    assert type(again.controlnet).__name__ == "ControlNetModel"


def test_wrong_kinds_are_refused(tiny_kit):
    entries = scan_models(tiny_kit)
    checkpoint = resolve_model(entries, "checkpoints", "tiny-sd-inpaint")
    lora = resolve_model(entries, "loras", "tiny-lora")
    with pytest.raises(InvalidInputError, match=r"controlnet: tiny-lora\.safetensors is a loras"):
        load_pipeline(checkpoint, [lora])
    with pytest.raises(InvalidInputError, match="at least one ControlNet"):
        load_pipeline(checkpoint, [])


def test_a_single_file_of_no_known_architecture_is_refused(tiny_kit, tmp_path, no_network):
    """Without a config folder, a single file is read with the configs of the architecture its
    keys show; one that shows none is refused with what was found, pickle or safetensors."""
    controlnet = resolve_model(scan_models(tiny_kit), "controlnet", "tiny-canny")
    _save_tensors(tmp_path / "checkpoints/sd15.safetensors")
    pickled = tmp_path / "checkpoints/sd15-old.ckpt"
    torch.save({"w": torch.ones(1)}, pickled)
    entries = scan_models(tmp_path)
    for name in ("sd15", "sd15-old"):
        refusal = r"not an SD 1\.5 or SDXL checkpoint"
        with pytest.raises(InvalidInputError, match=refusal) as refused:
            load_pipeline(resolve_model(entries, "checkpoints", name), [controlnet])
        assert name in str(refused.value)


# --- a single-file checkpoint -------------------------------------------------------------------


def _save_as_single_file(pipeline_dir: Path, path: Path) -> None:
    """The tiny kit's diffusers pipeline as one original-layout .safetensors."""
    import json

    from safetensors.torch import load_file

    from tests import model_files as mf

    weights = "diffusion_pytorch_model.safetensors"
    config = {
        part: json.loads((pipeline_dir / part / "config.json").read_text())
        for part in ("unet", "vae")
    }
    unet = mf.unet_to_ldm(load_file(pipeline_dir / "unet" / weights), config["unet"])
    vae = mf.vae_to_ldm(load_file(pipeline_dir / "vae" / weights), config["vae"])
    text = mf.clip_to_ldm(load_file(pipeline_dir / "text_encoder/model.safetensors"))
    state = {mf.UNET_PREFIX + key: value for key, value in unet.items()}
    state |= {mf.VAE_PREFIX + key: value for key, value in vae.items()}
    state |= {mf.SD15_CLIP_PREFIX + key: value for key, value in text.items()}
    save_file(state, str(path))


def test_a_single_file_checkpoint_loads_with_its_local_config(tiny_kit, tmp_path, no_network):
    import shutil

    folder = tiny_kit / "checkpoints/tiny-sd-inpaint"
    single = tmp_path / "checkpoints/tiny-single.safetensors"
    single.parent.mkdir()
    _save_as_single_file(folder, single)
    # The configs alone, no weights: those must come from the single file.
    shutil.copytree(
        folder,
        single.with_name(single.name + ".config"),
        ignore=shutil.ignore_patterns("*.safetensors"),
    )
    entries = scan_models(tmp_path) + scan_models(tiny_kit)
    checkpoint = resolve_model(entries, "checkpoints", "tiny-single")
    pipe = load_pipeline(checkpoint, [resolve_model(entries, "controlnet", "tiny-canny")])
    folder_entry = resolve_model(entries, "checkpoints", "tiny-sd-inpaint")
    reference = load_pipeline(folder_entry, [resolve_model(entries, "controlnet", "tiny-canny")])
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(reference, name).state_dict()
        assert mine.keys() == theirs.keys(), name
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
