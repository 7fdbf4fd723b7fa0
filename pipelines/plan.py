"""What the steps of ``pipelines.tryon.run`` hand on: the plan that steps 3–4 make and step 5
paints (``Pass``, ``Plan``), and ``timed``, the wall-time bookkeeping every step shares.

Its own module so that ``pipelines.diffuse`` (step 5, torch) and ``pipelines.tryon`` (which
imports ``diffuse`` only inside step 5) both import it without importing each other.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from PIL import Image

from .masks import TryOnMask
from .request import GarmentInput, TryOnRequest
from .warp import composite

# Share of the progress bar for the analysis before the first sampling step.
PREPARE_SHARE = 0.05

T = TypeVar("T")


def timed(timings: dict[str, float], stage: str, work: "Callable[[], T]") -> T:
    """Run ``work`` and add its wall time in milliseconds to ``stage`` in ``timings``."""
    start = time.perf_counter()
    result = work()
    spent = (time.perf_counter() - start) * 1000
    timings[stage] = round(timings.get(stage, 0.0) + spent, 1)
    return result


@dataclass(frozen=True, eq=False)
class Pass:
    """One garment's pass prepared on a picture: what to paint, where, and its guides."""

    garment: GarmentInput | None  # None: an inpaint of the client's picture
    tryon: TryOnMask | None
    warped: Image.Image | None
    mask: Image.Image
    composite: Image.Image
    canny: Image.Image

    def over(self, picture: Image.Image) -> "Pass":
        """This pass with its init picture composited over an earlier pass's result."""
        return replace(self, composite=composite(picture, self.warped, self.tryon))


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything steps 1–4 produced: the passes to paint, their maps, the parameters used."""

    request: TryOnRequest
    passes: list[Pass]
    openpose: Image.Image
    maps: dict[str, Image.Image]
    used: dict[str, Any]
