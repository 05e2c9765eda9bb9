"""How far each series of the site can be trusted: its kind, its noise and its threshold, drawn.

``trust.json``, beside the published pages, is written by :mod:`tristore_bench.asv_publish` once
asv has published, from the :class:`tristore_bench.thresholds.Derivation` asv was given (so the
figures on the graphs are the ones the Regressions page was held to)::

    {"version": 1,
     "kinds": [{"kind": "count", "heading": "Exact counts (gated)", "label": ..., "gated": true},
               ...],                                   # the grid's sections, in order
     "benchmarks": {"<benchmark>": "<kind>", ...},     # every benchmark in benchmarks.json
     "entries": {"<entry>": {"kind", "gated", "noise", "basis", "threshold", "commits"}, ...}}

``noise`` is :attr:`tristore_bench.thresholds.Noise.band` (relative: a count's repeat spread,
else the largest of step, ci and resolution; ``basis`` names which), ``threshold`` the one asv
applies to the entry (:func:`tristore_bench.thresholds.effective_threshold`, overrides
included), ``commits`` how many commits the noise was derived from. Entry names are asv's
(``name`` or ``name(p1, p2)``, the parameters' repr strings as stored).

``trust.js`` (:data:`TRUST_JS`), loaded by ``index.html`` (:func:`link_from_index`), reads it.
asv 0.6.6's pages keep their state in closures; what they expose, and what the script uses:

* ``$.asv.filter_graph_data(raw, x_axis, indices, params)``, which ``graphdisplay.js`` calls
  (through ``$.asv``) to cut each drawn series out of a graph file. The script wraps it and tags
  the returned array with its entry name (``indices[k + 1]`` selects ``params[k]``'s value; the
  benchmark is the one whose ``params`` array this is). Only series over commits are tagged.
* flot's plugin hooks (``$.plot.plugins``), run for every plot; the script acts on
  ``#main-graph`` only. ``processDatapoints`` widens a linear y axis that asv fixed to its data
  so the band and the threshold fit; ``drawBackground`` shades latest value x (1 +/- noise) in
  the series' colour and draws latest value x (1 + threshold) dashed (dotted grey for context,
  where it is not applied); ``draw`` writes the legend above the graph (``#tristore-trust``:
  kind, gated or context, noise, threshold, commits) and keeps what it drew on the placeholder
  (``$('#main-graph').data('tristore-trust')``, for the tests).
* the grid (``summarygrid.js``) builds one ``.benchmark-group`` per module in
  ``#summarygrid-display`` once; a ``MutationObserver`` then moves each benchmark's
  ``a.benchmark-container`` (``href="#<benchmark>"``) under its kind's heading (``.tristore-kind``,
  ``#kind-<kind>``, module subheadings kept), empty kinds left out.

Nothing of asv's is edited: a newer asv that renames these loses the annotations, not the site.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tristore_bench.site_page import add_script
from tristore_bench.thresholds import Derivation, Kind, Noise, kind

__all__ = ["DATA_FILE", "SCRIPT_FILE", "TRUST_JS", "data", "link_from_index", "write_data"]

DATA_FILE = "trust.json"
SCRIPT_FILE = "trust.js"
VERSION = 1


def _basis(n: Noise) -> str | None:
    """Which measured quantity :attr:`Noise.band` is."""
    if n.is_count:
        return "repeat spread" if n.repeat is not None else "unmeasured (assumed spread)"
    candidates = {"step": n.step, "ci": n.ci, "resolution": n.resolution, "re-run": n.rerun}
    present = {name: value for name, value in candidates.items() if value is not None}
    return max(present, key=lambda name: present[name]) if present else None


def data(derived: Derivation, benchmarks: Iterable[str]) -> dict[str, Any]:
    """The content of ``trust.json`` for a derivation and the published benchmarks' names."""
    return {
        "version": VERSION,
        "kinds": [
            {"kind": str(k), "heading": k.heading, "label": k.label, "gated": k.gated} for k in Kind
        ],
        "benchmarks": {name: str(kind(name)) for name in sorted(benchmarks)},
        "entries": {
            n.name: {
                "kind": str(n.kind),
                "gated": derived.gated(n),
                "noise": n.band,
                "basis": _basis(n),
                "threshold": derived.threshold(n.name),
                "commits": n.commits,
            }
            for n in derived.noise
        },
    }


def write_data(html_dir: Path, derived: Derivation, benchmarks: Iterable[str]) -> Path:
    """Write ``html_dir/trust.json``; return its path."""
    path = html_dir / DATA_FILE
    path.write_text(json.dumps(data(derived, benchmarks), indent=1) + "\n", encoding="utf-8")
    return path


def link_from_index(html_dir: Path) -> bool:
    """Write ``trust.js`` and load it in ``index.html`` (once); True if the page changed."""
    (html_dir / SCRIPT_FILE).write_text(TRUST_JS, encoding="utf-8")
    return add_script(html_dir / "index.html", SCRIPT_FILE, "the trust annotations")


TRUST_JS = """'use strict';
/* tristore: how far each series can be trusted (tristore_bench.site_trust; data: trust.json). */
(function ($) {
    var trust = null;
    var GRAPH = 'main-graph';

    function pct(x) {
        if (x === null || x === undefined) { return '-'; }
        var p = 100 * x;
        return (p < 10 ? p.toFixed(1) : p.toFixed(0)) + '%';
    }

    function kindInfo(kind) {
        var found = null;
        $.each(trust.kinds, function (i, k) { if (k.kind === kind) { found = k; } });
        return found || {kind: kind, heading: kind, label: kind, gated: false};
    }

    /* The benchmark whose params array asv passed (graphdisplay passes main_json's own). */
    function benchmarkOf(params) {
        var found = null;
        $.each($.asv.main_json.benchmarks, function (name, bm) {
            if (bm.params === params) { found = name; return false; }
        });
        return found;
    }

    /* asv's entry name for one parameter combination: name(p1, p2), values as stored. */
    function entryName(name, params, indices) {
        if (!params.length) { return name; }
        var values = [];
        for (var k = 0; k < params.length; ++k) {
            var idx = indices[k + 1];
            if (idx === null || idx === undefined) { return null; }
            values.push(params[k][idx]);
        }
        return name + '(' + values.join(', ') + ')';
    }

    /* The last point with a value: [x, y], or null. */
    function lastPoint(data) {
        for (var j = data.length - 1; j >= 0; --j) {
            var y = data[j][1];
            if (y !== null && isFinite(y)) { return data[j]; }
        }
        return null;
    }

    function onGraph(plot) {
        return trust !== null && plot.getPlaceholder().attr('id') === GRAPH;
    }

    /* One drawn series per entry, [{series, entry, info, latest}]: of the series an entry has
       (one per machine or environment) the one measured last, so a stale one draws nothing. */
    function tagged(plot) {
        var out = [];
        var at = {};
        $.each(plot.getData(), function (i, s) {
            var entry = s.data && s.data.tristoreEntry;
            var info = entry ? trust.entries[entry] : null;
            var point = info ? lastPoint(s.data) : null;
            if (!point || !(point[1] > 0)) { return; }
            var t = {series: s, entry: entry, info: info, latest: point[1], x: point[0]};
            if (at[entry] === undefined) {
                at[entry] = out.length;
                out.push(t);
            } else if (point[0] > out[at[entry]].x) {
                out[at[entry]] = t;
            }
        });
        return out;
    }

    function widen(plot, s) {
        if (!onGraph(plot)) { return; }
        var t = null;
        $.each(tagged(plot), function (i, u) { if (u.series === s) { t = u; } });
        var axis = s.yaxis && s.yaxis.options;
        /* A log or relative axis (a transform) keeps asv's range: powers of ten. */
        if (t === null || !axis || axis.transform) { return; }
        var info = t.info;
        var value = t.latest;
        var noise = info.noise || 0;
        var top = value * (1 + Math.max(noise, info.threshold || 0));
        var bottom = value * Math.max(0, 1 - noise);  /* quantities are never negative */
        if (axis.max !== null && axis.max !== undefined && top > axis.max) {
            axis.max = top * 1.02;
        }
        if (axis.min !== null && axis.min !== undefined && bottom < axis.min) {
            axis.min = bottom;
        }
    }

    function drawBands(plot, ctx) {
        if (!onGraph(plot)) { return; }
        var off = plot.getPlotOffset();
        var width = plot.width();
        var drawn = [];
        ctx.save();
        ctx.beginPath();
        ctx.rect(off.left, off.top, width, plot.height());
        ctx.clip();
        $.each(tagged(plot), function (i, t) {
            var axis = t.series.yaxis;
            var y = function (v) { return off.top + axis.p2c(v); };
            var color = $.color.parse(t.series.color);
            var record = {entry: t.entry, latest: t.latest, band: null, threshold: null,
                          gated: t.info.gated};
            if (t.info.noise !== null) {
                var lo = t.latest * Math.max(0, 1 - t.info.noise);
                var hi = t.latest * (1 + t.info.noise);
                ctx.fillStyle = color.scale('a', 0.2).toString();
                ctx.fillRect(off.left, y(hi), width, Math.max(1, y(lo) - y(hi)));
                record.band = [lo, hi];
            }
            if (t.info.threshold !== null) {
                var at = t.latest * (1 + t.info.threshold);
                ctx.strokeStyle = t.info.gated ? $.color.parse(t.series.color).toString() : '#999';
                ctx.setLineDash(t.info.gated ? [6, 4] : [2, 4]);
                ctx.lineWidth = 1.5;
                ctx.beginPath();
                ctx.moveTo(off.left, y(at));
                ctx.lineTo(off.left + width, y(at));
                ctx.stroke();
                record.threshold = at;
            }
            drawn.push(record);
        });
        ctx.restore();
        plot.getPlaceholder().data('tristore-trust', drawn);
    }

    function describe(entry, info) {
        var k = kindInfo(info.kind);
        var noise = info.noise === null ? 'noise unmeasured'
            : 'noise \\u00b1' + pct(info.noise) + (info.basis ? ' (' + info.basis + ')' : '');
        var threshold = 'threshold ' + pct(info.threshold) +
            (info.gated ? '' : ' (not applied)');
        var commits = 'from ' + info.commits + ' commit' + (info.commits === 1 ? '' : 's');
        return [k.label, info.gated ? 'gated' : 'context, not gated', noise, threshold,
                commits].join(' \\u00b7 ');
    }

    function legend(plot) {
        if (!onGraph(plot)) { return; }
        var box = $('#tristore-trust');
        if (!box.length) {
            box = $('<div id="tristore-trust"/>').css({
                position: 'absolute', top: 0, left: 0, right: 0, height: '46px',
                overflow: 'auto', 'font-size': '12px', 'line-height': '15px'
            });
            $('#' + GRAPH).parent().parent().prepend(box);
        }
        box.empty();
        var seen = {};
        $.each(tagged(plot), function (i, t) {
            if (seen[t.entry]) { return; }
            seen[t.entry] = true;
            var line = $('<div class="tristore-trust-entry"/>').attr('data-entry', t.entry);
            line.append($('<span/>').css({color: t.series.color}).text('\\u25a0 '));
            var paren = t.entry.indexOf('(');
            if (paren >= 0) { line.append($('<b/>').text(t.entry.slice(paren) + ' ')); }
            line.append($('<span/>').text(describe(t.entry, t.info)));
            box.append(line);
        });
        if ($.isEmptyObject(seen)) {
            var bm = $('#title').text();
            $.each(trust.entries, function (entry, info) {
                if (entry === bm || entry.indexOf(bm + '(') === 0) {
                    box.append($('<div class="tristore-trust-entry"/>').attr('data-entry', entry)
                        .text(entry.slice(bm.length) + ' ' + describe(entry, info) +
                              ' (bands are drawn over commits only)'));
                }
            });
            return;
        }
        box.append($('<div class="tristore-trust-key"/>').css({color: '#666'}).text(
            'Shaded: the latest value \\u00b1 its measured noise. Dashed: the latest value ' +
            '\\u00d7 (1 + threshold); a lasting step above it is flagged (gated series; ' +
            'dotted for context series, never flagged).'));
    }

    $.plot.plugins.push({
        name: 'tristore-trust',
        version: '1',
        options: {},
        init: function (plot) {
            plot.hooks.processDatapoints.push(widen);
            plot.hooks.drawBackground.push(drawBands);
            plot.hooks.draw.push(legend);
        }
    });

    function regroup() {
        var grid = $('#summarygrid-display');
        if (trust === null || grid.data('tristore-grouped') ||
                !grid.children('.benchmark-group').length) {
            return;
        }
        grid.data('tristore-grouped', true);
        var sections = {};
        var modules = {};
        $.each(trust.kinds, function (i, k) {
            sections[k.kind] = $('<div class="tristore-kind"/>').attr('id', 'kind-' + k.kind)
                .append($('<h1/>').css({'text-align': 'center'}).text(k.heading))
                .append($('<p/>').css({'text-align': 'center', color: '#666'}).text(k.gated
                    ? 'A lasting step above its threshold is flagged.'
                    : 'Shown with its measured noise; never flagged.'));
            modules[k.kind] = {};
        });
        grid.children('.benchmark-group').each(function () {
            var group = $(this);
            var module = group.children('h1').first().text();
            group.children('a.benchmark-container').each(function () {
                var name = $(this).attr('href').slice(1);
                var kind = trust.benchmarks[name] || 'wall';
                if (!sections[kind]) { return; }
                if (!modules[kind][module]) {
                    modules[kind][module] = $('<div class="benchmark-group tristore-module"/>')
                        .attr('data-module', module)
                        .append($('<h3/>').css({'margin-left': '8px'}).text(module));
                    sections[kind].append(modules[kind][module]);
                }
                modules[kind][module].append(this);
            });
            if (!group.children('a.benchmark-container').length) { group.remove(); }
        });
        var at = null;
        $.each(trust.kinds, function (i, k) {
            if ($.isEmptyObject(modules[k.kind])) { return; }
            if (at === null) {
                grid.prepend(sections[k.kind]);
            } else {
                at.after(sections[k.kind]);
            }
            at = sections[k.kind];
        });
        $(window).trigger('scroll');  /* draw the plots now in view (summarygrid.js) */
    }

    $(document).ready(function () {
        var filter = $.asv.filter_graph_data;
        $.asv.filter_graph_data = function (raw, xAxis, indices, params) {
            var series = filter.apply(this, arguments);
            if (xAxis === 0 && series) {
                var name = benchmarkOf(params);
                var entry = name === null ? null : entryName(name, params, indices);
                if (entry !== null) { series.tristoreEntry = entry; }
            }
            return series;
        };
        var grid = document.getElementById('summarygrid-display');
        if (grid && window.MutationObserver) {
            new MutationObserver(regroup).observe(grid, {childList: true});
        }
        $.getJSON('trust.json').done(function (data) {
            trust = data;
            regroup();
            /* A graph drawn before the data came: asv redraws it on resize. */
            if ($('#' + GRAPH).data('plot')) { $(window).trigger('resize'); }
        });
    });
})(jQuery);
"""
