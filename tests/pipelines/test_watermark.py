"""The optional invisible watermark: it reads back from the saved PNG, and a run marks its
results only when asked (a marked try-on is no longer pixel-exact outside its mask)."""

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import InvalidInputError
from pipelines.generate import RuntimeConfig
from pipelines.params import GenerationParams
from pipelines.tryon import TryOnRequest, run
from pipelines.watermark import (
    WATERMARK_PAYLOAD,
    apply_watermark,
    can_watermark,
    read_watermark,
)

FAST = {"steps": 2, "width": 128, "height": 192, "seed": 11}


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_the_watermark_reads_back_from_a_saved_png(photo):
    picture = photo.resize((512, 768))
    marked = apply_watermark(picture)
    buffer = io.BytesIO()
    marked.save(buffer, format="PNG")

    assert read_watermark(Image.open(buffer)) == WATERMARK_PAYLOAD
    assert read_watermark(picture) != WATERMARK_PAYLOAD
    assert read_watermark(apply_watermark(picture, b"other")) == b"other"
    # Invisible: about one level per channel on average, but nearly every pixel moves.
    change = np.abs(_pixels(marked) - _pixels(picture))
    assert change.mean() < 3 and (change.max(axis=2) > 0).mean() > 0.5


def test_pictures_under_256_by_256_cannot_carry_it():
    small = Image.new("RGB", (128, 192), "teal")
    assert not can_watermark(small) and can_watermark(Image.new("RGB", (256, 256)))
    with pytest.raises(InvalidInputError, match="too small for the watermark"):
        apply_watermark(small)


def _photo_request(photo, tee) -> TryOnRequest:
    return TryOnRequest(
        "photo", (tee,), person_photo=photo, params=GenerationParams(**FAST), engine="sd"
    )


def test_a_run_marks_its_results_only_when_asked(photo, tee, tiny_kit, no_network):
    plain = run(_photo_request(photo, tee), models_dir=tiny_kit)
    marked = run(
        _photo_request(photo, tee), models_dir=tiny_kit, runtime=RuntimeConfig(watermark=True)
    )

    stored = Image.open(io.BytesIO(marked.images[0].png_bytes()))
    assert read_watermark(stored) == WATERMARK_PAYLOAD
    assert stored.text["parameters"] == marked.images[0].infotext
    assert read_watermark(plain.images[0].image) != WATERMARK_PAYLOAD
    assert "watermark" in marked.timings_ms and "watermark" not in plain.timings_ms
    outside = np.asarray(plain.maps["mask"]) == 0
    assert np.array_equal(_pixels(plain.images[0].image)[outside], _pixels(photo)[outside])
    assert not np.array_equal(_pixels(marked.images[0].image)[outside], _pixels(photo)[outside])


def test_a_result_too_small_for_the_watermark_is_kept_unmarked(tee, tmp_path):
    request = TryOnRequest(
        "model_shot", (tee,), scene="beach", params=GenerationParams(**FAST), engine="preview"
    )
    plain = run(request, models_dir=tmp_path)
    marked = run(request, models_dir=tmp_path, runtime=RuntimeConfig(watermark=True))

    assert marked.images[0].image.size == (128, 192)
    assert np.array_equal(_pixels(marked.images[0].image), _pixels(plain.images[0].image))
