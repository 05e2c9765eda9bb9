"""``python -m tristore_bench.asv_publish ARGS``: ``asv ARGS`` with the history's own change points.

asv finds steps with ``asv.step_detect.detect_steps`` while it publishes (graphs and the
Regressions page alike); this runs asv's own command line with :func:`detect_steps` in its place,
so what the site shows and what ``tristore-bench regressions`` reads come from the same
segmentation. asv computes steps in a process pool: the pool forks, so it inherits the swap.

Which segmentation a series gets depends on what it carries. A ``track_`` series (instruction
counts, in-process ratios, percentiles, bytes) has no per-point weights, and asv's penalty misses
its 10-15% steps: :mod:`tristore_bench.changepoints`. A ``time_`` series has weights from each
run's confidence interval, and its absolute times move in lasting streaks with the machine's state
(the untouched ``asyncio.Queue`` floor jumped 57% for a stretch of the history): asv's own,
weighted and more conservative, which does not read such a streak as a regression.

Instruction counts (``instructions.*``) are segmented by their repeat noise instead
(:func:`tristore_bench.changepoints.count_change_points`, at max(1%, 3 x the spread recorded in
``tools/bench/count-noise.json``), so a count step is flagged at the commit that measured it. And
each count series keeps only the result parameters its workload depends on
(:func:`tristore_bench.counts.series_params`): a redis-server upgrade does not split the SQLite
write's count series. The others are None in its graph's parameters, a value asv's ``index.json``
does not list (asv adds None only for a parameter a result lacks), so the graph page's sidebar
could select no count series: :func:`list_series_params` adds them after the publish. Which
upward steps are regressions is asv's rule, with the one correction of
:func:`tristore_bench.changepoints.detect_regressions` (two count steps in a row are both listed):
:func:`install_regressions`.

The thresholds asv holds each step to are derived here too, from the results being published:
the config's ``regressions_thresholds`` is policy only (floors, overrides), and asv is given
:func:`tristore_bench.thresholds.derive` of it, the block ``tristore-bench thresholds`` prints.
A count's step tolerance follows the policy's count floor.

Context entries are never flagged. Every benchmark whose :func:`tristore_bench.thresholds.kind`
is not gated (wall time: ``time_`` benchmarks, load percentiles, throughput, lags) gets a
``regressions_first_commits`` key of ``null`` in the loaded config (:func:`context_keys`), asv's
own switch that skips its regression detection for the matching entries: no row on the
Regressions page, in ``regressions.json`` (which ``tristore-bench regressions`` reads) or in the
feed. Their graphs and thresholds are published as before. This is the only place they are left
out.

After asv has written the site, ``trust.json`` is written beside its pages
(:mod:`tristore_bench.site_trust`): each entry's kind, noise and threshold, from the very
derivation asv was given, so the graphs' bands and the Regressions page cannot disagree.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from asv import config as asv_config
from asv import graph as asv_graph
from asv import step_detect
from asv import util as asv_util
from asv.commands import publish as asv_publish_command
from asv.plugins import regressions as asv_regressions

from tristore_bench import changepoints, counts, site_trust, thresholds

_ASV_DETECT_STEPS = step_detect.detect_steps  # asv's own, kept for weighted series
_ASV_GET_GRAPH = asv_graph.GraphSet.get_graph
_ASV_GRAPH_DETECT_STEPS = asv_graph.Graph.detect_steps
_ASV_CONFIG_LOAD = asv_config.Config.load  # bound to Config: a classmethod
_ASV_PUBLISH_RUN = asv_publish_command.Publish.run  # bound to Publish: a classmethod
# Where the loaded config keeps the derivation it was given, for trust.json after the publish.
DERIVATION_ATTR = "tristore_derivation"


def detect_steps(y: Sequence[Any], w: Sequence[Any] | None = None) -> list[Any]:
    """asv's contract: the change points of :mod:`changepoints` unless the points carry weights."""
    if w is not None and any(x is not None and x == x for x in w):
        return list(_ASV_DETECT_STEPS(y, w))
    return changepoints.detect_steps(y, w)


def count_tolerances(
    records: Mapping[str, counts.WorkloadNoise] | None = None,
    count_floor: float = counts.COUNT_FLOOR,
) -> dict[str, float]:
    """Count entry prefix (``instructions.SQLiteWrite``) -> the relative step that is flagged."""
    noise = counts.load_noise() if records is None else records
    return {
        benchmark: counts.flag_tolerance(counts.noise_for(workload, noise), count_floor)
        for benchmark, workload in counts.COUNT_BENCHMARKS.items()
    }


def count_tolerance(entry: str, tolerances: dict[str, float]) -> float | None:
    """The tolerance of a count entry; None for any other entry (a measured series)."""
    if not entry.startswith(counts.COUNT_PREFIX):
        return None
    prefix = ".".join(entry.split("(", 1)[0].split(".")[:2])
    return tolerances.get(prefix, counts.flag_tolerance(counts.noise_for(None, {})))


def _count_graph_steps(data: Sequence[Any], tolerance: float) -> list[Any]:
    """asv's ``graph._compute_graph_steps`` for a count series."""
    x = [d[0] for d in data]
    steps = changepoints.detect_steps(
        [d[1] for d in data], [d[2] for d in data], count_tolerance=tolerance
    )
    return [(x[left], x[right - 1] + 1, val, low, err) for left, right, val, low, err in steps]


def install(tolerances: dict[str, float]) -> None:
    """Swap asv's step detection and graph keys for this module's (in this process)."""

    def get_graph(self: Any, benchmark_name: str, params: dict[str, Any]) -> Any:
        return _ASV_GET_GRAPH(self, benchmark_name, counts.series_params(benchmark_name, params))

    def graph_detect_steps(self: Any, pool: Any = None) -> None:
        tolerance = count_tolerance(self.benchmark_name, tolerances)
        if tolerance is None or self._steps is not None:
            _ASV_GRAPH_DETECT_STEPS(self, pool)
            return
        val = self.get_data()
        if not val:
            self._steps = [[]] * self.n_series
            return
        if self.scalar_series:
            items = [val]
        else:
            items = [[(v[0], v[1][j], v[2][j]) for v in val] for j in range(self.n_series)]
        if pool is None:
            self._steps = [_count_graph_steps(item, tolerance) for item in items]
        else:
            self._steps = [
                pool.apply_async(_count_graph_steps, (item, tolerance)) for item in items
            ]

    step_detect.detect_steps = detect_steps
    asv_graph.GraphSet.get_graph = get_graph  # type: ignore[method-assign]
    asv_graph.Graph.detect_steps = graph_detect_steps  # type: ignore[method-assign]


def benchmark_names(results_dir: Path) -> list[str]:
    """Every benchmark asv publishes: the names in ``results_dir/benchmarks.json``."""
    try:
        data = json.loads((results_dir / "benchmarks.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # no results yet: asv publish says so itself
    return sorted(name for name, meta in data.items() if isinstance(meta, dict))


def context_keys(
    names: Iterable[str], derived: thresholds.Derivation | None = None
) -> dict[str, None]:
    """``regressions_first_commits`` keys that switch asv's detection off for context entries.

    One key per benchmark whose kind is not gated (:func:`tristore_bench.thresholds.kind`); it
    matches the benchmark and each of its parameter combinations, and no other benchmark. And,
    with ``derived``, one key per entry of a gated kind that its noise leaves as context
    (:func:`tristore_bench.thresholds.gated`), which matches that entry alone.
    """
    keys: dict[str, None] = {
        thresholds.name_regex(name): None
        for name in sorted(names)
        if not thresholds.kind(name).gated
    }
    if derived is not None:
        keys.update(dict.fromkeys(derived.context_regexes()))
    return keys


def install_thresholds(
    tolerances: dict[str, float],
    records: Mapping[str, counts.WorkloadNoise] | None = None,
) -> None:
    """Make every asv config loaded in this process carry the derived thresholds.

    asv reads ``regressions_thresholds`` from the config object it loads; this hands it
    :func:`tristore_bench.thresholds.derivation`'s block for the file's policy over the config's
    ``results_dir`` (relative to the working directory, as asv resolves it), keeps the
    derivation on the config (``DERIVATION_ATTR``, for ``trust.json``), switches regression
    detection off for the context entries (:func:`context_keys`), and moves the count
    tolerances (``tolerances``, updated in place) to the policy's count floor.
    """
    noise = counts.load_noise() if records is None else records

    def load(cls: type, path: str | None = None) -> Any:
        conf = _ASV_CONFIG_LOAD(path)
        policy = dict(getattr(conf, "regressions_thresholds", None) or {})
        results = Path(conf.results_dir)
        derived = thresholds.derivation(policy, results, records=noise)
        conf.regressions_thresholds = derived.block
        conf.regressions_first_commits = {
            **(getattr(conf, "regressions_first_commits", None) or {}),
            **context_keys(benchmark_names(results), derived),
        }
        setattr(conf, DERIVATION_ATTR, derived)
        _, count_floor = thresholds.policy_floors(policy)
        tolerances.update(count_tolerances(noise, count_floor))
        return conf

    asv_config.Config.load = classmethod(load)  # type: ignore[method-assign, assignment]


def list_series_params(html_dir: Path) -> bool:
    """Add to ``index.json``'s ``params`` every value a graph's parameters hold; True if any.

    The graph page offers (and selects by default) the values ``params`` lists, and loads the
    graphs of ``graph_param_list`` whose every parameter is selected: a count series whose
    unrelated parameters are None (:func:`install`'s ``get_graph``) is drawn only once None is
    listed. Sorted as asv sorts them (None as ``"[none]"``).
    """
    path = html_dir / "index.json"
    index = json.loads(path.read_text(encoding="utf-8"))
    params: dict[str, list[Any]] = index.get("params", {})
    added: set[str] = set()
    for graph in index.get("graph_param_list", []):
        for key, value in graph.items():
            if key in params and value not in params[key]:
                params[key].append(value)
                added.add(key)
    for key in added:
        params[key].sort(key=lambda x: "[none]" if x is None else str(x))
    if added:
        asv_util.write_json(str(path), index, compact=True)
    return bool(added)


def install_after_publish() -> None:
    """Make ``asv publish`` finish the site it has just written.

    ``index.json`` lists every graph's parameter values (:func:`list_series_params`), and
    ``trust.json`` is written from the derivation :func:`install_thresholds` kept on the config,
    the one asv published with (a config loaded without it gets no file).
    """

    def run(cls: type, conf: Any, range_spec: Any = None, pull: bool = True) -> Any:
        result = _ASV_PUBLISH_RUN(conf, range_spec=range_spec, pull=pull)
        list_series_params(Path(conf.html_dir))
        derived = getattr(conf, DERIVATION_ATTR, None)
        if derived is not None:
            names = benchmark_names(Path(conf.results_dir))
            site_trust.write_data(Path(conf.html_dir), derived, names)
        return result

    asv_publish_command.Publish.run = classmethod(run)  # type: ignore[method-assign, assignment]


def install_regressions() -> None:
    """Make asv's Regressions publisher decide jumps with :func:`changepoints.detect_regressions`.

    asv's own drops the older of two steps up in a row when the middle level is one commit long
    and an older level is higher, which a count series, stepping at the commit that measured a
    change, meets whenever two commits in a row each add work.
    """
    asv_regressions.detect_regressions = changepoints.detect_regressions


def main(argv: list[str] | None = None) -> None:
    from asv.main import main as asv_main

    records = counts.load_noise()
    tolerances = count_tolerances(records)
    install(tolerances)
    install_thresholds(tolerances, records)
    install_after_publish()
    install_regressions()
    multiprocessing.set_start_method("fork", force=True)
    sys.argv = ["asv", *(sys.argv[1:] if argv is None else argv)]
    asv_main()


if __name__ == "__main__":
    main()
