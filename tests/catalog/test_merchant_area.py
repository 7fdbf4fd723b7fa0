"""The merchant area: sign-in, upload through the real form, edit, delete, ownership."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from catalog.models import Garment
from tests.conftest import product_shot_upload, stored_files
from tests.factories import GarmentFactory

pytestmark = pytest.mark.django_db

FORM = {
    "title": "Crew-neck tee",
    "sku": "TEE-1",
    "category": "upper",
    "price": "19.90",
    "colour": "navy",
    "material": "cotton",
    "description": "Soft.",
}


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    for name in ("merchant:home", "merchant:garment_create"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_signed_in_shoppers_are_refused_the_merchant_area(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("shopper"))
    response = client.get(reverse("merchant:home"))
    assert response.status_code == 403
    assert "merchant accounts" in response.content.decode()


def test_merchant_can_sign_in_with_the_login_page(client, merchant):
    response = client.post(
        reverse("login"), {"username": "merchant-a", "password": "pw-for-tests-1"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("merchant:home")
    assert "You have no garments yet" in response.content.decode()


def test_upload_through_the_form_stores_a_reencoded_picture_under_a_random_name(
    merchant_client, merchant, media_root
):
    response = merchant_client.post(
        reverse("merchant:garment_create"),
        {**FORM, "image": product_shot_upload(name="../../My Shirt.png")},
        follow=True,
    )
    assert response.status_code == 200
    assert "was added to your catalog" in response.content.decode()
    garment = Garment.objects.get()
    assert garment.merchant == merchant
    assert garment.analysis_status == Garment.AnalysisStatus.PENDING
    assert "My Shirt" not in garment.image.name and ".." not in garment.image.name
    assert garment.image.name.startswith("garments/images/")
    assert stored_files(media_root) == [garment.image.name]
    with Image.open(garment.image.path) as stored:
        assert stored.format == "PNG" and stored.size == (384, 512)
    assert "Crew-neck tee" in merchant_client.get(reverse("merchant:home")).content.decode()
    # The new garment is in the public catalog straight away.
    assert "Crew-neck tee" in merchant_client.get(reverse("catalog:home")).content.decode()


def test_exif_orientation_is_applied_and_metadata_dropped(merchant_client, media_root):
    picture = Image.new("RGB", (400, 200), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    exif[0x010F] = "SecretCam"  # Make
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    upload = SimpleUploadedFile("rotated.jpg", buffer.getvalue(), content_type="image/jpeg")
    response = merchant_client.post(reverse("merchant:garment_create"), {**FORM, "image": upload})
    assert response.status_code == 302
    with Image.open(Garment.objects.get().image.path) as stored:
        assert stored.size == (200, 400)
        assert not stored.getexif()
    with open(Garment.objects.get().image.path, "rb") as stored_bytes:
        assert b"SecretCam" not in stored_bytes.read()


def _encoded(fmt, size=(300, 300)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"%PDF-1.4 not a picture at all", "not a JPEG, PNG or WebP"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
            "not a JPEG, PNG or WebP",
        ),
        (b"<html><body>hello</body></html>", "not a JPEG, PNG or WebP"),
        (_encoded("TIFF"), "not a JPEG, PNG or WebP"),
        (_encoded("GIF"), "not a JPEG, PNG or WebP"),
        (_encoded("JPEG")[:400], "damaged or incomplete"),
        (_encoded("PNG", size=(100, 300)), "at least 128 pixels"),
    ],
    ids=["pdf", "svg", "html", "tiff", "gif", "truncated-jpeg", "too-small"],
)
def test_unusable_files_are_refused_with_the_reason_and_nothing_is_written(
    merchant_client, media_root, payload, message
):
    # Named .jpg and sent as image/jpeg: neither the name nor the client's type is trusted.
    upload = SimpleUploadedFile("shirt.jpg", payload, content_type="image/jpeg")
    response = merchant_client.post(reverse("merchant:garment_create"), {**FORM, "image": upload})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Garment.objects.count() == 0
    assert stored_files(media_root) == []


def test_oversized_file_is_refused(merchant_client, media_root, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = merchant_client.post(
        reverse("merchant:garment_create"), {**FORM, "image": product_shot_upload()}
    )
    assert response.status_code == 400
    assert "the limit is" in response.content.decode()
    assert Garment.objects.count() == 0
    assert stored_files(media_root) == []


def test_too_many_pixels_is_refused_before_decoding(merchant_client, settings):
    settings.UPLOAD_MAX_PIXELS = 100_000
    response = merchant_client.post(
        reverse("merchant:garment_create"), {**FORM, "image": product_shot_upload()}
    )
    assert response.status_code == 400
    assert "megapixels" in response.content.decode()
    assert Garment.objects.count() == 0


def test_missing_fields_are_named_and_nothing_is_stored(merchant_client, media_root):
    response = merchant_client.post(reverse("merchant:garment_create"), {"title": "Only a title"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"sku", "category", "price", "image"}
    assert "This field is required." in response.content.decode()
    assert Garment.objects.count() == 0
    assert stored_files(media_root) == []


def test_negative_price_and_duplicate_sku_are_refused(merchant_client, merchant):
    GarmentFactory(merchant=merchant, sku="TEE-1")
    response = merchant_client.post(
        reverse("merchant:garment_create"),
        {**FORM, "sku": "tee-1", "price": "-3", "image": product_shot_upload()},
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "already have a garment with SKU" in errors["sku"][0]
    assert "price" in errors
    assert Garment.objects.count() == 1


def test_two_merchants_may_use_the_same_sku(merchant_client, make_merchant):
    GarmentFactory(merchant=make_merchant("merchant-b"), sku="TEE-1")
    response = merchant_client.post(
        reverse("merchant:garment_create"), {**FORM, "image": product_shot_upload()}
    )
    assert response.status_code == 302
    assert Garment.objects.filter(sku="TEE-1").count() == 2


def test_edit_without_a_new_picture_keeps_the_picture(merchant_client, merchant):
    garment = GarmentFactory(merchant=merchant, title="Old title")
    image_name = garment.image.name
    response = merchant_client.post(
        reverse("merchant:garment_edit", args=[garment.pk]), {**FORM, "title": "New title"}
    )
    assert response.status_code == 302
    garment.refresh_from_db()
    assert garment.title == "New title" and garment.image.name == image_name


def test_a_refused_new_picture_answers_400_and_keeps_the_old_one(merchant_client, merchant):
    garment = GarmentFactory(merchant=merchant, title="Old title")
    image_name = garment.image.name
    svg = SimpleUploadedFile("new.png", b"<svg onload='alert(1)'/>", content_type="image/png")
    response = merchant_client.post(
        reverse("merchant:garment_edit", args=[garment.pk]),
        {**FORM, "title": "New title", "image": svg},
    )
    assert response.status_code == 400
    assert "not a JPEG, PNG or WebP" in response.content.decode()
    garment.refresh_from_db()
    assert garment.title == "Old title" and garment.image.name == image_name


def test_replacing_the_picture_deletes_the_old_files_and_resets_the_analysis(
    merchant_client, merchant, media_root, django_capture_on_commit_callbacks
):
    garment = GarmentFactory(
        merchant=merchant, analysis_status="done", cutout=product_shot_upload("cut.png")
    )
    old_files = {garment.image.name, garment.cutout.name}
    assert old_files <= set(stored_files(media_root))
    with django_capture_on_commit_callbacks() as callbacks:
        response = merchant_client.post(
            reverse("merchant:garment_edit", args=[garment.pk]),
            {**FORM, "image": product_shot_upload("new.png", shape="hoodie")},
        )
    assert response.status_code == 302
    garment.refresh_from_db()
    # Committed, before the queued work has run: the stale analysis is no longer shown.
    assert garment.analysis_status == Garment.AnalysisStatus.PENDING
    assert not garment.cutout
    for callback in callbacks:  # old files deleted, new picture analysed
        callback()
    garment.refresh_from_db()
    assert garment.analysis_status == Garment.AnalysisStatus.DONE
    current = {garment.image.name, garment.cutout.name, garment.mask.name, garment.canny.name}
    assert set(stored_files(media_root)) == current
    assert not old_files & current


def test_delete_removes_the_row_and_its_files(
    merchant_client, merchant, media_root, django_capture_on_commit_callbacks
):
    garment = GarmentFactory(merchant=merchant)
    keep = GarmentFactory(merchant=merchant)
    url = reverse("merchant:garment_delete", args=[garment.pk])
    assert "cannot be undone" in merchant_client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(url)
    assert response.status_code == 302
    assert list(Garment.objects.all()) == [keep]
    assert stored_files(media_root) == [keep.image.name]


def test_merchant_b_cannot_see_edit_or_delete_merchant_as_garment(
    client, make_merchant, media_root
):
    owner = make_merchant("merchant-a")
    other = make_merchant("merchant-b")
    garment = GarmentFactory(merchant=owner, title="A's tee")
    client.force_login(other)
    assert "A's tee" not in client.get(reverse("merchant:home")).content.decode()
    edit = reverse("merchant:garment_edit", args=[garment.pk])
    delete = reverse("merchant:garment_delete", args=[garment.pk])
    assert client.get(edit).status_code == 404
    assert client.post(edit, {**FORM, "title": "Hijacked"}).status_code == 404
    assert client.post(delete).status_code == 404
    garment.refresh_from_db()
    assert garment.title == "A's tee"
    assert garment.image.name in stored_files(media_root)


def test_the_form_cannot_assign_the_garment_to_another_merchant(
    merchant_client, merchant, make_merchant
):
    other = make_merchant("merchant-b")
    merchant_client.post(
        reverse("merchant:garment_create"),
        {**FORM, "merchant": other.pk, "image": product_shot_upload()},
    )
    assert Garment.objects.get().merchant == merchant


def test_after_signing_in_each_account_lands_on_its_own_page(
    client, merchant, admin_user, django_user_model
):
    shopper = django_user_model.objects.create_user("shopper")
    for user, expected in (
        (merchant, reverse("merchant:home")),
        (admin_user, reverse("admin:index")),
        (shopper, reverse("catalog:home")),
    ):
        client.force_login(user)
        assert client.get(reverse("after_login"))["Location"] == expected
