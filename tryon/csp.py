"""The Content-Security-Policy header (django-csp), with the pictures' storage in img-src.

The policy itself is ``CONTENT_SECURITY_POLICY`` in the settings. Its one part that depends on
where files are stored is found here, by asking the storages for their URLs: garment pictures
come straight from the public storage's address (a bucket, or AWS_S3_CUSTOM_DOMAIN's CDN), and
the /files/ views redirect to the private storage's signed URLs. A browser checks the target of
an ``<img>``'s redirect against img-src too, so both origins must be there. With files on disk,
both are this site's own paths and nothing is added.
"""

from functools import cache
from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware
from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.dispatch import receiver

from common.storage import private_storage


@cache
def picture_origins() -> tuple[str, ...]:
    """The origins, other than this site, that pages' pictures come from (scheme://host)."""
    origins = []
    public_url = urlsplit(storages["default"].url("origin"))
    if public_url.netloc:
        origins.append(f"{public_url.scheme}://{public_url.netloc}")
    signed_url_origin = getattr(private_storage(), "signed_url_origin", None)
    if signed_url_origin is not None:
        origins.append(signed_url_origin())
    return tuple(dict.fromkeys(origins))


@receiver(setting_changed)
def _forget_picture_origins(*, setting, **kwargs):
    if setting == "STORAGES":
        picture_origins.cache_clear()


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, with ``picture_origins()`` added to the policy's img-src."""

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        origins = picture_origins()
        if origins:
            update = dict(parts.update or {})
            update["img-src"] = [*update.get("img-src", ()), *origins]
            parts.update = update
        return parts
