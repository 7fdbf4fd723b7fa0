"""How the API knows who is calling: a token, or the session cookie the pages use.

DRF's ``SessionAuthentication`` checks CSRF only when the session belongs to a signed-in user.
Here an anonymous shopper's session owns jobs too (their photo, their try-ons, "delete my
data"), so another site's page could make the shopper's browser cancel, create or delete them
with a cross-site POST that carries the cookie. Any write that arrives with a session cookie
and no token is checked like a page's form: the CSRF token (``X-CSRFToken``) and, over HTTPS,
the Origin or Referer. A client with no cookie at all has no ambient credential to abuse.
"""

from django.conf import settings
from django.utils.crypto import constant_time_compare
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


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


class TokenBasicAuthentication(BasicAuthentication):
    """HTTP Basic as WebUI clients send it (the WebUI's ``--api-auth user:password``): the
    username and an API token as the password.

    The account's own password is never accepted here: a script or plugin keeps its credential
    in a file, and a token can be replaced without touching the account. A wrong pair is a 401
    with ``WWW-Authenticate: Basic``, as for a missing one.
    """

    www_authenticate_realm = "sdapi"

    def authenticate_credentials(self, userid, password, request=None):
        token = Token.objects.select_related("user").filter(key=password).first()
        if (
            token is None
            or not token.user.is_active
            or not constant_time_compare(token.user.get_username(), userid)
        ):
            raise AuthenticationFailed("invalid username or API token")
        return token.user, token
