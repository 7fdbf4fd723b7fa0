"""The client's address, found one way for everything that counts requests per address: the
API's throttles (common.api_errors), the cap of anonymous jobs per address (tryon.intake) and
the sign-in lockout (django-axes, AXES_CLIENT_IP_CALLABLE).

They must agree: were the lockout to believe an X-Forwarded-For the throttles ignore, a client
could send a new address with every password guess and never be locked out.
"""

import ipaddress

from rest_framework.throttling import BaseThrottle

# An IPv6 customer is given a whole /64 (often a /56) and may pick any address in it: counted
# per address, each request could come from a new one. The /64 is the customer.
IPV6_CLIENT_PREFIX = 64


def client_address(request) -> str | None:
    """The address a request came from, as REST_FRAMEWORK["NUM_PROXIES"] says to find it.

    With no proxy (0) it is the connection's own address and X-Forwarded-For, which anyone can
    send, is ignored; behind our proxy (1) it is the last address in X-Forwarded-For, the one
    the proxy added. DRF's throttles find it so; this is their code, for a Django request too.
    An IPv6 address stands for its /64: the first address of that network, still an address
    (axes stores it in an IP address column).
    """
    found = BaseThrottle().get_ident(request)
    try:
        address = ipaddress.ip_address(found)
    except ValueError:
        return found  # not an address at all (a misconfigured proxy): counted as it is
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)  # an IPv4 client reaching a dual-stack socket
    network = ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False)
    return str(network.network_address)
