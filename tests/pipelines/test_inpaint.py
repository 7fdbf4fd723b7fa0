"""The inpaint mode (the WebUI's img2img on a client's own picture) with the tiny kit.

The tiny models paint noise, so these tests check what does not depend on the painting: only the
masked pixels change, the client's ControlNet inputs reach the pipeline as maps, the preview
engine fills the hole without weights, and bad inputs are refused naming what is wrong.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

from pipelines.errors import InvalidInputError
from pipelines.infotext import parse_infotext
from pipelines.inpaint import control_map, inpaint_mask
from pipelines.params import ControlUnit, GenerationParams
from pipelines.prompts import BASE_NEGATIVE
from pipelines.request import ControlInput, control_slot
from pipelines.tryon import TryOnRequest, run

FAST = {"steps": 2, "width": 128, "height": 128, "seed": 77, "mask_blur": 0}


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return Image.fromarray(data.astronaut())  # 512 × 512, a person


@pytest.fixture(scope="module")
def mask() -> Image.Image:
    painted = Image.new("L", (512, 512))
    ImageDraw.Draw(painted).rectangle((300, 300, 420, 460), fill=255)
    return painted


@pytest.fixture
def models(tiny_kit, no_network) -> Path:
    return tiny_kit


def _request(picture, mask, controls=(), engine="sd", **params):
    return TryOnRequest(
        "inpaint",
        (),
        person_photo=picture,
        mask=mask,
        controls=controls,
        params=GenerationParams(**{**FAST, **params}),
        engine=engine,
    )


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_only_the_masked_pixels_change(picture, mask, models):
    output = run(_request(picture, mask, prompt="a red scarf"), models_dir=models)
    result = output.images[0]
    changed = np.any(_pixels(result.image) != _pixels(picture), axis=2)
    assert result.image.size == picture.size
    assert changed.any()
    assert not changed[np.asarray(mask) == 0].any()
    fields = parse_infotext(result.infotext)
    assert fields["Prompt"].startswith("a red scarf")
    assert BASE_NEGATIVE in fields["Negative prompt"]
    assert fields["Try-on"] == "inpaint"


def test_client_control_inputs_become_maps_and_steer(picture, mask, models):
    edges = Image.new("RGB", picture.size)
    ImageDraw.Draw(edges).ellipse((320, 320, 400, 440), outline="white", width=3)
    controls = (ControlInput("openpose_full"), ControlInput("none", edges))
    units = (ControlUnit(weight=1.0), ControlUnit(weight=1.0))
    guided = run(_request(picture, mask, controls, controlnets=units), models_dir=models)
    unguided = run(_request(picture, mask, controlnets=units), models_dir=models)

    assert np.array_equal(_pixels(guided.maps["canny"]), _pixels(edges))
    assert _pixels(guided.maps["openpose"]).any(), "the astronaut's skeleton is drawn"
    assert not _pixels(unguided.maps["openpose"]).any()
    assert not np.array_equal(_pixels(guided.images[0].image), _pixels(unguided.images[0].image))
    fields = parse_infotext(guided.images[0].infotext)
    assert "Module: openpose_full" in fields["ControlNet 0"]
    assert "Module: none" in fields["ControlNet 1"]


def test_a_reference_picture_steers_an_inpaint_through_its_units(
    picture, mask, models, ip_kit, tee
):
    from dataclasses import replace

    from pipelines.samples import draw_product_shot

    shot = draw_product_shot("tshirt", size=(192, 256)).image
    plain = _request(picture, mask, denoising_strength=1.0)
    without = run(plain, models_dir=models).images[0]
    steered = run(replace(plain, reference_picture=shot), models_dir=models).images[0]
    assert not np.array_equal(_pixels(without.image), _pixels(steered.image))
    assert "ControlNet 2" not in parse_infotext(without.infotext)
    assert "Module: reference_only" in parse_infotext(steered.infotext)["ControlNet 2"]
    # With an IP-Adapter installed, it reads the same picture.
    adapted = run(replace(plain, reference_picture=shot), models_dir=ip_kit).images[0]
    assert "Module: ip-adapter_clip" in parse_infotext(adapted.infotext)["ControlNet 3"]
    assert "ControlNet 3" not in parse_infotext(run(plain, models_dir=ip_kit).images[0].infotext)
    with pytest.raises(InvalidInputError, match="reference_picture"):  # garments steer there
        run(TryOnRequest("model_shot", (tee,), reference_picture=shot), models_dir=models)


def test_no_mask_repaints_the_whole_picture(picture, models):
    output = run(_request(picture, None, denoising_strength=1.0), models_dir=models)
    assert np.asarray(output.maps["mask"]).min() == 255
    assert np.any(_pixels(output.images[0].image) != _pixels(picture), axis=2).mean() > 0.9


def test_preview_engine_fills_the_hole_without_weights(mask, tmp_path):
    # A flat grey picture with a black hole: the classical fill must bring the grey back in.
    grey = np.full((512, 512, 3), 128, np.uint8)
    grey[340:420, 330:390] = 0
    output = run(_request(Image.fromarray(grey), mask, engine="preview"), models_dir=tmp_path)
    filled = _pixels(output.images[0].image)
    assert output.engine == "preview"
    assert abs(filled[340:420, 330:390].mean() - 128) < 8
    assert np.array_equal(filled[np.asarray(mask) == 0], grey[np.asarray(mask) == 0])


def test_mask_blur_feathers_the_edge(picture, mask):
    hard = np.asarray(inpaint_mask(mask, picture.size, 0))
    soft = np.asarray(inpaint_mask(mask, picture.size, 4))
    assert set(np.unique(hard)) == {0, 255}
    assert 0 < soft[380, 296] < 255


def test_transparent_editor_masks_use_their_alpha(picture):
    layer = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((10, 10, 99, 99), fill=(255, 0, 0, 255))
    alpha = np.asarray(inpaint_mask(layer, picture.size, 0))
    assert alpha[50, 50] == 255 and alpha[200, 200] == 0


@pytest.mark.parametrize(
    ("module", "model", "slot"),
    [
        ("openpose_full", "", "openpose"),
        ("dw_openpose_full", "", "openpose"),
        ("canny", "whatever", "canny"),
        ("none", "control_v11p_sd15_openpose [cab727d4]", "openpose"),
        ("None", "control_v11p_sd15_canny [d14c016b]", "canny"),
    ],
)
def test_units_find_their_slot(module, model, slot):
    assert control_slot(module, model) == slot


@pytest.mark.parametrize(
    ("module", "model", "field"),
    [("depth_midas", "", "module"), ("none", "control_v11f1p_sd15_depth", "model")],
)
def test_unknown_units_are_refused_by_name(module, model, field):
    with pytest.raises(InvalidInputError) as caught:
        control_slot(module, model)
    assert caught.value.argument == field


def test_bad_inputs_are_refused(picture, mask, tmp_path):
    with pytest.raises(InvalidInputError, match="size"):
        inpaint_mask(mask.resize((100, 100)), picture.size, 4)
    with pytest.raises(InvalidInputError, match="empty"):
        inpaint_mask(Image.new("L", picture.size), picture.size, 4)
    with pytest.raises(InvalidInputError, match="needs an image"):
        control_map("canny", ControlInput("none"), picture)
    with pytest.raises(InvalidInputError, match="does not make a canny map"):
        control_map("canny", ControlInput("openpose"), picture)
    with pytest.raises(InvalidInputError, match="no person"):
        control_map("openpose", ControlInput("openpose"), Image.new("RGB", (256, 256), "white"))
    with pytest.raises(InvalidInputError, match="no garments") as caught:
        run(TryOnRequest("inpaint", (object(),), person_photo=picture), models_dir=tmp_path)
    assert caught.value.argument == "garments"
