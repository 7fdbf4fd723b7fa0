"""A garment's description is capped at DESCRIPTION_MAX characters wherever it is written, and a
description stored before the cap stays whole (it only cannot be saved again until shortened)."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.forms import GarmentAdminForm
from catalog.models import DESCRIPTION_MAX, Garment
from tests.catalog.test_merchant_area import FORM as MERCHANT_FORM
from tests.factories import GarmentFactory

pytestmark = pytest.mark.django_db

FORM = {name: value for name, value in MERCHANT_FORM.items() if name != "description"}


@pytest.fixture
def api(merchant):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=merchant).key}")
    return client


def test_the_api_refuses_one_character_too_many_naming_description(api, merchant):
    garment = GarmentFactory(merchant=merchant, description="Soft.")
    url = f"/api/garments/{garment.pk}/"

    refused = api.patch(url, {"description": "x" * (DESCRIPTION_MAX + 1)}, format="json")
    assert refused.status_code == 400
    assert refused.json()["field"] == "description"
    assert str(DESCRIPTION_MAX) in refused.json()["message"]
    garment.refresh_from_db()
    assert garment.description == "Soft."

    accepted = api.patch(url, {"description": "x" * DESCRIPTION_MAX}, format="json")
    assert accepted.status_code == 200, accepted.json()
    garment.refresh_from_db()
    assert garment.description == "x" * DESCRIPTION_MAX


def test_the_merchant_form_refuses_one_character_too_many(merchant_client, merchant):
    garment = GarmentFactory(merchant=merchant, description="Soft.")
    url = reverse("merchant:garment_edit", args=[garment.pk])

    refused = merchant_client.post(url, {**FORM, "description": "x" * (DESCRIPTION_MAX + 1)})
    assert refused.status_code == 400
    assert "description" in refused.context["form"].errors
    assert f"at most {DESCRIPTION_MAX} characters" in refused.content.decode()
    garment.refresh_from_db()
    assert garment.description == "Soft."

    accepted = merchant_client.post(url, {**FORM, "description": "x" * DESCRIPTION_MAX})
    assert accepted.status_code == 302
    garment.refresh_from_db()
    assert garment.description == "x" * DESCRIPTION_MAX


def test_the_admin_form_and_full_clean_refuse_it_too(merchant):
    garment = GarmentFactory(merchant=merchant)
    data = {**FORM, "merchant": merchant.pk, "description": "x" * (DESCRIPTION_MAX + 1)}
    form = GarmentAdminForm(data=data, instance=garment)
    assert not form.is_valid() and list(form.errors) == ["description"]

    garment.description = "x" * (DESCRIPTION_MAX + 1)
    with pytest.raises(ValidationError) as caught:
        garment.full_clean()
    assert list(caught.value.message_dict) == ["description"]


def test_a_description_stored_before_the_cap_is_kept_whole_but_not_saved_again(api, merchant):
    garment = GarmentFactory(merchant=merchant)
    long = "word " * 400_000  # 2 MB, written as an old row was: past every validation
    Garment.objects.filter(pk=garment.pk).update(description=long)

    shown = api.get(f"/api/garments/{garment.pk}/")
    assert shown.status_code == 200 and shown.json()["description"] == long

    # Any save through the API validates the whole row: shorten the description first.
    refused = api.patch(f"/api/garments/{garment.pk}/", {"title": "New title"}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "description"
    garment.refresh_from_db()
    assert garment.description == long and garment.title != "New title"

    fixed = api.patch(
        f"/api/garments/{garment.pk}/",
        {"title": "New title", "description": long[:DESCRIPTION_MAX]},
        format="json",
    )
    assert fixed.status_code == 200, fixed.json()
