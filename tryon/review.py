"""Staff review of results and merchants publishing their model shots."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from .models import TryOnJob, TryOnResult
from .selectors import can_review


def result_review(*, result: TryOnResult, reviewer, approve: bool, note: str = "") -> TryOnResult:
    """Staff's verdict on a result; a rejected result is unpublished.

    Raises ``PermissionDenied`` unless ``selectors.can_review`` allows ``reviewer``.
    """
    if not can_review(reviewer, result.job):
        raise PermissionDenied(
            "reviewing needs the “Can change try-on result” permission, and for a shopper's "
            "picture also “Can view shoppers' photos”"
        )
    result.review_status = TryOnResult.Review.APPROVED if approve else TryOnResult.Review.REJECTED
    result.reviewer = reviewer
    result.reviewed_at = timezone.now()
    result.review_note = note
    if not approve:
        result.published = False
    result.save(
        update_fields=["review_status", "reviewer", "reviewed_at", "review_note", "published"]
    )
    return result


def result_publish(*, result: TryOnResult, user, published: bool = True) -> TryOnResult:
    """Show (or hide) a staff-approved model shot on its product page; the garment's merchant.

    A result of a job someone else asked for raises ``PermissionDenied``: a shopper's try-on
    of the merchant's garment is the shopper's, and stays private. The merchant's own photo
    try-ons (of their model) are never published either (``ValidationError``).
    """
    job = result.job
    if job.garment is None or job.garment.merchant_id != user.pk or job.owner_id != user.pk:
        raise PermissionDenied("only the garment's merchant publishes its model shots")
    if published:
        if job.kind != TryOnJob.Kind.MODEL_SHOT:
            raise ValidationError(
                {"result": ["only model shots are published; try-ons stay private"]}
            )
        if result.review_status != TryOnResult.Review.APPROVED:
            raise ValidationError({"result": ["staff have not approved this picture yet"]})
    result.published = published
    result.save(update_fields=["published"])
    return result
