"""Many requests at once for one merchant's active-job slots, in a process of its own.

Run as ``python -m tests.integration.active_job_race THREADS`` with the stack's environment
(tests/integration/test_scale.py does): THREADS threads, each with its own database connection,
try to queue a model shot for the same merchant at the same moment. Prints
``{"accepted": N, "refused": M, "limit": L}``. Nothing is sent to the broker.
"""

import json
import os
import sys
import threading
from unittest import mock


def main(threads: int) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tryon.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from catalog.demo import analysed_tee
    from common.roles import MERCHANTS_GROUP
    from tryon.intake import TooManyActiveJobs, tryon_job_create

    merchant = User.objects.create_user("race-merchant")
    merchant.groups.add(Group.objects.get_or_create(name=MERCHANTS_GROUP)[0])
    garment = analysed_tee(merchant, title="Race tee", sku="RACE-1")
    connection.close()

    outcomes: list[str] = []
    start = threading.Barrier(threads)

    def create():
        try:
            start.wait()
            tryon_job_create(
                kind="model_shot", garment=garment, owner=merchant, params={"steps": 2}
            )
            outcomes.append("accepted")
        except TooManyActiveJobs:
            outcomes.append("refused")
        finally:
            connection.close()

    with mock.patch("tryon.intake.enqueue"):
        running = [threading.Thread(target=create) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
    return {
        "accepted": outcomes.count("accepted"),
        "refused": outcomes.count("refused"),
        "limit": settings.MAX_ACTIVE_MODEL_SHOTS,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
