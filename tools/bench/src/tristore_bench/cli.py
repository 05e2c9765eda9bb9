"""The ``tristore-bench`` command: the repository's benchmarking tools, apart from the library.

Each subcommand lives with the code it drives and is imported only when it is run, so that
``tristore-bench --help`` stays fast and one tool's heavy imports (scipy, pyperf) never slow
another.
"""

from __future__ import annotations

import importlib

import click

#: name -> module exposing a click ``command`` (or ``module:attribute`` for a module with several).
COMMANDS: dict[str, str] = {
    "attribute": "tristore_bench.attribution",
    "bench-smoke": "tristore_bench.smoke",
    "compare": "tristore_bench.compare",
    "count-noise": "tristore_bench.count_noise",
    "gate": "tristore_bench.gate.cli",
    "history": "tristore_bench.shards:history_command",
    "machine": "tristore_bench.fingerprint",
    "merge-results": "tristore_bench.shards:merge_command",
    "regressions": "tristore_bench.regressions",
    "rerun-noise": "tristore_bench.rerun_noise",
    "site": "tristore_bench.site",
    "thresholds": "tristore_bench.thresholds",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute or "command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """tristore-bench: the PR gate, the asv site, thresholds, regressions and driver ratios."""


if __name__ == "__main__":  # pragma: no cover
    main()
