"""Creating a try-on through the API keeps the database writable while the photo is checked.

The pose pre-check is a tenth of a second of CPU per request; on SQLite, a write transaction
open around it would hold the one write lock for all that time, and every other request that
writes (and every worker saving progress) would wait.
"""

import sqlite3

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import photo_upload
from tests.factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_the_photo_is_checked_outside_any_write_transaction(analysed_garment, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock is what this watches")
    from tryon import intake, tasks

    check_pose = intake.check_photo_pose
    writable = []

    def check_pose_while_another_connection_writes(photo, category):
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            writable.append(True)
        except sqlite3.OperationalError:  # database is locked
            writable.append(False)
        finally:
            other.close()
        check_pose(photo, category)

    monkeypatch.setattr(intake, "check_photo_pose", check_pose_while_another_connection_writes)
    monkeypatch.setattr(tasks.tryon_job_run_task, "delay", lambda job_id: None)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=UserFactory()).key}")

    response = api.post(
        "/api/tryons/",
        {"garment": analysed_garment.pk, "person_photo": photo_upload(), "consent": True},
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    assert writable == [True]
