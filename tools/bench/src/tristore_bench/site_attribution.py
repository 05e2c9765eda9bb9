"""The site's attribution pages: for each flagged count step, the Python functions that moved.

After ``asv publish``, every regression of an instruction-count entry in ``regressions.json``
(the same file the Regressions page and ``tristore-bench regressions`` read) gets a page
``attribution/<commit>-<workload>.html``: the :mod:`tristore_bench.attribution` table between the
last good commit (or the flagged commit's parent) and the flagged commit, each side's library a
``git archive`` of that commit's ``src/``. ``attribution/index.json`` maps (entry, commit) to the
page and ``attribution/links.js``, loaded by ``index.html``, adds a "Python attribution" link to
each such row of the Regressions page.

The tables are computed natively (no valgrind, seconds per commit) and cached outside the html
directory, which ``asv publish`` deletes: a re-publish recomputes nothing it has seen. A commit
whose library cannot run the workload gets a page that says why, not a made-up table.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tristore_bench import attribution, counts
from tristore_bench.asv import HarnessError, git
from tristore_bench.regressions import Regression, load_regressions
from tristore_bench.site_page import add_script

PAGES_DIR = "attribution"
LINKS_SCRIPT = "links.js"
CACHE_VERSION = 2  # bumped whenever the rows a page keeps change (ranking, columns)

Sources = Callable[[str], contextlib.AbstractContextManager[Path]]
Profiler = Callable[..., attribution.Profile]


@dataclass(frozen=True)
class Page:
    benchmark: str
    workload: str
    base: str  # full hashes
    head: str
    path: Path
    rows: tuple[attribution.Moved, ...]
    note: str = ""


def _checkout(repo: Path) -> Sources:
    from tristore_bench.gate.run import checkout_src

    def sources(ref: str) -> contextlib.AbstractContextManager[Path]:
        return checkout_src(ref, repo)

    return sources


def _parent(repo: Path, commit: str) -> str:
    return git(repo, "rev-parse", f"{commit}^").strip()


def _cached(cache: Path, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    path = cache / f"{key}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") == CACHE_VERSION:
            return data
    except (OSError, ValueError):
        pass
    data = {"version": CACHE_VERSION, **compute()}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    return data


def _profile_pair(
    workload: str, base: str, head: str, sources: Sources, profile: Profiler
) -> dict[str, Any]:
    try:
        with sources(base) as base_src:
            before = profile(workload, library=base_src)
        with sources(head) as head_src:
            after = profile(workload, library=head_src)
    except (RuntimeError, HarnessError) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return {"rows": [], "note": f"no attribution: {(lines or ['?'])[-1][:300]}"}
    return {"rows": [r.as_dict() for r in attribution.moved(before, after)], "note": ""}


def write_pages(
    html_dir: Path,
    repo: Path,
    *,
    cache: Path | None = None,
    sources: Sources | None = None,
    profile: Profiler = attribution.profile,
    parent: Callable[[str], str] | None = None,
) -> list[Page]:
    """An attribution page per flagged count step in ``html_dir``; the index and the links."""
    regressions = [r for r in load_regressions(html_dir) if _workload(r) is not None]
    out_dir = html_dir / PAGES_DIR
    out_dir.mkdir(exist_ok=True)
    cache = cache or html_dir.parent / "attribution-cache"
    sources = sources or _checkout(repo)
    parent = parent or (lambda commit: _parent(repo, commit))
    pages: list[Page] = []
    for r in regressions:
        workload = str(_workload(r))
        base = r.last_good or parent(r.first_bad)
        key = f"{workload}-{base[:12]}-{r.first_bad[:12]}"

        def compute(w: str = workload, b: str = base, h: str = r.first_bad) -> dict[str, Any]:
            return _profile_pair(w, b, h, sources, profile)

        data = _cached(cache, key, compute)
        rows = tuple(
            attribution.Moved(d["function"], float(d["inclusive"]), float(d["self"]))
            for d in data["rows"]
        )
        page = Page(r.benchmark, workload, base, r.first_bad, out_dir / f"{key}.html", rows,
                    str(data.get("note", "")))  # fmt: skip
        page.path.write_text(_render(page, r), encoding="utf-8")
        pages.append(page)
    index = {f"{p.benchmark}|{p.head}": f"{PAGES_DIR}/{p.path.name}" for p in pages}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    (out_dir / LINKS_SCRIPT).write_text(LINKS_JS, encoding="utf-8")
    return pages


def _workload(r: Regression) -> str | None:
    if not r.benchmark.startswith(counts.COUNT_PREFIX):
        return None
    return counts.benchmark_workload(r.benchmark)


def _render(page: Page, r: Regression) -> str:
    esc = html.escape
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(page.benchmark)} at {page.head[:8]}: Python attribution</title>",
        '<link rel="stylesheet" href="../vendor/bootstrap/dist/css/bootstrap.min.css">',
        '<link rel="icon" href="../swallow.ico">',  # asv's icon: else a 404 for /favicon.ico
        "</head><body><div class='container'>",
        f"<h2>{esc(page.benchmark)}</h2>",
        f"<p>Flagged at <code>{page.head[:8]}</code> (against <code>{page.base[:8]}</code>): "
        f"{r.before:,.1f} &rarr; {r.after:,.1f} instructions per operation "
        f"({r.ratio_text()}).</p>",
        "<p>Where in the Python code: bytecodes each function (<code>module:qualname</code>) "
        "executes per operation of the workload "
        f"<code>{esc(page.workload)}</code>, head minus base; <em>inclusive</em> counts its "
        "callees too. Counted natively under the instruction counts' fixed conditions "
        f"(<code>tristore-bench attribute {esc(page.workload)} --base {page.base[:12]} "
        f"--head {page.head[:12]}</code> reproduces it).</p>",
    ]
    if page.note:
        body = [f"<p class='text-warning'>{esc(page.note)}</p>"]
    elif not page.rows:
        body = ["<p>No Python function's bytecodes moved: the step is below the Python level "
                "(C code, SQLite, Kuzu) or in code the hook does not see.</p>"]  # fmt: skip
    else:
        body = [
            "<table class='table table-condensed' id='attribution'>",
            "<thead><tr><th>Python function</th><th>&Delta; inclusive / op</th>"
            "<th>&Delta; self / op</th></tr></thead><tbody>",
            *(
                f"<tr><td><code>{esc(m.function)}</code></td><td>{m.inclusive:+,.1f}</td>"
                f"<td>{m.self_ops:+,.1f}</td></tr>"
                for m in page.rows
            ),
            "</tbody></table>",
        ]
    tail = ["<p><a href='../index.html#/regressions'>Back to the regressions</a></p>",
            "</div></body></html>"]  # fmt: skip
    return "\n".join([*head, *body, *tail]) + "\n"


# Adds a link to each Regressions-page row that has an attribution page. asv renders the table
# from regressions.json after load; rows are matched by entry name and the flagged commit (the
# last hash of the commit cell, asv's hash_length characters of it).
LINKS_JS = """'use strict';
(function () {
    var index = null;
    function annotate() {
        if (index === null) { return; }
        $('#regressions-body table tbody tr').each(function () {
            var row = $(this);
            if (row.find('a.tristore-attribution').length) { return; }
            var cells = row.find('td');
            var name = cells.eq(0).text().trim();
            var commits = cells.eq(2).text().trim().split('..');
            var head = commits[commits.length - 1];
            if (!head) { return; }
            $.each(index, function (key, page) {
                var parts = key.split('|');
                if (parts[0] === name && parts[1].indexOf(head) === 0) {
                    cells.eq(2).append(' ').append(
                        $('<a class="tristore-attribution"/>').attr('href', page)
                            .text('Python attribution'));
                }
            });
        });
    }
    $(document).ready(function () {
        $.getJSON('attribution/index.json').done(function (data) {
            index = data;
            annotate();
        });
        var body = document.getElementById('regressions-body');
        if (body && window.MutationObserver) {
            new MutationObserver(annotate).observe(body, {childList: true, subtree: true});
        }
    });
})();
"""


def link_from_index(html_dir: Path) -> bool:
    """Load the links script in ``index.html`` (once); True if the page changed."""
    return add_script(
        html_dir / "index.html", f"{PAGES_DIR}/{LINKS_SCRIPT}", "the attribution links"
    )
