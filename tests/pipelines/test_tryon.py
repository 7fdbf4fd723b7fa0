"""The whole try-on with the tiny kit: both modes, seeds, paste-back, infotext, LoRAs, cancel.

The tiny models paint noise, so these tests check the properties that do not depend on what is
painted: which pixels may change, that a seed decides the picture, that the parameters written
into the picture are the ones used, and that models load once.
"""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from pipelines import cache, generate, selection
from pipelines.errors import (
    GenerationCancelled,
    GenerationError,
    InvalidInputError,
    ModelNotFoundError,
)
from pipelines.garment import analyze_garment
from pipelines.infotext import parse_infotext, read_png_infotext
from pipelines.params import ControlUnit, GenerationParams
from pipelines.samples import draw_product_shot
from pipelines.tryon import GarmentInput, TryOnRequest, run

FAST = {"steps": 2, "width": 128, "height": 192, "seed": 1234}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def tee() -> GarmentInput:
    shot = draw_product_shot("tshirt", size=(384, 512), label="TRY")
    return GarmentInput(analyze_garment(shot.image, "upper"), colour="blue", material="cotton")


@pytest.fixture(scope="module")
def trousers() -> GarmentInput:
    shot = draw_product_shot("trousers", size=(384, 512), colour=(60, 60, 60))
    return GarmentInput(analyze_garment(shot.image, "lower"), colour="grey")


@pytest.fixture(scope="module")
def jacket() -> GarmentInput:
    shot = draw_product_shot("jacket", size=(384, 512), colour=(20, 20, 20))
    return GarmentInput(analyze_garment(shot.image, "outer"), colour="black")


@pytest.fixture
def models(tiny_kit, no_network) -> Path:
    """The tiny kit as a MODELS_DIR, run by the ``sd`` engine: the real loading code."""
    return tiny_kit


def _photo_request(photo, garments, engine="sd", allow_loras=False, **params):
    return TryOnRequest(
        "photo",
        garments,
        person_photo=photo,
        params=GenerationParams(**{**FAST, **params}),
        engine=engine,
        allow_loras=allow_loras,
    )


def _shot_request(garments, **params):
    return TryOnRequest(
        "model_shot",
        garments,
        pose="front_standing",
        scene="beach",
        model_attributes={"gender_presentation": "feminine"},
        params=GenerationParams(**{**FAST, **params}),
        engine="sd",
    )


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_photo_tryon_keeps_every_pixel_outside_the_mask(photo, tee, models):
    output = run(_photo_request(photo, (tee,)), models_dir=models)

    assert output.engine == "sd" and len(output.images) == 1
    result = _pixels(output.images[0].image)
    assert result.shape == _pixels(photo).shape
    outside = np.asarray(output.maps["mask"]) == 0
    assert outside.mean() > 0.3
    assert np.array_equal(result[outside], _pixels(photo)[outside])
    inside = np.asarray(output.maps["mask"]) == 255
    assert np.abs(result[inside].astype(int) - _pixels(photo)[inside]).mean() > 5
    assert set(output.maps) == {"mask", "openpose", "canny", "composite"}
    assert all(m.size == photo.size for m in output.maps.values())
    assert {"person", "load", "sampling", "total"} <= set(output.timings_ms)


def test_model_shot_keeps_the_garments_pixels(tee, models):
    output = run(_shot_request((tee,)), models_dir=models)

    result = _pixels(output.images[0].image)
    assert result.shape == (192, 128, 3)
    kept = np.asarray(output.maps["mask"]) == 0
    assert kept.sum() > 500  # the garment, less its rim
    assert np.array_equal(result[kept], _pixels(output.maps["composite"])[kept])
    # Everything else is generated: nothing left of the flat beach gradient.
    painted = np.asarray(output.maps["mask"]) == 255
    assert (
        np.abs(result[painted].astype(int) - _pixels(output.maps["composite"])[painted]).mean() > 5
    )
    info = parse_infotext(output.images[0].infotext)
    assert info["Try-on"] == "model_shot" and info["Scene"] == "beach"
    assert "woman wearing a blue cotton top" in info["Prompt"]
    assert "sandy beach" in info["Prompt"]


def test_a_seed_decides_the_picture(photo, tee, models):
    first = run(_photo_request(photo, (tee,), seed=7), models_dir=models).images[0]
    again = run(_photo_request(photo, (tee,), seed=7), models_dir=models).images[0]
    other = run(_photo_request(photo, (tee,), seed=8), models_dir=models).images[0]

    assert np.array_equal(_pixels(first.image), _pixels(again.image))
    assert not np.array_equal(_pixels(first.image), _pixels(other.image))


def test_batch_image_i_is_the_picture_of_seed_plus_i(photo, tee, models):
    batch = run(_photo_request(photo, (tee,), seed=40, batch_size=2), models_dir=models)
    single = run(_photo_request(photo, (tee,), seed=41), models_dir=models).images[0]

    assert [image.seed for image in batch.images] == [40, 41]
    assert np.array_equal(_pixels(batch.images[1].image), _pixels(single.image))
    assert parse_infotext(batch.images[1].infotext)["Seed"] == "41"


def test_random_seed_is_recorded(photo, tee, models):
    output = run(_photo_request(photo, (tee,), seed=-1), models_dir=models)

    seed = output.images[0].seed
    assert 0 <= seed < 2**32 and output.params["seed"] == seed
    assert parse_infotext(output.images[0].infotext)["Seed"] == str(seed)


def test_infotext_parses_back_to_the_parameters_used(photo, tee, models):
    request = _photo_request(
        photo,
        (tee,),
        sampler_name="Euler a",
        cfg_scale=5.5,
        denoising_strength=0.6,
        clip_skip=2,
        mask_blur=3.0,
        prompt="(linen:1.2)",
        negative_prompt="wrinkles",
    )
    generated = run(request, models_dir=models).images[0]
    info = parse_infotext(read_png_infotext(Image.open(io.BytesIO(generated.png_bytes()))))

    assert info["Steps"] == "2" and info["Sampler"] == "Euler a"
    assert info["CFG scale"] == "5.5" and info["Seed"] == "1234"
    assert (info["Size-1"], info["Size-2"]) == ("128", "192")
    assert info["Denoising strength"] == "0.6" and info["Clip skip"] == "2"
    assert info["Mask blur"] == "3.0" and info["Inpaint area"] == "Only masked"
    assert info["Model"] == "tiny-sd-inpaint" and len(info["Model hash"]) == 10
    assert info["Prompt"].endswith("(linen:1.2)")
    assert info["Negative prompt"].endswith("wrinkles")
    assert "Module: mediapipe_openpose" in info["ControlNet 0"]
    assert "Weight: 0.7" in info["ControlNet 1"] and "Guidance End: 0.8" in info["ControlNet 1"]


def test_png_carries_the_ai_generated_label(photo, tee, models):
    generated = run(_photo_request(photo, (tee,)), models_dir=models).images[0]
    png = Image.open(io.BytesIO(generated.png_bytes()))

    assert png.text["ai_generated"] == "true"
    assert png.text["DigitalSourceType"].endswith("trainedAlgorithmicMedia")


def test_only_masked_processes_a_crop_and_returns_the_full_size_photo(
    photo, tee, models, monkeypatch
):
    big = photo.resize((1024, 1024), Image.LANCZOS)
    seen = []
    paint = generate.Generator.paint

    def spy(self, **kwargs):
        seen.append(kwargs["image"].size)
        return paint(self, **kwargs)

    regions = []
    region = generate.inpaint_region
    monkeypatch.setattr(generate.Generator, "paint", spy)
    monkeypatch.setattr(
        generate, "inpaint_region", lambda *a: regions.append(region(*a)) or regions[-1]
    )
    output = run(_photo_request(big, (tee,)), models_dir=models)

    assert output.images[0].image.size == (1024, 1024)
    assert seen == [(128, 192)]
    left, top, right, bottom = regions[0]
    assert (right - left) * (bottom - top) < 0.8 * 1024 * 1024
    outside = np.asarray(output.maps["mask"]) == 0
    assert np.array_equal(_pixels(output.images[0].image)[outside], _pixels(big)[outside])


def test_whole_picture_mode_still_returns_the_photos_size(photo, tee, models):
    output = run(_photo_request(photo, (tee,), inpaint_full_res=False), models_dir=models)

    assert output.images[0].image.size == photo.size
    assert "Inpaint area" not in output.images[0].infotext


def test_second_run_loads_no_model(photo, tee, models):
    cache.clear()
    run(_photo_request(photo, (tee,)), models_dir=models)
    loaded = cache.load_count()
    run(_shot_request((tee,)), models_dir=models)

    assert cache.load_count() == loaded


def test_lora_tag_changes_the_picture_and_its_weight_matters(photo, tee, models):
    def picture(prompt, allow=True):
        request = _photo_request(photo, (tee,), prompt=prompt, allow_loras=allow)
        return run(request, models_dir=models).images[0]

    plain = picture("")
    full = picture("<lora:tiny-lora:1>")
    half = picture("<lora:tiny-lora:0.5>")
    plain_again = picture("")
    refused = picture("<lora:tiny-lora:1>", allow=False)

    assert not np.array_equal(_pixels(plain.image), _pixels(full.image))
    assert not np.array_equal(_pixels(full.image), _pixels(half.image))
    # Switching LoRAs off again leaves the checkpoint as it was.
    assert np.array_equal(_pixels(plain.image), _pixels(plain_again.image))
    assert np.array_equal(_pixels(plain.image), _pixels(refused.image))
    info = parse_infotext(full.infotext)
    assert "<lora:tiny-lora:1>" in info["Prompt"]
    assert info["Lora hashes"].startswith("tiny-lora: ")
    assert "<lora:" not in refused.infotext


def test_unknown_lora_names_the_installed_ones(photo, tee, models):
    with pytest.raises(ModelNotFoundError, match="tiny-lora"):
        run(
            _photo_request(photo, (tee,), prompt="<lora:nope:1>", allow_loras=True),
            models_dir=models,
        )


def test_cancel_stops_within_one_step(tee, models):
    steps_seen = []
    cancelled = {"now": False}

    def on_progress(progress):
        if "step" in progress.text:
            steps_seen.append(progress.text)
            cancelled["now"] = True

    with pytest.raises(GenerationCancelled):
        run(
            _shot_request((tee,), steps=8),
            models_dir=models,
            on_progress=on_progress,
            should_cancel=lambda: cancelled["now"],
        )
    assert len(steps_seen) == 1


def test_progress_grows_with_each_step_and_previews_arrive(tee, models):
    reports = []
    runtime = generate.RuntimeConfig(preview_every=2)
    run(
        _shot_request((tee,), steps=5),
        models_dir=models,
        runtime=runtime,
        on_progress=reports.append,
    )

    fractions = [report.fraction for report in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    steps = [r for r in reports if "step" in r.text]
    assert len(steps) == 5 and 0 < steps[0].fraction < steps[-1].fraction
    assert [r.preview is not None for r in steps] == [False, True, False, True, False]
    assert steps[1].preview.size == (128 // 8, 192 // 8)


def test_outfit_paints_the_top_then_the_jacket_over_it(photo, tee, jacket, models, monkeypatch):
    passes = []
    inpaint = generate.inpaint_pass

    def spy(generator, **kwargs):
        passes.append(kwargs["image"])
        return inpaint(generator, **kwargs)

    monkeypatch.setattr(generate, "inpaint_pass", spy)
    # Given jacket first: the order comes from what is worn underneath.
    output = run(_photo_request(photo, (jacket, tee)), models_dir=models)

    assert len(passes) == 2
    # The jacket's pass starts from the painted top, not from the photo or the preview.
    first_mask = np.asarray(output.maps["mask"]) > 0
    assert not np.array_equal(_pixels(passes[1])[first_mask], _pixels(photo)[first_mask])
    outside = np.asarray(output.maps["mask"]) == 0
    assert np.array_equal(_pixels(output.images[0].image)[outside], _pixels(photo)[outside])
    assert "a blue cotton top and a black jacket" in output.params["prompt"]


def test_model_shot_outfit_keeps_both_garments(tee, trousers, models):
    output = run(_shot_request((trousers, tee)), models_dir=models)

    kept = np.asarray(output.maps["mask"]) == 0
    rows = np.nonzero(kept.any(axis=1))[0]
    # The kept area runs from the shoulders down over the legs: top and trousers both.
    assert rows.min() < 192 * 0.35 and rows.max() > 192 * 0.7
    assert np.array_equal(
        _pixels(output.images[0].image)[kept], _pixels(output.maps["composite"])[kept]
    )


@pytest.mark.parametrize(
    ("categories", "message"),
    [(("upper", "upper"), "repeated"), (("dress", "upper"), "dress")],
)
def test_outfit_combinations_are_checked(photo, tee, categories, message, models):
    garments = tuple(
        GarmentInput(
            analyze_garment(draw_product_shot("dress" if c == "dress" else "tshirt").image, c)
        )
        if c == "dress"
        else tee
        for c in categories
    )
    with pytest.raises(InvalidInputError, match=message) as caught:
        run(_photo_request(photo, garments), models_dir=models)
    assert caught.value.argument == "garments"


def test_photo_mode_needs_a_photo(tee, models):
    request = TryOnRequest("photo", (tee,), params=GenerationParams(**FAST), engine="sd")
    with pytest.raises(InvalidInputError) as caught:
        run(request, models_dir=models)
    assert caught.value.argument == "person_photo"


def test_preview_engine_returns_the_composite(photo, tee, models):
    output = run(_photo_request(photo, (tee,), engine="preview"), models_dir=models)

    assert output.engine == "preview"
    assert np.array_equal(_pixels(output.images[0].image), _pixels(output.maps["composite"]))


def test_auto_engine_without_weights_is_the_preview(photo, tee, tmp_path):
    output = run(_photo_request(photo, (tee,), engine="auto"), models_dir=tmp_path)
    assert output.engine == "preview"


def test_sd_without_weights_says_what_is_missing(photo, tee, tmp_path):
    with pytest.raises(ModelNotFoundError, match="fetch_models") as caught:
        run(_photo_request(photo, (tee,), engine="sd"), models_dir=tmp_path)
    assert "checkpoint" in str(caught.value) and "ControlNet" in str(caught.value)


def test_tiny_engine_builds_its_kit_under_models_dir(tee, tiny_kit, tmp_path, no_network):
    (tmp_path / "tiny").symlink_to(tiny_kit)
    request = TryOnRequest("model_shot", (tee,), params=GenerationParams(**FAST), engine="tiny")
    output = run(request, models_dir=tmp_path)
    assert output.engine == "tiny" and output.images[0].image.size == (128, 192)


def test_out_of_memory_retries_once_with_offload(photo, tee, models, monkeypatch):
    configs = []
    paint = generate.Generator.paint

    def short_of_memory(self, **kwargs):
        configs.append(self.runtime.offload)
        if len(configs) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return paint(self, **kwargs)

    monkeypatch.setattr(generate.Generator, "paint", short_of_memory)
    output = run(_photo_request(photo, (tee,)), models_dir=models)
    assert configs == [False, True] and len(output.images) == 1


def test_out_of_memory_twice_is_a_clear_error(photo, tee, models, monkeypatch):
    def never_enough(self, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(generate.Generator, "paint", never_enough)
    with pytest.raises(GenerationError, match="out of memory, even with model offloading"):
        run(_photo_request(photo, (tee,)), models_dir=models)


def test_every_pass_uses_sdpa_attention(models):
    params = GenerationParams(**FAST)
    generator = generate.Generator(
        selection.select_models(models, params), generate.RuntimeConfig()
    )
    processors = {type(p).__name__ for p in generator.pipe.unet.attn_processors.values()}
    assert processors == {"AttnProcessor2_0"}


def test_vae_override_is_loaded_and_recorded(photo, tee, tiny_kit, tmp_path, no_network):
    from diffusers import AutoencoderKL

    models = tmp_path / "models"
    shutil.copytree(tiny_kit, models)
    vae = AutoencoderKL.from_pretrained(models / "checkpoints" / "tiny-sd-inpaint" / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(0.5)  # a visibly different decoder
    vae.save_pretrained(models / "vae" / "tiny-vae", safe_serialization=True)

    plain = run(_photo_request(photo, (tee,)), models_dir=models).images[0]
    swapped = run(_photo_request(photo, (tee,), vae="tiny-vae"), models_dir=models).images[0]

    info = parse_infotext(swapped.infotext)
    assert info["VAE"] == "tiny-vae" and len(info["VAE hash"]) == 10
    assert "VAE" not in parse_infotext(plain.infotext)
    assert not np.array_equal(_pixels(plain.image), _pixels(swapped.image))
    with pytest.raises(ModelNotFoundError, match="tiny-vae"):
        run(_photo_request(photo, (tee,), vae="missing"), models_dir=models)


def test_the_control_maps_and_their_modes_steer_the_picture(photo, tee, models):
    def picture(*units):
        request = _photo_request(photo, (tee,), controlnets=units)
        return _pixels(run(request, models_dir=models).images[0].image)

    both = picture(ControlUnit(weight=1.0), ControlUnit(weight=1.0))
    pose_only = picture(ControlUnit(weight=1.0), ControlUnit(weight=0.0))
    neither = picture(ControlUnit(weight=0.0), ControlUnit(weight=0.0))
    control_first = picture(
        ControlUnit(weight=1.0, control_mode="ControlNet is more important"),
        ControlUnit(weight=1.0),
    )

    pictures = [both, pose_only, neither, control_first]
    for index, first in enumerate(pictures):
        for second in pictures[index + 1 :]:
            assert not np.array_equal(first, second)


def test_a_batch_encodes_its_prompts_once(photo, tee, models, monkeypatch):
    calls = []
    encode = generate.encode_prompt_pair

    def counting(*args, **kwargs):
        calls.append(1)
        return encode(*args, **kwargs)

    monkeypatch.setattr(generate, "encode_prompt_pair", counting)
    output = run(_photo_request(photo, (tee,), batch_size=3), models_dir=models)
    assert len(output.images) == 3 and len(calls) == 1


def test_a_prompt_over_the_token_cap_fails_before_anything_is_painted(tee, models, monkeypatch):
    from pipelines.prompts import MAX_PROMPT_TOKENS, USER_TEXT_MAX

    painted, loras = [], []
    monkeypatch.setattr(generate, "inpaint_pass", lambda *a, **k: painted.append(1))
    use_loras = generate.Generator.use_loras
    monkeypatch.setattr(
        generate.Generator, "use_loras", lambda self, *a: loras.append(1) or use_loras(self, *a)
    )
    # Within the web's character cap, but the tiny kit's tokenizer spells digits and commas one
    # token each: with the built model-shot prompt, over the token cap.
    digits = "1," * (USER_TEXT_MAX // 2)
    with pytest.raises(InvalidInputError) as caught:
        run(_shot_request((tee,), prompt=digits), models_dir=models)
    assert caught.value.argument == "prompt"
    assert "tokens long" in caught.value.message
    assert f"at most {MAX_PROMPT_TOKENS} tokens" in caught.value.message
    assert painted == [] and loras == []


def test_a_description_of_megabytes_reaches_the_prompt_as_its_first_words(tee, models):
    from dataclasses import replace

    from pipelines.prompts import DESCRIPTION_PROMPT_WORDS, build_prompt

    huge = " ".join(f"w{index}" for index in range(300_000))  # 2 MB
    # Checked first: without the cap, the run below would encode two million tokens.
    assert len(build_prompt(category="upper", description=huge)[0]) < 1000
    output = run(_shot_request((replace(tee, description=huge),)), models_dir=models)
    prompt = parse_infotext(output.images[0].infotext)["Prompt"]
    last = DESCRIPTION_PROMPT_WORDS - 1
    assert f"w{last}," in prompt and f"w{last + 1}" not in prompt
    assert output.params["prompt"] == prompt
