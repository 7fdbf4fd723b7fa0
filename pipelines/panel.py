"""The contact sheet to look at after any change to pixels: ``python -m pipelines panel --out DIR``.

One row per packaged real photo (scikit-image's astronaut, matplotlib's Grace Hopper) with the
preview of every demo catalog garment on it, then a row with a preview model shot per pose
preset. Every picture comes from ``pipelines.tryon.run``, the path the site's workers take; the
garments are the demo catalog's drawn product shots (``samples.DEMO_LOOKS``), analysed as an
upload would be. A request the site refuses shows as a tile with the refusal a shopper reads.
"""

import time
from pathlib import Path

from PIL import Image, ImageDraw

from .errors import InvalidInputError
from .garment import analyze_garment
from .params import GenerationParams
from .poses import PRESETS
from .samples import DEMO_LOOKS
from .tryon import GarmentInput, TryOnRequest, run

TILE = (256, 384)
LABEL_HEIGHT = 18
SHOT_SIZE = (384, 512)


def photos() -> dict[str, Image.Image]:
    """The real photos that ship inside installed packages."""
    import matplotlib
    from skimage import data

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as picture:
        grace = picture.convert("RGB")
    return {"astronaut": Image.fromarray(data.astronaut()), "grace hopper": grace}


def demo_garments() -> dict[str, GarmentInput]:
    """Every demo garment, drawn and analysed, by SKU."""
    garments = {}
    for sku, look in DEMO_LOOKS.items():
        shot = look.draw(SHOT_SIZE)
        garments[sku] = GarmentInput(analyze_garment(shot.image, shot.category), look.colour)
    return garments


def tile(picture: Image.Image, label: str) -> Image.Image:
    """``picture`` fitted into a tile with ``label`` under it."""
    canvas = Image.new("RGB", (TILE[0], TILE[1] + LABEL_HEIGHT), "white")
    fitted = picture.copy()
    fitted.thumbnail(TILE)
    canvas.paste(fitted, ((TILE[0] - fitted.width) // 2, (TILE[1] - fitted.height) // 2))
    ImageDraw.Draw(canvas).text((4, TILE[1] + 3), label, fill="black")
    return canvas


def _tried(request: TryOnRequest, models_dir: Path, label: str) -> Image.Image:
    """The result's tile, or a tile saying why the site refuses the request."""
    try:
        return tile(run(request, models_dir=models_dir).images[0].image, label)
    except InvalidInputError as refused:
        note = Image.new("RGB", TILE, (235, 235, 235))
        words, lines = refused.message.split(), [""]
        for word in words:
            lines[-1:] = [lines[-1] + " " + word] if len(lines[-1]) < 34 else [lines[-1], word]
        ImageDraw.Draw(note).multiline_text((8, 8), "refused:\n" + "\n".join(lines), fill="black")
        return tile(note, label)


def render(engine: str, models_dir: Path) -> tuple[list[list[Image.Image]], dict[str, float]]:
    """Rows of tiles (each photo, then the model shots) and the seconds each row took."""
    garments = demo_garments()
    params = GenerationParams(seed=7, steps=2)
    rows, seconds = [], {}
    for name, photo in photos().items():
        started = time.perf_counter()
        row = [tile(photo, name)]
        for sku, worn in garments.items():
            request = TryOnRequest(
                "photo", (worn,), person_photo=photo, params=params, engine=engine
            )
            row.append(_tried(request, models_dir, sku.removeprefix("DEMO-").lower()))
        rows.append(row)
        seconds[name] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    skus = list(garments)
    shots = []
    for index, pose in enumerate(PRESETS):
        sku = skus[index % len(skus)]
        request = TryOnRequest(
            "model_shot", (garments[sku],), pose=pose, scene="studio_white", params=params,
            engine=engine,
        )  # fmt: skip
        shots.append(_tried(request, models_dir, f"{pose}: {sku.removeprefix('DEMO-').lower()}"))
    rows.append(shots)
    seconds["model shots"] = round(time.perf_counter() - started, 2)
    return rows, seconds


def sheet(rows: list[list[Image.Image]]) -> Image.Image:
    """The tiles laid out row by row on white."""
    width = max(len(row) for row in rows) * TILE[0]
    height = len(rows) * (TILE[1] + LABEL_HEIGHT)
    canvas = Image.new("RGB", (width, height), "white")
    for y, row in enumerate(rows):
        for x, picture in enumerate(row):
            canvas.paste(picture, (x * TILE[0], y * (TILE[1] + LABEL_HEIGHT)))
    return canvas


def write_panel(out_dir: Path, *, engine: str = "preview", models_dir: Path = Path("models")):
    """Render the sheet into ``out_dir/panel.png``; returns its path and the seconds per row."""
    rows, seconds = render(engine, Path(models_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "panel.png"
    sheet(rows).save(path)
    return {"panel": str(path), "row_seconds": seconds}
