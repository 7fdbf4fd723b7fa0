from django.conf import settings

from common.roles import is_merchant


def site(request):
    """Values every page's navigation needs (lazy: templates call them only when used)."""
    return {
        "nav_is_merchant": lambda: is_merchant(request.user),
        "retention_hours": settings.PERSON_PHOTO_RETENTION_HOURS,
    }
