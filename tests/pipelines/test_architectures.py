"""Model files told apart by their keys, the shipped full-size configs, and CLIP's tokenizer."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipelines.architectures import CONFIGS, Architecture, architecture_of, detect, detect_file
from pipelines.clip_tokenizer import VOCAB_SIZE, clip_vocabulary, tokenizer_folder
from pipelines.errors import InvalidInputError
from pipelines.registry import scan_models

UNET = "model.diffusion_model."
SD15_ATTN = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def _checkpoint(channels: int, *, sdxl: bool = False, context: int = 768) -> dict:
    shapes = {f"{UNET}input_blocks.0.0.weight": (320, channels, 3, 3)}
    if sdxl:
        shapes[f"{UNET}label_emb.0.0.weight"] = (1280, 2816)
    else:
        shapes[f"{UNET}{SD15_ATTN}"] = (320, context)
    return shapes


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        (_checkpoint(4), Architecture("checkpoints", "sd15")),
        (_checkpoint(9), Architecture("checkpoints", "sd15", inpainting=True)),
        (_checkpoint(4, sdxl=True), Architecture("checkpoints", "sdxl")),
        (_checkpoint(9, sdxl=True), Architecture("checkpoints", "sdxl", inpainting=True)),
        (
            {
                "control_model.input_blocks.0.0.weight": (320, 4, 3, 3),
                f"control_model.{SD15_ATTN}": (320, 768),
            },
            Architecture("controlnet", "sd15"),
        ),
        (
            {
                "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
                "add_embedding.linear_1.weight": (1280, 2816),
            },
            Architecture("controlnet", "sdxl", layout="diffusers"),
        ),
        (
            {
                "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
                "add_embedding.linear_1.weight": (1280, 2816),
                "task_embedding": (8, 320),
            },
            Architecture("controlnet", "sdxl", layout="union"),
        ),
        (
            {"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_out.weight": (3, 128, 3, 3)},
            Architecture("vae", None),
        ),
        (
            {
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320),
                "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768),
            },
            Architecture("loras", "sd15", layout="kohya"),
        ),
        (
            {"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 1280)},
            Architecture("loras", "sdxl", layout="kohya"),
        ),
        (
            {"unet.mid.attn2.to_k.lora_A.weight": (4, 2048)},
            Architecture("loras", "sdxl", layout="peft"),
        ),
        (
            {"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": (320, 4)},
            Architecture("loras", "sd15", layout="lycoris"),
        ),
    ],
)
def test_each_architecture_is_told_by_its_keys(shapes, expected):
    assert detect(shapes) == expected


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (
            {"other.weight": (3, 3)},
            "not an SD 1.5 or SDXL checkpoint, ControlNet, VAE, LoRA, IP-Adapter",
        ),
        (_checkpoint(4, context=1024), "an SD 2.x checkpoint, which is not supported"),
        (_checkpoint(8), "a UNet with 8 input channels"),
    ],
)
def test_anything_else_is_refused_naming_the_file_and_what_was_found(shapes, message):
    with pytest.raises(InvalidInputError, match=message) as refused:
        detect(shapes, shown="mystery.safetensors")
    assert "mystery.safetensors" in str(refused.value)


def test_files_are_read_by_header_or_as_tensor_only_pickles(tmp_path):
    tensors = {name: torch.zeros(shape) for name, shape in _checkpoint(9).items()}
    save_file(tensors, tmp_path / "a-inpainting.safetensors")
    torch.save({"state_dict": tensors}, tmp_path / "a-inpainting.ckpt")
    # An old-format pickle cannot be memory-mapped: it is read whole instead.
    old = tmp_path / "a-inpainting-old.ckpt"
    torch.save({"state_dict": tensors}, old, _use_new_zipfile_serialization=False)
    for name in ("a-inpainting.safetensors", "a-inpainting.ckpt", old.name):
        assert detect_file(tmp_path / name) == Architecture("checkpoints", "sd15", inpainting=True)
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(InvalidInputError, match=r"broken\.safetensors is not a readable"):
        detect_file(tmp_path / "broken.safetensors")


def test_a_listing_names_each_files_architecture_and_a_misplaced_one(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "controlnet").mkdir()
    control = {"control_model.input_blocks.0.0.weight": torch.zeros(2, 4, 3, 3)}
    control[f"control_model.{SD15_ATTN}"] = torch.zeros(2, 768)
    torch.save(control, tmp_path / "controlnet" / "control_v11p_sd15_openpose.pth")
    save_file(control, tmp_path / "checkpoints" / "oops.safetensors")
    labels = {entry.name: architecture_of(entry) for entry in scan_models(tmp_path)}
    assert labels == {
        "control_v11p_sd15_openpose": "SD 1.5 ControlNet",
        "oops": "refused: an SD 1.5 ControlNet in checkpoints/ (it belongs in controlnet/)",
    }


# --- the shipped configs are the published full-size architectures -----------------------------

# Parameter counts of the released models (SD 1.5's UNet, VAE and CLIP ViT-L/14 text encoder;
# SDXL's UNet and OpenCLIP bigG text encoder with its projection).
PUBLISHED = {
    "sd15/unet": 859_520_964,
    "sdxl/unet": 2_567_463_684,
    "vae-sd": 83_653_863,
    "sd15/text_encoder": 123_060_480,
    "sdxl/text_encoder_2": 694_659_840,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_configs_build_the_published_full_size_models(name):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = json.loads((CONFIGS / name / "config.json").read_text())
    with torch.device("meta"):  # shapes only: no memory for the weights
        if "unet" in name:
            model = UNet2DConditionModel.from_config(config)
        elif "vae" in name:
            model = AutoencoderKL.from_config(config)
        else:
            text = CLIPTextConfig(**config)
            model = (CLIPTextModelWithProjection if "_2" in name else CLIPTextModel)(text)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[name]


def test_every_architecture_has_its_shipped_configs():
    for arch in (
        Architecture("checkpoints", "sd15"),
        Architecture("checkpoints", "sd15", inpainting=True),
        Architecture("checkpoints", "sdxl"),
        Architecture("checkpoints", "sdxl", inpainting=True),
    ):
        folder = arch.config_folder()
        unet = json.loads((folder / "unet" / "config.json").read_text())
        assert unet["in_channels"] == (9 if arch.inpainting else 4)
        assert (folder / "model_index.json").is_file() and (folder / "vae").is_dir()
    for family in ("sd15", "sdxl"):
        assert (Architecture("controlnet", family).config_folder() / "config.json").is_file()


# --- CLIP's tokenizer, made from open-clip-torch's BPE file --------------------------------------


def test_the_tokenizer_made_here_is_clips():
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    assert len(vocab) == VOCAB_SIZE and len(merges) == VOCAB_SIZE - 512 - 2
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder())
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    # SDXL's second tokenizer: the same vocabulary, padded with "!" (id 0).
    second = CLIPTokenizer.from_pretrained(tokenizer_folder(), pad_token="!")
    padded = second("a cat", padding="max_length", max_length=6).input_ids
    assert padded == [49406, 320, 2368, 49407, 0, 0]


def test_the_tokenizer_needs_no_import_of_open_clip():
    # The wheel's package imports torch, timm and more: only its data file is read.
    import sys

    tokenizer_folder.cache_clear()
    tokenizer_folder()
    assert "open_clip" not in sys.modules
    assert len(json.loads(Path(tokenizer_folder(), "vocab.json").read_text())) == VOCAB_SIZE
