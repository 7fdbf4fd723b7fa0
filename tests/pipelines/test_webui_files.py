"""A models folder as the WebUI and ComfyUI have it: single files in their original layouts
(CompVis checkpoints, lllyasviel ``.pth`` ControlNets, an original VAE, a kohya LoRA) run the
``sd`` engine from the CLI.

The files are tiny (tests/model_files.py), so their tiny diffusers configs are passed
explicitly in ``<file>.config`` folders; the shipped full-size configs are proven on
full-size files by ``bench/full_size_formats.py`` and on their parameter counts in
test_architectures.py.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from pipelines.__main__ import main
from pipelines.architectures import CONFIGS
from pipelines.errors import InvalidInputError
from pipelines.infotext import parse_infotext, read_png_infotext
from pipelines.samples import draw_product_shot
from tests import model_files as mf

OPENPOSE, CANNY, VAE = mf.WEBUI_OPENPOSE, mf.WEBUI_CANNY, mf.WEBUI_VAE


@pytest.fixture(scope="module")
def webui_models(tmp_path_factory, tiny_kit) -> Path:
    """MODELS_DIR with only WebUI-style files: two checkpoints, two ``.pth`` ControlNets, a VAE
    and a kohya LoRA, in ComfyUI's folder names."""
    root = tmp_path_factory.mktemp("webui-models")
    tokenizer = tiny_kit / "checkpoints" / "tiny-sd-inpaint" / "tokenizer"
    return mf.write_tiny_webui_models(root, tokenizer)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    draw_product_shot("tshirt", size=(384, 512)).image.save(folder / "tee.png")
    return folder


def _tryon(webui_models, pictures, out: Path, *extra: str) -> np.ndarray:
    args = ["tryon", "--engine", "sd", "--models", str(webui_models)]
    args += ["--person", str(pictures / "astronaut.png"), "--garment", str(pictures / "tee.png")]
    args += ["--category", "upper", "--steps", "1", "--width", "128", "--height", "128"]
    args += ["--seed", "3", "--out", str(out), *extra]
    assert main(args) == 0
    return np.asarray(Image.open(out / "result.png").convert("RGB"), dtype=np.int16)


def test_a_webui_models_folder_runs_the_sd_engine(webui_models, pictures, tmp_path, capsys):
    plain = _tryon(webui_models, pictures, tmp_path / "plain")
    info = parse_infotext(read_png_infotext(tmp_path / "plain" / "result.png"))
    # With both installed, the inpainting checkpoint is the default; the ControlNets are the
    # .pth files, found by their kind in their WebUI names.
    assert info["Model"] == "tiny-inpainting"
    assert OPENPOSE in info["ControlNet 0"] and CANNY in info["ControlNet 1"]

    normal = _tryon(webui_models, pictures, tmp_path / "normal", "--checkpoint", "tiny")
    info = parse_infotext(read_png_infotext(tmp_path / "normal" / "result.png"))
    assert info["Model"] == "tiny"  # a 4-channel checkpoint inpaints too
    assert np.abs(normal - plain).mean() > 1

    lora = _tryon(webui_models, pictures, tmp_path / "lora", "--prompt", "<lora:tiny-kohya:0.8>")
    assert np.abs(lora - plain).mean() > 0.5
    assert "tiny-kohya" in read_png_infotext(tmp_path / "lora" / "result.png")

    vae = _tryon(webui_models, pictures, tmp_path / "vae", "--vae", VAE)
    info = parse_infotext(read_png_infotext(tmp_path / "vae" / "result.png"))
    assert info["VAE"] == f"{VAE}.safetensors"
    assert np.abs(vae - plain).mean() > 1


def test_the_listing_names_each_files_kind(webui_models, capsys):
    assert main(["models", "--models", str(webui_models)]) == 0
    listed = {m["name"]: m["architecture"] for m in json.loads(capsys.readouterr().out)}
    assert listed[OPENPOSE] == listed[CANNY] == "unknown-family ControlNet"
    assert listed["tiny-inpainting"] == "unknown-family inpainting checkpoint"
    assert listed["tiny"] == "unknown-family normal checkpoint"
    assert listed[VAE] == "VAE"
    assert listed["tiny-kohya"] == "SD 1.5 LoRA (kohya)"


# --- SDXL ---------------------------------------------------------------------------------------


def _sdxl_config_beside(path: Path, configs: dict, tokenizer: Path) -> None:
    folder = path.with_name(path.name + ".config")
    shutil.copytree(CONFIGS / "sdxl", folder)  # model_index.json and the Euler scheduler
    for part, key in (("unet", "unet_config"), ("vae", "vae_config")):
        (folder / part / "config.json").write_text(json.dumps(configs[key]))
    for part, key in (("text_encoder", "text_config"), ("text_encoder_2", "text2_config")):
        config = {**configs[key], "model_type": "clip_text_model"}
        (folder / part / "config.json").write_text(json.dumps(config))
    for part in ("tokenizer", "tokenizer_2"):
        shutil.copytree(tokenizer, folder / part)


@pytest.fixture(scope="module")
def sdxl_models(tmp_path_factory, tiny_kit) -> Path:
    """An SDXL inpainting checkpoint in Stability's layout, two SDXL ControlNets as diffusers
    single files (as SDXL ControlNets are published), and an SD 1.5 ``.pth`` ControlNet."""

    root = tmp_path_factory.mktemp("sdxl-models")
    configs = mf.tiny_sdxl_configs(inpainting=True)
    path = root / "checkpoints" / "sdxl-inpainting.safetensors"
    path.parent.mkdir(parents=True)
    mf.write_sdxl_checkpoint(path, **configs, seed=7)
    _sdxl_config_beside(path, configs, tiny_kit / "checkpoints" / "tiny-sd-inpaint" / "tokenizer")
    (root / "controlnet").mkdir()
    config = mf.tiny_controlnet_config(sdxl=True)
    for kind, seed in (("openpose", 8), ("canny", 9)):
        net = root / "controlnet" / f"controlnet-{kind}-sdxl-1.0.safetensors"
        mf.write_diffusers_controlnet(net, config, seed=seed)
        mf.config_beside(net, config)
    sd15 = mf.write_controlnet_pth(
        root / "controlnet" / f"{OPENPOSE}.pth", mf.tiny_controlnet_config(), seed=3
    )
    mf.config_beside(sd15, mf.tiny_controlnet_config())
    (root / "loras").mkdir()
    models = mf.sd15_models(**mf.tiny_sd15_configs(), seed=1)
    lora = root / "loras" / "sd15-kohya.safetensors"
    mf.write_kohya_lora(lora, models["unet"], models["text_encoder"], seed=6)
    xl = mf.sdxl_models(**configs, seed=7)
    mf.write_kohya_lora(
        root / "loras" / "sdxl-kohya.safetensors",
        xl["unet"],
        xl["text_encoder"],
        text_encoder_2=xl["text_encoder_2"],
        sdxl=True,
        seed=10,
    )
    return root


def test_an_sdxl_checkpoint_paints_with_sdxl_controlnets(sdxl_models, pictures, tmp_path, capsys):
    nets = ["--controlnet-openpose", "controlnet-openpose-sdxl-1.0"]
    nets += ["--controlnet-canny", "controlnet-canny-sdxl-1.0"]
    plain = _tryon(sdxl_models, pictures, tmp_path / "xl", *nets)
    info = parse_infotext(read_png_infotext(tmp_path / "xl" / "result.png"))
    assert info["Model"] == "sdxl-inpainting"
    assert "controlnet-openpose-sdxl-1.0" in info["ControlNet 0"]

    # A kohya SDXL LoRA (lora_te1_/lora_te2_, the original UNet's names) loads and paints.
    lora = _tryon(
        sdxl_models, pictures, tmp_path / "lora-xl", *nets, "--prompt", "<lora:sdxl-kohya:1>"
    )
    assert np.abs(lora - plain).mean() > 0.5
    assert "sdxl-kohya" in read_png_infotext(tmp_path / "lora-xl" / "result.png")

    # The garment reference (on by default) steers SDXL too: off, other pixels.
    unreferenced = _tryon(
        sdxl_models, pictures, tmp_path / "xl-off", *nets, "--reference-weight", "0"
    )
    assert np.abs(unreferenced - plain).mean() > 0.05
    assert "reference_only" in read_png_infotext(tmp_path / "xl" / "result.png")
    assert "reference_only" not in read_png_infotext(tmp_path / "xl-off" / "result.png")

    # An SD 1.5 ControlNet cannot guide SDXL: refused by name, before any step.
    args = ["--controlnet-openpose", OPENPOSE, "--controlnet-canny", "controlnet-canny-sdxl-1.0"]
    with pytest.raises(AssertionError):
        _tryon(sdxl_models, pictures, tmp_path / "mixed", *args)
    assert f"{OPENPOSE}.pth (text width 32) does not fit" in capsys.readouterr().err

    # An SD 1.5 LoRA on SDXL: refused by name too.
    with pytest.raises(AssertionError):
        _tryon(sdxl_models, pictures, tmp_path / "lora", *nets, "--prompt", "<lora:sd15-kohya:1>")
    expected = "sd15-kohya.safetensors is an SD 1.5 LoRA (kohya); the checkpoint sdxl-inpainting"
    assert expected in capsys.readouterr().err


def test_an_sdxl_folder_needs_no_names_and_paints_at_the_native_size(
    sdxl_models, pictures, tmp_path
):
    """Unnamed, each unit takes the ControlNet of the checkpoint's family (the folder also holds
    an SD 1.5 OpenPose, listed first), and an unset size is SDXL's 832 × 1216."""
    out = tmp_path / "shot"
    args = ["modelshot", "--engine", "sd", "--models", str(sdxl_models), "--steps", "1"]
    args += ["--hires-scale", "1"]  # the first pass's size is what this test is about
    args += ["--garment", str(pictures / "tee.png"), "--category", "upper", "--out", str(out)]
    assert main(args) == 0
    result = Image.open(out / "result.png")
    assert result.size == (832, 1216)
    info = parse_infotext(read_png_infotext(out / "result.png"))
    assert (info["Size-1"], info["Size-2"]) == ("832", "1216")
    assert "controlnet-openpose-sdxl-1.0" in info["ControlNet 0"]
    assert "controlnet-canny-sdxl-1.0" in info["ControlNet 1"]


def test_controlnet_layouts_not_loaded_yet_are_refused_by_name(sdxl_models, tmp_path):
    from pipelines.loading import load_pipeline
    from pipelines.registry import resolve_model, scan_models

    (tmp_path / "controlnet").mkdir()
    config = mf.tiny_controlnet_config(sdxl=True)
    net = mf.write_controlnet_pth(tmp_path / "controlnet" / "sdxl-lllyasviel.pth", config)
    mf.config_beside(net, config)
    entries = scan_models(sdxl_models) + scan_models(tmp_path)
    checkpoint = resolve_model(entries, "checkpoints", "sdxl-inpainting")
    with pytest.raises(InvalidInputError, match=r"sdxl-lllyasviel\.pth is an SDXL ControlNet"):
        load_pipeline(checkpoint, [resolve_model(entries, "controlnet", "sdxl-lllyasviel")])


def test_the_default_checkpoint_is_the_one_that_inpaints_whatever_its_name(tmp_path):
    from pipelines.params import GenerationParams
    from pipelines.selection import select_models

    (tmp_path / "checkpoints").mkdir()
    for name, inpainting in (("alpha", False), ("zeta", True)):
        configs = mf.tiny_sd15_configs(inpainting)
        mf.write_sd15_checkpoint(tmp_path / "checkpoints" / f"{name}.safetensors", **configs)
    (tmp_path / "controlnet").mkdir()
    for name in (OPENPOSE, CANNY):
        net = tmp_path / "controlnet" / f"{name}.pth"
        mf.write_controlnet_pth(net, mf.tiny_controlnet_config())
    assert select_models(tmp_path, GenerationParams()).checkpoint.name == "zeta"
    named = select_models(tmp_path, GenerationParams(checkpoint="alpha"))
    assert named.checkpoint.name == "alpha"
