"""Pages and endpoints of the try-on app."""

from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from catalog.models import Garment
from common.api_errors import form_throttle_wait, too_fast_message
from common.client_address import client_address
from common.roles import is_merchant
from common.storage import signed_url

from . import deletion, intake, selectors
from .deletion import record_photo_access
from .forms import TryOnForm
from .models import TryOnJob, TryOnResult
from .selectors import JOB_FILE_FIELDS, file_access, system_health


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


# A published model shot stops being public when its merchant hides it or staff reject it, and
# this view then answers 404. s-maxage=0 makes shared caches (a CDN, a proxy) come back to this
# view (or to the store, behind a signed URL) on every request, so none goes on showing it to
# everyone; max-age lets the one browser that has already shown it keep it for a minute, as a
# streamed file has no validator that would make asking again cheap.
PUBLISHED_CACHE_CONTROL = "public, max-age=60, s-maxage=0"


def _private_file_response(stored, *, public: bool, download: bool = False):
    """The file itself, or a redirect to a short-lived signed URL where the storage has one
    (a private bucket): the storage then serves it, with the same headers."""
    filename = Path(stored.name).name
    disposition = f'{"attachment" if download else "inline"}; filename="{filename}"'
    cache_control = PUBLISHED_CACHE_CONTROL if public else "private, no-store"
    url = signed_url(stored, content_disposition=disposition, cache_control=cache_control)
    if url is not None:
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"  # the signature expires
        return response
    response = FileResponse(stored.open("rb"), filename=filename)
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = cache_control
    return response


def _caller(request):
    """The signed-in user, by session or by the API's ``Authorization: Token …`` header
    (the API hands these file URLs to token clients too)."""
    if request.user.is_authenticated:
        return request.user
    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return request.user
    return found[0] if found else request.user


def _serve(request, job: TryOnJob, stored, what: str, *, published: bool = False):
    if not stored:
        raise Http404("no such file")
    user = _caller(request)
    access = file_access(
        job, user=user, session_key=request.session.session_key, published=published
    )
    if not access:
        raise Http404("no such file")  # never confirm that someone else's file exists
    download = request.GET.get("download") == "1"
    response = _private_file_response(stored, public=access == "public", download=download)
    if access == "audited":
        record_photo_access(user=user, job=job, what=what)
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


# --- the shopper's pages -------------------------------------------------------------------------

LAST_PHOTO_JOB = "tryon_last_photo_job"


def shopper_session_key(request) -> str:
    """The anonymous shopper's session key, creating the session on first use.

    The session is marked modified so the response carries its cookie: without it, the client
    could never show it owns the job it just created.
    """
    if not request.session.session_key:
        request.session.save()
        request.session.modified = True
    # The session cookie now owns jobs, so its later writes must carry the CSRF token
    # (tryon/api_auth.py): make sure the client has one too.
    get_token(request)
    return request.session.session_key


def _last_photo_job(request) -> TryOnJob | None:
    """The shopper's most recent photo try-on, if it (and its photo) still exists."""
    job_id = request.session.get(LAST_PHOTO_JOB)
    if not job_id:
        return None
    job = selectors.jobs_of(user=request.user, session_key=request.session.session_key).filter(
        pk=job_id, kind=TryOnJob.Kind.PHOTO
    )
    found = job.first()
    return found if found and found.person_photo else None


def _own_job_or_404(request, job_id) -> TryOnJob:
    jobs = selectors.jobs_of(user=request.user, session_key=request.session.session_key)
    # Someone else's job looks exactly like a missing one. An inpaint (the WebUI API's, no
    # garment) has no page: its client follows it through the API.
    jobs = jobs.exclude(kind=TryOnJob.Kind.INPAINT)
    return get_object_or_404(jobs.select_related("garment"), pk=job_id)


@require_POST
def tryon_create(request, garment_pk):
    """The product page's "Try it on" form: store the job and go to its page."""
    garment = get_object_or_404(Garment, pk=garment_pk)
    last = _last_photo_job(request)
    form = TryOnForm(request.POST, request.FILES, reusable=last is not None)
    wait = form_throttle_wait(request)
    if wait is not None:
        form.is_valid()  # a bound form keeps what was ticked; the photo is not looked at
        form.add_error(None, too_fast_message(wait))
        response = _product_page(request, garment, form, status=429)
        response["Retry-After"] = str(wait)
        return response
    if form.is_valid():
        reuse = last if form.cleaned_data.get("reuse_photo") else None
        try:
            job = intake.tryon_job_create(
                kind=TryOnJob.Kind.PHOTO,
                garment=garment,
                owner=request.user if request.user.is_authenticated else None,
                session_key=shopper_session_key(request),
                person_photo=None if reuse else form.cleaned_data["person_photo"],
                photo_from=reuse,
                consent=form.cleaned_data["consent"],
                client_address=client_address(request),
            )
        except ValidationError as error:
            _add_errors(form, error)
        except intake.TooManyActiveJobs as error:
            form.add_error(None, str(error))
        else:
            request.session[LAST_PHOTO_JOB] = str(job.pk)
            return redirect("tryon:job", job_id=job.pk)
    return _product_page(request, garment, form, status=400)


def _product_page(request, garment, form, *, status: int):
    """The product page again, with the try-on form and what was wrong with it."""
    context = {"garment": garment, "tryon_form": form}
    return render(request, "catalog/garment_detail.html", context, status=status)


def _add_errors(form, error: ValidationError) -> None:
    for field, messages_ in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages_)


def job_page(request, job_id):
    """A try-on's page: live progress while it runs, then the before/after and the actions."""
    job = _own_job_or_404(request, job_id)
    return render(request, "tryon/job.html", {"job": job, "result": job.results.first()})


@never_cache
@require_GET
def job_status(request, job_id):
    """The live part of the job page (htmx polls it while the job is queued or running)."""
    job = _own_job_or_404(request, job_id)
    return render(request, "tryon/_job_status.html", {"job": job, "result": job.results.first()})


@require_POST
def job_cancel(request, job_id):
    deletion.tryon_job_cancel(job=_own_job_or_404(request, job_id))
    return redirect("tryon:job", job_id=job_id)


@require_POST
def job_delete(request, job_id):
    """ "Delete my photo and results": rows and files, at once."""
    deletion.tryon_job_delete(job=_own_job_or_404(request, job_id))
    messages.success(request, "Your photo and its try-on were deleted.")
    return redirect("tryon:mine")


def delete_shopper_data(request) -> int:
    """Delete every photo try-on and inpaint of the request's shopper (user or session) and
    forget the photo the session remembers for reuse; how many jobs went. (The API's too.)"""
    count = deletion.shopper_data_delete(user=request.user, session_key=request.session.session_key)
    request.session.pop(LAST_PHOTO_JOB, None)
    return count


@require_POST
def delete_my_data(request):
    """ "Delete my data" on the "My try-ons" page: rows and files, at once."""
    count = delete_shopper_data(request)
    if count:
        messages.success(request, f"Deleted {count} try-on(s) with your photos and results.")
    else:
        messages.info(request, "There was nothing of yours to delete.")
    return redirect("tryon:mine")


@require_GET
def my_tryons(request):
    """The shopper's try-ons (their session's, or their account's when signed in)."""
    everything = selectors.jobs_of(user=request.user, session_key=request.session.session_key)
    jobs = (
        everything.filter(kind=TryOnJob.Kind.PHOTO)
        .select_related("garment")
        .prefetch_related("results")
    )
    # Inpaints have no page here but are deleted with the rest, so they too show the button.
    has_personal_data = everything.filter(kind__in=deletion.PERSONAL_KINDS).exists()
    context = {"jobs": jobs, "has_personal_data": has_personal_data}
    return render(request, "tryon/mine.html", context)
