"""How much the upload guard costs: cleaning a 12-megapixel JPEG vs only decoding it.

Run from the repository root: ``python bench/upload_clean.py``. The last line is one JSON object.
"""

import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tryon.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")

import django

django.setup()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from PIL import Image  # noqa: E402

from common.uploads import clean_image_upload  # noqa: E402
from pipelines.samples import draw_product_shot  # noqa: E402

REPEATS = 7


def _median_ms(function) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    shot = draw_product_shot("hoodie", size=(3000, 4000), background="textured").image
    buffer = io.BytesIO()
    shot.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()

    def decode_only():
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    def clean():
        clean_image_upload(SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg"))

    decode_ms = _median_ms(decode_only)
    clean_ms = _median_ms(clean)
    print(
        json.dumps(
            {
                "picture": "3000x4000 JPEG",
                "bytes": len(data),
                "decode_ms": decode_ms,
                "clean_ms": clean_ms,
                "clean_vs_decode": round(clean_ms / decode_ms, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
