"""Step 5 of a try-on: the diffusion passes that paint a plan (``pipelines.plan``) with
``pipelines.generate``, and each picture's WebUI infotext.

Imports torch and diffusers (through ``generate``), so ``pipelines.tryon.run`` imports this module
inside step 5 only, when an engine paints; the preview engine never does.
"""

import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

from . import generate
from .engines import engine_models_dir
from .errors import GenerationError, is_out_of_memory
from .infotext import format_infotext
from .ip_adapter import ip_adapter_module
from .params import CONTROL_NAMES, MAX_SEED
from .plan import PREPARE_SHARE, Pass, Plan, timed
from .prompts import validate_prompt
from .reference import reference_picture
from .request import (
    CancelCheck,
    GeneratedImage,
    Progress,
    ProgressCallback,
    RuntimeConfig,
    TryOnRequest,
)
from .selection import EngineModels, select_models

# The preprocessor behind each ControlNet slot's map, by its WebUI name (an inpaint's are the
# client's own, see ``_modules``).
CONTROL_MODULES = {"photo": ("mediapipe_openpose", "canny"), "model_shot": ("pose_preset", "canny")}


def paint(
    plan: Plan,
    models_dir: Path,
    runtime: RuntimeConfig | None,
    timings: dict[str, float],
    report: ProgressCallback,
    should_cancel: CancelCheck | None,
) -> tuple[GeneratedImage, ...]:
    """The pictures from the diffusion passes, retried once with offload on GPU out of memory."""
    runtime = runtime or RuntimeConfig()
    engine_dir = engine_models_dir(plan.used["engine"], Path(models_dir))
    # An inpaint reads no garment: only its own reference picture, when it gave one.
    request = plan.request
    garment = request.mode != "inpaint" or request.reference_picture is not None
    models = select_models(engine_dir, request.params, garment=garment)

    def attempt(config: RuntimeConfig) -> tuple[GeneratedImage, ...]:
        return _paint_all(models, config, plan, timings, report, should_cancel)

    try:
        return attempt(runtime)
    except RuntimeError as error:
        if not is_out_of_memory(error) or runtime.offload:
            raise
    generate.free_gpu_memory()
    try:
        return attempt(replace(runtime, offload=True, vae_tiling=True))
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        raise GenerationError(
            "the GPU ran out of memory, even with model offloading; "
            "choose a smaller size or fewer images"
        ) from error
    finally:
        generate.free_gpu_memory()  # offloaded models would slow every later run


def _paint_all(
    models: EngineModels,
    runtime: RuntimeConfig,
    plan: Plan,
    timings: dict[str, float],
    report: ProgressCallback,
    should_cancel: CancelCheck | None,
) -> tuple[GeneratedImage, ...]:
    """Every picture of the batch (``_paint_batch``), the models loaded for this run."""
    generator = timed(timings, "load", lambda: generate.Generator(models, runtime))
    try:
        return _paint_batch(generator, plan, timings, report, should_cancel)
    finally:
        generator.close()


def _paint_batch(
    generator: "generate.Generator",
    plan: Plan,
    timings: dict[str, float],
    report: ProgressCallback,
    should_cancel: CancelCheck | None,
) -> tuple[GeneratedImage, ...]:
    """Every picture of the batch, its passes painted in order, each over the last one's result."""
    request, used = plan.request, plan.used
    params = request.params
    # The token cap needs the checkpoint's tokenizer; checked before LoRAs load or steps run.
    generator.check_prompts(used["prompt"], used["negative_prompt"])
    lora_hashes = generator.use_loras(validate_prompt(used["prompt"]).loras)
    hashes = generator.hashes()
    passes = plan.passes
    units = params.batch_size * len(passes)
    images = []
    sampling_started = time.perf_counter()
    for index in range(params.batch_size):
        seed = (used["seed"] + index) % (MAX_SEED + 1)
        picture = None
        for number, planned in enumerate(passes):
            if number > 0:
                # Composited over the previous pass's painted result, not over its preview.
                planned = planned.over(picture)
            label = f"image {index + 1}/{params.batch_size}"
            if len(passes) > 1:
                label += f", {planned.garment.category} pass {number + 1}/{len(passes)}"
            on_step = _step_reporter(report, label, index * len(passes) + number, units)
            result = generate.inpaint_pass(
                generator,
                image=planned.composite,
                mask=planned.mask,
                controls=(plan.openpose, planned.canny),
                prompt=used["prompt"],
                negative_prompt=used["negative_prompt"],
                params=params,
                strength=used["denoising_strength"],
                seed=seed,
                color_correction=params.color_correction and request.mode == "photo",
                reference=_reference(request, planned),
                garment=generator.garment_picture(_steering_picture(request, planned)),
                on_step=on_step,
                should_cancel=should_cancel,
            )
            picture = result.image
        info = _infotext(request, generator, used, seed, hashes, lora_hashes)
        images.append(GeneratedImage(picture, seed, info))
    timings["sampling"] = round((time.perf_counter() - sampling_started) * 1000, 1)
    return tuple(images)


def _steering_picture(request: TryOnRequest, planned: Pass) -> Image.Image | None:
    """What the reference unit and the IP-Adapter read (RGBA): the pass's garment cut-out, or
    an inpaint's own reference picture (opaque); None when there is neither."""
    if planned.garment is not None:
        return planned.garment.analysis.cutout
    if request.reference_picture is not None:
        return request.reference_picture.convert("RGBA")
    return None


def _reference(request: TryOnRequest, planned: Pass) -> Image.Image | None:
    """The pass's steering picture as the reference unit sees it; None with the unit off or
    nothing to read."""
    params = request.params
    picture = _steering_picture(request, planned)
    if picture is None or not params.reference.enabled:
        return None
    return reference_picture(picture, (params.width, params.height))


def _step_reporter(report: ProgressCallback, label: str, done: int, units: int):
    def on_step(step) -> None:
        share = (done + step.step / step.total) / units
        fraction = min(1.0, PREPARE_SHARE + (1 - PREPARE_SHARE) * share)
        report(Progress(fraction, f"{label}: step {step.step}/{step.total}", step.preview))

    return on_step


def _modules(request: TryOnRequest) -> tuple[str, ...]:
    """The preprocessor that made each slot's map, by its WebUI name."""
    if request.mode != "inpaint":
        return CONTROL_MODULES[request.mode]
    controls = (*request.controls, None, None)[: len(CONTROL_NAMES)]
    return tuple(control.module if control else "none" for control in controls)


def _infotext(request, generator, used, seed, hashes, lora_hashes) -> str:
    params = request.params
    spec = params.sampler
    models = generator.models
    fields: dict[str, object] = {
        "Steps": params.steps,
        "Sampler": spec.name,
        "Schedule type": spec.schedule_type,
        "CFG scale": params.cfg_scale,
        "Seed": seed,
        "Size": (params.width, params.height),
        "Model hash": hashes["checkpoint"],
        "Model": models.checkpoint.name,
        "VAE hash": hashes.get("vae"),
        "VAE": models.vae.filename if models.vae else None,
        "Denoising strength": used["denoising_strength"],
        "Clip skip": params.clip_skip if params.clip_skip > 1 else None,
        "Mask blur": used["mask_blur"],
        "Inpaint area": "Only masked" if params.inpaint_full_res else None,
        "Masked area padding": (
            params.inpaint_full_res_padding if params.inpaint_full_res else None
        ),
    }
    units = zip(
        CONTROL_NAMES, _modules(request), params.controlnets, models.controlnets, strict=True
    )
    for index, (kind, module, unit, net) in enumerate(units):
        fields[f"ControlNet {index}"] = {
            "Module": module,
            "Model": f"{net.name} [{hashes[kind]}]",
            "Weight": unit.weight,
            "Guidance Start": unit.guidance_start,
            "Guidance End": unit.guidance_end,
            "Control Mode": unit.control_mode,
        }
    if params.hires_scale > 1:
        scale = params.hr_scale
        fields["Hires upscale"] = int(scale) if float(scale).is_integer() else scale
        fields["Hires steps"] = params.hr_second_pass_steps or None
        fields["Hires upscaler"] = params.hr_upscaler
        if request.mode == "model_shot":
            # As the WebUI's txt2img writes it: the first pass paints from nothing, so its
            # "Denoising strength" is the hires pass's.
            fields["Denoising strength"] = params.hr_denoising_strength
        else:
            fields["Hires denoising strength"] = params.hr_denoising_strength
    reference = params.reference
    if reference.enabled and (request.mode != "inpaint" or request.reference_picture):
        # As the WebUI ControlNet extension writes a reference unit (no model; the style
        # fidelity is its "Threshold A").
        fields[f"ControlNet {len(CONTROL_NAMES)}"] = {
            "Module": reference.module,
            "Model": "None",
            "Weight": reference.weight,
            "Threshold A": reference.style_fidelity,
            "Guidance Start": reference.guidance_start,
            "Guidance End": reference.guidance_end,
            "Control Mode": "Balanced",
        }
    if models.ip_adapter is not None:
        # As the WebUI ControlNet extension writes an IP-Adapter unit: the encoder's module
        # ("ip-adapter_clip_h" for ViT-H, "…_g" for bigG), the adapter as the model.
        fields[f"ControlNet {len(CONTROL_NAMES) + 1}"] = {
            "Module": ip_adapter_module(models.ip_adapter),
            "Model": f"{models.ip_adapter.adapter.name} [{hashes['ip_adapter']}]",
            "Weight": params.ip_adapter.weight,
            "Guidance Start": 0.0,
            "Guidance End": 1.0,
            "Control Mode": "Balanced",
        }
    if lora_hashes:
        fields["Lora hashes"] = lora_hashes
    fields["Try-on"] = request.mode
    if request.mode == "model_shot":
        fields["Pose"] = request.pose
        fields["Scene"] = request.scene or ("custom" if request.scene_text else None)
    return format_infotext(used["prompt"], used["negative_prompt"], fields)
