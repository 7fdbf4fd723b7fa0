"""The sign-in lockout (django-axes), as settings.py configures it: what it forgets when someone
signs in, and the page a locked-out person sees.

axes counts failed sign-ins twice, per username from any address and per address on any
username, and refuses both /accounts/login/ and /admin/login/ once either count reaches
LOGIN_FAILURE_LIMIT within LOGIN_LOCKOUT_MINUTES.

The API signs in with tokens, never a password, so nothing there is counted. A password sign-in
added to it later (HTTP Basic on /sdapi/) is counted through the request DRF passes to
authenticate(), but would answer this HTML page: it needs a JSON 429 of its own.
"""

import math

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.shortcuts import render
from django.utils import timezone


class SignInAttemptHandler(AxesDatabaseHandler):
    """axes' database handler, forgetting only the failures a successful sign-in explains."""

    def reset_user_attempts(self, request, credentials=None) -> int:
        """Forget this username's failures from this address, and no others.

        axes' own reset forgets the username's failures from every address and the address's
        failures on every username: anyone with an account could then sign in to it between
        guesses at other people's and never reach the per-address limit.
        """
        deleted, _ = AccessAttempt.objects.filter(
            username=get_client_username(request, credentials),
            ip_address=request.axes_ip_address,
        ).delete()
        return deleted


def lockout_response(request, original_response=None, credentials=None):
    """The 429 page for a sign-in refused by the lockout (AXES_LOCKOUT_CALLABLE).

    The same for every username, existing or not, so it tells nobody which accounts exist.
    """
    wait_seconds = int(get_cool_off(request).total_seconds())
    context = {"minutes": math.ceil(wait_seconds / 60)}
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(wait_seconds)
    return response


def forget_expired_failures() -> int:
    """Delete the failed sign-ins whose lockout is over (the worker's housekeeping runs it).

    axes deletes them only when someone next signs in or out, so on a quiet site a guesser's
    address and the usernames tried would stay for good. Returns how many rows went.
    """
    cutoff = timezone.now() - settings.AXES_COOLOFF_TIME
    deleted, _ = AccessAttempt.objects.filter(attempt_time__lt=cutoff).delete()
    return deleted
