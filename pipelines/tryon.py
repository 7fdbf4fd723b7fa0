"""The whole try-on: a request in, pictures with their maps, parameters and timings out.

Three modes run the same steps:

- **photo**: a person's photo dressed in one garment, or an outfit of several worn together,
  painted one garment per pass (bottoms, then tops, then outerwear over them), each pass
  keeping the previous result outside its own mask;
- **model_shot**: the garments placed on a pose preset's skeleton over a scene's background;
  the model and the scene are generated around them and the garments' own pixels are kept;
- **inpaint**: no garment; a client's own picture, mask and ControlNet inputs (the WebUI's
  img2img, see ``pipelines.inpaint``).

``run`` reads as numbered steps, as diffusers' pipelines do: 1. check the request; 2. screen its
picture with the content filter; 3. analyse the person (a photo's or a pose preset's) or the
client's picture; 4. mask and warp each pass, with its prompts and maps; 5. diffuse; 6. output:
the results the filter lets through, watermarked, with their timings.

Engines: ``preview`` is step 5's cheap branch, step 4's composite (no diffusion, no weights; a
model shot's garments are worn by a mannequin drawn from the pose, ``pipelines.mannequin``);
``sd`` and ``tiny`` run the diffusion passes (``pipelines.diffuse``) with the installed models or
the tiny kit; ``auto`` is ``sd`` when weights are installed, else ``preview`` (for an inpaint:
OpenCV's classical fill). Importing this module does not import torch: step 5 imports
``pipelines.diffuse`` only when an engine paints.
"""

import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .canny import canny_map
from .content_filter import ContentFilter, ContentFiltered, load_content_filter
from .engines import find_weights, resolve_engine
from .errors import InvalidInputError
from .infotext import format_infotext
from .inpaint import WEBUI_MASK_BLUR, classical_fill, control_map, inpaint_mask
from .mannequin import draw_mannequin
from .masks import covering, tryon_mask
from .params import CONTROL_NAMES, MAX_SEED, GenerationParams
from .person import analyze_person, check_pose_usable, person_from_keypoints, render_openpose
from .plan import PREPARE_SHARE, Pass, Plan, timed
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
from .scenes import Scene, resolve_scene
from .selection import at_native_size
from .text import one_line
from .types import PersonAnalysis
from .warp import composite, warp_garment
from .watermark import apply_watermark, can_watermark

DEFAULT_STRENGTH = {"photo": 0.75, "model_shot": 1.0, "inpaint": 0.75}
# A model shot's garment keeps its pixels except a thin rim, blended into the painted model.
KEEP_RIM = 2
MODEL_SHOT_FEATHER = 0.008  # of the canvas width: the feather's sigma on the garment's edge


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
    ``pipelines.content_filter``), a flagged input picture stops the run before anything is
    painted and a flagged result is withheld. With ``runtime.watermark``, every result of at least
    256 × 256 pixels gets the invisible watermark (``pipelines.watermark``) after paste-back.

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
    # 1. Check: refuse a request no run could paint; its garments in the order they are painted.
    garments = check_request(request)
    # 2. Screen: the content filter refuses a flagged input picture before anything is done.
    screen = _screen(request, runtime, models_dir, timings)
    # 3. Analyse: the person in the photo, the pose preset on its scene, or the client's picture.
    #    The engine is known first: a model shot's preview draws a mannequin.
    engine = resolve_engine(request.engine, find_weights(Path(models_dir)))
    #    An unset size is the checkpoint's native one (SDXL's 1024 class, SD 1.5's 512 class).
    request = replace(request, params=at_native_size(Path(models_dir), engine, request.params))
    request.params.hires_size()  # refuses a hires size too large before any work
    report(Progress(0.0, "analysing"))
    subject = _analyse(request, garments, timings)
    # 4. Mask and warp: each pass's mask, warped garment and init picture, the prompts, the maps.
    plan = _mask_and_warp(request, garments, subject, engine, timings)
    # 5. Diffuse: the engine paints every pass (the preview engine: the composite as it is).
    report(Progress(PREPARE_SHARE, "generating"))
    if engine == "preview":
        images = (_preview(plan, timings),)
    else:
        from . import diffuse  # imports torch and diffusers: only for an engine that paints

        images = diffuse.paint(plan, models_dir, runtime, timings, report, should_cancel)
    # 6. Output: the results the filter lets through, watermarked, with the timings.
    return _output(plan, images, screen, runtime, timings, started, report)


# --- 2. Screen -----------------------------------------------------------------------------------


def _screen(
    request: TryOnRequest,
    runtime: RuntimeConfig | None,
    models_dir: Path,
    timings: dict[str, float],
) -> ContentFilter | None:
    """The content filter for the results (None: off or not installed), once it has let the
    input picture through; a flagged one raises ``ContentFiltered``."""
    screen = _content_filter(runtime, models_dir)
    if screen is not None and request.person_photo is not None:
        timed(timings, "filter_input", lambda: _screen_input(screen, request))
    return screen


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


# --- 3. Analyse ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Subject:
    """What step 3 found: the picture the passes start from and the person on it."""

    picture: Image.Image  # the photo, the scene's empty canvas, or the client's picture
    person: PersonAnalysis | None  # None: an inpaint analyses no person
    scene: Scene | None = None  # a model shot's


def _analyse(
    request: TryOnRequest, garments: list[GarmentInput], timings: dict[str, float]
) -> _Subject:
    """The photo's person, whose pose must suit every garment; a pose preset's skeleton on the
    scene's canvas; or an inpaint's picture, with no person."""
    if request.mode == "photo":
        photo = request.person_photo.convert("RGB")
        person = timed(timings, "person", lambda: analyze_person(photo))
        for garment in garments:
            check_pose_usable(person, garment.category)
        return _Subject(photo, person)
    if request.mode == "model_shot":
        # A model shot's picture is made at the final size: with the hires pass, the first
        # pass paints it at the processing size and the second at this one.
        size = request.params.hires_size()
        person = _preset_person(request.pose, size)
        scene = resolve_scene(request.scene, request.scene_text)
        return _Subject(scene.canvas(size), person, scene)
    return _Subject(request.person_photo.convert("RGB"), None)


def _preset_person(pose: str, size: tuple[int, int]) -> PersonAnalysis:
    """The preset's skeleton scaled uniformly onto a ``size`` canvas and centred."""
    preset = get_preset(pose)
    scale = min(size[0] / CANVAS[0], size[1] / CANVAS[1])
    shift_x, shift_y = (size[0] - CANVAS[0] * scale) / 2, (size[1] - CANVAS[1] * scale) / 2
    body = [(x * scale + shift_x, y * scale + shift_y, score) for x, y, score in preset.body]
    return person_from_keypoints(body, *size)


# --- 4. Mask and warp ----------------------------------------------------------------------------


def _mask_and_warp(
    request: TryOnRequest,
    garments: list[GarmentInput],
    subject: _Subject,
    engine: str,
    timings: dict[str, float],
) -> Plan:
    """The passes with their OpenPose map, the prompts, the maps and the parameters used."""
    params = request.params
    if request.mode == "photo":
        passes, openpose = _photo_passes(garments, subject, params, timings)
    elif request.mode == "model_shot":
        figure = engine == "preview"
        passes, openpose = _model_shot_passes(garments, subject, params, timings, figure=figure)
    else:
        passes, openpose = _inpaint_passes(request, subject.picture, params, timings)
    prompt, negative = _prompts(request, garments, subject.scene)
    maps = _maps(passes, openpose)
    used = _used(request, engine, subject.person, prompt, negative)
    return Plan(request, passes, openpose, maps, used)


def _photo_passes(
    garments: list[GarmentInput],
    subject: _Subject,
    params: GenerationParams,
    timings: dict[str, float],
) -> tuple[list[Pass], Image.Image]:
    """One pass per garment, each over the previous one's composite, and the OpenPose map."""
    photo, person = subject.picture, subject.person
    passes = []
    picture = photo
    for garment in garments:
        prepared = _photo_pass(garment, person, photo, picture, params, timings)
        passes.append(prepared)
        picture = prepared.composite
    openpose = timed(timings, "openpose", lambda: render_openpose(person))
    return passes, openpose


def _photo_pass(
    garment: GarmentInput,
    person: PersonAnalysis,
    photo: Image.Image,
    picture: Image.Image,
    params: GenerationParams,
    timings: dict[str, float],
) -> Pass:
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
    return Pass(
        garment,
        tryon,
        warped,
        tryon.mask,
        preview,
        timed(timings, "canny", lambda: canny_map(warped)),
    )


def _model_shot_passes(
    garments: list[GarmentInput],
    subject: _Subject,
    params: GenerationParams,
    timings: dict[str, float],
    *,
    figure: bool = False,
) -> tuple[list[Pass], Image.Image]:
    """The garments on the pose preset over the scene's background; with ``figure`` (the
    preview engine, which paints no model) worn by a mannequin drawn from the skeleton."""
    size = params.hires_size()
    person, canvas = subject.person, subject.picture
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
    return [Pass(garments[-1], None, None, mask, picture, canny)], openpose


def _inpaint_passes(
    request: TryOnRequest,
    picture: Image.Image,
    params: GenerationParams,
    timings: dict[str, float],
) -> tuple[list[Pass], Image.Image]:
    """The client's picture, mask and maps as one pass; there is no person analysis to share."""
    blur = params.mask_blur if params.mask_blur is not None else WEBUI_MASK_BLUR
    mask = inpaint_mask(request.mask, picture.size, blur)
    controls = (*request.controls, None, None)[: len(CONTROL_NAMES)]
    openpose, canny = (
        timed(timings, slot, lambda s=slot, c=control: control_map(s, c, picture))
        for slot, control in zip(CONTROL_NAMES, controls, strict=True)
    )
    return [Pass(None, None, None, mask, picture, canny)], openpose


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


def _prompts(
    request: TryOnRequest, garments: list[GarmentInput], scene: Scene | None
) -> tuple[str, str]:
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


def _maps(passes: list[Pass], openpose: Image.Image) -> dict[str, Image.Image]:
    mask = np.maximum.reduce([np.asarray(p.mask) for p in passes])
    canny = np.maximum.reduce([np.asarray(p.canny.convert("RGB")) for p in passes])
    return {
        "mask": Image.fromarray(mask, "L"),
        "openpose": openpose,
        "canny": Image.fromarray(canny, "RGB"),
        "composite": passes[-1].composite,
    }


def _used(
    request: TryOnRequest, engine: str, person: PersonAnalysis | None, prompt: str, negative: str
) -> dict[str, Any]:
    """The parameters the run paints with, as its results record them (a random seed drawn)."""
    params = request.params
    return {
        **params.to_dict(),
        "seed": params.seed if params.seed != -1 else secrets.randbelow(MAX_SEED + 1),
        "denoising_strength": params.denoising_strength or DEFAULT_STRENGTH[request.mode],
        "mask_blur": _mask_blur(params, person, request.mode),
        "prompt": prompt,
        "negative_prompt": negative,
        "engine": engine,
        "mode": request.mode,
    }


def _mask_blur(params: GenerationParams, person: PersonAnalysis | None, mode: str) -> float:
    if params.mask_blur is not None:
        return params.mask_blur
    if mode == "inpaint":
        return WEBUI_MASK_BLUR
    if mode == "model_shot":
        return round(MODEL_SHOT_FEATHER * params.hires_size()[0], 1)
    from .geometry import body_frame

    return round(0.025 * body_frame(person).shoulder_width, 1)


# --- 5. Diffuse ----------------------------------------------------------------------------------


def _preview(plan: Plan, timings: dict[str, float]) -> GeneratedImage:
    """The last pass's composite; for an inpaint, its mask filled by OpenCV's classical fill."""
    last, used, mode = plan.passes[-1], plan.used, plan.request.mode
    image = last.composite
    if mode == "inpaint":
        image = timed(timings, "fill", lambda: classical_fill(image, last.mask))
    fields = {"Seed": used["seed"], "Engine": "preview", "Try-on": mode}
    info = format_infotext(used["prompt"], used["negative_prompt"], fields)
    return GeneratedImage(image, used["seed"], info)


# --- 6. Output -----------------------------------------------------------------------------------


def _output(
    plan: Plan,
    images: tuple[GeneratedImage, ...],
    screen: ContentFilter | None,
    runtime: RuntimeConfig | None,
    timings: dict[str, float],
    started: float,
    report: ProgressCallback,
) -> TryOnOutput:
    """The run's output: the results the filter lets through, watermarked, and the total time."""
    count = len(images)
    if screen is not None:
        images = timed(timings, "filter_output", lambda: _withhold_flagged(screen, images))
    if runtime is not None and runtime.watermark:
        images = timed(timings, "watermark", lambda: tuple(map(_watermarked, images)))
    timings["total"] = round((time.perf_counter() - started) * 1000, 1)
    report(Progress(1.0, "done"))
    withheld = count - len(images)
    used = plan.used
    return TryOnOutput(
        used["engine"], plan.request.mode, images, plan.maps, used, timings, withheld
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
