"""The whole try-on: a request in, pictures with their maps, parameters and timings out.

Two modes share stages 1–6 (see DESIGN.md):

- **photo**: a person's photo dressed in one garment, or an outfit of several worn together,
  painted one garment per pass (bottoms, then tops, then outerwear over them), each pass
  keeping the previous result outside its own mask;
- **model_shot**: the garments placed on a pose preset's skeleton over a scene's background;
  the model and the scene are generated around them and the garments' own pixels are kept;
- **inpaint**: no garment; a client's own picture, mask and ControlNet inputs (the WebUI's
  img2img, see ``pipelines.inpaint``).

Engines: ``preview`` returns stage 4's composite (no diffusion, no weights; a model shot's
garments are worn by a mannequin drawn from the pose, ``pipelines.mannequin``); ``sd`` and
``tiny`` run ``pipelines.generate`` with the installed models or the tiny kit; ``auto`` is
``sd`` when weights are installed, else ``preview`` (for an inpaint: OpenCV's classical fill).
"""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from PIL import Image

from .canny import canny_map
from .engines import engine_models_dir, find_weights, resolve_engine
from .errors import GenerationError, InvalidInputError
from .infotext import format_infotext
from .inpaint import WEBUI_MASK_BLUR, classical_fill, control_map, inpaint_mask
from .mannequin import draw_mannequin
from .masks import TryOnMask, covering, tryon_mask
from .params import CONTROL_NAMES, MAX_SEED, GenerationParams
from .person import analyze_person, check_pose_usable, person_from_keypoints, render_openpose
from .poses import CANVAS, get_preset
from .prompts import build_free_prompt, build_prompt, validate_prompt
from .request import (
    CancelCheck,
    GarmentInput,
    GeneratedImage,
    Progress,
    ProgressCallback,
    RuntimeConfig,
    TryOnOutput,
    TryOnRequest,
    check_request,
)
from .safety import ContentFilter, ContentFiltered, load_content_filter
from .scenes import resolve_scene
from .text import one_line
from .types import PersonAnalysis
from .warp import composite, warp_garment
from .watermark import apply_watermark, can_watermark

DEFAULT_STRENGTH = {"photo": 0.75, "model_shot": 1.0, "inpaint": 0.75}
# Share of the progress bar for the analysis before the first sampling step.
PREPARE_SHARE = 0.05
# A model shot's garment keeps its pixels except a thin rim, blended into the painted model.
KEEP_RIM = 2
MODEL_SHOT_FEATHER = 0.008  # of the canvas width: the feather's sigma on the garment's edge
CONTROL_MODULES = {"photo": ("mediapipe_openpose", "canny"), "model_shot": ("pose_preset", "canny")}


@dataclass(frozen=True, eq=False)
class _Pass:
    """One garment's pass prepared on a picture: what to paint, where, and its guides."""

    garment: GarmentInput | None  # None: an inpaint of the client's picture
    tryon: TryOnMask | None
    warped: Image.Image | None
    mask: Image.Image
    composite: Image.Image
    canny: Image.Image

    def over(self, picture: Image.Image) -> "_Pass":
        """This pass with its init picture composited over an earlier pass's result."""
        return replace(self, composite=composite(picture, self.warped, self.tryon))


T = TypeVar("T")


def timed(timings: dict[str, float], stage: str, work: "Callable[[], T]") -> T:
    """Run ``work`` and add its wall time in milliseconds to ``stage`` in ``timings``."""
    start = time.perf_counter()
    result = work()
    spent = (time.perf_counter() - start) * 1000
    timings[stage] = round(timings.get(stage, 0.0) + spent, 1)
    return result


def run(
    request: TryOnRequest,
    *,
    models_dir: Path,
    runtime: RuntimeConfig | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> TryOnOutput:
    """Run ``request``; ``runtime`` is a ``request.RuntimeConfig`` (default: its defaults).

    With the content filter (``runtime.content_filter`` and its weights installed, see
    ``pipelines.safety``), a flagged input picture stops the run before anything is painted and
    a flagged result is withheld. With ``runtime.watermark``, every result of at least 256 × 256
    pixels gets the invisible watermark (``pipelines.watermark``) after paste-back.

    Raises ``InvalidInputError`` (naming the field) for bad input, a prompt over
    ``prompts.MAX_PROMPT_TOKENS`` included (found once the engine's tokenizer is loaded, before
    any LoRA loads or step runs), ``ModelNotFoundError`` when
    the ``sd`` engine lacks weights, ``GenerationCancelled`` when ``should_cancel`` turns true,
    ``GenerationError`` when the GPU runs out of memory even with model offloading,
    ``ContentFiltered`` when the filter refuses the input or withholds every result.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    report = on_progress or (lambda progress: None)
    garments = check_request(request)
    screen = _content_filter(runtime, models_dir)
    if screen is not None and request.person_photo is not None:
        timed(timings, "filter_input", lambda: _screen_input(screen, request))
    engine = resolve_engine(request.engine, find_weights(Path(models_dir)))
    params = request.params
    seed = params.seed if params.seed != -1 else secrets.randbelow(MAX_SEED + 1)
    strength = params.denoising_strength or DEFAULT_STRENGTH[request.mode]
    report(Progress(0.0, "analysing"))
    if request.mode == "photo":
        person, passes, openpose = _prepare_photo(request, garments, params, timings)
    elif request.mode == "model_shot":
        person, passes, openpose = _prepare_model_shot(
            request, garments, params, timings, figure=engine == "preview"
        )
    else:
        person, passes, openpose = _prepare_inpaint(request, params, timings)
    prompt, negative = _prompts(request, garments)
    maps = _maps(passes, openpose)
    report(Progress(PREPARE_SHARE, "generating"))
    used = {
        **params.to_dict(),
        "seed": seed,
        "denoising_strength": strength,
        "mask_blur": _mask_blur(params, person, request.mode),
        "prompt": prompt,
        "negative_prompt": negative,
        "engine": engine,
        "mode": request.mode,
    }
    if engine == "preview":
        image = passes[-1].composite
        if request.mode == "inpaint":
            image = timed(timings, "fill", lambda: classical_fill(image, passes[-1].mask))
        info = format_infotext(
            prompt, negative, {"Seed": seed, "Engine": "preview", "Try-on": request.mode}
        )
        images = (GeneratedImage(image, seed, info),)
    else:
        prepared = _Prepared(request, person, passes, openpose, used)
        images = _diffuse(prepared, models_dir, runtime, timings, report, should_cancel)
    count = len(images)
    if screen is not None:
        images = timed(timings, "filter_output", lambda: _withhold_flagged(screen, images))
    if runtime is not None and runtime.watermark:
        images = timed(timings, "watermark", lambda: tuple(map(_watermarked, images)))
    timings["total"] = round((time.perf_counter() - started) * 1000, 1)
    report(Progress(1.0, "done"))
    return TryOnOutput(engine, request.mode, images, maps, used, timings, count - len(images))


def _content_filter(runtime: RuntimeConfig | None, models_dir: Path) -> ContentFilter | None:
    """The installed safety checker, unless ``runtime`` turns it off (no runtime: on)."""
    if runtime is not None and not runtime.content_filter:
        return None
    return load_content_filter(
        Path(models_dir),
        device=runtime.device if runtime is not None else "auto",
        manifest=runtime.manifest if runtime is not None else None,
    )


def _screen_input(screen: ContentFilter, request: TryOnRequest) -> None:
    if screen.flags([request.person_photo])[0]:
        picture = "picture" if request.mode == "inpaint" else "photo"
        raise ContentFiltered(
            f"The content filter refused this {picture}, so nothing was generated; "
            f"please use another {picture}."
        )


def _withhold_flagged(
    screen: ContentFilter, images: tuple[GeneratedImage, ...]
) -> tuple[GeneratedImage, ...]:
    """The pictures the filter lets through; when it flags them all, the run fails."""
    flags = screen.flags([generated.image for generated in images])
    kept = tuple(generated for generated, flagged in zip(images, flags, strict=True) if not flagged)
    if images and not kept:
        raise ContentFiltered(
            "The result was withheld by the content filter; try another seed or other words."
        )
    return kept


def _watermarked(generated: GeneratedImage) -> GeneratedImage:
    """``generated`` with the invisible watermark, if it is large enough to carry one (the
    method needs 256 × 256 pixels; smaller pictures stay unmarked, as with SDXL's watermarker)."""
    if not can_watermark(generated.image):
        return generated
    return replace(generated, image=apply_watermark(generated.image))


# --- preparation ---------------------------------------------------------------------------------


def _prepare_photo(request, garments, params, timings):
    photo = request.person_photo.convert("RGB")
    person = timed(timings, "person", lambda: analyze_person(photo))
    for garment in garments:
        check_pose_usable(person, garment.category)
    passes = []
    picture = photo
    for garment in garments:
        prepared = _photo_pass(garment, person, photo, picture, params, timings)
        passes.append(prepared)
        picture = prepared.composite
    openpose = timed(timings, "openpose", lambda: render_openpose(person))
    return person, passes, openpose


def _photo_pass(
    garment: GarmentInput,
    person: PersonAnalysis,
    photo: Image.Image,
    picture: Image.Image,
    params: GenerationParams,
    timings: dict[str, float],
) -> _Pass:
    """A garment's pass over ``picture``, fitted to the ``photo``: the person's own clothes
    decide what to cover, whatever earlier passes painted. Each stage's time is added to
    ``timings`` (an outfit's passes add up)."""
    analysis = garment.analysis
    tryon = timed(
        timings,
        "mask",
        lambda: tryon_mask(person, photo, garment.category, analysis, mask_blur=params.mask_blur),
    )
    warped = timed(timings, "warp", lambda: warp_garment(analysis, person, tryon))
    tryon = covering(tryon, warped)
    preview = timed(timings, "composite", lambda: composite(picture, warped, tryon))
    return _Pass(
        garment,
        tryon,
        warped,
        tryon.mask,
        preview,
        timed(timings, "canny", lambda: canny_map(warped)),
    )


def _prepare_model_shot(request, garments, params, timings, *, figure: bool = False):
    """The garments on the pose preset over the scene's background; with ``figure`` (the
    preview engine, which paints no model) worn by a mannequin drawn from the skeleton."""
    size = (params.width, params.height)
    person = _preset_person(request.pose, size)
    scene = resolve_scene(request.scene, request.scene_text)
    canvas = scene.canvas(size)
    layer = np.zeros((size[1], size[0], 4), np.float32)
    for garment in garments:
        tryon = tryon_mask(person, canvas, garment.category, garment.analysis, mask_blur=0)
        warped = np.asarray(warp_garment(garment.analysis, person, tryon), np.float32)
        over = warped[:, :, 3:4] / 255.0
        layer[:, :, :3] = warped[:, :, :3] * over + layer[:, :, :3] * (1 - over)
        layer[:, :, 3:4] = 255.0 * (over + layer[:, :, 3:4] / 255.0 * (1 - over))
    dressed = Image.fromarray(np.round(layer).astype(np.uint8), "RGBA")
    picture = canvas.copy()
    if figure:
        mannequin = timed(timings, "mannequin", lambda: draw_mannequin(person))
        picture.paste(mannequin.figure, (0, 0), mannequin.figure)
    picture.paste(dressed, (0, 0), dressed)
    if figure:
        # Hands and forearms across the body stay in front of the garment.
        front = np.asarray(mannequin.figure.getchannel("A"), np.float32) * mannequin.front
        picture.paste(mannequin.figure, (0, 0), Image.fromarray(front.round().astype(np.uint8)))
    mask = _everything_but(np.asarray(dressed.getchannel("A")), params.mask_blur, size[0])
    openpose = timed(timings, "openpose", lambda: render_openpose(person, hands=False, face=False))
    canny = timed(timings, "canny", lambda: canny_map(dressed))
    # One pass paints the model around all garments of the outfit at once.
    return person, [_Pass(garments[-1], None, None, mask, picture, canny)], openpose


def _prepare_inpaint(request, params, timings):
    """The client's picture, mask and maps as one pass; there is no person analysis to share."""
    picture = request.person_photo.convert("RGB")
    blur = params.mask_blur if params.mask_blur is not None else WEBUI_MASK_BLUR
    mask = inpaint_mask(request.mask, picture.size, blur)
    controls = (*request.controls, None, None)[: len(CONTROL_NAMES)]
    openpose, canny = (
        timed(timings, slot, lambda s=slot, c=control: control_map(s, c, picture))
        for slot, control in zip(CONTROL_NAMES, controls, strict=True)
    )
    return None, [_Pass(None, None, None, mask, picture, canny)], openpose


def _preset_person(pose: str, size: tuple[int, int]) -> PersonAnalysis:
    """The preset's skeleton scaled uniformly onto a ``size`` canvas and centred."""
    preset = get_preset(pose)
    scale = min(size[0] / CANVAS[0], size[1] / CANVAS[1])
    shift_x, shift_y = (size[0] - CANVAS[0] * scale) / 2, (size[1] - CANVAS[1] * scale) / 2
    body = [(x * scale + shift_x, y * scale + shift_y, score) for x, y, score in preset.body]
    return person_from_keypoints(body, *size)


def _everything_but(alpha: np.ndarray, blur: float | None, width: int) -> Image.Image:
    """The model-shot mask: 255 outside the garment, feathered only inward over its rim."""
    kept = cv2.erode((alpha >= 128).astype(np.uint8), np.ones((2 * KEEP_RIM + 1,) * 2, np.uint8))
    if not kept.any():
        raise InvalidInputError("garment", "the garment does not appear on the pose; re-analyse it")
    paint = (1 - kept) * 255
    sigma = MODEL_SHOT_FEATHER * width if blur is None else blur
    if sigma > 0:
        paint = np.maximum(paint, cv2.GaussianBlur(paint.astype(np.uint8), (0, 0), sigma))
    return Image.fromarray(paint.astype(np.uint8), "L")


def _mask_blur(params: GenerationParams, person: PersonAnalysis, mode: str) -> float:
    if params.mask_blur is not None:
        return params.mask_blur
    if mode == "inpaint":
        return WEBUI_MASK_BLUR
    if mode == "model_shot":
        return round(MODEL_SHOT_FEATHER * params.width, 1)
    from .geometry import body_frame

    return round(0.025 * body_frame(person).shoulder_width, 1)


def _maps(passes: list[_Pass], openpose: Image.Image) -> dict[str, Image.Image]:
    mask = np.maximum.reduce([np.asarray(p.mask) for p in passes])
    canny = np.maximum.reduce([np.asarray(p.canny.convert("RGB")) for p in passes])
    return {
        "mask": Image.fromarray(mask, "L"),
        "openpose": openpose,
        "canny": Image.fromarray(canny, "RGB"),
        "composite": passes[-1].composite,
    }


def _prompts(request: TryOnRequest, garments: list[GarmentInput]) -> tuple[str, str]:
    """The full WebUI prompts: the builder's, the person's words, and allowed LoRA tags."""
    params = request.params
    # Read from the one-line text, as sanitize_user_prompt reads the words: no tag brings a line
    # break into the prompt.
    loras = validate_prompt(one_line(params.prompt)).loras if request.allow_loras else ()
    tags = "".join(f" <lora:{name}:{weight:g}>" for name, weight in loras)
    if request.mode == "inpaint":
        positive, negative = build_free_prompt(params.prompt, params.negative_prompt)
        return positive + tags, negative
    first, *more = garments
    scene = (
        resolve_scene(request.scene, request.scene_text) if request.mode == "model_shot" else None
    )
    positive, negative = build_prompt(
        category=first.category,
        colour=first.colour,
        material=first.material,
        description=first.description,
        more_garments=[(g.category, g.colour, g.material) for g in more],
        scene=scene.prompt if scene else "",
        scene_negative=scene.negative if scene else "",
        model=request.model_attributes,
        user_text=params.prompt,
        user_negative=params.negative_prompt,
        photo=request.mode == "photo",
    )
    return positive + tags, negative


# --- diffusion -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Prepared:
    """Everything stages 1–4 produced that the diffusion passes need."""

    request: TryOnRequest
    person: PersonAnalysis
    passes: list[_Pass]
    openpose: Image.Image
    used: dict[str, Any]


def _diffuse(prepared: _Prepared, models_dir, runtime, timings, report, should_cancel):
    """The pictures from the diffusion passes, retried once with offload on GPU out of memory."""
    from . import generate

    runtime = runtime or RuntimeConfig()
    engine_dir = engine_models_dir(prepared.used["engine"], Path(models_dir))
    models = generate.select_models(engine_dir, prepared.request.params)
    attempt = lambda config: _paint_all(  # noqa: E731
        generate, models, config, prepared, timings, report, should_cancel
    )
    try:
        return attempt(runtime)
    except RuntimeError as error:
        if not generate.is_out_of_memory(error) or runtime.offload:
            raise
    generate.free_gpu_memory()
    try:
        return attempt(replace(runtime, offload=True, vae_tiling=True))
    except RuntimeError as error:
        if not generate.is_out_of_memory(error):
            raise
        raise GenerationError(
            "the GPU ran out of memory, even with model offloading; "
            "choose a smaller size or fewer images"
        ) from error
    finally:
        generate.free_gpu_memory()  # offloaded models would slow every later run


def _paint_all(generate, models, runtime, prepared: _Prepared, timings, report, should_cancel):
    request, used = prepared.request, prepared.used
    params = request.params
    generator = timed(timings, "load", lambda: generate.Generator(models, runtime))
    # The token cap needs the checkpoint's tokenizer; checked before LoRAs load or steps run.
    generator.check_prompts(used["prompt"], used["negative_prompt"])
    lora_hashes = generator.use_loras(validate_prompt(used["prompt"]).loras)
    hashes = generator.hashes()
    passes = prepared.passes
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
                controls=(prepared.openpose, planned.canny),
                prompt=used["prompt"],
                negative_prompt=used["negative_prompt"],
                params=params,
                strength=used["denoising_strength"],
                seed=seed,
                color_correction=params.color_correction and request.mode == "photo",
                on_step=on_step,
                should_cancel=should_cancel,
            )
            picture = result.image
        info = _infotext(request, generator, used, seed, hashes, lora_hashes)
        images.append(GeneratedImage(picture, seed, info))
    timings["sampling"] = round((time.perf_counter() - sampling_started) * 1000, 1)
    return tuple(images)


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
            "Model": f"{net.name} [{hashes[kind][:8]}]",
            "Weight": unit.weight,
            "Guidance Start": unit.guidance_start,
            "Guidance End": unit.guidance_end,
            "Control Mode": unit.control_mode,
        }
    if lora_hashes:
        fields["Lora hashes"] = lora_hashes
    fields["Try-on"] = request.mode
    if request.mode == "model_shot":
        fields["Pose"] = request.pose
        fields["Scene"] = request.scene or ("custom" if request.scene_text else None)
    return format_infotext(used["prompt"], used["negative_prompt"], fields)
