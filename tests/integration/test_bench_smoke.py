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


def test_relay_capacity_smoke() -> None:
    rows = run_bench(
        "relay_capacity.py", "--steps", "2,4", "--seconds", "0.5", "--relay-core", "-1",
        "--load-core", "-1",
    )  # fmt: skip
    *steps, summary = rows
    assert summary["summary"] is True
    for relay in ("ccserver", "rtpengine"):
        mine = [r for r in steps if r["relay"] == relay and r["calls"] != "direct"]
        assert [r["calls"] for r in mine] == [2, 4][: len(mine)] and mine, steps
        # Every packet sent through the relay came back out of it, timestamped.
        first = mine[0]
        assert first["sent"] == 2 * 2 * 25 and first["received"] > 0
        latency = first["latency_us"]
        assert isinstance(latency, dict) and latency["p50"] is not None
    capacity = summary["clean_capacity_calls"]
    assert isinstance(capacity, dict) and set(capacity) == {"ccserver", "rtpengine"}


def test_relay_path_smoke() -> None:
    rows = run_bench("relay_path.py", "--seconds", "0.2")
    assert [r["legs"] for r in rows] == [
        "PCMU->PCMU",
        "PCMA->PCMU",
        "PCMU->PCMU in-band DTMF, loud",
        "PCMU->PCMU in-band DTMF, noise",
        "PCMU->PCMU in-band DTMF, per packet",
    ]
    assert all(isinstance(r["ns_per_packet"], float) and r["ns_per_packet"] > 0 for r in rows)


def test_call_setup_rate_smoke() -> None:
    rows = run_bench(
        "call_setup_rate.py", "--queue-rates", "5", "--ivr-rates", "3", "--seconds", "1",
        "--hold", "0.2", "--greet", "1.5", "--core", "-1",
    )  # fmt: skip
    *steps, summary = rows
    assert [(r["did"], r["calls"]) for r in steps] == [("5001", 5), ("5000", 3)]
    for row in steps:
        # SIPp saw every call succeed and an agent answered each one.
        assert row["sipp_failed"] == 0 and row["answered_by_agent"] == row["calls"], row
    assert summary["highest_clean_rate"] == {"5001": 5.0, "5000": 3.0}


def test_memory_per_call_smoke() -> None:
    (row,) = run_bench(
        "memory_soak.py", "--calls", "2", "--traffic", "0.3", "--minutes", "0",
        "--core", "-1", "--load-core", "-1",
    )  # fmt: skip
    assert row["part"] == "per_call" and row["calls"] == 2
    assert row["rss_with_calls_kb"] > 0 and row["traffic_loss_pct"] == 0.0
    # Two bridged calls hold at least their four RTP sockets.
    assert row["fds_with_calls"] >= row["fds_idle"] + 4


def test_memory_soak_smoke() -> None:
    rows = run_bench(
        "memory_soak.py", "--calls", "0", "--minutes", "0.05", "--rate", "4", "--hold", "0.2",
        "--every", "1", "--core", "-1",
    )  # fmt: skip
    samples = [r for r in rows if "sample" in r]
    (soak,) = (r for r in rows if "part" in r)
    assert soak["calls"] == 12 and soak["sipp_failed"] == 0 and soak["answered_by_agent"] == 12
    assert samples and all(s["sample"]["tasks"] > 0 for s in samples)


def test_soak_with_memory_dump_smoke() -> None:
    rows = run_bench(
        "memory_soak.py", "--calls", "0", "--minutes", "0.2", "--rate", "2", "--every", "1",
        "--tracemalloc", "1", "--core", "-1", "--load-core", "-1",
    )  # fmt: skip
    (row,) = [r for r in rows if "part" in r]
    assert row["part"] == "soak" and row["sipp_failed"] == 0, row
    dump = row["memory_dump"]
    # The baseline, then the growth: allocations, object types, descriptors.
    assert dump[0].startswith("1: traced") and dump[-1].startswith("2 done"), dump
    assert any("top allocations grown" in line for line in dump), dump
    assert any(line.startswith("2: fds grown") for line in dump), dump
