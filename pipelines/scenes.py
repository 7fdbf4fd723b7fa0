"""Scene presets for model shots: where the generated model stands.

Each scene gives prompt and negative-prompt fragments and a background hint: two colours, top
and bottom of the canvas, painted as a vertical gradient behind the garment before diffusion.
The hint matters because the model-shot canvas is img2img input: the sampler keeps some of its
colours, so a beach scene starts from sand and sky rather than studio grey.

A merchant may also describe a scene in free text; ``resolve_scene`` turns either into a
``Scene``.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .prompts import sanitize_user_prompt

RGB = tuple[int, int, int]
NEUTRAL_BACKGROUND: tuple[RGB, RGB] = ((226, 226, 224), (200, 200, 198))


@dataclass(frozen=True)
class Scene:
    name: str
    title: str
    prompt: str
    negative: str = ""
    background: tuple[RGB, RGB] = NEUTRAL_BACKGROUND

    def canvas(self, size: tuple[int, int]) -> Image.Image:
        """The background hint as an RGB picture of ``size`` (width, height)."""
        width, height = size
        top, bottom = (np.asarray(colour, np.float32) for colour in self.background)
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        rows = top * (1 - ramp) + bottom * ramp
        pixels = np.broadcast_to(rows, (height, width, 3))
        return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")


SCENES: dict[str, Scene] = {
    scene.name: scene
    for scene in (
        Scene(
            "studio_white",
            "Studio, white",
            "seamless white studio backdrop, even softbox lighting",
            "shadows on the wall, props",
            ((246, 246, 244), (232, 232, 230)),
        ),
        Scene(
            "studio_grey",
            "Studio, grey",
            "plain light grey studio background, soft studio lighting",
            "props",
            NEUTRAL_BACKGROUND,
        ),
        Scene(
            "studio_colour",
            "Studio, colour",
            "pastel coloured studio backdrop, soft even lighting",
            "props",
            ((236, 206, 196), (214, 182, 172)),
        ),
        Scene(
            "city_street",
            "City street",
            "city street, shop fronts softly out of focus, daylight",
            "cars in focus, crowds",
            ((172, 180, 190), (112, 112, 116)),
        ),
        Scene(
            "cafe",
            "Café",
            "cosy café interior, warm light, blurred background",
            "food in focus, clutter",
            ((150, 112, 84), (96, 70, 54)),
        ),
        Scene(
            "beach",
            "Beach",
            "sandy beach, sea and clear sky behind, golden hour",
            "crowds, litter",
            ((150, 196, 230), (222, 204, 164)),
        ),
        Scene(
            "park",
            "Park",
            "green park, trees and lawn softly out of focus, daylight",
            "crowds",
            ((170, 206, 160), (92, 134, 72)),
        ),
        Scene(
            "runway",
            "Runway",
            "fashion show runway, spotlights, dark audience blurred",
            "",
            ((40, 40, 46), (84, 84, 90)),
        ),
        Scene(
            "living_room",
            "Living room",
            "bright modern living room, natural window light",
            "clutter",
            ((222, 214, 200), (168, 150, 128)),
        ),
        Scene(
            "loft",
            "Industrial loft",
            "industrial loft, brick wall, large windows",
            "clutter",
            ((176, 132, 108), (120, 110, 104)),
        ),
    )
}
DEFAULT_SCENE = "studio_grey"


def get_scene(name: str) -> Scene:
    """The preset named ``name``; ``InvalidInputError`` naming ``scene`` otherwise."""
    try:
        return SCENES[name]
    except KeyError:
        raise InvalidInputError(
            "scene", f"unknown scene {name!r}; available: {', '.join(SCENES)}"
        ) from None


def resolve_scene(name: str = "", text: str = "") -> Scene:
    """A preset (by ``name``) with optional free ``text`` added, or free text alone.

    Free text is a person's words: length-capped and made inert as any user prompt is. Free text
    without a preset keeps the neutral background hint.
    """
    base = get_scene(name or DEFAULT_SCENE) if name or not text else None
    extra = sanitize_user_prompt(text, field="scene_text") if text else ""
    if base is None:
        return Scene("custom", "Custom", extra)
    if not extra:
        return base
    return Scene(base.name, base.title, f"{base.prompt}, {extra}", base.negative, base.background)
