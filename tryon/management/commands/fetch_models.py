from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipelines.errors import PipelineError


class Command(BaseCommand):
    help = (
        "Download the recommended weights (SD 1.5 inpainting, ControlNet 1.1 OpenPose and "
        "Canny, the ft-MSE VAE, SAM ViT-B) into MODELS_DIR, verifying each file. Needs "
        "internet access; offline, it lists the files to copy by hand."
    )

    def handle(self, *args, **options):
        from pipelines.fetch import fetch_recommended

        self.stdout.write(f"Models folder: {settings.MODELS_DIR}")
        try:
            placed = fetch_recommended(settings.MODELS_DIR, log=self.stdout.write)
        except PipelineError as error:
            raise CommandError(str(error)) from None
        except OSError as error:  # no network, disk full, permission denied
            raise CommandError(f"download failed: {error}") from None
        self.stdout.write(self.style.SUCCESS(f"{len(placed)} files in place and verified."))
