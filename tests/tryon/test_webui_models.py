"""The site's worker on a models folder as the WebUI has it (``TRYON_ENGINE=sd``): a shopper's
photo try-on is painted by the single-file checkpoint and the ControlNet 1.1 ``.pth`` files."""

import pytest

from tests import model_files as mf
from tests.tryon.test_jobs import create_photo_job
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db


def test_a_photo_job_runs_on_webui_files(
    analysed_garment, settings, tiny_kit, tmp_path, django_capture_on_commit_callbacks
):
    tokenizer = tiny_kit / "checkpoints" / "tiny-sd-inpaint" / "tokenizer"
    settings.MODELS_DIR = mf.write_tiny_webui_models(tmp_path / "models", tokenizer)
    settings.TRYON_ENGINE = "sd"
    with django_capture_on_commit_callbacks(execute=True):
        job = create_photo_job(analysed_garment, engine="", params={"steps": 1, "seed": 3})
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    assert job.engine == "sd"
    (result,) = job.results.all()
    assert "Model: tiny-inpainting" in result.infotext
    assert f"Model: {mf.WEBUI_OPENPOSE} [" in result.infotext
