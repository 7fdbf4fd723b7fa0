"""Real Celery worker processes, for the tests that run jobs through a real broker."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_worker(
    *, env: dict, hostname: str, log: Path, queues: str | None = "generation"
) -> subprocess.Popen:
    """``celery -A tryon worker`` as a GPU worker runs (one job at a time, one reserved), its
    output in ``log``. ``queues`` None: the default queue only."""
    command = [sys.executable, "-m", "celery", "-A", "tryon", "worker", "--loglevel=WARNING"]
    command += ["--pool=solo", "--concurrency=1", "--prefetch-multiplier=1"]
    command += [f"--hostname={hostname}@%h", *([f"--queues={queues}"] if queues else [])]
    with open(log, "a") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    process.log = log
    return process


def run_worker_to_exit(env: dict) -> subprocess.CompletedProcess:
    """``celery -A tryon worker`` run with ``env`` until it exits: for the start-up checks that
    must stop a worker before it does anything."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tryon", "worker", "--pool=solo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop(processes) -> None:
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def log_tail(process, chars: int = 3000) -> str:
    log = getattr(process, "log", None)
    return log.read_text()[-chars:] if log and log.exists() else ""


def wait_for(condition, seconds: float, processes=()) -> None:
    """Poll ``condition`` until it holds; fail when ``seconds`` pass or a process dies."""
    deadline = time.monotonic() + seconds
    while not condition():
        for process in processes:
            assert process.poll() is None, f"a worker died:\n{log_tail(process)}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
