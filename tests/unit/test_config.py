"""The config loader: the shipped demo, defaults, and one test per kind of mistake.

Broken configs are the shipped demo copied into ``tmp_path`` and edited, so
each test shows the one change that makes it fail and the exact line an
operator would read.
"""

from __future__ import annotations

import ipaddress
import shutil
import wave
from pathlib import Path

import pytest
from pydantic import ValidationError

from ccserver.config import (
    Config,
    ConfigError,
    ConfigErrors,
    Did,
    MenuNode,
    PlayNode,
    QueueNode,
    ServerConfig,
    Trunk,
    apply_overrides,
    default_config_dir,
    load_config,
    shipped_config_dir,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCSERVER_CONFIG", raising=False)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A private copy of the shipped demo config."""
    target = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), target)
    return target


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write("\n" + text)


def problems(path: Path) -> list[str]:
    """Every problem reported for the config at ``path``, as printed lines."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(error) for error in caught.value.errors]


def only_problem(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    errors = caught.value.errors
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def write_wav(path: Path, frames: int = 800) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * frames)


# ------------------------------------------------------------- the shipped demo


def test_shipped_config_lives_in_the_repo() -> None:
    assert shipped_config_dir() == REPO / "config"
    assert default_config_dir() == REPO / "config"


def test_shipped_config_loads_without_warnings() -> None:
    config = load_config()
    assert config.warnings == ()
    assert config.source_dir == REPO / "config"


def test_shipped_extensions_are_ten_agents_and_a_supervisor_phone() -> None:
    config = load_config()
    agents = [str(n) for n in range(1001, 1011)]
    assert list(config.extensions) == [*agents, "1900"]
    assert config.extensions["1001"].name == "Alice"
    assert config.extensions["1001"].password == "agent1001pw"
    assert list(config.agents()) == agents
    assert all(config.extensions[n].agent for n in agents)
    assert not config.extensions["1900"].agent  # rung for monitoring, never offered calls


def test_shipped_routing() -> None:
    config = load_config()
    assert config.dids["5000"].target == ("flow", "bank")
    assert config.dids["5001"].target == ("queue", "general")
    assert config.queues["general"].members == ("1001", "1002", "1003", "1004", "1005")
    assert config.queues["cards"].members == ("1006", "1007", "1008", "1009", "1010")
    assert config.queues["general"].strategy == "longest-idle"
    assert config.queues["general"].ring_timeout == 15.0


def test_shipped_trunk_trusts_only_the_loopback_alias() -> None:
    config = load_config()
    assert config.trunk_for("127.0.0.2") == "loopback-trunk"
    assert config.trunk_for("::ffff:127.0.0.2") == "loopback-trunk"
    assert config.trunk_for("127.0.0.1") is None  # softphones there must authenticate


def test_shipped_bank_flow() -> None:
    flow = load_config().flows["bank"]
    assert flow.name == "bank"
    assert flow.language == "en"
    assert flow.start == "welcome"
    assert flow.survey == "survey"
    welcome = flow.nodes["welcome"]
    assert isinstance(welcome, PlayNode)
    assert welcome.prompt == ({"*": "Welcome to Demo Bank."},)
    # The language menu comes first; 0 there goes straight to the general queue.
    language = flow.nodes[welcome.next or ""]
    assert isinstance(language, MenuNode)
    assert set(language.choices) == {"1", "2", "3", "0"}
    agent = flow.nodes[language.choices["0"]]
    assert isinstance(agent, QueueNode) and agent.queue == "general"
    menu = flow.nodes["main_menu"]
    assert isinstance(menu, MenuNode)
    assert set(menu.choices) == {"1", "2", "3", "0"}
    cards = flow.nodes[menu.choices["2"]]
    assert isinstance(cards, QueueNode) and cards.queue == "cards"
    assert menu.choices["0"] == language.choices["0"]


def bank_nodes() -> str:
    """How errors list the demo flow's nodes."""
    return "(defined nodes: " + ", ".join(sorted(load_config().flows["bank"].nodes)) + ")"


def test_shipped_server_defaults() -> None:
    config = load_config()
    server = config.server
    assert (server.bind, server.sip_port, server.http_port) == ("127.0.0.1", 5060, 8080)
    assert server.sip_transports == ("udp", "tcp")
    assert server.advertised_address == "127.0.0.1"
    assert (server.rtp_port_min, server.rtp_port_max) == (20000, 29999)
    assert config.media.codecs == ("PCMU", "PCMA")
    assert config.state.backend == "memory"


# -------------------------------------------------------------------- defaults


def test_empty_directory_is_all_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(tmp_path)
    assert config.extensions == {} and config.flows == {} and config.queues == {}
    assert config.server == ServerConfig()
    assert config.data_dir == tmp_path / "data"
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/ccserver.db"
    assert config.tts_cache_dir == tmp_path / "data" / "tts-cache"
    assert config.tts.voice == "en" and config.tts.rate == 160
    assert config.media.ptime == 20 and config.media.moh == "tone"
    assert config.resolve_moh(config.media.moh) is None


def test_database_url_fills_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "ccserver.toml").write_text(
        '[server]\ndata_dir = "/srv/cc"\n[database]\nurl = "sqlite+aiosqlite:///{data_dir}/x.db"\n'
    )
    config = load_config(tmp_path)
    assert config.data_dir == Path("/srv/cc")
    assert config.database_url == "sqlite+aiosqlite:////srv/cc/x.db"


def test_postgres_url_is_kept(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://cc:pw@127.0.0.1/cc"
    (tmp_path / "ccserver.toml").write_text(f'[database]\nurl = "{url}"\n')
    assert load_config(tmp_path).database_url == url


def test_flow_language_defaults_to_tts_voice(cfg: Path) -> None:
    replace(cfg / "flows" / "bank.toml", 'language = "en"\n', "")
    replace(cfg / "ccserver.toml", 'voice = "en"', 'voice = "en-gb"')
    assert load_config(cfg).flows["bank"].language == "en-gb"


def test_env_var_names_the_default_dir(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replace(cfg / "ccserver.toml", 'node_name = "ccserver"', 'node_name = "from-env"')
    monkeypatch.setenv("CCSERVER_CONFIG", str(cfg))
    assert default_config_dir() == cfg
    assert load_config().server.node_name == "from-env"


def test_missing_optional_files_are_fine(cfg: Path) -> None:
    (cfg / "trunks.toml").unlink()
    (cfg / "ccserver.toml").unlink()
    config = load_config(cfg)
    assert config.trunks == {}
    assert config.server == ServerConfig()


def test_integer_members_become_numbers(cfg: Path) -> None:
    replace(cfg / "queues.toml", '"1001", "1002"', "1001, 1002")
    assert load_config(cfg).queues["general"].members[:2] == ("1001", "1002")


def test_moh_wav_relative_to_config_dir(cfg: Path) -> None:
    write_wav(cfg / "hold.wav")
    replace(cfg / "ccserver.toml", 'moh = "tone"', 'moh = "hold.wav"')
    append(cfg / "queues.toml", '[queues.quiet]\nmoh = "tone"\n')
    config = load_config(cfg)
    assert config.resolve_moh(config.media.moh) == cfg / "hold.wav"
    assert config.queue_moh("general") == cfg / "hold.wav"
    assert config.queue_moh("quiet") is None


# ------------------------------------------------------------------ the errors


def test_config_error_formats_file_key_reason() -> None:
    error = ConfigError("config/dids.toml", "dids.5000.queue", "unknown queue 'sales'")
    assert str(error) == "config/dids.toml: dids.5000.queue: unknown queue 'sales'"
    assert error.errors == [error]
    several = ConfigErrors([error, ConfigError("a.toml", "x", "y")])
    assert str(several) == f"{error}\na.toml: x: y"
    assert (several.file, several.key) == (error.file, error.key)
    assert len(several.errors) == 2


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope")
    assert caught.value.key == "<dir>"
    assert caught.value.reason == "config directory not found"


def test_file_instead_of_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        load_config(tmp_path / "file")


def test_file_names_are_shown_as_given(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replace(cfg / "dids.toml", 'flow = "bank"', 'queue = "sales"')
    monkeypatch.chdir(cfg.parent)
    with pytest.raises(ConfigError) as caught:
        load_config("config")
    assert str(caught.value) == (
        "config/dids.toml: dids.5000.queue: unknown queue 'sales' (defined queues: cards, general)"
    )


def test_did_to_undefined_queue(cfg: Path) -> None:
    replace(cfg / "dids.toml", 'flow = "bank"', 'queue = "sales"')
    error = only_problem(cfg)
    assert error.file == str(cfg / "dids.toml")
    assert error.key == "dids.5000.queue"
    assert error.reason == "unknown queue 'sales' (defined queues: cards, general)"


def test_did_to_undefined_flow(cfg: Path) -> None:
    replace(cfg / "dids.toml", 'flow = "bank"', 'flow = "shop"')
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "dids.5000.flow",
        "unknown flow 'shop' (defined flows: bank)",
    )


def test_did_needs_exactly_one_target(cfg: Path) -> None:
    replace(cfg / "dids.toml", 'flow = "bank"', 'flow = "bank"\nqueue = "general"')
    error = only_problem(cfg)
    assert (error.key, error.reason) == ("dids.5000", "set exactly one of 'flow' or 'queue'")


def test_did_that_is_also_an_extension(cfg: Path) -> None:
    append(cfg / "dids.toml", '[dids."1001"]\nqueue = "general"\n')
    error = only_problem(cfg)
    assert error.key == "dids.1001"
    assert "also an extension" in error.reason


def test_unknown_key_names_it_and_suggests(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", "sip_port = 5060", "sip_prot = 5060")
    error = only_problem(cfg)
    assert error.file.endswith("ccserver.toml")
    assert (error.key, error.reason) == ("server.sip_prot", "unknown key; did you mean 'sip_port'?")


def test_unknown_key_in_a_node(cfg: Path) -> None:
    replace(cfg / "flows" / "bank.toml", 'queue = "cards"', 'queue = "cards"\nprio = 3')
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "nodes.cards.prio",
        "unknown key; did you mean 'priority'?",
    )


def test_table_in_the_wrong_file(cfg: Path) -> None:
    append(cfg / "dids.toml", '[queues.sales]\nmembers = ["1001"]\n')
    error = only_problem(cfg)
    assert (error.key, error.reason) == ("queues", "unknown key: [queues] belongs in queues.toml")


def test_unknown_config_file(cfg: Path) -> None:
    (cfg / "queue.toml").write_text("")
    error = only_problem(cfg)
    assert (error.key, error.reason) == ("<file>", "unknown config file; did you mean queues.toml?")


def test_wrong_type_is_not_coerced(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", "sip_port = 5060", 'sip_port = "5060"')
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "server.sip_port",
        "expected an integer, got the string '5060'",
    )


def test_bad_choice_of_values(cfg: Path) -> None:
    replace(cfg / "queues.toml", 'strategy = "longest-idle"', 'strategy = "best"')
    error = only_problem(cfg)
    assert error.key == "queues.general.strategy"
    assert error.reason.startswith("must be one of 'ring-all', 'longest-idle'")
    assert error.reason.endswith("got the string 'best'")


def test_out_of_range_value(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", "http_port = 8080", "http_port = 70000")
    error = only_problem(cfg)
    assert error.key == "server.http_port"
    assert error.reason == "must be less than or equal to 65535; got the integer 70000"


def test_syntax_error_names_line_and_column(cfg: Path) -> None:
    replace(cfg / "queues.toml", "ring_timeout = 15\n", "ring_timeout = \n")
    error = only_problem(cfg)
    assert error.file.endswith("queues.toml")
    assert error.key == "<syntax>"
    line = (cfg / "queues.toml").read_text().splitlines().index("ring_timeout = ") + 1
    assert error.reason.startswith(f"line {line}, column ")


def test_syntax_error_does_not_cascade(cfg: Path) -> None:
    """A broken queues.toml must not also make every queue reference 'unknown'."""
    (cfg / "queues.toml").write_text("[queues.general\n")
    (cfg / "flows" / "bank.toml").write_text("[flow\n")
    keys = [(Path(e.split(": ")[0]).name, e.split(": ")[1]) for e in problems(cfg)]
    assert keys == [("queues.toml", "<syntax>"), ("bank.toml", "<syntax>")]


def test_one_broken_queue_does_not_hide_the_others(cfg: Path) -> None:
    replace(cfg / "queues.toml", 'strategy = "longest-idle"', 'strategy = "best"')
    replace(cfg / "queues.toml", '"1010"]', '"1010", "1099"]')
    found = problems(cfg)
    assert any("queues.general.strategy" in line for line in found)
    assert any("queues.cards.members.5: unknown extension '1099'" in line for line in found)


def test_member_must_be_a_known_agent(cfg: Path) -> None:
    append(cfg / "extensions.toml", '[extensions."2000"]\nname = "Lobby"\npassword = "lobbypw"\n')
    replace(cfg / "queues.toml", '"1005"]', '"1005", "1099", "2000", "1001"]')
    found = [line.split("queues.toml: ")[1] for line in problems(cfg)]
    assert found == [
        "queues.general.members.5: unknown extension '1099' (see extensions.toml)",
        "queues.general.members.6: extension 2000 is not an agent "
        "(set agent = true in extensions.toml)",
        "queues.general.members.7: 1001 is listed twice",
    ]


def test_overflow_targets(cfg: Path) -> None:
    append(
        cfg / "queues.toml",
        '[queues.a]\nmax_wait = 60\noverflow = "nowhere"\n'
        '[queues.b]\nmax_wait = 60\noverflow = "b"\n'
        '[queues.c]\noverflow = "general"\n'
        '[queues.d]\nmax_wait = 60\noverflow = "bank"\n'
        '[queues.e]\nmax_wait = 60\noverflow = "cards"\n',
    )
    found = [line.split("queues.toml: ")[1] for line in problems(cfg)]
    assert found == [
        "queues.c: set both 'max_wait' and 'overflow', or neither",
        "queues.a.overflow: unknown queue or flow 'nowhere' "
        "(defined queues: a, b, c, cards, d, e, general; defined flows: bank)",
        "queues.b.overflow: a queue cannot overflow into itself",
    ]


def test_overflow_name_that_is_both_queue_and_flow(cfg: Path) -> None:
    append(cfg / "queues.toml", '[queues.bank]\n[queues.x]\nmax_wait = 30\noverflow = "bank"\n')
    error = only_problem(cfg)
    assert error.key == "queues.x.overflow"
    assert error.reason.startswith("ambiguous")


def test_flow_start_must_exist(cfg: Path) -> None:
    replace(cfg / "flows" / "bank.toml", 'start = "welcome"', 'start = "hello"')
    error = only_problem(cfg)
    assert error.file.endswith("flows/bank.toml")
    assert (error.key, error.reason) == ("flow.start", f"unknown node 'hello' {bank_nodes()}")


def test_flow_start_is_required(cfg: Path) -> None:
    replace(cfg / "flows" / "bank.toml", 'start = "welcome"\n', "")
    error = only_problem(cfg)
    assert (error.key, error.reason) == ("flow.start", "required key is missing")


def test_flow_table_is_required(cfg: Path) -> None:
    flow = cfg / "flows" / "bank.toml"
    text = flow.read_text()
    flow.write_text(text[text.index("[nodes.") :])  # without [flow] and [flow.defaults]
    error = only_problem(cfg)
    assert error.key == "flow"
    assert error.reason.startswith("required table is missing")


def test_flow_node_pointing_nowhere(cfg: Path) -> None:
    flow = cfg / "flows" / "bank.toml"
    replace(flow, '"3" = "opening_hours"', '"3" = "branches"')
    replace(flow, 'no_match = "english"', 'no_match = "oops"')
    replace(flow, 'queue = "cards"', 'queue = "card"')
    found = [line.split("bank.toml: ")[1] for line in problems(cfg)]
    nodes = bank_nodes()
    assert found == [
        f"nodes.language.no_match: unknown node 'oops' {nodes}",
        f"nodes.main_menu.choices.3: unknown node 'branches' {nodes}",
        "nodes.cards.queue: unknown queue 'card' (defined queues: cards, general)",
    ]


def test_menu_keys_must_be_dtmf(cfg: Path) -> None:
    replace(
        cfg / "flows" / "bank.toml", '"0" = "agent" }', '"0" = "agent", "10" = "x", "a" = "x" }'
    )
    found = [line.split("bank.toml: ")[1] for line in problems(cfg)]
    assert found == [
        "nodes.language.choices.10: '10' is not a DTMF key: use one of 0-9, *, #, A-D",
        "nodes.language.choices.a: 'a' is not a DTMF key: use one of 0-9, *, #, A-D",
    ]


def test_node_errors_do_not_show_the_kind_tag(cfg: Path) -> None:
    replace(cfg / "flows" / "bank.toml", "retries = 1\n", 'retries = 1\ntimeout = "5"\n')
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "nodes.language.timeout",
        "expected a number, got the string '5'",
    )


def test_node_kind_unknown_or_missing(cfg: Path) -> None:
    append(
        cfg / "flows" / "bank.toml", '[nodes.dance]\nkind = "dance"\n[nodes.what]\nprompt = "x"\n'
    )
    found = [line.split("bank.toml: ")[1] for line in problems(cfg)]
    assert found == [
        "nodes.dance: unknown kind 'dance'; use one of 'play', 'menu', 'collect', 'speech', "
        "'branch', 'set', 'lookup', 'schedule', 'queue', 'transfer', 'voicemail', 'callback', "
        "'survey', 'hangup', 'goto', 'subflow'",
        "nodes.what: missing 'kind' (what this node does)",
    ]


def test_bad_node_and_flow_names(cfg: Path) -> None:
    append(cfg / "flows" / "bank.toml", '[nodes."bad name"]\nkind = "hangup"\n')
    shutil.copy(cfg / "flows" / "bank.toml", cfg / "flows" / "9lives.toml")
    found = problems(cfg)
    assert any(
        line.endswith(
            "9lives.toml: <file>: bad flow file name: invalid name '9lives': "
            "use a letter then letters, digits, '-' or '_' (at most 64 characters)"
        )
        for line in found
    )
    assert any("bank.toml: nodes.bad name: invalid name 'bad name'" in line for line in found)


def test_unreachable_node_is_a_warning(cfg: Path) -> None:
    append(cfg / "flows" / "bank.toml", '[nodes.bye]\nkind = "hangup"\n')
    config = load_config(cfg)
    assert config.warnings == (
        f"{cfg}/flows/bank.toml: nodes.bye: unreachable from start node 'welcome'",
    )


def test_rtp_range_rules(cfg: Path) -> None:
    toml = cfg / "ccserver.toml"
    replace(toml, "rtp_port_min = 20000", "rtp_port_min = 20001")
    replace(toml, "rtp_port_max = 29999", "rtp_port_max = 29998")
    found = [line.split("ccserver.toml: ")[1] for line in problems(cfg)]
    assert found == [
        "server.rtp_port_min: must be even (20001): RTP uses even ports, RFC 3550 §11",
    ]
    replace(toml, "rtp_port_min = 20001", "rtp_port_min = 20000")
    error = only_problem(cfg)
    assert error.key == "server.rtp_port_max"
    assert "odd number of ports" in error.reason
    replace(toml, "rtp_port_max = 29998", "rtp_port_max = 10001")
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "server.rtp_port_min",
        "must be below rtp_port_max (20000 >= 10001)",
    )


def test_sip_port_inside_rtp_range(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", "sip_port = 5060", "sip_port = 20002")
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "server.sip_port",
        "20002 is inside the RTP range 20000-29999",
    )


def test_wildcard_bind_needs_public_address(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", 'bind = "127.0.0.1"', 'bind = "0.0.0.0"')
    assert only_problem(cfg).key == "server.public_address"
    replace(cfg / "ccserver.toml", "# public_address =", "public_address =")
    config = load_config(cfg)
    assert config.server.advertised_address == "192.0.2.10"


def test_bind_must_be_an_address(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", 'bind = "127.0.0.1"', 'bind = "localhost"')
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "server.bind",
        "'localhost' is not an IPv4 or IPv6 address",
    )


def test_trunk_addresses(cfg: Path) -> None:
    (cfg / "trunks.toml").write_text(
        '[trunks.a]\naddresses = ["10.0.0.1/24", "0.0.0.0/0", 5, "192.0.2.0/24"]\n'
        '[trunks.b]\naddresses = ["192.0.2.0/24"]\n'
        "[trunks.c]\naddresses = []\n"
    )
    found = [line.split("trunks.toml: ")[1] for line in problems(cfg)]
    assert found == [
        "trunks.a.addresses.0: 10.0.0.1/24 has host bits set",
        "trunks.a.addresses.1: 0.0.0.0/0 would accept calls from every address "
        "without authentication",
        "trunks.a.addresses.2: write addresses as strings, e.g. '192.0.2.10' or '192.0.2.0/24'",
        "trunks.c.addresses: must not be empty",
    ]


def test_duplicate_trunk_network_and_own_address_warning(cfg: Path) -> None:
    (cfg / "trunks.toml").write_text(
        '[trunks.a]\naddresses = ["127.0.0.0/8"]\n[trunks.b]\naddresses = ["127.0.0.0/8"]\n'
    )
    error = only_problem(cfg)
    assert (error.key, error.reason) == (
        "trunks.b.addresses.0",
        "127.0.0.0/8 is already listed by trunk 'a'",
    )
    (cfg / "trunks.toml").write_text('[trunks.a]\naddresses = ["127.0.0.0/8"]\n')
    # (queues.toml warns too: the demo's callbacks now have no outbound route)
    (warning,) = [w for w in load_config(cfg).warnings if "trunks.toml: trunks." in w]
    assert "trunks.a.addresses.0: 127.0.0.0/8 holds this server's own address" in warning


def test_moh_file_must_be_a_wav(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", 'moh = "tone"', 'moh = "hold.wav"')
    assert only_problem(cfg).reason == f"no such file: {cfg / 'hold.wav'}"
    (cfg / "hold.wav").write_bytes(b"not audio")
    error = only_problem(cfg)
    assert error.key == "media.moh"
    assert error.reason.startswith("not a readable PCM WAV file")


def test_several_problems_in_several_files_reported_together(cfg: Path) -> None:
    replace(cfg / "ccserver.toml", "sip_port = 5060", "sip_prot = 5060")
    replace(cfg / "dids.toml", 'flow = "bank"', 'queue = "sales"')
    replace(cfg / "flows" / "bank.toml", 'next = "language"', 'next = "menu"')
    with pytest.raises(ConfigErrors) as caught:
        load_config(cfg)
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "server.sip_prot",
        "dids.5000.queue",
        "nodes.welcome.next",
    ]
    assert caught.value.key == "server.sip_prot"


# ----------------------------------------------------------- command-line overrides


def test_overrides_replace_server_values() -> None:
    config = load_config()
    changed = apply_overrides(
        config, {"sip_port": 5070, "http_port": 0, "bind": None, "log_level": "DEBUG"}
    )
    assert (changed.server.sip_port, changed.server.http_port) == (5070, 0)
    assert changed.server.bind == "127.0.0.1"
    assert changed.server.log_level == "DEBUG"
    assert changed.extensions == config.extensions
    assert apply_overrides(config, {"sip_port": None}) is config


def test_overrides_are_checked_like_the_file() -> None:
    config = load_config()
    with pytest.raises(ConfigError) as caught:
        apply_overrides(config, {"sip_port": 20000, "data_dir": ""})
    found = [str(error) for error in caught.value.errors]
    assert found == ["<command line>: --data-dir: must not be empty"]
    with pytest.raises(ConfigError) as caught:
        apply_overrides(config, {"sip_port": 20000, "bind": "0.0.0.0"})
    found = [str(error) for error in caught.value.errors]
    assert found[0] == "<command line>: --sip-port: 20000 is inside the RTP range 20000-29999"
    assert found[1].endswith(
        "ccserver.toml: server.public_address: required when bind is 0.0.0.0: Contact headers "
        "and SDP need an address peers can reach (after command-line options)"
    )
    with pytest.raises(ConfigError, match="--colour: not a \\[server\\] setting"):
        apply_overrides(config, {"colour": "blue"})


def test_overridden_data_dir_moves_the_database(tmp_path: Path) -> None:
    config = apply_overrides(load_config(), {"data_dir": str(tmp_path)})
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path}/ccserver.db"
    assert config.tts_cache_dir == tmp_path / "tts-cache"


# ----------------------------------------------------------------- the models


def test_models_are_frozen() -> None:
    config = load_config()
    with pytest.raises(ValidationError):
        config.server.sip_port = 1


def test_trunk_most_specific_match_wins() -> None:
    config = Config(
        trunks={
            "wide": Trunk(addresses=(ipaddress.ip_network("10.0.0.0/8"),)),
            "narrow": Trunk(addresses=(ipaddress.ip_network("10.1.0.0/16"),)),
        }
    )
    assert config.trunk_for("10.1.2.3") == "narrow"
    assert config.trunk_for("10.2.0.1") == "wide"
    assert config.trunk_for("2001:db8::1") is None
    assert config.trunks["wide"].allows("10.1.2.3")


def test_did_target() -> None:
    assert Did(queue="general").target == ("queue", "general")
    with pytest.raises(ValidationError):
        Did()


def test_hidden_toml_files_are_ignored(cfg: Path) -> None:
    (cfg / ".queues.toml").write_text("not toml")
    (cfg / "flows" / ".#bank.toml").write_text("not toml")
    assert list(load_config(cfg).flows) == ["bank"]


def test_problems_are_grouped_by_file_in_a_fixed_order(cfg: Path) -> None:
    (cfg / "flows" / "aaa.toml").write_text('[flow]\nstart = "x"\n[nodes.x]\nkind = "hangup"\n')
    replace(cfg / "flows" / "aaa.toml", 'start = "x"', 'start = "y"')
    replace(cfg / "queues.toml", '"1005"]', '"1005", "1099"]')
    replace(cfg / "dids.toml", 'flow = "bank"', 'flow = "shop"')
    (cfg / "dids.toml.toml").write_text("")
    replace(cfg / "ccserver.toml", "ptime = 20", "ptime = 25")
    files = [line.split(": ")[0].removeprefix(f"{cfg}/") for line in problems(cfg)]
    assert files == [
        "dids.toml.toml",
        "ccserver.toml",
        "dids.toml",
        "queues.toml",
        "flows/aaa.toml",
    ]
