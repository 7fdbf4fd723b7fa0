"""Staff manage garments in Django admin: list with thumbnails, filters, search, upload."""

import pytest
from django.urls import reverse

from catalog.models import Garment
from tests.conftest import product_shot_upload, stored_files
from tests.factories import GarmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_changelist_shows_thumbnails_and_filters(staff_client):
    garment = GarmentFactory(title="Admin tee", category="upper")
    GarmentFactory(title="Admin skirt", category="lower")
    response = staff_client.get(reverse("admin:catalog_garment_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'<img src="{garment.image.url}"' in html
    filtered = staff_client.get(reverse("admin:catalog_garment_changelist"), {"category": "lower"})
    assert "Admin skirt" in filtered.content.decode()
    assert "Admin tee" not in filtered.content.decode()
    searched = staff_client.get(reverse("admin:catalog_garment_changelist"), {"q": garment.sku})
    assert "Admin tee" in searched.content.decode()
    assert "Admin skirt" not in searched.content.decode()


def test_staff_upload_through_admin_is_cleaned_like_the_merchant_form(
    staff_client, admin_user, make_merchant, media_root
):
    merchant = make_merchant("merchant-a")
    data = {
        "merchant": merchant.pk,
        "title": "Admin upload",
        "sku": "ADM-1",
        "category": "dress",
        "price": "49.00",
        "analysis_status": "pending",
        "image": product_shot_upload("Original Name.png", shape="dress"),
    }
    response = staff_client.post(reverse("admin:catalog_garment_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    garment = Garment.objects.get(sku="ADM-1")
    assert garment.merchant == merchant
    assert "Original" not in garment.image.name
    assert stored_files(media_root) == [garment.image.name]


def test_admin_refuses_a_non_image(staff_client, make_merchant, media_root):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {
        "merchant": make_merchant("merchant-a").pk,
        "title": "Bad",
        "sku": "BAD",
        "category": "upper",
        "price": "1.00",
        "analysis_status": "pending",
        "image": SimpleUploadedFile("x.png", b"GIF89a nope", content_type="image/png"),
    }
    response = staff_client.post(reverse("admin:catalog_garment_add"), data)
    assert response.status_code == 200
    assert "not a JPEG, PNG or WebP" in response.content.decode()
    assert Garment.objects.count() == 0
    assert stored_files(media_root) == []


def test_admin_delete_removes_files(staff_client, media_root, django_capture_on_commit_callbacks):
    garment = GarmentFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:catalog_garment_delete", args=[garment.pk]), {"post": "yes"}
        )
    assert response.status_code == 302
    assert Garment.objects.count() == 0
    assert stored_files(media_root) == []
