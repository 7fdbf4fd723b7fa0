"""The sign-in lockout (django-axes, tryon/login_lockout.py): too many failed passwords for one
username, or from one client address, answer 429 on the site's sign-in page and the admin's."""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client
from django.utils import timezone

from tests.processes import run_python

pytestmark = pytest.mark.django_db

LIMIT = 3
PASSWORD = "right-pw-for-tests-1"
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def make_user(django_user_model):
    def make(username, **fields):
        return django_user_model.objects.create_user(username, password=PASSWORD, **fields)

    return make


def _sign_in(username, password=PASSWORD, path=LOGIN, **client_defaults):
    """One sign-in attempt from a fresh browser; REMOTE_ADDR and HTTP_X_FORWARDED_FOR in
    ``client_defaults`` say where it comes from."""
    client = Client(**client_defaults)
    response = client.post(path, {"username": username, "password": password})
    response.signed_in = "_auth_user_id" in client.session
    return response


def _fail(times, usernames, **client_defaults):
    """``times`` wrong passwords, for each of ``usernames`` in turn; the last response."""
    for attempt in range(times):
        refused = _sign_in(usernames[attempt % len(usernames)], "wrong", **client_defaults)
        assert not refused.signed_in
    return refused


def test_a_username_is_locked_after_failures_from_several_addresses(make_user):
    make_user("alice")
    for attempt in range(LIMIT - 1):
        assert _fail(1, ["alice"], REMOTE_ADDR=f"198.51.100.{attempt + 1}").status_code == 200
    # The failure that reaches the limit already answers 429.
    assert _fail(1, ["alice"], REMOTE_ADDR="198.51.100.99").status_code == 429

    locked = _sign_in("alice", REMOTE_ADDR="203.0.113.50")  # the right password, from elsewhere

    assert locked.status_code == 429 and not locked.signed_in
    page = locked.content.decode()
    assert "<title>Too many sign-in attempts · Try-on</title>" in page  # the site's base.html
    assert "Please try again in 15 minutes." in page
    assert 'name="password"' not in page
    assert locked["Retry-After"] == "900"


def test_an_address_is_locked_after_failures_on_different_usernames(make_user):
    make_user("alice")
    for attempt in range(LIMIT):
        # X-Forwarded-For is anyone's to send: without a proxy it changes nothing.
        _fail(
            1,
            [f"guess-{attempt}"],
            REMOTE_ADDR="198.51.100.7",
            HTTP_X_FORWARDED_FOR=f"10.{attempt}.0.1",
        )

    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").status_code == 429
    assert _sign_in("alice", REMOTE_ADDR="198.51.100.8").signed_in


def test_others_sign_in_while_one_username_is_locked(make_user):
    make_user("alice")
    make_user("bob")
    _fail(LIMIT, ["alice"], REMOTE_ADDR="198.51.100.7")

    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").status_code == 429
    assert _sign_in("bob", REMOTE_ADDR="198.51.100.8").signed_in


def test_the_admin_sign_in_is_locked_too(make_user):
    make_user("staff", is_staff=True, is_superuser=True)
    _fail(LIMIT, ["staff"], path=ADMIN_LOGIN, REMOTE_ADDR="198.51.100.7")

    locked = _sign_in("staff", path=ADMIN_LOGIN, REMOTE_ADDR="203.0.113.50")

    assert locked.status_code == 429 and not locked.signed_in
    # One count for both pages: failures on the site's page lock the admin's for that name.
    assert _sign_in("staff", path=LOGIN, REMOTE_ADDR="203.0.113.51").status_code == 429


def test_behind_the_proxy_a_spoofed_forwarded_for_gets_no_fresh_budget(settings, make_user):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    make_user("alice")
    make_user("bob")
    for attempt in range(LIMIT):
        # Everything before the proxy's own entry (the last) is the client's say.
        forwarded = f"10.{attempt}.0.1, 198.51.100.7"
        _fail(1, [f"guess-{attempt}"], REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)

    spoofed = _sign_in(
        "alice", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7"
    )
    assert spoofed.status_code == 429
    # The proxy's connection (REMOTE_ADDR) is everyone's: another client is not locked with it.
    assert _sign_in("bob", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.8").signed_in


def test_a_successful_sign_in_forgets_its_own_failures(make_user):
    make_user("alice")
    _fail(LIMIT - 1, ["alice"], REMOTE_ADDR="198.51.100.7")
    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").signed_in

    _fail(LIMIT - 1, ["alice"], REMOTE_ADDR="198.51.100.7")
    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").signed_in


def test_signing_in_to_ones_own_account_keeps_the_failures_on_others(make_user):
    make_user("alice")
    make_user("mallory")
    _fail(LIMIT - 1, ["alice", "bob"], REMOTE_ADDR="198.51.100.7")
    assert _sign_in("mallory", REMOTE_ADDR="198.51.100.7").signed_in

    _fail(1, ["carol"], REMOTE_ADDR="198.51.100.7")

    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").status_code == 429


def test_the_lockout_ends_after_the_cool_off(make_user):
    make_user("alice")
    _fail(LIMIT, ["alice"], REMOTE_ADDR="198.51.100.7")
    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").status_code == 429

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))

    assert _sign_in("alice", REMOTE_ADDR="198.51.100.7").signed_in
    assert not AccessAttempt.objects.exists()  # expired attempts are deleted, not only ignored


def test_the_locked_out_page_does_not_tell_whether_the_username_exists(make_user):
    make_user("alice")
    _fail(LIMIT, ["alice"], REMOTE_ADDR="198.51.100.7")
    _fail(LIMIT, ["nobody"], REMOTE_ADDR="198.51.100.8")

    existing = _sign_in("alice", "wrong", REMOTE_ADDR="198.51.100.7")
    unknown = _sign_in("nobody", "wrong", REMOTE_ADDR="198.51.100.8")

    assert existing.status_code == unknown.status_code == 429
    main = re.compile(r"<main.*</main>", re.S)
    assert main.search(existing.content.decode())[0] == main.search(unknown.content.decode())[0]


def test_the_limit_and_lockout_come_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds())"
    )

    def read(**env):
        result = run_python(
            code,
            unset=("DJANGO_", "LOGIN_"),
            DJANGO_SETTINGS_MODULE="tryon.settings",
            DJANGO_DEBUG="true",
            **env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert read() == ["5", "900.0"]
    assert read(LOGIN_FAILURE_LIMIT="10", LOGIN_LOCKOUT_MINUTES="60") == ["10", "3600.0"]


def test_the_workers_housekeeping_forgets_failures_whose_lockout_is_over(settings):
    from tryon.celery import _housekeeping

    _fail(LIMIT, ["bob"], REMOTE_ADDR="198.51.100.1")
    _fail(1, ["carol"], REMOTE_ADDR="198.51.100.2")
    over = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.filter(username="bob").update(attempt_time=over)
    _housekeeping()  # on a quiet site: nobody signs in to trigger axes' own clean-up
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["carol"]
