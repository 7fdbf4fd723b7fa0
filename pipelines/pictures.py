"""The sizes of picture that the native code under the pipeline may be given.

OpenCV's ``remap``, which MediaPipe runs on every photo, asserts that both sides are below
``SHRT_MAX`` (32767); a failed assertion inside MediaPipe's graph aborts the whole process (a
C++ exception nobody catches), so a 12 KB PNG of 32768×128 white pixels killed the web process
and the workers. Every stage that hands a picture to OpenCV or MediaPipe checks it here first,
and the site refuses such uploads before that (``common.uploads``); this is the last line.

The aspect limit is for the same code: the OpenPose map is drawn with its short side at 512
pixels (``person.render_openpose``), so a picture 32 times longer than wide makes a canvas of
16384 on its long side, and anything thinner would push it past ``SHRT_MAX`` again. 32 is also
as thin as the WebUI's sizes go (64 × 2048), so every picture this site makes passes.
"""

from PIL import Image

from .errors import InvalidInputError

# Well below SHRT_MAX: some stages pad or enlarge a picture before it reaches OpenCV.
MAX_SIDE = 16384
# The long side at most this many times the short side.
MAX_ASPECT = 32.0


def check_picture_size(picture: Image.Image | tuple[int, int], field: str = "image") -> None:
    """Refuse a picture (or a ``(width, height)``) that the native code must not see.

    Raises ``InvalidInputError(field, …)`` when a side is not positive, longer than
    ``MAX_SIDE``, or the long side is more than ``MAX_ASPECT`` times the short one.
    """
    width, height = picture.size if isinstance(picture, Image.Image) else picture
    if min(width, height) < 1:
        raise InvalidInputError(field, f"the picture is {width}×{height} pixels: it is empty")
    if max(width, height) > MAX_SIDE:
        raise InvalidInputError(
            field, f"the picture is {width}×{height} pixels; at most {MAX_SIDE} on each side"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidInputError(
            field,
            f"the picture is {width}×{height} pixels; its long side may be at most "
            f"{MAX_ASPECT:g} times its short side",
        )
