"""Infotext as the WebUI writes and reads it, and its place in saved pictures."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipelines.errors import InvalidInputError
from pipelines.infotext import (
    DIGITAL_SOURCE_TYPE,
    format_controlnet_unit,
    format_infotext,
    infotext_pnginfo,
    parse_infotext,
    read_png_infotext,
    save_png_with_infotext,
)
from pipelines.samplers import resolve_sampler
from pipelines.text import has_unsafe, one_line

OPENPOSE_UNIT = (
    "Module: openpose, Model: control_v11p_sd15_openpose [cab727d4], Weight: 1.0, "
    "Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 0.5, Threshold B: 0.5, "
    "Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"
)

# Literal infotexts in the shapes WebUI 1.10 (and an old 1.5) write them.
WEBUI_INPAINT = (
    "photo of a woman wearing a (red linen shirt:1.2), studio light, <lora:fabric_detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4)\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, "
    "Clip skip: 2, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, "
    f'ControlNet 0: "{OPENPOSE_UNIT}", '
    'Lora hashes: "fabric_detail: 1a2b3c4d5e6f", Version: v1.10.1'
)
WEBUI_MULTILINE = (
    "a model on a beach,\n"
    "wearing a linen dress\n"
    "BREAK golden hour\n"
    "Negative prompt: blurry,\n"
    "extra fingers\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 12, "
    "Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)
WEBUI_STEPS_IN_PROMPT = (
    "poster with the words Steps: 3, Seed: 4, Size: 5 on it\n"
    "Steps: 25, Sampler: DDIM, Schedule type: Automatic, CFG scale: 7.5, Seed: 99, Size: 512x512"
)
WEBUI_NO_NEGATIVE = (
    "linen shirt product photo\n"
    "Steps: 20, Sampler: UniPC, CFG scale: 7, Seed: 5, Size: 512x512, Model hash: 6ce0161689"
)
WEBUI_OLD_SAMPLER = (
    "garment on a mannequin\n"
    "Negative prompt: text, watermark\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.5.1"
)


def test_format_writes_the_webui_order_and_quotes():
    params = {
        "Version": "v1.10.1",
        "Lora hashes": {"fabric_detail": "1a2b3c4d5e6f"},
        "ControlNet 0": OPENPOSE_UNIT,
        "Masked area padding": 32,
        "Inpaint area": "Only masked",
        "Mask blur": 4,
        "Clip skip": 2,
        "Denoising strength": 0.75,
        "Model": "v1-5-pruned-emaonly",
        "Model hash": "6ce0161689",
        "Size": (512, 768),
        "Seed": 3141592653,
        "CFG scale": 6.5,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "Steps": 30,
    }
    text = format_infotext(
        "photo of a woman wearing a (red linen shirt:1.2), studio light, <lora:fabric_detail:0.6>",
        "lowres, bad anatomy, (worst quality:1.4)",
        params,
    )
    assert text == WEBUI_INPAINT


def test_format_leaves_out_none_and_empty_negative_and_keeps_extra_keys_last():
    text = format_infotext("a shirt", "", {"Tryon engine": "sd", "Steps": 20, "VAE": None})
    assert text == "a shirt\nSteps: 20, Tryon engine: sd"


def test_format_quotes_values_with_newlines_and_colons_as_json():
    text = format_infotext("p", "n", {"Steps": 1, "Note": 'a "b"\nc: d', "Flag": "Flag"})
    assert text.endswith('Note: "a \\"b\\"\\nc: d", Flag')
    assert parse_infotext(text + ", Seed: 1")["Note"] == 'a "b"\nc: d'


def test_controlnet_unit_in_the_extension_format():
    unit = {
        "module": "openpose",
        "model": "control_v11p_sd15_openpose [cab727d4]",
        "weight": 1.0,
        "resize_mode": "Crop and Resize",
        "processor_res": 512,
        "threshold_a": 0.5,
        "threshold_b": 0.5,
        "guidance_start": 0.0,
        "guidance_end": 1.0,
        "pixel_perfect": False,
        "control_mode": "Balanced",
    }
    assert format_controlnet_unit(unit) == OPENPOSE_UNIT
    with pytest.raises(InvalidInputError, match="may not contain"):
        format_controlnet_unit({"Module": "canny", "Model": "a, b"})


@pytest.mark.parametrize(
    "text", [WEBUI_INPAINT, WEBUI_MULTILINE, WEBUI_STEPS_IN_PROMPT, WEBUI_OLD_SAMPLER]
)
def test_round_trip(text):
    parsed = parse_infotext(text)
    params = {
        key: value
        for key, value in parsed.items()
        if key in text and key not in ("Prompt", "Negative prompt")
    }
    params.pop("Size-1", None)
    params.pop("Size-2", None)
    params = {"Size": f"{parsed['Size-1']}x{parsed['Size-2']}", **params}
    again = format_infotext(parsed["Prompt"], parsed["Negative prompt"], params)
    # The WebUI's multi-line prompts are read as written and written back on one line each.
    one_line = {key: parsed[key].replace("\n", " ") for key in ("Prompt", "Negative prompt")}
    assert parse_infotext(again) == {**parsed, **one_line}


def test_parse_webui_inpaint_infotext():
    parsed = parse_infotext(WEBUI_INPAINT)
    assert parsed["Prompt"].startswith("photo of a woman wearing a (red linen shirt:1.2)")
    assert parsed["Negative prompt"] == "lowres, bad anatomy, (worst quality:1.4)"
    assert parsed["Steps"] == "30"
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["CFG scale"] == "6.5"
    assert parsed["Seed"] == "3141592653"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
    assert "Size" not in parsed
    assert parsed["Clip skip"] == "2"
    assert parsed["Inpaint area"] == "Only masked"
    assert parsed["ControlNet 0"] == OPENPOSE_UNIT
    assert parsed["Lora hashes"] == "fabric_detail: 1a2b3c4d5e6f"
    assert parsed["Version"] == "v1.10.1"


def test_parse_multiline_prompts():
    parsed = parse_infotext(WEBUI_MULTILINE)
    assert parsed["Prompt"] == "a model on a beach,\nwearing a linen dress\nBREAK golden hour"
    assert parsed["Negative prompt"] == "blurry,\nextra fingers"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("768", "512")


def test_parse_prompt_that_mentions_steps():
    parsed = parse_infotext(WEBUI_STEPS_IN_PROMPT)
    assert parsed["Prompt"] == "poster with the words Steps: 3, Seed: 4, Size: 5 on it"
    assert parsed["Steps"] == "25"
    assert parsed["Seed"] == "99"


def test_a_last_line_with_fewer_than_three_params_is_prompt():
    parsed = parse_infotext("a shirt\nSteps: 20, Seed: 1")
    assert parsed["Prompt"] == "a shirt\nSteps: 20, Seed: 1"
    assert "Steps" not in parsed


def test_parse_without_negative_prompt_fills_webui_defaults():
    parsed = parse_infotext(WEBUI_NO_NEGATIVE)
    assert parsed["Negative prompt"] == ""
    assert parsed["Clip skip"] == "1"
    assert parsed["Schedule type"] == "Automatic"
    assert parsed["RNG"] == "GPU"
    assert parsed["Inpaint area"] == "Whole picture"
    assert parsed["Masked area padding"] == 32
    assert parsed["Hires sampler"] == "Use same sampler"


def test_parse_old_single_name_sampler():
    parsed = parse_infotext(WEBUI_OLD_SAMPLER)
    assert parsed["Sampler"] == "DPM++ 2M Karras"
    assert parsed["Schedule type"] == "Automatic"
    spec = resolve_sampler(parsed["Sampler"], parsed["Schedule type"])
    assert (spec.name, spec.schedule_type) == ("DPM++ 2M", "Karras")


def _png_bytes(text: str) -> io.BytesIO:
    buffer = io.BytesIO()
    save_png_with_infotext(Image.new("RGB", (8, 8), "white"), buffer, text)
    buffer.seek(0)
    return buffer


def test_png_write_then_read(tmp_path):
    path = tmp_path / "shot.png"
    save_png_with_infotext(Image.new("RGB", (8, 8), "white"), path, WEBUI_INPAINT)
    assert read_png_infotext(path) == WEBUI_INPAINT
    with Image.open(path) as image:
        assert read_png_infotext(image) == WEBUI_INPAINT


def test_png_keeps_non_latin_prompts():
    text = "一件红色衬衫, été\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1"
    assert read_png_infotext(_png_bytes(text)) == text


def test_saved_png_carries_the_ai_label():
    with Image.open(_png_bytes("a shirt\nSteps: 1, Seed: 1, CFG scale: 7")) as image:
        assert image.text["ai_generated"] == "true"
        assert image.text["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
        assert DIGITAL_SOURCE_TYPE.endswith("trainedAlgorithmicMedia")
    assert len(infotext_pnginfo("x").chunks) == 4


def test_png_without_infotext_reads_none():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    buffer.seek(0)
    assert read_png_infotext(buffer) is None


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_reads_the_webui_exif_user_comment(image_format):
    text = "a shirt, été\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1"
    exif = Image.Exif()
    # The WebUI writes piexif's UserComment: "UNICODE\0" then UTF-16 big-endian.
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format=image_format, exif=exif)
    buffer.seek(0)
    assert read_png_infotext(buffer) == text


# --- no prompt or value spans lines --------------------------------------------------------------

PARAMS = {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 1, "Size": (512, 512)}
LINE_BREAKERS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\r\n"]


def test_a_forged_negative_prompt_stays_on_the_prompt_line():
    text = format_infotext("blue\nNegative prompt: forged negative", "lowres", PARAMS)
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "blue Negative prompt: forged negative"
    assert parsed["Negative prompt"] == "lowres"
    assert len(text.splitlines()) == 3


@pytest.mark.parametrize("breaker", LINE_BREAKERS)
def test_prompts_are_written_on_one_line_each(breaker):
    text = format_infotext(
        f"blue{breaker}Steps: 99, Seed: 7, Size: 1x1", f"lowres{breaker}extra fingers", PARAMS
    )
    assert len(text.splitlines()) == 3 and text.count("\n") == 2
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "blue Steps: 99, Seed: 7, Size: 1x1"
    assert parsed["Negative prompt"] == "lowres extra fingers"
    assert parsed["Steps"] == "20" and parsed["Seed"] == "1"


def test_a_prompt_that_begins_like_the_negative_prompt_stays_the_prompt():
    text = format_infotext("Negative prompt: forged", "lowres", PARAMS)
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "negative prompt: forged"
    assert parsed["Negative prompt"] == "lowres"


# A newline the WebUI quotes already (test_format_quotes_values_with_newlines_and_colons_as_json).
@pytest.mark.parametrize("breaker", [*LINE_BREAKERS[1:-1], "\x7f", "\u202e", "\u2066", "\ud800"])
def test_values_with_line_breaks_or_controls_are_quoted_escaped_and_read_back(breaker):
    value = f"tiny{breaker}lora"
    text = format_infotext("p", "n", {**PARAMS, "Note": value})
    assert len(text.splitlines()) == 3
    assert not has_unsafe(text.replace("\n", ""))
    assert parse_infotext(text)["Note"] == value


@settings(max_examples=300)
@given(st.text(), st.text(), st.text())
def test_whatever_the_prompts_hold_they_read_back_as_written_on_one_line(prompt, negative, note):
    text = format_infotext(prompt, negative, {**PARAMS, "Note": note or None})
    assert not has_unsafe(text.replace("\n", ""))
    parsed = parse_infotext(text)
    expected = one_line(prompt).strip()
    if expected.startswith("Negative prompt:"):
        expected = "n" + expected[1:]
    assert parsed["Prompt"] == expected
    assert parsed["Negative prompt"] == one_line(negative).strip()
    assert parsed["Steps"] == "20" and parsed["Seed"] == "1"
