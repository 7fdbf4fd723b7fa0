"""The WebUI-compatible endpoints answer WebUI clients in the WebUI's shapes."""

import base64
import io
import json

import pytest
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pipelines.infotext import parse_infotext
from tests.factories import TryOnJobFactory
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def webui(merchant):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=merchant).key}")
    return client


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
    assert fields["Scene"] == "runway" and "(summer:1.2)" in fields["Prompt"]

    # PNG Info reads it back, as the WebUI's does.
    read = webui.post("/sdapi/v1/png-info", {"image": body["images"][0]}, format="json").json()
    assert read["parameters"]["Seed"] == "77" and read["info"] == info["infotexts"][0]


def test_txt2img_without_a_garment_says_how_to_give_one(webui):
    response = webui.post("/sdapi/v1/txt2img", {"prompt": "x"}, format="json")
    assert response.status_code == 400 and "try-on" in response.json()["message"]


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
    assert webui.get("/controlnet/model_list").json() == {
        "model_list": ["tiny-canny", "tiny-openpose"]
    }


def test_png_info_refuses_what_is_not_a_picture(webui):
    response = webui.post("/sdapi/v1/png-info", {"image": "bm90IGEgcGljdHVyZQ=="}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "image"
