"""What our engine costs on top of diffusers: one photo-mode inpaint pass vs the bare pipeline.

Run from the repository root: ``python bench/engine_overhead.py``. The last stdout line is one
JSON object. Both sides run the tiny kit (built into a temporary MODELS_DIR) on the same
1024×1536 photo, torso mask and two control maps, with the same steps, seed and ControlNet units
(the garment reference off, as the bare pipeline has none):

- ``ours_s``: ``generate.inpaint_pass`` — crop of the inpaint area, resizes, sampler, weighted
  prompt encoding, the pipeline at 512×768, paste-back with colour correction;
- ``direct_s``: ``generator.pipe(...)`` called by hand on inputs cropped and encoded beforehand
  (untimed), i.e. what the diffusers pipeline alone costs for the same work.

Each is the median of alternating warm repetitions; ``ratio`` = ours / direct (target <= 1.10).
``reference_ratio`` and ``hires_ratio`` are our pass with the garment reference (weight 1)
and with the hires pass (2×) over our plain pass. ``overhead_ms`` is the median time
``inpaint_pass`` spends outside its own pipeline call, and ``ratio_in_run`` the ratio that
makes: both are measured within the same runs, so other processes on a small shared machine
disturb them far less than ``ratio``. ``parts_ms`` times
our own steps one by one (best of several), to show where ``overhead_ms`` goes. The tiny
models make sampling cheap, so the ratios here are an upper bound: with SD1.5's real sizes the
same milliseconds are a far smaller share (``bench/gpu_run.py`` measures that on a GPU).
"""

import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage import data

from pipelines.generate import (
    Generator,
    RuntimeConfig,
    crop_resize,
    inpaint_pass,
    inpaint_region,
    paste_back,
)
from pipelines.params import GenerationParams, ReferenceUnit
from pipelines.prompt_encoding import encode_prompt_pair
from pipelines.prompts import build_prompt, parse_prompt
from pipelines.reference import reference_picture
from pipelines.samplers import make_scheduler
from pipelines.samples import draw_product_shot
from pipelines.selection import select_models
from pipelines.tiny import make_tiny

PHOTO_SIZE = (1024, 1536)
STEPS = 4
STRENGTH = 0.75  # the photo mode's default
SEED = 1234
REPEATS = 7


def _inputs() -> tuple[Image.Image, Image.Image, tuple[Image.Image, Image.Image]]:
    """A real photo, a feathered torso mask and two full-size control maps."""
    photo = Image.fromarray(data.astronaut()).resize(PHOTO_SIZE, Image.LANCZOS)
    mask = Image.new("L", PHOTO_SIZE, 0)
    torso = [(330, 430), (694, 430), (760, 560), (720, 1100), (304, 1100), (264, 560)]
    ImageDraw.Draw(mask).polygon(torso, fill=255)
    mask = Image.fromarray(cv2.GaussianBlur(np.asarray(mask), (0, 0), 8))
    pose = Image.new("RGB", PHOTO_SIZE)
    draw = ImageDraw.Draw(pose)
    for start, end, colour in [
        ((512, 300), (512, 430), (255, 0, 0)),
        ((330, 430), (694, 430), (255, 170, 0)),
        ((330, 430), (260, 800), (0, 255, 0)),
        ((694, 430), (764, 800), (0, 0, 255)),
        ((512, 430), (420, 1100), (170, 0, 255)),
        ((512, 430), (604, 1100), (0, 255, 255)),
    ]:
        draw.line([start, end], fill=colour, width=12)
    edges = cv2.Canny(cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2GRAY), 100, 200)
    canny = Image.fromarray(edges).convert("RGB")
    return photo, mask, (pose, canny)


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _record_calls(pipe, seconds: list[float]) -> None:
    """Make ``pipe`` append the duration of each of its calls to ``seconds``."""

    class Recorded(type(pipe)):
        def __call__(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return super().__call__(*args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - start)

    pipe.__class__ = Recorded


def _best_ms(run, repeats: int = 2 * REPEATS) -> float:
    return round(min(_timed(run) for _ in range(repeats)) * 1000, 1)


def main() -> None:
    torch.set_grad_enabled(False)
    params = GenerationParams(steps=STEPS, seed=SEED, width=512, height=768)
    prompt, negative = build_prompt(category="upper", colour="red", material="cotton", photo=True)
    photo, mask, controls = _inputs()
    units = params.controlnets

    with tempfile.TemporaryDirectory() as models_dir:
        generator = Generator(
            select_models(make_tiny(Path(models_dir)), params), RuntimeConfig(device="cpu")
        )
    pipe = generator.pipe

    def ours(chosen=params, reference=None):
        return inpaint_pass(
            generator,
            image=photo,
            mask=mask,
            controls=controls,
            prompt=prompt,
            negative_prompt=negative,
            params=chosen,
            strength=STRENGTH,
            seed=SEED,
            color_correction=True,
            reference=reference,
        )

    # The direct call's setup: the same crop, scheduler, control modes and embeddings, untimed.
    size = (params.width, params.height)
    box = inpaint_region(mask, size, params.inpaint_full_res_padding, params.inpaint_full_res)
    crop_image, crop_mask = crop_resize(photo, box, size), crop_resize(mask, box, size)
    crop_controls = [crop_resize(control, box, size) for control in controls]
    cond, uncond = encode_prompt_pair(
        parse_prompt(prompt), parse_prompt(negative), pipe.tokenizer, pipe.text_encoder
    )
    scheduler = make_scheduler(params.sampler, pipe.scheduler.config)

    def direct():
        pipe.scheduler = scheduler
        pipe.controlnet.set_modes(tuple(u.control_mode for u in units), cfg_batch=True)
        return pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            image=crop_image,
            mask_image=crop_mask,
            control_image=crop_controls,
            width=params.width,
            height=params.height,
            strength=STRENGTH,
            num_inference_steps=STEPS,
            guidance_scale=params.cfg_scale,
            generator=torch.Generator("cpu").manual_seed(SEED),
            controlnet_conditioning_scale=[u.weight for u in units],
            control_guidance_start=[u.guidance_start for u in units],
            control_guidance_end=[u.guidance_end for u in units],
            output_type="pil",
        ).images[0]

    shot = draw_product_shot("tshirt", size=(384, 512))
    cutout = shot.image.convert("RGBA")
    cutout.putalpha(shot.mask)
    garment = reference_picture(cutout, (params.width, params.height))
    referenced = replace(params, reference=ReferenceUnit(weight=1.0))

    def with_reference():
        return ours(referenced, garment)

    hires = replace(params, enable_hr=True)

    def with_hires():
        return ours(hires)

    processed = ours().processed
    same_picture = np.array_equal(np.asarray(processed), np.asarray(direct()))
    pipe_s: list[float] = []
    _record_calls(pipe, pipe_s)
    ours_s, direct_s, own_s, reference_s, hires_s = [], [], [], [], []
    for repeat in range(REPEATS):
        ours_s.append(_timed(ours))
        own_s.append(ours_s[-1] - pipe_s[-1])
        direct_s.append(_timed(direct))
        reference_s.append(_timed(with_reference))
        hires_s.append(_timed(with_hires))
        print(
            f"repeat {repeat + 1}: ours {ours_s[-1]:.3f} s (own {own_s[-1] * 1000:.0f} ms), "
            f"direct {direct_s[-1]:.3f} s",
            file=sys.stderr,
        )
    ours_median, direct_median = statistics.median(ours_s), statistics.median(direct_s)
    own_median = statistics.median(own_s)

    parts_ms = {
        "inpaint_region": _best_ms(
            lambda: inpaint_region(mask, size, params.inpaint_full_res_padding, True)
        ),
        "crop_resize_inputs": _best_ms(
            lambda: (
                [crop_resize(i.convert("RGB"), box, size) for i in (photo, *controls)]
                + [crop_resize(mask, box, size)]
            )
        ),
        "make_scheduler": _best_ms(lambda: make_scheduler(params.sampler, pipe.scheduler.config)),
        "encode_prompts": _best_ms(
            lambda: encode_prompt_pair(
                parse_prompt(prompt), parse_prompt(negative), pipe.tokenizer, pipe.text_encoder
            )
        ),
        "paste_back": _best_ms(
            lambda: paste_back(photo, processed, box, mask, color_correction=True)
        ),
        "paste_back_no_colour": _best_ms(
            lambda: paste_back(photo, processed, box, mask, color_correction=False)
        ),
    }
    print(
        json.dumps(
            {
                "engine": "tiny",
                "photo": "x".join(map(str, PHOTO_SIZE)),
                "crop": f"{box[2] - box[0]}x{box[3] - box[1]}",
                "size": f"{params.width}x{params.height}",
                "steps": STEPS,
                "strength": STRENGTH,
                "sampler": params.sampler_name,
                "repeats": REPEATS,
                "ours_s": round(ours_median, 3),
                "direct_s": round(direct_median, 3),
                "ratio": round(ours_median / direct_median, 3),
                "overhead_ms": round(own_median * 1000, 1),
                "ratio_in_run": round(ours_median / (ours_median - own_median), 3),
                # The reference unit (weight 1, every step): one more UNet call per step.
                "reference_s": round(statistics.median(reference_s), 3),
                "reference_ratio": round(statistics.median(reference_s) / ours_median, 3),
                # The hires pass (2x, the same steps at strength 0.5): a second pass at four
                # times the pixels.
                "hires_s": round(statistics.median(hires_s), 3),
                "hires_ratio": round(statistics.median(hires_s) / ours_median, 3),
                "parts_ms": parts_ms,
                "same_picture": same_picture,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
