"""A snippet of Python in a process of its own, for what only a fresh process shows: settings
read from the environment at start-up, what a web process imports."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *, unset=("DJANGO_",), **env) -> subprocess.CompletedProcess:
    """``python -c code`` in the checkout, with this environment less the variables starting
    with ``unset`` (so the suite's own do not leak in), plus ``env``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(tuple(unset))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def own_files_env(folder: Path) -> dict[str, str]:
    """Settings that keep a started site's state in ``folder``: its SQLite database, Celery
    broker and results, cache and media, as ``make run``'s embedded defaults are, elsewhere."""
    return {
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite3'}",
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{folder / 'results.sqlite3'}",
        "CACHE_URL": f"filecache://{folder / 'cache'}",
        "MEDIA_ROOT": str(folder / "media"),
        "PRIVATE_MEDIA_ROOT": str(folder / "private"),
    }
