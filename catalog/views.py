"""Pages of the catalog: the public catalog and the merchant's garment management.

The model shots a merchant asks for, and the gallery of their jobs, are the try-on app's pages
(``tryon.merchant_views``); the product page shows its published model shots through the
``published_model_shots`` template tag (``tryon/templatetags/tryon_tags.py``).
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from common.forms import form_errors_from
from common.roles import merchant_required

from . import selectors, services
from .forms import GarmentForm, GarmentMaskForm
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
    return render(request, "catalog/garment_detail.html", {"garment": garment})


def own_garment_or_404(request, pk) -> Garment:
    """The signed-in merchant's garment ``pk``; any other is a 404."""
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
    garment = own_garment_or_404(request, pk)
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
    garment = own_garment_or_404(request, pk)
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
    garment = own_garment_or_404(request, pk)
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
    garment = own_garment_or_404(request, pk)
    if not garment.mask:
        raise Http404("This garment has no mask yet.")
    response = FileResponse(garment.mask.open("rb"), content_type="image/png")
    # A new mask replaces it whenever the merchant saves: never reuse an old copy.
    response["Cache-Control"] = "private, no-store"
    return response
