"""Pictures the native code must never see are refused by the pipeline itself.

OpenCV's ``remap`` asserts that both sides are below 32767, and MediaPipe lets the C++ exception
escape, which aborts the process: the checks in ``pipelines.pictures`` are what stands between
such a picture, from whatever source (a stored upload, the CLI, a file), and that abort.
"""

import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from pipelines.errors import InvalidInputError
from pipelines.pictures import MAX_SIDE, check_picture_size


@pytest.mark.parametrize(
    "size",
    [(32768, 128), (128, 32768), (MAX_SIDE + 1, MAX_SIDE), (8200, 256), (256, 8193), (0, 512)],
)
def test_sizes_the_native_code_must_not_see_are_refused(size):
    with pytest.raises(InvalidInputError) as refused:
        check_picture_size(size, "person_photo")
    assert refused.value.argument == "person_photo"
    assert f"{size[0]}×{size[1]} pixels" in refused.value.message


@pytest.mark.parametrize("size", [(512, 768), (MAX_SIDE, MAX_SIDE), (2048, 64), (128, 4096)])
def test_ordinary_sizes_pass(size):
    check_picture_size(size)
    check_picture_size(Image.new("L", (size[0] // 8, size[1] // 8)))


def test_a_32768_px_sliver_is_refused_by_every_stage_and_the_process_lives():
    # In a child process: were a check missing, the abort would take the test runner with it.
    script = textwrap.dedent(
        """
        from PIL import Image
        from pipelines.errors import InvalidInputError
        from pipelines.garment import analyze_garment
        from pipelines.params import GenerationParams
        from pipelines.person import analyze_person, detect_body
        from pipelines.tryon import TryOnRequest, run

        sliver = Image.new("RGB", (32768, 128), "white")
        calls = {
            "detect_body": lambda: detect_body(sliver),
            "analyze_person": lambda: analyze_person(sliver),
            "analyze_garment": lambda: analyze_garment(sliver, "upper"),
            "run": lambda: run(
                TryOnRequest(mode="inpaint", garments=(), person_photo=sliver,
                             params=GenerationParams(steps=2), engine="preview"),
                models_dir=".",
            ),
        }
        for name, call in calls.items():
            try:
                call()
            except InvalidInputError as error:
                print(name, "refused:", error.message)
        print("still alive")
        """
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    lines = finished.stdout.splitlines()
    for name in ("detect_body", "analyze_person", "analyze_garment", "run"):
        assert (
            f"{name} refused: the picture is 32768×128 pixels; at most {MAX_SIDE} on each side"
            in lines
        )
    assert lines[-1] == "still alive"
