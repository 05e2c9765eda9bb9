"""Markdown reports of the gate and of its calibration, fit for a pull-request comment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tristore_bench.gate.stats import Comparison, Policy, cv

MARKER = "<!-- tristore-perf-gate -->"  # lets the workflow update its own comment in place

_ICONS = {
    "regression": "❌ regression",
    "improvement": "🚀 faster",
    "unchanged": "✅ unchanged",
    "new": "🆕 new",
    "removed": "not in head",
    "skipped": "⏭ skipped",
    "error": "⚠️ error",
}


def fmt_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def fmt_ratio(r: float) -> str:
    return "-" if math.isnan(r) else f"{r:.3f}"


def short(name: str) -> str:
    return name.removeprefix("test_")


@dataclass
class GateSummary:
    base: str
    head: str
    rounds: tuple[int, int]
    seconds: float
    policy: Policy
    comparisons: Sequence[Comparison]
    compare_text: str = ""
    notes: Sequence[str] = ()
    injected: str = ""

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]


def gate_markdown(s: GateSummary) -> str:
    p = s.policy
    bad = s.regressions
    title = (
        f"❌ {len(bad)} regression{'s' if len(bad) != 1 else ''}: "
        + ", ".join(f"`{short(c.name)}` x{c.ratio:.2f}" for c in bad)
        if bad
        else "✅ no regression"
    )
    stat = "min" if p.quantile == 0 else f"p{p.quantile * 100:g}"
    lines = [
        MARKER,
        f"## tristore perf gate: {title}",
        "",
        f"**base** `{s.base}` · **head** `{s.head}` · {s.rounds[0]}+{s.rounds[1]} rounds "
        f"(one pytest process each, interleaved ABBA) · {s.seconds:.0f} s",
    ]
    if s.injected:
        lines += ["", f"> ⚠️ test-only slowdown injected into head: {s.injected}"]
    lines += [
        "",
        "| benchmark | base | head | ratio | p-value (Holm) | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in s.comparisons:
        lines.append(
            f"| `{short(c.name)}` | {fmt_time(c.base_s)} | {fmt_time(c.head_s)} | "
            f"{fmt_ratio(c.ratio)} | {fmt_p(c.p_value)} | {_ICONS[c.verdict]}"
            + (f" ({c.note})" if c.note else "")
            + " |"
        )
    lines += [
        "",
        f"Times are per operation: the median over rounds of each round's {stat}. "
        f"**ratio** = head/base (Hodges-Lehmann); **p-value** = one-sided Mann-Whitney U on "
        f"the per-round values, in the direction of the change, Holm-adjusted over the "
        f"benchmarks compared. A regression needs ratio ≥ {p.threshold:g} **and** "
        f"p < {p.alpha:g}; an improvement ratio ≤ {1 / p.threshold:.3f} and p < {p.alpha:g}.",
    ]
    for note in s.notes:
        lines += ["", f"> {note}"]
    if s.compare_text:
        lines += [
            "",
            "<details><summary>pytest-benchmark compare (all samples of each side pooled, "
            "per operation)</summary>",
            "",
            "```",
            s.compare_text,
            "```",
            "",
            "</details>",
        ]
    cvs = [
        f"`{short(c.name)}` {cv(c.base) * 100:.1f}% / {cv(c.head) * 100:.1f}%"
        for c in s.comparisons
        if c.base and c.head
    ]
    if cvs:
        lines += [
            "",
            "<details><summary>Noise in this run (round-to-round CV, base / head)</summary>",
            "",
            ", ".join(cvs),
            "",
            "Calibrated false-verdict and detection rates: `tristore-bench gate --calibrate`.",
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"
