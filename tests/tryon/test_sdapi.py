"""The WebUI-compatible endpoints answer WebUI clients in the WebUI's shapes."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

from catalog.models import Garment
from pipelines.infotext import parse_infotext
from pipelines.samples import draw_product_shot
from tests.conftest import png_base64
from tests.factories import GarmentFactory, TryOnJobFactory
from tryon import deletion, housekeeping, intake
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db


def test_a_token_is_required(client):
    for path in ("/sdapi/v1/samplers", "/sdapi/v1/progress", "/controlnet/model_list"):
        assert client.get(path).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_txt2img_with_two_controlnet_units_answers_in_webui_shape(
    webui, analysed_garment, tiny_models_dir, settings
):
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60  # the endpoint waits at most this long for the job
    payload = {
        "prompt": "linen, (summer:1.2)",
        "negative_prompt": "blurry",
        "sampler_name": "Euler a",
        "steps": 2,
        "cfg_scale": 6,
        "seed": 77,
        "width": 128,
        "height": 192,
        "batch_size": 1,
        "override_settings": {"clip_skip": 2},
        "alwayson_scripts": {
            "ControlNet": {
                "args": [
                    {"enabled": True, "module": "openpose_full", "model": "", "weight": 0.9,
                     "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": 2},
                    {"enabled": True, "module": "canny", "model": "", "weight": 0.5,
                     "guidance_start": 0.1, "guidance_end": 0.7,
                     "control_mode": "My prompt is more important"},
                    {"enabled": True, "module": "reference_adain+attn", "model": "None",
                     "weight": 0.6, "threshold_a": 0.25, "guidance_end": 0.9},
                ]
            },
            "try-on": {"args": [{"garment": analysed_garment.pk, "pose": "three_quarter",
                                 "scene": "runway"}]},
        },
    }  # fmt: skip
    # Committed at once (transaction=True): the job runs, eagerly, before the endpoint waits.
    response = webui.post("/sdapi/v1/txt2img", payload, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"images", "parameters", "info"}
    assert body["parameters"]["seed"] == 77
    info = json.loads(body["info"])
    assert info["seed"] == 77 and info["all_seeds"] == [77]
    picture = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert picture.size == (128, 192)
    fields = parse_infotext(info["infotexts"][0])
    assert fields["Sampler"] == "Euler a" and fields["Clip skip"] == "2"
    assert "Weight: 0.9" in fields["ControlNet 0"]
    assert "Control Mode: ControlNet is more important" in fields["ControlNet 0"]
    assert "Guidance Start: 0.1" in fields["ControlNet 1"]
    assert "Control Mode: My prompt is more important" in fields["ControlNet 1"]
    # The reference unit steers with the garment's picture, written as the extension does.
    reference = fields["ControlNet 2"]
    assert "Module: reference_adain+attn" in reference and "Weight: 0.6" in reference
    assert "Threshold A: 0.25" in reference and "Guidance End: 0.9" in reference
    assert fields["Scene"] == "runway" and "(summer:1.2)" in fields["Prompt"]

    # PNG Info reads it back, as the WebUI's does.
    read = webui.post("/sdapi/v1/png-info", {"image": body["images"][0]}, format="json").json()
    assert read["parameters"]["Seed"] == "77" and read["info"] == info["infotexts"][0]


@pytest.mark.django_db(transaction=True)
def test_txt2img_with_enable_hr_is_twice_the_size_and_its_strength_is_the_hires_ones(
    webui, analysed_garment, tiny_models_dir, settings
):
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60
    payload = {
        # enable_hr as 1, as WebUI clients may send it (the WebUI reads it as true).
        "steps": 2, "seed": 5, "width": 64, "height": 96, "enable_hr": 1, "hr_scale": 2,
        "hr_upscaler": "Lanczos", "hr_second_pass_steps": 3, "denoising_strength": 0.3,
        "alwayson_scripts": {"try-on": {"args": [{"garment": analysed_garment.pk}]}},
    }  # fmt: skip
    response = webui.post("/sdapi/v1/txt2img", payload, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    picture = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert picture.size == (128, 192)
    fields = parse_infotext(json.loads(body["info"])["infotexts"][0])
    assert fields["Hires upscale"] == "2" and fields["Hires steps"] == "3"
    assert fields["Denoising strength"] == "0.3"  # the WebUI's txt2img: the hires pass's
    # A model upscaler is refused by name, as one this engine does not have.
    model = webui.post(
        "/sdapi/v1/txt2img", {**payload, "hr_upscaler": "4x-UltraSharp"}, format="json"
    )
    assert model.status_code == 400 and model.json()["field"] == "hr_upscaler"


@pytest.mark.django_db(transaction=True)
def test_txt2img_takes_an_ip_adapter_unit_and_writes_it_as_the_extension_does(
    webui, analysed_garment, ip_kit, tmp_path, settings
):
    settings.MODELS_DIR = tmp_path / "models"
    settings.MODELS_DIR.mkdir()
    (settings.MODELS_DIR / "tiny").symlink_to(ip_kit)  # the tiny engine's kit, with its adapter
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60
    unit = {
        "enabled": True,
        "module": "ip-adapter_clip_h",
        "model": "ip-adapter_tiny",
        "weight": 0.7,
    }
    payload = {
        "steps": 2, "seed": 5, "width": 64, "height": 96,
        "alwayson_scripts": {"ControlNet": {"args": [unit]},
                             "try-on": {"args": [{"garment": analysed_garment.pk}]}},
    }  # fmt: skip
    response = webui.post("/sdapi/v1/txt2img", payload, format="json")
    assert response.status_code == 200, response.content
    fields = parse_infotext(json.loads(response.json()["info"])["infotexts"][0])
    assert "Module: ip-adapter_clip" in fields["ControlNet 3"]
    assert "Model: ip-adapter_tiny [" in fields["ControlNet 3"]
    assert "Weight: 0.7" in fields["ControlNet 3"]
    # An adapter that is not installed fails the job by its name (the WebUI's 500 and error
    # body, as for any failed generation), never silently left out.
    unit["model"] = "ip-adapter_sd15"
    missing = webui.post("/sdapi/v1/txt2img", payload, format="json")
    assert missing.status_code == 500
    assert "no ipadapter model named 'ip-adapter_sd15'" in missing.json()["detail"]


def test_txt2img_without_a_garment_says_how_to_give_one(webui):
    response = webui.post("/sdapi/v1/txt2img", {"prompt": "x"}, format="json")
    assert response.status_code == 400 and "try-on" in response.json()["message"]


def _with(body: dict, path: str, value) -> dict:
    """A copy of ``body`` with ``value`` at the dotted ``path`` (a number indexes a list)."""
    body = json.loads(json.dumps(body))
    *outer, last = path.split(".")
    node = body
    for key in outer:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[int(last) if isinstance(node, list) else last] = value
    return body


def _as_json(body) -> str:
    # json.dumps writes an infinite float as Infinity, which DRF refuses as not JSON; a client's
    # 1e400 is JSON, and Python reads it as an infinite float.
    return json.dumps(body).replace("Infinity", "1e400")


TRYON = "alwayson_scripts.try-on.args.0"
LOOKS = f"{TRYON}.model_attributes"
CONTROLNET = "alwayson_scripts.ControlNet"
UNITS = f"{CONTROLNET}.args"


# Bodies that got a 500, were accepted, or were refused naming another field: (endpoint, where
# in a valid body, what is put there, the field the 400 names).
MALFORMED = [
    ("txt2img", "alwayson_scripts", "try-on", "alwayson_scripts"),
    ("txt2img", "alwayson_scripts.try-on", "garment", "alwayson_scripts.try-on"),
    ("txt2img", "alwayson_scripts.try-on", 5, "alwayson_scripts.try-on"),
    ("txt2img", "alwayson_scripts.try-on", {}, f"{TRYON}.garment"),
    ("txt2img", "alwayson_scripts.try-on.args", "x", "alwayson_scripts.try-on.args"),
    ("txt2img", "alwayson_scripts.try-on.args", {"0": {}}, "alwayson_scripts.try-on.args"),
    ("txt2img", "alwayson_scripts.try-on.args", [], f"{TRYON}.garment"),
    ("txt2img", TRYON, "x", TRYON),
    ("txt2img", f"{TRYON}.garment", [1], f"{TRYON}.garment"),
    ("txt2img", f"{TRYON}.garment", "abc", f"{TRYON}.garment"),
    ("txt2img", f"{TRYON}.garment", {"id": 1}, f"{TRYON}.garment"),
    ("txt2img", f"{TRYON}.garment", True, f"{TRYON}.garment"),
    ("txt2img", LOOKS, {"hair": 5}, f"{LOOKS}.hair"),
    ("txt2img", LOOKS, {"age_range": []}, f"{LOOKS}.age_range"),
    ("txt2img", LOOKS, ["hair"], LOOKS),
    ("txt2img", LOOKS, "hair", LOOKS),
    ("txt2img", f"{TRYON}.pose", ["front_standing"], f"{TRYON}.pose"),
    ("txt2img", f"{TRYON}.scene", {"name": "beach"}, f"{TRYON}.scene"),
    ("txt2img", CONTROLNET, [{"module": "canny"}], CONTROLNET),
    ("txt2img", CONTROLNET, "x", CONTROLNET),
    ("txt2img", UNITS, {}, UNITS),
    ("txt2img", UNITS, [{"module": "canny", "model": {}}], f"{UNITS}.0.model"),
    ("txt2img", "override_settings", "clip_skip", "override_settings"),
    ("txt2img", "override_settings", ["clip_skip"], "override_settings"),
    ("txt2img", "n_iter", 2.5, "n_iter"),
    ("txt2img", "n_iter", True, "n_iter"),
    ("txt2img", "n_iter", float("inf"), "n_iter"),
    ("txt2img", "batch_size", -2, "batch_size"),
    ("img2img", "alwayson_scripts", [], "alwayson_scripts"),
    ("img2img", CONTROLNET, "x", CONTROLNET),
    ("img2img", "inpaint_full_res", "false", "inpaint_full_res"),
    ("img2img", "inpaint_full_res", [], "inpaint_full_res"),
    ("img2img", "inpainting_mask_invert", "x", "inpainting_mask_invert"),
    ("img2img", "inpainting_mask_invert", {}, "inpainting_mask_invert"),
    ("img2img", "batch_size", float("inf"), "batch_size"),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "path", "value", "field"), MALFORMED)
def test_a_malformed_body_gets_400_naming_the_field_and_stores_nothing(
    webui, merchant, settings, endpoint, path, value, field
):
    settings.JOB_DEADLINE = 0  # a body wrongly accepted answers at once, its job still queued
    garment = GarmentFactory(merchant=merchant, analysis_status=Garment.AnalysisStatus.DONE)
    picture = png_base64(Image.new("RGB", (128, 128), "white"))
    valid = {
        "txt2img": {"alwayson_scripts": {"try-on": {"args": [{"garment": garment.pk}]}}},
        "img2img": {"init_images": [picture]},
    }[endpoint]
    body = _as_json(_with({"steps": 2, "width": 128, "height": 128, **valid}, path, value))
    response = webui.post(f"/sdapi/v1/{endpoint}", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not TryOnJob.objects.exists() and _stored(settings) == []


@pytest.mark.parametrize("endpoint", ["txt2img", "img2img", "png-info"])
@pytest.mark.parametrize("body", ["[1]", '"x"', "5", "null"])
def test_a_body_that_is_not_a_json_object_gets_400(webui, endpoint, body):
    response = webui.post(f"/sdapi/v1/{endpoint}", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"message": "the body must be a JSON object"}


def test_an_empty_body_names_the_missing_garment(webui):
    response = webui.post("/sdapi/v1/txt2img", "", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["field"] == f"{TRYON}.garment"


def test_a_form_body_gets_415(webui):
    response = webui.post("/sdapi/v1/txt2img", {"alwayson_scripts": "try-on"})
    assert response.status_code == 415 and "message" in response.json()


def test_progress_and_interrupt(webui, merchant):
    idle = webui.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0
    job = TryOnJobFactory(owner=merchant, status="running", progress=0.4, step="step 4/10")
    queued = TryOnJobFactory(owner=merchant)
    busy = webui.get("/sdapi/v1/progress").json()
    assert busy["progress"] == 0.4 and busy["textinfo"] == "step 4/10"
    assert busy["state"]["job_count"] == 2 and busy["current_image"] is None
    assert webui.post("/sdapi/v1/interrupt").status_code == 200
    assert TryOnJob.objects.get(pk=queued.pk).status == "cancelled"
    assert TryOnJob.objects.get(pk=job.pk).cancel_requested


def test_model_lists(webui, settings, tiny_kit):
    settings.MODELS_DIR = tiny_kit
    samplers = webui.get("/sdapi/v1/samplers").json()
    assert {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {}} in samplers
    models = webui.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["tiny-sd-inpaint"]
    assert [lora["name"] for lora in webui.get("/sdapi/v1/loras").json()] == ["tiny-lora"]
    names = webui.get("/controlnet/model_list").json()["model_list"]
    assert [name.split(" [")[0] for name in names] == ["tiny-canny", "tiny-openpose"]


def _bomb_png(side: int = 30000) -> bytes:
    """A valid PNG header claiming ``side``² pixels, then a little zlib data: a few kilobytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (side // 8 + 1) * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "content",
    [
        b"not a picture",
        _bomb_png(),
        base64.b64decode(png_base64(Image.fromarray(data.astronaut())))[:3000],
    ],
    ids=["text", "bomb", "truncated"],
)
def test_png_info_refuses_what_is_not_a_whole_picture(webui, content):
    payload = {"image": base64.b64encode(content).decode()}
    response = webui.post("/sdapi/v1/png-info", payload, format="json")
    assert response.status_code == 400 and response.json()["field"] == "image"


def _stored(settings) -> list:
    return [p for p in settings.PRIVATE_MEDIA_ROOT.rglob("*") if p.is_file()]


@pytest.fixture
def init_and_mask():
    picture = Image.fromarray(data.astronaut()).resize((256, 256))
    mask = Image.new("L", picture.size)
    ImageDraw.Draw(mask).rectangle((150, 150, 210, 230), fill=255)
    return picture, mask


@pytest.mark.django_db(transaction=True)
def test_img2img_with_two_controlnet_units_answers_in_webui_shape(
    webui, init_and_mask, tiny_models_dir, settings
):
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60
    picture, mask = init_and_mask
    edges = Image.new("RGB", picture.size)
    ImageDraw.Draw(edges).ellipse((160, 160, 200, 220), outline="white", width=2)
    payload = {
        "init_images": [f"data:image/png;base64,{png_base64(picture)}"],
        "mask": png_base64(mask),
        "mask_blur": 0,
        "inpainting_fill": 1,
        "inpaint_full_res": True,
        "inpaint_full_res_padding": 16,
        "prompt": "a (red:1.3) scarf",
        "negative_prompt": "blurry",
        "sampler_name": "Euler a",
        "steps": 2,
        "cfg_scale": 5,
        "seed": 31,
        "width": 128,
        "height": 128,
        "denoising_strength": 0.6,
        "alwayson_scripts": {
            "ControlNet": {
                "args": [
                    {"enabled": True, "module": "openpose_full", "model": "tiny-openpose",
                     "weight": 0.8, "guidance_start": 0.0, "guidance_end": 0.9,
                     "control_mode": 0},
                    {"enabled": True, "module": "none", "model": "tiny-canny [0000]",
                     "image": {"image": png_base64(edges)}, "weight": 0.6, "guidance_start": 0.1,
                     "guidance_end": 1.0, "control_mode": "ControlNet is more important"},
                    {"enabled": False, "module": "depth", "model": "None"},
                ]
            }
        },
    }  # fmt: skip
    payload["alwayson_scripts"]["ControlNet"]["args"][1]["model"] = "tiny-canny"
    response = webui.post("/sdapi/v1/img2img", payload, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"images", "parameters", "info"}
    assert body["parameters"]["init_images"] is None and body["parameters"]["seed"] == 31
    result = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).convert("RGB"))
    assert result.shape == (256, 256, 3)
    changed = np.any(result != np.asarray(picture), axis=2)
    assert changed.any() and not changed[np.asarray(mask) == 0].any()
    info = json.loads(body["info"])
    fields = parse_infotext(info["infotexts"][0])
    assert fields["Try-on"] == "inpaint" and fields["Seed"] == "31"
    assert "(red:1.3) scarf" in fields["Prompt"] and "blurry" in fields["Negative prompt"]
    assert (
        "Module: openpose_full" in fields["ControlNet 0"]
        and "Weight: 0.8" in fields["ControlNet 0"]
    )
    assert "Module: none" in fields["ControlNet 1"]
    assert "Control Mode: ControlNet is more important" in fields["ControlNet 1"]

    job = TryOnJob.objects.get()
    assert job.kind == "inpaint" and job.garment is None
    stored = job.results.get()
    with stored.canny.open("rb") as canny:
        assert np.array_equal(np.asarray(Image.open(canny).convert("RGB")), np.asarray(edges))
    with stored.openpose.open("rb") as openpose:
        assert np.asarray(Image.open(openpose)).any(), "the astronaut's pose, drawn"


@pytest.mark.django_db(transaction=True)
def test_img2img_without_units_or_mask_repaints_all_unguided(webui, tiny_models_dir, settings):
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60
    picture = Image.fromarray(data.astronaut()).resize((128, 128))
    payload = {"init_images": [png_base64(picture)], "steps": 1, "width": 64, "height": 64,
               "seed": 5, "batch_size": 2, "denoising_strength": 1.0}  # fmt: skip
    body = webui.post("/sdapi/v1/img2img", payload, format="json").json()
    assert len(body["images"]) == 2 and json.loads(body["info"])["all_seeds"] == [5, 6]
    fields = parse_infotext(json.loads(body["info"])["infotexts"][0])
    assert "Weight: 0.0" in fields["ControlNet 0"] and "Weight: 0.0" in fields["ControlNet 1"]


@pytest.mark.django_db(transaction=True)
def test_img2img_reference_units_read_their_own_picture_or_the_init_one(
    webui, init_and_mask, tiny_models_dir, settings
):
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60
    picture, mask = init_and_mask
    shot = draw_product_shot("tshirt", size=(192, 256)).image
    unit = {"enabled": True, "module": "reference_adain", "weight": 0.7, "threshold_a": 0.3}
    payload = {
        "init_images": [png_base64(picture)], "mask": png_base64(mask), "steps": 1,
        "width": 64, "height": 64, "seed": 5,
        "alwayson_scripts": {"ControlNet": {"args": [{**unit, "image": png_base64(shot)}]}},
    }  # fmt: skip

    def reference_unit() -> str:
        response = webui.post("/sdapi/v1/img2img", payload, format="json")
        assert response.status_code == 200, response.content
        return parse_infotext(json.loads(response.json()["info"])["infotexts"][0])["ControlNet 2"]

    assert "Module: reference_adain" in reference_unit()
    job = TryOnJob.objects.get()
    assert job.reference_input and "reference" in job.controls
    assert job.params["ip_adapter"]["weight"] == 0.0  # no IP-Adapter unit: off, as in the WebUI
    # Without its own image, the unit reads the init picture: nothing more is stored.
    payload["alwayson_scripts"]["ControlNet"]["args"] = [unit]
    assert "Weight: 0.7" in reference_unit()
    job = TryOnJob.objects.latest("created_at")
    assert not job.reference_input and "reference" in job.controls


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"init_images": []}, "init_images"),
        ({"init_images": ["not base64!"]}, "init_images"),
        ({"init_images": [base64.b64encode(b"<html>hi</html>").decode()]}, "init_images"),
        ({"mask": "small"}, "mask"),
        ({"mask": "empty"}, "mask"),
        ({"inpainting_mask_invert": 1, "mask": "full"}, "mask"),
        ({"units": [{"module": "depth_midas"}]}, "alwayson_scripts.ControlNet.args.0.module"),
        ({"units": [{"module": "none", "model": "x"}]}, "alwayson_scripts.ControlNet.args.0.model"),
        ({"units": [{"module": "none", "model": "tiny-canny"}]}, "controlnet.canny.image"),
        (
            {"units": [{"module": "canny"}, {"module": "canny"}]},
            "alwayson_scripts.ControlNet.args.1",
        ),
        ({"units": [{"module": "canny", "threshold_a": 300}]}, "controlnet.canny.threshold_a"),
        ({"units": [{"module": "canny", "weight": 5}]}, "controlnet.1.weight"),
        (
            {
                "units": [
                    {"module": "reference_only", "image": "a"},
                    {"module": "ip-adapter_clip_h", "image": "b"},
                ]
            },
            "alwayson_scripts.ControlNet.args",
        ),
        (
            {"units": [{"module": "reference_only", "image": "???"}]},
            "alwayson_scripts.ControlNet.args.reference.image",
        ),
        (
            {"units": [{"module": "reference_only", "image": [1]}]},
            "alwayson_scripts.ControlNet.args.reference.image",
        ),
        (
            {"units": [{"module": "ip-adapter_clip_h", "image": {"image": {"a": 1}}}]},
            "alwayson_scripts.ControlNet.args.ip_adapter.image",
        ),
        ({"steps": 0}, "steps"),
        ({"n_iter": 5, "batch_size": 2}, "n_iter"),
        ({"prompt": "x" * 1001}, "prompt"),
    ],
)
def test_img2img_refuses_bad_input_naming_the_field_and_stores_nothing(
    webui, init_and_mask, settings, change, field
):
    picture, mask = init_and_mask
    masks = {
        "small": mask.resize((128, 128)),
        "empty": Image.new("L", picture.size),
        "full": Image.new("L", picture.size, 255),
    }
    payload = {"init_images": [png_base64(picture)], "mask": png_base64(mask), **change}
    if payload["mask"] in masks:
        payload["mask"] = png_base64(masks[payload["mask"]])
    if "units" in payload:
        payload["alwayson_scripts"] = {"ControlNet": {"args": payload.pop("units")}}
    response = webui.post("/sdapi/v1/img2img", payload, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not TryOnJob.objects.exists() and _stored(settings) == []


def test_inpaint_inputs_are_private_and_go_with_the_job(
    merchant, init_and_mask, settings, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    picture, mask = init_and_mask
    upload = lambda image: SimpleUploadedFile("x.png", base64.b64decode(png_base64(image)))  # noqa: E731
    job = intake.inpaint_job_create(
        owner=merchant,
        image=upload(picture),
        mask=upload(mask),
        controls={"canny": {"module": "none", "image": upload(picture)}},
        reference={"image": upload(mask)},
    )
    assert {f.name.split("/")[0] for f in job.stored_files()} == {"photos", "masks", "controls"}
    assert job.reference_input and len(job.stored_files()) == 4
    for stored in job.stored_files():
        with pytest.raises(ValueError):
            _ = stored.url  # private storage has no public URL
    copy = intake.tryon_job_rerun(job=job, new_seed=True)
    assert copy.controls == job.controls and len(copy.stored_files()) == 4
    with django_capture_on_commit_callbacks(execute=True):
        deletion.tryon_job_delete(job=job)
    assert len(_stored(settings)) == 4  # the copy's own files stay
    with django_capture_on_commit_callbacks(execute=True):
        deletion.tryon_job_delete(job=copy)
    assert _stored(settings) == []


def test_inpaints_are_purged_with_photos_and_have_no_shopper_page(
    merchant, client, init_and_mask, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    picture, _ = init_and_mask
    job = intake.inpaint_job_create(
        owner=merchant, image=SimpleUploadedFile("x.png", base64.b64decode(png_base64(picture)))
    )
    client.force_login(merchant)
    assert client.get(f"/tryon/{job.pk}/").status_code == 404
    old = timezone.now() - timedelta(hours=settings.PERSON_PHOTO_RETENTION_HOURS, minutes=1)
    TryOnJob.objects.filter(pk=job.pk).update(created_at=old, photo_uploaded_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        assert housekeeping.purge_expired() == 1
    assert not TryOnJob.objects.exists() and _stored(settings) == []


def test_a_null_canny_threshold_is_the_extensions_default(
    webui, init_and_mask, monkeypatch, settings
):
    # sd-webui-controlnet sends null (or leaves them out) for "use the preprocessor's default".
    picture, mask = init_and_mask
    monkeypatch.setattr("tryon.intake.enqueue", lambda job: None)  # stored, not run
    unit = {"module": "canny", "model": "control_canny", "threshold_a": None, "threshold_b": None}
    payload = {"init_images": [png_base64(picture)], "mask": png_base64(mask)}
    payload["alwayson_scripts"] = {"ControlNet": {"args": [unit]}}
    settings.JOB_DEADLINE = 0  # the endpoint waits for the job: not here
    webui.post("/sdapi/v1/img2img", payload, format="json")
    assert TryOnJob.objects.get().controls["canny"]["thresholds"] == [100, 200]
