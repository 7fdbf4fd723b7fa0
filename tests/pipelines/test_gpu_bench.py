"""``bench/gpu_run.py`` works where no GPU is: its ``--smoke`` run (CPU, tiny models, small
sizes) goes through every row the GPU run reports, so a lent GPU's minutes are not lost to a
broken script."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_run.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_a_gpu_the_run_says_it_skipped():
    assert _bench() == {"skipped": "no CUDA GPU"}


def test_smoke_run_reports_the_plain_row_and_a_reference_hires_row_per_family():
    figures = _bench("--smoke")
    assert figures["smoke"] is True
    assert figures["size"] == "64x96"
    assert figures["seconds_per_image"] > 0 and figures["ratio"] > 0
    rows = {row["family"]: row for row in figures["reference_hires"]}
    assert set(rows) == {"sd15", "sdxl"}
    for family, row in rows.items():
        assert row["loaded_as"] == family
        width, height = map(int, row["size"].split("x"))
        # The hires pass at 2x really ran: the last pass painted at twice the native size.
        assert row["result"] == row["painted"] == f"{2 * width}x{2 * height}"
        assert row["reference"] == "reference_only 0.8"
        assert row["seconds_per_image"] > 0
        assert row["peak_gib"] is None  # no GPU memory to report on the CPU
