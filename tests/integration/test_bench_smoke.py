"""The end-to-end benchmarks still run: each with tiny numbers, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, timeout: float = 60.0) -> list[dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_answer_to_prompt_smoke() -> None:
    rows = run_bench("answer_to_prompt.py", "--levels", "1,2", "--calls", "3", "--hold", "0")
    assert [r["concurrency"] for r in rows] == [1, 2]
    for row in rows:
        assert row["bench"] == "answer_to_prompt"
        assert row["outcomes"] == {"ok": 3}
        timing = row["answer_to_first_rtp_ms"]
        assert isinstance(timing, dict) and timing["p99"] is not None


def test_offer_to_pop_smoke() -> None:
    (row,) = run_bench(
        "offer_to_pop.py", "--rate", "5", "--seconds", "1", "--agents", "2", "--hold", "0.1"
    )
    assert row["bench"] == "offer_to_pop"
    assert row["calls"] == 5
    assert row["popped"] == row["offered"] == 5
    timing = row["offer_to_pop_at_ms"]
    assert isinstance(timing, dict) and timing["p99"] is not None
