"""The ``tristore`` command."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys

import click

from tristore.cli_settings import settings_from


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML settings file (default: $TRISTORE_CONFIG).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """tristore: an async data layer over SQLite, Kuzu and Redis."""
    ctx.obj = {"config_path": config_path}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--integrity-check",
    "full_check",
    is_flag=True,
    help="Check SQLite with PRAGMA integrity_check (every index against its table; slower) "
    "instead of quick_check.",
)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, full_check: bool) -> None:
    """Reach or start the three stores; print versions and effective settings.

    SQLite's pages are verified too (PRAGMA quick_check): a corrupt file fails the check.
    """
    from tristore.doctor import diagnose

    reports = asyncio.run(diagnose(settings_from(ctx), full_check=full_check))
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in reports], indent=2))
    else:
        for r in reports:
            if r.ok:
                click.echo(f"ok    {r.store:<6} {r.version:<10} opened in {r.open_ms:.0f} ms")
                for key, value in r.settings.items():
                    click.echo(f"        {key} = {value}")
            else:
                click.echo(f"FAIL  {r.store:<6} {r.error}")
    failed = [r for r in reports if not r.ok]
    if failed:
        sys.exit(1)


# Subcommands that live with the code they drive; each module exposes a click ``command``.
# The benchmarking tools are another distribution's command (tristore-bench), never this one's.
_COMMAND_MODULES: tuple[str, ...] = ("tristore.coordinator.cli", "tristore.load_cli")


def _register() -> None:
    for module in _COMMAND_MODULES:
        main.add_command(importlib.import_module(module).command)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
