"""Staff review of try-on jobs and results, and the audit trail of looks at shoppers' photos.

Private pictures are shown as ``<img src>`` pointing at ``job_file`` / ``result_file``: the file
view decides who may see them and records each look at a shopper's photo; this module only
decides whether to emit the ``<img>`` (by the same selector), so rendering a page records nothing.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import Prefetch
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import deletion, intake, review
from .models import PhotoAccess, TryOnJob, TryOnResult, WorkerHeartbeat
from .selectors import can_review, file_access

PHOTO_HIDDEN = "Hidden: needs the “Can view shoppers' photos” permission"
RESULT_HIDDEN = "Hidden: needs the “Can view try-on result” permission"
MAP_LABELS = {
    "image": "Result",
    "mask": "Mask",
    "openpose": "OpenPose",
    "canny": "Canny",
    "composite": "Composite",
}


def _picture(request, job: TryOnJob, stored, url: str, *, size: int, published: bool = False):
    """``stored`` as an ``<img>`` from ``url`` when the file view would serve it, else why not."""
    if not stored:
        return "—"
    access = file_access(
        job, user=request.user, session_key=request.session.session_key, published=published
    )
    if not access:
        hidden = PHOTO_HIDDEN if job.kind == TryOnJob.Kind.PHOTO else RESULT_HIDDEN
        return format_html('<span class="tryon-hidden">{}</span>', hidden)
    # A class, not a style attribute, which the Content-Security-Policy refuses:
    # static/css/admin.css has one per size.
    return format_html('<img src="{}" alt="" loading="lazy" class="picture-{}">', url, size)


def _job_picture(request, job: TryOnJob, field: str, *, size: int):
    url = reverse("job_file", args=[job.pk, field])
    return _picture(request, job, getattr(job, field), url, size=size)


def _result_picture(request, result: TryOnResult, field: str, *, size: int):
    url = reverse("result_file", args=[result.pk, field])
    published = result.published and field == "image"
    return _picture(
        request, result.job, getattr(result, field), url, size=size, published=published
    )


def _result_maps(request, result: TryOnResult, *, size: int = 200):
    """The result picture and the maps it was made with, side by side."""
    figures = format_html_join(
        "",
        "<figure>{}<figcaption>{}</figcaption></figure>",
        (
            (_result_picture(request, result, field, size=size), label)
            for field, label in MAP_LABELS.items()
        ),
    )
    return format_html('<div class="tryon-maps">{}</div>', figures)


def _pretty_json(value):
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    )


def _fields(fieldsets) -> tuple[str, ...]:
    return tuple(name for _, options in fieldsets for name in options["fields"])


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "last_seen")
    readonly_fields = ("hostname", "last_seen")


class _ViewerAware:
    """Pictures shown depend on who looks, but display methods get only the row: each row
    carries the request that shows it (the admin instance is shared by every thread)."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.viewer_request = request
        return obj

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        for obj in changelist.result_list:
            obj.viewer_request = request
        return changelist


class _ReadOnlyDetail:
    """Staff look at a row and act on it through actions; they never edit it. A saved form
    would also write back a stale copy over what a worker is writing meanwhile."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Without an object this is the permission the actions ask for.
        return obj is None and super().has_change_permission(request)


@admin.register(TryOnJob)
class TryOnJobAdmin(_ViewerAware, _ReadOnlyDetail, admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "job_ref",
        "kind",
        "status",
        "progress_percent",
        "garment",
        "merchant",
        "owner_label",
        "attempts",
        "created_at",
    )
    list_display_links = ("thumbnail", "job_ref")
    list_filter = (
        "status",
        "kind",
        ("garment", admin.RelatedOnlyFieldListFilter),
        ("garment__merchant", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("id", "garment__title", "garment__sku", "owner__username", "error_message")
    list_select_related = ("garment__merchant", "owner")
    actions = ["cancel", "rerun_same", "rerun_new_seed"]
    fieldsets = (
        (
            "Request",
            {
                "fields": (
                    "id",
                    "kind",
                    "garment",
                    "merchant",
                    "extra_garments",
                    "owner_label",
                    "person_photo_view",
                    "pose",
                    "scene",
                    "scene_text",
                    "model_attributes_view",
                    "engine",
                    "batch",
                    "consent_at",
                )
            },
        ),
        ("Parameters", {"fields": ("parameters",)}),
        (
            "Progress",
            {
                "fields": (
                    "status",
                    "progress_percent",
                    "step",
                    "cancel_requested",
                    "attempts",
                    "worker",
                    "heartbeat",
                    "preview_view",
                )
            },
        ),
        ("Outcome", {"fields": ("error_type", "error_message", "notice")}),
        ("Timings", {"fields": ("created_at", "started_at", "finished_at", "timings_view")}),
        ("Results", {"fields": ("results_view",)}),
    )
    readonly_fields = _fields(fieldsets)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("garment__merchant", "owner")
            .prefetch_related(
                Prefetch("results", queryset=TryOnResult.objects.order_by("index")),
                "extra_garments",
            )
        )

    @admin.display(description="Picture")
    def thumbnail(self, job):
        first = next(iter(job.results.all()), None)
        if first is None:
            return "—"
        return _result_picture(job.viewer_request, first, "image", size=64)

    @admin.display(description="Job")
    def job_ref(self, job):
        return str(job.pk)[:8]

    @admin.display(description="Progress", ordering="progress")
    def progress_percent(self, job):
        return f"{job.progress:.0%}"

    @admin.display(description="Merchant", ordering="garment__merchant__username")
    def merchant(self, job):
        return job.garment.merchant if job.garment else None  # an inpaint has no garment

    @admin.display(description="Owner", ordering="owner__username")
    def owner_label(self, job):
        return job.owner.username if job.owner else "anonymous shopper"

    @admin.display(description="Person photo")
    def person_photo_view(self, job):
        return _job_picture(job.viewer_request, job, "person_photo", size=320)

    @admin.display(description="Live preview")
    def preview_view(self, job):
        return _job_picture(job.viewer_request, job, "preview", size=320)

    @admin.display(description="Model attributes")
    def model_attributes_view(self, job):
        return _pretty_json(job.model_attributes)

    @admin.display(description="Parameters")
    def parameters(self, job):
        return _pretty_json(job.params)

    @admin.display(description="Timings (ms)")
    def timings_view(self, job):
        return _pretty_json(job.timings)

    @admin.display(description="Results")
    def results_view(self, job):
        results = job.results.all()
        if not results:
            return "—"
        return format_html_join(
            "",
            '<section class="tryon-result"><h3><a href="{}">Result {}</a> · seed {} · {}</h3>'
            "{}<pre>{}</pre></section>",
            (
                (
                    reverse("admin:tryon_tryonresult_change", args=[result.pk]),
                    result.index,
                    result.seed,
                    result.get_review_status_display(),
                    _result_maps(job.viewer_request, result),
                    result.infotext,
                )
                for result in results
            ),
        )

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel(self, request, queryset):
        stopped = stopping = 0
        for job in queryset:
            job = deletion.tryon_job_cancel(job=job)
            if job.status == TryOnJob.Status.CANCELLED:
                stopped += 1
            elif job.cancel_requested:
                stopping += 1
        self.message_user(
            request,
            f"{stopped} job(s) cancelled; {stopping} running job(s) will stop at their next step.",
        )

    @admin.action(description="Re-run with the same parameters", permissions=["change"])
    def rerun_same(self, request, queryset):
        self._rerun(request, queryset, new_seed=False)

    @admin.action(description="Re-run with a new seed", permissions=["change"])
    def rerun_new_seed(self, request, queryset):
        self._rerun(request, queryset, new_seed=True)

    def _rerun(self, request, queryset, *, new_seed: bool):
        count, refused = 0, []
        for job in queryset:
            try:
                intake.tryon_job_rerun(job=job, new_seed=new_seed)
            except intake.TooManyActiveJobs:
                refused.append(str(job.pk))
            else:
                count += 1
        how = "with a new seed" if new_seed else "with the same parameters"
        if count:
            self.message_user(request, f"{count} job(s) queued again {how}.")
        if refused:
            self.message_user(
                request,
                f"{len(refused)} not queued: their owner already has as many jobs waiting or "
                f"running as allowed ({', '.join(refused)}).",
                level=messages.WARNING,
            )

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Results are never deleted on their own; deleting their job is what removes them.
        perms_needed.discard(TryOnResult._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        deletion.tryon_job_delete(job=obj)

    def delete_queryset(self, request, queryset):
        for job in queryset:
            deletion.tryon_job_delete(job=job)


class ReviewNoteForm(forms.Form):
    note = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional; kept with each result's review.",
    )


@admin.register(TryOnResult)
class TryOnResultAdmin(_ViewerAware, _ReadOnlyDetail, admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "__str__",
        "job_kind",
        "garment",
        "review_status",
        "published",
        "seed",
        "reviewer",
        "reviewed_at",
    )
    list_display_links = ("thumbnail", "__str__")
    list_filter = (
        "review_status",
        "published",
        "job__kind",
        ("job__garment__merchant", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("job__garment__title", "seed__exact")
    list_select_related = ("job__garment__merchant", "reviewer")
    actions = ["approve", "reject"]
    fieldsets = (
        (None, {"fields": ("job", "job_kind", "garment", "index", "seed", "created_at")}),
        ("Pictures", {"fields": ("pictures",)}),
        ("Infotext", {"fields": ("infotext_view",)}),
        (
            "Review",
            {"fields": ("review_status", "reviewer", "reviewed_at", "review_note", "published")},
        ),
    )
    readonly_fields = _fields(fieldsets)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("job__garment__merchant", "reviewer")

    def has_delete_permission(self, request, obj=None):
        # A result goes with its job (deletion.tryon_job_delete), which removes its files too.
        return False

    @admin.display(description="Picture")
    def thumbnail(self, result):
        return _result_picture(result.viewer_request, result, "image", size=64)

    @admin.display(description="Kind", ordering="job__kind")
    def job_kind(self, result):
        return result.job.get_kind_display()

    @admin.display(description="Garment", ordering="job__garment__title")
    def garment(self, result):
        return result.job.garment

    @admin.display(description="Picture and maps")
    def pictures(self, result):
        return _result_maps(result.viewer_request, result, size=320)

    @admin.display(description="Infotext")
    def infotext_view(self, result):
        return format_html("<pre>{}</pre>", result.infotext)

    @admin.action(description="Approve the selected results…", permissions=["change"])
    def approve(self, request, queryset):
        return self._review(request, queryset, approve=True)

    @admin.action(description="Reject the selected results…", permissions=["change"])
    def reject(self, request, queryset):
        return self._review(request, queryset, approve=False)

    def _review(self, request, queryset, *, approve: bool):
        """Ask for a note on an intermediate page, then record one verdict for all of them."""
        verb = "Approve" if approve else "Reject"
        if request.POST.get("post"):
            form = ReviewNoteForm(request.POST)
            if form.is_valid():
                results, refused = _reviewable(request.user, queryset)
                with transaction.atomic():
                    for result in results:
                        review.result_review(
                            result=result,
                            reviewer=request.user,
                            approve=approve,
                            note=form.cleaned_data["note"],
                        )
                done = "approved" if approve else "rejected"
                self.message_user(request, f"{len(results)} result(s) {done}.")
                if refused:
                    self.message_user(request, _refusal(refused), messages.WARNING)
                return None
        else:
            form = ReviewNoteForm()
        results = list(queryset)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} {len(results)} result(s)",
            "verb": verb,
            "opts": self.model._meta,
            "form": form,
            "rows": [
                (result, _result_picture(request, result, "image", size=96)) for result in results
            ],
            "action": request.POST["action"],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tryon/review_confirmation.html", context)


def _reviewable(user, queryset) -> tuple[list[TryOnResult], int]:
    """The results ``user`` may review, and how many of the others there were."""
    results = list(queryset.select_related("job"))
    allowed = [result for result in results if can_review(user, result.job)]
    return allowed, len(results) - len(allowed)


def _refusal(count: int) -> str:
    return (
        f"{count} result(s) of shoppers' pictures were left as they were: reviewing them needs "
        "the “Can view shoppers' photos” permission."
    )


@admin.register(PhotoAccess)
class PhotoAccessAdmin(admin.ModelAdmin):
    """The audit trail of looks at shoppers' photos: nobody adds, edits or deletes a line."""

    list_display = ("accessed_at", "user", "job_link", "what")
    list_filter = (
        ("user", admin.RelatedOnlyFieldListFilter),
        ("accessed_at", admin.DateFieldListFilter),
    )
    search_fields = ("job_ref", "user__username")
    list_select_related = ("user",)
    date_hierarchy = "accessed_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Job", ordering="job_ref")
    def job_link(self, access):
        if access.job_id is None:
            return f"{access.job_ref} (deleted)"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:tryon_tryonjob_change", args=[access.job_id]),
            access.job_ref,
        )
