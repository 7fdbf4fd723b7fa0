"""Who may do what: the merchant role (members of the ``merchants`` group) and its page guard.

Staff are Django's own ``is_staff``; shoppers are every signed-in or anonymous visitor.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

MERCHANTS_GROUP = "merchants"


def is_merchant(user) -> bool:
    """Whether ``user`` may use the merchant area (members of the ``merchants`` group)."""
    return user.is_authenticated and user.groups.filter(name=MERCHANTS_GROUP).exists()


def merchant_required(view):
    """Anonymous visitors go to the login page; signed-in non-merchants get a 403."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_merchant(request.user):
            raise PermissionDenied("The merchant area is for merchant accounts.")
        return view(request, *args, **kwargs)

    return wrapper
