"""The ``tristore-bench`` command: the repository's benchmarking tools, apart from the library.

Each subcommand lives with the code it drives and is imported only when it is run, so that
``tristore-bench --help`` stays fast and one tool's heavy imports (scipy, pyperf) never slow
another.
"""

from __future__ import annotations

import importlib

import click

#: name -> module exposing a click ``command``.
COMMANDS: dict[str, str] = {
    "attribute": "tristore_bench.attribution",
    "bench-smoke": "tristore_bench.smoke",
    "compare": "tristore_bench.compare",
    "count-noise": "tristore_bench.count_noise",
    "gate": "tristore_bench.gate.cli",
    "machine": "tristore_bench.fingerprint",
    "regressions": "tristore_bench.regressions",
    "site": "tristore_bench.site",
    "thresholds": "tristore_bench.thresholds",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(module).command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """tristore-bench: the PR gate, the asv site, thresholds, regressions and driver ratios."""


if __name__ == "__main__":  # pragma: no cover
    main()
