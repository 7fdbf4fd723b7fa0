"""Seconds per image and peak GPU memory of full-size model-shot runs on a CUDA GPU.

Run from the repository root: ``python bench/gpu_run.py``. The last stdout line is one JSON
object; without a CUDA GPU it is ``{"skipped": "no CUDA GPU"}`` and the exit status is 0.
``python bench/gpu_run.py --smoke`` runs everything on the CPU with tiny models at small sizes
instead, so that the script itself is checked where no GPU is (its figures mean nothing).

Random-weight models with the real sizes (the configs the engine ships: the inpainting UNet,
the VAE, the CLIP text encoder(s), two ControlNets) are written in fp16 into a temporary
MODELS_DIR as diffusers folders, with CLIP's real tokenizer; the engine then loads them as it
loads installed weights. Two kinds of figures:

- the plain row (top level): SD 1.5, one model-shot pass at 512×768, 20 steps at denoising
  strength 1, DPM++ 2M, CFG, OpenPose + Canny, the garment reference off.
  ``seconds_per_image`` is ``generate.inpaint_pass`` (our engine, everything included);
  ``direct_s`` the same pipeline called by hand on the same, already prepared inputs;
  ``ratio`` = ours / direct, our engine's overhead where it matters most (target <= 1.10);
  ``peak_gib`` is ``torch.cuda.max_memory_allocated`` over the timed runs, ``weights_gib``
  what the loaded models alone hold.
- ``reference_hires``: a row per family (SD 1.5 at 512×768, SDXL at 832×1216, their native
  sizes) for a model shot as merchants get it: the garment reference unit at its default
  weight and the hires pass at 2× (Lanczos, a second pass at strength 0.5), so 1024×1536 and
  1664×2432 pictures. ``seconds_per_image``, ``first_run_s``, ``peak_gib`` as above, and
  ``result`` the size of the picture that came out (``painted`` what the last pass painted).

Figures are medians of repeated runs after a warm-up.
"""

import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from PIL import Image, ImageDraw

from tests import model_files as mf

SEED = 1234
GIB = 2**30
# One 77-token window each, as the product's prompts are: the text embeddings have the real
# run's shape.
BIGG_PAD = "!"
PROMPT = "a fashion model wearing a red cotton top"
NEGATIVE = "blurry, lowres, bad anatomy, watermark"


@dataclass(frozen=True)
class Setup:
    """What a run of this script uses: the GPU and the real sizes, or the CPU and tiny ones."""

    device: str
    dtype: str
    steps: int
    repeats: int
    sizes: dict[str, tuple[int, int]]  # family -> native size
    tiny: bool

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        if self.device != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated() / GIB, 2)

    def allocated_gib(self) -> float | None:
        if self.device != "cuda":
            return None
        return round(torch.cuda.memory_allocated() / GIB, 2)


GPU = Setup("cuda", "fp16", 20, 3, {"sd15": (512, 768), "sdxl": (832, 1216)}, tiny=False)
SMOKE = Setup("cpu", "fp32", 2, 1, {"sd15": (64, 96), "sdxl": (64, 96)}, tiny=True)


def _configs(family: str, tiny: bool) -> tuple[dict, dict]:
    """The checkpoint's configs (``write_*_checkpoint``'s keyword arguments) and its
    ControlNet's: the shipped full-size ones, or the tests' tiny ones."""
    sdxl = family == "sdxl"
    if tiny:
        configs = (mf.tiny_sdxl_configs if sdxl else mf.tiny_sd15_configs)(inpainting=True)
        return configs, mf.tiny_controlnet_config(sdxl=sdxl)
    configs = (mf.sdxl_configs if sdxl else mf.sd15_configs)(inpainting=True)
    return configs, mf.controlnet_config(configs["unet_config"])


def _tokenizer_folder(tiny: bool, scratch: Path) -> Path:
    """CLIP's real tokenizer, or for tiny text encoders the tiny kit's small one."""
    if not tiny:
        from pipelines.clip_tokenizer import tokenizer_folder

        return tokenizer_folder()
    from pipelines.tiny import CHECKPOINT, make_tiny

    return make_tiny(scratch / "tiny") / "checkpoints" / CHECKPOINT / "tokenizer"


def write_models(models_dir: Path, family: str, setup: Setup) -> Path:
    """Random models of ``family`` ("sd15" or "sdxl") as ``checkpoints/`` and ``controlnet/``
    diffusers folders in ``models_dir``, built on the setup's device (random init of SDXL's
    sizes takes seconds on a GPU, minutes on a CPU) and saved in its dtype."""
    import diffusers
    from diffusers import (
        ControlNetModel,
        StableDiffusionInpaintPipeline,
        StableDiffusionXLInpaintPipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from pipelines.architectures import CONFIGS

    sdxl = family == "sdxl"
    configs, controlnet_config = _configs(family, setup.tiny)
    tokenizer_dir = _tokenizer_folder(setup.tiny, models_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    shipped = CONFIGS / ("sdxl-inpainting" if sdxl else "sd15-inpainting")
    scheduler_class = json.loads((shipped / "scheduler" / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, scheduler_class["_class_name"]).from_pretrained(
        shipped, subfolder="scheduler"
    )
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(setup.dtype, torch.float32)
    torch.manual_seed(0)
    with torch.device(setup.device):
        parts = {
            "vae": diffusers.AutoencoderKL.from_config(configs["vae_config"]),
            "unet": diffusers.UNet2DConditionModel.from_config(configs["unet_config"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**{**configs["text_config"], **ids})),
            "tokenizer": tokenizer,
            "scheduler": scheduler,
        }
        if sdxl:
            text2 = CLIPTextConfig(**{**configs["text2_config"], **ids})
            parts["text_encoder_2"] = CLIPTextModelWithProjection(text2)
            # bigG's tokenizer pads with "!", as SDXL's own does.
            parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(tokenizer_dir, pad_token=BIGG_PAD)
            pipe = StableDiffusionXLInpaintPipeline(**parts, requires_aesthetics_score=False)
        else:
            pipe = StableDiffusionInpaintPipeline(
                **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        pipe.to(dtype=dtype).save_pretrained(
            models_dir / "checkpoints" / f"{family}-random-inpaint", safe_serialization=True
        )
        del pipe, parts
        for kind in ("openpose", "canny"):
            ControlNetModel.from_config(controlnet_config).to(dtype).save_pretrained(
                models_dir / "controlnet" / f"{family}-random-{kind}", safe_serialization=True
            )
    return models_dir


def model_shot_inputs(
    size: tuple[int, int],
) -> tuple[Image.Image, Image.Image, tuple[Image.Image, Image.Image]]:
    """A grey canvas with a garment in the middle, the mask around it, pose and edge maps."""
    width, height = size
    canvas = Image.new("RGB", size, (200, 200, 200))
    garment = (width * 0.3, height * 0.29, width * 0.7, height * 0.68)
    ImageDraw.Draw(canvas).rectangle(garment, fill=(180, 30, 40))
    mask = Image.new("L", size, 255)
    ImageDraw.Draw(mask).rectangle(garment, fill=0)
    pose = Image.new("RGB", size)
    neck, hip = (width / 2, height * 0.16), (width / 2, height * 0.29)
    shoulders = [(garment[0], height * 0.3), (garment[2], height * 0.3)]
    ImageDraw.Draw(pose).line([neck, hip, *shoulders], "red", max(1, width // 64))
    canny = Image.new("RGB", size)
    ImageDraw.Draw(canny).rectangle(garment, outline="white", width=2)
    return canvas, mask, (pose, canny)


def garment_reference(size: tuple[int, int]) -> Image.Image:
    """The reference unit's picture: a drawn product shot's cut-out fitted into ``size``."""
    from pipelines.reference import reference_picture
    from pipelines.samples import draw_product_shot

    shot = draw_product_shot("tshirt", size=(384, 512))
    cutout = shot.image.convert("RGBA")
    cutout.putalpha(shot.mask)
    return reference_picture(cutout, size)


def _timed(run, setup: Setup) -> float:
    start = time.perf_counter()
    run()
    setup.sync()
    return time.perf_counter() - start


def _load(models_dir: Path, params, setup: Setup):
    """The engine's generator for the models in ``models_dir``, and the seconds it took."""
    from pipelines.generate import Generator, RuntimeConfig
    from pipelines.selection import select_models

    gc.collect()  # the models as written are not the ones the engine loads
    if setup.device == "cuda":
        torch.cuda.empty_cache()
    start = time.perf_counter()
    models = select_models(models_dir, params, garment=False)
    generator = Generator(models, RuntimeConfig(device=setup.device, dtype=setup.dtype))
    return generator, time.perf_counter() - start


def _ours(generator, params, *, reference=None):
    """One model-shot pass of our engine (``inpaint_pass``), as a function of nothing. As in a
    model shot, the canvas has the final size (twice the native one with the hires pass) and
    the pass paints at the native size, upscales and paints again, then pastes back."""
    from pipelines.generate import inpaint_pass

    image, mask, controls = model_shot_inputs(params.hires_size())

    def run():
        return inpaint_pass(
            generator,
            image=image,
            mask=mask,
            controls=controls,
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            params=params,
            strength=1.0,  # a model shot paints the model from nothing
            seed=SEED,
            color_correction=False,  # as in a model shot
            reference=reference,
        )

    return run


def plain_row(setup: Setup) -> dict:
    """SD 1.5, one pass without reference or hires: our engine against the bare pipeline."""
    from pipelines.generate import crop_resize, inpaint_region
    from pipelines.params import GenerationParams, ReferenceUnit
    from pipelines.prompt_encoding import encode_prompt_pair
    from pipelines.prompts import parse_prompt
    from pipelines.samplers import make_scheduler

    size = setup.sizes["sd15"]
    params = GenerationParams(
        steps=setup.steps,
        seed=SEED,
        width=size[0],
        height=size[1],
        reference=ReferenceUnit(weight=0.0),
    )
    with tempfile.TemporaryDirectory() as models_dir:
        start = time.perf_counter()
        write_models(Path(models_dir), "sd15", setup)
        print(f"models written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        generator, load_s = _load(Path(models_dir), params, setup)
    pipe = generator.pipe
    weights_gib = setup.allocated_gib()
    ours = _ours(generator, params)

    image, mask, controls = model_shot_inputs(size)
    box = inpaint_region(mask, size, params.inpaint_full_res_padding, params.inpaint_full_res)
    crop_image, crop_mask = crop_resize(image, box, size), crop_resize(mask, box, size)
    crop_controls = [crop_resize(control, box, size) for control in controls]
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
            width=size[0],
            height=size[1],
            strength=1.0,
            num_inference_steps=setup.steps,
            guidance_scale=params.cfg_scale,
            generator=torch.Generator("cpu").manual_seed(SEED),
            controlnet_conditioning_scale=[u.weight for u in units],
            control_guidance_start=[u.guidance_start for u in units],
            control_guidance_end=[u.guidance_end for u in units],
            output_type="pil",
        ).images[0]

    first_s = _timed(ours, setup)
    direct()
    setup.reset_peak()
    ours_s, direct_s = [], []
    for _ in range(setup.repeats):
        ours_s.append(_timed(ours, setup))
        direct_s.append(_timed(direct, setup))
    ours_median, direct_median = statistics.median(ours_s), statistics.median(direct_s)
    row = {
        "size": f"{size[0]}x{size[1]}",
        "steps": setup.steps,
        "strength": 1.0,
        "sampler": params.sampler_name,
        "controlnets": len(units),
        "seconds_per_image": round(ours_median, 3),
        "direct_s": round(direct_median, 3),
        "ratio": round(ours_median / direct_median, 3),
        "steps_per_s": round(setup.steps / ours_median, 2),
        "first_run_s": round(first_s, 2),
        "load_s": round(load_s, 2),
        "weights_gib": weights_gib,
        "peak_gib": setup.peak_gib(),
    }
    generator.close()
    return row


def reference_hires_row(family: str, setup: Setup) -> dict:
    """A model shot of ``family`` at its native size with the garment reference (default
    weight) and the hires pass at 2×: seconds per image, peak memory, the result's size."""
    from pipelines.params import GenerationParams

    size = setup.sizes[family]
    params = GenerationParams(
        steps=setup.steps, seed=SEED, width=size[0], height=size[1], enable_hr=True, hr_scale=2.0
    )
    with tempfile.TemporaryDirectory() as models_dir:
        start = time.perf_counter()
        write_models(Path(models_dir), family, setup)
        write_s = time.perf_counter() - start
        generator, load_s = _load(Path(models_dir), params, setup)
    ours = _ours(generator, params, reference=garment_reference(size))
    start = time.perf_counter()
    result = ours()
    setup.sync()
    first_s = time.perf_counter() - start
    setup.reset_peak()
    seconds = [_timed(ours, setup) for _ in range(setup.repeats)]
    row = {
        "family": family,
        "loaded_as": "sdxl" if generator.is_sdxl else "sd15",  # what the engine made of it
        "size": f"{size[0]}x{size[1]}",
        "result": f"{result.image.width}x{result.image.height}",
        # What the second pass painted: the hires pass really ran at twice the size.
        "painted": f"{result.processed.width}x{result.processed.height}",
        "steps": setup.steps,
        "hires_steps": params.hr_second_pass_steps or params.steps,
        "hires_denoising_strength": params.hr_denoising_strength,
        "reference": f"{params.reference.module} {params.reference.weight}",
        "seconds_per_image": round(statistics.median(seconds), 3),
        "first_run_s": round(first_s, 2),
        "write_s": round(write_s, 1),
        "load_s": round(load_s, 2),
        "peak_gib": setup.peak_gib(),
    }
    generator.close()
    del generator, ours
    gc.collect()
    if setup.device == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> None:
    smoke = "--smoke" in sys.argv[1:]
    if not smoke and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA GPU"}))
        return
    setup = SMOKE if smoke else GPU
    torch.set_grad_enabled(False)
    figures = {
        "gpu": torch.cuda.get_device_name() if setup.device == "cuda" else None,
        "smoke": smoke,
        "dtype": setup.dtype,
        "repeats": setup.repeats,
        **plain_row(setup),
    }
    gc.collect()
    if setup.device == "cuda":
        torch.cuda.empty_cache()
    figures["reference_hires"] = [reference_hires_row(f, setup) for f in ("sd15", "sdxl")]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
