"""Seconds per image and peak GPU memory of a full-size SD1.5 model-shot run on a CUDA GPU.

Run from the repository root: ``python bench/gpu_run.py``. The last stdout line is one JSON
object; without a CUDA GPU it is ``{"skipped": "no CUDA GPU"}`` and the exit status is 0.

Random-weight models with SD1.5's real sizes (inpainting UNet, VAE, a 12-layer 768-wide CLIP
text encoder, two ControlNets) are written in fp16 into a temporary MODELS_DIR in the layout the
``sd`` engine reads; only the tokenizer is the tiny kit's, since token ids are all that matter
here. The engine then loads them as it loads installed weights and runs one model-shot pass:
512×768, 20 steps at denoising strength 1, DPM++ 2M, CFG, OpenPose + Canny.

- ``seconds_per_image``: ``generate.inpaint_pass`` (our engine, everything included);
- ``direct_s``: the same pipeline called by hand on the same, already prepared inputs;
  ``ratio`` = ours / direct, our engine's overhead where it matters most (target <= 1.10);
- ``peak_gib``: ``torch.cuda.max_memory_allocated`` over the timed runs; ``weights_gib``: what
  the loaded models alone hold, the baseline the sampling adds to.

Figures are medians of alternating runs after a warm-up.
"""

import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from PIL import Image, ImageDraw

DEVICE = "cuda"
DTYPE = "fp16"
SIZE = (512, 768)
STEPS = 20
STRENGTH = 1.0  # a model shot paints the model from nothing
SEED = 1234
REPEATS = 3
GIB = 2**30
# One 77-token window each with the tiny kit's tokenizer, as the product's prompts are with
# CLIP's: the text embeddings have the real run's shape.
PROMPT = "a fashion model wearing a red cotton top"
NEGATIVE = "blurry, lowres, bad anatomy, watermark"


def write_models(models_dir: Path, device: torch.device) -> Path:
    """SD1.5-sized random models, in fp16, as ``checkpoints/`` and ``controlnet/`` folders."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from pipelines.tiny import CHECKPOINT, make_tiny

    tiny = make_tiny(models_dir / "tiny") / "checkpoints" / CHECKPOINT
    tokenizer = CLIPTokenizer.from_pretrained(tiny / "tokenizer")
    torch.manual_seed(0)
    with device:  # random init on the GPU takes seconds, on the CPU minutes
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
        unet = UNet2DConditionModel(sample_size=64, in_channels=9, cross_attention_dim=768)
        pipe = StableDiffusionInpaintPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=PNDMScheduler.from_pretrained(tiny / "scheduler"),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.to(dtype=torch.float16).save_pretrained(
            models_dir / "checkpoints" / "sd15-random-inpaint", safe_serialization=True
        )
        for name in ("random-openpose", "random-canny"):
            ControlNetModel(cross_attention_dim=768).to(torch.float16).save_pretrained(
                models_dir / "controlnet" / name, safe_serialization=True
            )
    return models_dir


def model_shot_inputs() -> tuple[Image.Image, Image.Image, tuple[Image.Image, Image.Image]]:
    """A grey canvas with a garment in the middle, the mask around it, pose and edge maps."""
    canvas = Image.new("RGB", SIZE, (200, 200, 200))
    garment = (150, 220, 362, 520)
    ImageDraw.Draw(canvas).rectangle(garment, fill=(180, 30, 40))
    mask = Image.new("L", SIZE, 255)
    ImageDraw.Draw(mask).rectangle(garment, fill=0)
    pose = Image.new("RGB", SIZE)
    ImageDraw.Draw(pose).line([(256, 120), (256, 220), (150, 230), (362, 230)], "red", 8)
    canny = Image.new("RGB", SIZE)
    ImageDraw.Draw(canny).rectangle(garment, outline="white", width=2)
    return canvas, mask, (pose, canny)


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA GPU"}))
        return
    from pipelines.generate import (
        Generator,
        RuntimeConfig,
        crop_resize,
        inpaint_pass,
        inpaint_region,
    )
    from pipelines.params import GenerationParams
    from pipelines.prompt_encoding import encode_prompt_pair
    from pipelines.prompts import parse_prompt
    from pipelines.samplers import make_scheduler
    from pipelines.selection import select_models

    torch.set_grad_enabled(False)
    params = GenerationParams(steps=STEPS, seed=SEED, width=SIZE[0], height=SIZE[1])
    image, mask, controls = model_shot_inputs()
    with tempfile.TemporaryDirectory() as models_dir:
        start = time.perf_counter()
        write_models(Path(models_dir), torch.device(DEVICE))
        gc.collect()  # the models as written are not the ones the engine loads
        torch.cuda.empty_cache()
        print(f"models written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        start = time.perf_counter()
        generator = Generator(
            select_models(Path(models_dir), params), RuntimeConfig(device=DEVICE, dtype=DTYPE)
        )
        load_s = time.perf_counter() - start
    pipe = generator.pipe
    weights_gib = torch.cuda.memory_allocated() / GIB

    def ours():
        return inpaint_pass(
            generator,
            image=image,
            mask=mask,
            controls=controls,
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            params=params,
            strength=STRENGTH,
            seed=SEED,
            color_correction=False,  # as in a model shot
        )

    box = inpaint_region(mask, SIZE, params.inpaint_full_res_padding, params.inpaint_full_res)
    crop_image, crop_mask = crop_resize(image, box, SIZE), crop_resize(mask, box, SIZE)
    crop_controls = [crop_resize(control, box, SIZE) for control in controls]
    cond, uncond = encode_prompt_pair(
        parse_prompt(PROMPT), parse_prompt(NEGATIVE), pipe.tokenizer, pipe.text_encoder
    )
    scheduler = make_scheduler(params.sampler, pipe.scheduler.config)
    units = params.controlnets

    def direct():
        pipe.scheduler = scheduler
        pipe.controlnet.set_modes(tuple(u.control_mode for u in units), cfg_batch=True)
        return pipe(
            prompt_embeds=cond.to(pipe.device, generator.dtype),
            negative_prompt_embeds=uncond.to(pipe.device, generator.dtype),
            image=crop_image,
            mask_image=crop_mask,
            control_image=crop_controls,
            width=SIZE[0],
            height=SIZE[1],
            strength=STRENGTH,
            num_inference_steps=STEPS,
            guidance_scale=params.cfg_scale,
            generator=torch.Generator("cpu").manual_seed(SEED),
            controlnet_conditioning_scale=[u.weight for u in units],
            control_guidance_start=[u.guidance_start for u in units],
            control_guidance_end=[u.guidance_end for u in units],
            output_type="pil",
        ).images[0]

    first_s = _timed(ours)
    direct()
    torch.cuda.reset_peak_memory_stats()
    ours_s, direct_s = [], []
    for _ in range(REPEATS):
        ours_s.append(_timed(ours))
        direct_s.append(_timed(direct))
    ours_median, direct_median = statistics.median(ours_s), statistics.median(direct_s)
    print(
        json.dumps(
            {
                "gpu": torch.cuda.get_device_name(),
                "size": f"{SIZE[0]}x{SIZE[1]}",
                "steps": STEPS,
                "strength": STRENGTH,
                "sampler": params.sampler_name,
                "controlnets": len(units),
                "dtype": DTYPE,
                "repeats": REPEATS,
                "seconds_per_image": round(ours_median, 3),
                "direct_s": round(direct_median, 3),
                "ratio": round(ours_median / direct_median, 3),
                "steps_per_s": round(STEPS * STRENGTH / ours_median, 2),
                "first_run_s": round(first_s, 2),
                "load_s": round(load_s, 2),
                "weights_gib": round(weights_gib, 2),
                "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
