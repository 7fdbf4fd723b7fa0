"""Upload handlers: a file larger than ``UPLOAD_MAX_BYTES`` is never written to disk in full.

Django streams every uploaded file to a temporary file before any view or validator sees it, so
:func:`common.uploads.clean_image_upload` alone would refuse a 2 GB upload only after all of it
had been written. This handler stops writing once a file passes the limit, deletes what it had
written, and hands the form an empty :class:`OversizedUpload` that knows the file's size, so the
person still reads "The file is 2048 MB; the limit is 15 MB" on the field they filled in (a
skipped file would read as a missing one).
"""

import io

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler


class OversizedUpload(UploadedFile):
    """A file refused for its size while it arrived: its size and name, none of its bytes."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        super().__init__(io.BytesIO(), name, content_type, size, charset, content_type_extra)


class SizeLimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler that stops at ``UPLOAD_MAX_BYTES`` per file.

    The rest of the request is still read (and dropped) so that the other fields of the form
    arrive and the refusal can name the file's real size.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.oversized = False

    def receive_data_chunk(self, raw_data, start):
        if self.oversized:
            return None
        if start + len(raw_data) > settings.UPLOAD_MAX_BYTES:
            self.oversized = True
            # Closing the temporary file deletes it: no part of a refused file stays on disk.
            self.file.close()
            return None
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        if self.oversized:
            return OversizedUpload(
                self.file_name, self.content_type, file_size, self.charset, self.content_type_extra
            )
        return super().file_complete(file_size)
