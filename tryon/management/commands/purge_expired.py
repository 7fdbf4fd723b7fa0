"""``python manage.py purge_expired``: delete shoppers' photos and try-ons past their retention.

Workers do this on their own every few seconds; the command is for cron or a one-off clean-up.
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from tryon.housekeeping import purge_expired


class Command(BaseCommand):
    help = "Delete shoppers' photo try-ons older than PERSON_PHOTO_RETENTION_HOURS."

    def handle(self, *args, **options):
        count = purge_expired()
        hours = settings.PERSON_PHOTO_RETENTION_HOURS
        self.stdout.write(f"Deleted {count} photo try-on(s) older than {hours} h.")
