"""What WebUI clients ask before their first picture: HTTP Basic, options per token, the lists
in the WebUI's shapes (telling the truth about the configured engine), and JSON 404s."""

import base64
import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from skimage import data

from pipelines.infotext import parse_infotext
from tests.conftest import png_base64
from tryon.models import ClientOptions

pytestmark = pytest.mark.django_db


def _basic(username: str, password: str) -> APIClient:
    client = APIClient()
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {pair}")
    return client


@pytest.fixture
def token(merchant) -> Token:
    return Token.objects.create(user=merchant)


def test_basic_auth_takes_the_username_and_an_api_token(merchant, token, client):
    assert _basic(merchant.username, token.key).get("/sdapi/v1/samplers").status_code == 200
    assert _basic(merchant.username, token.key).get("/controlnet/version").status_code == 200
    merchant.set_password("account-password-1")
    merchant.save()
    for refused in (
        _basic(merchant.username, "account-password-1"),  # the account's password: never here
        _basic("someone-else", token.key),
        client,  # nothing at all
    ):
        response = refused.get("/sdapi/v1/options")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Basic")
        assert response["Content-Type"] == "application/json"
    header = APIClient()
    header.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert header.get("/sdapi/v1/options").status_code == 200  # the token header still works
    merchant.is_active = False  # a deactivated account's token opens nothing
    merchant.save()
    assert _basic(merchant.username, token.key).get("/sdapi/v1/options").status_code == 401


@pytest.fixture
def tiny_engine(settings, tiny_models_dir):
    settings.TRYON_ENGINE = "tiny"
    return tiny_models_dir / "tiny"


def test_the_lists_are_the_configured_engines_models(webui, tiny_engine, settings, tmp_path):
    (checkpoint,) = webui.get("/sdapi/v1/sd-models").json()
    assert set(checkpoint) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert checkpoint["model_name"] == "tiny-sd-inpaint" and len(checkpoint["sha256"]) == 64
    assert checkpoint["title"] == f"tiny-sd-inpaint [{checkpoint['hash']}]"
    assert checkpoint["filename"] == "checkpoints/tiny-sd-inpaint"  # below MODELS_DIR only
    assert [lora["name"] for lora in webui.get("/sdapi/v1/loras").json()] == ["tiny-lora"]
    assert webui.get("/sdapi/v1/sd-vae").json() == []
    names = webui.get("/controlnet/model_list").json()["model_list"]
    assert [name.split(" [")[0] for name in names] == ["tiny-canny", "tiny-openpose"]
    assert all(len(name.split(" [")[1]) == 9 for name in names)  # "[" 8 hex "]"
    # The preview engine (no weights) uses no model: the lists say so.
    settings.TRYON_ENGINE, settings.MODELS_DIR = "auto", tmp_path
    assert webui.get("/sdapi/v1/sd-models").json() == []
    assert webui.get("/controlnet/model_list").json() == {"model_list": []}


def test_options_are_this_tokens_own(webui, merchant, tiny_engine, django_user_model):
    options = webui.get("/sdapi/v1/options").json()
    (checkpoint,) = webui.get("/sdapi/v1/sd-models").json()
    assert options["sd_model_checkpoint"] == checkpoint["title"]
    assert options["sd_checkpoint_hash"] == checkpoint["sha256"]
    assert options["sd_vae"] == "Automatic" and options["CLIP_stop_at_last_layers"] == 1
    assert options["samples_format"] == "png"

    unknown = webui.post(
        "/sdapi/v1/options",
        {"sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors", "CLIP_stop_at_last_layers": 2},
        format="json",
    )
    assert unknown.status_code == 400 and unknown.json()["field"] == "sd_model_checkpoint"
    assert "v1-5-pruned-emaonly.safetensors" in unknown.json()["message"]
    assert not ClientOptions.objects.exists()  # nothing stored on a refusal
    bad = webui.post("/sdapi/v1/options", {"CLIP_stop_at_last_layers": 13}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "CLIP_stop_at_last_layers"

    change = {
        "sd_model_checkpoint": checkpoint["title"],
        "CLIP_stop_at_last_layers": 2,
        "outdir_samples": "/etc",  # the server's: left as it is
    }
    response = webui.post("/sdapi/v1/options", change, format="json")
    assert response.status_code == 200 and response.content == b"null"
    assert webui.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    other = APIClient()
    other_user = django_user_model.objects.create_user("other-client", password="pw-x-123456")
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other_user).key}")
    assert other.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_tokens_options_are_its_later_requests_defaults(webui, tiny_engine, settings):
    settings.JOB_DEADLINE = 60
    webui.post("/sdapi/v1/options", {"CLIP_stop_at_last_layers": 2}, format="json")
    picture = png_base64(Image.fromarray(data.astronaut()).resize((128, 128)))
    payload = {"init_images": [picture], "steps": 1, "width": 64, "height": 64, "seed": 1}
    body = webui.post("/sdapi/v1/img2img", payload, format="json").json()
    assert parse_infotext(json.loads(body["info"])["infotexts"][0])["Clip skip"] == "2"
    # override_settings wins for one request, as in the WebUI.
    payload["override_settings"] = {"CLIP_stop_at_last_layers": 1}
    body = webui.post("/sdapi/v1/img2img", payload, format="json").json()

    infotext = json.loads(body["info"])["infotexts"][0]
    assert "Clip skip" not in infotext  # 1, which the WebUI leaves unwritten


def test_the_start_up_lists_answer_in_the_webuis_shapes(webui):
    schedulers = webui.get("/sdapi/v1/schedulers").json()
    assert {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
            "need_inner_model": False} in schedulers  # fmt: skip
    upscalers = webui.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in upscalers] == ["None", "Lanczos", "Nearest"]
    assert set(upscalers[1]) == {"name", "model_name", "model_path", "model_url", "scale"}
    modes = webui.get("/sdapi/v1/latent-upscale-modes").json()
    assert {"name": "Latent (nearest-exact)"} in modes
    assert webui.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    memory = webui.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > memory["ram"]["used"] > 0 and "error" in memory["cuda"]
    flags = webui.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["api_auth"] is None  # a credential is never shown
    assert webui.get("/sdapi/v1/scripts").json()["txt2img"] == ["controlnet", "try-on"]
    extensions = webui.get("/sdapi/v1/extensions").json()
    assert {e["name"] for e in extensions} == {"sd-webui-controlnet", "try-on"}
    for refresh in ("refresh-checkpoints", "refresh-loras", "refresh-vae", "refresh-embeddings"):
        response = webui.post(f"/sdapi/v1/{refresh}")
        assert response.status_code == 200 and response.content == b"null"
    assert webui.get("/controlnet/version").json() == {"version": 2}
    modules = webui.get("/controlnet/module_list").json()
    for module in ("openpose_full", "canny", "none", "reference_only", "ip-adapter_clip_h"):
        assert module in modules["module_list"]
    assert modules["module_detail"]["reference_only"]["model_free"] is True
    assert webui.get("/controlnet/settings").json() == {"control_net_unit_count": 4}


@pytest.mark.parametrize(
    "path", ["/sdapi/v1/no-such-thing", "/sdapi/v1/txt2img/extra", "/controlnet/detect"]
)
def test_unknown_paths_answer_json_404(webui, client, path):
    for caller in (webui, client):
        response = caller.get(path)
        assert response.status_code == 404
        assert response.json()["detail"] == "Not Found"
        assert response.json()["message"] == f"no such endpoint: {path}"


@pytest.mark.django_db
def test_a_post_to_an_unknown_path_is_a_json_404_not_a_csrf_page():
    client = Client(enforce_csrf_checks=True)  # a WebUI client: no CSRF cookie or header
    response = client.post("/sdapi/v1/no-such-thing", {})
    assert response.status_code == 404
    assert response.json()["detail"] == "Not Found"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


# The client is the same for every example; each one's stored options are removed after it.
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "sd_model_checkpoint": JSON_VALUES,
            "sd_vae": JSON_VALUES,
            "CLIP_stop_at_last_layers": JSON_VALUES,
        },
    )
    | JSON_VALUES
)
def test_setting_options_never_fails_on_odd_values(webui, body):
    response = webui.post("/sdapi/v1/options", body, format="json")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert isinstance(response.json()["message"], str)
    ClientOptions.objects.all().delete()
