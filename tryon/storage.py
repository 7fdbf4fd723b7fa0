"""Where private files live: shoppers' photos, live previews and try-on results.

They are kept outside MEDIA_ROOT so no static or media route can ever serve them; a view that
checks who is asking streams them instead (see ``tryon.views``).
"""

import os

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages


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
