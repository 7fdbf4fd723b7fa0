"""Stages 1–4 on CPU: per-try-on milliseconds on a 1024-px photo, and the garment analysis.

Run from the repository root: ``python bench/preprocess.py``. Models and graphs are loaded once
(reported as ``load_ms``), then each figure is the median of several warm runs. The last stdout
line is one JSON object. ``person_share`` puts the per-try-on total against its unavoidable
part, the pose network, measured in the same run.
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image
from skimage import data

from pipelines.garment import analyze_garment
from pipelines.samples import draw_product_shot
from pipelines.tryon import GarmentInput, TryOnRequest, run

RUNS = 7
# The preview engine needs no weights; an empty models folder also keeps the content filter off.
NO_MODELS = Path("/nonexistent")


def _median(values) -> float:
    return round(statistics.median(values), 1)


def main() -> None:
    photo = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.LANCZOS)
    shot = draw_product_shot("tshirt", size=(768, 1024), background="gradient", label="TRY").image

    start = time.perf_counter()
    garment = analyze_garment(shot, "upper")
    tryon_request = TryOnRequest(
        "photo", (GarmentInput(garment),), person_photo=photo, engine="preview"
    )
    run(tryon_request, models_dir=NO_MODELS)
    load_ms = (time.perf_counter() - start) * 1000

    garment_ms = []
    for _ in range(RUNS):
        start = time.perf_counter()
        garment = analyze_garment(shot, "upper")
        garment_ms.append((time.perf_counter() - start) * 1000)

    stages: dict[str, list[float]] = {}
    for _ in range(RUNS):
        for stage, ms in run(tryon_request, models_dir=NO_MODELS).timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    medians = {stage: _median(values) for stage, values in stages.items()}

    # A merchant's preview model shot: the garment on a pose preset's figure, no photo.
    shot_request = TryOnRequest("model_shot", (GarmentInput(garment),), engine="preview")
    run(shot_request, models_dir=NO_MODELS)
    model_shot: dict[str, list[float]] = {}
    for _ in range(RUNS):
        for stage, ms in run(shot_request, models_dir=NO_MODELS).timings_ms.items():
            model_shot.setdefault(stage, []).append(ms)
    model_shot_ms = {stage: _median(values) for stage, values in model_shot.items()}
    print(
        json.dumps(
            {
                "photo": "1024x1024",
                "garment_shot": "768x1024",
                "runs": RUNS,
                "stages_ms": medians,
                "total_ms": medians["total"],
                "person_share": round(medians["person"] / medians["total"], 2),
                "garment_analysis_ms": _median(garment_ms),
                "model_shot_ms": model_shot_ms,
                "first_run_ms": round(load_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
