"""Pages and endpoints of the try-on app."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from catalog.selectors import is_merchant

from .selectors import system_health


@login_required
def after_login(request):
    """Send each kind of account to its own starting page after signing in."""
    if is_merchant(request.user):
        return redirect("merchant:home")
    if request.user.is_staff:
        return redirect("admin:index")
    return redirect("catalog:home")


@never_cache
@require_GET
def healthz(request):
    """Always 200 while the process can serve; each dependency says ``ok`` or ``degraded``."""
    return JsonResponse(system_health())
