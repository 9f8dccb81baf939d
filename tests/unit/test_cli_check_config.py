"""``ccserver check-config`` and ``ccserver run``'s config handling.

Each check runs twice: in process through click's CliRunner, and as the real
console script in a child process, the way an operator runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccserver.cli import cli
from ccserver.config import Config, load_config, shipped_config_dir

REPO = Path(__file__).resolve().parents[2]
CCSERVER = Path(sys.executable).with_name("ccserver")
SHIPPED_SUMMARY = "config OK: 11 extensions, 2 queues, 1 flows, 2 DIDs"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


Check = Callable[..., Outcome]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CCSERVER_CONFIG", None)
    return env


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCSERVER_CONFIG", raising=False)


@pytest.fixture(params=["clirunner", "subprocess"])
def check(request: pytest.FixtureRequest) -> Check:
    """Runs ``ccserver check-config [PATH]`` in process or as a child process."""

    def in_process(*args: str) -> Outcome:
        result = CliRunner().invoke(cli, ["check-config", *args], catch_exceptions=False)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def child(*args: str) -> Outcome:
        done = subprocess.run(
            [str(CCSERVER), "check-config", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=_env(),
            timeout=60,
            check=False,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    if request.param == "subprocess" and not CCSERVER.exists():
        pytest.skip(f"console script not installed at {CCSERVER}")
    return in_process if request.param == "clirunner" else child


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), target)
    return target


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# ----------------------------------------------------------------- check-config


def test_shipped_config_by_relative_path(check: Check, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    outcome = check("config")
    assert (outcome.code, outcome.stdout.strip(), outcome.stderr) == (0, SHIPPED_SUMMARY, "")


def test_shipped_config_by_default(check: Check) -> None:
    outcome = check()
    assert (outcome.code, outcome.stdout.strip()) == (0, SHIPPED_SUMMARY)


def test_undefined_queue_in_a_did(check: Check, cfg: Path) -> None:
    replace(cfg / "dids.toml", 'flow = "bank"', 'queue = "sales"')
    outcome = check(str(cfg))
    assert outcome.code == 1
    assert outcome.stdout == ""
    assert outcome.stderr.splitlines() == [
        f"{cfg}/dids.toml: dids.5000.queue: unknown queue 'sales' (defined queues: cards, general)"
    ]


def test_unknown_key(check: Check, cfg: Path) -> None:
    replace(cfg / "extensions.toml", "agent = true", "agnet = true")
    outcome = check(str(cfg))
    assert outcome.code == 1
    assert outcome.stderr.splitlines() == [
        f"{cfg}/extensions.toml: extensions.1001.agnet: unknown key; did you mean 'agent'?"
    ]


def test_syntax_error_with_line(check: Check, cfg: Path) -> None:
    replace(cfg / "trunks.toml", 'addresses = ["127.0.0.2/32"]', 'addresses = ["127.0.0.2/32"')
    line = 1 + (cfg / "trunks.toml").read_text().splitlines().index('addresses = ["127.0.0.2/32"')
    outcome = check(str(cfg))
    assert outcome.code == 1
    (message,) = outcome.stderr.splitlines()
    assert message.startswith(f"{cfg}/trunks.toml: <syntax>: line {line + 1}, column ")


def test_flow_node_pointing_nowhere(check: Check, cfg: Path) -> None:
    replace(cfg / "flows" / "bank.toml", '"2" = "cards"', '"2" = "credit_cards"')
    outcome = check(str(cfg))
    assert outcome.code == 1
    nodes = ", ".join(sorted(load_config(shipped_config_dir()).flows["bank"].nodes))
    assert outcome.stderr.splitlines() == [
        f"{cfg}/flows/bank.toml: nodes.main_menu.choices.2: unknown node 'credit_cards' "
        f"(defined nodes: {nodes})"
    ]


def test_several_errors_reported_together(check: Check, cfg: Path) -> None:
    replace(cfg / "ccserver.toml", "rtp_port_min = 20000", "rtp_port_min = 20001")
    replace(cfg / "extensions.toml", 'password = "agent1003pw"', "password = 1003")
    replace(cfg / "queues.toml", '"1010"]', '"1010", "1011"]')
    replace(cfg / "dids.toml", 'flow = "bank"', 'flow = "shop"')
    outcome = check(str(cfg))
    assert outcome.code == 1
    assert outcome.stderr.splitlines() == [
        f"{cfg}/ccserver.toml: server.rtp_port_min: must be even (20001): "
        "RTP uses even ports, RFC 3550 §11",
        f"{cfg}/extensions.toml: extensions.1003.password: expected a string, got the integer 1003",
        f"{cfg}/dids.toml: dids.5000.flow: unknown flow 'shop' (defined flows: bank)",
        f"{cfg}/queues.toml: queues.cards.members.5: unknown extension '1011' "
        "(see extensions.toml)",
    ]


def test_missing_directory(check: Check, tmp_path: Path) -> None:
    outcome = check(str(tmp_path / "nowhere"))
    assert outcome.code == 1
    assert outcome.stderr.strip() == f"{tmp_path}/nowhere: <dir>: config directory not found"


def test_warnings_go_to_stderr_and_still_pass(check: Check, cfg: Path) -> None:
    with (cfg / "flows" / "bank.toml").open("a") as flow:
        flow.write('\n[nodes.bye]\nkind = "hangup"\n')
    outcome = check(str(cfg))
    assert outcome.code == 0
    assert outcome.stdout.strip() == SHIPPED_SUMMARY
    assert outcome.stderr.splitlines() == [
        f"warning: {cfg}/flows/bank.toml: nodes.bye: unreachable from start node 'welcome'"
    ]


def test_env_var_picks_the_directory(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cfg / "dids.toml").unlink()
    monkeypatch.setenv("CCSERVER_CONFIG", str(cfg))
    result = CliRunner().invoke(cli, ["check-config"])
    assert result.exit_code == 0
    assert "0 DIDs" in result.stdout


# ------------------------------------------------------------------------- run


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Stands in for ccserver.app so ``run`` hands over its config and returns."""
    calls: list[Config] = []
    fake = types.ModuleType("ccserver.app")
    fake.run_server = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ccserver.app", fake)
    return calls


def test_run_applies_overrides(started: list[Config], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--config",
            str(shipped_config_dir()),
            "--sip-port",
            "5070",
            "--http-port",
            "0",
            "--bind",
            "127.0.0.1",
            "--data-dir",
            str(tmp_path),
            "--log-level",
            "debug",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (config,) = started
    assert (config.server.sip_port, config.server.http_port) == (5070, 0)
    assert config.server.log_level == "DEBUG"
    assert config.data_dir == tmp_path
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path}/ccserver.db"


def test_run_defaults_to_the_shipped_demo(started: list[Config]) -> None:
    result = CliRunner().invoke(cli, ["run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (config,) = started
    assert config.server.sip_port == 5060
    assert "5000" in config.dids


def test_run_refuses_a_broken_config(started: list[Config], cfg: Path) -> None:
    replace(cfg / "dids.toml", 'flow = "bank"', 'queue = "sales"')
    result = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "dids.toml: dids.5000.queue: unknown queue 'sales'" in result.stderr
    assert started == []


def test_run_refuses_a_bad_override(started: list[Config]) -> None:
    result = CliRunner().invoke(cli, ["run", "--sip-port", "20000"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "<command line>: --sip-port: 20000 is inside the RTP range 20000-29999"
    )
    assert started == []
