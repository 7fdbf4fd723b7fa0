"""Pages of the catalog: the public catalog and the merchant's garment management."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pipelines.poses import PRESETS
from pipelines.scenes import DEFAULT_SCENE, SCENES
from tryon import deletion, intake, review
from tryon.api_errors import form_throttle_wait, too_fast_message
from tryon.models import TryOnJob, TryOnResult
from tryon.selectors import published_model_shots

from . import selectors, services
from .forms import GarmentForm, GarmentMaskForm, ModelPhotoForm, ModelShotForm, form_errors_from
from .models import Garment

PAGE_SIZE = 12


def catalog_home(request):
    category = request.GET.get("category") or None
    if category not in Garment.Category.values:
        category = None
    search = (request.GET.get("q") or "").strip()[:100] or None
    garments = selectors.garment_list(category=category, search=search)
    page = Paginator(garments, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "catalog/home.html",
        {
            "page": page,
            "categories": Garment.Category.choices,
            "category": category,
            "search": search or "",
        },
    )


def garment_detail(request, pk):
    try:
        garment = selectors.garment_get(pk=pk)
    except Garment.DoesNotExist:
        raise Http404("No such garment.") from None
    shots = published_model_shots(garment=garment)
    return render(
        request, "catalog/garment_detail.html", {"garment": garment, "model_shots": shots}
    )


def merchant_required(view):
    """Anonymous visitors go to the login page; signed-in non-merchants get a 403."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not selectors.is_merchant(request.user):
            raise PermissionDenied("The merchant area is for merchant accounts.")
        return view(request, *args, **kwargs)

    return wrapper


def _own_garment_or_404(request, pk) -> Garment:
    try:
        return selectors.merchant_garment_get(merchant=request.user, pk=pk)
    except Garment.DoesNotExist:
        # Another merchant's garment looks exactly like a missing one.
        raise Http404("No such garment.") from None


@merchant_required
def merchant_home(request):
    garments = selectors.merchant_garment_list(merchant=request.user)
    page = Paginator(garments, 24).get_page(request.GET.get("page"))
    return render(request, "merchant/home.html", {"page": page})


@merchant_required
@require_http_methods(["GET", "POST"])
def merchant_garment_create(request):
    form = GarmentForm(request.POST or None, request.FILES or None, merchant=request.user)
    if request.method == "POST" and form.is_valid():
        garment = services.garment_ingest(garment=form.save(commit=False))
        messages.success(request, f"“{garment.title}” was added to your catalog.")
        return redirect("merchant:home")
    context = {"form": form, "garment": None}
    status = 400 if form.errors else 200
    return render(request, "merchant/garment_form.html", context, status=status)


@merchant_required
@require_http_methods(["GET", "POST"])
def merchant_garment_edit(request, pk):
    garment = _own_garment_or_404(request, pk)
    form = GarmentForm(
        request.POST or None, request.FILES or None, instance=garment, merchant=request.user
    )
    if request.method == "POST" and form.is_valid():
        services.garment_update(garment=form.save(commit=False), changed_fields=form.changed_data)
        messages.success(request, f"“{garment.title}” was saved.")
        return redirect("merchant:home")
    context = {"form": form, "garment": garment}
    status = 400 if form.errors else 200
    return render(request, "merchant/garment_form.html", context, status=status)


@merchant_required
@require_http_methods(["GET", "POST"])
def merchant_garment_delete(request, pk):
    garment = _own_garment_or_404(request, pk)
    if request.method == "POST":
        title = garment.title
        services.garment_delete(garment=garment)
        messages.success(request, f"“{title}” was deleted.")
        return redirect("merchant:home")
    return render(request, "merchant/garment_confirm_delete.html", {"garment": garment})


# --- the painted mask ----------------------------------------------------------------------------


@merchant_required
@require_http_methods(["GET", "POST"])
def merchant_garment_mask(request, pk):
    """The mask painter: fix a bad cut-out by painting over the product image."""
    garment = _own_garment_or_404(request, pk)
    posted = request.method == "POST"
    form = GarmentMaskForm(request.POST if posted else None, request.FILES if posted else None)
    if posted and form.is_valid():
        try:
            services.garment_mask_update(garment=garment, mask_png=form.cleaned_data["mask"].read())
        except ValidationError as error:
            form_errors_from(form, error, {})
        else:
            messages.success(
                request,
                f"The mask of “{garment.title}” was saved; its cut-out, Canny map and landmarks "
                "are made again from it.",
            )
            return redirect("merchant:garment_edit", pk=garment.pk)
    context = {
        "garment": garment,
        "form": form,
        "paintable": not selectors.analysis_in_progress(garment),
    }
    status = 400 if form.errors else 200
    return render(request, "merchant/garment_mask.html", context, status=status)


@merchant_required
@require_GET
def merchant_garment_mask_file(request, pk):
    """The saved mask, from this site's own address, for the painter's canvas.

    The painter reads the mask's pixels; a browser refuses that for a picture from another
    origin (the canvas is "tainted"), and with object storage ``garment.mask.url`` is the
    bucket's address. Served here, the mask is same-origin wherever it is stored.
    """
    garment = _own_garment_or_404(request, pk)
    if not garment.mask:
        raise Http404("This garment has no mask yet.")
    response = FileResponse(garment.mask.open("rb"), content_type="image/png")
    # A new mask replaces it whenever the merchant saves: never reuse an old copy.
    response["Cache-Control"] = "private, no-store"
    return response


# --- model shots ---------------------------------------------------------------------------------


def _shots_page(request, garment, *, shot_form=None, photo_form=None, status=200):
    context = {
        "garment": garment,
        "form": shot_form or ModelShotForm(),
        "photo_form": photo_form or ModelPhotoForm(),
        "analysed": garment.analysis_status == Garment.AnalysisStatus.DONE,
    }
    return render(request, "merchant/garment_shots.html", context, status=status)


def _too_fast(request, garment, **forms):
    """The shots page answering 429 when the merchant starts jobs faster than the API's write
    rate allows (one budget for both); None when they may go ahead."""
    wait = form_throttle_wait(request)
    if wait is None:
        return None
    for form in forms.values():
        form.is_valid()  # bound: the page shows what was sent; nothing is stored
        form.add_error(None, too_fast_message(wait))
    response = _shots_page(request, garment, **forms, status=429)
    response["Retry-After"] = str(wait)
    return response


@merchant_required
@require_http_methods(["GET", "POST"])
def merchant_garment_shots(request, pk):
    """Ask for model shots: poses × scenes × variations of a generated model."""
    garment = _own_garment_or_404(request, pk)
    if request.method == "GET":
        return _shots_page(request, garment)
    form = ModelShotForm(request.POST)
    if (too_fast := _too_fast(request, garment, shot_form=form)) is not None:
        return too_fast
    if form.is_valid():
        try:
            jobs = intake.model_shot_batch_create(
                owner=request.user,
                garment=garment,
                poses=form.cleaned_data["poses"],
                scenes=form.scene_list(),
                count=form.cleaned_data["count"],
                model_attributes=form.model_attributes(),
                params={"seed": form.cleaned_data["seed"]},
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            noun = "model shot" if len(jobs) == 1 else "model shots"
            messages.success(request, f"{len(jobs)} {noun} of “{garment.title}” are on their way.")
            return redirect("merchant:garment_gallery", pk=garment.pk)
    return _shots_page(request, garment, shot_form=form, status=400)


@merchant_required
@require_POST
def merchant_garment_photo_shot(request, pk):
    """The garment on the merchant's own model, from a photo they have the model's consent for."""
    garment = _own_garment_or_404(request, pk)
    form = ModelPhotoForm(request.POST, request.FILES)
    if (too_fast := _too_fast(request, garment, photo_form=form)) is not None:
        return too_fast
    if form.is_valid():
        try:
            intake.tryon_job_create(
                kind=TryOnJob.Kind.PHOTO,
                garment=garment,
                owner=request.user,
                person_photo=form.cleaned_data["person_photo"],
                consent=form.cleaned_data["consent"],
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"“{garment.title}” is being put on your model's photo.")
            return redirect("merchant:garment_gallery", pk=garment.pk)
    return _shots_page(request, garment, photo_form=form, status=400)


# --- the gallery ---------------------------------------------------------------------------------


def _scene_label(job: TryOnJob) -> str:
    if job.scene in SCENES:
        return SCENES[job.scene].title
    if job.scene_text or job.kind != TryOnJob.Kind.MODEL_SHOT:
        return job.scene_text
    return SCENES[DEFAULT_SCENE].title  # what a model shot without a scene is painted in


def _gallery_context(request, garment, *, notice: str = "", notice_is_error: bool = False):
    jobs = list(selectors.merchant_garment_jobs(merchant=request.user, garment=garment))
    for job in jobs:
        preset = PRESETS.get(job.pose)
        job.pose_title = preset.title if preset and job.kind == TryOnJob.Kind.MODEL_SHOT else ""
        job.scene_label = _scene_label(job)
    return {
        "garment": garment,
        "jobs": jobs,
        "any_active": any(job.is_active for job in jobs),
        "notice": notice,
        "notice_is_error": notice_is_error,
    }


@merchant_required
@require_GET
def merchant_garment_gallery(request, pk):
    """Every job the merchant asked for on this garment, its progress and its pictures."""
    garment = _own_garment_or_404(request, pk)
    return render(request, "merchant/garment_gallery.html", _gallery_context(request, garment))


@never_cache
@merchant_required
@require_GET
def merchant_garment_gallery_live(request, pk):
    """The gallery's live part; htmx polls it while a job is queued or running."""
    garment = _own_garment_or_404(request, pk)
    return render(request, "merchant/_gallery.html", _gallery_context(request, garment))


def _after_action(request, garment, notice: str, *, error: bool = False):
    """htmx swaps the gallery in place (and says what happened there); a plain form post is
    redirected back to the gallery page with a message."""
    if request.headers.get("HX-Request") == "true":
        context = _gallery_context(request, garment, notice=notice, notice_is_error=error)
        return render(request, "merchant/_gallery.html", context)
    (messages.error if error else messages.success)(request, notice)
    return redirect("merchant:garment_gallery", pk=garment.pk)


def _own_job_or_404(request, garment, job_id) -> TryOnJob:
    try:
        return selectors.merchant_job_get(merchant=request.user, garment=garment, pk=job_id)
    except TryOnJob.DoesNotExist:
        raise Http404("No such job.") from None


@merchant_required
@require_POST
def merchant_result_publish(request, pk, result_pk):
    """Show a staff-approved model shot on the product page (``published=1``) or hide it."""
    garment = _own_garment_or_404(request, pk)
    try:
        result = selectors.merchant_result_get(merchant=request.user, garment=garment, pk=result_pk)
    except TryOnResult.DoesNotExist:
        raise Http404("No such picture.") from None
    publish = request.POST.get("published") == "1"
    try:
        review.result_publish(result=result, user=request.user, published=publish)
    except ValidationError as error:
        return _after_action(request, garment, " ".join(error.messages).capitalize(), error=True)
    if publish:
        return _after_action(request, garment, "The picture is now shown on the product page.")
    return _after_action(request, garment, "The picture is no longer shown on the product page.")


@merchant_required
@require_POST
def merchant_job_discard(request, pk, job_id):
    """Delete a job with its pictures and files."""
    garment = _own_garment_or_404(request, pk)
    deletion.tryon_job_delete(job=_own_job_or_404(request, garment, job_id))
    return _after_action(request, garment, "The model shot and its pictures were discarded.")


@merchant_required
@require_POST
def merchant_job_rerun(request, pk, job_id):
    """The same request again with a new random seed (a new job; the old one stays).

    A re-run is a new job: it spends the same write budget and counts against the same cap of
    active model shots as the shots form.
    """
    garment = _own_garment_or_404(request, pk)
    job = _own_job_or_404(request, garment, job_id)
    wait = form_throttle_wait(request)
    if wait is not None:
        return _after_action(request, garment, too_fast_message(wait), error=True)
    try:
        intake.tryon_job_rerun(job=job, new_seed=True)
    except intake.TooManyActiveJobs as refused:
        return _after_action(request, garment, f"Not queued: {refused}.", error=True)
    return _after_action(request, garment, "A new variation with another seed is on its way.")
