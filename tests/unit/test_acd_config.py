"""ACD configuration: skills, penalties, escalation, overflow, [acd], and the router from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from acd.config import router_from_config
from acd.router import DEFAULT_REASON_CODES, DEFAULT_TIERS, AcdSettings, Destination, Offer
from ccserver.config import ConfigError, load_config, shipped_config_dir
from ccserver.config.schema import DEFAULT_REASON_CODES as SCHEMA_REASONS
from ccserver.config.schema import DEFAULT_TIERS as SCHEMA_TIERS
from ccserver.config.schema import AcdConfig


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCSERVER_CONFIG", raising=False)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), target)
    return target


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write("\n" + text)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def problems(path: Path) -> list[str]:
    """Every problem, as ``key: reason`` (without the file)."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [f"{error.key}: {error.reason}" for error in caught.value.errors]


# -- the shipped demo ------------------------------------------------------------------


def test_demo_agents_have_skills_and_queues_route_on_them() -> None:
    config = load_config()
    assert config.extensions["1006"].skills == {"cards": 9, "english": 9}
    cards = config.queues["cards"]
    assert cards.strategy == "skill-weighted"
    assert cards.required_skills == {"cards": 5}
    assert cards.penalties == {"1010": 1}
    assert [step.after for step in cards.escalation] == [45, 90]
    assert cards.overflow_target == ("queue", "general")
    assert config.queues["general"].overflow_target == ("callback", "")
    assert config.acd.tiers["vip"] == 30


def test_router_built_from_the_demo() -> None:
    r = router_from_config(load_config())
    spec = r.queues["cards"]
    assert spec.overflow == Destination("queue", "general")
    assert spec.escalation[1].add_queues == ("general",)
    assert r.agents["1010"].queues == {"cards": 1}
    assert r.settings.reason_codes["lunch"] == "Lunch"
    for ext in ("1006", "1007", "1010"):
        r.login(ext, 0)
    # Emma (cards 9) first; Zhang Yu (cards 4, penalty 1) only after escalation.
    assert r.enqueue("c1", "cards", 1) == [Offer("c1", "1006", "cards")]
    assert r.enqueue("c2", "cards", 2) == [Offer("c2", "1007", "cards")]
    assert r.enqueue("c3", "cards", 3) == []
    assert r.handle_timer(48) == [Offer("c3", "1010", "cards")]


def test_schema_defaults_are_the_router_defaults() -> None:
    acd, settings = AcdConfig(), AcdSettings()
    assert dict(SCHEMA_TIERS) == dict(DEFAULT_TIERS) == dict(settings.tiers) == acd.tiers
    assert dict(SCHEMA_REASONS) == dict(DEFAULT_REASON_CODES) == acd.reason_codes
    assert acd.aging_rate == settings.aging_rate
    assert acd.default_tier == settings.default_tier
    assert acd.stats_window == settings.stats_window


# -- mistakes ------------------------------------------------------------------------------


def test_skills_are_for_agents_with_levels_1_to_10(cfg: Path) -> None:
    append(
        cfg / "extensions.toml",
        '[extensions."2000"]\nname = "Lobby"\npassword = "lobbypw"\nskills = { english = 5 }\n'
        '[extensions."2001"]\nname = "Ann"\npassword = "annpw"\nagent = true\n'
        'skills = { cards = 11, "2bad" = 3 }\n',
    )
    assert problems(cfg) == [
        "extensions.2001.skills.cards: must be less than or equal to 10; got the integer 11",
        "extensions.2001.skills.2bad: invalid name '2bad': use a letter then letters, "
        "digits, '-' or '_' (at most 64 characters)",
        "extensions.2000.skills: only agents have skills: set agent = true",
    ]


def test_queue_routing_mistakes(cfg: Path) -> None:
    append(
        cfg / "queues.toml",
        "[queues.a]\n"
        'members = ["1001"]\n'
        'penalties = { "1002" = 1 }\n'
        'overflow = "queue:nowhere"\n'
        "max_wait = 60\n"
        "[queues.b]\n"
        'overflow = "flow:nowhere"\n'
        "join_empty = false\n"
        "[queues.c]\n"
        'overflow = "elsewhere:x"\n'
        "max_wait = 60\n"
        "[queues.d]\n"
        "announce_every = 30\n"
        "[queues.e]\n"
        "[[queues.e.escalation]]\n"
        "after = 30\n",
    )
    assert problems(cfg) == [
        "queues.c.overflow: 'elsewhere:x' is not a destination: use a queue or flow name, "
        "'queue:NAME', 'flow:NAME', 'voicemail', 'voicemail:BOX' or 'callback'",
        "queues.d: announce_every needs announce_position or announce_wait",
        "queues.e.escalation.0: does nothing: set lower_by, drop or add_queues",
        "queues.a.penalties.1002: 1002 is not a member of this queue (add it to members)",
        "queues.a.overflow: unknown queue 'nowhere' (defined queues: a, b, c, cards, d, e, "
        "general)",
        "queues.b.overflow: unknown flow 'nowhere' (defined flows: bank)",
    ]


def test_escalation_steps_in_order_to_known_queues(cfg: Path) -> None:
    append(
        cfg / "queues.toml",
        "[queues.x]\n"
        "max_wait = 60\n"
        'overflow = "voicemail:sales"\n'
        "[[queues.x.escalation]]\n"
        "after = 30\n"
        'add_queues = ["x", "nope"]\n'
        "[[queues.x.escalation]]\n"
        "after = 20\n"
        "lower_by = 1\n",
    )
    assert problems(cfg) == [
        "queues.x.escalation.0.add_queues.0: a queue is always its own",
        "queues.x.escalation.0.add_queues.1: unknown queue 'nope' (defined queues: cards, "
        "general, x)",
        "queues.x.escalation.1.after: must be later than the step before (30 s): steps run "
        "in order",
    ]


def test_warnings_for_queues_nobody_can_serve(cfg: Path) -> None:
    append(
        cfg / "queues.toml",
        "[queues.x]\n"
        'members = ["1001"]\n'
        "required_skills = { korean = 5 }\n"
        "max_wait = 60\n"
        'overflow = "callback"\n'
        "[[queues.x.escalation]]\n"
        "after = 90\n"
        'drop = ["klingon"]\n',
    )
    config = load_config(cfg)
    assert [w.split("queues.toml: ")[1] for w in config.warnings] == [
        "queues.x.escalation.0.after: never reached: calls overflow after max_wait (60 s)",
        "queues.x.escalation.0.drop.0: no agent has skill 'klingon' and the queue does not "
        "require it",
        "queues.x.required_skills: no member has korean >= 5: calls wait for escalation or "
        "overflow",
    ]


def test_overflow_without_max_wait_needs_an_empty_rule(cfg: Path) -> None:
    append(cfg / "queues.toml", '[queues.x]\noverflow = "flow:bank"\nleave_empty = true\n')
    config = load_config(cfg)
    assert config.queues["x"].overflow_target == ("flow", "bank")
    replace(cfg / "queues.toml", "leave_empty = true", "leave_empty = false")
    assert problems(cfg) == ["queues.x: set both 'max_wait' and 'overflow', or neither"]


def test_acd_section_mistakes(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", 'default_tier = "standard"', 'default_tier = "bronze"')
    replace(cfg / "ccserver.toml", "aging_rate = 0.1", "aging_rate = -1")
    assert problems(cfg) == [
        "acd.aging_rate: must be greater than or equal to 0; got the integer -1",
        "acd.default_tier: 'bronze' is not in tiers (gold, silver, standard, vip)",
    ]


def test_acd_section_is_optional(cfg: Path) -> None:
    text = (cfg / "ccserver.toml").read_text()
    (cfg / "ccserver.toml").write_text(text[: text.index("[acd]")])
    assert load_config(cfg).acd == AcdConfig()
