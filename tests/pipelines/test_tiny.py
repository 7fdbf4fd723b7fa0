"""pipelines.tiny: the tiny random-weight kit has the real layout and is built once."""

import json
import shutil

import torch

from pipelines import tiny
from pipelines.registry import resolve_model, scan_models


def _config(path):
    return json.loads(path.read_text())


def test_the_kit_has_sd15s_shapes_in_miniature(tiny_kit):
    checkpoint = tiny_kit / "checkpoints/tiny-sd-inpaint"
    pipeline_class = _config(checkpoint / "model_index.json")["_class_name"]
    assert pipeline_class == "StableDiffusionInpaintPipeline"
    unet = _config(checkpoint / "unet/config.json")
    assert (unet["in_channels"], unet["out_channels"]) == (9, 4)
    assert unet["block_out_channels"] == [32, 64]
    vae = _config(checkpoint / "vae/config.json")
    assert len(vae["block_out_channels"]) == 4  # three downsamplings: 8x, like SD's VAE
    assert _config(checkpoint / "text_encoder/config.json")["hidden_size"] == 32
    for name in tiny.CONTROLNETS:
        controlnet = _config(tiny_kit / "controlnet" / name / "config.json")
        assert controlnet["block_out_channels"] == unet["block_out_channels"]
        assert controlnet["down_block_types"] == unet["down_block_types"]
        assert len(controlnet["conditioning_embedding_out_channels"]) == 4  # hints shrink 8x too


def test_the_tokenizer_reads_any_ascii_text(tiny_kit):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_kit / "checkpoints/tiny-sd-inpaint/tokenizer")
    ids = tokenizer("The dress, (red:1.2) & ~shirt_42!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.convert_tokens_to_ids("the</w>") in ids  # the merges are used


def test_a_complete_kit_is_left_alone(tiny_kit):
    files = sorted(p for p in tiny_kit.rglob("*") if p.is_file())
    before = [p.stat().st_mtime_ns for p in files]
    assert tiny.make_tiny(tiny_kit) == tiny_kit
    assert [p.stat().st_mtime_ns for p in files] == before


def test_the_kit_is_reproducible(tmp_path):
    tiny._save_controlnet(tmp_path / "a", seed=1)
    tiny._save_controlnet(tmp_path / "b", seed=1)
    tiny._save_controlnet(tmp_path / "c", seed=2)
    weights = "diffusion_pytorch_model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert (tmp_path / "a" / weights).read_bytes() != (tmp_path / "c" / weights).read_bytes()


def test_ensure_tiny_builds_models_dir_tiny_once(tiny_kit, tmp_path, monkeypatch):
    builds = []

    def copy_kit(directory):
        builds.append(directory)
        shutil.copytree(tiny_kit, directory, dirs_exist_ok=True)
        return directory

    monkeypatch.setattr(tiny, "make_tiny", copy_kit)
    models_dir = tmp_path / "models"
    (models_dir / "tiny").mkdir(parents=True)  # left half-built by a killed worker
    assert tiny.ensure_tiny(models_dir) == models_dir / "tiny"
    assert tiny.is_complete(models_dir / "tiny")
    assert tiny.ensure_tiny(models_dir) == models_dir / "tiny"
    assert len(builds) == 1
    assert builds[0] != models_dir / "tiny"  # built aside, so nobody sees half a kit
    assert [p.name for p in models_dir.iterdir()] == ["tiny"]


def test_the_lora_targets_the_tiny_unets_attention(tiny_kit):
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    lora = resolve_model(scan_models(tiny_kit), "loras", "tiny-lora")
    state, alphas = StableDiffusionInpaintPipeline.lora_state_dict(str(lora.path))
    unet = UNet2DConditionModel.from_pretrained(tiny_kit / "checkpoints/tiny-sd-inpaint/unet")
    modules = dict(unet.named_modules())
    # diffusers' names: "unet.<attention>.processor.to_k_lora.down.weight" for "<attention>.to_k"
    projections = {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v"}
    projections["to_out_lora"] = "to_out.0"
    targets = set()
    for key in state:
        attention, rest = key.removeprefix("unet.").split(".processor.")
        targets.add(f"{attention}.{projections[rest.split('.')[0]]}")
    # q, k, v and out of self- and cross-attention in 4 transformer blocks (down, mid, 2 up)
    assert len(targets) == 32
    assert all(isinstance(modules[name], torch.nn.Linear) for name in targets)
    assert set(alphas.values()) == {float(tiny.LORA_RANK)}


def test_the_lora_loads_into_the_pipeline(tiny_kit):
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        tiny_kit / "checkpoints/tiny-sd-inpaint", local_files_only=True
    )
    pipe.load_lora_weights(str(tiny_kit / "loras/tiny-lora.safetensors"))
