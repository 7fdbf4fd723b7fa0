"""The hires pass (the WebUI's "Hires. fix") on the tiny engine, from the CLI and the engine."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import generate, selection
from pipelines.__main__ import main
from pipelines.errors import InvalidInputError
from pipelines.infotext import parse_infotext, read_png_infotext
from pipelines.params import GenerationParams, ReferenceUnit, params_from_dict
from pipelines.request import RuntimeConfig
from pipelines.samples import draw_product_shot


@pytest.fixture(scope="module")
def tee(tmp_path_factory):
    path = tmp_path_factory.mktemp("garment") / "tee.png"
    draw_product_shot("tshirt", size=(192, 256)).image.save(path)
    return path


def _modelshot(tiny_kit, tee, out, *extra):
    args = ["modelshot", "--engine", "tiny", "--models", str(tiny_kit), "--garment", str(tee)]
    args += ["--category", "upper", "--steps", "2", "--seed", "4", "--width", "64"]
    args += ["--height", "96", "--out", str(out), *extra]
    assert main(args) == 0
    return Image.open(out / "result.png")


def test_a_hires_model_shot_is_twice_the_size_with_the_garment_kept(
    tiny_kit, tee, tmp_path, monkeypatch
):
    painted_sizes = []
    paint = generate.Generator.paint

    def recording(self, *args, **kwargs):
        painted = paint(self, *args, **kwargs)
        painted_sizes.append(painted.size)
        return painted

    monkeypatch.setattr(generate.Generator, "paint", recording)
    result = _modelshot(tiny_kit, tee, tmp_path / "hr", "--hires-scale", "2")
    assert result.size == (128, 192)
    # Painted at the native size, then again at twice it (not only pasted into a bigger canvas).
    assert painted_sizes == [(64, 96), (128, 192)]
    composite = Image.open(tmp_path / "hr" / "composite.png")
    mask = np.asarray(Image.open(tmp_path / "hr" / "mask.png"))
    assert composite.size == mask.shape[::-1] == (128, 192)
    kept = mask == 0
    assert kept.any()
    painted = np.asarray(result.convert("RGB"))
    assert np.array_equal(painted[kept], np.asarray(composite.convert("RGB"))[kept])
    info = parse_infotext(read_png_infotext(tmp_path / "hr" / "result.png"))
    assert info["Hires upscale"] == "2" and info["Hires upscaler"] == "Lanczos"
    assert info["Denoising strength"] == "0.5"  # the hires pass's, as the WebUI's txt2img
    assert (info["Size-1"], info["Size-2"]) == ("64", "96")  # the first pass's, as the WebUI


def test_hires_scale_1_turns_it_off_and_model_shots_default_to_2(tiny_kit, tee, tmp_path):
    plain = _modelshot(tiny_kit, tee, tmp_path / "off", "--hires-scale", "1")
    assert plain.size == (64, 96)
    assert "Hires upscale" not in read_png_infotext(tmp_path / "off" / "result.png")
    assert _modelshot(tiny_kit, tee, tmp_path / "default").size == (128, 192)


@pytest.fixture(scope="module")
def generator(tiny_kit):
    params = GenerationParams(width=64, height=96)
    return generate.Generator(selection.select_models(tiny_kit, params), RuntimeConfig())


def _pass(generator, **hires):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (240, 160, 3), np.uint8))
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (40, 60, 120, 200))
    controls = (Image.new("RGB", image.size), Image.new("RGB", image.size))
    params = GenerationParams(
        steps=2, width=64, height=96, reference=ReferenceUnit(weight=0), **hires
    )
    latents = []
    handle = generator.pipe.unet.register_forward_pre_hook(
        lambda module, args: latents.append(tuple(args[0].shape[-2:]))
    )
    try:
        result = generate.inpaint_pass(
            generator,
            image=image,
            mask=mask,
            controls=controls,
            prompt="a shirt",
            negative_prompt="",
            params=params,
            strength=0.75,
            seed=3,
            color_correction=False,
        )
    finally:
        handle.remove()
    return result, latents, image


def test_the_second_pass_paints_at_the_hires_size_and_pastes_back_at_the_pictures(generator):
    plain, plain_latents, image = _pass(generator)
    hires, hires_latents, _ = _pass(generator, enable_hr=True, hr_second_pass_steps=4)
    assert set(plain_latents) == {(12, 8)}
    assert set(hires_latents) == {(12, 8), (24, 16)}  # the first pass, then twice its size
    assert hires_latents.count((24, 16)) == 2  # 4 steps at strength 0.5
    assert hires.processed.size == (128, 192) and hires.image.size == image.size
    assert np.abs(np.asarray(hires.image, int) - np.asarray(plain.image, int)).mean() > 0.5


def test_a_latent_upscaler_enlarges_the_first_pass_latents_not_its_pixels(generator, monkeypatch):
    decoded, interpolated = [], []
    vae_decode = generator.pipe.vae.decode
    monkeypatch.setattr(
        generator.pipe.vae,
        "decode",
        lambda latents, **kw: (
            decoded.append(tuple(latents.shape[-2:])) or vae_decode(latents, **kw)
        ),
    )
    resize = torch.nn.functional.interpolate

    def interpolate(tensor, **kw):
        if tensor.shape[1] == 4:  # latents (the pipeline also resizes its 1-channel mask)
            found = (tuple(tensor.shape[-2:]), kw["size"], kw.get("mode"), kw.get("antialias"))
            interpolated.append(found)
        return resize(tensor, **kw)

    monkeypatch.setattr(torch.nn.functional, "interpolate", interpolate)
    lanczos, _, _ = _pass(generator, enable_hr=True)
    assert decoded == [(12, 8), (24, 16)] and interpolated == []  # each pass decodes its own
    decoded.clear()
    latent, latents, _ = _pass(
        generator, enable_hr=True, hr_upscaler="Latent (bicubic antialiased)"
    )
    # The first pass is never decoded at its size: its latents are enlarged, then decoded once
    # for the second pass to start from.
    assert interpolated == [((12, 8), (24, 16), "bicubic", True)]
    assert decoded == [(24, 16), (24, 16)] and set(latents) == {(12, 8), (24, 16)}
    assert latent.processed.size == (128, 192)
    assert np.abs(np.asarray(latent.image, int) - np.asarray(lanczos.image, int)).mean() > 0.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hr_upscaler": "R-ESRGAN 4x+"}, "model upscalers such as ESRGAN are not available"),
        ({"hr_scale": 5}, "hr_scale: must be from 1.0 to 4.0"),
        ({"hr_denoising_strength": 0}, "hr_denoising_strength: must be above 0.0"),
        ({"enable_hr": "yes"}, "enable_hr: must be true or false"),
    ],
)
def test_bad_hires_parameters_are_refused_by_name(values, message):
    with pytest.raises(InvalidInputError, match=message):
        params_from_dict(values)


def test_a_hires_size_beyond_the_limit_is_refused_naming_the_limit():
    params = GenerationParams(width=1600, height=2048, enable_hr=True, hr_scale=2.5)
    with pytest.raises(InvalidInputError, match="at most 4096 pixels a side"):
        params.hires_size()
    assert GenerationParams(width=104, height=152, enable_hr=True).hires_size() == (208, 304)
    assert GenerationParams(width=104, height=152, hr_scale=1.5).hires_size() == (104, 152)
