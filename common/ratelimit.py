"""Request budgets counted atomically in the shared cache (the API's and the pages' throttles).

DRF's own throttles keep a list of timestamps per client: read it, append, write it back. Two
requests at once both read the same list and both go through: 16 threads got 70 requests past a
limit of 60 a minute. Here each request takes a number from a counter that only goes up by one
at a time (Redis ``INCR``, or a file lock around the read and write for caches that have no
atomic increment), so exactly ``limit`` of them get through, however many arrive together.

The window slides: the count of the current fixed window plus the previous one's, weighted by
how much of it still lies within the last ``window`` seconds. That is the usual approximation
of a sliding log, and it does not let twice the budget through across a window's edge, as a
fixed window would.
"""

import fcntl
import time
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.core.cache.backends.redis import RedisCache

# Caches whose increment is one atomic step (LocMem's only within a process: tests).
ATOMIC_INCREMENT = (RedisCache, BaseMemcachedCache, LocMemCache)


def hit(key: str, limit: int, window: float, *, now: float | None = None) -> float | None:
    """Count one request against ``key``'s budget of ``limit`` per ``window`` seconds.

    Returns None when it is within the budget, else roughly how many seconds until one more
    would be; a refused request is not counted (as with DRF's throttles), so a client that
    keeps knocking is let in as soon as its rate falls back under the limit.
    """
    now = time.time() if now is None else now
    index, into = divmod(now, window)
    current, previous = f"{key}:{int(index)}", f"{key}:{int(index) - 1}"
    before = caches["default"].get(previous) or 0
    carried = before * (1 - into / window)
    count = _add(current, 1, timeout=2 * window)
    if carried + count <= limit:
        return None
    kept = _add(current, -1, timeout=2 * window)
    if count > limit:
        # The current window alone is full. Once it is the previous one its share still counts
        # and fades as it slides out: until there is room for one more.
        return (window - into) + window * max(0.0, 1 - (limit - 1) / kept)
    # The previous window's share fades as it slides out: until it is small enough.
    return max(1.0, window * (1 - (limit - count) / before) - into)


def _add(key: str, delta: int, *, timeout: float) -> int:
    """Add ``delta`` to the counter ``key`` (made at 0, expiring after ``timeout``) atomically."""
    cache = caches["default"]
    if isinstance(cache, ATOMIC_INCREMENT):
        # Most requests find their window's counter: one round trip. The first of a window
        # makes it (add is atomic too: of two first requests, one makes it, both count).
        try:
            return cache.incr(key, delta)
        except ValueError:
            cache.add(key, 0, timeout)
            return cache.incr(key, delta)
    with _file_lock():
        # A plain read and write, safe under the lock; set() keeps the timeout ours (the base
        # class's incr() would reset it to the cache's default).
        value = (cache.get(key) or 0) + delta
        cache.set(key, value, timeout)
        return value


@contextmanager
def _file_lock():
    """One process and thread at a time, across every process on this machine (the file
    cache is one machine's; at scale the cache is Redis, which needs no lock)."""
    with open(settings.VAR_DIR / "ratelimit.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
