"""Where private files live: shoppers' photos, live previews and try-on results.

They are kept outside MEDIA_ROOT so no static or media route can ever serve them; a view that
checks who is asking streams them instead (see ``tryon.views``).
"""

import io
import os
from collections.abc import Iterable

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.db import transaction


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


def private_storage():
    """The storage of private files (``STORAGES["private"]``), for ``FileField(storage=…)``."""
    return storages["private"]


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
