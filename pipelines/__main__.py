"""``python -m pipelines``: the generation core from the command line.

Commands (each writes into ``--out DIR``; bad input exits 2 with a one-line message):

  analyze PHOTO                        keypoints.json, openpose.png, person_mask.png, canny.png
  garment IMAGE --category C           cutout.png, mask.png, canny.png, landmarks.json
  preview --person P --garment G -c C  mask.png, composite.png, openpose.png, canny.png, run.json
  tryon --person P --garment G -c C    result.png (result-N.png for a batch), mask.png,
                                       openpose.png, canny.png, composite.png, run.json
  modelshot --garment G -c C --pose N  the same, a generated model wearing the garment
  panel --out DIR                      panel.png: every demo garment's preview on the packaged
                                       real photos and a preview model shot per pose (look at it
                                       after any change to pixels)
  poses [--out DIR]                    the pose presets as JSON (and their OpenPose maps)
  weights [--models-dir DIR]           the model files installed in MODELS_DIR
  prompt TEXT                          how the WebUI reads a prompt: weighted chunks and LoRA tags
  samplers                             the WebUI sampler names this engine understands
  infotext FILE                        the generation parameters in a PNG (or a text file)
  models [--models DIR]                every model with its kind, name, path and WebUI hash
         [--write-manifest FILE]       ... and write their sha256 allow-list (MODELS_MANIFEST)
  make-tiny DIR                        write the tiny random-weight model kit (tests, smoke runs)

With ``--manifest FILE`` (default: $MODELS_MANIFEST), tryon and modelshot load only the model
files listed in FILE with their sha256. Nothing runs while TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .engines import find_weights
from .errors import InvalidInputError, PipelineError
from .loading import check_safe_loading_environment
from .types import CATEGORIES


def _load_image(path: str, argument: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise InvalidInputError(argument, f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError):
        raise InvalidInputError(argument, f"{path} is not a picture Pillow can read") from None


def _out_dir(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _points(points) -> list[list[float]]:
    return [[round(x, 1), round(y, 1), round(score, 3)] for x, y, score in points]


def _cmd_analyze(args) -> dict:
    from .canny import canny_map
    from .person import analyze_person, render_openpose

    photo = _load_image(args.photo, "photo").convert("RGB")
    person = analyze_person(photo)
    out = _out_dir(args)
    keypoints = {
        "width": person.width,
        "height": person.height,
        "body": _points(person.body),
        "hands": {"right": _points(person.right_hand), "left": _points(person.left_hand)},
        "face": _points(person.face),
    }
    _write_json(out / "keypoints.json", keypoints)
    render_openpose(person).save(out / "openpose.png")
    Image.fromarray(person.silhouette).save(out / "person_mask.png")
    canny_map(photo).save(out / "canny.png")
    return {"out": str(out), "body_points_found": sum(1 for p in person.body if p[2] > 0)}


def _landmarks_json(landmarks) -> dict:
    return {name: [round(x, 1), round(y, 1)] for name, (x, y) in landmarks.items()}


def _cmd_garment(args) -> dict:
    from .garment import analyze_garment

    image = _load_image(args.image, "image")
    analysis = analyze_garment(image, args.category)
    out = _out_dir(args)
    analysis.cutout.save(out / "cutout.png")
    analysis.mask.save(out / "mask.png")
    analysis.canny.save(out / "canny.png")
    _write_json(out / "landmarks.json", _landmarks_json(analysis.landmarks))
    return {"out": str(out), "method": analysis.method, "landmarks": sorted(analysis.landmarks)}


def _warm_up() -> None:
    """Build the pose graphs and import the map-drawing libraries (one-time costs)."""
    from .canny import canny_map
    from .person import analyze_person

    tiny = Image.new("RGB", (256, 256), (128, 128, 128))
    with contextlib.suppress(InvalidInputError):  # nobody in a grey square; graphs are built
        analyze_person(tiny)
    canny_map(tiny)


def _cmd_preview(args) -> dict:
    """The instant preview through ``tryon.run``, the path the site's workers take."""
    from .garment import analyze_garment
    from .plan import timed
    from .tryon import GarmentInput, TryOnRequest, run

    photo = _load_image(args.person, "person").convert("RGB")
    product = _load_image(args.garment, "garment")
    one_time: dict[str, float] = {}
    timed(one_time, "load", _warm_up)
    garment = timed(one_time, "garment", lambda: analyze_garment(product, args.category))
    request = TryOnRequest("photo", (GarmentInput(garment),), person_photo=photo, engine="preview")
    result = run(request, models_dir=Path(args.models))
    out = _out_dir(args)
    for name in ("mask", "composite", "openpose", "canny"):
        result.maps[name].save(out / f"{name}.png")
    timings = {**result.timings_ms, **one_time}
    _write_json(out / "run.json", {"timings_ms": timings, "category": args.category})
    return {"out": str(out), "timings_ms": timings}


def _generation_params(args):
    from .params import GenerationParams, IPAdapterUnit, ReferenceUnit

    options = {
        "prompt": args.prompt,
        "negative_prompt": args.negative,
        "sampler_name": args.sampler,
        "steps": args.steps,
        "cfg_scale": args.cfg,
        "seed": args.seed,
        "denoising_strength": args.strength,
        "batch_size": args.batch,
        "width": args.width,
        "height": args.height,
        "checkpoint": args.checkpoint,
        "vae": args.vae,
    }
    if args.hires_scale is not None:
        options["enable_hr"] = args.hires_scale > 1
        options["hr_scale"] = max(1.0, args.hires_scale)
    elif args.command == "modelshot":
        options["enable_hr"] = True  # model shots default to the hires pass, as on the site
    options["hr_second_pass_steps"] = args.hires_steps
    options["hr_denoising_strength"] = args.hires_strength
    options["hr_upscaler"] = args.hires_upscaler
    reference = {
        "weight": args.reference_weight,
        "module": args.reference_module,
        "style_fidelity": args.style_fidelity,
    }
    reference = {k: v for k, v in reference.items() if v is not None}
    if reference:
        options["reference"] = ReferenceUnit(**reference)
    ip_adapter = {"weight": args.ip_adapter_weight, "model": args.ip_adapter}
    ip_adapter = {k: v for k, v in ip_adapter.items() if v is not None}
    if ip_adapter:
        options["ip_adapter"] = IPAdapterUnit(**ip_adapter)
    params = GenerationParams(**{k: v for k, v in options.items() if v is not None})
    named = (args.controlnet_openpose or "", args.controlnet_canny or "")
    if any(named):
        units = tuple(
            replace(unit, model=name) if name else unit
            for unit, name in zip(params.controlnets, named, strict=True)
        )
        params = replace(params, controlnets=units)
    return params


def _garments(args) -> tuple:
    from .garment import analyze_garment
    from .tryon import GarmentInput

    if len(args.garment) != len(args.category):
        raise InvalidInputError("category", "give one --category for each --garment")
    return tuple(
        GarmentInput(analyze_garment(_load_image(path, "garment"), category))
        for path, category in zip(args.garment, args.category, strict=True)
    )


def _model_attributes(text: str) -> dict[str, str]:
    attributes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError("model-attrs", f"{item!r} is not key=value")
        attributes[key.strip()] = value.strip()
    return attributes


def _run_tryon(args, request) -> dict:
    from .request import RuntimeConfig
    from .tryon import run

    manifest = Path(args.manifest).resolve() if args.manifest else None
    runtime = RuntimeConfig(dtype=args.dtype, manifest=manifest)
    output = run(request, models_dir=Path(args.models), runtime=runtime)
    out = _out_dir(args)
    single = len(output.images) == 1
    files = []
    for index, generated in enumerate(output.images):
        name = "result.png" if single else f"result-{index}.png"
        (out / name).write_bytes(generated.png_bytes())
        files.append(name)
    for name, picture in output.maps.items():
        picture.save(out / f"{name}.png")
    run_info = {
        "engine": output.engine,
        "mode": output.mode,
        "images": [{"file": f, "seed": g.seed} for f, g in zip(files, output.images, strict=True)],
        "params": output.params,
        "timings_ms": output.timings_ms,
    }
    _write_json(out / "run.json", run_info)
    return {
        "out": str(out),
        "engine": output.engine,
        "images": files,
        "timings_ms": output.timings_ms,
    }


def _cmd_tryon(args) -> dict:
    from .tryon import TryOnRequest

    photo = _load_image(args.person, "person").convert("RGB")
    request = TryOnRequest(
        "photo",
        _garments(args),
        person_photo=photo,
        params=_generation_params(args),
        engine=args.engine,
        allow_loras=True,
    )
    return _run_tryon(args, request)


def _cmd_modelshot(args) -> dict:
    from .scenes import SCENES
    from .tryon import TryOnRequest

    preset = args.scene if args.scene in SCENES else ""
    request = TryOnRequest(
        "model_shot",
        _garments(args),
        pose=args.pose,
        scene=preset,
        scene_text="" if preset else args.scene,
        model_attributes=_model_attributes(args.model_attrs),
        params=_generation_params(args),
        engine=args.engine,
        allow_loras=True,
    )
    return _run_tryon(args, request)


def _cmd_panel(args) -> dict:
    from .panel import write_panel

    return write_panel(Path(args.out), engine=args.engine, models_dir=Path(args.models))


def _cmd_poses(args) -> list:
    from .poses import PRESETS

    listing = [
        {"name": p.name, "title": p.title, "description": p.description, "body": _points(p.body)}
        for p in PRESETS.values()
    ]
    if args.out:
        from .person import render_openpose

        out = _out_dir(args)
        for preset in PRESETS.values():
            render_openpose(preset.person()).save(out / f"{preset.name}.png")
    return listing


def _cmd_weights(args) -> dict:
    weights = find_weights(Path(args.models_dir))
    return {
        "models_dir": str(weights.models_dir),
        "weights": weights.by_folder,
        "can_run_sd": weights.can_run_sd,
    }


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other bad input: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see python -m pipelines --help)\n")


def _cmd_prompt(args) -> dict:
    from .prompts import parse_prompt

    parsed = parse_prompt(args.text)
    result = {
        "chunks": [[text, weight] for text, weight in parsed.chunks],
        "loras": [[name, weight] for name, weight in parsed.loras],
    }
    if parsed.problems:
        result["problems"] = list(parsed.problems)
    return result


def _cmd_samplers(args) -> list:
    from .samplers import SAMPLER_NAMES

    return list(SAMPLER_NAMES)


def _cmd_infotext(args) -> dict:
    from .infotext import parse_infotext, read_png_infotext

    path = Path(args.file)
    if not path.is_file():
        raise InvalidInputError("file", f"no such file: {path}")
    try:
        text = read_png_infotext(path)
    except (UnidentifiedImageError, OSError):
        text = None  # not a picture: a text file holding infotext
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("file", f"{path} holds no generation parameters") from None
    return parse_infotext(text)


def _cmd_models(args) -> list:
    from .architectures import architecture_of
    from .registry import manifest_lines, model_hash, scan_models

    models_dir = Path(args.models)
    entries = scan_models(models_dir)
    if args.write_manifest:
        lines = manifest_lines(entries, models_dir)
        Path(args.write_manifest).write_text("".join(f"{line}\n" for line in lines))
    return [
        {
            "kind": e.kind,
            "name": e.name,
            "path": str(e.path),
            "hash": model_hash(e),
            "architecture": architecture_of(e),
        }
        for e in entries
    ]


def _cmd_fetch(args) -> dict:
    from .fetch import fetch_recommended

    placed = fetch_recommended(
        Path(args.models), set_name=args.set, log=lambda line: print(line, file=sys.stderr)
    )
    return {"verified": [str(path) for path in placed]}


def _cmd_make_tiny(args) -> dict:
    from .tiny import make_tiny

    return {"models_dir": str(make_tiny(Path(args.directory)))}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pipelines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="pose, silhouette and maps of a person photo")
    analyze.add_argument("photo")
    analyze.add_argument("--out", required=True)
    analyze.set_defaults(handler=_cmd_analyze)

    garment = commands.add_parser("garment", help="cut-out, mask, Canny map of a product shot")
    garment.add_argument("image")
    garment.add_argument("--category", "-c", required=True, choices=CATEGORIES)
    garment.add_argument("--out", required=True)
    garment.set_defaults(handler=_cmd_garment)

    preview = commands.add_parser("preview", help="the instant try-on preview")
    preview.add_argument("--person", required=True)
    preview.add_argument("--garment", required=True)
    preview.add_argument("--category", "-c", required=True, choices=CATEGORIES)
    preview.add_argument("--out", required=True)
    preview.add_argument("--models", default="models", help="the models folder (MODELS_DIR)")
    preview.set_defaults(handler=_cmd_preview)

    tryon = commands.add_parser("tryon", help="dress a person's photo in a garment")
    tryon.add_argument("--person", required=True)
    _add_generation_arguments(tryon)
    tryon.set_defaults(handler=_cmd_tryon)

    modelshot = commands.add_parser("modelshot", help="a generated model wearing a garment")
    modelshot.add_argument("--pose", default="front_standing", help="a pose preset's name")
    modelshot.add_argument("--scene", default="", help="a scene preset's name, or free words")
    modelshot.add_argument("--model-attrs", default="", help="e.g. gender_presentation=feminine")
    _add_generation_arguments(modelshot)
    modelshot.set_defaults(handler=_cmd_modelshot)

    panel = commands.add_parser(
        "panel", help="a contact sheet: every demo garment on the real photos, a shot per pose"
    )
    panel.add_argument("--out", required=True, help="the folder to write panel.png into")
    panel.add_argument("--engine", default="preview", help="preview (default), tiny or sd")
    panel.add_argument("--models", default="models", help="the models folder (MODELS_DIR)")
    panel.set_defaults(handler=_cmd_panel)

    poses = commands.add_parser("poses", help="list the pose presets (and render them)")
    poses.add_argument("--out")
    poses.set_defaults(handler=_cmd_poses)

    weights = commands.add_parser("weights", help="list the model files installed in MODELS_DIR")
    weights.add_argument("--models-dir", default="models")
    weights.set_defaults(handler=_cmd_weights)
    prompt = commands.add_parser("prompt", help="parse a WebUI prompt into weighted chunks")
    prompt.add_argument("text")
    prompt.set_defaults(handler=_cmd_prompt)

    samplers = commands.add_parser("samplers", help="list the WebUI sampler names")
    samplers.set_defaults(handler=_cmd_samplers)

    infotext = commands.add_parser("infotext", help="parse a PNG's or a text file's parameters")
    infotext.add_argument("file")
    infotext.set_defaults(handler=_cmd_infotext)

    models = commands.add_parser("models", help="list installed models with their WebUI hashes")
    models.add_argument("--models", default="models", help="the models folder (MODELS_DIR)")
    models.add_argument(
        "--write-manifest",
        metavar="FILE",
        help="write FILE: a sha256sum line for every model file (review it, then MODELS_MANIFEST)",
    )
    models.set_defaults(handler=_cmd_models)

    fetch = commands.add_parser("fetch", help="download a starter set of weights (internet)")
    fetch.add_argument("--models", default="models", help="the models folder (MODELS_DIR)")
    fetch.add_argument(
        "--set", default="sd15", help="sd15 (the default) or sdxl; run twice for both"
    )
    fetch.set_defaults(handler=_cmd_fetch)

    make_tiny = commands.add_parser("make-tiny", help="write the tiny random-weight model kit")
    make_tiny.add_argument("directory")
    make_tiny.set_defaults(handler=_cmd_make_tiny)
    return parser


def _add_generation_arguments(command) -> None:
    command.add_argument("--garment", required=True, action="append", help="a product shot")
    command.add_argument(
        "--category",
        "-c",
        required=True,
        action="append",
        choices=CATEGORIES,
        help="the garment's category (repeat --garment/--category for an outfit)",
    )
    command.add_argument("--out", required=True)
    command.add_argument("--engine", default="auto", help="auto, sd, preview or tiny")
    command.add_argument("--models", default="models", help="the models folder (MODELS_DIR)")
    command.add_argument(
        "--manifest",
        default=os.environ.get("MODELS_MANIFEST") or None,
        help="load only model files listed in this sha256sum file (default: $MODELS_MANIFEST)",
    )
    command.add_argument(
        "--dtype",
        default="auto",
        help="auto (fp16 on a GPU, fp32 on the CPU), fp16, bf16 or fp32",
    )
    command.add_argument("--checkpoint", help="an installed checkpoint's name")
    command.add_argument("--vae", help="an installed VAE's name (default: the checkpoint's own)")
    command.add_argument("--controlnet-openpose", help="the OpenPose ControlNet's name")
    command.add_argument("--controlnet-canny", help="the Canny ControlNet's name")
    command.add_argument("--prompt", help="words added to the built prompt; <lora:name:w> tags")
    command.add_argument("--negative", help="words added to the negative prompt")
    command.add_argument("--sampler", help="a WebUI sampler name, e.g. 'DPM++ 2M Karras'")
    command.add_argument("--steps", type=int)
    command.add_argument("--cfg", type=float)
    command.add_argument("--seed", type=int, help="-1 for a random seed")
    command.add_argument("--strength", type=float, help="denoising strength, 0 to 1")
    command.add_argument("--batch", type=int, help="how many images (seeds seed, seed+1, ...)")
    command.add_argument(
        "--reference-weight",
        type=float,
        help="the garment's reference unit: 0 turns it off, 1 uses every layer (default 0.8)",
    )
    command.add_argument(
        "--reference-module",
        help="reference_only (default), reference_adain or reference_adain+attn",
    )
    command.add_argument(
        "--style-fidelity", type=float, help="the reference unit's style fidelity, 0 to 1"
    )
    command.add_argument(
        "--ip-adapter",
        help="an installed IP-Adapter's name (default: the first that fits, if any is installed)",
    )
    command.add_argument(
        "--ip-adapter-weight",
        type=float,
        help="the IP-Adapter's scale: 0 turns it off (default 0.6; off when none is installed)",
    )
    command.add_argument(
        "--hires-scale",
        type=float,
        help="the hires pass's upscale (1: off; modelshot's default 2, tryon's 1)",
    )
    command.add_argument("--hires-steps", type=int, help="the hires pass's steps (0: --steps)")
    command.add_argument(
        "--hires-strength", type=float, help="the hires pass's denoising strength (0.5)"
    )
    command.add_argument(
        "--hires-upscaler", help="Lanczos (default), Nearest, or a latent mode such as 'Latent'"
    )
    command.add_argument("--width", type=int, help="the processing width (multiple of 8)")
    command.add_argument("--height", type=int, help="the processing height (multiple of 8)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        check_safe_loading_environment()
        result = args.handler(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable --out, a full disk
        print(
            f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
    if isinstance(result, dict):
        result["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
