"""A small per-process cache of loaded models, keyed by file path, size and modification time.

Workers load each model once and keep it; replacing a file on disk (new size or mtime) loads the
new one on the next use instead of serving the stale one.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# One run's set: the checkpoint's components, two ControlNets, a VAE, an IP-Adapter and its
# encoder. Fewer would evict the checkpoint on every run that uses them all.
MAX_MODELS = 6

_models: OrderedDict[tuple, Any] = OrderedDict()
_lock = threading.Lock()
_loads = 0


def _key(path: Path, kind: str) -> tuple:
    stat = path.stat()
    return (kind, str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def cached_model(path: Path, loader: Callable[[Path], Any], *, kind: str = "") -> Any:
    """``loader(path)``, loaded once per process while the file stays the same."""
    key = _key(Path(path), kind)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        model = loader(Path(path))
        global _loads
        _loads += 1
        _models[key] = model
        while len(_models) > MAX_MODELS:
            _models.popitem(last=False)
        return model


def clear() -> None:
    """Forget every cached model (tests, or freeing memory after an out-of-memory error)."""
    with _lock:
        _models.clear()


def load_count() -> int:
    """How many models this process has loaded from disk so far (cache hits do not count)."""
    return _loads
