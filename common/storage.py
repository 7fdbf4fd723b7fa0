"""Where files live and how they are named.

Stored files get random names (``RandomName``: a client's file name never reaches the disk).
Private files (shoppers' photos, live previews and try-on results) are kept
outside MEDIA_ROOT (or in a private bucket, ``common.s3``) so no static or media route can ever
serve them; a view that checks who is asking streams them instead, or hands out a
short-lived signed URL where the storage has them (see ``tryon.views``).
"""

import io
import os
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.utils.deconstruct import deconstructible
from django.utils.functional import LazyObject, empty


class PrivateFileSystemStorage(FileSystemStorage):
    """A file system storage under ``PRIVATE_MEDIA_ROOT`` with no public URL.

    The location is read from settings on every use (tests point it at a temporary folder).
    """

    @property
    def base_location(self):
        return self._value_or_setting(self._location, settings.PRIVATE_MEDIA_ROOT)

    @property
    def location(self):
        return os.path.abspath(self.base_location)

    def url(self, name):
        raise ValueError("private files have no public URL; serve them through a checked view")


class _PrivateStorage(LazyObject):
    """``STORAGES["private"]``, looked up on first use, as Django's ``default_storage`` is.

    A FileField keeps the storage it is given when the model class is made; through this proxy
    a change of the STORAGES setting (a test's) still reaches it.
    """

    def _setup(self):
        self._wrapped = storages["private"]


_private = _PrivateStorage()


@receiver(setting_changed)
def _forget_private_storage(*, setting, **kwargs):
    if setting == "STORAGES":
        _private._wrapped = empty


def private_storage():
    """The storage of private files (``STORAGES["private"]``), for ``FileField(storage=…)``."""
    return _private


def signed_url(stored, *, content_disposition: str, cache_control: str) -> str | None:
    """A short-lived URL from which the client reads ``stored`` straight from the storage, which
    answers with these headers; None where the storage has none (files on disk are streamed)."""
    sign = getattr(stored.storage, "signed_url", None)
    if sign is None:
        return None
    return sign(stored.name, content_disposition=content_disposition, cache_control=cache_control)


def delete_files_on_commit(files: Iterable) -> None:
    """Remove stored files once the transaction that stopped referencing them has committed.

    Deleting before the commit could leave a row pointing at a missing file if the transaction
    rolled back; deleting after means a crash can at worst leave an orphan file, never a broken row.
    """
    for stored in files:
        storage, name = stored.storage, stored.name
        transaction.on_commit(lambda storage=storage, name=name: storage.delete(name))


def png_file(image, name: str) -> ContentFile:
    """``image`` (PIL) as a PNG file named ``<name>.png``, ready for a FileField's ``save``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name=f"{name}.png")


@deconstructible
class RandomName:
    """An ``upload_to`` that keeps the extension and replaces the client's file name by a UUID."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, instance, filename: str) -> str:
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
        return f"{self.folder}/{uuid.uuid4().hex}.{extension}"

    def __eq__(self, other):
        return isinstance(other, RandomName) and other.folder == self.folder
