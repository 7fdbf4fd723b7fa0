"""Pages of the catalog: the public catalog and the merchant's garment management."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from tryon.selectors import published_model_shots

from . import selectors, services
from .forms import GarmentForm
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
    return render(request, "merchant/garment_form.html", {"form": form, "garment": None})


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
    return render(request, "merchant/garment_form.html", {"form": form, "garment": garment})


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
