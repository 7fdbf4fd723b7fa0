"""The client's address, found one way for everything that counts requests per address: the
API's throttles (tryon.api_errors) and the sign-in lockout (django-axes, AXES_CLIENT_IP_CALLABLE).

Both must agree: were the lockout to believe an X-Forwarded-For the throttles ignore, a client
could send a new address with every password guess and never be locked out.
"""

from rest_framework.throttling import BaseThrottle


def client_address(request) -> str | None:
    """The address a request came from, as REST_FRAMEWORK["NUM_PROXIES"] says to find it.

    With no proxy (0) it is the connection's own address and X-Forwarded-For, which anyone can
    send, is ignored; behind our proxy (1) it is the last address in X-Forwarded-For, the one
    the proxy added. DRF's throttles find it so; this is their code, for a Django request too.
    """
    return BaseThrottle().get_ident(request)
