"""scripts/red_team_replay.py, issue 16's findings replayed over HTTP, passes against a live
server of this code (the script's own checks are the assertions; it is also run by hand
against `make run`, where the workers are real processes)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import red_team_replay

from catalog.demo import seed_demo

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_finding_gets_the_answer_the_issue_names(live_server, settings, capsys):
    settings.TRYON_ENGINE = "preview"
    seed_demo()  # the analysis runs at once: Celery is eager in the tests
    summary = red_team_replay.replay(live_server.url)
    assert summary["failed"] == [], capsys.readouterr().err
    assert summary["checks"] >= 40 and summary["still_serving"]
