"""Reference attention on the tiny engine: the garment's picture steers the painted pixels."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import generate, selection
from pipelines.errors import InvalidInputError
from pipelines.params import GenerationParams, ReferenceUnit, params_from_dict
from pipelines.reference import reference_picture
from pipelines.request import RuntimeConfig
from tests.pipelines.painting import (
    SIZE,
    garment_cutout,
    inpaint_inputs,
    mean_difference,
    paint,
)

STEPS = 4


@pytest.fixture(scope="module")
def generator(tiny_kit):
    params = GenerationParams(width=SIZE[0], height=SIZE[1])
    return generate.Generator(selection.select_models(tiny_kit, params), RuntimeConfig())


@pytest.fixture(scope="module")
def inputs():
    return inpaint_inputs()


def _garment(kind: str) -> Image.Image:
    return reference_picture(garment_cutout(kind), SIZE)


def _paint(generator, inputs, reference=None, **unit) -> np.ndarray:
    params = GenerationParams(
        steps=STEPS, seed=5, width=SIZE[0], height=SIZE[1], reference=ReferenceUnit(**unit)
    )
    return paint(generator, inputs, params, reference=reference)


def test_the_reference_changes_the_pixels_and_the_garment_matters(generator, inputs):
    tee, hoodie = _garment("tshirt"), _garment("dress")
    off = _paint(generator, inputs, tee, weight=0.0)
    assert mean_difference(off, _paint(generator, inputs, None)) == 0  # no picture: nothing to read
    with_tee = _paint(generator, inputs, tee, weight=1.0)
    with_other = _paint(generator, inputs, hoodie, weight=1.0)
    assert mean_difference(off, with_tee) > 0.2
    # The same pass twice is identical, so any difference is the other picture's doing (the
    # tiny random UNet's features are faint: a full-size one's are not).
    assert mean_difference(with_tee, _paint(generator, inputs, tee, weight=1.0)) == 0
    assert mean_difference(with_tee, with_other) > 0.01


def test_style_fidelity_and_each_module_change_the_result(generator, inputs):
    tee = _garment("tshirt")
    plain = _paint(generator, inputs, tee, weight=1.0, style_fidelity=0.0)
    faithful = _paint(generator, inputs, tee, weight=1.0, style_fidelity=1.0)
    assert mean_difference(plain, faithful) > 0.1
    adain = _paint(generator, inputs, tee, weight=1.0, module="reference_adain")
    both = _paint(generator, inputs, tee, weight=1.0, module="reference_adain+attn")
    off = _paint(generator, inputs, tee, weight=0.0)
    for painted in (adain, both):
        assert mean_difference(painted, off) > 0.2
    assert mean_difference(adain, both) > 0.1


def _unet_calls(generator, inputs, reference, **unit) -> list[int]:
    """The batch size of every UNet call during one pass."""
    calls = []
    handle = generator.pipe.unet.register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0])
    )
    try:
        _paint(generator, inputs, reference, **unit)
    finally:
        handle.remove()
    return calls


def test_the_reference_pass_is_one_more_cfg_batched_unet_call_per_step(generator, inputs):
    tee = _garment("tshirt")
    assert _unet_calls(generator, inputs, tee, weight=0.0) == [2] * STEPS
    assert _unet_calls(generator, inputs, tee, weight=1.0) == [2] * (2 * STEPS)
    # Only inside its guidance window: here the first half of the steps.
    windowed = _unet_calls(generator, inputs, tee, weight=1.0, guidance_end=0.5)
    assert len(windowed) == STEPS + STEPS // 2


def test_the_unet_is_left_as_it_was(generator, inputs):
    before = {name: type(p) for name, p in generator.pipe.unet.attn_processors.items()}
    _paint(generator, inputs, _garment("tshirt"), weight=1.0, module="reference_adain+attn")
    after = {name: type(p) for name, p in generator.pipe.unet.attn_processors.items()}
    assert after == before
    assert not generator.pipe.unet._forward_pre_hooks


def test_the_reference_unit_is_validated_and_read_from_json():
    assert GenerationParams().reference == ReferenceUnit("reference_only", 0.8, 0.0, 1.0, 0.5)
    read = params_from_dict({"reference": {"module": "reference_adain", "weight": 0.5}})
    assert read.reference == ReferenceUnit(module="reference_adain", weight=0.5)
    assert params_from_dict(read.to_dict()) == read
    with pytest.raises(InvalidInputError, match=r"reference\.module: must be one of"):
        params_from_dict({"reference": {"module": "reference_everything"}})
    with pytest.raises(InvalidInputError, match=r"reference\.style_fidelity: must be from 0\.0"):
        params_from_dict({"reference": {"style_fidelity": 1.5}})
    with pytest.raises(InvalidInputError, match="unknown fields threshold_b"):
        params_from_dict({"reference": {"threshold_b": 1}})
    assert replace(read, reference=ReferenceUnit(weight=0)).reference.enabled is False


def test_an_fp16_vae_that_must_be_upcast_runs_in_fp32_and_is_given_back_in_fp16():
    from diffusers import AutoencoderKL

    from pipelines.reference import vae_upcast
    from tests.model_files import tiny_sdxl_configs

    config = {**tiny_sdxl_configs()["vae_config"], "force_upcast": True}
    vae = AutoencoderKL.from_config(config).to(torch.float16)
    with vae_upcast(vae) as inside:
        assert inside.dtype == torch.float32
    assert vae.dtype == torch.float16
    plain = AutoencoderKL.from_config({**config, "force_upcast": False}).to(torch.float16)
    with vae_upcast(plain) as inside:
        assert inside.dtype == torch.float16
