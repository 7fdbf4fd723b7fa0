"""Gunicorn's settings for the web process. ``gunicorn``, run from the repository root, reads
this file by itself (elsewhere: ``gunicorn -c /path/to/gunicorn.conf.py``); it names the app,
``tryon.wsgi``. docs/deploy.md has the whole layout.

Every value can be changed from the environment:

- ``WEB_BIND`` (``127.0.0.1:8000``): where to listen, ``host:port`` or ``unix:/path``; the
  TLS-terminating proxy connects here. Several addresses: comma-separated.
- ``WEB_CONCURRENCY`` (the CPUs this process may use): worker processes. Each answers
  requests on ``WEB_THREADS`` threads; the processes are what use several cores.
- ``WEB_THREADS`` (8): threads per worker process. Each thread keeps its own database
  connection, and each waiting WebUI request (below) holds one thread.
- ``WEB_TIMEOUT`` (30 s): a worker silent for this long is killed and replaced.
- ``WEB_GRACEFUL_TIMEOUT`` (30 s): on a restart, what requests in progress get to finish.
- ``WEB_KEEPALIVE`` (75 s): how long an idle connection from the proxy is kept open; longer
  than the proxy's own (nginx upstream ``keepalive_timeout`` 60 s), so the proxy always closes
  first and never sends on a connection gunicorn has just closed.
- ``WEB_MAX_REQUESTS`` (0 = never): replace a worker after this many requests (with up to 10 %
  jitter), a guard against slow memory growth.
- ``FORWARDED_ALLOW_IPS`` (``127.0.0.1,::1``): the proxy's addresses (or networks); only these
  may tell gunicorn that a request came over HTTPS.
- ``WEB_ACCESS_LOG`` (``-``, standard output): the access log's file, or empty for none.
- ``LOG_LEVEL`` (``info``): gunicorn's own log, shared with Django's.
- ``WEB_CONTROL_SOCKET`` (unset: none): a path for gunicorn's control socket (``gunicornc``).
  Off by default: its default path is one per user account, so two servers run by one account
  (a deploy and a test) would take it from each other.

Why threads (``gthread``) rather than gunicorn's default ``sync`` worker:

- The WebUI endpoints (``/sdapi/v1/txt2img``, ``img2img``) answer only when their job is done,
  as the WebUI's do: the request waits up to JOB_DEADLINE (15 minutes) for a worker to paint
  it, polling the database. A ``sync`` worker would spend a whole process on each such wait,
  and its ``timeout`` would kill the process after 30 s. With threads a waiting request holds
  one thread, and ``timeout`` only watches the worker's main loop, which keeps beating while
  threads wait, so a long wait is not cut off.
- Polling a job's status is a few milliseconds of work; threads let the proxy keep connections
  open and reuse them, where ``sync`` answers every request with ``Connection: close``.
- One process per core uses the cores; the GIL serialises Python code inside a process, so
  more threads do not add CPU, they only let waiting requests (the database, the cache, a
  WebUI client's job) overlap. ``bench/api_load.py`` measures what two such processes serve.

Requests that run longer than the proxy's read timeout are cut by the proxy, not here:
docs/deploy.md gives ``/sdapi/`` a timeout above JOB_DEADLINE.
"""

import gc
import importlib
import os

wsgi_app = "tryon.wsgi:application"
bind = [address.strip() for address in os.environ.get("WEB_BIND", "127.0.0.1:8000").split(",")]
# The CPUs this process may run on (a container's cpuset), not all of the host's; a CPU quota
# (``--cpus``) does not show here: set WEB_CONCURRENCY to it.
workers = int(os.environ.get("WEB_CONCURRENCY") or len(os.sched_getaffinity(0)))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "75"))
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10

# On TCP each worker listens on a socket of its own (SO_REUSEPORT), and the kernel spreads new
# connections over them by a hash, evenly on average. On one shared socket, whichever worker
# wakes first accepts, and a proxy's kept-alive connections stay where they landed: in
# bench/api_load.py one of two workers did nine tenths of the work for 50 polling clients and
# saturated while the other idled (p99 1.8-2.9 s at 150 requests/s, against 0.1-0.6 s with a
# socket per worker). A Unix socket cannot be shared so (each worker would fail to bind it):
# there the workers share one.
reuse_port = not any(address.startswith(("unix:", "fd://")) for address in bind)

# Gunicorn reads FORWARDED_ALLOW_IPS itself too; said here so the file shows the whole story.
# Django trusts X-Forwarded-Proto on its own (SECURE_PROXY_SSL_HEADER): the proxy must set it
# and drop any a client sends (docs/deploy.md).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
# The client's address as the proxy saw it, the request, status, bytes and milliseconds taken.
access_log_format = '%({x-forwarded-for}i)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# The heartbeat file of each worker: in memory where there is /dev/shm, since a disk-backed
# temporary directory (a container's overlay, for one) can stall it and get workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

if os.environ.get("WEB_CONTROL_SOCKET"):
    control_socket = os.environ["WEB_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# Django is imported in each worker after the fork, never in the master: a database connection
# or a thread made at import time must not be shared by forked processes.
preload_app = False


def post_worker_init(worker):
    """Hide the objects a worker starts with from the garbage collector's full collections.

    A started worker holds some 150,000 objects (Django, DRF, the URL patterns and the views
    they import) that live as long as it does; every full collection walked them all, 120-210
    ms with every thread of the process stopped, which was the slowest 1 % of status polls in
    bench/api_load.py. Frozen, a full collection walks only what requests left behind.
    """
    from django.conf import settings

    importlib.import_module(settings.ROOT_URLCONF)  # what the first request would import
    gc.collect()  # start-up garbage goes now, not frozen with the rest
    gc.freeze()
