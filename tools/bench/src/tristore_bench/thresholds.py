"""``tristore-bench thresholds``: per-benchmark regression thresholds derived from measured noise.

asv flags a regression when a step in a benchmark's history is both statistically detected and
larger, as a ratio, than ``regressions_thresholds`` (default 5% for every benchmark). On a noisy
2-core machine 5% is too tight for some benchmarks (false alarms) and needlessly loose for others.
This module reads the asv results JSON files and proposes one threshold per asv *entry*: what asv
matches ``regressions_thresholds`` against, the benchmark's name for a plain benchmark and
``name(p1, p2)`` for each parameter combination of a parameterized one (the parameters as asv
stores them, ``repr`` strings joined with ``", "``).

Derivation (all quantities relative to the entry's reported value, i.e. asv's median).

For every result of an entry (one commit, one machine, one environment), asv stores the 99%
confidence interval of the median (``ci_99_a``, ``ci_99_b``) and the sample quartiles (``q_25``,
``q_75``). Per series, pooled across commits by the median (robust to the odd disturbed run):

* ``ci``   = median of (ci_99_b - ci_99_a) / 2 / value: how precisely one run pins its median.
* ``iqr``  = median of (q_75 - q_25) / value: the spread of single samples (reported only: asv
  compares medians, whose noise ``ci`` and ``step`` measure directly).
* ``step`` = median over consecutive commits (same benchmark code version) of
  max(v2 / v1, v1 / v2) - 1: run-to-run noise that within-run statistics miss (CPU frequency,
  page cache, the other core's load). asv's step detector already weighs each point by its own
  CI, but knows nothing of this; it is what false alarms on a noisy machine are made of. The
  median ignores the few consecutive pairs that hold a real change.

* ``resolution`` = for a quantized measure (at least half of its consecutive commits read exactly
  the same value, and the others move back and forth between a few levels, as RSS in whole pages
  does; a series that steps once and stays is a real change), the smallest non-zero change between
  consecutive commits relative to the smallest reading: one quantum, at its largest. RSS per
  connection moves in 4 KiB / 16 = 256-byte steps, 50% of a 512-byte reading, and the first quiet
  history flagged exactly that as a "regression". Each reading can be off by up to one quantum,
  so two readings of unchanged code can differ by two: K_RESOLUTION = 2. This term is a limit of
  the measurement, not noise, so CAP does not apply to it (512 -> 1024 bytes is no signal).

* ``rerun`` = how far another session reads the same commits: relative differences
  max(a / b, b / a) - 1 between commits' stored results and the same commits measured again, on
  another day or another VM of the same kind, with the same benchmark code (``tristore-bench
  rerun-noise``, ``tools/bench/rerun-noise.json``); per day the stored readings were measured on,
  their median, and the largest day (``EntryRerun.offset``). The history's terms compare
  consecutive commits of one run and miss what moves between runs; a commit that leaves an
  entry's code untouched must not be flagged in it. A session's shift moves all its readings and
  the median keeps it; one stored reading off on its own cannot start a step (a ratio or a size
  steps over MIN_SEGMENT commits) and the median leaves it out. The record has a few commits,
  which understates the tail: K_RERUN = 1.5 leaves a margin. Like ``resolution`` it is what
  unchanged code was seen to do, so CAP does not apply to it: an entry another session reads 30%
  off is held to at least 45%, and is then context (see below).

  threshold = max(min(CAP, max(FLOOR, K_STEP * step, K_CI * ci)), K_RESOLUTION * resolution,
  K_RERUN * rerun), rounded up to whole percent.

* An instruction count (``instructions.*``) is held to its *repeat* noise instead, the spread of
  repeated counts of one commit (``tristore-bench count-noise``, ``tools/bench/count-noise.json``):
  threshold = max(COUNT_FLOOR, K_NOISE x spread), rounded up to 0.1%. Its history's steps are
  real changes of the code, not noise, and are not used. These are the same figures
  :mod:`tristore_bench.changepoints` segments count series by.

* K_STEP = 4: for normal noise the median |difference| of two runs is 0.674 of the difference's
  standard deviation, so two runs of unchanged code differ by more than 4 x step with probability
  P(|Z| > 2.7) = 0.7%.
* K_CI = 2: two runs whose 99% intervals do not overlap differ by more than the sum of their
  half-widths; below that asv's own statistics cannot tell the runs apart. This is the estimate
  used when there are too few commits (< 3) for ``step``.
* FLOOR = 0.05, asv's default: never more sensitive than that for a measured quantity (time,
  memory, a ratio). CAP = 0.5: a 50% slowdown is always worth a look; an entry capped here is
  flagged in the table as too noisy (raise its ``repeat``/``rounds``).
* COUNT_FLOOR = 0.01 for the instruction counts (benchmarks under COUNT_PREFIX,
  benchmarks/instructions.py, unit "instructions"): counts of unchanged code repeat within 0.5%,
  the PR gate's calibrated instruction line is 1% (``--instr-threshold``), and the project asks for
  count thresholds of at most 2%. FLOOR would hide the very changes counts exist to show.

**Kinds: gated or context.** Each entry has one :class:`Kind`, decided by its benchmark's name
alone (:func:`kind`, by the first matching rule of :data:`KIND_RULES`; adding a benchmark that
is not wall time is one line there): ``count`` (exact instruction counts), ``ratio`` (in-process
comparisons against a reference measured in the same process), ``size`` (deterministic or
quantized quantities that are not time: memory, bytes, a pool's size), ``wall`` (absolute times,
load percentiles, throughput, lags, RSS growth under a load scenario). A count is *gated*: the
site flags its steps. A ratio or a size is gated when its noise is measured and its threshold is
at most :func:`gate_limit` (GOAL_THRESHOLD, 10%, or a wider line of :data:`WIDER_GATES`), and
context otherwise (:func:`gated`). Wall time is always *context*: its threshold is derived and
shown, but a step is never flagged (:mod:`tristore_bench.asv_publish` switches asv's regression
detection off for every context entry). The table this command prints marks each entry's kind
and whether it is gated, and ends with how many gated non-count entries are held to at most
GOAL_THRESHOLD.

**Derived at publish time.** ``asv.conf.json`` holds only policy: its ``regressions_thresholds``
are the two floors (the :func:`default_keys`) and any override a person chose for an entry.
:func:`publish_block` adds the derived keys to that policy, and both ``tristore-bench thresholds``
(which prints it) and the site's ``asv publish`` (:mod:`tristore_bench.asv_publish`, which hands
it to asv in place of the config's block) call it on the same ``results/``. So the Regressions
page, ``tristore-bench regressions`` and the table this command prints are held to one block,
which follows the history as it grows; no derived figure is pasted anywhere. An override replaces
the derivation for every entry its key matches (``re.match`` on the entry name), with asv's own
rule on top: the floor of the entry's kind still applies.

asv's ``regressions_thresholds`` keys are regexes, matched with ``re.match`` against the entry name
plus ``@branch``, and asv applies the *maximum* threshold of every key that matches (0.05 when none
does; :func:`effective_threshold` computes the same). Hence:

* no key may match everything: ``".*"`` at FLOOR would lift every count to 5%. The block's two
  defaults split the names instead: ``^(?!instructions\\.)`` at FLOOR, ``instructions\\.`` at
  COUNT_FLOOR, and after them one key per entry whose threshold is above its floor;
* each parameter combination gets its own key (``re.escape("name(p1, p2)") + "(@|$)"``): pooled,
  ``ratios.DriverRatios.track_ratio`` would give its 2%-noise pool checkout the 13%-noise Kuzu
  read's threshold. A plain benchmark's key (:func:`name_regex`) also matches ``name(...)``;
* an entry measured on several machines or environments gets the largest threshold over them,
  because the keys are shared by all machines.

``track_`` benchmarks and ``--quick`` runs have no statistics and rely on ``step`` alone.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import click

from tristore_bench import counts as count_noise
from tristore_bench.asv import HarnessError, asv_config_option, asv_paths

__all__ = [
    "ASV_DEFAULT",
    "CAP",
    "COUNT_FLOOR",
    "COUNT_PREFIX",
    "FLOOR",
    "GOAL_THRESHOLD",
    "KIND_RULES",
    "K_CI",
    "K_RERUN",
    "K_STEP",
    "WIDER_GATES",
    "Derivation",
    "Kind",
    "Noise",
    "command",
    "default_keys",
    "derivation",
    "derive",
    "effective_threshold",
    "entry_name",
    "gate_limit",
    "gated",
    "goal",
    "kind",
    "measure_noise",
    "name_regex",
    "overrides",
    "policy_floors",
    "publish_block",
    "readings",
    "thresholds_block",
]

K_STEP = 4.0
K_CI = 2.0
K_RESOLUTION = 2.0
K_RERUN = 1.5  # x how far another session read the same commits (tristore-bench rerun-noise)
FLOOR = 0.05
CAP = 0.5
# The instruction-count benchmarks (benchmarks/instructions.py): deterministic, so their own floor.
COUNT_PREFIX = "instructions."
COUNT_FLOOR = 0.01
ASV_DEFAULT = 0.05  # what asv applies to an entry no key matches (plugins/regressions.py)
MIN_STEP_COMMITS = 3  # a median over fewer than two run-to-run changes says little
# A measured (not counted) entry is gated only where its threshold can see a change of this size;
# a noisier one is context, shown with its noise like wall time: a gate that cannot see 10% would
# either cry wolf or pass what matters.
GOAL_THRESHOLD = 0.10
#: Entries gated up to a wider threshold than GOAL_THRESHOLD, each with its reason (re.match).
WIDER_GATES: dict[str, float] = {
    # The concurrency series: a 20% change in what 25 concurrent clients get must be flagged.
    r"coordinated\.CoordinatedWrites\.track_concurrency_ratio": 0.20,
}


class Kind(StrEnum):
    """What an entry measures, and so whether the site flags its steps (see :func:`kind`)."""

    COUNT = "count"
    RATIO = "ratio"
    SIZE = "size"
    WALL = "wall"

    @property
    def gated(self) -> bool:
        """Flagged when it steps; a context entry (wall time) is only shown, with its noise."""
        return self is not Kind.WALL

    @property
    def heading(self) -> str:
        """The heading of this kind's section of the site's grid."""
        return _HEADINGS[self]

    @property
    def label(self) -> str:
        """A few words for one series of this kind (the graph's legend)."""
        return _LABELS[self]


_HEADINGS = {
    Kind.COUNT: "Exact counts (gated)",
    Kind.RATIO: "In-process ratios (gated where their noise allows)",
    Kind.SIZE: "Sizes and memory (gated where their noise allows)",
    Kind.WALL: "Wall time (context, not gated)",
}
_LABELS = {
    Kind.COUNT: "exact instruction count",
    Kind.RATIO: "in-process ratio",
    Kind.SIZE: "size",
    Kind.WALL: "wall time",
}

#: (regex, kind), the first whose ``re.fullmatch`` takes the benchmark's name (an entry's name
#: without its parameters) decides; no match: :attr:`Kind.WALL`. One line per rule.
KIND_RULES: tuple[tuple[str, Kind], ...] = (
    (re.escape(COUNT_PREFIX) + ".*", Kind.COUNT),  # benchmarks/instructions.py
    (r"ratios\..*", Kind.RATIO),  # benchmarks/ratios.py: tristore / reference, one process
    (r".*\.[^.]*_ratio[^.]*", Kind.RATIO),  # a method named *_ratio*: track_overhead_ratio
    (r"memory\.(PeakMemory|RedisMemory|RssPerConnection)\..*", Kind.SIZE),  # bytes, whole pages
    (r".*\.track_pool_size_after_load.*", Kind.SIZE),  # connections left open: an integer
)


def gate_limit(entry_name: str) -> float:
    """The largest threshold at which a measured entry is still gated (:data:`WIDER_GATES`)."""
    wider = [limit for key, limit in WIDER_GATES.items() if re.match(key, entry_name)]
    return max([GOAL_THRESHOLD, *wider])


def kind(entry_name: str) -> Kind:
    """The kind of an asv entry (``name``, ``name(p1, p2)``, optionally ``@branch``), by name."""
    benchmark = re.split(r"[(@]", entry_name, maxsplit=1)[0]
    for pattern, found in KIND_RULES:
        if re.fullmatch(pattern, benchmark):
            return found
    return Kind.WALL


@dataclass(frozen=True)
class _Point:
    date: int
    commit: str
    version: str
    value: float
    ci: float | None
    iqr: float | None
    started: int | None = None  # when asv ran it (``started_at``, ms since the epoch)


@dataclass(frozen=True)
class Noise:
    """Pooled relative noise of one asv entry (see the module docstring)."""

    benchmark: str
    commits: int
    ci: float | None
    iqr: float | None
    step: float | None
    resolution: float | None = None
    # The parameter combination as asv names it ("'kuzu', 10"); None for a plain benchmark.
    params: str | None = None
    # An instruction count's repeat spread (tristore-bench count-noise); None for the others.
    repeat: float | None = None
    # How far another session read recorded commits (tristore-bench rerun-noise: the offset).
    rerun: float | None = None

    @property
    def name(self) -> str:
        """asv's entry name, the string its ``regressions_thresholds`` keys are matched against."""
        return entry_name(self.benchmark, self.params)

    @property
    def kind(self) -> Kind:
        """This entry's :class:`Kind`: gated (count, ratio, size) or context (wall)."""
        return kind(self.benchmark)

    @property
    def is_count(self) -> bool:
        """An instruction count: held to ``count_floor``, not ``floor``."""
        return self.kind is Kind.COUNT

    @property
    def band(self) -> float | None:
        """The relative noise the site draws around the latest value (None: nothing measured).

        What the threshold scales: a count's repeat spread (as :meth:`threshold` takes it), for
        the others the largest of ``step``, ``ci``, ``resolution`` and ``rerun``.
        """
        if self.is_count:
            return count_noise.UNMEASURED_SPREAD if self.repeat is None else self.repeat
        return _max(self.step, self.ci, self.resolution, self.rerun)

    @property
    def regex(self) -> str:
        """This entry's key, with or without asv's ``@branch`` suffix.

        A parameterized entry's key matches that entry alone; a plain benchmark's
        (:func:`name_regex`) also matches ``name(...)``.
        """
        if self.params is None:
            return name_regex(self.benchmark)
        # The closing parenthesis ends the entry name: only a branch suffix can follow it.
        return re.escape(self.name) + r"(@|$)"

    def threshold(
        self,
        k_step: float = K_STEP,
        k_ci: float = K_CI,
        floor: float = FLOOR,
        cap: float = CAP,
        count_floor: float = COUNT_FLOOR,
    ) -> float | None:
        """The derived threshold; None when there is no estimate at all (the floor applies).

        ``floor`` applies to measured quantities, ``count_floor`` to instruction counts.
        """
        if self.is_count:
            spread = count_noise.UNMEASURED_SPREAD if self.repeat is None else self.repeat
            return _ceil_permille(count_noise.flag_tolerance(spread, count_floor))
        raw = _max(
            None if self.step is None else k_step * self.step,
            None if self.ci is None else k_ci * self.ci,
        )
        limit = None if self.resolution is None else K_RESOLUTION * self.resolution
        # What the same commit read in another run: never capped below what was seen.
        again = None if self.rerun is None else K_RERUN * self.rerun
        if raw is None and limit is None and again is None:
            return None
        noise = None if raw is None else min(cap, max(floor, _ceil_pct(raw)))
        return _max(noise, *(None if x is None else _ceil_pct(x) for x in (limit, again)))


def _ceil_pct(x: float) -> float:
    # Whole percent keeps the config readable; rounding up never undercuts the estimate.
    return math.ceil(x * 100 - 1e-9) / 100


def _ceil_permille(x: float) -> float:
    # Counts: a tenth of a percent, since their thresholds sit near 1%.
    return math.ceil(x * 1000 - 1e-9) / 1000


def _finite(x: Any) -> float | None:
    if isinstance(x, int | float) and math.isfinite(x):
        return float(x)
    return None


def _column(row: Sequence[Any], columns: dict[str, int], name: str, i: int) -> float | None:
    j = columns.get(name)
    # asv drops trailing columns that are empty for every parameter combination.
    if j is None or j >= len(row) or row[j] is None:
        return None
    values = row[j]
    return _finite(values[i]) if i < len(values) else None


def _result_files(results_dir: Path, machines: Iterable[str] | None) -> Iterator[Path]:
    wanted = set(machines) if machines else None
    for machine_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        if wanted is not None and machine_dir.name not in wanted:
            continue
        for path in sorted(machine_dir.glob("*.json")):
            if path.name != "machine.json":
                yield path


_SeriesKey = tuple[str, str | None, str, str]  # benchmark, params (None: plain), machine, env


def _points(results_dir: Path, machines: Iterable[str] | None) -> dict[_SeriesKey, list[_Point]]:
    """Series keyed by (benchmark, params, machine, env) -> one point per result file."""
    series: dict[_SeriesKey, list[_Point]] = defaultdict(list)
    for path in _result_files(results_dir, machines):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HarnessError(f"cannot read asv results {path}: {exc}") from exc
        if "result_columns" not in data:
            continue  # pre-0.5 format: no statistics to read
        columns = {name: j for j, name in enumerate(data["result_columns"])}
        machine = path.parent.name
        for name, row in data.get("results", {}).items():
            values = row[columns["result"]] or []
            params = row[columns["params"]] if len(row) > columns["params"] else []
            combos = list(itertools.product(*params)) if params else [()]
            version = str(row[columns["version"]]) if len(row) > columns["version"] else ""
            for i, combo in enumerate(combos):
                value = _finite(values[i]) if i < len(values) else None
                if value is None or value <= 0:
                    continue  # failed, skipped, or not a ratio-scale quantity
                lo = _column(row, columns, "stats_ci_99_a", i)
                hi = _column(row, columns, "stats_ci_99_b", i)
                q25 = _column(row, columns, "stats_q_25", i)
                q75 = _column(row, columns, "stats_q_75", i)
                at = columns.get("started_at")
                point = _Point(
                    date=int(data.get("date") or 0),
                    commit=str(data.get("commit_hash", "")),
                    version=version,
                    value=value,
                    ci=(hi - lo) / 2 / value if lo is not None and hi is not None else None,
                    iqr=(q75 - q25) / value if q25 is not None and q75 is not None else None,
                    started=_int(row[at]) if at is not None and at < len(row) else None,
                )
                # asv's entry name joins the parameters' repr strings (as stored) with ", ".
                entry = ", ".join(map(str, combo)) if params else None
                series[(name, entry, machine, str(data.get("env_name", "")))].append(point)
    return series


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, int | float) and math.isfinite(x) else None


def entry_name(benchmark: str, params: str | None) -> str:
    """asv's entry name: ``name``, or ``name(p1, p2)`` for one parameter combination."""
    return benchmark if params is None else f"{benchmark}({params})"


def readings(results_dir: Path, machines: Iterable[str] | None = None) -> dict[str, list[_Point]]:
    """Every reading of each asv entry under ``results_dir``, by entry name: one per result file
    (commit, machine, environment), with its commit, benchmark version and value."""
    found: dict[str, list[_Point]] = defaultdict(list)
    for (name, params, *_), points in _points(results_dir, machines).items():
        found[entry_name(name, params)].extend(points)
    return dict(found)


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _max(*xs: float | None) -> float | None:
    present = [x for x in xs if x is not None]
    return max(present) if present else None


def measure_noise(
    results_dir: Path,
    machines: Iterable[str] | None = None,
    records: Mapping[str, count_noise.WorkloadNoise] | None = None,
    reruns: Mapping[str, float] | None = None,
) -> list[Noise]:
    """Pooled noise per asv entry name, from every result under ``results_dir``.

    ``records``: the count workloads' repeat noise (default: ``tools/bench/count-noise.json``).
    ``reruns``: entry name -> its re-run offset (default:
    ``tools/bench/rerun-noise.json``).
    """
    if not results_dir.is_dir():
        raise HarnessError(f"no asv results at {results_dir}: run the benchmarks first")
    try:
        if records is None:
            records = count_noise.load_noise()
        if reruns is None:
            # Imported here: rerun_noise reads results through this module.
            from tristore_bench.rerun_noise import load_rerun

            reruns = load_rerun()
    except ValueError as exc:
        raise HarnessError(str(exc)) from exc
    by_name: dict[str, Noise] = {}
    # Pooling by the maximum does not depend on the order; the result is sorted by entry name.
    for (name, params, *_), points in _points(results_dir, machines).items():
        points.sort(key=lambda p: (p.date, p.commit))
        # Consecutive commits measured with the same benchmark code.
        pairs = [
            (a.value, b.value)
            for a, b in itertools.pairwise(points)
            if a.version == b.version and a.commit != b.commit
        ]
        steps = [max(b / a, a / b) - 1 for a, b in pairs]
        # One quantum relative to the smallest reading: the largest relative size it can have.
        deltas = [abs(b - a) for a, b in pairs]
        changes = [d for d in deltas if d > 0]
        # Quantized: mostly identical readings, and the changes go back and forth between a few
        # levels. A series that steps once (a real change) and stays is not quantized.
        quantized = (
            len(changes) >= 2
            and 2 * (len(deltas) - len(changes)) >= len(deltas)
            and len({p.value for p in points}) <= len(changes)
        )
        noise = Noise(
            benchmark=name,
            params=params,
            commits=len({p.commit for p in points}),
            ci=_median([p.ci for p in points if p.ci is not None]),
            iqr=_median([p.iqr for p in points if p.iqr is not None]),
            step=_median(steps) if len(points) >= MIN_STEP_COMMITS else None,
            resolution=min(changes) / min(p.value for p in points) if quantized else None,
            repeat=(
                count_noise.noise_for(count_noise.benchmark_workload(name), records)
                if name.startswith(COUNT_PREFIX)
                else None
            ),
            rerun=None if name.startswith(COUNT_PREFIX) else reruns.get(entry_name(name, params)),
        )
        old = by_name.get(noise.name)
        if old is not None:
            # Several machines / environments: keep the noisiest, since every machine shares the
            # block's keys. Parameter combinations are separate entries, each with its own key.
            noise = Noise(
                benchmark=name,
                params=params,
                commits=max(old.commits, noise.commits),
                ci=_max(old.ci, noise.ci),
                iqr=_max(old.iqr, noise.iqr),
                step=_max(old.step, noise.step),
                resolution=_max(old.resolution, noise.resolution),
                repeat=noise.repeat,
                rerun=noise.rerun,
            )
        by_name[noise.name] = noise
    return [by_name[n] for n in sorted(by_name)]


def name_regex(name: str) -> str:
    """Regex matching ``name`` exactly, with or without asv's ``(params)`` / ``@branch`` suffix."""
    return re.escape(name) + r"(\(|@|$)"


def default_keys(floor: float = FLOOR, count_floor: float = COUNT_FLOOR) -> dict[str, float]:
    """The block's defaults: every entry is matched by exactly one, the floor of its kind.

    asv applies the largest threshold of all matching keys, so a default that matched counts too
    (``".*"``) would lift them to ``floor``.
    """
    prefix = re.escape(COUNT_PREFIX)
    return {f"^(?!{prefix})": floor, prefix: count_floor}


def thresholds_block(
    noise: Iterable[Noise],
    k_step: float = K_STEP,
    k_ci: float = K_CI,
    floor: float = FLOOR,
    cap: float = CAP,
    count_floor: float = COUNT_FLOOR,
) -> dict[str, float]:
    """The ``regressions_thresholds`` mapping: :func:`default_keys` plus the entries above them."""
    return publish_block(default_keys(floor, count_floor), noise, k_step, k_ci, cap)


def policy_floors(policy: Mapping[str, float]) -> tuple[float, float]:
    """(floor, count floor) a policy sets by its default keys; FLOOR, COUNT_FLOOR without them."""
    measured, counted = default_keys()
    return float(policy.get(measured, FLOOR)), float(policy.get(counted, COUNT_FLOOR))


def overrides(policy: Mapping[str, float]) -> dict[str, float]:
    """The keys of a policy block that a person chose for some entries: all but the floors."""
    floors = default_keys()
    return {key: float(value) for key, value in policy.items() if key not in floors}


def publish_block(
    policy: Mapping[str, float],
    noise: Iterable[Noise],
    k_step: float = K_STEP,
    k_ci: float = K_CI,
    cap: float = CAP,
) -> dict[str, float]:
    """The block asv publishes with: ``policy`` (floors and overrides) plus the derived keys.

    The floors come from the policy's default keys (:func:`policy_floors`). Each entry whose
    derived threshold is above its floor gets its own key, unless an override's key matches the
    entry: then the override is the entry's threshold, not the larger of the two (asv applies
    the maximum of every matching key, so keeping both would make an override that lowers a
    threshold do nothing). Keys in order: the floors, the derived keys, the overrides.
    """
    floor, count_floor = policy_floors(policy)
    chosen = overrides(policy)
    block = default_keys(floor, count_floor)
    for n in noise:
        if any(re.match(key, n.name) for key in chosen):
            continue
        value = n.threshold(k_step, k_ci, floor, cap, count_floor)
        if value is not None and value > (count_floor if n.is_count else floor):
            block[n.regex] = value
    block.update(chosen)
    return block


@dataclass(frozen=True)
class Derivation:
    """What the site publishes with: asv's block, and the noise of every entry it came from."""

    block: dict[str, float]
    noise: tuple[Noise, ...]

    def threshold(self, entry_name: str) -> float:
        """The threshold asv holds ``entry_name`` to (:func:`effective_threshold`)."""
        return effective_threshold(self.block, entry_name)

    def gated(self, noise: Noise) -> bool:
        """Whether the site flags this entry's steps (:func:`gated`)."""
        return gated(noise, self.threshold(noise.name))

    def context_regexes(self) -> list[str]:
        """Keys of the entries of a gated kind that are context by their noise."""
        return [n.regex for n in self.noise if n.kind.gated and not self.gated(n)]


def derivation(
    policy: Mapping[str, float],
    results_dir: Path,
    machines: Iterable[str] | None = None,
    records: Mapping[str, count_noise.WorkloadNoise] | None = None,
) -> Derivation:
    """:func:`publish_block` for the results under ``results_dir``, with the noise it read.

    No results yet (a fresh checkout): the policy alone, with its floors made explicit.
    """
    if not results_dir.is_dir():
        return Derivation(publish_block(policy, []), ())
    noise = tuple(measure_noise(results_dir, machines, records))
    return Derivation(publish_block(policy, noise), noise)


def derive(
    policy: Mapping[str, float],
    results_dir: Path,
    machines: Iterable[str] | None = None,
    records: Mapping[str, count_noise.WorkloadNoise] | None = None,
) -> dict[str, float]:
    """The block the site publishes with: :func:`derivation`'s."""
    return derivation(policy, results_dir, machines, records).block


def gated(noise: Noise, threshold: float) -> bool:
    """Whether an entry held to ``threshold`` is gated (its steps flagged) or context.

    A count always is; a wall-time entry never is; a ratio or a size is when its noise has been
    measured and its threshold is within :func:`gate_limit`. Otherwise the site shows it with its
    noise, as context.
    """
    if not noise.kind.gated:
        return False
    if noise.is_count:
        return True
    # A hair of slack: thresholds are rounded to whole percent, 0.1 may be stored as 0.1000001.
    return noise.band is not None and threshold <= gate_limit(noise.name) + 1e-9


def goal(noise: Iterable[Noise], block: Mapping[str, float]) -> tuple[int, int, int]:
    """(gated entries that are not counts, how many asv holds to <= GOAL_THRESHOLD, and how many
    entries of a gated kind are context by their noise)."""
    measured = [n for n in noise if n.kind.gated and not n.is_count]
    held = [n for n in measured if gated(n, effective_threshold(block, n.name))]
    met = sum(effective_threshold(block, n.name) <= GOAL_THRESHOLD + 1e-9 for n in held)
    return len(held), met, len(measured) - len(held)


def effective_threshold(block: Mapping[str, float], entry_name: str) -> float:
    """The threshold asv applies to ``entry_name`` (``name``, ``name(p1, p2)``, plus ``@branch``).

    asv 0.6 (plugins/regressions.py ``_get_threshold``): the largest threshold of every key that
    ``re.match``-es, and ASV_DEFAULT when none does.
    """
    matching = [float(value) for regex, value in block.items() if re.match(regex, entry_name)]
    return max(matching, default=ASV_DEFAULT)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def load_policy(config: Path) -> dict[str, float]:
    """The policy block of an asv config (its ``regressions_thresholds``); {} when it has none."""
    raw = asv_paths(config).raw.get("regressions_thresholds", {})
    if not isinstance(raw, dict) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in raw.values()
    ):
        raise HarnessError(f"{config}: regressions_thresholds must map regexes to numbers")
    return {str(key): float(value) for key, value in raw.items()}


@click.command("thresholds")
@asv_config_option("asv config: its results_dir, and the policy (floors, overrides).")
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="asv results directory (default: results_dir from the config).",
)
@click.option("--machine", "machines", multiple=True, help="Only these machines (repeatable).")
@click.option("--k-step", type=float, default=K_STEP, show_default=True, help="x run-to-run noise.")
@click.option("--k-ci", type=float, default=K_CI, show_default=True, help="x 99% CI half-width.")
@click.option(
    "--floor",
    type=float,
    default=None,
    help=f"Lowest threshold, not counts (default: the config's, else {FLOOR}).",
)
@click.option(
    "--count-floor",
    type=float,
    default=None,
    help=f"Lowest threshold of the counts, {COUNT_PREFIX}* (default: the config's, "
    f"else {COUNT_FLOOR}).",
)
@click.option("--cap", type=float, default=CAP, show_default=True, help="Highest threshold.")
@click.option(
    "--count-noise",
    "noise_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The counts' repeat noise (default: tools/bench/count-noise.json).",
)
def command(
    config: Path,
    results_dir: Path | None,
    machines: tuple[str, ...],
    k_step: float,
    k_ci: float,
    floor: float | None,
    count_floor: float | None,
    cap: float,
    noise_file: Path | None,
) -> None:
    """Print the regressions_thresholds the site publishes with, derived from measured noise.

    The policy (floors and overrides) is the config's ``regressions_thresholds``; the derived
    keys are added from the results, as ``tristore-bench site`` does when it publishes. The
    derivation table goes to stderr, the block (JSON) to stdout. Nothing is written.
    """
    try:
        # A results directory given without a config file: the default policy.
        policy = load_policy(config) if results_dir is None or Path(config).is_file() else {}
        floors = policy_floors(policy)
        policy = {
            **default_keys(
                floors[0] if floor is None else floor,
                floors[1] if count_floor is None else count_floor,
            ),
            **overrides(policy),
        }
        floor, count_floor = policy_floors(policy)
        chosen = overrides(policy)
        where = results_dir if results_dir is not None else asv_paths(config).results_dir
        records = count_noise.load_noise(noise_file)
        noise = measure_noise(where, machines or None, records)
    except (HarnessError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not noise:
        raise click.ClickException(f"no benchmark results under {where}")
    block = publish_block(policy, noise, k_step, k_ci, cap)
    # One row per entry; a parameterized benchmark's entry names run long.
    width = max(56, *(len(n.name) for n in noise))
    click.echo(
        f"{'entry':<{width}} {'kind':<5} {'gated':<7} {'commits':>7} {'ci99/2':>7} {'iqr':>7} "
        f"{'step':>7} {'resol':>7} {'repeat':>7} {'rerun':>7} {'threshold':>9}",
        err=True,
    )
    for n in noise:
        value = n.threshold(k_step, k_ci, floor, cap, count_floor)
        shown = "floor" if value is None else f"{value:.3f}" if n.is_count else f"{value:.2f}"
        if any(re.match(key, n.name) for key in chosen):
            shown = f"{effective_threshold(block, n.name):.3f} (override)"
        elif n.is_count:
            shown += " (repeat noise)" if value is not None and value > count_floor else ""
        elif n.rerun is not None and value == _ceil_pct(K_RERUN * n.rerun):
            shown += " (re-run)"
        elif n.resolution is not None and value == _ceil_pct(K_RESOLUTION * n.resolution):
            shown += " (resolution)"
        elif value is not None and value >= cap:
            shown += " (capped: too noisy)"
        held = "gated" if gated(n, effective_threshold(block, n.name)) else "context"
        click.echo(
            f"{n.name:<{width}} {n.kind:<5} {held:<7} {n.commits:>7} {_pct(n.ci):>7} "
            f"{_pct(n.iqr):>7} {_pct(n.step):>7} {_pct(n.resolution):>7} {_pct(n.repeat):>7} "
            f"{_pct(n.rerun):>7} {shown:>9}",
            err=True,
        )
    entries, met, noisy = goal(noise, block)
    share = f"{met / entries:.0%}" if entries else "-"
    click.echo(
        f"gated non-count entries: {entries}; at <= {GOAL_THRESHOLD:.0%}: {met} ({share}; "
        f"the goal is 9 in 10); ratios and sizes left as context by their noise: {noisy}. "
        "Context entries are shown on the site, never flagged.",
        err=True,
    )
    click.echo(json.dumps(block, indent=4))
