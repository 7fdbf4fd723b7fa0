"""A kit of tiny random-weight models in MODELS_DIR's real layout, for tests and smoke runs.

The ``tiny`` engine runs exactly the diffusers code the ``sd`` engine runs, on models small
enough for a CPU: a 512×768 picture takes seconds. Its pictures are noise by design. Everything is
built here from a fixed seed, so no weights are ever downloaded.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

KIT_VERSION = 2
MARKER = ".tiny-kit.json"
SEED = 0
CHECKPOINT = "tiny-sd-inpaint"
CONTROLNETS = ("tiny-openpose", "tiny-canny")
LORA = "tiny-lora"
LORA_RANK = 4

# The UNet and its ControlNets share the down path, as SD1.5 and its ControlNets do.
_DOWN_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D")
_UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")
_BLOCK_CHANNELS = (32, 64)
_HEADS = (2, 4)
_TEXT_WIDTH = 32
# Four stride-2 stages: the ControlNet's hint encoder has to shrink the picture 8× like the VAE.
_HINT_CHANNELS = (16, 16, 32, 32)


def make_tiny(directory: Path) -> Path:
    """Write the tiny kit into ``directory`` (a MODELS_DIR) and return it; complete kits are kept.

    Writes ``checkpoints/tiny-sd-inpaint/`` (a diffusers inpainting pipeline),
    ``controlnet/tiny-openpose/``, ``controlnet/tiny-canny/`` and ``loras/tiny-lora.safetensors``
    (kohya-style keys, as WebUI LoRAs have). A marker file written last says the kit is complete.
    """
    directory = Path(directory)
    if is_complete(directory):
        return directory
    import torch

    with torch.random.fork_rng(devices=[]):
        pipe = _save_checkpoint(directory / "checkpoints" / CHECKPOINT)
        for index, name in enumerate(CONTROLNETS):
            _save_controlnet(directory / "controlnet" / name, seed=SEED + 1 + index)
        _save_lora(pipe.unet, directory / "loras" / f"{LORA}.safetensors")
    (directory / MARKER).write_text(json.dumps({"version": KIT_VERSION, "seed": SEED}))
    return directory


def is_complete(directory: Path) -> bool:
    """Whether ``directory`` holds a finished kit of the current version."""
    try:
        return json.loads((Path(directory) / MARKER).read_text()).get("version") == KIT_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny(models_dir: Path) -> Path:
    """``MODELS_DIR/tiny``, built on first use; concurrent workers do not see half a kit."""
    target = Path(models_dir) / "tiny"
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        make_tiny(building)
        if target.exists() and not is_complete(target):
            shutil.rmtree(target)  # left by a build that was killed half-way
        os.rename(building, target)
    except OSError:
        if not is_complete(target):
            raise
        # Another worker finished first; its kit is the same, since both are seeded.
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def _save_checkpoint(folder: Path) -> Any:
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    torch.manual_seed(SEED)
    pipe = StableDiffusionInpaintPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(),
        tokenizer=_tokenizer(folder.parent / f".{folder.name}-vocab"),
        unet=_unet(),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


def _unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=9,  # noisy latents + masked-image latents + mask
        out_channels=4,
        block_out_channels=_BLOCK_CHANNELS,
        layers_per_block=1,
        down_block_types=_DOWN_BLOCKS,
        up_block_types=_UP_BLOCKS,
        cross_attention_dim=_TEXT_WIDTH,
        attention_head_dim=_HEADS,
    )


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=512,
    )


def _text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(_vocabulary()[0]),
        hidden_size=_TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=77,
        bos_token_id=_vocabulary()[0]["<|startoftext|>"],
        eos_token_id=_vocabulary()[0]["<|endoftext|>"],
        pad_token_id=_vocabulary()[0]["<|endoftext|>"],
    )
    return CLIPTextModel(config)


def _vocabulary() -> tuple[dict[str, int], list[str]]:
    """A CLIP byte-level BPE vocabulary: every byte alone and word-final, a few merges, specials.

    With every byte in it, any text tokenizes, however few merges there are.
    """
    symbols = _byte_symbols()
    merges = ["t h", "th e</w>", "a n", "an d</w>", "s h", "i r", "ir t</w>", "d r", "dr e"]
    tokens = symbols + [f"{symbol}</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte, the alphabet of CLIP's byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return list(symbols.values())


def _tokenizer(scratch: Path) -> Any:
    from transformers import CLIPTokenizer

    vocab, merges = _vocabulary()
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        (scratch / "vocab.json").write_text(json.dumps(vocab))
        (scratch / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        # Read from the files, as a real SD1.5 tokenizer folder is.
        return CLIPTokenizer.from_pretrained(scratch, model_max_length=77)
    finally:
        shutil.rmtree(scratch)


def _scheduler() -> Any:
    from diffusers import PNDMScheduler

    # SD1.5's own scheduler_config.json.
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )


def _save_controlnet(folder: Path, *, seed: int) -> None:
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel(
        in_channels=4,
        block_out_channels=_BLOCK_CHANNELS,
        layers_per_block=1,
        down_block_types=_DOWN_BLOCKS,
        cross_attention_dim=_TEXT_WIDTH,
        attention_head_dim=_HEADS,
        conditioning_embedding_out_channels=_HINT_CHANNELS,
    )
    # A new ControlNet starts with its output ("zero") convolutions at zero, so it would steer
    # nothing and tests could not tell whether the control maps are used at all.
    zero_convs = [*net.controlnet_down_blocks, net.controlnet_mid_block]
    zero_convs.append(net.controlnet_cond_embedding.conv_out)
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.normal_(0.0, 0.05)
    net.save_pretrained(folder, safe_serialization=True)


def _save_lora(unet: Any, path: Path) -> None:
    """A rank-4 LoRA on every attention projection of the UNet, with kohya's key names."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(SEED + len(CONTROLNETS) + 1)
    tensors = {}
    for name, module in unet.named_modules():
        if ".attn" in name and isinstance(module, torch.nn.Linear):
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(LORA_RANK, module.in_features) * 0.1
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, LORA_RANK) * 0.1
            tensors[f"{key}.alpha"] = torch.tensor(float(LORA_RANK))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora"})
