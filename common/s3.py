"""Private files in S3-compatible object storage (``STORAGES["private"]`` at scale).

Its own module, so that only a process configured for object storage imports boto3.
"""

from urllib.parse import urlsplit

from storages.backends.s3 import S3Storage


class PrivateS3Storage(S3Storage):
    """A private bucket: no public URL, only signed ones that expire, handed out by the views
    that check who is asking (``tryon.views``)."""

    # Class attributes win over the global AWS_* settings django-storages would read.
    querystring_auth = True
    querystring_expire = 120
    custom_domain = None  # a CDN domain would serve the objects unsigned
    file_overwrite = False

    def url(self, name, *args, **kwargs):
        raise ValueError("private files have no public URL; serve them through a checked view")

    def signed_url(self, name: str, *, content_disposition: str, cache_control: str) -> str:
        """A URL that reads ``name`` for ``querystring_expire`` seconds; the store answers it
        with these Content-Disposition and Cache-Control headers."""
        return super().url(
            name,
            parameters={
                "ResponseContentDisposition": content_disposition,
                "ResponseCacheControl": cache_control,
            },
            expire=self.querystring_expire,
        )

    def signed_url_origin(self) -> str:
        """The scheme and host of every signed URL, for the Content-Security-Policy.

        Read from an unsigned URL made with the same endpoint and addressing style, so that it
        needs no credentials (the signature only adds a query string)."""
        client = self.unsigned_connection.meta.client
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket_name, "Key": "origin"}
        )
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
