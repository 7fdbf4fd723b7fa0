"""factory_boy factories for rows the tests need in bulk."""

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from catalog.models import Garment
from tryon.models import TryOnJob, TryOnResult


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


def make_reviewer(username: str = "reviewer"):
    """A staff member who may review model shots (the result change permission), no more."""
    from django.contrib.auth.models import Permission

    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_tryonresult"))
    return user


class GarmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Garment

    merchant = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Garment {n}")
    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    category = Garment.Category.UPPER
    price = "25.00"
    image = factory.django.ImageField(width=150, height=200, color="navy", format="PNG")


class TryOnJobFactory(factory.django.DjangoModelFactory):
    """A model-shot job (no person photo); pass ``kind="photo"`` with ``person_photo``."""

    class Meta:
        model = TryOnJob

    kind = TryOnJob.Kind.MODEL_SHOT
    garment = factory.SubFactory(GarmentFactory)
    owner = factory.LazyAttribute(lambda job: job.garment.merchant)
    pose = "front_standing"
    params = factory.LazyFunction(lambda: {"steps": 2, "width": 128, "height": 192, "seed": 1})
    engine = "tiny"
    consent_at = factory.LazyAttribute(
        lambda job: timezone.now() if job.kind == TryOnJob.Kind.PHOTO else None
    )


class TryOnResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TryOnResult

    job = factory.SubFactory(TryOnJobFactory, status=TryOnJob.Status.SUCCEEDED, progress=1.0)
    index = factory.Sequence(lambda n: n)
    seed = factory.Sequence(lambda n: 1000 + n)
    infotext = "a prompt\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 1000"
    image = factory.django.ImageField(width=128, height=192, color="teal", format="PNG")
    mask = factory.django.ImageField(width=128, height=192, color="white", format="PNG")
    openpose = factory.django.ImageField(width=128, height=192, color="black", format="PNG")
    canny = factory.django.ImageField(width=128, height=192, color="black", format="PNG")
    composite = factory.django.ImageField(width=128, height=192, color="grey", format="PNG")
