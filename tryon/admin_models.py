"""Admin's read-only list of the models installed in MODELS_DIR, for staff.

It reads names, sizes and bytes only (a file's sha256), never loads a model: the web process
does not import torch, and a model file is never unpickled to be listed.
"""

from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.template.response import TemplateResponse

from pipelines.engines import find_weights
from pipelines.errors import InvalidInputError, ModelNotFoundError
from pipelines.registry import (
    check_inside_models_dir,
    is_listed,
    model_files,
    model_hash,
    scan_models,
)

# Shared with the workers' RuntimeConfig.hash_cache: a big file is hashed once for all.
HASH_CACHE_NAME = "model-hashes.json"


def _row(entry, manifest: Path | None, cache_file: Path) -> dict:
    row = {
        "kind": entry.kind,
        "name": entry.name,
        "file": entry.path.relative_to(entry.models_dir).as_posix(),
        "format": entry.format,
        "size": None,
        "hash": "",
        "listed": False if manifest else None,
        "problem": "",
    }
    try:
        check_inside_models_dir(entry)
    except InvalidInputError:
        # Workers refuse it; hashing it here would read whatever file the link points at.
        return {**row, "problem": "leads outside MODELS_DIR: workers refuse it"}
    row["size"] = sum(path.stat().st_size for path in model_files(entry))
    try:
        row["hash"] = model_hash(entry, cache_file=cache_file)
    except ModelNotFoundError:
        row["problem"] = "no weights file in the folder"
    if manifest:
        row["listed"] = is_listed(entry, manifest, cache_file=cache_file)
    return row


def installed_models_view(request):
    """Every installed model: kind, name, file, size, WebUI short hash, and whether the
    MODELS_MANIFEST lists it (all its files with their sha256)."""
    manifest = settings.MODELS_MANIFEST
    cache_file = Path(settings.VAR_DIR) / HASH_CACHE_NAME
    rows = [_row(entry, manifest, cache_file) for entry in scan_models(settings.MODELS_DIR)]
    context = {
        **admin.site.each_context(request),
        "title": "Installed models",
        "rows": rows,
        "manifest": manifest,
        "ip_adapter_missing": find_weights(settings.MODELS_DIR).ip_adapter_missing,
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "admin/tryon/installed_models.html", context)


# Staff only, with the admin's login page for anyone else.
installed_models = admin.site.admin_view(installed_models_view)
