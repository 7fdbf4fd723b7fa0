"""Request budgets hold under bursts, and anonymous shoppers are capped per address too.

A red-team burst of 16 threads got 70 creates through a 60/min limit (DRF's throttle reads,
appends to and writes back a list in the cache, so requests at once all read the same list);
a fresh cookie per request escaped the per-session cap of active jobs.
"""

import threading

import pytest
from django.contrib.auth.models import AnonymousUser
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from common import ratelimit
from common.api_errors import ScopedByMethodThrottle
from common.client_address import client_address
from tests.conftest import photo_upload
from tryon.models import TryOnJob


@pytest.fixture(params=["file", "locmem"])
def shared_cache(request, settings, tmp_path):
    """The cache `make run` uses (files, shared by every process) or the tests' in-memory one."""
    backend = {
        "file": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        },
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }[request.param]
    settings.CACHES = {"default": backend}
    return request.param


def _burst(call, threads=16, each=8) -> list:
    """``call()`` from ``threads`` threads released at once, ``each`` times in each."""
    start, outcomes = threading.Barrier(threads), []

    def run():
        start.wait()
        outcomes.extend(call() for _ in range(each))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def test_a_16_thread_burst_gets_exactly_the_write_budget_through(shared_cache, monkeypatch):
    monkeypatch.setattr(ScopedByMethodThrottle, "THROTTLE_RATES", {"read": None, "write": "60/min"})
    factory = APIRequestFactory()

    def create():
        request = Request(factory.post("/api/tryons/"))
        request.user = AnonymousUser()
        return ScopedByMethodThrottle().allow_request(request, view=None)

    outcomes = _burst(create)
    assert len(outcomes) == 128 and outcomes.count(True) == 60


def test_the_window_slides_over_its_edge(shared_cache):
    # 10 a minute, all taken at the end of one window: the next window's start still counts
    # them (a fixed window would let 10 more through at once), and lets one in as they fade.
    assert [ratelimit.hit("k", 10, 60, now=59.0) for _ in range(10)] == [None] * 10
    waiting = ratelimit.hit("k", 10, 60, now=61.0)
    assert waiting == pytest.approx(5.0)  # 10 × (1 - 66/60 + 1) + 1 ≤ 10 from t = 66
    assert ratelimit.hit("k", 10, 60, now=65.5) is not None
    assert ratelimit.hit("k", 10, 60, now=66.0) is None
    assert ratelimit.hit("k", 10, 60, now=66.1) is not None


def test_refused_requests_are_not_counted(shared_cache):
    assert [ratelimit.hit("k", 3, 60, now=1.0) for _ in range(3)] == [None] * 3
    for _ in range(20):  # knocking on while refused costs nothing later
        # 58 s to the window's end, then 3 × (1 - t/60) + 1 ≤ 3 from t = 20 s into the next
        assert ratelimit.hit("k", 3, 60, now=2.0) == pytest.approx(78.0)
    assert ratelimit.hit("k", 3, 60, now=79.9) is not None
    assert ratelimit.hit("k", 3, 60, now=80.0) is None  # as Retry-After said
    # the next window's first minute still carries the 3 allowed ones, not the 20 refused
    assert ratelimit.hit("k", 3, 60, now=119.0) is None


@pytest.mark.django_db
def test_a_fresh_cookie_per_request_does_not_escape_the_cap_of_its_address(
    analysed_garment, settings
):
    settings.MAX_ACTIVE_JOBS = 2
    settings.MAX_ACTIVE_JOBS_PER_ADDRESS = 3
    answers = []
    for _ in range(5):
        fresh = APIClient()  # no cookie: a new session, as a script would make each time
        answers.append(
            fresh.post(
                "/api/tryons/",
                {"garment": analysed_garment.pk, "person_photo": photo_upload(), "consent": "true"},
                format="multipart",
            )
        )
    assert [answer.status_code for answer in answers] == [201, 201, 201, 409, 409]
    assert "3 photo try-ons from your network" in answers[-1].json()["message"]
    assert TryOnJob.objects.count() == 3
    # Another address has a budget of its own, and keys are not the address itself.
    other = APIClient(REMOTE_ADDR="198.51.100.7").post(
        "/api/tryons/",
        {"garment": analysed_garment.pk, "person_photo": photo_upload(), "consent": "true"},
        format="multipart",
    )
    assert other.status_code == 201
    keys = set(TryOnJob.objects.values_list("client_key", flat=True))
    assert len(keys) == 2 and not any("127.0.0.1" in key or "198.51" in key for key in keys)


@pytest.mark.parametrize(
    ("remote", "counted_as"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::"),
        ("2001:db8:1:3::1", "2001:db8:1:3::"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("198.51.100.7", "198.51.100.7"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64(remote, counted_as):
    # Each IPv6 customer picks freely inside a /64: per address, every request would be new.
    request = APIRequestFactory().get("/", REMOTE_ADDR=remote)
    assert client_address(request) == counted_as


def test_addresses_of_one_ipv6_network_share_the_write_budget(shared_cache, monkeypatch):
    monkeypatch.setattr(ScopedByMethodThrottle, "THROTTLE_RATES", {"read": None, "write": "3/min"})
    factory = APIRequestFactory()

    def create(remote):
        request = Request(factory.post("/api/tryons/", REMOTE_ADDR=remote))
        request.user = AnonymousUser()
        return ScopedByMethodThrottle().allow_request(request, view=None)

    same_network = [create(f"2001:db8:1:2::{n:x}") for n in range(1, 6)]
    assert same_network == [True, True, True, False, False]
    assert create("2001:db8:9:9::1") is True
