"""/healthz: 200 with each dependency ``ok`` or ``degraded``."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tryon.celery import app as celery_app
from tryon.models import WorkerHeartbeat
from tryon.runner import worker_heartbeat

pytestmark = pytest.mark.django_db


def _health(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return response.json()


def test_without_a_worker_the_site_is_degraded_not_down(client, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    body = _health(client)
    checks = body["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["broker"]["status"] == "ok"
    assert checks["worker"] == {"status": "degraded", "detail": "no worker has been seen yet"}
    assert checks["engine"]["status"] == "ok"
    assert checks["engine"]["engine"] == "preview"  # auto, and no weights installed
    assert body["status"] == "degraded"


def test_a_recent_heartbeat_makes_everything_ok(client, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    worker_heartbeat(hostname="celery@gpu-1")
    body = _health(client)
    assert body["checks"]["worker"]["status"] == "ok"
    assert body["checks"]["worker"]["workers_alive"] == 1
    assert body["status"] == "ok"


def test_a_stale_heartbeat_is_degraded(client, settings):
    settings.WORKER_STALE_AFTER = 60
    WorkerHeartbeat.objects.create(
        hostname="celery@old", last_seen=timezone.now() - timedelta(minutes=5)
    )
    worker = _health(client)["checks"]["worker"]
    assert worker["status"] == "degraded"
    assert worker["last_seen_seconds_ago"] >= 300


def test_heartbeat_updates_one_row_per_worker():
    worker_heartbeat(hostname="celery@a")
    worker_heartbeat(hostname="celery@a")
    worker_heartbeat(hostname="celery@b")
    assert WorkerHeartbeat.objects.count() == 2


def test_an_unreachable_broker_is_reported_quickly(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    broker = _health(client)["checks"]["broker"]
    assert broker["status"] == "degraded"
    assert "127.0.0.1:1" in broker["error"]


def test_engine_sd_without_weights_is_degraded_with_the_reason(client, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    settings.TRYON_ENGINE = "sd"
    engine = _health(client)["checks"]["engine"]
    assert engine["status"] == "degraded"
    assert "checkpoints" in engine["error"]


def test_installed_weights_are_counted_and_auto_picks_sd(client, settings, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "sd15-inpainting.safetensors").write_bytes(b"x")
    (tmp_path / "controlnet" / "openpose").mkdir(parents=True)
    (tmp_path / "controlnet" / "openpose" / "config.json").write_text("{}")
    settings.MODELS_DIR = tmp_path
    engine = _health(client)["checks"]["engine"]
    assert engine["engine"] == "sd"
    assert engine["weights"]["checkpoints"] == 1 and engine["weights"]["controlnet"] == 1
    # The optional IP-Adapter is off, and says which of its folders are empty; still "ok".
    assert engine["status"] == "ok"
    assert engine["ip_adapter"].startswith("IP-Adapter is off: no IP-Adapter in")
    assert "and no CLIP vision encoder in MODELS_DIR/clip_vision" in engine["ip_adapter"]


def test_an_installed_ip_adapter_is_reported(client, settings, tmp_path):
    for folder, name in (("ipadapter", "ip-adapter_sd15"), ("clip_vision", "CLIP-ViT-H")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.safetensors").write_bytes(b"x")
    settings.MODELS_DIR = tmp_path
    engine = _health(client)["checks"]["engine"]
    assert engine["ip_adapter"] == "installed"
    assert engine["weights"]["ipadapter"] == engine["weights"]["clip_vision"] == 1
