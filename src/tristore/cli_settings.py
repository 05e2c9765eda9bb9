"""The settings of a ``tristore`` subcommand: ``--config`` (or ``$TRISTORE_CONFIG``), loaded once.

Every subcommand that opens stores goes through :func:`settings_from`, so a bad configuration
reads the same everywhere: one line naming the key and its valid range, exit code 1.
"""

from __future__ import annotations

import click

from tristore.config import Settings, load_settings
from tristore.errors import ConfigError


def settings_from(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    config_path = obj.get("config_path") if isinstance(obj, dict) else None
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc
