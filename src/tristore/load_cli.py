"""``tristore load SCENARIO``: run one of the specification's load scenarios and report.

Runs on the embedded default: the stores live in a new temporary directory (seeded with the
``small`` data set, removed afterwards) and Redis is a throwaway ``redis-server`` on loopback, so a
load run never touches anyone's data. Store tuning (pool sizes, pragmas, buffer pool) still comes
from the usual settings (``--config`` / ``TRISTORE_CONFIG`` / ``TRISTORE_*``).

While it runs, a progress line on stderr is updated every second; at the end a table of the
figures goes to stdout, and ``--json FILE`` writes the same figures as JSON.

SIGINT and SIGTERM stop the run the same way: the run is cancelled, the stores close, the
temporary directory and the embedded Redis (with its directory) are removed, and the command
prints "interrupted" and exits 128 + the signal number (130, 143), so an interrupted run never
reads as a success. Python's default SIGTERM would kill the process with no cleanup at all.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from tristore.cli_settings import settings_from
from tristore.errors import TristoreError

__all__ = ["command", "format_table"]

MiB = 1024 * 1024

# Scenario keyword arguments each option maps to, and which scenarios take it.
_OPTION_TARGETS: dict[str, tuple[str, ...]] = {
    "users": ("database_stress_test",),
    "ops_per_user": ("database_stress_test",),
    "concurrency": ("cross_database_coordination",),
    "rate": ("database_stress_test", "cross_database_coordination"),
    "cache_rate": ("cache_synchronization",),
    "db_rate": ("cache_synchronization",),
}


def _scenario_names() -> list[str]:
    from tristore.flows.scenarios import SCENARIOS

    return sorted(SCENARIOS)


def format_table(report: dict[str, Any]) -> str:
    """The end-of-run table (plain text, aligned)."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f} ms"

    rows = [
        ("scenario", report["scenario"]),
        ("duration", f"{report['duration_s']:.1f} s"),
        ("operations", f"{report['operations']}"),
        ("throughput", f"{report['throughput_ops_s']:.1f} ops/s"),
        ("errors", f"{report['errors']} {report['error_types'] or ''}".strip()),
        ("success rate", f"{report['success_rate'] * 100:.2f} %"),
        ("latency p50", ms(report["p50_ms"])),
        ("latency p99", ms(report["p99_ms"])),
        ("latency max", ms(report["max_ms"])),
        ("RSS start", f"{report['rss_start_bytes'] / MiB:.1f} MiB"),
        ("RSS peak", f"{report['rss_peak_bytes'] / MiB:.1f} MiB"),
        ("RSS growth", f"{report['rss_growth_bytes'] / MiB:+.1f} MiB"),
        (
            "RSS growth after warm-up",
            f"{report['rss_growth_after_warmup_bytes'] / MiB:+.1f} MiB "
            f"(first {report['details'].get('rss_warmup_s', 0):g} s excluded)",
        ),
        ("RSS growth, second half", f"{report['rss_growth_second_half_bytes'] / MiB:+.1f} MiB"),
    ]
    if report.get("sync_lag_p99_ms") is not None:
        rows += [
            ("sync lag p50", ms(report["sync_lag_p50_ms"])),
            ("sync lag p99", ms(report["sync_lag_p99_ms"])),
            ("event latency p50", ms(report["event_latency_p50_ms"])),
            ("event latency p99", ms(report["event_latency_p99_ms"])),
        ]
    details = report.get("details", {})
    if "inconsistency_count" in details:
        rows.append(("inconsistencies", str(details["inconsistency_count"])))
    verdict = "met" if report["target_met"] else "MISSED"
    rows.append(("spec target", f"{report['target']}: {verdict}"))
    ops = details.get("operations", {})
    if ops:
        rows.append(("", ""))
        rows.append(("operation", "count   p50 ms   p99 ms   errors"))
        for name, stats in sorted(ops.items()):
            rows.append(
                (
                    f"  {name}",
                    f"{stats['ok']:<7} {stats['p50_ms']:<8.3f} {stats['p99_ms']:<8.3f} "
                    f"{stats['errors']}",
                )
            )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in rows)


class _ProgressLine:
    """One line on stderr, rewritten in place on a terminal, appended otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        text = (
            f"{p.scenario}: {p.elapsed_s:5.0f}/{p.duration_s:.0f} s  ops {p.operations}  "
            f"{p.throughput_ops_s:7.1f} ops/s  p99 {p.p99_ms:.2f} ms  errors {p.errors}"
        )
        if self.tty:
            click.echo("\r\x1b[2K" + text, err=True, nl=False)
            self.drawn = True
        else:
            click.echo(text, err=True)

    def finish(self) -> None:
        if self.drawn:
            click.echo("", err=True)
            self.drawn = False


class _Interrupt:
    """The first SIGINT or SIGTERM cancels the run; later ones are ignored so cleanup finishes
    (it is bounded by the stores' close timeouts)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def install(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._received, sig, task)

    def _received(self, sig: signal.Signals, task: asyncio.Task[Any]) -> None:
        if self.signal is None:
            self.signal = sig
            task.cancel()

    @property
    def exit_code(self) -> int:
        assert self.signal is not None
        return 128 + int(self.signal)


async def _run(
    scenario: str,
    duration: float | None,
    options: dict[str, Any],
    settings: Any,
    size: str,
    seed: int,
    progress: _ProgressLine,
    interrupt: _Interrupt,
) -> dict[str, Any]:
    from tristore.flows.env import open_env
    from tristore.flows.scenarios import SCENARIOS

    task = asyncio.current_task()
    assert task is not None
    # Before anything is created: from here on a signal unwinds through open_env's cleanup.
    interrupt.install(task)
    fn, default_duration = SCENARIOS[scenario]
    async with open_env(settings, size=size, seed=seed) as env:
        report = await fn(
            env.pipeline,
            duration=duration if duration is not None else default_duration,
            progress=progress,
            **options,
        )
        data = report.to_dict()
        data["environment"] = {
            "data_set": size,
            "seed": seed,
            "seeded": env.seeded,
            "settings": env.manager.settings.redacted(),
            "coordinator": env.coordinator.stats(),
        }
        return data


@click.command("load")
@click.argument("scenario", type=click.Choice(_scenario_names()))
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to run (default: the specification's: 300, 180 or 240).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write JSON here.")
@click.option("--users", type=click.IntRange(min=1), help="database_stress_test: users (50).")
@click.option(
    "--ops-per-user", type=click.IntRange(min=1), help="database_stress_test: ops per session (20)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="cross_database_coordination: transactions at once (25).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="stress: total ops/s cap; coordination: transactions/s (default: unthrottled).",
)
@click.option(
    "--cache-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="cache_synchronization: cache ops/s (100).",
)
@click.option(
    "--db-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="cache_synchronization: database updates/s (50).",
)
@click.option("--size", default="small", show_default=True, help="Seeded data set size.")
@click.option("--seed", default=0, show_default=True, type=int, help="Data set seed.")
@click.option("--progress/--no-progress", default=True, help="Live progress line on stderr.")
@click.option("--check", is_flag=True, help="Exit 1 if the specification's target is missed.")
@click.pass_context
def command(
    ctx: click.Context,
    scenario: str,
    duration: float | None,
    json_path: str | None,
    users: int | None,
    ops_per_user: int | None,
    concurrency: int | None,
    rate: float | None,
    cache_rate: float | None,
    db_rate: float | None,
    size: str,
    seed: int,
    progress: bool,
    check: bool,
) -> None:
    """Run a load SCENARIO on throwaway embedded stores and report its figures."""
    given = {
        "users": users,
        "ops_per_user": ops_per_user,
        "concurrency": concurrency,
        "rate": rate,
        "cache_rate": cache_rate,
        "db_rate": db_rate,
    }
    options: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if scenario not in _OPTION_TARGETS[name]:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} does not apply to {scenario}")
        options[name] = value
    settings = settings_from(ctx)
    line = _ProgressLine(progress)
    interrupt = _Interrupt()
    try:
        report = asyncio.run(
            _run(scenario, duration, options, settings, size, seed, line, interrupt)
        )
    except (TristoreError, ValueError) as exc:
        line.finish()
        if interrupt.signal is None:
            raise click.ClickException(str(exc)) from exc
    except (asyncio.CancelledError, KeyboardInterrupt):
        line.finish()
        if interrupt.signal is None:
            raise
    line.finish()
    if interrupt.signal is not None:
        # Even if the scenario caught the cancellation and returned figures: they cover a cut
        # run, so no report, and a non-zero exit.
        click.echo(f"interrupted by {interrupt.signal.name}; temporary stores removed", err=True)
        sys.exit(interrupt.exit_code)
    click.echo(format_table(report))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
        click.echo(f"\nJSON written to {json_path}")
    if check and not report["target_met"]:
        sys.exit(1)
