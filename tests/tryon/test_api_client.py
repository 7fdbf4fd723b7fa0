"""scripts/api_client.py runs a try-on and a model-shot batch through the HTTP API alone."""

import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from rest_framework.authtoken.models import Token
from skimage import data

from tryon.models import TryOnJob

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import api_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_example_client_runs_a_try_on_and_a_batch(
    live_server, analysed_garment, merchant, settings, tmp_path, capsys
):
    settings.TRYON_ENGINE = "preview"
    photo = tmp_path / "me.jpg"
    Image.fromarray(data.astronaut()).save(photo)
    token = Token.objects.create(user=merchant).key
    shopper = ["--site", live_server.url, "--garment", str(analysed_garment.pk)]
    # --forget writes again with the session cookie: the CSRF token the site handed out with it
    # goes back, as the site asks of any cookie-carrying write.
    shopper_run = [*shopper, "--photo", str(photo), "--forget"]
    assert api_client.main([*shopper_run, "--out", str(tmp_path / "a")]) == 0
    merchant_run = [*shopper, "--token", token, "--model-shots", "2", "--scene", "beach"]
    assert api_client.main([*merchant_run, "--out", str(tmp_path / "b")]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines.pop(1) == {"deleted": 1}
    assert not TryOnJob.objects.filter(kind="photo").exists()
    assert [line["status"] for line in lines] == ["succeeded"] * 3
    for line in lines:
        (saved,) = line["files"]
        assert Image.open(saved).text["ai_generated"] == "true"
