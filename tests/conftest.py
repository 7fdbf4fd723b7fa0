"""Fixtures shared by the whole suite."""

import io
import ipaddress
import socket
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from common.roles import MERCHANTS_GROUP
from pipelines.samples import draw_product_shot


@pytest.fixture(autouse=True)
def _celery_runs_tasks_inline():
    """Tasks queued by the code under test run at once, in the test's process."""
    from tryon.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def _no_name_lookups_beyond_this_machine(monkeypatch):
    """A test may reach 127.0.0.1 and nothing else, a DNS query for a made-up name included
    (the API fuzzer writes callback addresses with any host name, and the callback check
    resolves them): names other than localhost do not resolve. IP literals need no query."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in (None, "localhost") or _is_ip_literal(name):
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: no lookups from the test suite")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Every test writes its files into its own folder, never into the checkout's media/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    settings.PRIVATE_MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _cache_per_test(settings):
    """Each test starts with an empty in-memory cache. The default (files under var/) is
    shared by every process on purpose, and throttle counts kept there would leak between
    tests and between test runs going on at once."""
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


@pytest.fixture(scope="session")
def tiny_kit(tmp_path_factory) -> Path:
    """A MODELS_DIR holding the tiny kit, built once for the whole test session."""
    from pipelines.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models"))


IP_ADAPTER = "ip-adapter_tiny"


@pytest.fixture(scope="session")
def ip_kit(tiny_kit, tmp_path_factory) -> Path:
    """A MODELS_DIR holding the tiny kit with a plain IP-Adapter for its UNet
    (``ipadapter/ip-adapter_tiny.safetensors``) and a CLIP vision encoder that fits it."""
    import shutil

    from diffusers import UNet2DConditionModel

    from tests.model_files import write_clip_vision, write_ip_adapter

    kit = tmp_path_factory.mktemp("ip") / "models"
    shutil.copytree(tiny_kit, kit)
    unet = UNet2DConditionModel.from_pretrained(kit / "checkpoints" / "tiny-sd-inpaint" / "unet")
    write_ip_adapter(kit / "ipadapter" / f"{IP_ADAPTER}.safetensors", unet, image_embeds=16)
    write_clip_vision(kit / "clip_vision" / "CLIP-tiny.safetensors", projection=16)
    return kit


@pytest.fixture
def tiny_models_dir(settings, tiny_kit, tmp_path) -> Path:
    """settings.MODELS_DIR where the ``tiny`` engine finds its kit already built."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_kit)
    settings.MODELS_DIR = models
    return models


@pytest.fixture
def media_root(_media_in_tmp):
    return _media_in_tmp


def stored_files(media_root):
    """Every file under the test's media root, as paths relative to it."""
    files = (path for path in media_root.rglob("*") if path.is_file())
    return sorted(path.relative_to(media_root).as_posix() for path in files)


def image_bytes(fmt="PNG", size=(300, 400), colour=(40, 90, 170), **save_options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def product_shot_upload(name="shot.png", shape="tshirt", fmt="PNG") -> SimpleUploadedFile:
    shot = draw_product_shot(shape, size=(384, 512))
    buffer = io.BytesIO()
    shot.image.save(buffer, format=fmt)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type=f"image/{fmt.lower()}")


@pytest.fixture
def make_merchant(django_user_model):
    group, _ = Group.objects.get_or_create(name=MERCHANTS_GROUP)

    def make(username="merchant-a"):
        user = django_user_model.objects.create_user(username=username, password="pw-for-tests-1")
        user.groups.add(group)
        return user

    return make


@pytest.fixture
def merchant(make_merchant):
    return make_merchant("merchant-a")


@pytest.fixture
def merchant_client(client, merchant):
    client.force_login(merchant)
    return client


@pytest.fixture
def analysed_garment(merchant, django_capture_on_commit_callbacks):
    """A blue tee of ``merchant`` whose analysis has run (Celery is eager in tests)."""
    from catalog.models import Garment
    from catalog.services import garment_ingest

    with django_capture_on_commit_callbacks(execute=True):
        made = garment_ingest(
            garment=Garment(
                merchant=merchant,
                title="Linen tee",
                sku="TEE-1",
                category="upper",
                colour="blue",
                price="19.00",
                image=product_shot_upload(),
            )
        )
    made.refresh_from_db()
    assert made.analysis_status == Garment.AnalysisStatus.DONE
    return made


def photo_upload(picture=None) -> SimpleUploadedFile:
    """A shopper's photo as an upload: the astronaut from scikit-image, or ``picture``."""
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    (picture or Image.fromarray(data.astronaut())).save(buffer, format="JPEG")
    return SimpleUploadedFile("me.jpg", buffer.getvalue(), content_type="image/jpeg")


@pytest.fixture
def webui(merchant):
    """An API client holding ``merchant``'s token, as a WebUI client sends it."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=merchant).key}")
    return client


def png_base64(picture) -> str:
    """``picture`` as a base64 PNG, as WebUI clients send pictures inside JSON."""
    import base64

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
