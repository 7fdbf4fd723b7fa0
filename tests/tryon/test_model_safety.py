"""Model files on the Django side: a malicious pickle in MODELS_DIR never runs, in a worker's job,
a garment analysis, the model-listing endpoints or admin's model list; the sha256 manifest
(MODELS_MANIFEST) is enforced by the workers; a worker does not start while torch is told to
unpickle checkpoints fully."""

import os
import re
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Garment
from catalog.services import garment_analyze
from pipelines.loading import NO_WEIGHTS_ONLY_VARIABLE
from pipelines.registry import manifest_lines, model_hash, resolve_model, scan_models
from tests.pipelines.test_model_safety import evil_models_dir
from tests.workers import run_worker_to_exit
from tryon.intake import model_shot_batch_create
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 5}


@pytest.fixture
def evil_models(settings, tiny_kit, tmp_path) -> tuple[Path, Path]:
    """MODELS_DIR: the tiny kit plus a malicious pickle in checkpoints/, controlnet/, loras/ and
    sams/; and the file that appears if one of them is ever fully unpickled."""
    models, marker = evil_models_dir(tiny_kit, tmp_path)
    settings.MODELS_DIR = models
    settings.VAR_DIR = tmp_path / "var"  # the hash cache of this test only
    settings.VAR_DIR.mkdir()
    return models, marker


@pytest.fixture
def garment(evil_models, analysed_garment, caplog) -> Garment:
    """Analysed with the evil ``sams/sam_vit_b_evil.pth`` installed: refused, so cut out
    classically."""
    assert analysed_garment.analysis_status == Garment.AnalysisStatus.DONE
    assert "sam_vit_b_evil.pth refused" in caplog.text
    return analysed_garment


def _model_shot(owner, garment, **params) -> TryOnJob:
    (job,) = model_shot_batch_create(
        owner=owner,
        garment=garment,
        poses=["front_standing"],
        scenes=["park"],
        params={**FAST, **params},
        engine="sd",
    )
    return job


def test_a_job_using_a_malicious_pickle_fails_with_its_message_and_runs_nothing(
    garment, merchant, evil_models, django_capture_on_commit_callbacks
):
    _, marker = evil_models
    with django_capture_on_commit_callbacks(execute=True):
        lora_job = _model_shot(merchant, garment, prompt="linen <lora:evil:1>")
        checkpoint_job = _model_shot(merchant, garment, checkpoint="evil.ckpt")
    for job in (lora_job, checkpoint_job):
        job.refresh_from_db()
        assert job.status == TryOnJob.Status.FAILED and job.attempts == 1
        assert job.error_type == "InvalidInputError"
    assert "evil.bin needs full unpickling, which can run code" in lora_job.error_message
    assert "evil.ckpt needs full unpickling, which can run code" in checkpoint_job.error_message
    assert not lora_job.results.exists() and not checkpoint_job.results.exists()
    assert not marker.exists()


def test_with_a_manifest_a_job_fails_naming_the_file_it_lacks(
    garment, merchant, evil_models, settings, tmp_path, django_capture_on_commit_callbacks
):
    models, _ = evil_models
    manifest = tmp_path / "models.sha256"
    lines = manifest_lines(scan_models(models), models)
    manifest.write_text(
        "".join(f"{line}\n" for line in lines if "tiny-sd-inpaint/unet" not in line)
    )
    settings.MODELS_MANIFEST = manifest
    with django_capture_on_commit_callbacks(execute=True):
        refused = _model_shot(merchant, garment)
    refused.refresh_from_db()
    assert refused.status == TryOnJob.Status.FAILED, refused.error_message
    assert refused.error_type == "UntrustedModelError"
    unet = "checkpoints/tiny-sd-inpaint/unet/diffusion_pytorch_model.safetensors"
    assert f"{unet} is not in the models manifest {manifest}" in refused.error_message
    assert f"sha256sum {unet} >> {manifest}" in refused.error_message
    # With every file listed the same models load: tests/pipelines/test_model_safety.py.


def test_sam_checkpoints_leading_outside_or_missing_from_the_manifest_are_not_loaded(
    analysed_garment, settings, tmp_path, caplog
):
    models = tmp_path / "sam-models"
    (models / "sams").mkdir(parents=True)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"never read")
    (models / "sams" / "sam_vit_b_linked.safetensors").symlink_to(outside)
    settings.MODELS_DIR = models
    assert garment_analyze(garment_id=analysed_garment.pk).analysis_status == "done"
    assert "sam_vit_b_linked.safetensors leads outside the models folder" in caplog.text

    (models / "sams" / "sam_vit_b_linked.safetensors").unlink()
    (models / "sams" / "sam_vit_b_01ec64.pth").write_bytes(b"not listed")
    settings.MODELS_MANIFEST = tmp_path / "empty.sha256"
    settings.MODELS_MANIFEST.write_text("")
    assert garment_analyze(garment_id=analysed_garment.pk).analysis_status == "done"
    assert "sams/sam_vit_b_01ec64.pth is not in the models manifest" in caplog.text


# --- listings ------------------------------------------------------------------------------------


def test_model_lists_show_malicious_pickles_by_relative_path_and_run_nothing(
    evil_models, merchant, client
):
    models, marker = evil_models
    webui = APIClient()
    webui.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=merchant).key}")
    answers = {
        path: webui.get(path)
        for path in ("/sdapi/v1/sd-models", "/sdapi/v1/loras", "/controlnet/model_list")
    }
    answers["/api/models/"] = client.get("/api/models/")  # open to anyone
    assert {path: answer.status_code for path, answer in answers.items()} == dict.fromkeys(
        answers, 200
    )
    checkpoints = {m["model_name"]: m["filename"] for m in answers["/sdapi/v1/sd-models"].json()}
    assert checkpoints == {
        "evil": "checkpoints/evil.ckpt",
        "tiny-sd-inpaint": "checkpoints/tiny-sd-inpaint",
    }
    loras = {lora["name"]: lora["path"] for lora in answers["/sdapi/v1/loras"].json()}
    assert loras == {"evil": "loras/evil.bin", "tiny-lora": "loras/tiny-lora.safetensors"}
    # Listed with its hash (sha256 of its bytes: hashing reads a pickle, never unpickles it).
    names = answers["/controlnet/model_list"].json()["model_list"]
    assert "evil" in [name.split(" [")[0] for name in names]
    evil_sam = {"kind": "sams", "name": "sam_vit_b_evil", "filename": "sam_vit_b_evil.pth"}
    assert {**evil_sam, "format": "pth"} in answers["/api/models/"].json()
    for answer in answers.values():
        body = answer.content.decode()
        assert str(models) not in body and str(models.resolve()) not in body
    assert not marker.exists()


def test_staff_see_the_installed_models_with_hashes_and_manifest_status(
    evil_models, settings, tmp_path, client, django_user_model, admin_user
):
    models, marker = evil_models
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"not for the admin to read")
    (models / "checkpoints" / "linked.safetensors").symlink_to(secret)
    entries = scan_models(models)
    linked = resolve_model(entries, "checkpoints", "linked")
    evil_lora = resolve_model(entries, "loras", "evil")
    manifest = tmp_path / "trusted.sha256"
    manifest.write_text("".join(f"{line}\n" for line in manifest_lines([evil_lora], models)))
    settings.MODELS_MANIFEST = manifest
    page_url = reverse("admin_installed_models")

    assert client.get(page_url).status_code == 302  # to the admin's login
    client.force_login(django_user_model.objects.create_user("shopper", password="pw-x-12345"))
    assert client.get(page_url).status_code == 302
    client.force_login(admin_user)
    assert page_url in client.get(reverse("admin:index")).content.decode()
    page = client.get(page_url).content.decode()

    rows = {
        re.search(r"<code>([^<]+)</code>", row)[1]: row
        for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)
        if "<code>" in row
    }
    assert set(rows) == {entry.path.relative_to(models).as_posix() for entry in entries}
    for entry in entries:
        row = rows[entry.path.relative_to(models).as_posix()]
        assert (">yes<" in row) == (entry == evil_lora), row
        if entry != linked:
            assert model_hash(entry) in row
    assert "leads outside MODELS_DIR" in rows["checkpoints/linked.safetensors"]
    assert str(manifest) in page and str(models) not in page
    # Nothing in ipadapter/ and clip_vision/: the optional IP-Adapter is said to be off.
    assert "IP-Adapter is off: no IP-Adapter in MODELS_DIR/ipadapter" in page
    assert not marker.exists()


# --- the worker process --------------------------------------------------------------------------


def test_a_worker_does_not_start_while_torch_is_told_to_unpickle_fully(tmp_path):
    env = {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
        NO_WEIGHTS_ONLY_VARIABLE: "true",
    }
    worker = run_worker_to_exit(env)
    assert worker.returncode != 0
    assert f"the worker does not start: {NO_WEIGHTS_ONLY_VARIABLE}=true is set" in worker.stderr
    assert not (tmp_path / "broker.sqlite3").exists()  # it stopped before reaching the broker
