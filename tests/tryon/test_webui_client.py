"""A real WebUI API client, ``webuiapi`` from PyPI used unmodified, against the site run as
``make run`` runs it: ``scripts/run_dev.py`` (Django's server and two Celery workers) with the
embedded defaults (SQLite, its Celery broker, local media) and the tiny engine, on 127.0.0.1.

The client logs in with HTTP Basic (username and API token), reads every list it offers,
reads and sets options, runs img2img with a mask and two ControlNet units whose models it
picked from the lists, reads the infotext back with png-info, and polls progress while a long
job runs, then interrupts it.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import webuiapi
from PIL import Image, ImageDraw
from skimage import data

from pipelines.infotext import parse_infotext
from tests.processes import own_files_env

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "webui-client"
START_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


CREATE_CLIENT = f"""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from common.roles import MERCHANTS_GROUP
user = get_user_model().objects.create_user("{USERNAME}", password="an-account-password-1")
user.groups.add(Group.objects.get_or_create(name=MERCHANTS_GROUP)[0])
print(Token.objects.create(user=user).key)
"""


@pytest.fixture(scope="module")
def site(tiny_kit, tmp_path_factory):
    """``scripts/run_dev.py`` on a free port, its own SQLite files and the tiny kit; the URL's
    host, port and the client's API token."""
    folder = tmp_path_factory.mktemp("live-site")
    models = folder / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_kit)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))},
        "DJANGO_DEBUG": "true",
        **own_files_env(folder),
        "MODELS_DIR": str(models),
        "TRYON_ENGINE": "tiny",
        "HF_HUB_OFFLINE": "1",
        "JOB_PROGRESS_INTERVAL": "0.2",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    _manage(env, "migrate", "--noinput", "-v", "0")
    token = _manage(env, "shell", "-c", CREATE_CLIENT).strip().splitlines()[-1]
    port = _free_port()
    log = (folder / "site.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "scripts/run_dev.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its server and workers go with it
    )
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}", process, folder / "site.log")
        yield {"host": "127.0.0.1", "port": port, "token": token}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    """Until /healthz says a worker is alive (the site answers before its workers do)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            checks = requests.get(f"{url}/healthz", timeout=5).json()["checks"]
            if checks["worker"]["status"] == "ok":
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the site did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def api(site):
    return webuiapi.WebUIApi(
        host=site["host"], port=site["port"], username=USERNAME, password=site["token"]
    )


def test_it_logs_in_with_basic_auth_and_reads_every_list(api, site):
    base = f"http://{site['host']}:{site['port']}/sdapi/v1"
    for wrong in (None, (USERNAME, "an-account-password-1"), (USERNAME, "0" * 40)):
        refused = requests.get(f"{base}/options", auth=wrong, timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith(
            "Basic"
        )
        assert "message" in refused.json()  # JSON in the API's error shape, never a page
    assert "DPM++ 2M" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest"]
    assert {"name": "Latent"} in api.get_latent_upscale_modes()
    assert api.get_sd_vae() == []
    assert [lora["name"] for lora in api.get_loras()] == ["tiny-lora"]
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert [m.split(" [")[0] for m in api.util_get_model_names()] == ["tiny-sd-inpaint"]
    assert {"openpose_full", "canny", "reference_only"} <= set(api.controlnet_module_list())
    assert [m.split(" [")[0] for m in api.controlnet_model_list()] == [
        "tiny-canny",
        "tiny-openpose",
    ]
    assert api.controlnet_version() == 2
    assert api.get_memory()["ram"]["total"] > 0
    assert api.get_cmd_flags()["api"] is True
    assert "controlnet" in api.get_scripts()["img2img"]
    assert api.refresh_checkpoints() is None
    missing = requests.get(f"{base}/no-such-endpoint", timeout=10)
    assert missing.status_code == 404 and missing.json()["detail"] == "Not Found"


def test_options_then_img2img_with_two_units_and_png_info(api):
    (model,) = api.util_get_model_names()
    api.set_options({"sd_model_checkpoint": model, "CLIP_stop_at_last_layers": 2})
    assert api.util_get_current_model() == model
    assert api.get_options()["CLIP_stop_at_last_layers"] == 2
    with pytest.raises(RuntimeError):  # an unknown model is refused, naming it (400)
        api._to_api_result(
            api.session.post(url=f"{api.baseurl}/options", json={"sd_model_checkpoint": "nope"})
        )

    models = {name.split(" [")[0]: name for name in api.controlnet_model_list()}
    picture = Image.fromarray(data.astronaut()).resize((256, 256))
    mask = Image.new("L", picture.size)
    ImageDraw.Draw(mask).rectangle((150, 150, 210, 230), fill=255)
    units = [
        webuiapi.ControlNetUnit(module="openpose_full", model=models["tiny-openpose"]),
        webuiapi.ControlNetUnit(module="canny", model=models["tiny-canny"], weight=0.5),
    ]
    result = api.img2img(
        images=[picture],
        mask_image=mask,
        controlnet_units=units,
        steps=2,
        width=128,
        height=128,
        seed=5,
        sampler_name="Euler a",
        denoising_strength=0.75,
    )
    assert result.image.size == picture.size and result.info["all_seeds"] == [5]
    fields = parse_infotext(result.info["infotexts"][0])
    assert fields["Clip skip"] == "2" and fields["Sampler"] == "Euler a"
    assert fields["Model"] == "tiny-sd-inpaint"
    assert "Module: openpose_full" in fields["ControlNet 0"]
    assert f"Model: {models['tiny-openpose']}" in fields["ControlNet 0"]
    assert "Module: canny" in fields["ControlNet 1"] and "Weight: 0.5" in fields["ControlNet 1"]
    assert api.png_info(result.image).info == result.info["infotexts"][0]


def test_progress_is_polled_and_interrupt_stops_a_long_job(api):
    picture = Image.fromarray(data.astronaut())
    answer = {}

    def long_job():
        # Two pictures of 150 steps at 512²: long enough, even on a fast machine, to be caught
        # running.
        answer["result"] = api.img2img(
            images=[picture],
            steps=150,
            width=512,
            height=512,
            batch_size=2,
            seed=7,
            denoising_strength=1.0,
        )

    worker = threading.Thread(target=long_job)
    worker.start()
    deadline = time.monotonic() + 120
    progress = api.get_progress()
    while progress["state"]["sampling_steps"] == 0 or progress["progress"] == 0.0:
        assert worker.is_alive() and time.monotonic() < deadline, progress
        time.sleep(0.2)
        progress = api.get_progress()
    assert set(progress) >= {"progress", "eta_relative", "state", "current_image", "textinfo"}
    assert progress["state"]["job_count"] == 1 and progress["state"]["sampling_steps"] == 150
    assert api.interrupt() == {}
    worker.join(120)
    assert not worker.is_alive()
    result = answer["result"]  # as the WebUI: 200, with what was finished (nothing here)
    assert result.images == [] and "interrupted" in result.info["notices"][0]
    assert api.get_progress()["state"]["job_count"] == 0
