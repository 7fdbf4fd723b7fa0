"""tests/model_files.py writes what WebUI and ComfyUI users have on disk: diffusers' own
single-file machinery reads each file back to the very tensors it was written from, names the
right model type, and a kohya LoRA lands on the modules it names. Configs are given explicitly,
so nothing is fetched."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (
    convert_controlnet_checkpoint,
    create_diffusers_clip_model_from_ldm,
    infer_diffusers_model_type,
    load_single_file_checkpoint,
)
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from tests import model_files as mf

# Names only diffusers' layout uses; none may be left in an original-layout file.
DIFFUSERS_NAMES = (
    "down_blocks",
    "mid_block",
    "up_blocks",
    "resnets",
    "attentions",
    "conv_shortcut",
)
TEXT_CLASSES = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}


def _save_configs(models: dict, folder: Path) -> Path:
    """A diffusers-style folder of config.json files, one subfolder per component."""
    for name, model in models.items():
        save = model.config.save_pretrained if name in TEXT_CLASSES else model.save_config
        save(folder / name)
    return folder


def _assert_same(loaded, original, dtype=torch.float32) -> None:
    """The same tensor names, and every tensor equal (compared in the file's ``dtype``)."""
    got, want = loaded.state_dict(), original.state_dict()
    assert sorted(got) == sorted(want)
    differing = [
        name for name in want if not torch.equal(got[name].to(dtype), want[name].to(dtype))
    ]
    assert differing == []


def _assert_read_back(path: Path, models: dict, folder: Path, dtype=torch.float32) -> None:
    """Each component, loaded from the single file by diffusers, equals the model written."""
    configs = str(_save_configs(models, folder))
    checkpoint = load_single_file_checkpoint(str(path))
    for name, original in models.items():
        if name in TEXT_CLASSES:
            loaded = create_diffusers_clip_model_from_ldm(
                TEXT_CLASSES[name], checkpoint, subfolder=name, config=configs
            )
        else:
            cls = UNet2DConditionModel if name == "unet" else AutoencoderKL
            loaded = cls.from_single_file(str(path), config=configs, subfolder=name)
        _assert_same(loaded, original, dtype)


def _assert_original_names(keys) -> None:
    assert [key for key in keys if any(name in key for name in DIFFUSERS_NAMES)] == []


@pytest.mark.parametrize(
    ("inpainting", "suffix", "model_type"),
    [(False, ".safetensors", "v1"), (True, ".ckpt", "inpainting")],
)
def test_an_sd15_checkpoint_reads_back_exactly(tmp_path, inpainting, suffix, model_type):
    configs = mf.tiny_sd15_configs(inpainting)
    path = mf.write_sd15_checkpoint(tmp_path / f"model{suffix}", **configs, seed=3)
    checkpoint = load_single_file_checkpoint(str(path))

    assert infer_diffusers_model_type(checkpoint) == model_type
    _assert_original_names(checkpoint)
    vae, unet = "first_stage_model.", "model.diffusion_model."
    assert checkpoint[f"{unet}input_blocks.0.0.weight"].shape[1] == (9 if inpainting else 4)
    assert checkpoint[f"{vae}encoder.mid.attn_1.q.weight"].ndim == 4  # a 1x1 convolution
    for key in (
        f"{unet}input_blocks.3.0.op.weight",
        f"{unet}output_blocks.2.1.conv.weight",  # the upsampler after a block without attention
        f"{vae}encoder.down.0.block.0.norm1.weight",
        f"{vae}decoder.up.3.block.0.conv1.weight",
        f"{vae}quant_conv.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_ids",
        "alphas_cumprod",
    ):
        assert key in checkpoint
    _assert_read_back(path, mf.sd15_models(**configs, seed=3), tmp_path / "configs")


def test_a_ckpt_is_a_pickled_state_dict_as_compvis_saved_them(tmp_path):
    path = mf.write_sd15_checkpoint(tmp_path / "model.ckpt", **mf.tiny_sd15_configs())
    pickle = torch.load(path, weights_only=True)
    assert set(pickle) == {"state_dict", "global_step"}
    assert "model.diffusion_model.time_embed.0.weight" in pickle["state_dict"]


@pytest.mark.parametrize(
    ("inpainting", "dtype", "model_type"),
    [(False, torch.float32, "xl_base"), (True, torch.float16, "xl_inpaint")],
)
def test_an_sdxl_checkpoint_reads_back_exactly(tmp_path, inpainting, dtype, model_type):
    configs = mf.tiny_sdxl_configs(inpainting)
    path = mf.write_sdxl_checkpoint(tmp_path / "sdxl.safetensors", **configs, dtype=dtype)
    checkpoint = load_single_file_checkpoint(str(path))

    assert infer_diffusers_model_type(checkpoint) == model_type
    _assert_original_names(checkpoint)
    assert checkpoint["model.diffusion_model.label_emb.0.0.weight"].dtype == dtype
    bigg, width = "conditioner.embedders.1.model.", configs["text2_config"]["hidden_size"]
    assert checkpoint[f"{bigg}transformer.resblocks.0.attn.in_proj_weight"].shape == (
        3 * width,
        width,
    )
    assert checkpoint[f"{bigg}text_projection"].shape == (width, 48)  # x @ text_projection
    for key in (
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight",
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
        f"{bigg}transformer.resblocks.9.mlp.c_fc.weight",
        f"{bigg}transformer.resblocks.9.ln_1.weight",
        f"{bigg}positional_embedding",
        f"{bigg}token_embedding.weight",
        f"{bigg}ln_final.weight",
        f"{bigg}logit_scale",
    ):
        assert key in checkpoint
    _assert_read_back(path, mf.sdxl_models(**configs), tmp_path / "configs", dtype)


def test_bigg_in_the_openclip_layout_computes_what_the_transformers_model_does():
    """Read as OpenCLIP reads it (fused qkv in torch's MultiheadAttention, x @ text_projection
    at the end-of-text token), the file's bigG gives the transformers model's outputs."""
    model = mf.sdxl_models(**mf.tiny_sdxl_configs())["text_encoder_2"]
    weights = mf.open_clip_to_ldm(model.state_dict())
    ids = torch.tensor([[998, 5, 17, 400, 999, 999]])

    with torch.no_grad():
        hidden, pooled = _open_clip_encode(weights, ids, model.config)
        expected = model(ids)
    torch.testing.assert_close(hidden, expected.last_hidden_state)
    torch.testing.assert_close(pooled, expected.text_embeds)


def _open_clip_encode(weights: dict, ids: torch.Tensor, config: CLIPTextConfig):
    """OpenCLIP's TextTransformer forward pass (pre-norm resblocks, causal mask, argmax pool)."""
    width, size = config.hidden_size, ids.shape[1]
    x = weights["token_embedding.weight"][ids] + weights["positional_embedding"][:size]
    causal = torch.full((size, size), float("-inf")).triu(1)
    for index in range(config.num_hidden_layers):
        block = {
            key.removeprefix(f"transformer.resblocks.{index}."): value
            for key, value in weights.items()
            if key.startswith(f"transformer.resblocks.{index}.")
        }
        attention = torch.nn.MultiheadAttention(width, config.num_attention_heads, batch_first=True)
        attention.load_state_dict(
            {k.removeprefix("attn."): v for k, v in block.items() if "attn." in k}
        )
        h = F.layer_norm(x, (width,), block["ln_1.weight"], block["ln_1.bias"])
        x = x + attention(h, h, h, attn_mask=causal, need_weights=False)[0]
        h = F.layer_norm(x, (width,), block["ln_2.weight"], block["ln_2.bias"])
        h = F.gelu(F.linear(h, block["mlp.c_fc.weight"], block["mlp.c_fc.bias"]))
        x = x + F.linear(h, block["mlp.c_proj.weight"], block["mlp.c_proj.bias"])
    x = F.layer_norm(x, (width,), weights["ln_final.weight"], weights["ln_final.bias"])
    pooled = x[torch.arange(len(ids)), ids.argmax(dim=-1)] @ weights["text_projection"]
    return x, pooled


def _controlnet_file(tmp_path: Path, *, sdxl: bool) -> tuple[Path, dict, object]:
    config = mf.tiny_controlnet_config(sdxl)
    path = mf.write_controlnet_pth(tmp_path / "control_v11p_sd15_openpose.pth", config, seed=4)
    state = torch.load(path, weights_only=True)
    assert infer_diffusers_model_type(state) == "controlnet"
    assert all(key.startswith("control_model.") for key in state)
    _assert_original_names(state)
    for key in (
        "time_embed.0.weight",
        "input_blocks.1.0.in_layers.0.weight",
        "zero_convs.0.0.weight",
        "input_hint_block.0.weight",
        "input_hint_block.14.weight",
        "middle_block.1.proj_in.weight",
        "middle_block_out.0.weight",
    ):
        assert f"control_model.{key}" in state
    return path, state, mf.build_controlnet(config, seed=4)


def test_a_controlnet_pth_reads_back_exactly(tmp_path):
    path, _, net = _controlnet_file(tmp_path, sdxl=False)
    net.save_config(tmp_path / "config")
    _assert_same(ControlNetModel.from_single_file(str(path), config=str(tmp_path / "config")), net)


def test_an_sdxl_controlnet_pth_reads_back_but_for_what_diffusers_drops(tmp_path):
    """diffusers 0.42.1's ``convert_controlnet_checkpoint`` ignores ``label_emb`` (SDXL's added
    conditioning), so ``from_single_file`` fails on the meta tensors it leaves; the rest is
    converted by diffusers, and ``label_emb`` is checked against the model by hand."""
    _, state, net = _controlnet_file(tmp_path, sdxl=True)
    converted = convert_controlnet_checkpoint(state, net.config)
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith("add_embedding.")}
    assert sorted(converted) == sorted(expected)
    assert [key for key, value in expected.items() if not torch.equal(converted[key], value)] == []
    for layer, index in (("linear_1", 0), ("linear_2", 2)):
        for kind in ("weight", "bias"):
            got = state[f"control_model.label_emb.0.{index}.{kind}"]
            assert torch.equal(got, net.state_dict()[f"add_embedding.{layer}.{kind}"])


def test_a_standalone_vae_reads_back_exactly(tmp_path):
    config = mf.tiny_sd15_configs()["vae_config"]
    path = mf.write_vae(tmp_path / "vae-ft-mse-840000-ema-pruned.safetensors", config, seed=5)
    with safe_open(str(path), "pt") as file:
        keys = set(file.keys())
    assert {"encoder.conv_in.weight", "decoder.up.3.block.0.conv1.weight"} <= keys
    assert {"encoder.mid.attn_1.proj_out.weight", "decoder.norm_out.weight"} <= keys
    _assert_original_names(keys)
    vae = mf.build_vae(config, seed=5)
    vae.save_config(tmp_path / "vae")
    _assert_same(AutoencoderKL.from_single_file(str(path), config=str(tmp_path / "vae")), vae)


@pytest.mark.parametrize("sdxl", [False, True])
def test_a_kohya_lora_lands_on_the_modules_it_names(tmp_path, sdxl):
    models = (
        mf.sdxl_models(**mf.tiny_sdxl_configs())
        if sdxl
        else mf.sd15_models(**mf.tiny_sd15_configs())
    )
    texts = {"text_encoder_2": models["text_encoder_2"]} if sdxl else {}
    path = mf.write_kohya_lora(
        tmp_path / "lora.safetensors", models["unet"], models["text_encoder"], **texts, sdxl=sdxl
    )
    targets = mf.kohya_lora_targets(models["unet"], models["text_encoder"], **texts, sdxl=sdxl)
    weights = load_file(str(path))
    with safe_open(str(path), "pt") as file:
        assert file.metadata()["ss_network_module"] == "networks.lora"
    _assert_kohya_names(weights, sdxl=sdxl)

    before = _unet_output(models["unet"])
    _pipeline(models, sdxl=sdxl).load_lora_weights(str(path))
    assert not torch.allclose(_unet_output(models["unet"]), before, atol=1e-4)

    # Each file entry sits on the module it names, scaled alpha / rank as kohya's are.
    adapted = {
        id(module.base_layer): module
        for model in models.values()
        for module in model.modules()
        if hasattr(module, "lora_A") and hasattr(module, "base_layer")
    }
    assert len(adapted) == len(targets) == len(weights) // 3
    for name, module in targets:
        lora = adapted[id(module)]
        (adapter,) = lora.lora_A.keys()
        assert torch.equal(lora.lora_A[adapter].weight, weights[f"{name}.lora_down.weight"].float())
        assert torch.equal(lora.lora_B[adapter].weight, weights[f"{name}.lora_up.weight"].float())
        assert lora.scaling[adapter] == weights[f"{name}.alpha"].item() / 4


def _assert_kohya_names(weights: dict, *, sdxl: bool) -> None:
    suffixes = (".lora_down.weight", ".lora_up.weight", ".alpha")
    text = "text_model_encoder_layers_0_self_attn_q_proj"
    if sdxl:
        names = [
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
            "lora_unet_middle_block_1_proj_in",
            f"lora_te1_{text}",
            f"lora_te2_{text}",
        ]
    else:
        names = [
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
            "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_ff_net_0_proj",
            f"lora_te_{text}",
            "lora_te_text_model_encoder_layers_2_mlp_fc2",
        ]
    assert {name + suffix for name in names for suffix in suffixes} <= set(weights)


def _pipeline(models: dict, *, sdxl: bool):
    """A pipeline holding the models, only for its LoRA loader (no tokenizer needed)."""
    if sdxl:
        return StableDiffusionXLPipeline(
            **models, tokenizer=None, tokenizer_2=None, scheduler=EulerDiscreteScheduler()
        )
    return StableDiffusionPipeline(
        **models,
        tokenizer=None,
        scheduler=PNDMScheduler(steps_offset=1, skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _unet_output(unet) -> torch.Tensor:
    config = unet.config
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, config.in_channels, 8, 8, generator=generator)
    context = torch.randn(1, 5, config.cross_attention_dim, generator=generator)
    extra = {}
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, pooled, generator=generator),
            "time_ids": torch.randn(1, 6, generator=generator),
        }
    with torch.no_grad():
        return unet(latents, 10, context, **extra).sample


def test_full_size_models_take_the_released_files_key_names():
    """Real SD 1.5 and SDXL sizes (on the meta device, so no memory): renaming is one to one,
    and names and shapes known from the released files come out."""
    sd, xl = mf.sd15_configs(), mf.sdxl_configs()
    with torch.device("meta"):
        unet = mf.unet_to_ldm(
            _meta_state(UNet2DConditionModel, sd["unet_config"]), sd["unet_config"]
        )
        vae = mf.vae_to_ldm(_meta_state(AutoencoderKL, sd["vae_config"]), sd["vae_config"])
        xl_unet = _meta_state(UNet2DConditionModel, xl["unet_config"])
        bigg = CLIPTextModelWithProjection(CLIPTextConfig(**xl["text2_config"])).state_dict()
    xl_unet = mf.unet_to_ldm(xl_unet, xl["unet_config"])
    assert (len(unet), len(vae), len(xl_unet)) == (686, 248, 1680)
    assert len(mf.open_clip_to_ldm(bigg)) == 32 * 12 + 6  # resblocks, embeddings, ln, proj, scale
    shapes = {
        **{key: tuple(value.shape) for key, value in unet.items()},
        **{f"vae.{key}": tuple(value.shape) for key, value in vae.items()},
        **{f"xl.{key}": tuple(value.shape) for key, value in xl_unet.items()},
    }
    assert shapes["input_blocks.3.0.op.weight"] == (320, 320, 3, 3)
    assert shapes["output_blocks.2.1.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["output_blocks.5.2.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["output_blocks.11.0.skip_connection.weight"] == (320, 640, 1, 1)
    assert shapes["vae.decoder.up.1.block.0.nin_shortcut.weight"] == (256, 512, 1, 1)
    assert shapes["vae.encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert shapes["xl.label_emb.0.0.weight"] == (1280, 2816)
    assert shapes["xl.input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight"] == (1280, 1280)
    assert shapes["xl.output_blocks.8.0.skip_connection.weight"] == (320, 640, 1, 1)


def _meta_state(cls, config: dict) -> dict:
    return cls.from_config(config).state_dict()


def test_a_module_the_layout_has_no_place_for_is_refused():
    config = mf.tiny_sd15_configs()["unet_config"]
    with pytest.raises(KeyError, match="no original name"):
        mf.unet_to_ldm({"down_blocks.0.resnets.2.conv1.weight": torch.zeros(1)}, config)
