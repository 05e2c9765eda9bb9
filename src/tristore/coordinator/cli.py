"""``tristore coordinator recover|validate|status|retry``: roll forward, check, list and retry.

Each opens the configured stores (Kuzu allows one process per database: stop the application
first) and exit non-zero when something is left to look at: pending intents after ``recover``,
any drift after ``validate``, pending intents or dead letters after ``status`` and ``retry``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from tristore.cli_settings import settings_from
from tristore.errors import TristoreError

T = TypeVar("T")


@click.group(name="coordinator")
def command() -> None:
    """Cross-store transactions: recovery and consistency checks."""


def _run(ctx: click.Context, job: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Open the stores and a coordinator (which recovers), run ``job(coordinator, report)``."""
    from tristore.coordinator import Coordinator
    from tristore.manager import PoolManager

    settings = settings_from(ctx)

    async def main() -> T:
        manager = PoolManager(settings)
        await manager.open(monitor=False)
        try:
            coordinator = Coordinator.for_stores(manager, recovery_interval=None)
            opened = await coordinator.open()  # start-up recovery runs here
            try:
                return await job(coordinator, opened)
            finally:
                await coordinator.close()
        finally:
            await manager.close()

    try:
        return asyncio.run(main())
    except TristoreError as exc:
        raise click.ClickException(str(exc)) from exc


@command.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def recover(ctx: click.Context, as_json: bool) -> None:
    """Apply every committed-but-pending intent to the graph and the cache, in commit order."""

    async def job(coordinator: Any, opened: Any) -> Any:
        return opened  # opening the coordinator is the recovery

    report = _run(ctx, job)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report)))
    else:
        click.echo(
            f"recovered: {report.found} pending found, {report.applied} applied, "
            f"{report.failed} failed, {report.pending} still pending ({report.seconds:.2f}s)"
        )
    if report.pending:
        sys.exit(1)


@command.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def validate(ctx: click.Context, as_json: bool) -> None:
    """Compare the intent log with the graph and Redis markers; exit 1 on any drift."""

    async def job(coordinator: Any, opened: Any) -> Any:
        return await coordinator.validate()

    report = _run(ctx, job)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "transactions": report.transactions,
                    "drift": [
                        {"kind": d.kind, "subject": d.subject, "detail": d.detail}
                        for d in report.drift
                    ],
                }
            )
        )
    else:
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@command.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Pending intents and dead letters (committed, rejected by a store); exit 1 if any."""

    async def job(coordinator: Any, opened: Any) -> Any:
        return opened, await coordinator.dead_letters()

    report, letters = _run(ctx, job)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pending": report.pending,
                    "dead_letters": [dataclasses.asdict(d) for d in letters],
                }
            )
        )
    else:
        click.echo(f"pending: {report.pending}; dead letters: {len(letters)}")
        for d in letters:
            click.echo(f"  {d.txid} (seq {d.seq}): {d.error}")
        if letters:
            click.echo("retry them after a fix: tristore coordinator retry [TXID ...]")
    if report.pending or letters:
        sys.exit(1)


@command.command()
@click.argument("txids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def retry(ctx: click.Context, txids: tuple[str, ...], as_json: bool) -> None:
    """Apply dead letters again (all of them, or the TXIDS given), in commit order."""

    async def job(coordinator: Any, opened: Any) -> Any:
        report = await coordinator.retry(list(txids) or None)
        return report, await coordinator.dead_letters()

    report, letters = _run(ctx, job)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(report), "dead_letters": len(letters)}))
    else:
        click.echo(
            f"retried: {report.found} queued, {report.applied} applied, {report.failed} failed "
            f"again, {report.pending} still pending; dead letters now: {len(letters)}"
        )
    if report.failed or report.pending:
        sys.exit(1)
