"""A WebUI API client's own options (``/sdapi/v1/options``), per token: read by the lists
(``sdapi_info``) and used as the defaults of that token's txt2img and img2img requests."""

from .models import ClientOptions

AUTOMATIC_VAE = ("Automatic", "None")  # the WebUI's names for "the checkpoint's own VAE"


def client_options(request) -> ClientOptions:
    """The calling token's options (unsaved defaults when it never set any)."""
    token = request.auth
    found = ClientOptions.objects.filter(token=token).first() if token is not None else None
    if found is not None:
        return found
    return ClientOptions(token=token) if token is not None else ClientOptions()


def client_defaults(request) -> dict:
    """This token's options as generation parameters (``checkpoint``, ``vae``, ``clip_skip``),
    the defaults of its txt2img and img2img requests."""
    options = client_options(request)
    defaults = {"clip_skip": options.clip_skip}
    if options.sd_model_checkpoint:
        defaults["checkpoint"] = options.sd_model_checkpoint
    if options.sd_vae not in AUTOMATIC_VAE:
        defaults["vae"] = options.sd_vae
    return defaults
