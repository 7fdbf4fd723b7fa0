"""A contact sheet of what the site shows without weights: preview try-ons on the packaged real
photos and preview model shots on the pose presets, to look at after any change to pixels.

    .venv/bin/python scripts/contact_sheet.py --out var/contact-sheet.png [--engine preview]

Every picture comes from ``pipelines.tryon.run``, the path the site's workers take. The garments
are drawn product shots (``pipelines.samples``) analysed as an upload would be; the photos are
scikit-image's astronaut and matplotlib's Grace Hopper. Prints one JSON line of timings.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.errors import InvalidInputError  # noqa: E402
from pipelines.garment import analyze_garment  # noqa: E402
from pipelines.params import GenerationParams  # noqa: E402
from pipelines.samples import draw_product_shot  # noqa: E402
from pipelines.tryon import GarmentInput, TryOnRequest, run  # noqa: E402

GARMENTS = {
    "red tee": ("tshirt", (190, 30, 40)),
    "striped hoodie": ("hoodie", (40, 90, 170)),
    "olive jacket": ("jacket", (80, 90, 50)),
    "black dress": ("dress", (30, 30, 35)),
}
POSES = ("front_standing", "three_quarter", "hands_on_hips", "arms_crossed")
TILE = (256, 384)
LABEL_HEIGHT = 18


def photos() -> dict[str, Image.Image]:
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {
        "astronaut": Image.fromarray(data.astronaut()),
        "grace hopper": Image.open(hopper).convert("RGB"),
    }


def garment(name: str) -> GarmentInput:
    shape, colour = GARMENTS[name]
    shot = draw_product_shot(shape, colour=colour, stripes="striped" in name, size=(384, 512))
    return GarmentInput(analyze_garment(shot.image, shot.category), colour=name.split()[0])


def tile(picture: Image.Image, label: str) -> Image.Image:
    """``picture`` fitted into a tile with ``label`` under it."""
    canvas = Image.new("RGB", (TILE[0], TILE[1] + LABEL_HEIGHT), "white")
    fitted = picture.copy()
    fitted.thumbnail(TILE)
    canvas.paste(fitted, ((TILE[0] - fitted.width) // 2, (TILE[1] - fitted.height) // 2))
    ImageDraw.Draw(canvas).text((4, TILE[1] + 3), label, fill="black")
    return canvas


def render(engine: str, models_dir: Path) -> tuple[list[list[Image.Image]], dict]:
    """Rows of tiles (each photo, then the model shots) and the seconds each row took."""
    garments = {name: garment(name) for name in GARMENTS}
    params = GenerationParams(seed=7, steps=2)
    rows, seconds = [], {}
    for name, photo in photos().items():
        started = time.perf_counter()
        row = [tile(photo, name)]
        for garment_name, worn in garments.items():
            request = TryOnRequest(
                "photo", (worn,), person_photo=photo, params=params, engine=engine
            )
            row.append(_tried(request, models_dir, garment_name))
        rows.append(row)
        seconds[name] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    shots = []
    for pose, garment_name in zip(POSES, garments, strict=False):
        request = TryOnRequest(
            "model_shot", (garments[garment_name],), pose=pose, params=params, engine=engine
        )
        shots.append(tile(run(request, models_dir=models_dir).images[0].image, pose))
    rows.append(shots)
    seconds["model shots"] = round(time.perf_counter() - started, 2)
    return rows, seconds


def _tried(request: TryOnRequest, models_dir: Path, label: str) -> Image.Image:
    """The result's tile, or a tile saying why the site refuses the request (as a shopper
    would read it)."""
    try:
        return tile(run(request, models_dir=models_dir).images[0].image, label)
    except InvalidInputError as refused:
        note = Image.new("RGB", TILE, (235, 235, 235))
        words, lines = refused.message.split(), [""]
        for word in words:
            lines[-1:] = [lines[-1] + " " + word] if len(lines[-1]) < 34 else [lines[-1], word]
        ImageDraw.Draw(note).multiline_text((8, 8), "refused:\n" + "\n".join(lines), fill="black")
        return tile(note, label)


def sheet(rows: list[list[Image.Image]]) -> Image.Image:
    width = max(len(row) for row in rows) * TILE[0]
    height = len(rows) * (TILE[1] + LABEL_HEIGHT)
    canvas = Image.new("RGB", (width, height), "white")
    for y, row in enumerate(rows):
        for x, picture in enumerate(row):
            canvas.paste(picture, (x * TILE[0], y * (TILE[1] + LABEL_HEIGHT)))
    return canvas


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "contact-sheet.png")
    parser.add_argument("--engine", default="preview")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    rows, seconds = render(args.engine, args.models)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet(rows).save(args.out)
    print(json.dumps({"sheet": str(args.out), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
