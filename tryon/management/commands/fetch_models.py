from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipelines.errors import PipelineError


class Command(BaseCommand):
    help = (
        "Download a starter set of weights into MODELS_DIR, verifying each file: --set sd15 "
        "(default: SD 1.5 inpainting, ControlNet 1.1 OpenPose and Canny, the ft-MSE VAE, SAM "
        "ViT-B) or --set sdxl (SDXL inpainting, SDXL OpenPose and Canny ControlNets, the "
        "fp16-fix VAE, SAM ViT-B). Needs internet access; offline, it lists the files to copy "
        "by hand."
    )

    def add_arguments(self, parser):
        from pipelines.fetch import DEFAULT_SET, STARTER_SETS

        parser.add_argument("--set", default=DEFAULT_SET, choices=sorted(STARTER_SETS))

    def handle(self, *args, **options):
        from pipelines.fetch import fetch_recommended

        self.stdout.write(f"Models folder: {settings.MODELS_DIR}")
        try:
            placed = fetch_recommended(
                settings.MODELS_DIR, set_name=options["set"], log=self.stdout.write
            )
        except PipelineError as error:
            raise CommandError(str(error)) from None
        except OSError as error:  # no network, disk full, permission denied
            raise CommandError(f"download failed: {error}") from None
        self.stdout.write(self.style.SUCCESS(f"{len(placed)} files in place and verified."))
