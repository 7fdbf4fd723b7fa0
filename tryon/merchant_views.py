"""The merchant's try-on pages: asking for model shots of a garment, a photo try-on on their own
model, and the gallery of those jobs (progress, publishing, discarding, re-running).

The garment pages around them are the catalog's (``catalog.views``); these share its URL
namespace, ``merchant``, and its guard: a garment another merchant owns is a 404.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Garment
from catalog.views import own_garment_or_404
from common.api_errors import form_throttle_wait, too_fast_message
from common.roles import merchant_required
from pipelines.poses import PRESETS
from pipelines.scenes import DEFAULT_SCENE, SCENES

from . import deletion, intake, review, selectors
from .forms import ModelPhotoForm, ModelShotForm
from .models import TryOnJob, TryOnResult

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
    garment = own_garment_or_404(request, pk)
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
                params=form.generation_params(),
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
    garment = own_garment_or_404(request, pk)
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
    garment = own_garment_or_404(request, pk)
    return render(request, "merchant/garment_gallery.html", _gallery_context(request, garment))


@never_cache
@merchant_required
@require_GET
def merchant_garment_gallery_live(request, pk):
    """The gallery's live part; htmx polls it while a job is queued or running."""
    garment = own_garment_or_404(request, pk)
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
    garment = own_garment_or_404(request, pk)
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
    garment = own_garment_or_404(request, pk)
    deletion.tryon_job_delete(job=_own_job_or_404(request, garment, job_id))
    return _after_action(request, garment, "The model shot and its pictures were discarded.")


@merchant_required
@require_POST
def merchant_job_rerun(request, pk, job_id):
    """The same request again with a new random seed (a new job; the old one stays).

    A re-run is a new job: it spends the same write budget and counts against the same cap of
    active model shots as the shots form.
    """
    garment = own_garment_or_404(request, pk)
    job = _own_job_or_404(request, garment, job_id)
    wait = form_throttle_wait(request)
    if wait is not None:
        return _after_action(request, garment, too_fast_message(wait), error=True)
    try:
        intake.tryon_job_rerun(job=job, new_seed=True)
    except intake.TooManyActiveJobs as refused:
        return _after_action(request, garment, f"Not queued: {refused}.", error=True)
    return _after_action(request, garment, "A new variation with another seed is on its way.")
