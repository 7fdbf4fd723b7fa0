"""Random-weight model files in the layouts people download for the AUTOMATIC1111 WebUI and
ComfyUI, so that loading code is tested against those layouts rather than diffusers folders.

Each model is built by diffusers or transformers from a config (tiny or full size) with a fixed
seed, then its state dict is renamed to the ORIGINAL layout: CompVis/LDM checkpoints for SD 1.5,
Stability's sgm layout for SDXL (OpenCLIP bigG with fused qkv), lllyasviel's ControlNet ``.pth``,
the standalone VAE of ``vae-ft-mse-840000-ema-pruned.safetensors`` and kohya-ss LoRAs. The
renames are the reverse of diffusers' ``loaders/single_file_utils.py`` converters and of
``scripts/convert_diffusers_to_original_stable_diffusion.py``, but derived from the config
(number of blocks, ``layers_per_block``, which blocks attend), not written out for one size.

Every parameter gets a little seeded noise on top of its usual initialisation, so no two tensors
of a model are equal (a mis-mapped key cannot hide behind two identical LayerNorms) and
ControlNet's zero convolutions are not zero (it steers). ``sd15_models`` and friends rebuild the
same models from the same seed, for comparison with what a loader reads back.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipelines.architectures import CONFIGS

Config = Mapping[str, Any]
StateDict = dict[str, torch.Tensor]
# module prefix (diffusers) -> (module prefix (original), renames of the next name component)
Table = dict[str, tuple[str, dict[str, str]]]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
CONTROLNET_PREFIX = "control_model."

# Parameter names inside an LDM ResBlock; the VAE's ResnetBlock only renames its shortcut.
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
# The VAE's mid-block attention: diffusers' Linear layers are 1x1 convolutions in the original.
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_JITTER = 0.02
_TINY_VOCAB = 1000


# --- Configs -----------------------------------------------------------------------------------


def tiny_sd15_configs(inpainting: bool = False) -> dict[str, dict[str, Any]]:
    """Tiny SD 1.5-shaped configs, as ``write_sd15_checkpoint``'s keyword arguments.

    SD 1.5's structure at a toy width: attention in the first down block, none in the last,
    two layers per block, a VAE of four stages (8× downscale), CLIP with quick-GELU.
    """
    return {
        "unet_config": {
            "sample_size": 32,
            "in_channels": 9 if inpainting else 4,
            "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "block_out_channels": [32, 64],
            "layers_per_block": 2,
            "attention_head_dim": [2, 4],
            "cross_attention_dim": 32,
        },
        "vae_config": _tiny_vae_config(scaling_factor=0.18215),
        "text_config": _tiny_clip_config(hidden=32, layers=3, heads=4, act="quick_gelu"),
    }


def tiny_sdxl_configs(inpainting: bool = False) -> dict[str, dict[str, Any]]:
    """Tiny SDXL-shaped configs, as ``write_sdxl_checkpoint``'s keyword arguments.

    The UNet is SDXL's at a toy width (no attention in the first block, linear projections,
    two transformer layers deeper down, ``text_time`` added conditioning). The two text encoders
    have different widths, as CLIP-L (768) and bigG (1280) do: diffusers tells them apart by
    width. bigG keeps ten layers because diffusers recognises SDXL by its tenth resblock; its
    projection is not square so that a transposed ``text_projection`` cannot go unnoticed.
    """
    text, text2, projection, time_dim = 32, 64, 48, 8
    return {
        "unet_config": {
            "sample_size": 32,
            "in_channels": 9 if inpainting else 4,
            "out_channels": 4,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [32, 64],
            "layers_per_block": 2,
            "transformer_layers_per_block": [1, 2],
            "attention_head_dim": [2, 4],
            "cross_attention_dim": text + text2,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": time_dim,
            # Six micro-conditioning numbers, each embedded, plus bigG's pooled projection.
            "projection_class_embeddings_input_dim": 6 * time_dim + projection,
        },
        "vae_config": _tiny_vae_config(scaling_factor=0.13025),
        "text_config": _tiny_clip_config(hidden=text, layers=3, heads=4, act="quick_gelu"),
        "text2_config": {
            **_tiny_clip_config(hidden=text2, layers=10, heads=4, act="gelu"),
            "projection_dim": projection,
        },
    }


def tiny_controlnet_config(sdxl: bool = False) -> dict[str, Any]:
    """A ControlNet for the tiny SD 1.5 (or SDXL) UNet: same down path, a four-stage hint
    encoder (shrinks 8× like the VAE; lllyasviel's has four stages too)."""
    configs = tiny_sdxl_configs() if sdxl else tiny_sd15_configs()
    return controlnet_config(configs["unet_config"], hint_channels=(16, 16, 32, 32))


def sd15_configs(inpainting: bool = False) -> dict[str, dict[str, Any]]:
    """The real SD 1.5 configs: the ones the engine ships (``pipelines/configs``)."""
    folder = CONFIGS / ("sd15-inpainting" if inpainting else "sd15")
    return {
        "unet_config": _json(folder / "unet"),
        "vae_config": _json(folder / "vae"),
        "text_config": _json(folder / "text_encoder"),
    }


def sdxl_configs(inpainting: bool = False) -> dict[str, dict[str, Any]]:
    """The real SDXL base (or inpainting) configs the engine ships."""
    folder = CONFIGS / ("sdxl-inpainting" if inpainting else "sdxl")
    return {
        "unet_config": _json(folder / "unet"),
        "vae_config": _json(folder / "vae"),
        "text_config": _json(folder / "text_encoder"),
        "text2_config": _json(folder / "text_encoder_2"),
    }


def _json(folder: Path) -> dict[str, Any]:
    """A config.json without diffusers' bookkeeping (``_class_name``) or transformers'."""
    config = json.loads((folder / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}


def controlnet_config(
    unet_config: Config, *, hint_channels: tuple[int, ...] = (16, 32, 96, 256)
) -> dict[str, Any]:
    """The ControlNet of a UNet: its down path and mid block, plus a hint encoder.

    ``hint_channels`` defaults to lllyasviel's (four stages); diffusers' converter expects
    exactly four, since it reads the hint encoder's output convolution at index 14.
    """
    shared = (
        "down_block_types",
        "block_out_channels",
        "layers_per_block",
        "transformer_layers_per_block",
        "attention_head_dim",
        "cross_attention_dim",
        "use_linear_projection",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
    )
    config = {key: unet_config[key] for key in shared if key in unet_config}
    # A ControlNet reads the noisy latents only, whatever its base UNet takes.
    return {**config, "in_channels": 4, "conditioning_embedding_out_channels": hint_channels}


def _tiny_vae_config(*, scaling_factor: float) -> dict[str, Any]:
    return _vae_config([8, 16, 32, 32], groups=8, scaling_factor=scaling_factor)


def _vae_config(channels: list[int], *, groups: int, scaling_factor: float) -> dict[str, Any]:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": channels,
        "layers_per_block": 2,
        "norm_num_groups": groups,
        "latent_channels": 4,
        "sample_size": 512,
        "scaling_factor": scaling_factor,
    }


def _tiny_clip_config(*, hidden: int, layers: int, heads: int, act: str) -> dict[str, Any]:
    return {
        "vocab_size": _TINY_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 77,
        "hidden_act": act,
        "projection_dim": hidden,
        # The last two ids are CLIP's start and end of text, as 49406 and 49407 are in CLIP's.
        "bos_token_id": _TINY_VOCAB - 2,
        "eos_token_id": _TINY_VOCAB - 1,
        "pad_token_id": _TINY_VOCAB - 1,
    }


# --- Models ------------------------------------------------------------------------------------


def build_unet(config: Config, *, seed: int) -> Any:
    """A seeded ``UNet2DConditionModel`` from a diffusers config."""
    from diffusers import UNet2DConditionModel

    return _seeded(lambda: UNet2DConditionModel.from_config(dict(config)), seed)


def build_vae(config: Config, *, seed: int) -> Any:
    """A seeded ``AutoencoderKL`` from a diffusers config."""
    from diffusers import AutoencoderKL

    return _seeded(lambda: AutoencoderKL.from_config(dict(config)), seed)


def build_controlnet(config: Config, *, seed: int) -> Any:
    """A seeded ``ControlNetModel``; its zero convolutions are small but not zero."""
    from diffusers import ControlNetModel

    return _seeded(lambda: ControlNetModel.from_config(dict(config)), seed)


def build_text_encoder(config: Config, *, seed: int, projection: bool = False) -> Any:
    """A seeded ``CLIPTextModel`` (``CLIPTextModelWithProjection`` with ``projection``)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return _seeded(lambda: cls(CLIPTextConfig(**config)), seed)


def sd15_models(
    unet_config: Config, vae_config: Config, text_config: Config, *, seed: int = 0
) -> dict[str, Any]:
    """The models ``write_sd15_checkpoint`` writes for the same arguments, by component name."""
    return {
        "unet": build_unet(unet_config, seed=seed),
        "vae": build_vae(vae_config, seed=seed + 1),
        "text_encoder": build_text_encoder(text_config, seed=seed + 2),
    }


def sdxl_models(
    unet_config: Config,
    vae_config: Config,
    text_config: Config,
    text2_config: Config,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The models ``write_sdxl_checkpoint`` writes for the same arguments, by component name."""
    models = sd15_models(unet_config, vae_config, text_config, seed=seed)
    models["text_encoder_2"] = build_text_encoder(text2_config, seed=seed + 3, projection=True)
    return models


def _seeded(make: Any, seed: int) -> Any:
    """``make()`` under ``seed``, every parameter jittered; the caller's RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * _JITTER)
    return model.eval()


# --- Writers -----------------------------------------------------------------------------------


def write_sd15_checkpoint(
    path: Path,
    unet_config: Config,
    vae_config: Config,
    text_config: Config,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write an SD 1.5 checkpoint in the CompVis/LDM layout and return ``path``.

    ``.safetensors`` holds the flat state dict; ``.ckpt`` a pickle of
    ``{"state_dict": ..., "global_step": 0}`` as CompVis' checkpoints are. Keys:
    ``model.diffusion_model.*`` (UNet, 4 or 9 input channels), ``first_stage_model.*`` (VAE),
    ``cond_stage_model.transformer.text_model.*`` (CLIP, with the ``position_ids`` that released
    files carry) and the DDPM schedule buffers (``alphas_cumprod``, …) that they carry too.
    """
    models = sd15_models(unet_config, vae_config, text_config, seed=seed)
    state = {
        **_prefixed(UNET_PREFIX, unet_to_ldm(models["unet"].state_dict(), unet_config)),
        **_prefixed(VAE_PREFIX, vae_to_ldm(models["vae"].state_dict(), vae_config)),
        **_prefixed(SD15_CLIP_PREFIX, clip_to_ldm(models["text_encoder"].state_dict())),
        **_ddpm_buffers(),
    }
    state[f"{SD15_CLIP_PREFIX}text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return _save(path, _cast(state, dtype), checkpoint=True)


def write_sdxl_checkpoint(
    path: Path,
    unet_config: Config,
    vae_config: Config,
    text_config: Config,
    text2_config: Config,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write an SDXL checkpoint in Stability's sgm layout and return ``path``.

    Keys: ``model.diffusion_model.*`` (with ``label_emb.0.0``/``label_emb.0.2``, the added
    conditioning), ``first_stage_model.*``, ``conditioner.embedders.0.transformer.text_model.*``
    (CLIP-L) and ``conditioner.embedders.1.model.*`` (OpenCLIP bigG: ``transformer.resblocks.N``
    with fused ``attn.in_proj_weight``, ``positional_embedding``, ``text_projection`` as
    ``x @ text_projection`` uses it, ``logit_scale``). ``.ckpt`` pickles as for SD 1.5.
    """
    models = sdxl_models(unet_config, vae_config, text_config, text2_config, seed=seed)
    text2 = models["text_encoder_2"].state_dict()
    state = {
        **_prefixed(UNET_PREFIX, unet_to_ldm(models["unet"].state_dict(), unet_config)),
        **_prefixed(VAE_PREFIX, vae_to_ldm(models["vae"].state_dict(), vae_config)),
        **_prefixed(SDXL_CLIP_PREFIX, clip_to_ldm(models["text_encoder"].state_dict())),
        **_prefixed(SDXL_OPEN_CLIP_PREFIX, open_clip_to_ldm(text2)),
    }
    return _save(path, _cast(state, dtype), checkpoint=True)


def write_controlnet_pth(
    path: Path, controlnet_config: Config, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a ControlNet as lllyasviel's ControlNet 1.1 ``.pth`` files are and return ``path``.

    A ``torch.save`` of a plain dict (``.safetensors`` if the suffix says so) with keys
    ``control_model.time_embed.*``, ``input_blocks.*``, ``zero_convs.N.0.*``,
    ``input_hint_block.*``, ``middle_block.*``, ``middle_block_out.0.*`` (and ``label_emb.*`` for
    an SDXL one). The model is ``build_controlnet(controlnet_config, seed=seed)``.
    """
    net = build_controlnet(controlnet_config, seed=seed)
    state = controlnet_to_ldm(net.state_dict(), controlnet_config)
    return _save(path, _cast(_prefixed(CONTROLNET_PREFIX, state), dtype))


def write_diffusers_controlnet(
    path: Path, controlnet_config: Config, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a ControlNet as SDXL ControlNets are published (a diffusers single file: the
    ``diffusion_pytorch_model.safetensors`` of its repository, diffusers' own key names) and
    return ``path``."""
    net = build_controlnet(controlnet_config, seed=seed)
    return _save(path, _cast(net.state_dict(), dtype))


def write_vae(
    path: Path, vae_config: Config, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a standalone VAE as ``vae-ft-mse-840000-ema-pruned.safetensors`` is and return
    ``path``: original key names with no ``first_stage_model.`` prefix (``encoder.conv_in.weight``,
    ``decoder.up.3.block.0.conv1.weight``). The model is ``build_vae(vae_config, seed=seed)``."""
    vae = build_vae(vae_config, seed=seed)
    return _save(path, _cast(vae_to_ldm(vae.state_dict(), vae_config), dtype))


def write_kohya_lora(
    path: Path,
    unet: Any,
    text_encoder: Any,
    *,
    text_encoder_2: Any = None,
    sdxl: bool = False,
    rank: int = 4,
    alpha: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a kohya-ss LoRA ``.safetensors`` for these models and return ``path``.

    As sd-scripts' ``networks.lora`` does, every Linear and 1x1 Conv2d of the UNet's transformer
    blocks (attention, feed-forward, ``proj_in``/``proj_out``) and of the text encoders' attention
    and MLP gets ``<name>.lora_down.weight``, ``.lora_up.weight`` (not zero, so the LoRA changes
    outputs) and ``.alpha``. SD 1.5 names follow diffusers' modules
    (``lora_unet_down_blocks_0_attentions_0_…``, ``lora_te_text_model_encoder_layers_0_…``);
    ``sdxl=True`` names the UNet's modules in the sgm layout (``lora_unet_input_blocks_4_1_…``)
    and the text encoders ``lora_te1_``/``lora_te2_``, as kohya's SDXL LoRAs are.
    """
    modules = kohya_lora_targets(unet, text_encoder, text_encoder_2=text_encoder_2, sdxl=sdxl)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = {key: value for name, module in modules for key, value in _lora(name, module, rank)}
    for name, _ in modules:
        state[f"{name}.alpha"] = torch.tensor(float(alpha))
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": "sdxl_base_v1-0" if sdxl else "sd_v1",
        "ss_v2": "False",
    }
    return _save(path, _cast(state, dtype), metadata=metadata)


def kohya_lora_targets(
    unet: Any, text_encoder: Any, *, text_encoder_2: Any = None, sdxl: bool = False
) -> list[tuple[str, torch.nn.Module]]:
    """The modules ``write_kohya_lora`` adapts, each with its kohya name (``lora_unet_…``)."""
    if text_encoder_2 is not None and not sdxl:
        raise ValueError("a second text encoder is SDXL's: pass sdxl=True")
    modules = _lora_modules_unet(unet, sdxl=sdxl)
    modules += _lora_modules_text(text_encoder, "lora_te1_" if sdxl else "lora_te_")
    if text_encoder_2 is not None:
        modules += _lora_modules_text(text_encoder_2, "lora_te2_")
    return modules


def _lora_modules_unet(unet: Any, *, sdxl: bool) -> list[tuple[str, Any]]:
    table = _unet_table(unet.config) if sdxl else None
    found = []
    for name, module in unet.named_modules():
        if ".attentions." not in name or not _lora_target(module):
            continue
        if table is not None:  # kohya trains SDXL on the sgm UNet, SD 1.x on diffusers'
            name = _rename(f"{name}.weight", table).removesuffix(".weight")
        found.append(("lora_unet_" + name.replace(".", "_"), module))
    return found


def _lora_modules_text(encoder: Any, prefix: str) -> list[tuple[str, Any]]:
    found = []
    for name, module in encoder.named_modules():
        if (".self_attn." in name or ".mlp." in name) and _lora_target(module):
            name = name if name.startswith("text_model.") else f"text_model.{name}"
            found.append((prefix + name.replace(".", "_"), module))
    return found


def _lora_target(module: Any) -> bool:
    if isinstance(module, torch.nn.Conv2d):
        return module.kernel_size == (1, 1)
    return isinstance(module, torch.nn.Linear)


def _lora(name: str, module: Any, rank: int) -> list[tuple[str, torch.Tensor]]:
    """Down and up weights for one module: Linear, or 1x1 convolutions for a 1x1 Conv2d."""
    if isinstance(module, torch.nn.Conv2d):
        down = torch.randn(rank, module.in_channels, 1, 1)
        up = torch.randn(module.out_channels, rank, 1, 1)
    else:
        down = torch.randn(rank, module.in_features)
        up = torch.randn(module.out_features, rank)
    return [(f"{name}.lora_down.weight", down * 0.1), (f"{name}.lora_up.weight", up * 0.1)]


# --- Key layouts -------------------------------------------------------------------------------


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Config) -> StateDict:
    """A diffusers UNet's state dict under the original (LDM/sgm) key names, without the
    ``model.diffusion_model.`` prefix. Every key must map, or ``KeyError``."""
    table = _unet_table(config)
    return {_rename(key, table): value for key, value in state_dict.items()}


def controlnet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Config) -> StateDict:
    """A diffusers ControlNet's state dict under lllyasviel's key names, without the
    ``control_model.`` prefix."""
    table = {**_unet_table(config, up=False), **_controlnet_table(config)}
    return {_rename(key, table): value for key, value in state_dict.items()}


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Config) -> StateDict:
    """A diffusers ``AutoencoderKL``'s state dict under the original key names (no prefix);
    the mid-block attention's Linear weights become the 1x1 convolutions they were."""
    table = _vae_table(config)
    renamed = {}
    for key, value in state_dict.items():
        new_key = _rename(key, table)
        if ".mid.attn_1." in new_key and new_key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        renamed[new_key] = value
    return renamed


def clip_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """A ``CLIPTextModel`` state dict as the original checkpoints keep it: transformers' own
    names under ``text_model.`` (which transformers 5.6+ no longer has on ``CLIPTextModel``)."""
    return {
        key if key.startswith(("text_model.", "text_projection")) else f"text_model.{key}": value
        for key, value in state_dict.items()
    }


def open_clip_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """A ``CLIPTextModelWithProjection`` state dict in OpenCLIP's layout (no prefix): q, k and
    v fused into ``attn.in_proj_weight``/``in_proj_bias`` in that order, as
    ``torch.nn.MultiheadAttention`` keeps them, and ``text_projection`` transposed."""
    source = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
    out = {
        "token_embedding.weight": source.pop("embeddings.token_embedding.weight"),
        "positional_embedding": source.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": source.pop("final_layer_norm.weight"),
        "ln_final.bias": source.pop("final_layer_norm.bias"),
        "text_projection": source.pop("text_projection.weight").T,
        # Trained CLIP's temperature sits at its clamp, 100; it is stored as a log.
        "logit_scale": torch.tensor(math.log(100.0)),
    }
    layers = {int(key.split(".")[2]) for key in source if key.startswith("encoder.layers.")}
    for index in sorted(layers):
        out.update(_open_clip_layer(source, index))
    if source:
        raise KeyError(f"not mapped to OpenCLIP: {sorted(source)}")
    return out


def _open_clip_layer(source: StateDict, index: int) -> StateDict:
    """One resblock, its tensors popped from ``source``."""
    old, new = f"encoder.layers.{index}.", f"transformer.resblocks.{index}."
    out = {}
    for kind in ("weight", "bias"):
        qkv = [source.pop(f"{old}self_attn.{part}_proj.{kind}") for part in "qkv"]
        out[f"{new}attn.in_proj_{kind}"] = torch.cat(qkv)
        for before, after in _OPEN_CLIP_LAYER.items():
            out[f"{new}{after}.{kind}"] = source.pop(f"{old}{before}.{kind}")
    return out


def _unet_table(config: Config, *, up: bool = True) -> Table:
    """Where each diffusers UNet module lives in the LDM UNet, from the config's block layout.

    LDM numbers the down path's layers as one list (``input_blocks.N``, a downsampler taking
    a slot of its own) and the up path likewise (``output_blocks.N``, each block one layer longer,
    its upsampler sitting after the layer's attention if it has one).
    """
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("the LDM layout has one layers_per_block for every block")
    table: Table = {
        "conv_in": ("input_blocks.0.0", {}),
        "time_embedding.linear_1": ("time_embed.0", {}),
        "time_embedding.linear_2": ("time_embed.2", {}),
        "add_embedding.linear_1": ("label_emb.0.0", {}),
        "add_embedding.linear_2": ("label_emb.0.2", {}),
        "class_embedding.linear_1": ("label_emb.0.0", {}),
        "class_embedding.linear_2": ("label_emb.0.2", {}),
        "mid_block.resnets.0": ("middle_block.0", _UNET_RESNET),
        "mid_block.attentions.0": ("middle_block.1", {}),
        "mid_block.resnets.1": ("middle_block.2", _UNET_RESNET),
    }
    table.update(_down_table(config["down_block_types"], layers))
    if up:
        table.update(_up_table(config["up_block_types"], layers))
        table.update({"conv_norm_out": ("out.0", {}), "conv_out": ("out.2", {})})
    return table


def _down_table(block_types: list[str], layers: int) -> Table:
    table: Table = {}
    slot = 1
    for block, kind in enumerate(block_types):
        for layer in range(layers):
            table[f"down_blocks.{block}.resnets.{layer}"] = (f"input_blocks.{slot}.0", _UNET_RESNET)
            if "CrossAttn" in kind:
                table[f"down_blocks.{block}.attentions.{layer}"] = (f"input_blocks.{slot}.1", {})
            slot += 1
        if block < len(block_types) - 1:  # every block but the last halves the size
            table[f"down_blocks.{block}.downsamplers.0.conv"] = (f"input_blocks.{slot}.0.op", {})
            slot += 1
    return table


def _up_table(block_types: list[str], layers: int) -> Table:
    table: Table = {}
    for block, kind in enumerate(block_types):
        attends = "CrossAttn" in kind
        for layer in range(layers + 1):
            slot = block * (layers + 1) + layer
            table[f"up_blocks.{block}.resnets.{layer}"] = (f"output_blocks.{slot}.0", _UNET_RESNET)
            if attends:
                table[f"up_blocks.{block}.attentions.{layer}"] = (f"output_blocks.{slot}.1", {})
        if block < len(block_types) - 1:
            last = (block + 1) * (layers + 1) - 1
            where = f"output_blocks.{last}.{2 if attends else 1}.conv"
            table[f"up_blocks.{block}.upsamplers.0.conv"] = (where, {})
    return table


def _controlnet_table(config: Config) -> Table:
    """ControlNet's own modules: a zero convolution per down-path slot and after the mid block,
    and the hint encoder (convolutions at even indices of a Sequential, SiLUs between)."""
    # One per input block: conv_in's, each layer's, each downsampler's (none after the last).
    slots = len(config["down_block_types"]) * (config["layers_per_block"] + 1)
    table: Table = {f"controlnet_down_blocks.{i}": (f"zero_convs.{i}.0", {}) for i in range(slots)}
    table["controlnet_mid_block"] = ("middle_block_out.0", {})
    hint = "controlnet_cond_embedding"
    convs = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    table[f"{hint}.conv_in"] = ("input_hint_block.0", {})
    for index in range(convs):
        table[f"{hint}.blocks.{index}"] = (f"input_hint_block.{2 * index + 2}", {})
    table[f"{hint}.conv_out"] = (f"input_hint_block.{2 * convs + 2}", {})
    return table


def _vae_table(config: Config) -> Table:
    """The VAE's modules: the decoder's blocks are numbered from the bottom in the original."""
    names = ("quant_conv", "post_quant_conv", "encoder.conv_in", "decoder.conv_in")
    table: Table = {name: (name, {}) for name in names}
    for side in ("encoder", "decoder"):
        table[f"{side}.conv_out"] = (f"{side}.conv_out", {})
        table[f"{side}.conv_norm_out"] = (f"{side}.norm_out", {})
        for index in range(2):
            where = f"{side}.mid.block_{index + 1}"
            table[f"{side}.mid_block.resnets.{index}"] = (where, _VAE_RESNET)
        for before, after in _VAE_ATTENTION.items():
            table[f"{side}.mid_block.attentions.0.{before}"] = (f"{side}.mid.attn_1.{after}", {})
    table.update(_vae_blocks_table(len(config["block_out_channels"]), config["layers_per_block"]))
    return table


def _vae_blocks_table(count: int, layers: int) -> Table:
    table: Table = {}
    for block in range(count):
        down, up = f"encoder.down.{block}", f"decoder.up.{count - 1 - block}"
        for layer in range(layers):
            where = f"{down}.block.{layer}"
            table[f"encoder.down_blocks.{block}.resnets.{layer}"] = (where, _VAE_RESNET)
        for layer in range(layers + 1):  # the decoder's blocks are one layer longer
            where = f"{up}.block.{layer}"
            table[f"decoder.up_blocks.{block}.resnets.{layer}"] = (where, _VAE_RESNET)
        if block < count - 1:
            where = f"{down}.downsample.conv"
            table[f"encoder.down_blocks.{block}.downsamplers.0.conv"] = (where, {})
            table[f"decoder.up_blocks.{block}.upsamplers.0.conv"] = (f"{up}.upsample.conv", {})
    return table


def _rename(key: str, table: Table) -> str:
    """``key`` under its module's original name (the longest matching prefix in ``table``)."""
    parts = key.split(".")
    for length in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:length])
        if head in table:
            new_head, renames = table[head]
            tail = parts[length:]
            tail[0] = renames.get(tail[0], tail[0])
            return ".".join([new_head, *tail])
    raise KeyError(f"{key}: no original name for this module")


# --- Files -------------------------------------------------------------------------------------


def _ddpm_buffers() -> StateDict:
    """The noise schedule LDM registers as buffers (SD 1.5's: 1000 steps, "linear" in LDM's
    sense, i.e. linear in sqrt(beta)), as released SD 1.x checkpoints carry it."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    variance = betas * (1.0 - previous) / (1.0 - alphas_cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1.0).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * previous.sqrt() / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - previous) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod),
    }
    buffers = {key: value.float() for key, value in buffers.items()}
    buffers["model_ema.decay"] = torch.tensor(0.9999)
    buffers["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return buffers


def _prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> StateDict:
    return {prefix + key: value for key, value in state.items()}


# The CLIP vision tower h94's SD 1.5 IP-Adapters read (LAION's ViT-H/14, which ComfyUI keeps as
# clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors).
VIT_H = {"hidden": 1280, "intermediate": 5120, "projection": 1024, "layers": 32, "heads": 16}
VIT_H |= {"image_size": 224, "patch_size": 14}


def clip_vision_model(
    *,
    hidden: int = 32,
    projection: int = 16,
    layers: int = 2,
    intermediate: int | None = None,
    heads: int | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
) -> Any:
    """A seeded ``CLIPVisionModelWithProjection`` (GELU, as LAION's towers): by default tiny, 32
    × 32 pictures in 8-pixel patches with one head per 64 channels (at least one), as
    ``pipelines.ip_adapter`` reads a tower of unlisted width; ``**VIT_H`` for ViT-H's sizes."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 2 + 5,
        projection_dim=projection,
        num_hidden_layers=layers,
        num_attention_heads=heads or max(1, hidden // 64),
        image_size=image_size,
        patch_size=patch_size,
        hidden_act="gelu",
    )
    return _seeded(lambda: CLIPVisionModelWithProjection(config), seed)


def write_clip_vision(path: Path, *, dtype: torch.dtype = torch.float16, **model: Any) -> Path:
    """Write ``clip_vision_model(**model)`` as ComfyUI's ``clip_vision/`` files are
    (transformers' key names: ``vision_model.…``, ``visual_projection.weight``); return ``path``."""
    return _save(path, _cast(clip_vision_model(**model).state_dict(), dtype))


def write_ip_adapter(
    path: Path,
    unet: Any,
    *,
    image_embeds: int = 16,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a plain IP-Adapter for ``unet`` in h94's layout and return ``path``.

    ``image_proj.proj`` (``image_embeds``-wide CLIP image embeddings → 4 tokens of the UNet's
    text width) and ``image_proj.norm``; ``ip_adapter.N.to_k_ip/to_v_ip.weight`` for each
    cross-attention, N = 1, 3, 5… in ``unet.attn_processors`` order (the original counts every
    attention processor, and self-attention ones have no weights). A ``.safetensors`` path gets
    ``image_proj.``/``ip_adapter.`` prefixed keys; a ``.bin`` the original's nested dict.
    """
    width = unet.config.cross_attention_dim
    groups: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        groups["image_proj"] = {
            "proj.weight": torch.randn(4 * width, image_embeds) * 0.2,
            "proj.bias": torch.randn(4 * width) * 0.1,
            "norm.weight": 1 + torch.randn(width) * 0.1,
            "norm.bias": torch.randn(width) * 0.1,
        }
        key = 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            attention = unet.get_submodule(name.removesuffix(".processor"))
            shape = (attention.to_k.out_features, width)
            groups["ip_adapter"][f"{key}.to_k_ip.weight"] = torch.randn(shape) * 0.3
            groups["ip_adapter"][f"{key}.to_v_ip.weight"] = torch.randn(shape) * 0.3
            key += 2
    if Path(path).suffix == ".safetensors":
        flat = {f"{group}.{k}": v for group, part in groups.items() for k, v in part.items()}
        return _save(path, _cast(flat, dtype))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({group: _cast(part, dtype) for group, part in groups.items()}, path)
    return Path(path)


def _cast(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    """Floating tensors in ``dtype``, integer ones as they are; each its own contiguous copy
    (safetensors refuses tensors that share memory)."""
    return {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().contiguous().clone()
        for key, value in state.items()
    }


def _save(
    path: Path, state: StateDict, *, checkpoint: bool = False, metadata: dict | None = None
) -> Path:
    """``.safetensors`` by its suffix, else a pickle (wrapped in ``state_dict`` for a
    checkpoint, as CompVis' ``.ckpt`` files are; a plain dict otherwise, as ``.pth`` ones)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata=metadata)
    else:
        torch.save({"state_dict": state, "global_step": 0} if checkpoint else state, path)
    return path


# --- A WebUI/ComfyUI models folder ----------------------------------------------------------------

WEBUI_OPENPOSE = "control_v11p_sd15_openpose"
WEBUI_CANNY = "control_v11p_sd15_canny"
WEBUI_VAE = "vae-ft-mse-840000-ema-pruned"


def checkpoint_config_beside(path: Path, configs: dict, tokenizer: Path) -> None:
    """The tiny checkpoint's own diffusers configs, in ``<file>.config`` beside it."""
    folder = path.with_name(path.name + ".config")
    shutil.copytree(CONFIGS / "sd15", folder)  # model_index.json and the scheduler
    for part, key in (("unet", "unet_config"), ("vae", "vae_config")):
        (folder / part / "config.json").write_text(json.dumps(configs[key]))
    (folder / "text_encoder" / "config.json").write_text(
        json.dumps({**configs["text_config"], "model_type": "clip_text_model"})
    )
    shutil.copytree(tokenizer, folder / "tokenizer")  # the tiny text encoder's own vocabulary


def config_beside(path: Path, config: dict) -> None:
    """One model's diffusers config, in ``<file>.config/config.json`` beside it."""
    folder = path.with_name(path.name + ".config")
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))


def write_tiny_webui_models(root: Path, tokenizer: Path) -> Path:
    """MODELS_DIR with only WebUI-style files, tiny: ``checkpoints/tiny-inpainting`` and
    ``checkpoints/tiny`` (CompVis layout, 9 and 4 channels), the two ControlNet 1.1 ``.pth``
    names, ``vae/vae-ft-mse-840000-ema-pruned`` and a kohya LoRA ``loras/tiny-kohya``. Each
    tiny file has its tiny configs in a ``<file>.config`` folder (the shipped ones are full
    size); ``tokenizer`` is a CLIP tokenizer folder small enough for the tiny text encoder."""
    for name, inpainting, seed in (("tiny-inpainting", True, 1), ("tiny", False, 2)):
        configs = tiny_sd15_configs(inpainting)
        path = root / "checkpoints" / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_sd15_checkpoint(path, **configs, seed=seed)
        checkpoint_config_beside(path, configs, tokenizer)
    (root / "controlnet").mkdir()
    for name, seed in ((WEBUI_OPENPOSE, 3), (WEBUI_CANNY, 4)):
        path = write_controlnet_pth(
            root / "controlnet" / f"{name}.pth", tiny_controlnet_config(), seed=seed
        )
        config_beside(path, tiny_controlnet_config())
    (root / "vae").mkdir()
    vae_config = tiny_sd15_configs()["vae_config"]
    config_beside(write_vae(root / "vae" / f"{WEBUI_VAE}.safetensors", vae_config, seed=5), {})
    (root / "vae" / f"{WEBUI_VAE}.safetensors.config" / "config.json").write_text(
        json.dumps(vae_config)
    )
    (root / "loras").mkdir()
    models = sd15_models(**tiny_sd15_configs(inpainting=True), seed=1)
    write_kohya_lora(
        root / "loras" / "tiny-kohya.safetensors", models["unet"], models["text_encoder"], seed=6
    )
    return root
