"""The instant try-on preview: stages 1, 3 and 4 for one photo and one analysed garment.

This is the ``preview`` engine's whole result, and the init image of the diffusion pass.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from .masks import TryOnMask, covering, tryon_mask
from .person import analyze_person, check_pose_usable
from .types import GarmentAnalysis, PersonAnalysis
from .warp import composite, warp_garment

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class PreviewOutput:
    person: PersonAnalysis
    tryon: TryOnMask
    warped: Image.Image  # RGBA, the photo's size
    composite: Image.Image  # RGB, the photo's size: the preview itself
    timings_ms: dict[str, float]


def timed(timings: dict[str, float], stage: str, work: Callable[[], T]) -> T:
    """Run ``work`` and record its wall time in milliseconds under ``stage``."""
    start = time.perf_counter()
    result = work()
    timings[stage] = round((time.perf_counter() - start) * 1000, 1)
    return result


def preview_tryon(
    photo: Image.Image, garment: GarmentAnalysis, *, mask_blur: float | None = None
) -> PreviewOutput:
    """Dress the person in ``photo`` in ``garment``; ``timings_ms`` has each stage and ``total``.

    Raises ``InvalidInputError`` when the photo shows no person or no pose usable for the
    garment's category.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    photo = photo.convert("RGB")
    person = timed(timings, "person", lambda: analyze_person(photo))
    check_pose_usable(person, garment.category)
    tryon = timed(
        timings,
        "mask",
        lambda: tryon_mask(person, photo, garment.category, garment, mask_blur=mask_blur),
    )
    warped = timed(timings, "warp", lambda: warp_garment(garment, person, tryon))
    tryon = covering(tryon, warped)
    preview = timed(timings, "composite", lambda: composite(photo, warped, tryon))
    timings["total"] = round((time.perf_counter() - start) * 1000, 1)
    return PreviewOutput(person, tryon, warped, preview, timings)
