"""The ``ccserver`` command: check a config directory, or run the server from one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from ccserver.config import Config, ConfigError, apply_overrides, load_config

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
def run(
    config_dir: Path | None,
    sip_port: int | None,
    http_port: int | None,
    bind: str | None,
    data_dir: str | None,
    log_level: str | None,
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

    run_server(config)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ccserver")
