"""Settings for the try-on site, read from environment variables (django-environ).

Every value has an embedded default that needs no server: SQLite, media on local disk and a
Celery broker in an SQLite file. The development-only defaults (secret key, allowed hosts) are
used only when ``DJANGO_DEBUG`` is true; a production process must set them explicitly.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from pipelines.pictures import MAX_SIDE as PIPELINE_MAX_SIDE

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# Local state of the embedded defaults (SQLite files, collected static files), git-ignored.
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _dev_default(name, value):
    """A value that is only acceptable on a developer's machine."""
    if DEBUG:
        return value
    raise ImproperlyConfigured(f"{name} must be set when DJANGO_DEBUG is false (see .env.example).")


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=None) or _dev_default(
    "DJANGO_SECRET_KEY", "dev-only-insecure-key-never-use-in-production"
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=None) or _dev_default(
    "DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"]
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tryon",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise, so that every response carries the policy, static files' too.
    "tryon.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: it turns a sign-in refused by the lockout into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tryon.urls"
WSGI_APPLICATION = "tryon.wsgi.application"
ASGI_APPLICATION = "tryon.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tryon.context_processors.site",
            ],
        },
    },
]

# SQLite by default; WAL and IMMEDIATE transactions let the web process and the worker write to
# the same file without "database is locked" errors under ordinary load.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not Django's in-memory default, so a worker process started by a test sees the
    # same test database; one per test run, so two runs at once never share it.
    DATABASES["default"].setdefault(
        "TEST", {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared by every process (the throttles count each client's requests here, whichever process
# answers): files under var/ by default, e.g. rediscache://host:6379/1 at scale. Never Django's
# per-process in-memory default, which would give each process its own budget.
CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "after_login"
LOGOUT_REDIRECT_URL = "catalog:home"

# Sign-in lockout (django-axes, tryon/login_lockout.py) on /accounts/login/ and the admin's:
# after LOGIN_FAILURE_LIMIT failed sign-ins for one username (from any address), or from one
# address (on any usernames), that username or address is refused with 429, the right password
# too, until LOGIN_LOCKOUT_MINUTES pass without another try. axes' backend goes first, so it
# refuses before ModelBackend checks a password; it needs the request, so every authenticate()
# call must pass one.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
# Two counters, not one per (username, address) pair: with the pair alone one address could
# guess at every account, and many addresses at one.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The address the API's throttles use: X-Forwarded-For only as REST_FRAMEWORK["NUM_PROXIES"] says.
AXES_CLIENT_IP_CALLABLE = "common.client_address.client_address"
# Counts in the database, not the cache: updated in a transaction, shared by every process and
# host whatever CACHE_URL is, and listed in admin ("Access attempts"; deleting one unlocks).
AXES_HANDLER = "tryon.login_lockout.SignInAttemptHandler"
# A successful sign-in forgets that username's failures from that address (the handler says why
# only those).
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "tryon.login_lockout.lockout_response"
# Privacy: a failed attempt's row (username, address, browser) is deleted at the next sign-in
# once it is older than the lockout; successful sign-ins are not recorded (axes would keep them
# forever).
AXES_DISABLE_ACCESS_LOG = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
# Shoppers' photos and try-on results: never under MEDIA_ROOT, never at a public URL.
PRIVATE_MEDIA_ROOT = env.path("PRIVATE_MEDIA_ROOT", default=VAR_DIR / "private")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "private": {"BACKEND": "common.storage.PrivateFileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# At scale, pictures go to S3-compatible object storage (AWS S3, MinIO, Ceph, R2, …) instead:
# garment pictures to a public bucket, read straight from it; shoppers' photos and results to
# a private one, reached only through the checked /files/ views, which answer with a signed
# URL valid for PRIVATE_URL_SECONDS. Credentials come the usual boto3 way (AWS_ACCESS_KEY_ID
# and AWS_SECRET_ACCESS_KEY, or the machine's role).
S3_PUBLIC_BUCKET = env.str("AWS_STORAGE_BUCKET_NAME", default="")
S3_PRIVATE_BUCKET = env.str("AWS_PRIVATE_STORAGE_BUCKET_NAME", default="")
PRIVATE_URL_SECONDS = env.int("PRIVATE_URL_SECONDS", default=120)
if S3_PUBLIC_BUCKET or S3_PRIVATE_BUCKET:
    if not (S3_PUBLIC_BUCKET and S3_PRIVATE_BUCKET):
        raise ImproperlyConfigured(
            "Set both AWS_STORAGE_BUCKET_NAME (public pictures) and "
            "AWS_PRIVATE_STORAGE_BUCKET_NAME (shoppers' photos and results), or neither."
        )
    if S3_PUBLIC_BUCKET == S3_PRIVATE_BUCKET:
        # Public pictures are readable by anyone, and on most stores that is a property of
        # the bucket (its policy), not of each object: private files need a bucket of their own.
        raise ImproperlyConfigured(
            "AWS_PRIVATE_STORAGE_BUCKET_NAME must be another bucket than "
            "AWS_STORAGE_BUCKET_NAME: shoppers' photos never share the public bucket."
        )
    _s3 = {
        "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default=None),
        "region_name": env.str("AWS_S3_REGION_NAME", default=None),
        # "path" for most self-hosted stores (MinIO, Ceph), "virtual" for AWS.
        "addressing_style": env.str("AWS_S3_ADDRESSING_STYLE", default=None),
        "file_overwrite": False,
    }
    # public-read makes each garment picture readable; stores that disable ACLs (AWS's default
    # for new buckets, R2) refuse any ACL: set AWS_DEFAULT_ACL= (empty) and make the public
    # bucket readable with a bucket policy.
    S3_PUBLIC_ACL = env.str("AWS_DEFAULT_ACL", default="public-read") or None
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **_s3,
            "bucket_name": S3_PUBLIC_BUCKET,
            "default_acl": S3_PUBLIC_ACL,
            "querystring_auth": False,
            "custom_domain": env.str("AWS_S3_CUSTOM_DOMAIN", default=None),
        },
    }
    STORAGES["private"] = {
        "BACKEND": "common.s3.PrivateS3Storage",
        "OPTIONS": {
            **_s3,
            "bucket_name": S3_PRIVATE_BUCKET,
            # Where the store takes ACLs, each private file says so too.
            "default_acl": "private" if S3_PUBLIC_ACL else None,
            "querystring_expire": PRIVATE_URL_SECONDS,
        },
    }

# Uploaded pictures (garment shots, later shoppers' photos) are untrusted: see common/uploads.py.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=15 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=40_000_000)
UPLOAD_MIN_SIDE = env.int("UPLOAD_MIN_SIDE", default=128)
# Each side at most this long (and the long side at most 4 times the short one): OpenCV and
# MediaPipe abort the process on a side of 32767 or more; the pipeline refuses beyond MAX_SIDE.
UPLOAD_MAX_SIDE = env.int("UPLOAD_MAX_SIDE", default=10000)
if not 0 < UPLOAD_MAX_SIDE <= PIPELINE_MAX_SIDE:
    raise ImproperlyConfigured(
        f"UPLOAD_MAX_SIDE must be from 1 to {PIPELINE_MAX_SIDE}, not {UPLOAD_MAX_SIDE}."
    )
# A request body Django buffers in memory (JSON, form fields; not multipart files, which go to
# disk): larger is refused before it is read. Big enough for a WebUI img2img payload, whose
# picture, mask and ControlNet maps all come base64-encoded in one JSON body.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("REQUEST_BODY_MAX_BYTES", default=32 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# A file past UPLOAD_MAX_BYTES stops being written to disk as it arrives
# (common/upload_handlers.py).
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "common.upload_handlers.SizeLimitedTemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# Generation engine and weights (see DESIGN.md, "Engines" and "Weights").
MODELS_DIR = env.path("MODELS_DIR", default=BASE_DIR / "models")
# An optional sha256 allow-list in sha256sum's format (paths relative to MODELS_DIR): when set,
# workers load only the model files listed there with a matching sha256 (models/README.md).
_models_manifest = env.str("MODELS_MANIFEST", default="")
MODELS_MANIFEST = Path(_models_manifest).resolve() if _models_manifest else None
TRYON_ENGINE = env.str("TRYON_ENGINE", default="auto")
# How the worker runs the models (pipelines.request.RuntimeConfig): device auto|cpu|cuda[:N],
# dtype auto|fp16|bf16|fp32; offload and VAE tiling trade speed for GPU memory.
TRYON_DEVICE = env.str("TRYON_DEVICE", default="auto")
TRYON_DTYPE = env.str("TRYON_DTYPE", default="auto")
TRYON_CPU_OFFLOAD = env.bool("TRYON_CPU_OFFLOAD", default=False)
TRYON_VAE_TILING = env.bool("TRYON_VAE_TILING", default=False)
# What the worker does to pictures (pipelines.content_filter, pipelines.watermark): the NSFW filter
# checks the input photo and every result when its weights are in MODELS_DIR/safety_checker
# ("auto") or never ("off"); the invisible watermark changes pixels all over a result, outside
# the mask too, so it is off unless asked for.
TRYON_CONTENT_FILTER = env.str("TRYON_CONTENT_FILTER", default="auto")
if TRYON_CONTENT_FILTER not in ("auto", "off"):
    raise ImproperlyConfigured(
        f"TRYON_CONTENT_FILTER must be auto or off, not {TRYON_CONTENT_FILTER!r}."
    )
TRYON_WATERMARK = env.bool("TRYON_WATERMARK", default=False)

# Try-on jobs (tryon.runner, tryon.housekeeping): a running job writes a heartbeat this often;
# one whose heartbeat is older than JOB_STALE_AFTER is taken to be orphaned by a dead worker and
# queued again, at most JOB_MAX_ATTEMPTS times in all. A job running longer than JOB_DEADLINE
# seconds fails.
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=5.0)
JOB_STALE_AFTER = env.float("JOB_STALE_AFTER", default=30.0)
JOB_SWEEP_SECONDS = env.float("JOB_SWEEP_SECONDS", default=15.0)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
JOB_DEADLINE = env.int("JOB_DEADLINE", default=900)
# Shoppers' photos and their try-ons are deleted this many hours after the try-on (the consent
# text states it); tryon.housekeeping.purge_expired runs in every worker's housekeeping timer.
PERSON_PHOTO_RETENTION_HOURS = env.int("PERSON_PHOTO_RETENTION_HOURS", default=24)
# Progress and the live preview are written at most this often (seconds).
JOB_PROGRESS_INTERVAL = env.float("JOB_PROGRESS_INTERVAL", default=0.5)

# Celery: an SQLite broker and result store by default, Redis (or any kombu URL) at scale.
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND", default=f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A task's message is acknowledged when the task ends, so a worker that dies mid-job leaves it
# with the broker. Redis hands an unacknowledged message to another worker after its visibility
# timeout, even while the first is still running it: so the timeout is longer than any job may
# run (a worker refuses to start otherwise, tryon/celery.py) and, by default, than the
# callbacks' longest retry countdown (600 s). A dead worker's job is taken over well before then
# by the sweeper (JOB_STALE_AFTER); the broker's late copy then finds the job done.
BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=JOB_DEADLINE + 900)
if CELERY_BROKER_URL.partition("://")[0] in ("redis", "rediss", "redis+socket", "sentinel"):
    # Only for Redis: the SQL transport hands its options to SQLAlchemy, which refuses this one.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# How often a worker looks for new jobs on the embedded SQLite broker (tryon/broker.py).
SQL_BROKER_POLLING_INTERVAL = env.float("SQL_BROKER_POLLING_INTERVAL", default=0.2)
# Garment analysis (CPU, seconds) and generation (GPU, a minute) never wait behind each other.
# Callbacks are HTTP requests to merchants' servers (up to 10 s each, retried): CPU workers
# deliver them, so a slow receiver never keeps a GPU idle. An exact name beats the pattern.
CELERY_TASK_DEFAULT_QUEUE = "analysis"
CELERY_TASK_ROUTES = {
    "tryon.tasks.job_callback_task": {"queue": "analysis"},
    "tryon.tasks.*": {"queue": "generation"},
}
# A worker writes a heartbeat row this often; /healthz calls a worker "ok" if seen within
# WORKER_STALE_AFTER seconds.
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", default=10)
WORKER_STALE_AFTER = env.int("WORKER_STALE_AFTER", default=60)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # DRF's own two, the browsable API's page made to pass the Content-Security-Policy.
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "tryon.renderers.BrowsableAPIRenderer",
    ],
    # Token first: an unauthenticated request then gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        # A session cookie's writes need the CSRF token, signed in or not (tryon/api_auth.py).
        "tryon.api_auth.CsrfCheckedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 24,
    "EXCEPTION_HANDLER": "common.api_errors.exception_handler",
    # No proxy (a developer's machine): the connection's own address; X-Forwarded-For, which
    # anyone can send, is ignored. Production behind a proxy sets 1 (below).
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_CLASSES": ["common.api_errors.ScopedByMethodThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        # Reading is cheap: polling a job's status once a second stays well inside it.
        "read": env.str("API_READ_RATE", default="600/min"),
        "write": env.str("API_WRITE_RATE", default="60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Try-on API",
    "DESCRIPTION": "Garments, try-on jobs and their results. Errors are "
    '`{"message": …, "field": …}`.',
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge from Swagger's online validator: a picture from its host, which the
    # Content-Security-Policy refuses, telling it the schema's address.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# A shopper (user or session) may have this many jobs queued or running at once; anonymous
# shoppers from one client address, this many in all (whatever their cookies). Set it well above
# MAX_ACTIVE_JOBS: an office or a mobile carrier puts many shoppers behind one address.
MAX_ACTIVE_JOBS = env.int("MAX_ACTIVE_JOBS", default=4)
MAX_ACTIVE_JOBS_PER_ADDRESS = env.int("MAX_ACTIVE_JOBS_PER_ADDRESS", default=16)
# Job callbacks (tryon/callbacks.py): signed with this secret (default: derived from the secret
# key); addresses on loopback or private networks are refused unless allowed (tests, intranets).
CALLBACK_SECRET = env.str("CALLBACK_SECRET", default="")
CALLBACK_ALLOW_PRIVATE = env.bool("CALLBACK_ALLOW_PRIVATE", default=False)
# A merchant may have this many model shots queued or running at once (a batch is up to 24).
MAX_ACTIVE_MODEL_SHOTS = env.int("MAX_ACTIVE_MODEL_SHOTS", default=48)

# Content-Security-Policy (django-csp), the same in DEBUG and production: scripts, styles and
# requests only from this site, no inline script or style attribute and no eval (pages keep
# their data in data-* attributes or json_script), never framed. Pictures may also be data: and
# blob: URLs (Swagger UI's icons, the photo's preview before upload) and, with object storage,
# come from its buckets: tryon/csp.py adds their origins to img-src, as the storages say.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # HTTPS only. The site runs behind a TLS-terminating proxy (docs/deploy.md) that sets
    # X-Forwarded-Proto and strips a client's own; without one, set DJANGO_BEHIND_PROXY=false.
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probed over plain HTTP from inside
    if env.bool("DJANGO_BEHIND_PROXY", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        # Anonymous clients' rate limits are keyed on their address: the last one in
        # X-Forwarded-For, the one our proxy added. Anything before it is the client's own
        # say, which would let it pick a fresh budget per request.
        REST_FRAMEWORK["NUM_PROXIES"] = 1
    # A year of HSTS, subdomains and preload included; lower DJANGO_HSTS_SECONDS while trying.
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes says something at INFO on every sign-in and sign-out; its WARNINGs are the failed
    # sign-ins and lockouts (username and address masked).
    "loggers": {"axes": {"level": "WARNING"}},
}
