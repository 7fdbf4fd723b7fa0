"""The API's error shape and its throttle, shared by every app's ``api.py`` (the throttle also
by the pages' forms that start jobs).

Every error is ``{"message": "...", "field": "..."}`` (``field`` only when one field is at
fault) with the right status code: a refusal never becomes a 500.
"""

import math

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from pipelines.errors import InvalidInputError

from .client_address import client_address
from .ratelimit import hit


def _first(detail):
    """The first message and the field it belongs to, from DRF's nested error details."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        message, inner = _first(value)
        name = field if field not in ("non_field_errors", "__all__") else None
        return message, inner or name
    if isinstance(detail, list) and detail:
        return _first(detail[0])
    return str(detail), None


def exception_handler(error, context):
    # Imported here: rest_framework.views reads DEFAULT_THROTTLE_CLASSES, which names this
    # module's throttle, when it is first imported; at the top, importing this module first
    # would be a circular import.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(error, DjangoValidationError):
        error = exceptions.ValidationError(
            error.message_dict if hasattr(error, "error_dict") else error.messages
        )
    elif isinstance(error, InvalidInputError):
        error = exceptions.ValidationError({error.argument: [error.message]})
    elif isinstance(error, Http404):
        error = exceptions.NotFound()
    elif isinstance(error, PermissionDenied):
        error = exceptions.PermissionDenied(str(error) or None)
    elif isinstance(error, RequestDataTooBig):
        error = BodyTooLarge()
    response = drf_exception_handler(error, context)
    if response is None:
        return None
    # Only a validation error names fields; any other carries one message (DRF's ``detail``).
    message, field = _first(error.detail)
    body = {"message": message, **({"field": field} if field else {})}
    return Response(body, status=response.status_code, headers=_headers(response))


def _headers(response) -> dict:
    return {k: v for k, v in response.items() if k in ("Retry-After", "WWW-Authenticate")}


class ErrorSerializer(serializers.Serializer):
    """The body of every error response, for the schema."""

    message = serializers.CharField()
    field = serializers.CharField(required=False, help_text="the field at fault, when one is")


ERROR_MEANINGS = {
    400: "the request is not valid; `field` names the field at fault",
    401: "no credentials, or a token that is not valid",
    403: "you may not do this (signed in by session cookie: or the CSRF token is missing)",
    404: "not found, or not yours",
    409: "too many of your jobs are queued or running",
    415: "the body is not JSON, a form or multipart",
}


def errors(*codes: int) -> dict:
    """The error responses an operation documents, for ``extend_schema(responses=...)``."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[code]) for code in codes
    }


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = (
        "The request body is larger than the server accepts (REQUEST_BODY_MAX_BYTES); "
        "send big pictures as multipart files, or smaller."
    )


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict"


class ScopedByMethodThrottle(SimpleRateThrottle):
    """One budget for reads and one for writes, per user or per client address, counted
    atomically (``common.ratelimit``): DRF's read-append-write let bursts through."""

    def __init__(self):
        self.waiting = None  # the rate depends on the request's method: chosen in allow_request

    def allow_request(self, request, view):
        self.scope = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.rate is None:
            return True  # no limit set for this scope (as DRF's throttles read it)
        self.waiting = hit(self.get_cache_key(request, view), self.num_requests, self.duration)
        return self.waiting is None

    def wait(self):
        return self.waiting

    def get_cache_key(self, request, view):
        ident = request.user.pk if request.user.is_authenticated else client_address(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


def form_throttle_wait(request) -> int | None:
    """None when a page's form that starts jobs may go ahead, else the seconds to wait first.

    The pages take from the API's write budget (the same throttle, rates and shared cache, per
    user or client address), so switching between the two does not double anyone's rate.
    """
    throttle = ScopedByMethodThrottle()
    if throttle.allow_request(request, view=None):
        return None
    return max(1, math.ceil(throttle.wait() or 1))


def too_fast_message(wait: int) -> str:
    """What a page says with its 429."""
    return f"You are sending requests faster than allowed; please try again in {wait} seconds."
