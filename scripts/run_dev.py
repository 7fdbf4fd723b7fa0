"""Run the web server and two Celery workers together, for `make run`.

One worker takes the ``analysis`` queue (garment analysis), the other the ``generation`` queue
(try-on jobs), so a long generation never holds up a garment's analysis. Ctrl-C (or SIGTERM)
stops everything. A worker that dies is started again after a short pause, and on start it
queues again the job it was running, so a crashed worker never leaves jobs stuck on a
developer's machine. If the web server dies, the whole thing stops: there is nothing to look at
without it.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WORKER_RESTART_DELAY = 2.0
POLL_SECONDS = 0.5


def _worker(python: str, queue: str) -> list[str]:
    return [
        python,
        "-m",
        "celery",
        "-A",
        "tryon",
        "worker",
        f"--queues={queue}",
        f"--hostname={queue}@%h",
        "--pool=solo",
        "--concurrency=1",
        "--prefetch-multiplier=1",
        "--loglevel=INFO",
    ]


def _commands(python: str, port: int) -> dict[str, list[str]]:
    return {
        "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}"],
        "analysis": _worker(python, "analysis"),
        "generation": _worker(python, "generation"),
    }


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def supervise(python: str, port: int) -> int:
    commands = _commands(python, port)
    processes = {name: subprocess.Popen(command) for name, command in commands.items()}
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"\nThe site is starting on http://127.0.0.1:{port}/  (Ctrl-C stops it)\n", flush=True)
    exit_code = 0
    while True:
        time.sleep(POLL_SECONDS)
        if stopping:
            break
        if processes["web"].poll() is not None:
            print("The web server stopped; stopping the workers too.", file=sys.stderr)
            exit_code = processes["web"].returncode or 1
            break
        for name in ("analysis", "generation"):
            if processes[name].poll() is not None:
                code = processes[name].returncode
                print(f"The {name} worker exited ({code}); restarting it.", file=sys.stderr)
                time.sleep(WORKER_RESTART_DELAY)
                processes[name] = subprocess.Popen(commands[name])
    _stop(processes)
    return exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    return supervise(args.python, args.port)


if __name__ == "__main__":
    sys.exit(main())
