"""Every uploaded garment is analysed in a Celery task; results and failures are stored."""

import io

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from catalog import services
from catalog.models import Garment
from pipelines.samples import draw_product_shot
from tests.conftest import product_shot_upload, stored_files
from tests.factories import GarmentFactory

pytestmark = pytest.mark.django_db


def _png(image) -> ContentFile:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name="shot.png")


def _garment(shape="tshirt", category="upper", **kwargs):
    shot = draw_product_shot(shape, size=(384, 512))
    return GarmentFactory(image=_png(shot.image), category=category, **kwargs)


def test_analysis_stores_cutout_mask_canny_and_landmarks(media_root):
    garment = services.garment_analyze(garment_id=_garment().pk)
    assert garment.analysis_status == Garment.AnalysisStatus.DONE
    assert garment.analysis_message == ""
    for field in (garment.cutout, garment.mask, garment.canny):
        with Image.open(field.path) as stored:
            assert stored.size == (384, 512)
    with Image.open(garment.cutout.path) as cutout:
        assert cutout.mode == "RGBA"
    assert {"r_shoulder", "l_shoulder", "r_hem", "l_hem"} <= set(garment.landmarks)
    assert garment.landmarks["r_shoulder"][0] < garment.landmarks["l_shoulder"][0]


def test_a_picture_without_a_garment_fails_with_a_readable_message(media_root):
    garment = GarmentFactory(image=_png(Image.new("RGB", (300, 400), (240, 240, 240))))
    result = services.garment_analyze(garment_id=garment.pk)
    assert result.analysis_status == Garment.AnalysisStatus.FAILED
    assert "no garment" in result.analysis_message
    assert not result.cutout


def test_an_unexpected_error_is_logged_and_recorded_without_details(monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("CUDA exploded at 0xdeadbeef")

    monkeypatch.setattr("pipelines.garment.analyze_garment", explode)
    result = services.garment_analyze(garment_id=_garment().pk)
    assert result.analysis_status == Garment.AnalysisStatus.FAILED
    assert "failed unexpectedly" in result.analysis_message
    assert "deadbeef" not in result.analysis_message
    assert "deadbeef" in caplog.text


def test_a_picture_replaced_during_the_analysis_keeps_its_own_state(monkeypatch, media_root):
    garment = _garment()
    from pipelines import garment as garment_pipeline

    real = garment_pipeline.analyze_garment

    def replace_meanwhile(*args, **kwargs):
        result = real(*args, **kwargs)
        Garment.objects.filter(pk=garment.pk).update(image="garments/images/newer.png")
        return result

    monkeypatch.setattr("pipelines.garment.analyze_garment", replace_meanwhile)
    services.garment_analyze(garment_id=garment.pk)
    garment.refresh_from_db()
    assert garment.analysis_status != Garment.AnalysisStatus.DONE
    assert not garment.cutout
    assert [name for name in stored_files(media_root) if "cutouts" in name] == []


def test_a_deleted_garment_is_skipped():
    assert services.garment_analyze(garment_id=987654) is None


def test_uploading_through_the_form_queues_the_analysis(
    merchant_client, django_capture_on_commit_callbacks
):
    form = {"title": "Tee", "sku": "T-1", "category": "upper", "price": "10"}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        merchant_client.post(
            reverse("merchant:garment_create"), {**form, "image": product_shot_upload()}
        )
    assert len(callbacks) == 1
    garment = Garment.objects.get()
    assert garment.analysis_status == Garment.AnalysisStatus.DONE  # eager Celery in the tests
    page = merchant_client.get(reverse("merchant:garment_edit", args=[garment.pk]))
    assert garment.cutout.url in page.content.decode()
    assert garment.canny.url in page.content.decode()


def test_changing_the_category_reanalyses(
    merchant_client, merchant, django_capture_on_commit_callbacks
):
    garment = _garment(merchant=merchant)
    services.garment_analyze(garment_id=garment.pk)
    form = {"title": "Tee", "sku": garment.sku, "category": "outer", "price": "10"}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        merchant_client.post(reverse("merchant:garment_edit", args=[garment.pk]), form)
    assert len(callbacks) >= 1
    garment.refresh_from_db()
    assert garment.category == "outer" and garment.analysis_status == "done"


def test_admin_reanalyse_action(admin_client, django_capture_on_commit_callbacks, media_root):
    garment = _garment()
    services.garment_analyze(garment_id=garment.pk)
    first_cutout = Garment.objects.get(pk=garment.pk).cutout.name
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:catalog_garment_changelist"),
            {"action": "reanalyse", "_selected_action": [garment.pk]},
            follow=True,
        )
    assert "queued for analysis" in response.content.decode()
    garment.refresh_from_db()
    assert garment.analysis_status == "done"
    assert garment.cutout.name != first_cutout
    assert first_cutout not in stored_files(media_root)


def test_failure_is_shown_to_the_merchant(merchant_client, merchant):
    garment = GarmentFactory(
        merchant=merchant,
        analysis_status="failed",
        analysis_message="image: no garment found in the picture",
    )
    page = merchant_client.get(reverse("merchant:garment_edit", args=[garment.pk])).content.decode()
    assert "no garment found in the picture" in page
    listing = merchant_client.get(reverse("merchant:home")).content.decode()
    assert "Analysis failed" in listing


def test_a_refused_sam_checkpoint_falls_back_to_the_classical_cut_out(settings, tmp_path, caplog):
    (tmp_path / "sams").mkdir()
    (tmp_path / "sams" / "sam_vit_b_01ec64.pth").write_bytes(b"not a checkpoint at all")
    settings.MODELS_DIR = tmp_path
    garment = services.garment_analyze(garment_id=_garment().pk)
    assert garment.analysis_status == Garment.AnalysisStatus.DONE
    assert "sam_vit_b_01ec64.pth refused" in caplog.text


@pytest.mark.django_db
def test_ingest_can_analyse_in_process_without_queueing(
    merchant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        garment = services.garment_ingest(
            garment=Garment(
                merchant=merchant,
                title="Script tee",
                sku="SCRIPT-1",
                category="upper",
                price="5.00",
                image=product_shot_upload(),
            ),
            analyse_now=True,
        )
    assert queued == []  # no analysis task for a worker
    assert garment.analysis_status == Garment.AnalysisStatus.DONE and garment.cutout
