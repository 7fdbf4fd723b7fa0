"""The API's error shape and its throttle, shared by every app's ``api.py``.

Every error is ``{"message": "...", "field": "..."}`` (``field`` only when one field is at
fault) with the right status code: a refusal never becomes a 500.
"""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from pipelines.errors import InvalidInputError


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
    response = drf_exception_handler(error, context)
    if response is None:
        return None
    message, field = _first(response.data)
    body = {"message": message, **({"field": field} if field else {})}
    return Response(body, status=response.status_code, headers=_headers(response))


def _headers(response) -> dict:
    return {k: v for k, v in response.items() if k in ("Retry-After", "WWW-Authenticate")}


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict"


class ScopedByMethodThrottle(SimpleRateThrottle):
    """One budget for reads and one for writes, per user or per client address."""

    def __init__(self):
        pass  # the rate depends on the request's method: chosen in allow_request

    def allow_request(self, request, view):
        self.scope = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        ident = request.user.pk if request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
