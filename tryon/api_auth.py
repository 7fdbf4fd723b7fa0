"""How the API knows who is calling: a token, or the session cookie the pages use.

DRF's ``SessionAuthentication`` checks CSRF only when the session belongs to a signed-in user.
Here an anonymous shopper's session owns jobs too (their photo, their try-ons, "delete my
data"), so another site's page could make the shopper's browser cancel, create or delete them
with a cross-site POST that carries the cookie. Any write that arrives with a session cookie
and no token is checked like a page's form: the CSRF token (``X-CSRFToken``) and, over HTTPS,
the Origin or Referer. A client with no cookie at all has no ambient credential to abuse.
"""

from django.conf import settings
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import SessionAuthentication


class CsrfCheckedSessionAuthentication(SessionAuthentication):
    """``SessionAuthentication`` that also checks CSRF for an anonymous session's writes."""

    def authenticate(self, request):
        authenticated = super().authenticate(request)
        if authenticated is None and settings.SESSION_COOKIE_NAME in request._request.COOKIES:
            # Safe methods pass the check untouched; a failed one is a 403 naming the reason.
            self.enforce_csrf(request)
        return authenticated


class CsrfCheckedSessionScheme(SessionScheme):
    """The schema's name for it: the session cookie, as for DRF's own class."""

    target_class = CsrfCheckedSessionAuthentication
