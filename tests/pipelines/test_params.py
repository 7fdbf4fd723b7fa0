"""Generation parameters: WebUI names and bounds, every bad value refused with the field's name."""

import json
import math

import pytest

from pipelines.errors import InvalidInputError
from pipelines.params import (
    CONTROL_MODES,
    MAX_SEED,
    ControlUnit,
    GenerationParams,
    params_from_dict,
)


def refused(argument: str, build):
    """Run ``build``; it must raise InvalidInputError naming ``argument``. Returns the error."""
    with pytest.raises(InvalidInputError) as caught:
        build()
    assert caught.value.argument == argument, str(caught.value)
    assert str(caught.value).startswith(f"{argument}: ")
    return caught.value


def test_defaults_are_valid_and_webui_like():
    params = GenerationParams()
    assert params.steps == 20
    assert params.cfg_scale == 7.0
    assert params.seed == -1
    assert (params.width, params.height) == (None, None)  # the checkpoint's native size
    assert params.sampler.name == "DPM++ 2M"
    assert len(params.controlnets) == 2
    assert all(isinstance(unit, ControlUnit) for unit in params.controlnets)
    assert ControlUnit().control_mode == "Balanced"


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("steps", [1, 150], [0, 151, -5]),
        ("cfg_scale", [1, 1.0, 30.0, 7.5], [0.99, 30.01, math.nan, math.inf, "7"]),
        ("seed", [-1, 0, MAX_SEED, 2**32 - 1], [-2, 2**32, 1.0, "42"]),
        ("width", [64, 512, 2048], [32, 56, 513, 2056, 512.0]),
        ("height", [64, 768, 2048], [32, 770, 4096]),
        ("batch_size", [1, 8], [0, 9]),
        ("denoising_strength", [None, 0.01, 1, 1.0], [0, 0.0, 1.01, -0.5, "0.5"]),
        ("clip_skip", [1, 2, 12], [0, 13, 2.0]),
        ("mask_blur", [None, 0, 4.5, 64], [-0.1, 64.5, math.nan]),
        ("inpaint_full_res_padding", [0, 32, 256], [-1, 257, 32.0]),
        ("inpaint_full_res", [True, False], [1, 0, "true", None]),
        ("color_correction", [True, False], [1, 0, "false", None]),
        ("prompt", ["", "a red dress"], [None, 5, "x" * 2001]),
        ("negative_prompt", ["", "blurry"], [None, "x" * 2001]),
        ("checkpoint", ["", "v1-5-pruned-emaonly.safetensors"], [None, "x" * 201]),
        ("vae", ["", "vae-ft-mse"], [3, "x" * 201]),
    ],
)
def test_bounds_are_enforced_naming_the_field(field, good, bad):
    for value in good:
        assert getattr(GenerationParams(**{field: value}), field) == value
    for value in bad:
        refused(field, lambda value=value: GenerationParams(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", True),
        ("seed", False),
        ("width", True),
        ("batch_size", True),
        ("clip_skip", True),
        ("inpaint_full_res_padding", False),
        ("cfg_scale", True),
        ("denoising_strength", True),
        ("mask_blur", True),
    ],
)
def test_a_bool_is_not_a_number(field, value):
    # JSON true is a client bug, never "1 step".
    error = refused(field, lambda: GenerationParams(**{field: value}))
    assert repr(value) in error.message


def test_size_messages_say_what_is_wrong():
    assert "multiple of 8" in refused("width", lambda: GenerationParams(width=516)).message
    assert "from 64 to 2048" in refused("height", lambda: GenerationParams(height=32)).message


def test_unknown_sampler_names_sampler_name():
    error = refused("sampler_name", lambda: GenerationParams(sampler_name="Euler z"))
    assert "Euler a" in error.message


def test_unknown_schedule_type_names_scheduler():
    refused("scheduler", lambda: GenerationParams(scheduler="Cosine"))


def test_controlnets_must_be_the_two_units():
    refused("controlnets", lambda: GenerationParams(controlnets=(ControlUnit(),)))
    refused("controlnets", lambda: GenerationParams(controlnets=(ControlUnit(),) * 3))
    refused("controlnets", lambda: GenerationParams(controlnets=({"weight": 1.0}, ControlUnit())))
    # A list is accepted and frozen into a tuple, so the params stay hashable.
    params = GenerationParams(controlnets=[ControlUnit(), ControlUnit(weight=0.5)])
    assert isinstance(params.controlnets, tuple)
    hash(params)


def test_params_are_frozen_and_with_seed_copies():
    params = GenerationParams(seed=5)
    with pytest.raises(AttributeError):
        params.seed = 6  # type: ignore[misc]
    assert params.with_seed(7).seed == 7
    assert params.seed == 5
    refused("seed", lambda: params.with_seed(-3))


# --- ControlUnit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0, 0.0, 1.3, 2.0])
def test_unit_weight_in_range(weight):
    assert ControlUnit(weight=weight).weight == weight


@pytest.mark.parametrize("weight", [-0.01, 2.01, math.nan, True, "1"])
def test_unit_weight_out_of_range(weight):
    refused("weight", lambda: ControlUnit(weight=weight))


@pytest.mark.parametrize(("start", "end"), [(0.5, 0.5), (0.6, 0.4), (0.0, 0.0), (1.0, 1.0)])
def test_guidance_end_must_follow_start(start, end):
    refused("guidance_end", lambda: ControlUnit(guidance_start=start, guidance_end=end))


def test_guidance_fractions_in_range():
    assert ControlUnit(guidance_start=0.2, guidance_end=0.9).guidance_end == 0.9
    refused("guidance_start", lambda: ControlUnit(guidance_start=-0.1))
    refused("guidance_end", lambda: ControlUnit(guidance_end=1.1))


@pytest.mark.parametrize(("index", "name"), list(enumerate(CONTROL_MODES)))
def test_control_mode_by_index_or_name(index, name):
    assert ControlUnit(control_mode=index).control_mode == name
    assert ControlUnit(control_mode=name).control_mode == name


def test_control_mode_names():
    assert CONTROL_MODES == (
        "Balanced",
        "My prompt is more important",
        "ControlNet is more important",
    )


@pytest.mark.parametrize("mode", [3, -1, True, "balanced", "Prompt", 1.0, None])
def test_unknown_control_mode_refused(mode):
    refused("control_mode", lambda: ControlUnit(control_mode=mode))


def test_unit_model_name_is_text():
    refused("model", lambda: ControlUnit(model=None))
    refused("model", lambda: ControlUnit(model="x" * 201))


# --- params_from_dict -----------------------------------------------------------------------------


def test_webui_json_names_are_read():
    params = params_from_dict(
        {
            "prompt": "linen shirt",
            "negative_prompt": "blurry",
            "sampler_name": "Euler a",
            "steps": 30,
            "cfg_scale": 5.5,
            "seed": 1234,
            "width": 640,
            "height": 832,
            "batch_size": 4,
            "denoising_strength": 0.6,
            "clip_skip": 2,
            "mask_blur": 8,
            "inpaint_full_res": False,
            "inpaint_full_res_padding": 48,
            "controlnet": [{"weight": 0.9, "control_mode": 2}],
        }
    )
    assert params.sampler_name == "Euler a"
    assert (params.steps, params.cfg_scale, params.seed) == (30, 5.5, 1234)
    assert (params.width, params.height, params.batch_size) == (640, 832, 4)
    assert (params.denoising_strength, params.clip_skip, params.mask_blur) == (0.6, 2, 8)
    assert params.inpaint_full_res is False
    assert params.inpaint_full_res_padding == 48
    pose, canny = params.controlnets
    assert pose.weight == 0.9
    assert pose.control_mode == "ControlNet is more important"
    # A unit left out keeps its own defaults.
    assert canny == GenerationParams().controlnets[1]


def test_a_partial_unit_keeps_that_units_defaults():
    default_canny = GenerationParams().controlnets[1]
    params = params_from_dict({"controlnet": [{}, {"weight": 0.4}]})
    assert params.controlnets[0] == GenerationParams().controlnets[0]
    assert params.controlnets[1].weight == 0.4
    assert params.controlnets[1].guidance_end == default_canny.guidance_end


def test_to_dict_round_trips_through_json():
    params = GenerationParams(
        prompt="(silk:1.2) blouse",
        negative_prompt="lowres",
        sampler_name="DPM++ 2M SDE",
        scheduler="Karras",
        steps=25,
        cfg_scale=6.5,
        seed=99,
        width=576,
        height=768,
        batch_size=3,
        denoising_strength=0.55,
        clip_skip=2,
        mask_blur=6.0,
        inpaint_full_res=False,
        inpaint_full_res_padding=16,
        color_correction=False,
        controlnets=(
            ControlUnit(weight=0.8, guidance_start=0.1, guidance_end=0.9, control_mode=1),
            ControlUnit(weight=1.5, guidance_end=0.5, model="tiny-canny"),
        ),
        checkpoint="realistic.safetensors",
        vae="vae-ft-mse",
    )
    data = json.loads(json.dumps(params.to_dict()))
    assert "controlnets" not in data
    assert data["cfg_scale"] == 6.5
    assert data["controlnet"][0]["control_mode"] == "My prompt is more important"
    assert data["controlnet"][1]["model"] == "tiny-canny"
    assert params_from_dict(data) == params
    assert params_from_dict(GenerationParams().to_dict()) == GenerationParams()


def test_empty_dict_gives_the_defaults():
    assert params_from_dict({}) == GenerationParams()


def test_unknown_keys_are_refused_and_named():
    error = refused("params", lambda: params_from_dict({"steps": 20, "stepz": 5, "hr_sale": 2}))
    assert "hr_sale, stepz" in error.message
    assert "steps" in error.message.split("known:")[1]


def test_the_dataclass_spelling_controlnets_is_not_a_json_name():
    error = refused("params", lambda: params_from_dict({"controlnets": []}))
    assert "controlnets" in error.message


@pytest.mark.parametrize("data", [None, [("steps", 20)], "steps=20", 5])
def test_non_mapping_is_refused(data):
    refused("params", lambda: params_from_dict(data))


def test_unit_with_unknown_fields_names_its_index():
    error = refused(
        "controlnet.1",
        lambda: params_from_dict({"controlnet": [{}, {"weight": 1.0, "module": "canny"}]}),
    )
    assert "module" in error.message


def test_bad_unit_value_names_index_and_field():
    refused("controlnet.0.weight", lambda: params_from_dict({"controlnet": [{"weight": 5}]}))
    refused(
        "controlnet.1.guidance_end",
        lambda: params_from_dict(
            {"controlnet": [{}, {"guidance_start": 0.8, "guidance_end": 0.2}]}
        ),
    )
    refused(
        "controlnet.1.control_mode",
        lambda: params_from_dict({"controlnet": [{}, {"control_mode": 7}]}),
    )


@pytest.mark.parametrize("units", [{"weight": 1.0}, "openpose", [{}, {}, {}]])
def test_controlnet_must_be_a_short_list(units):
    refused("controlnet", lambda: params_from_dict({"controlnet": units}))


def test_a_unit_that_is_not_an_object_names_its_index():
    refused("controlnet.1", lambda: params_from_dict({"controlnet": [{}, 0.5]}))


def test_bad_values_from_json_name_the_field():
    refused("steps", lambda: params_from_dict({"steps": "20"}))
    refused("steps", lambda: params_from_dict({"steps": True}))
    refused("sampler_name", lambda: params_from_dict({"sampler_name": 5}))
    refused("width", lambda: params_from_dict({"width": 500}))


@pytest.mark.parametrize("scheduler", [5, ["Karras"]])
def test_a_schedule_type_that_is_not_text_names_the_field(scheduler):
    # A request's JSON can hold any type; it must come back as a 400 naming the field.
    refused("scheduler", lambda: params_from_dict({"scheduler": scheduler}))


def test_import_stays_torch_free():
    import subprocess
    import sys

    code = (
        "import sys, pipelines.params as p; p.params_from_dict({'steps': 30}); "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
