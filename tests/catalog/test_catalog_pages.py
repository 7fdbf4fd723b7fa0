"""The public catalog: listing, filtering, search, pagination and the product page."""

import pytest
from django.urls import reverse

from catalog.models import Garment
from catalog.views import PAGE_SIZE
from tests.factories import GarmentFactory

pytestmark = pytest.mark.django_db


def _titles(response):
    return [g.title for g in response.context["page"].object_list]


def test_home_lists_garments_newest_first_with_images(client):
    older = GarmentFactory(title="Older tee")
    newer = GarmentFactory(title="Newer tee")
    response = client.get(reverse("catalog:home"))
    assert response.status_code == 200
    assert _titles(response) == ["Newer tee", "Older tee"]
    html = response.content.decode()
    assert newer.image.url in html and older.image.url in html
    assert newer.get_absolute_url() in html


def test_home_filters_by_category(client):
    GarmentFactory(title="Tee", category=Garment.Category.UPPER)
    GarmentFactory(title="Chinos", category=Garment.Category.LOWER)
    response = client.get(reverse("catalog:home"), {"category": "lower"})
    assert _titles(response) == ["Chinos"]


def test_unknown_category_shows_everything_instead_of_failing(client):
    GarmentFactory(title="Tee")
    response = client.get(reverse("catalog:home"), {"category": "hats"})
    assert response.status_code == 200
    assert _titles(response) == ["Tee"]


def test_search_matches_title_description_colour_and_sku(client):
    GarmentFactory(title="Linen shirt", description="Breezy")
    GarmentFactory(title="Wool coat", colour="charcoal", sku="COAT-9")
    GarmentFactory(title="Jeans", description="Indigo denim")
    get = lambda q: _titles(client.get(reverse("catalog:home"), {"q": q}))  # noqa: E731
    assert get("linen") == ["Linen shirt"]
    assert get("DENIM") == ["Jeans"]
    assert get("charcoal") == ["Wool coat"]
    assert get("coat-9") == ["Wool coat"]
    assert get("nothing-like-this") == []
    assert "No garments match" in client.get(reverse("catalog:home"), {"q": "zzz"}).content.decode()


def test_search_and_category_combine(client):
    GarmentFactory(title="Red tee", category="upper")
    GarmentFactory(title="Red skirt", category="lower")
    response = client.get(reverse("catalog:home"), {"q": "red", "category": "lower"})
    assert _titles(response) == ["Red skirt"]


def test_pagination_keeps_the_filters(client):
    for i in range(PAGE_SIZE + 3):
        GarmentFactory(title=f"Tee {i:02d}", category="upper")
    GarmentFactory(title="Skirt", category="lower")
    first = client.get(reverse("catalog:home"), {"category": "upper"})
    assert len(_titles(first)) == PAGE_SIZE
    assert "category=upper&amp;page=2" in first.content.decode()
    second = client.get(reverse("catalog:home"), {"category": "upper", "page": 2})
    assert len(_titles(second)) == 3
    assert "Skirt" not in _titles(second)
    # A page past the end shows the last page rather than an error.
    assert client.get(reverse("catalog:home"), {"page": 99}).status_code == 200


def test_empty_catalog_says_so(client):
    response = client.get(reverse("catalog:home"))
    assert "No garments yet" in response.content.decode()


def test_home_renders_in_a_constant_number_of_queries(client, django_assert_max_num_queries):
    for _ in range(PAGE_SIZE):
        GarmentFactory()
    with django_assert_max_num_queries(3):
        client.get(reverse("catalog:home"))


def test_product_page_shows_the_garment(client):
    garment = GarmentFactory(
        title="Field jacket",
        category="outer",
        colour="olive",
        material="Waxed cotton",
        price="129.00",
        description="Open front.",
    )
    response = client.get(garment.get_absolute_url())
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Field jacket",
        "Outerwear",
        "olive",
        "Waxed cotton",
        "129.00",
        "Open front.",
        garment.image.url,
    ):
        assert text in html


def test_missing_product_is_a_404_page(client):
    response = client.get(reverse("catalog:garment", args=[12345]))
    assert response.status_code == 404
