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
