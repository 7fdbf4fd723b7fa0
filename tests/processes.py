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
