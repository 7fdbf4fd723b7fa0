"""Job callbacks: when a job ends, its ``callback_url`` receives a signed JSON POST.

The body is the job's id, status, error and results; the ``X-Tryon-Signature`` header is
``sha256=`` + the HMAC-SHA256 of the exact body with CALLBACK_SECRET, so the receiver can check
it came from us. A failed delivery (no connection, no answer within TIMEOUT_SECONDS, or any
answer but 2xx) is retried with exponential backoff by the Celery task.

A callback is a request from our servers to an address someone else chose: the classic
server-side request forgery. So:

- a callback URL is http(s) with a host name, a valid port, no user name or password, and at
  most 500 characters (the model field's length);
- every address its host name resolves to must be a public unicast address (``is_global``: not
  loopback, private, link-local, carrier-grade NAT — where cloud metadata services live —,
  benchmarking or other special-purpose ranges, nor multicast, unspecified or broadcast); an
  IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4, NAT64) is judged by that one too;
- each delivery resolves the name once, checks, and connects to exactly the address checked: a
  second resolution could answer otherwise (DNS rebinding). https still checks the certificate
  against the host name, and the ``Host`` header is the URL's host[:port];
- a redirect is not followed: it counts as a failed delivery.

CALLBACK_ALLOW_PRIVATE (tests, intranets) allows loopback and private addresses; everything
else above still holds.
"""

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.crypto import salted_hmac

from .models import TryOnJob

TIMEOUT_SECONDS = 10
# Callbacks share the CPU workers with garment analysis: a receiver must not hold one for long.
# A timeout is per connect or read, so a server that drips a byte every few seconds would never
# meet it; the whole delivery gets this long, and a name's first few addresses get a try.
DELIVERY_DEADLINE_SECONDS = 30
MAX_ADDRESSES_TRIED = 3
MAX_URL_LENGTH = TryOnJob._meta.get_field("callback_url").max_length

# Not public, though ``is_global`` says so: the IETF protocol assignments and local-use NAT64
# (before Python 3.11.10 / 3.12.4), and on all versions the deprecated IPv4-compatible and
# site-local IPv6 addresses and SIIT's IPv4-translated ones (::ffff:0:a.b.c.d).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network)
    for network in ("192.0.0.0/24", "::/96", "64:ff9b:1::/48", "fec0::/10", "::ffff:0:0:0/96")
)
# NAT64's well-known prefix: a gateway relays to the IPv4 address in the last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
_REFUSED_ADDRESS = "may not point at a private network or a special-purpose address"


@dataclass(frozen=True)
class _Destination:
    """A callback URL that passed the checks that need no resolution, split for a request."""

    https: bool
    host: str  # ASCII (IDNA): resolved, and the name the certificate must carry
    port: int
    host_header: str
    path: str


def _secret() -> bytes:
    if settings.CALLBACK_SECRET:
        return settings.CALLBACK_SECRET.encode()
    return salted_hmac("tryon.callbacks", "secret").hexdigest().encode()


def signature(body: bytes) -> str:
    """The ``X-Tryon-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(_secret(), body, hashlib.sha256).hexdigest()


def _invalid(message: str) -> ValidationError:
    return ValidationError({"callback_url": [message]})


def _destination(url: str) -> _Destination:
    """``url`` split, or a ValidationError when it is not a well-formed http(s) address."""
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"must be at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("must be an http or https address")
    # A user name and password here would be stored, logged and handed to a third party.
    if "@" in parts.netloc:
        raise _invalid("may not contain a user name or password")
    try:
        port = parts.port  # a ValueError when out of range or not a number
        host = parts.hostname.encode("idna").decode("ascii")  # UnicodeError is a ValueError
    except ValueError:
        raise _invalid("has a port or host name that is not valid") from None
    if port == 0:
        raise _invalid("has a port or host name that is not valid")
    https = parts.scheme == "https"
    named_host = f"[{host}]" if ":" in host else host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Destination(
        https=https,
        host=host,
        port=port or (443 if https else 80),
        host_header=named_host if port is None else f"{named_host}:{port}",
        path=quote(path, safe="/?%:@!$&'()*+,;="),  # what http.client can send: ASCII
    )


def _is_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (ip.is_multicast or ip.is_unspecified or ip == _BROADCAST)


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return _is_unicast(ip) and ip.is_global and not any(ip in net for net in _NOT_GLOBAL)


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The IPv4 address a 6to4 or NAT64 address is relayed to, if it is one."""
    if ip.version == 4:
        return []
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return [ip.sixtofour] if ip.sixtofour else []


def _address_allowed(address: str) -> bool:
    """Whether a callback may go to the IP ``address`` (an IPv6 zone id is ignored)."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # that IPv4 address itself, reached through the IPv6 socket API
    if settings.CALLBACK_ALLOW_PRIVATE:
        return _is_unicast(ip)
    return all(_is_public(each) for each in (ip, *_embedded_ipv4(ip)))


def _checked_addresses(destination: _Destination) -> list[tuple]:
    """Resolve the host once: its (family, socket address) pairs, every one of them allowed.

    Raises ``OSError`` when the name cannot be resolved, ``ValidationError`` when an address is
    refused.
    """
    found = socket.getaddrinfo(destination.host, destination.port, type=socket.SOCK_STREAM)
    addresses = [(family, sockaddr) for family, _, _, _, sockaddr in found]
    if not all(_address_allowed(sockaddr[0]) for _, sockaddr in addresses):
        raise _invalid(_REFUSED_ADDRESS)
    return addresses


def check_callback_url(url: str) -> None:
    """Raise ``ValidationError`` keyed ``callback_url`` unless callbacks may be sent to ``url``.

    The name is resolved now, so one that does not resolve is refused too; each delivery
    resolves and checks it again, since where a name points can change.
    """
    destination = _destination(url)
    try:
        _checked_addresses(destination)
    except OSError:
        raise _invalid(f"{destination.host} cannot be resolved") from None


def payload(job: TryOnJob) -> bytes:
    """The JSON body describing how ``job`` ended."""
    results = [
        {"id": r.pk, "index": r.index, "seed": r.seed, "review_status": r.review_status}
        for r in job.results.all()
    ]
    body = {
        "id": str(job.pk),
        "kind": job.kind,
        "status": job.status,
        "error_type": job.error_type,
        "error_message": job.error_message,
        "results": results,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    return json.dumps(body, sort_keys=True).encode()


def _open_socket(addresses: list[tuple], timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked ``addresses`` that accepts one."""
    error = OSError("the callback's host name has no address")
    for family, sockaddr in addresses[:MAX_ADDRESSES_TRIED]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as refused:
            sock.close()
            error = refused
        else:
            return sock
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the addresses that were checked, never to what the name resolves to now."""

    def __init__(self, destination: _Destination, addresses: list[tuple]):
        super().__init__(destination.host, destination.port, timeout=TIMEOUT_SECONDS)
        self.addresses = addresses

    def connect(self):
        self.sock = _open_socket(self.addresses, self.timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS likewise; the certificate is checked against the host name, sent as SNI."""

    def connect(self):
        super().connect()
        tls = ssl.create_default_context()
        self.sock = tls.wrap_socket(self.sock, server_hostname=self.host)


def _cut(connection: http.client.HTTPConnection) -> None:
    """End a delivery past its deadline: a blocked read returns at once (then it is retried)."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: the delivery ended by itself
            sock.shutdown(socket.SHUT_RDWR)


def deliver(job: TryOnJob) -> int:
    """POST the job's end to its callback URL.

    Raises ``OSError`` when it is not accepted (the task tries again later), ``ValidationError``
    when the URL's host now resolves to an address that is refused.
    """
    destination = _destination(job.callback_url)
    addresses = _checked_addresses(destination)  # again: the name may point elsewhere by now
    body = payload(job)
    headers = {
        "Host": destination.host_header,
        "Content-Type": "application/json",
        "X-Tryon-Signature": signature(body),
    }
    kind = _PinnedHTTPSConnection if destination.https else _PinnedHTTPConnection
    connection = kind(destination, addresses)
    deadline = threading.Timer(DELIVERY_DEADLINE_SECONDS, _cut, [connection])
    deadline.start()
    try:
        connection.request("POST", destination.path, body=body, headers=headers)
        status = connection.getresponse().status
    except http.client.HTTPException as error:  # a garbled answer: worth another try, too
        raise OSError(f"the callback's answer is not HTTP: {error!r}") from error
    finally:
        deadline.cancel()
        connection.close()
    # A redirect is not followed: its target was never checked (a 302 to 127.0.0.1 would reach
    # our own network). Nor is it a delivery: like any answer but 2xx, it is tried again later.
    if not 200 <= status < 300:
        raise OSError(f"the callback answered {status}")
    return status
