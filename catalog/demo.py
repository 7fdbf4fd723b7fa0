"""The demo catalog ``seed_demo`` creates: who signs in, and which garments they sell; and
``analysed_tee``, the one drawn garment that scripts and benchmarks need."""

import io
import secrets
from decimal import Decimal
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.db import transaction

from common.roles import MERCHANTS_GROUP
from pipelines.samples import DEMO_LOOKS, DemoLook, draw_product_shot

from . import services
from .models import Garment

DEMO_MERCHANT = "demo-merchant"
DEMO_STAFF = "demo-staff"


class DemoGarment(NamedTuple):
    sku: str  # also the key of its drawing in pipelines.samples.DEMO_LOOKS
    title: str
    material: str
    price: str
    description: str

    @property
    def look(self) -> DemoLook:
        return DEMO_LOOKS[self.sku]


DEMO_GARMENTS = [
    DemoGarment(
        "DEMO-TEE-NAVY",
        "Classic crew-neck tee",
        "Cotton jersey",
        "19.00",
        "A soft everyday tee with short sleeves.",
    ),
    DemoGarment(
        "DEMO-TEE-STRIPE",
        "Breton striped tee",
        "Cotton",
        "24.00",
        "Navy stripes on white, a wardrobe staple.",
    ),
    DemoGarment(
        "DEMO-HOODIE-RED",
        "Long-sleeve hoodie",
        "Brushed fleece",
        "49.00",
        "Warm long sleeves, relaxed fit.",
    ),
    DemoGarment(
        "DEMO-TROUSERS-SAND",
        "Straight chinos",
        "Cotton twill",
        "59.00",
        "Straight-leg chinos in sand.",
    ),
    DemoGarment(
        "DEMO-SKIRT-GREEN", "A-line skirt", "Wool blend", "45.00", "Knee-length A-line skirt."
    ),
    DemoGarment(
        "DEMO-DRESS-ROSE",
        "Summer slip dress",
        "Viscose",
        "69.00",
        "A light slip dress with thin straps.",
    ),
    DemoGarment(
        "DEMO-JACKET-OLIVE", "Field jacket", "Waxed cotton", "129.00", "An open-front field jacket."
    ),
]


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _user_with_new_password(username: str, **flags):
    """Create ``username`` if missing, give it a fresh random password and return both."""
    user, _ = get_user_model().objects.get_or_create(username=username, defaults=flags)
    for flag, value in flags.items():
        setattr(user, flag, value)
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save()
    return user, password


def analysed_tee(merchant, *, title: str = "Drawn tee", sku: str = "TEE") -> Garment:
    """A T-shirt drawn as a product shot, ingested for ``merchant`` and analysed in this
    process (no worker needed): for benchmarks and scripts that need a garment to try on."""
    shot = draw_product_shot("tshirt", size=(384, 512))
    garment = Garment(
        merchant=merchant,
        title=title,
        sku=sku,
        category=shot.category,
        price=Decimal("1.00"),
        image=ContentFile(_png(shot.image), name=f"{sku.lower()}.png"),
    )
    return services.garment_ingest(garment=garment, analyse_now=True)


@transaction.atomic
def seed_demo() -> dict:
    """Create (or refresh) the demo accounts and garments; safe to run any number of times.

    Returns the accounts' new passwords and how many garments were created this time.
    """
    merchant, merchant_password = _user_with_new_password(DEMO_MERCHANT)
    merchant.groups.add(Group.objects.get_or_create(name=MERCHANTS_GROUP)[0])
    _, staff_password = _user_with_new_password(DEMO_STAFF, is_staff=True, is_superuser=True)

    created = 0
    for demo in DEMO_GARMENTS:
        existing = Garment.objects.filter(merchant=merchant, sku=demo.sku).first()
        if existing is not None:
            # A demo catalog from before the analysis existed (or whose analysis failed) is
            # analysed again, so `make run` always shows cut-outs.
            if existing.analysis_status != Garment.AnalysisStatus.DONE:
                services.garment_reanalyse(garment=existing)
            continue
        shot = demo.look.draw()
        garment = Garment(
            merchant=merchant,
            sku=demo.sku,
            title=demo.title,
            category=shot.category,
            colour=demo.look.colour,
            material=demo.material,
            price=Decimal(demo.price),
            description=demo.description,
            image=ContentFile(_png(shot.image), name=f"{demo.sku.lower()}.png"),
        )
        services.garment_ingest(garment=garment)
        created += 1
    return {
        "accounts": {DEMO_MERCHANT: merchant_password, DEMO_STAFF: staff_password},
        "garments_created": created,
        "garments_total": Garment.objects.filter(merchant=merchant).count(),
    }
