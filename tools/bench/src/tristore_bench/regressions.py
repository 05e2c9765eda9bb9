"""``tristore-bench regressions [--since REF]``: the regressions asv found, from the published site.

``asv publish`` runs asv's step detection over every benchmark's history (with the config's
``regressions_thresholds``) and writes the regressions still present at the latest commit to
``<html_dir>/regressions.json``; ``index.json`` maps asv's revision numbers to commit hashes. This
command reads those two files, so it reports exactly what the site's Regressions page shows, and
does not re-implement asv's detector.

Each regression is a jump: the value rose between ``last good`` and ``first bad`` (asv omits
``last good`` when the two are adjacent commits). Exit status, for scripts and CI:

* 0: no regression (newer than REF, when ``--since`` is given);
* 1: at least one regression whose first bad commit is not in REF's history, i.e. it came in
  after REF (without ``--since``: any regression at all);
* 2: the site was never published, or REF / the commits cannot be resolved in git.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from tristore_bench.asv import HarnessError, asv_config_option, asv_paths, git, html_dir_option

__all__ = ["NotPublished", "Regression", "command", "load_regressions", "newer_than"]


class NotPublished(HarnessError):
    """There is no published site (or it predates regression detection)."""


@dataclass(frozen=True)
class Regression:
    """One upward jump of one benchmark (with parameters, as asv names it)."""

    benchmark: str
    last_good: str | None  # full hash; None when first_bad's parent is the last good commit
    first_bad: str
    before: float
    after: float
    latest: float
    best: float

    @property
    def ratio(self) -> float | None:
        """after / before: asv's ``factor`` column (lower is better for every asv benchmark).

        None when ``before`` is not positive: a ``track_`` delta (bytes of growth) can sit at or
        below zero, where a quotient would read as a huge or negative "speed-up".
        """
        return self.after / self.before if self.before > 0 else None

    def ratio_text(self) -> str:
        ratio = self.ratio
        return "n/a" if ratio is None else f"{ratio:.2f}x"

    def commits(self, length: int = 8) -> str:
        bad = self.first_bad[:length]
        return bad if self.last_good is None else f"{self.last_good[:length]}..{bad}"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotPublished(
            f"{path} not found: the site was never published. Run `tristore-bench site` (or "
            "`asv publish`) after `asv run` first."
        ) from exc
    except ValueError as exc:
        raise HarnessError(
            f"{path} is not valid JSON ({exc}): re-run `tristore-bench site`"
        ) from exc


def load_regressions(html_dir: Path) -> list[Regression]:
    """Every jump in ``html_dir/regressions.json``, biggest ratio first."""
    data = _read(html_dir / "regressions.json")
    index = _read(html_dir / "index.json")
    rev_to_hash: dict[str, str] = index.get("revision_to_hash", {})

    def commit(rev: int | None) -> str | None:
        if rev is None:
            return None
        try:
            return rev_to_hash[str(rev)]
        except KeyError as exc:
            raise HarnessError(
                f"revision {rev} is not in {html_dir / 'index.json'}: regressions.json and "
                "index.json come from different publishes; re-run `tristore-bench site`"
            ) from exc

    found: list[Regression] = []
    # asv 0.6: [name, graph_path, graph_params, param_index, latest, best, jumps]
    for name, _graph, _params, _idx, latest, best, jumps in data.get("regressions", []):
        for rev_a, rev_b, before, after in jumps:
            found.append(
                Regression(
                    benchmark=name,
                    last_good=commit(rev_a),
                    first_bad=str(commit(rev_b)),
                    before=float(before),
                    after=float(after),
                    latest=float(latest),
                    best=float(best),
                )
            )
    # Biggest ratio first; jumps without a ratio (from a non-positive value) lead, by size.
    found.sort(key=lambda r: (r.ratio is not None, -(r.ratio or r.after - r.before), r.benchmark))
    return found


def newer_than(regressions: Iterable[Regression], since: str, repo: Path) -> list[Regression]:
    """The regressions whose first bad commit is not reachable from ``since``.

    "Not reachable" rather than "a descendant of": a commit on a side branch merged after REF is
    new relative to REF too. A range that straddles REF counts as new, since the culprit may be
    on either side and asv could not narrow it down.
    """
    try:
        if since.startswith("-"):  # would be read as a git option
            raise HarnessError(since)
        git(repo, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    except HarnessError as exc:
        raise HarnessError(f"--since {since!r} is not a commit in {repo}") from exc
    regressions = list(regressions)
    if not regressions:
        return []
    bad = sorted({r.first_bad for r in regressions})
    # Everything reachable from the first-bad commits but not from REF; a first-bad commit in
    # that set is new. The walk is bounded by the history between REF and those commits.
    try:
        new = set(git(repo, "rev-list", *bad, f"^{since}", "--").split())
    except HarnessError as exc:
        raise HarnessError(
            f"{exc}\nthe published commits are not all in {repo}: a shallow clone? "
            "(git fetch --unshallow)"
        ) from exc
    return [r for r in regressions if r.first_bad in new]


@click.command("regressions")
@click.option(
    "--since",
    "since",
    metavar="REF",
    default=None,
    help="Only regressions that came in after REF (a commit, branch or tag).",
)
@asv_config_option("asv config (for html_dir and the repository).")
@html_dir_option("Published site (default: html_dir from the config).")
@click.option("--json", "as_json", is_flag=True, help="Print the regressions as JSON.")
def command(since: str | None, config: Path, html_dir: Path | None, as_json: bool) -> None:
    """Print the current regressions; exit 1 if any are newer than REF, 2 if never published."""
    try:
        paths = asv_paths(config)
        site = html_dir if html_dir is not None else paths.html_dir
        found = load_regressions(site)
        counted = found if since is None else newer_than(found, since, paths.repo)
    except HarnessError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    counted_ids = {id(r) for r in counted}
    if as_json:
        rows = [{**asdict(r), "ratio": r.ratio, "counted": id(r) in counted_ids} for r in found]
        click.echo(json.dumps(rows, indent=2))
    elif not found:
        click.echo("no regressions")
    else:
        click.echo(f"{'benchmark':<60} {'commits':<18} {'ratio':>8}  before -> after")
        for r in found:
            mark = " new" if since is not None and id(r) in counted_ids else ""
            click.echo(
                f"{r.benchmark:<60} {r.commits():<18} {r.ratio_text():>8}  "
                f"{r.before:.4g} -> {r.after:.4g}{mark}"
            )
        scope = "in total" if since is None else f"after {since}"
        click.echo(f"{len(counted)} regression(s) {scope}")
    sys.exit(1 if counted else 0)
