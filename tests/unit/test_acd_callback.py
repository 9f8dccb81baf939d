"""Queue callback without sockets: the router's virtual calls and the configuration keys.

The call model's side (confirmation, dialling the customer, bridging) is
proven with real peers in tests/integration/test_acd_callback.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from acd.config import router_from_config
from acd.router import AcdSettings, Destination, EscalationStep, Offer, QueueSpec, Router
from ccserver.calls.callback import spoken_number
from ccserver.config import ConfigError, load_config, shipped_config_dir


def one_queue(**spec: object) -> Router:
    queue = QueueSpec("q", ("a1", "a2"), **spec)  # type: ignore[arg-type]
    return Router({"q": queue}, settings=AcdSettings(aging_rate=0.1))


def line(r: Router) -> list[str]:
    return [w.call_id for w in r.waiting("q")]


# -- the router -------------------------------------------------------------------------


def test_a_callback_that_rings_out_goes_back_to_its_place_and_keeps_its_number() -> None:
    r = one_queue()
    r.enqueue("c1", "q", 0)
    r.enqueue("c2", "q", 1)
    assert r.request_callback("c1", 2, "0600000001")
    assert r.login("a1", 10) == [Offer("c1", "a1", "q", callback="0600000001")]
    # a1 does not answer: the virtual call is at the head again, for a2.
    assert r.no_answer("c1", 25) == []
    assert line(r) == ["c1", "c2"]
    assert r.login("a2", 30) == [Offer("c1", "a2", "q", callback="0600000001")]


def test_a_callback_neither_overflows_nor_hears_announcements_but_escalates() -> None:
    r = Router(
        {
            "q": QueueSpec(
                "q",
                ("a1",),
                max_wait=60,
                overflow=Destination("voicemail"),
                announce_position=True,
                announce_every=10,
                required_skills={"cards": 5},
                escalation=(EscalationStep(30, drop=("cards",)),),
            )
        },
        skills={"a1": {}},
    )
    r.enqueue("c1", "q", 0)
    r.take_decisions()
    assert r.request_callback("c1", 1, "0600000001")
    assert r.handle_timer(100) == []
    assert r.take_decisions() == []  # no announcement, no overflow: nobody is on the line
    assert r.position("c1") == 1
    # The escalation dropped the skill a1 lacks: a1 may take it now.
    assert r.login("a1", 101) == [Offer("c1", "a1", "q", callback="0600000001")]


def test_a_callback_keeps_its_priority_against_later_callers() -> None:
    r = one_queue()
    r.enqueue("std", "q", 0)
    r.request_callback("std", 1, "0600000001")
    r.enqueue("later", "q", 5)
    r.enqueue("vip", "q", 6, tier="vip")  # a VIP still goes first, as for any waiting call
    assert line(r) == ["vip", "std", "later"]
    assert r.queue_stats("q", 6).callbacks == 1


# -- what the caller hears ----------------------------------------------------------------


def test_numbers_are_spoken_digit_by_digit() -> None:
    assert spoken_number("0612") == "0 6 1 2"
    assert spoken_number("+3361") == "plus 3 3 6 1"


# -- configuration ------------------------------------------------------------------------


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CCSERVER_CONFIG", raising=False)
    target = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), target)
    return target


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_demo_offers_callbacks_through_its_carrier(cfg: Path) -> None:
    config = load_config(cfg)
    assert config.queues["general"].callback_key == "*"
    assert config.queues["general"].overflow_target == ("callback", "")
    assert config.trunks["loopback-trunk"].outbound == "127.0.0.2:5060"
    assert config.warnings == ()
    spec = router_from_config(config).queues["general"]
    assert spec.overflow == Destination("callback", "")


def test_bad_callback_and_voicemail_keys_are_refused(cfg: Path) -> None:
    replace(cfg / "queues.toml", 'callback_key = "*"', 'callback_key = "**"')
    replace(cfg / "queues.toml", "[queues.cards]\n", "[queues.cards]\nvoicemail_seconds = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    found = {error.key: error.reason for error in caught.value.errors}
    assert set(found) == {"queues.general.callback_key", "queues.cards.voicemail_seconds"}, found
    assert "greater than or equal to 1" in found["queues.cards.voicemail_seconds"]


def test_callbacks_without_an_outbound_route_are_a_warning(cfg: Path) -> None:
    replace(cfg / "trunks.toml", 'outbound = "127.0.0.2:5060"', "")
    warnings = [w.split("queues.toml: ")[1] for w in load_config(cfg).warnings]
    reason = (
        "a callback calls the customer through a trunk's outbound route, and no trunk has "
        'one (set outbound = "host:port" in trunks.toml)'
    )
    assert warnings == [
        f"queues.general.callback_key: {reason}",
        f"queues.general.overflow: {reason}",
    ]
