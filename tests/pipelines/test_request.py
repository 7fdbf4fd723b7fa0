"""``pipelines.request``: the contract the web side and the workers share, with no torch and no
OpenCV behind it, and the checks both sides run."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.errors import InvalidInputError
from pipelines.request import (
    RuntimeConfig,
    check_control,
    check_model_shot,
    check_outfit,
    check_params,
)

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "cv2", "diffusers", "mediapipe", "pipelines.tryon", "pipelines.generate")


def test_the_contract_imports_neither_torch_nor_opencv():
    code = (
        "import sys, pipelines.request\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "none"


def test_a_runtime_config_is_plain_data_until_a_worker_asks_for_its_device():
    config = RuntimeConfig(device="cpu", dtype="fp32")
    assert config.torch_device().type == "cpu"
    with pytest.raises(InvalidInputError) as raised:
        RuntimeConfig(dtype="fp8").torch_dtype()
    assert raised.value.argument == "dtype"


def _shot(**changes):
    values = {"pose": "front_standing", "scene": "", "scene_text": "", "model_attributes": {}}
    return lambda: check_model_shot(**{**values, **changes})


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (lambda: check_outfit(["upper", "upper"]), "garments"),
        (lambda: check_outfit(["dress", "lower"]), "garments"),
        (_shot(pose="moonwalk"), "pose"),
        (_shot(scene="mars"), "scene"),
        (_shot(model_attributes={"age": "ancient"}), "model"),
        (lambda: check_params({"steps": 0}, "upper"), "steps"),
        (lambda: check_params({"prompt": "x " * 5000}, None), "prompt"),
        (lambda: check_control("canny", "openpose", has_image=False), "module"),
    ],
)
def test_each_check_refuses_naming_the_field(check, field):
    with pytest.raises(InvalidInputError) as raised:
        check()
    assert raised.value.argument.startswith(field)


def test_checks_pass_what_a_run_accepts():
    check_outfit(["lower", "upper", "outer"])
    check_model_shot(
        pose="front_standing", scene="studio_white", scene_text="", model_attributes={}
    )
    assert check_params({"steps": 3, "prompt": "linen"}, "upper").steps == 3
