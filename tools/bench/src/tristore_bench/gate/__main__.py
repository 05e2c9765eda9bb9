"""``python -m tristore_bench.gate``: the gate command alone."""

from tristore_bench.gate.cli import command

command()
