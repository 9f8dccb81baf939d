"""The ``ccserver`` command: check a config directory, or run the server from one."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import click

from ccserver.config import Config, ConfigError, apply_overrides, load_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from cti.exports import ExportFilter

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_CONFIG_DIR = click.Path(file_okay=False, path_type=Path)


def _fail(error: ConfigError) -> NoReturn:
    """Print every problem as ``file: key: reason``, one a line, and exit 1."""
    for problem in error.errors:
        click.echo(str(problem), err=True)
    sys.exit(1)


def _load(path: Path | None) -> Config:
    try:
        config = load_config(path)
    except ConfigError as error:
        _fail(error)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """An open-source contact-center server: SIP/RTP, ACD, IVR and CTI."""


@cli.command("check-config")
@click.argument("path", required=False, type=_CONFIG_DIR)
def check_config(path: Path | None) -> None:
    """Validate the config directory PATH (default: $CCSERVER_CONFIG or the shipped demo).

    Exits 0 when it would start, 1 after listing every problem on stderr.
    """
    config = _load(path)
    click.echo(
        f"config OK: {len(config.extensions)} extensions, {len(config.queues)} queues, "
        f"{len(config.flows)} flows, {len(config.dids)} DIDs"
    )


@cli.command("run")
@click.option("--config", "config_dir", type=_CONFIG_DIR, help="Config directory.")
@click.option("--sip-port", type=click.IntRange(0, 65535), help="Overrides [server].sip_port.")
@click.option("--http-port", type=click.IntRange(0, 65535), help="Overrides [server].http_port.")
@click.option("--bind", metavar="ADDR", help="Overrides [server].bind.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Overrides [server].data_dir.")
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    help="Overrides [server].log_level.",
)
@click.option(
    "--demo-traffic",
    is_flag=True,
    help="Also run demo agents and callers (127.0.0.2) against the node, for a first look.",
)
@click.option(
    "--demo-calls",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="Demo traffic: calls to place.",
)
@click.option(
    "--demo-duration",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Demo traffic: seconds to keep placing calls.",
)
@click.option(
    "--demo-rate",
    type=click.FloatRange(min=0.1),
    default=4,
    show_default=True,
    help="Demo traffic: mean calls per minute.",
)
@click.option(
    "--demo-agents",
    default="1001,1002,1003",
    show_default=True,
    help="Demo traffic: agent extensions to register and answer for.",
)
@click.option(
    "--demo-talk",
    default="5-20",
    show_default=True,
    metavar="MIN-MAX",
    help="Demo traffic: seconds an agent talks, drawn between MIN and MAX.",
)
@click.option("--demo-seed", type=int, help="Demo traffic: replay the same random run.")
def run(
    config_dir: Path | None,
    sip_port: int | None,
    http_port: int | None,
    bind: str | None,
    data_dir: str | None,
    log_level: str | None,
    demo_traffic: bool = False,
    demo_calls: int = 30,
    demo_duration: float = 600,
    demo_rate: float = 4,
    demo_agents: str = "1001,1002,1003",
    demo_talk: str = "5-20",
    demo_seed: int | None = None,
) -> None:
    """Serve calls with the config directory (default: $CCSERVER_CONFIG or the shipped demo)."""
    config = _load(config_dir)
    overrides: dict[str, object] = {
        "sip_port": sip_port,
        "http_port": http_port,
        "bind": bind,
        "data_dir": data_dir,
        "log_level": log_level.upper() if log_level else None,
    }
    try:
        config = apply_overrides(config, overrides)
    except ConfigError as error:
        _fail(error)
    # Imported here so check-config works without the server's dependencies loaded.
    from ccserver.app import run_server

    demo = None
    if demo_traffic:
        from ccserver.demo_traffic import DemoSettings

        agents = tuple(a.strip() for a in demo_agents.split(",") if a.strip())
        unknown = [a for a in agents if a not in config.agents()]
        if unknown:
            raise click.BadParameter(
                f"{', '.join(unknown)} are not agents of the config", param_hint="--demo-agents"
            )
        low, _, high = demo_talk.partition("-")
        try:
            talk = (float(low), float(high or low))
            demo = DemoSettings(
                calls=demo_calls,
                duration=demo_duration,
                rate=demo_rate,
                agents=agents,
                talk=talk,
                seed=demo_seed,
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--demo-talk") from None
    if demo is None:
        run_server(config)
    else:
        run_server(config, demo)


# ------------------------------------------------------------------ console users


@cli.command("passwd")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["agent", "supervisor", "admin"]),
    default=("agent",),
    show_default=True,
    help="A role of the user (repeat for several).",
)
@click.option("--agent", metavar="EXT", help="The agent extension (needed with the agent role).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
def passwd(username: str, roles: tuple[str, ...], agent: str | None, from_stdin: bool) -> None:
    """Print a users.toml entry for USERNAME with a scrypt hash of a new password.

    The password is asked twice on the terminal (or read as one line with
    --stdin); only its hash is printed. Paste the entry into users.toml.
    """
    from agent_console.passwords import hash_password

    if "agent" in roles and agent is None:
        raise click.UsageError("the agent role needs --agent EXT")
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("the password must not be empty")
    click.echo(f"[users.{username}]")
    click.echo(f'password = "{hash_password(password)}"')
    click.echo("roles = [" + ", ".join(f'"{r}"' for r in roles) + "]")
    if agent is not None:
        click.echo(f'agent = "{agent}"')


# ------------------------------------------------------------------ exports


def _when(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _export_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--config", "config_dir", type=_CONFIG_DIR, help="Config directory."),
            click.option("--since", callback=_when, metavar="ISO", help="Arrived at or after."),
            click.option("--until", callback=_when, metavar="ISO", help="Arrived before."),
            click.option("--queue", help="Only contacts whose last queue is this one."),
            click.option(
                "--output",
                "-o",
                type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
                help="File to write (default: standard output).",
            ),
        ]
    ):
        command = option(command)
    return command


def _run_export(
    config_dir: Path | None,
    since: datetime | None,
    until: datetime | None,
    queue: str | None,
    output: Path | None,
    write: Callable[[AsyncEngine, TextIO, ExportFilter], Awaitable[int]],
) -> None:
    from ccserver.storage.database import make_engine
    from cti.exports import ExportFilter

    config = _load(config_dir)
    try:
        flt = ExportFilter(since=since, until=until, queue=queue)
    except ValueError as error:
        raise click.UsageError(str(error)) from None

    async def go(out: TextIO) -> int:
        engine = make_engine(config.database_url)
        try:
            return await write(engine, out, flt)
        finally:
            await engine.dispose()

    if output is None or str(output) == "-":
        count = asyncio.run(go(sys.stdout))
    else:
        # newline="": the csv module writes its own CRLF line ends (RFC 4180).
        with output.open("w", encoding="utf-8", newline="") as out:
            count = asyncio.run(go(out))
    click.echo(f"{count} exported", err=True)


@cli.group("export")
def export() -> None:
    """Export contact records for other tools (docs/exports.md)."""


@export.command("contacts")
@_export_options
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option("--events", is_flag=True, help="Include each contact's timeline (jsonl only).")
def export_contacts(
    config_dir: Path | None,
    since: datetime | None,
    until: datetime | None,
    queue: str | None,
    output: Path | None,
    fmt: str,
    events: bool,
) -> None:
    """Contacts as CSV (every column, attributes as JSON) or JSON lines."""
    from cti.exports import write_contacts_csv, write_contacts_jsonl

    if events and fmt != "jsonl":
        raise click.UsageError("--events needs --format jsonl")

    async def write(engine: AsyncEngine, out: TextIO, flt: ExportFilter) -> int:
        if fmt == "csv":
            return await write_contacts_csv(engine, out, flt)
        return await write_contacts_jsonl(engine, out, flt, with_events=events)

    _run_export(config_dir, since, until, queue, output, write)


@export.command("queue-log")
@_export_options
@click.option(
    "--agent-format",
    default="PJSIP/{ext}",
    show_default=True,
    help="How agents are named; {ext} is the extension (e.g. Agent/{ext}).",
)
def export_queue_log(
    config_dir: Path | None,
    since: datetime | None,
    until: datetime | None,
    queue: str | None,
    output: Path | None,
    agent_format: str,
) -> None:
    """Contacts and agent changes as an Asterisk queue_log, for queue-report tools."""
    from cti.queue_log import write_queue_log

    if "{ext}" not in agent_format:
        raise click.UsageError("--agent-format must contain {ext}")

    async def write(engine: AsyncEngine, out: TextIO, flt: ExportFilter) -> int:
        return await write_queue_log(engine, out, flt, agent_format=agent_format)

    _run_export(config_dir, since, until, queue, output, write)


# ------------------------------------------------------------------ reports


def _report_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--config", "config_dir", type=_CONFIG_DIR, help="Config directory."),
            click.option(
                "--since", metavar="ISO", help="Start (default: 24 hours before --until)."
            ),
            click.option("--until", metavar="ISO", help="End, excluded (default: now)."),
            click.option(
                "--interval",
                type=click.Choice(["15min", "hour", "day", "total"]),
                default="total",
                show_default=True,
            ),
            click.option("--tz", default="UTC", show_default=True, help="IANA time zone."),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["csv", "json"]),
                default="csv",
                show_default=True,
            ),
            click.option(
                "--output",
                "-o",
                type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
                help="File to write (default: standard output).",
            ),
        ]
    ):
        command = option(command)
    return command


def _run_report(
    kind: str,
    config_dir: Path | None,
    since: str | None,
    until: str | None,
    interval: str,
    tz: str,
    fmt: str,
    output: Path | None,
    name: str | None,
) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from ccserver.storage.database import make_engine
    from cti.api_json import dumps
    from cti.reports import (
        AgentRow,
        QueueRow,
        ReportQuery,
        ReportSource,
        agent_report,
        parse_when,
        queue_report,
        rows_csv,
    )

    config = _load(config_dir)
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from None
    try:
        end = parse_when(until, zone) if until else datetime.now(UTC)
        start = parse_when(since, zone) if since else end - timedelta(days=1)
        query = ReportQuery(
            start,
            end,
            interval,  # type: ignore[arg-type]
            zone,
            queue=name if kind == "queues" else None,
            agent=name if kind == "agents" else None,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None

    async def go() -> tuple[str, int]:
        engine = make_engine(config.database_url)
        try:
            source = ReportSource.from_config(engine, config)
            if kind == "queues":
                rows: list[QueueRow] | list[AgentRow] = await queue_report(source, query)
            else:
                rows = await agent_report(source, query)
        finally:
            await engine.dispose()
        if fmt == "json":
            return dumps(rows) + "\n", len(rows)
        return rows_csv(rows, QueueRow if kind == "queues" else AgentRow), len(rows)

    text, count = asyncio.run(go())
    if output is None or str(output) == "-":
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8", newline="")
    click.echo(f"{count} rows", err=True)


@cli.group("report")
def report() -> None:
    """Reports per queue or agent and interval, from the contact store (docs/reports.md)."""


@report.command("queues")
@_report_options
@click.option("--queue", help="Only this queue.")
def report_queues(
    config_dir: Path | None,
    since: str | None,
    until: str | None,
    interval: str,
    tz: str,
    fmt: str,
    output: Path | None,
    queue: str | None,
) -> None:
    """Offered, answered, abandoned, service level, ASA, AHT, occupancy, surveys per queue."""
    _run_report("queues", config_dir, since, until, interval, tz, fmt, output, queue)


@report.command("agents")
@_report_options
@click.option("--agent", help="Only this agent (extension).")
def report_agents(
    config_dir: Path | None,
    since: str | None,
    until: str | None,
    interval: str,
    tz: str,
    fmt: str,
    output: Path | None,
    agent: str | None,
) -> None:
    """Offers, answered, talk, AHT, time logged in and per state, occupancy per agent."""
    _run_report("agents", config_dir, since, until, interval, tz, fmt, output, agent)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ccserver")
