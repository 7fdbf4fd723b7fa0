"""Pages and endpoints of the try-on app."""

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from catalog.selectors import is_merchant

from .models import TryOnJob, TryOnResult
from .selectors import JOB_FILE_FIELDS, file_access, system_health
from .services import record_photo_access


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


def _private_file_response(stored, *, public: bool) -> FileResponse:
    response = FileResponse(stored.open("rb"), filename=Path(stored.name).name)
    response["Content-Disposition"] = f'inline; filename="{Path(stored.name).name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "public, max-age=300" if public else "private, no-store"
    return response


def _serve(request, job: TryOnJob, stored, what: str, *, published: bool = False):
    if not stored:
        raise Http404("no such file")
    access = file_access(
        job, user=request.user, session_key=request.session.session_key, published=published
    )
    if not access:
        raise Http404("no such file")  # never confirm that someone else's file exists
    response = _private_file_response(stored, public=access == "public")
    if access == "audited":
        record_photo_access(user=request.user, job=job, what=what)
    return response


@require_GET
def job_file(request, job_id, field):
    """A job's private file (the person's photo, the live preview), for those allowed to see it."""
    if field not in JOB_FILE_FIELDS:
        raise Http404("no such file")
    job = get_object_or_404(TryOnJob.objects.select_related("garment"), pk=job_id)
    return _serve(request, job, getattr(job, field), field)


@require_GET
def result_file(request, result_id, field):
    """A result's picture or one of its maps, for those allowed to see it."""
    if field not in TryOnResult.FILE_FIELDS:
        raise Http404("no such file")
    result = get_object_or_404(TryOnResult.objects.select_related("job__garment"), pk=result_id)
    published = result.published and field == "image"
    return _serve(
        request, result.job, getattr(result, field), f"result {field}", published=published
    )
