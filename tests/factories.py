"""factory_boy factories for rows the tests need in bulk."""

import factory
from django.contrib.auth import get_user_model

from catalog.models import Garment


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


class GarmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Garment

    merchant = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Garment {n}")
    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    category = Garment.Category.UPPER
    price = "25.00"
    image = factory.django.ImageField(width=150, height=200, color="navy", format="PNG")
