"""Canny edge maps for the Canny ControlNet, made by controlnet_aux's own detector."""

from PIL import Image


def canny_map(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """The Canny map of ``image`` (RGBA: composited on black first), at ``image``'s exact size.

    controlnet_aux's ``CannyDetector`` resizes to multiples of 64 around a "resolution"; asking
    for the short side keeps the detail, and the result is resized back to the exact size.
    controlnet_aux is imported here, not at module level: it imports torch (seconds).
    """
    from controlnet_aux import CannyDetector

    if image.mode == "RGBA":
        black = Image.new("RGB", image.size)
        black.paste(image, mask=image.getchannel("A"))
        image = black
    short = min(image.size)
    edges = CannyDetector()(
        image.convert("RGB"),
        low_threshold=low,
        high_threshold=high,
        detect_resolution=short,
        image_resolution=short,
        output_type="pil",
    )
    return edges if edges.size == image.size else edges.resize(image.size, Image.NEAREST)
