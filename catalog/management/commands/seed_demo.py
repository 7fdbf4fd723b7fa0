from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.demo import seed_demo


class Command(BaseCommand):
    help = "Create the demo merchant, staff user and garments (idempotent; local use only)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="run even when DJANGO_DEBUG is false (creates accounts with known passwords)",
        )

    def handle(self, *args, allow_production=False, **options):
        if not settings.DEBUG and not allow_production:
            raise CommandError(
                "seed_demo creates demo accounts and is meant for a local checkout "
                "(DJANGO_DEBUG=true); pass --allow-production to run it anyway."
            )
        report = seed_demo()
        self.stdout.write(
            f"Demo catalog: {report['garments_total']} garments ({report['garments_created']} new)."
        )
        self.stdout.write("Demo accounts (new passwords on every run, local use only):")
        for username, password in report["accounts"].items():
            self.stdout.write(f"  {username:<15} {password}")
