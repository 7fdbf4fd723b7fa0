"""Hypothesis fuzzes the WebUI endpoints (``/sdapi/v1/…``), which our OpenAPI schema leaves out
(so ``test_api_fuzz``'s schemathesis never reaches them).

Each example is a request as a WebUI client sends it: a valid txt2img, img2img or png-info body
with up to two of its nodes (the body itself, any value in an object, any item in a list)
replaced by a value of another JSON type (null, bools, huge or negative numbers, 1e400, NaN,
numbers written as text, very long text, lists, objects) or left out; or a body that is not JSON
at all, under any content type; or junk sent to progress and interrupt. Every answer must

- not be a server error;
- as a 4xx, carry a text ``message`` (and a text ``field`` where one is at fault) and leave
  nothing stored: no job, no file;
- as a 200, have the WebUI's shape: decodable pictures, a seed and an infotext for each, and
  for txt2img a job per picture asked for.

Valid requests run for real, with nothing in the code under test stubbed: the test commits
(``transaction=True``), so Celery (eager in tests) runs each job inside the request with the
``preview`` engine, on small pictures and canvases, as a worker would. The throttle is lifted:
a fuzzer is a busy client. Hypothesis prints a failing request, shrunk; ``pytest -s`` prints the
status codes the run saw.

Two valid requests still fail in the worker, and a job that fails answers 500; they are left out
here until that is fixed: an OpenPose unit on a picture without a person (so every picture here
shows one), and the ``side_profile`` pose on a canvas below 512×768 ("the person is too small").

One run per endpoint (and one for bodies that are not JSON), each derandomized and bounded:
the same requests every run, about 30 s in all on two cores. The explicit examples are the red
team's bodies that were already refused: they must stay refused, naming the field.
"""

import base64
import copy
import io
import json
from collections import Counter
from typing import NamedTuple

import pytest
from django.test import Client
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from rest_framework.authtoken.models import Token
from skimage import data

from common.api_errors import ScopedByMethodThrottle
from pipelines.poses import PRESETS
from pipelines.prompts import HAIR_WORDS, MODEL_VOCABULARY
from pipelines.request import OPENPOSE_MODULES
from pipelines.samplers import webui_sampler_names
from pipelines.scenes import SCENES
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/json"
# Stands for the garment's id, which exists only once the fixture has run.
GARMENT = "<the merchant's garment>"


def _b64(picture: Image.Image, format: str = "PNG", **options) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    return base64.b64encode(buffer.getvalue()).decode()


def _edges() -> Image.Image:
    edges = Image.new("RGB", (128, 128))
    ImageDraw.Draw(edges).ellipse((40, 30, 90, 110), outline="white", width=2)
    return edges


def _mask() -> Image.Image:
    mask = Image.new("L", (128, 128))
    ImageDraw.Draw(mask).rectangle((70, 70, 110, 120), fill=255)
    return mask


PERSON = _b64(Image.fromarray(data.astronaut()).resize((128, 128)))
PICTURE = st.sampled_from([PERSON, f"data:image/png;base64,{PERSON}"])
EDGES = _b64(_edges())
MASK = _b64(_mask())

# --- values of the wrong type -------------------------------------------------------------------

LEFT_OUT = object()  # a node taken out of the body
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, 10**30, -(10**30)]),
    # Infinity is written as 1e400 (see _as_json); NaN as NaN, which is not JSON.
    st.floats(),
    st.sampled_from(["", " ", "NaN", "Infinity", "1e400", "-1", "3", "0x10", "true", "None"]),
    st.sampled_from(
        ["not base64!", "data:image/png;base64,", base64.b64encode(b"GIF89a").decode()]
    ),
    st.text(max_size=20),
    st.just("x" * 50_000),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(
        st.text(max_size=8), st.none() | st.integers() | st.text(max_size=5), max_size=3
    ),
)


def _nodes(value, path=()):
    """Every node's path in a JSON value: the value itself first, then what it holds."""
    yield path
    if isinstance(value, dict | list):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            yield from _nodes(item, (*path, key))


def _replaced(body, path: tuple, value):
    """A copy of ``body`` with ``value`` at ``path`` (LEFT_OUT: nothing there)."""
    if not path:
        return value
    body = copy.deepcopy(body)
    *outer, last = path
    container = body
    for key in outer:
        container = container[key]
    if value is LEFT_OUT:
        del container[last]
    else:
        container[last] = value
    return body


@st.composite
def _broken(draw, bodies):
    """A body from ``bodies`` with up to two nodes replaced by junk or left out."""
    body = draw(bodies)
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from(list(_nodes(body))))
        body = _replaced(body, path, draw(JUNK | st.just(LEFT_OUT)))
    return body


# --- valid WebUI bodies -------------------------------------------------------------------------

UNIT_SETTINGS = {
    "weight": st.floats(0, 2),
    "guidance_start": st.floats(0, 0.4),
    "guidance_end": st.floats(0.6, 1),
    "control_mode": st.sampled_from([0, 1, 2, "Balanced", "ControlNet is more important"]),
    "enabled": st.just(True),
    "model": st.sampled_from(["", "None"]) | st.none(),
    # Sent by the ControlNet extension's clients; not ours, so ignored.
    "processor_res": st.just(512),
    "pixel_perfect": st.booleans(),
}
OPENPOSE_UNIT = st.fixed_dictionaries(
    {"module": st.sampled_from(sorted(OPENPOSE_MODULES))}, optional=UNIT_SETTINGS
)
CANNY_UNIT = st.fixed_dictionaries(
    {"module": st.just("canny")},
    optional={
        **UNIT_SETTINGS,
        "threshold_a": st.integers(0, 100),
        "threshold_b": st.integers(100, 255),
    },
)
# img2img's units may bring their own picture: the map itself (module "none") or its source.
MAP_UNITS = {
    "openpose": st.fixed_dictionaries(
        {
            "module": st.just("none"),
            "model": st.just("control_v11p_sd15_openpose [cab727d4]"),
            "image": st.sampled_from([EDGES, {"image": EDGES}]),
        },
        optional={"weight": st.floats(0, 2)},
    ),
    "canny": st.fixed_dictionaries(
        {"module": st.just("canny"), "model": st.just("tiny-canny")},
        optional={"input_image": st.just(PERSON)},
    )
    | st.just({"module": "none", "model": "tiny-canny", "image": {"image": EDGES}}),
}
DISABLED_UNIT = {"enabled": False, "module": "depth_midas", "model": "None"}


@st.composite
def _units(draw, with_pictures: bool) -> list:
    """ControlNet units: at most one per kind, in any order, perhaps with a disabled one."""
    kinds = draw(st.sampled_from([(), ("openpose",), ("canny",), ("canny", "openpose")]))
    choices = {"openpose": OPENPOSE_UNIT, "canny": CANNY_UNIT}
    if with_pictures:
        choices = {kind: unit | MAP_UNITS[kind] for kind, unit in choices.items()}
    units = [draw(choices[kind]) for kind in kinds]
    return units + ([DISABLED_UNIT] if draw(st.booleans()) else [])


PARAMETERS = {
    "prompt": st.text(max_size=30) | st.sampled_from(["a (red:1.3) scarf", "[linen] <lora:x:2>"]),
    "negative_prompt": st.text(max_size=20) | st.none(),
    "sampler_name": st.sampled_from(webui_sampler_names()),
    "scheduler": st.sampled_from(["Automatic", "Karras", "Uniform"]),
    "steps": st.integers(1, 3),
    "cfg_scale": st.floats(1, 30),
    "seed": st.integers(-1, 2**32 - 1),
    "width": st.sampled_from([64, 128, 192]),
    "height": st.sampled_from([64, 128, 192]),
    "n_iter": st.integers(1, 2),
    "batch_size": st.integers(1, 2),
    "denoising_strength": st.floats(0.05, 1),
    "override_settings": st.fixed_dictionaries({}, optional={"clip_skip": st.integers(1, 12)}),
    # What WebUI clients send besides: not ours, so ignored.
    "restore_faces": st.booleans(),
    "send_images": st.just(True),
    "styles": st.just([]),
}
MODEL_LOOKS = st.fixed_dictionaries(
    {},
    optional={
        **{name: st.sampled_from(sorted(words)) for name, words in MODEL_VOCABULARY.items()},
        "hair": st.lists(st.sampled_from(HAIR_WORDS), min_size=1, max_size=2).map(" ".join),
    },
)
TRYON_CHOICE = st.fixed_dictionaries(
    {"garment": st.just(GARMENT)},
    optional={
        "pose": st.sampled_from(sorted(set(PRESETS) - {"side_profile"})),  # see the docstring
        "scene": st.sampled_from(sorted(SCENES)) | st.text(max_size=20),
        "model_attributes": MODEL_LOOKS,
    },
)
TXT2IMG = st.fixed_dictionaries(
    {
        "alwayson_scripts": st.fixed_dictionaries(
            {"try-on": st.fixed_dictionaries({"args": st.tuples(TRYON_CHOICE).map(list)})},
            optional={"ControlNet": st.fixed_dictionaries({"args": _units(with_pictures=False)})},
        )
    },
    optional=PARAMETERS,
)
IMG2IMG = st.fixed_dictionaries(
    {"init_images": st.tuples(PICTURE).map(list)},
    optional={
        **PARAMETERS,
        "mask": st.just(MASK),
        "mask_blur": st.integers(0, 8),
        "inpainting_fill": st.integers(0, 3),
        "inpaint_full_res": st.sampled_from([True, False, 0, 1]),
        "inpaint_full_res_padding": st.integers(0, 64),
        "inpainting_mask_invert": st.sampled_from([0, 1, False]),
        "alwayson_scripts": st.fixed_dictionaries(
            {"ControlNet": st.fixed_dictionaries({"args": _units(with_pictures=True)})}
        ),
    },
)


@st.composite
def _png_with_infotext(draw) -> str:
    """A picture carrying generation parameters, well-formed or not, for PNG Info to read."""
    parameters = draw(
        st.text(max_size=60)
        | st.builds(
            "{}\nNegative prompt: {}\nSteps: {}, Sampler: {}, Seed: {}, ControlNet 0: {}".format,
            st.text(max_size=10),
            st.text(max_size=10),
            st.text(max_size=4),
            st.text(max_size=6),
            st.text(max_size=6),
            st.text(max_size=12),
        )
    )
    info = PngInfo()
    info.add_text("parameters", parameters)
    return _b64(Image.new("RGB", (8, 8)), pnginfo=info)


PNG_INFO = st.fixed_dictionaries(
    {"image": _png_with_infotext() | st.sampled_from([PERSON, _b64(_mask(), "JPEG")])}
)

# --- requests -----------------------------------------------------------------------------------


class Request(NamedTuple):
    """What is sent; ``field``: the field a 400 must name (the explicit examples only)."""

    method: str
    endpoint: str
    body: bytes | str  # str: JSON, where GARMENT's id is put in when sent
    content_type: str = JSON
    field: str | None = None


def _as_json(body) -> str:
    # json.dumps writes an infinite float as Infinity, which DRF refuses as not JSON; a client's
    # 1e400 is JSON, and Python reads it as an infinite float. (In text it stays text.)
    return json.dumps(body).replace("Infinity", "1e400")


def _png_info_request(body: dict) -> Request:
    return Request("POST", "png-info", _as_json(body))


def _posted(endpoint: str, bodies):
    return _broken(bodies).map(
        lambda body: Request("POST", endpoint, b"" if body is LEFT_OUT else _as_json(body))
    )


NOT_JSON = st.tuples(
    st.just("POST"),
    st.sampled_from(["txt2img", "img2img", "png-info"]),
    st.sampled_from([b"", b"{", b"[1,", b"{'prompt': 1}", b"\xff\xfe\x00", b"prompt=x&n_iter=2"])
    | st.binary(max_size=20),
    st.sampled_from(
        [JSON, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
    )
    | st.just(""),
).map(lambda drawn: Request(*drawn))
IDLE = st.tuples(
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["progress", "interrupt"]),
    st.binary(max_size=20) | JUNK.map(_as_json),
).map(lambda drawn: Request(*drawn))


def _img2img(change: dict, field: str) -> Request:
    return Request("POST", "img2img", _as_json({"init_images": [PERSON], **change}), JSON, field)


def _unit(**unit) -> dict:
    return {"alwayson_scripts": {"ControlNet": {"args": [unit]}}}


# What each run sends, and how many examples it makes besides its explicit ones.
FAMILIES = {
    "txt2img": (_posted("txt2img", TXT2IMG), 40),
    "img2img": (_posted("img2img", IMG2IMG), 40),
    # Whole pictures too, for the infotext parser.
    "png-info": (_posted("png-info", PNG_INFO) | PNG_INFO.map(_png_info_request), 30),
    "not JSON": (NOT_JSON, 15),
    "progress and interrupt": (IDLE, 10),
}
UNIT = "alwayson_scripts.ControlNet.args.0"
# The red team's bodies that were already refused before: they must stay refused, naming the
# field (txt2img's were not, and are in test_sdapi.py).
EXPLICIT = {
    "img2img": [
        _img2img({"prompt": 5}, "prompt"),
        _img2img({"prompt": ["a"]}, "prompt"),
        _img2img({"seed": "12"}, "seed"),
        _img2img({"steps": 10**12}, "steps"),
        _img2img({"width": -512}, "width"),
        _img2img({"sampler_name": "k_euler_nope"}, "sampler_name"),
        _img2img({"init_images": [5]}, "init_images"),
        _img2img({"init_images": [{"image": PERSON}]}, "init_images"),
        _img2img({"mask": 5}, "mask"),
        _img2img(_unit(module=["canny"]), f"{UNIT}.module"),
        _img2img(_unit(module="canny", weight="1"), "controlnet.1.weight"),
        _img2img(_unit(module="canny", guidance_start=[0]), "controlnet.1.guidance_start"),
        _img2img(_unit(module="canny", threshold_a="64"), "controlnet.canny.threshold_a"),
        _img2img(
            _unit(module="none", model="canny", image=5),
            "alwayson_scripts.ControlNet.args.canny.image",
        ),
    ],
    "png-info": [
        Request("POST", "png-info", _as_json({"image": 5}), JSON, "image"),
        Request("POST", "png-info", _as_json({"image": ["x"]}), JSON, "image"),
    ],
}


# --- the test -----------------------------------------------------------------------------------


@pytest.fixture
def webui(merchant, settings, monkeypatch):
    """A WebUI client of ``merchant``'s, whose valid requests run with the preview engine."""
    settings.TRYON_ENGINE = "preview"
    settings.JOB_DEADLINE = 60  # the jobs run inside the request: this wait never happens
    # The throttle keeps its rates in a class attribute, read at import, which a settings
    # override does not reach.
    rates = {"read": "100000/min", "write": "100000/min"}
    monkeypatch.setattr(ScopedByMethodThrottle, "THROTTLE_RATES", rates)
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=merchant).key}"})


def _stored(settings) -> tuple[int, set]:
    files = {
        path
        for root in (settings.MEDIA_ROOT, settings.PRIVATE_MEDIA_ROOT)
        for path in root.rglob("*")
        if path.is_file()
    }
    return TryOnJob.objects.count(), files


def _send(client: Client, sent: Request, garment_id: int | None):
    body = sent.body
    if isinstance(body, str) and garment_id is not None:
        body = body.replace(json.dumps(GARMENT), str(garment_id))
    return client.generic(
        sent.method, f"/sdapi/v1/{sent.endpoint}", body, content_type=sent.content_type
    )


def _pictures_asked(body: dict) -> int:
    return (body.get("n_iter") or 1) * (body.get("batch_size") or 1)


def _check_webui_shape(sent: Request, body: dict) -> None:
    """A 200 as the WebUI answers it."""
    if sent.endpoint in ("txt2img", "img2img"):
        assert set(body) == {"images", "parameters", "info"}
        info = json.loads(body["info"])
        assert len(info["all_seeds"]) == len(info["infotexts"]) == len(body["images"])
        jobs = len(info["job_ids"])
        # txt2img makes a job per picture; img2img one job of batch_size pictures.
        assert jobs == (_pictures_asked(body["parameters"]) if sent.endpoint == "txt2img" else 1)
        # The preview engine paints one picture per job, whatever its batch_size.
        assert len(body["images"]) == jobs or info["notices"]
        for picture in body["images"]:
            Image.open(io.BytesIO(base64.b64decode(picture))).verify()
    elif sent.endpoint == "png-info":
        assert set(body) == {"info", "items", "parameters"}
        assert isinstance(body["info"], str) and isinstance(body["parameters"], dict)
    elif sent.endpoint == "progress":
        assert {"progress", "state", "current_image"} <= set(body)
    else:
        assert body == {}


def _check_refusal(sent: Request, response) -> None:
    body = response.json()
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body.get("field", ""), str), body
    if sent.field:
        assert (response.status_code, body.get("field")) == (400, sent.field), body


def _fuzz(family: str, check) -> None:
    """Run Hypothesis over ``family``'s requests, its explicit ones first; ``check`` each."""
    strategy, examples = FAMILIES[family]
    run = given(sent=strategy)(check)
    for sent in EXPLICIT.get(family, ()):
        run = example(sent=sent)(run)
    hypothesis_settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(run)()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the pictures
def test_every_webui_request_is_answered_without_a_server_error(family, webui, settings, request):
    # Only txt2img needs a garment, and analysing one takes seconds.
    garment = request.getfixturevalue("analysed_garment") if family == "txt2img" else None
    seen = Counter()

    def check(sent: Request) -> None:
        before = _stored(settings)
        response = _send(webui, sent, garment and garment.pk)
        seen[response.status_code] += 1
        assert response.status_code < 500, response.content[:500]
        if response.status_code == 200:
            _check_webui_shape(sent, response.json())
        else:
            _check_refusal(sent, response)
            assert _stored(settings) == before, "a refused request left something stored"

    _fuzz(family, check)
    print(f"\n{family}: {sum(seen.values())} requests, status codes {dict(sorted(seen.items()))}")
