"""`python manage.py seed_demo`: demo accounts and garments, idempotent, local only."""

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from catalog.demo import DEMO_GARMENTS, DEMO_MERCHANT, DEMO_STAFF, analysed_tee
from catalog.models import Garment
from common.roles import is_merchant

pytestmark = pytest.mark.django_db


def _run(settings, capsys):
    settings.DEBUG = True
    call_command("seed_demo")
    return capsys.readouterr().out


def _password(output, username):
    line = next(line for line in output.splitlines() if line.strip().startswith(username))
    return line.split()[-1]


def _sign_in(username, password):
    """The user these credentials sign in, or None. The sign-in lockout needs the request."""
    request = RequestFactory().post("/accounts/login/")
    return authenticate(request, username=username, password=password)


def test_seed_demo_creates_accounts_and_garments_across_categories(settings, capsys):
    output = _run(settings, capsys)
    merchant = _sign_in(DEMO_MERCHANT, _password(output, DEMO_MERCHANT))
    staff = _sign_in(DEMO_STAFF, _password(output, DEMO_STAFF))
    assert merchant is not None and is_merchant(merchant)
    assert staff is not None and staff.is_staff
    garments = Garment.objects.filter(merchant=merchant)
    assert garments.count() == len(DEMO_GARMENTS) >= 6
    assert set(garments.values_list("category", flat=True)) == {"upper", "lower", "dress", "outer"}
    for garment in garments:
        assert garment.image.width == 768 and garment.image.height == 1024


def test_seed_demo_twice_creates_no_duplicates(settings, capsys, media_root):
    _run(settings, capsys)
    files_after_first = sorted(media_root.rglob("*.png"))
    output = _run(settings, capsys)
    assert Garment.objects.count() == len(DEMO_GARMENTS)
    assert sorted(media_root.rglob("*.png")) == files_after_first
    assert "(0 new)" in output
    # The second run's printed password is the one that works.
    assert _sign_in(DEMO_MERCHANT, _password(output, DEMO_MERCHANT))


def test_seed_demo_refuses_to_run_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="local checkout"):
        call_command("seed_demo")
    assert Garment.objects.count() == 0


def test_seed_demo_reanalyses_demo_garments_left_without_analysis(
    settings, capsys, django_capture_on_commit_callbacks
):
    _run(settings, capsys)
    Garment.objects.update(analysis_status="pending")
    with django_capture_on_commit_callbacks(execute=True):
        _run(settings, capsys)
    statuses = set(Garment.objects.values_list("analysis_status", flat=True))
    assert statuses == {"done"}


def test_the_scripts_tee_is_analysed_in_process(merchant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        tee = analysed_tee(merchant, title="Bench tee", sku="BENCH")
    assert queued == []  # the benchmarks run no analysis worker
    assert (tee.title, tee.sku, tee.category) == ("Bench tee", "BENCH", "upper")
    assert tee.analysis_status == Garment.AnalysisStatus.DONE
    assert tee.cutout and tee.mask and tee.canny
