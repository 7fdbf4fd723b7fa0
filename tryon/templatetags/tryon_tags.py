"""Template tags for the try-on parts of other apps' pages: the product page's "Try it on" form
and its published model shots (the catalog's code never imports the try-on app)."""

from django import template

from tryon import selectors
from tryon.forms import TryOnForm
from tryon.views import _last_photo_job

register = template.Library()


@register.simple_tag(takes_context=True)
def new_tryon_form(context) -> TryOnForm:
    """An empty "Try it on" form; it offers the last photo when the shopper has one."""
    request = context["request"]
    return TryOnForm(reusable=_last_photo_job(request) is not None)


@register.simple_tag
def published_model_shots(garment) -> list:
    """The model shots of ``garment`` that staff approved and its merchant published."""
    return list(selectors.published_model_shots(garment=garment))
