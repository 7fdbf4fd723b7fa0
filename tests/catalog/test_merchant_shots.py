"""The merchant's garment tools: the painted mask, model shots, and the gallery of their jobs."""

import io
import os
import re
from dataclasses import asdict

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from catalog import services
from catalog.models import Garment
from pipelines.params import IPAdapterUnit, ReferenceUnit
from pipelines.poses import PRESETS
from tests.conftest import photo_upload, stored_files
from tests.factories import (
    GarmentFactory,
    TryOnJobFactory,
    TryOnResultFactory,
    UserFactory,
    make_reviewer,
)
from tryon.forms import OPENPOSE_LIMBS, pose_skeleton
from tryon.models import TryOnJob, TryOnResult
from tryon.review import result_review

pytestmark = pytest.mark.django_db

SIZE = (384, 512)  # the analysed_garment fixture's product image


def _png(array_or_image, mode="L") -> bytes:
    picture = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image, mode)
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _box_mask(box=(100, 120, 290, 460), size=SIZE) -> np.ndarray:
    """A white rectangle (left, top, right, bottom) on black: a mask unlike the tee's outline."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 255
    return mask


def _stored(field, mode) -> np.ndarray:
    with field.open("rb"), Image.open(field) as picture:
        return np.asarray(picture.convert(mode))


def _paint(garment, mask_png, capture):
    """Save a painted mask and run what it queued (the task, then the file clean-up)."""
    with capture(execute=True):
        services.garment_mask_update(garment=garment, mask_png=mask_png)
    garment.refresh_from_db()
    return garment


# --- the painted mask: the service ----------------------------------------------------------------


def test_a_painted_mask_remakes_cutout_canny_and_landmarks(
    analysed_garment, media_root, django_capture_on_commit_callbacks
):
    before = Garment.objects.get(pk=analysed_garment.pk)
    old_files = {before.mask.name, before.cutout.name, before.canny.name}
    old_canny = _stored(before.canny, "L")

    garment = _paint(analysed_garment, _png(_box_mask()), django_capture_on_commit_callbacks)

    assert garment.analysis_status == Garment.AnalysisStatus.DONE
    assert np.array_equal(_stored(garment.mask, "L"), _box_mask())
    cutout = _stored(garment.cutout, "RGBA")
    product = _stored(garment.image, "RGB")
    assert cutout.shape == (SIZE[1], SIZE[0], 4)
    # Opaque inside the painted box (the product's own pixels), transparent outside it.
    assert (cutout[130:450, 110:280, 3] == 255).all()
    assert np.array_equal(cutout[130:450, 110:280, :3], product[130:450, 110:280])
    assert (cutout[:110, :, 3] == 0).all() and (cutout[:, 300:, 3] == 0).all()
    canny = _stored(garment.canny, "L")
    assert canny.shape == (SIZE[1], SIZE[0]) and not np.array_equal(canny, old_canny)
    # The box's edges are the outline now: edges along its sides, none far outside it.
    assert canny[:, 95:106].any() and not canny[:, 320:].any()
    # Landmarks follow the box: the hem at its bottom corners, the shoulders on its top edge,
    # and no sleeve ends any more (the tee's sleeves were left out of the painted mask).
    assert "r_sleeve_end" in before.landmarks
    landmarks = garment.landmarks
    assert landmarks["r_hem"] == pytest.approx([100, 459], abs=3)
    assert landmarks["l_hem"] == pytest.approx([289, 459], abs=3)
    assert landmarks["r_shoulder"][1] == landmarks["l_shoulder"][1] == pytest.approx(120, abs=3)
    assert "r_sleeve_end" not in landmarks and "l_sleeve_end" not in landmarks
    # The old mask, cut-out and Canny map are gone from storage; only the new ones remain.
    files = set(stored_files(media_root))
    assert not old_files & files
    assert {garment.image.name, garment.mask.name, garment.cutout.name, garment.canny.name} == files


def test_the_mask_is_stored_black_and_white(analysed_garment, django_capture_on_commit_callbacks):
    # Grey levels and transparency, as a paint program may save them.
    grey = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    grey[100:400, 80:300] = 140  # light enough: garment
    grey[100:400, 300:340] = 110  # too dark: background
    alpha = np.full_like(grey, 255)
    alpha[100:200, 80:300] = 60  # transparent: never garment
    picture = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])

    garment = _paint(analysed_garment, _png(picture), django_capture_on_commit_callbacks)

    stored = _stored(garment.mask, "L")
    assert set(np.unique(stored)) == {0, 255}
    assert (stored[200:400, 80:300] == 255).all()
    assert (stored[100:200, 80:300] == 0).all() and (stored[:, 300:] == 0).all()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_box_mask()).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mask_png", "message"),
    [
        (b"not a picture at all", "not a PNG picture"),
        (_jpeg(), "not a PNG picture"),
        (_png(_box_mask(size=(200, 300))), "200×300 pixels; it must be exactly"),
        (_png(np.zeros((SIZE[1], SIZE[0]), np.uint8)), "The mask is empty"),
        (_png(np.full((SIZE[1], SIZE[0]), 255, np.uint8)), "covers the whole picture"),
        (_png(_box_mask())[:200], "damaged or incomplete"),
    ],
    ids=["garbage", "jpeg", "wrong-size", "empty", "everything", "truncated"],
)
def test_a_bad_mask_is_refused_and_nothing_changes(
    analysed_garment, mask_png, message, django_capture_on_commit_callbacks
):
    before = Garment.objects.get(pk=analysed_garment.pk)
    with (
        django_capture_on_commit_callbacks() as queued,
        pytest.raises(ValidationError) as refused,
    ):
        services.garment_mask_update(garment=analysed_garment, mask_png=mask_png)
    assert message in " ".join(refused.value.message_dict["mask"])
    assert queued == []
    after = Garment.objects.get(pk=analysed_garment.pk)
    assert (after.mask.name, after.cutout.name, after.analysis_status) == (
        before.mask.name,
        before.cutout.name,
        Garment.AnalysisStatus.DONE,
    )


def test_no_mask_is_painted_while_an_analysis_is_on_its_way(analysed_garment):
    Garment.objects.filter(pk=analysed_garment.pk).update(analysis_status="running")
    analysed_garment.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        services.garment_mask_update(garment=analysed_garment, mask_png=_png(_box_mask()))
    assert "still being analysed" in refused.value.message_dict["garment"][0]


def test_painting_fixes_a_garment_the_analysis_could_not_cut_out(
    merchant, media_root, django_capture_on_commit_callbacks
):
    # A garment on a background of its own colour: the automatic cut-out finds nothing.
    blue = Image.new("RGB", SIZE, (40, 90, 170))
    garment = GarmentFactory(merchant=merchant, image=_image_file(blue))
    services.garment_analyze(garment_id=garment.pk)
    garment.refresh_from_db()
    assert garment.analysis_status == Garment.AnalysisStatus.FAILED and not garment.mask

    garment = _paint(garment, _png(_box_mask()), django_capture_on_commit_callbacks)

    assert garment.analysis_status == Garment.AnalysisStatus.DONE
    assert garment.analysis_message == ""
    assert garment.cutout and garment.canny and {"r_shoulder", "l_hem"} <= set(garment.landmarks)


def _image_file(picture):
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name="shot.png")


def test_a_task_for_a_mask_painted_over_since_does_nothing(
    analysed_garment, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        services.garment_mask_update(garment=analysed_garment, mask_png=_png(_box_mask()))
    first_mask = Garment.objects.get(pk=analysed_garment.pk).mask.name
    second = _paint(
        Garment.objects.get(pk=analysed_garment.pk),
        _png(_box_mask(box=(60, 60, 320, 480))),
        django_capture_on_commit_callbacks,
    )
    assert services.garment_mask_apply(garment_id=second.pk, mask_name=first_mask) is None
    assert len(queued) == 2  # the first save's task and its clean-up, never run
    after = Garment.objects.get(pk=second.pk)
    assert after.cutout.name == second.cutout.name and after.landmarks == second.landmarks


# --- the painted mask: the page -------------------------------------------------------------------


def test_the_painter_page_shows_the_picture_the_mask_and_labelled_tools(
    merchant_client, analysed_garment
):
    response = merchant_client.get(reverse("merchant:garment_mask", args=[analysed_garment.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    mask_file = reverse("merchant:garment_mask_file", args=[analysed_garment.pk])
    assert f'data-mask-url="{mask_file}"' in page
    # The picture's size gives the stage its shape before the script runs.
    assert f'<img src="{analysed_garment.image.url}" alt="" width="384" height="512">' in page
    assert '<canvas id="mask-canvas" width="384" height="512"' in page
    for label in ("Brush", "Eraser", "Undo", "Reset", "Save mask"):
        assert re.search(rf"<button[^>]*>{label}</button>", page), label
    assert re.search(r'<label class="tool-size">Size\s*<input type="range"', page)
    assert "js/mask_painter.js" in page


def test_the_painter_reads_the_saved_mask_from_the_sites_own_address(
    merchant_client, analysed_garment
):
    # A canvas may read the pixels of a same-origin picture only; the bucket's URL would not do.
    response = merchant_client.get(
        reverse("merchant:garment_mask_file", args=[analysed_garment.pk])
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, no-store"
    with analysed_garment.mask.open("rb") as stored:
        assert b"".join(response.streaming_content) == stored.read()


def test_a_garment_without_a_mask_has_no_mask_file(merchant_client, analysed_garment):
    Garment.objects.filter(pk=analysed_garment.pk).update(mask="")
    url = reverse("merchant:garment_mask_file", args=[analysed_garment.pk])
    assert merchant_client.get(url).status_code == 404
    page = merchant_client.get(reverse("merchant:garment_mask", args=[analysed_garment.pk]))
    assert 'data-mask-url=""' in page.content.decode()


def test_saving_a_painted_mask_through_the_page(
    merchant_client, analysed_garment, django_capture_on_commit_callbacks
):
    upload = io.BytesIO(_png(_box_mask()))
    upload.name = "mask.png"
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(
            reverse("merchant:garment_mask", args=[analysed_garment.pk]), {"mask": upload}
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("merchant:garment_edit", args=[analysed_garment.pk])
    analysed_garment.refresh_from_db()
    assert np.array_equal(_stored(analysed_garment.mask, "L"), _box_mask())
    assert analysed_garment.analysis_status == Garment.AnalysisStatus.DONE


def test_a_bad_mask_is_explained_on_the_painter_page(merchant_client, analysed_garment):
    upload = io.BytesIO(_png(np.zeros((SIZE[1], SIZE[0]), np.uint8)))
    upload.name = "mask.png"
    url = reverse("merchant:garment_mask", args=[analysed_garment.pk])
    response = merchant_client.post(url, {"mask": upload})
    assert response.status_code == 400
    errors = re.search(r"data-painter-errors>(.*?)</div>", response.content.decode(), re.S)
    assert "The mask is empty: paint over the whole garment" in errors.group(1)
    nothing = merchant_client.post(url, {})
    assert "Paint the mask before saving it." in nothing.content.decode()


@pytest.mark.parametrize(
    ("status", "mask", "paintable"),
    [("running", "keep", False), ("pending", "", False), ("pending", "keep", True)],
    ids=["analysis-running", "analysis-queued", "painted-mask-being-applied"],
)
def test_the_painter_waits_for_an_automatic_analysis(
    merchant_client, analysed_garment, status, mask, paintable
):
    mask_name = analysed_garment.mask.name if mask == "keep" else mask
    Garment.objects.filter(pk=analysed_garment.pk).update(analysis_status=status, mask=mask_name)
    response = merchant_client.get(reverse("merchant:garment_mask", args=[analysed_garment.pk]))
    page = response.content.decode()
    assert ("<canvas" in page) is paintable
    assert ("is being analysed" in page) is not paintable


# --- creating model shots -------------------------------------------------------------------------


def test_pose_skeletons_leave_out_what_the_camera_cannot_see():
    front = pose_skeleton("front_standing")
    assert len(front["lines"]) == len(OPENPOSE_LIMBS) and len(front["points"]) == 18
    back = pose_skeleton("back_view")
    hidden = sum(1 for point in PRESETS["back_view"].body if point[2] == 0)
    assert hidden and len(back["points"]) == 18 - hidden
    assert len(back["lines"]) < len(OPENPOSE_LIMBS)
    neck = PRESETS["front_standing"].body[1]
    assert {"x": f"{neck[0]:.1f}", "y": f"{neck[1]:.1f}", "colour": "#ff5500"} in front["points"]


def test_the_shots_page_draws_every_pose_and_lists_scenes_and_model_choices(
    merchant_client, analysed_garment
):
    response = merchant_client.get(reverse("merchant:garment_shots", args=[analysed_garment.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count('<svg class="pose-skeleton"') == len(PRESETS)
    for name, preset in PRESETS.items():
        assert f'name="poses" value="{name}"' in page
        assert f'<span class="pose-title">{preset.title}</span>' in page
    back_view = next(
        option
        for option in page.split('<label class="pose-option"')
        if 'value="back_view"' in option
    )
    assert back_view.count("<line ") == len(pose_skeleton("back_view")["lines"])
    assert 'name="scenes" value="studio_white"' in page and 'name="scene_text"' in page
    assert '<option value="very_dark">Very dark</option>' in page
    assert 'name="hair"' in page and 'name="count"' in page and 'value="-1"' in page
    assert 'name="person_photo"' in page and 'name="consent"' in page


def test_a_batch_is_created_for_the_merchant(merchant_client, merchant, analysed_garment):
    response = merchant_client.post(
        reverse("merchant:garment_shots", args=[analysed_garment.pk]),
        {
            "poses": ["front_standing", "walking"],
            "scenes": ["cafe"],
            "scene_text": "sunny park",
            "skin_tone": "brown",
            "hair": "long  curly black",
            "count": "2",
            "seed": "1234",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("merchant:garment_gallery", args=[analysed_garment.pk])
    jobs = TryOnJob.objects.filter(garment=analysed_garment)
    assert jobs.count() == 2 * 2 * 2
    assert {job.owner for job in jobs} == {merchant}
    assert len({job.batch for job in jobs}) == 1
    assert {(job.pose, job.scene, job.scene_text) for job in jobs} == {
        (pose, scene, text)
        for pose in ("front_standing", "walking")
        for scene, text in (("cafe", ""), ("", "sunny park"))
    }
    assert {job.params["seed"] for job in jobs} == {1234, 1235}
    assert jobs.first().model_attributes == {"skin_tone": "brown", "hair": "long curly black"}
    # The advanced section left empty: the reference unit keeps its defaults.
    assert {job.params["reference"]["weight"] for job in jobs} == {ReferenceUnit.weight}


def test_the_advanced_section_sets_the_garment_reference(merchant_client, analysed_garment):
    url = reverse("merchant:garment_shots", args=[analysed_garment.pk])
    assert 'name="reference_weight"' in merchant_client.get(url).content.decode()
    response = merchant_client.post(
        url,
        {
            "poses": ["front_standing"],
            "count": "1",
            "seed": "-1",
            "reference_module": "reference_adain",
            "reference_weight": "0.4",
            "style_fidelity": "0.9",
            "ip_adapter_weight": "0.3",
            "hires": "on",
        },
    )
    assert response.status_code == 302
    job = TryOnJob.objects.get(garment=analysed_garment)
    assert job.params["enable_hr"] is True
    assert job.params["reference"] == {
        **asdict(ReferenceUnit()),
        "module": "reference_adain",
        "weight": 0.4,
        "style_fidelity": 0.9,
    }
    assert job.params["ip_adapter"] == {**asdict(IPAdapterUnit()), "weight": 0.3}
    wrong = merchant_client.post(
        url, {"poses": ["front_standing"], "count": "1", "seed": "-1", "reference_weight": "3"}
    )
    assert wrong.status_code == 400
    assert "less than or equal to 2" in _errors_of(wrong.content.decode(), "reference_weight")


def _errors_of(page: str, name: str) -> str:
    """The text of the form field ``name``'s block, where its errors are shown."""
    match = re.search(rf'<div class="field[^"]*">\s*<label for="id_{name}">.*?</div>', page, re.S)
    return match.group(0)


def test_service_errors_are_shown_next_to_their_fields(merchant_client, analysed_garment):
    url = reverse("merchant:garment_shots", args=[analysed_garment.pk])
    response = merchant_client.post(
        url, {"poses": ["front_standing"], "hair": "purple mohawk", "count": "1", "seed": "-1"}
    )
    assert response.status_code == 400
    assert "Must be &#x27;bald&#x27; or words from" in _errors_of(response.content.decode(), "hair")
    assert 'value="purple mohawk"' in response.content.decode()  # what was typed stays

    too_many = merchant_client.post(
        url,
        {
            "poses": list(PRESETS)[:4],
            "scenes": ["cafe", "city_street"],
            "count": "4",
            "seed": "-1",
        },
    )
    assert "At most 24 pictures in one batch" in _errors_of(too_many.content.decode(), "count")

    no_pose = merchant_client.post(url, {"count": "1", "seed": "-1"})
    assert "Choose at least one pose." in no_pose.content.decode()
    assert not TryOnJob.objects.exists()


def test_only_analysed_garments_get_model_shots(merchant_client, merchant):
    garment = GarmentFactory(merchant=merchant)  # never analysed
    url = reverse("merchant:garment_shots", args=[garment.pk])
    page = merchant_client.get(url).content.decode()
    assert "can be made once the garment has been analysed" in page
    assert 'name="poses"' not in page
    response = merchant_client.post(url, {"poses": ["front_standing"], "count": "1", "seed": "-1"})
    assert response.status_code == 400
    assert not TryOnJob.objects.exists()


def test_a_merchant_puts_the_garment_on_their_own_model(
    merchant_client, merchant, analysed_garment
):
    url = reverse("merchant:garment_photo_shot", args=[analysed_garment.pk])
    refused = merchant_client.post(url, {"person_photo": photo_upload()})
    assert refused.status_code == 400
    assert "Confirm that you have the model&#x27;s consent." in refused.content.decode()
    assert not TryOnJob.objects.exists()

    response = merchant_client.post(url, {"person_photo": photo_upload(), "consent": "on"})
    assert response.status_code == 302
    job = TryOnJob.objects.get()
    assert (job.kind, job.owner, job.garment) == ("photo", merchant, analysed_garment)
    assert job.consent_at is not None and job.person_photo


def test_a_photo_without_a_person_is_refused_on_the_photo_field(merchant_client, analysed_garment):
    url = reverse("merchant:garment_photo_shot", args=[analysed_garment.pk])
    empty_room = Image.new("RGB", (400, 600), (200, 200, 190))
    response = merchant_client.post(url, {"person_photo": photo_upload(empty_room), "consent": "1"})
    assert response.status_code == 400
    field = _errors_of(response.content.decode(), "person_photo")
    assert 'class="error"' in field
    assert not TryOnJob.objects.exists()


# --- the gallery ----------------------------------------------------------------------------------


def _gallery(client, garment, live=False):
    name = "merchant:garment_gallery_live" if live else "merchant:garment_gallery"
    return client.get(reverse(name, args=[garment.pk]))


def _result(garment, **kwargs):
    job = TryOnJobFactory(
        garment=garment, status=TryOnJob.Status.SUCCEEDED, progress=1.0, **kwargs.pop("job", {})
    )
    return TryOnResultFactory(job=job, index=0, **kwargs)


def test_the_gallery_is_empty_at_first(merchant_client, analysed_garment):
    page = _gallery(merchant_client, analysed_garment).content.decode()
    assert "No model shots yet." in page
    assert reverse("merchant:garment_shots", args=[analysed_garment.pk]) in page
    assert "hx-trigger" not in page


def test_the_gallery_shows_each_job_and_its_review(merchant_client, analysed_garment, merchant):
    staff = make_reviewer("staff")
    pending = _result(analysed_garment)
    approved = result_review(result=_result(analysed_garment), reviewer=staff, approve=True)
    rejected = result_review(
        result=_result(analysed_garment), reviewer=staff, approve=False, note="Hands look odd"
    )
    TryOnJobFactory(
        garment=analysed_garment,
        status=TryOnJob.Status.FAILED,
        error_message="The generation failed 3 times",
    )
    page = _gallery(merchant_client, analysed_garment).content.decode()
    for result in (pending, approved, rejected):
        assert reverse("result_file", args=[result.pk, "image"]) in page
    assert page.count("Pending staff review") == 1
    assert page.count("Rejected by staff") == 1 and "Hands look odd" in page
    # Only the approved model shot can be published.
    assert page.count("Publish on product page") == 1
    publish = reverse("merchant:result_publish", args=[analysed_garment.pk, approved.pk])
    assert f'action="{publish}"' in page
    assert "The generation failed 3 times" in page
    assert page.count("Re-run with another seed") == 4 and page.count(">Discard<") == 4
    assert "hx-trigger" not in page  # nothing is running: no polling


def test_the_gallery_polls_while_a_job_runs_and_stops_after(merchant_client, analysed_garment):
    job = TryOnJobFactory(
        garment=analysed_garment, status="running", progress=0.4, step="sampling 4/10"
    )
    live_url = reverse("merchant:garment_gallery_live", args=[analysed_garment.pk])
    page = _gallery(merchant_client, analysed_garment).content.decode()
    assert f'hx-get="{live_url}" hx-trigger="every 1500ms"' in page
    assert 'value="40"' in page and "sampling 4/10" in page
    assert "Re-run with another seed" not in page  # not while it runs

    TryOnJob.objects.filter(pk=job.pk).update(status="succeeded", progress=1.0)
    TryOnResultFactory(job=job, index=0)
    live = _gallery(merchant_client, analysed_garment, live=True)
    assert live.status_code == 200
    assert live.content.decode().lstrip().startswith('<section id="gallery"')
    assert "hx-trigger" not in live.content.decode()
    assert "no-cache" in live["Cache-Control"]


def test_the_gallery_takes_the_same_number_of_queries_for_2_or_8_jobs(
    merchant_client, analysed_garment, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            assert _gallery(merchant_client, analysed_garment).status_code == 200
        return len(queries)

    for _ in range(2):
        _result(analysed_garment)
    with django_assert_max_num_queries(7):
        few = count_queries()
    for _ in range(6):
        _result(analysed_garment)
    TryOnJobFactory(garment=analysed_garment, status="running")
    with django_assert_max_num_queries(7):
        many = count_queries()
    assert few == many, (few, many)


def test_publish_and_hide_an_approved_model_shot(merchant_client, analysed_garment, client):
    staff = make_reviewer("staff")
    result = result_review(result=_result(analysed_garment), reviewer=staff, approve=True)
    url = reverse("merchant:result_publish", args=[analysed_garment.pk, result.pk])

    response = merchant_client.post(url, {"published": "1"})
    assert response.status_code == 302
    result.refresh_from_db()
    assert result.published
    product = Client().get(analysed_garment.get_absolute_url()).content.decode()
    assert reverse("result_file", args=[result.pk, "image"]) in product
    gallery = _gallery(merchant_client, analysed_garment).content.decode()
    assert "On the product page" in gallery and ">Hide</button>" in gallery

    merchant_client.post(url, {"published": "0"})
    result.refresh_from_db()
    assert not result.published
    product = Client().get(analysed_garment.get_absolute_url()).content.decode()
    assert reverse("result_file", args=[result.pk, "image"]) not in product


def test_an_unreviewed_shot_cannot_be_published(merchant_client, analysed_garment):
    result = _result(analysed_garment)
    url = reverse("merchant:result_publish", args=[analysed_garment.pk, result.pk])
    response = merchant_client.post(url, {"published": "1"}, follow=True)
    assert "Staff have not approved this picture yet" in response.content.decode()
    result.refresh_from_db()
    assert not result.published


def test_htmx_actions_swap_the_gallery_and_say_what_happened(merchant_client, analysed_garment):
    staff = make_reviewer("staff")
    result = result_review(result=_result(analysed_garment), reviewer=staff, approve=True)
    url = reverse("merchant:result_publish", args=[analysed_garment.pk, result.pk])
    response = merchant_client.post(url, {"published": "1"}, headers={"HX-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 200
    assert '<section id="gallery"' in page and "<html" not in page
    assert 'hx-swap-oob="innerHTML:#gallery-notice"' in page
    assert "now shown on the product page" in page


def test_discard_deletes_the_job_its_results_and_files(
    merchant_client, analysed_garment, media_root, django_capture_on_commit_callbacks
):
    result = _result(analysed_garment)
    files = [f.path for f in result.stored_files()]
    url = reverse("merchant:job_discard", args=[analysed_garment.pk, result.job.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(url)
    assert response.status_code == 302
    assert not TryOnJob.objects.exists() and not TryOnResult.objects.exists()
    assert not any(os.path.exists(path) for path in files)


def test_rerun_makes_a_new_job_with_another_seed(merchant_client, merchant, analysed_garment):
    result = _result(analysed_garment, job={"scene": "cafe", "pose": "walking"})
    url = reverse("merchant:job_rerun", args=[analysed_garment.pk, result.job.pk])
    response = merchant_client.post(url)
    assert response.status_code == 302
    copy = TryOnJob.objects.exclude(pk=result.job.pk).get()
    assert (copy.owner, copy.pose, copy.scene, copy.status) == (
        merchant,
        "walking",
        "cafe",
        "queued",
    )
    assert copy.params["seed"] != result.job.params["seed"]
    assert TryOnJob.objects.filter(pk=result.job.pk).exists()


def test_rerun_counts_against_the_cap_of_active_model_shots(
    merchant_client, analysed_garment, settings
):
    settings.MAX_ACTIVE_MODEL_SHOTS = 1
    result = _result(analysed_garment)  # finished: not active
    url = reverse("merchant:job_rerun", args=[analysed_garment.pk, result.job.pk])
    assert merchant_client.post(url).status_code == 302
    assert TryOnJob.objects.filter(status="queued").count() == 1
    refused = merchant_client.post(url, HTTP_HX_REQUEST="true")
    assert "Not queued: you already have 1 model shots waiting or running" in (
        refused.content.decode()
    )
    assert TryOnJob.objects.count() == 2


def test_rerun_spends_the_write_budget(merchant_client, analysed_garment, monkeypatch):
    from common.api_errors import ScopedByMethodThrottle

    monkeypatch.setattr(ScopedByMethodThrottle, "THROTTLE_RATES", {"read": None, "write": "2/min"})
    result = _result(analysed_garment)
    url = reverse("merchant:job_rerun", args=[analysed_garment.pk, result.job.pk])
    for _ in range(2):
        merchant_client.post(url)
    refused = merchant_client.post(url, HTTP_HX_REQUEST="true")
    assert "faster than allowed" in refused.content.decode()
    assert TryOnJob.objects.count() == 3


# --- who may do what ------------------------------------------------------------------------------


def _urls(garment, job=None, result=None):
    urls = [
        ("get", reverse("merchant:garment_mask", args=[garment.pk])),
        ("get", reverse("merchant:garment_mask_file", args=[garment.pk])),
        ("get", reverse("merchant:garment_shots", args=[garment.pk])),
        ("get", reverse("merchant:garment_gallery", args=[garment.pk])),
        ("get", reverse("merchant:garment_gallery_live", args=[garment.pk])),
        ("post", reverse("merchant:garment_mask", args=[garment.pk])),
        ("post", reverse("merchant:garment_shots", args=[garment.pk])),
        ("post", reverse("merchant:garment_photo_shot", args=[garment.pk])),
    ]
    if job is not None:
        urls += [
            ("post", reverse("merchant:job_discard", args=[garment.pk, job.pk])),
            ("post", reverse("merchant:job_rerun", args=[garment.pk, job.pk])),
        ]
    if result is not None:
        urls.append(("post", reverse("merchant:result_publish", args=[garment.pk, result.pk])))
    return urls


def test_another_merchants_garment_and_jobs_are_not_found(client, make_merchant, analysed_garment):
    result = _result(analysed_garment)
    client.force_login(make_merchant("merchant-b"))
    for method, url in _urls(analysed_garment, result.job, result):
        assert getattr(client, method)(url, {"published": "1"}).status_code == 404, url
    assert TryOnJob.objects.count() == 1 and not TryOnResult.objects.get().published


def test_jobs_are_reached_only_through_their_own_garment(
    merchant_client, merchant, analysed_garment
):
    other_garment = GarmentFactory(merchant=merchant)
    result = _result(analysed_garment)
    for _method, url in _urls(other_garment, result.job, result)[-3:]:
        assert merchant_client.post(url, {"published": "1"}).status_code == 404, url


def test_a_shoppers_tryon_of_the_garment_is_not_the_merchants(merchant_client, analysed_garment):
    shopper = UserFactory(username="shopper")
    job = TryOnJobFactory(garment=analysed_garment, owner=shopper, status="succeeded")
    result = TryOnResultFactory(job=job, index=0)
    page = _gallery(merchant_client, analysed_garment).content.decode()
    assert "No model shots yet." in page
    for _method, url in _urls(analysed_garment, job, result)[-3:]:
        assert merchant_client.post(url, {"published": "1"}).status_code == 404, url


def test_visitors_and_shoppers_are_kept_out(client, analysed_garment):
    for _method, url in _urls(analysed_garment):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.force_login(UserFactory(username="shopper"))
    for _method, url in _urls(analysed_garment):
        assert client.get(url).status_code == 403, url


def test_actions_only_accept_posts_with_a_csrf_token(merchant, analysed_garment):
    result = _result(analysed_garment)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(merchant)
    for _method, url in _urls(analysed_garment, result.job, result)[-3:]:
        assert strict.get(url).status_code == 405, url
        assert strict.post(url, {"published": "1"}).status_code == 403, url
    assert TryOnJob.objects.count() == 1


def test_the_garment_list_and_edit_page_link_to_the_gallery_and_the_painter(
    merchant_client, analysed_garment
):
    gallery = reverse("merchant:garment_gallery", args=[analysed_garment.pk])
    painter = reverse("merchant:garment_mask", args=[analysed_garment.pk])
    home = merchant_client.get(reverse("merchant:home")).content.decode()
    edit = merchant_client.get(
        reverse("merchant:garment_edit", args=[analysed_garment.pk])
    ).content.decode()
    for page in (home, edit):
        assert f'href="{gallery}"' in page and f'href="{painter}"' in page
