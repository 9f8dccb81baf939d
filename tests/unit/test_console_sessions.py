"""Password hashes, the session store and the sign-in throttle of the web console (sans-IO)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_console.passwords import hash_password, verify_password
from agent_console.sessions import LoginThrottle, SessionStore
from ccserver.cli import cli
from ccserver.config import ConfigError, load_config, shipped_config_dir
from cti.auth import Principal

AGENT = Principal("agent1001", frozenset({"agent"}), "1001", via="session")


def test_hash_round_trip_and_salt() -> None:
    first = hash_password("console1001", n=2**10)
    second = hash_password("console1001", n=2**10)
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$1024$8$1$")
    assert verify_password("console1001", first)
    assert not verify_password("console1002", first)


def test_malformed_hashes_never_match() -> None:
    for encoded in ("", "plain", "bcrypt$1$2$3$AA==$AA==", "scrypt$x$8$1$AA==$AA==",
                    "scrypt$1024$8$1$!!$AA=="):  # fmt: skip
        assert not verify_password("anything", encoded)


def test_session_idle_and_lifetime_expiry() -> None:
    store = SessionStore(idle=60, lifetime=300)
    session = store.create(AGENT, now=1000.0)
    assert session.csrf and session.id != session.csrf
    assert store.get(session.id, 1059.0) is session  # touched: idle restarts
    assert store.get(session.id, 1118.0) is session
    assert store.get(session.id, 1179.0) is None  # 61 s idle
    long = store.create(AGENT, now=2000.0)
    for t in range(2050, 2300, 50):
        assert store.get(long.id, float(t)) is long
    assert store.get(long.id, 2301.0) is None  # beyond the lifetime, however busy
    assert store.get("unknown", 2301.0) is None


def test_session_drop_and_bound() -> None:
    store = SessionStore(idle=60, lifetime=300, limit=2)
    a = store.create(AGENT, 0.0)
    b = store.create(AGENT, 1.0)
    store.get(a.id, 2.0)  # a is now the most recently used
    store.create(AGENT, 3.0)
    assert store.get(b.id, 4.0) is None and store.get(a.id, 4.0) is a
    assert store.drop(a.id) and not store.drop(a.id)


def test_throttle_locks_out_after_failures_in_window() -> None:
    throttle = LoginThrottle(max_failures=3, lockout=60)
    throttle.failed("10.0.0.1", 0.0)
    throttle.failed("10.0.0.1", 70.0)  # the first one is outside the window
    throttle.failed("10.0.0.1", 80.0)
    assert throttle.retry_after("10.0.0.1", 80.0) == 0.0
    throttle.failed("10.0.0.1", 90.0)
    assert throttle.retry_after("10.0.0.1", 90.0) == 60.0
    assert throttle.retry_after("10.0.0.1", 150.0) == 0.0
    assert throttle.retry_after("10.0.0.2", 90.0) == 0.0
    throttle.failed("10.0.0.2", 0.0)
    throttle.succeeded("10.0.0.2")
    throttle.failed("10.0.0.2", 1.0)
    throttle.failed("10.0.0.2", 2.0)
    assert throttle.retry_after("10.0.0.2", 2.0) == 0.0  # success cleared the count


def test_users_file_refuses_plain_passwords_and_unknown_agents(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), cfg)
    (cfg / "users.toml").write_text(
        '[users.bob]\npassword = "hunter2"\nroles = ["supervisor"]\n\n'
        f'[users.carol]\npassword = "{hash_password("x", n=2**10)}"\n'
        'roles = ["agent"]\nagent = "9999"\n\n'
        f'[users.dave]\npassword = "{hash_password("x", n=2**10)}"\nroles = ["agent"]\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    problems = {(e.key, e.file.rsplit("/", 1)[-1]) for e in caught.value.errors}
    assert ("users.bob.password", "users.toml") in problems, problems
    assert ("users.carol.agent", "users.toml") in problems, problems
    assert ("users.dave", "users.toml") in problems, problems


def test_shipped_demo_users_sign_in_with_documented_passwords() -> None:
    users = load_config(shipped_config_dir()).users
    assert set(users) == {f"agent{n}" for n in range(1001, 1011)} | {"supervisor", "admin"}
    assert users["agent1001"].agent == "1001" and users["supervisor"].roles == ("supervisor",)
    assert verify_password("console1001", users["agent1001"].password)


def test_passwd_prints_an_entry_the_loader_accepts(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["passwd", "alice", "--agent", "1001", "--stdin"], input="s3cret pass\n"
    )
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    cfg = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), cfg)
    (cfg / "users.toml").write_text(result.output)
    user = load_config(cfg).users["alice"]
    assert user.roles == ("agent",) and user.agent == "1001"
    assert verify_password("s3cret pass", user.password)

    refused = CliRunner().invoke(cli, ["passwd", "bob", "--stdin"], input="x\n")
    assert refused.exit_code == 2 and "--agent" in refused.output


def test_session_principal_carries_its_key_not_its_id() -> None:
    store = SessionStore(idle=60, lifetime=300)
    one, two = store.create(AGENT, 0.0), store.create(AGENT, 0.0)
    assert one.principal.session and one.principal.session != two.principal.session
    assert one.id not in (one.principal.session or "")
    assert one.principal.agent == "1001" and one.principal.roles == AGENT.roles
