"""What the tests' hand-made asv results files share with the real ones."""

from __future__ import annotations

#: The columns of a results file, in the order asv 0.6.6 writes them (results/*/<commit>-*.json).
COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]

#: What `tristore-bench machine --counts` records of this VM: machine.json's facts of the count
#: machine, which asv also copies into every result's params.
COUNT_MACHINE: dict[str, str] = {
    "arch": "x86_64",
    "cpu": "AMD EPYC",
    "cpu_governor": "unavailable",
    "machine": "tristore-callgrind",
    "num_cpu": "2",
    "os": "Linux glibc 2.36",
    "python_version": "3.11.7",
    "ram": "any",
    "redis_server": "7.0.15",
    "sqlite": "3.40.1",
    "valgrind": "3.19.0",
}
