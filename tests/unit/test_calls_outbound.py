"""The pure parts of click-to-call: how a far end's refusal is named."""

from __future__ import annotations

import pytest

from ccserver.calls.outbound import failure_reason


@pytest.mark.parametrize(
    ("status", "reason"),
    [(486, "busy"), (600, "busy"), (603, "busy"), (408, "no-answer"), (480, "no-answer"),
     (404, "rejected"), (488, "rejected"), (503, "rejected")],
)  # fmt: skip
def test_final_failures_are_named(status: int, reason: str) -> None:
    assert failure_reason(status) == reason
