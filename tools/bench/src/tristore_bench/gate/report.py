"""Markdown reports of the gate and of its calibration, fit for a pull-request comment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tristore_bench.gate.instructions import InstrComparison, InstrSection
from tristore_bench.gate.stats import Comparison, Policy, cv

MARKER = "<!-- tristore-perf-gate -->"  # lets the workflow update its own comment in place

_ICONS = {
    "regression": "❌ regression",
    "improvement": "🚀 faster",
    "unchanged": "✅ unchanged",
    "inconclusive": "⚠️ inconclusive",
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


def fmt_interval(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "-"
    if low <= 0 or math.isinf(high):
        return "(too few rounds)"
    return f"{low:.3f}-{high:.3f}"


def fmt_ratio(r: float) -> str:
    return "-" if math.isnan(r) else f"{r:.3f}"


def fmt_count(count: float) -> str:
    """Instructions per operation, to the precision a count repeats to (about 0.1%)."""
    if math.isnan(count):
        return "-"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.4g}{unit}"
    return f"{count:.4g}"


def fmt_delta(delta: float) -> str:
    return ("+" if delta > 0 else "") + (fmt_count(delta) if delta else "0")


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
    instructions: InstrSection | None = None  # None: --no-instructions

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    @property
    def instr_regressions(self) -> list[InstrComparison]:
        return self.instructions.regressions if self.instructions else []

    @property
    def inconclusive(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "inconclusive"]


def gate_markdown(s: GateSummary) -> str:
    p = s.policy
    bad = s.regressions
    unsure = s.inconclusive
    worse = [f"`{short(c.name)}` x{c.ratio:.2f}" for c in bad] + [
        f"`{c.name}` x{c.ratio:.3f} instructions" for c in s.instr_regressions
    ]
    title = (
        f"❌ {len(worse)} regression{'s' if len(worse) != 1 else ''}: " + ", ".join(worse)
        if worse
        else "✅ no regression"
    )
    if unsure:
        title += f" · ⚠️ {len(unsure)} inconclusive"
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
        "| benchmark | base | head | ratio | interval | p-value (Holm) | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in s.comparisons:
        lines.append(
            f"| `{short(c.name)}` | {fmt_time(c.base_s)} | {fmt_time(c.head_s)} | "
            f"{fmt_ratio(c.ratio)} | {fmt_interval(c.low, c.high)} | {fmt_p(c.p_value)} | "
            f"{_ICONS[c.verdict]}" + (f" ({c.note})" if c.note else "") + " |"
        )
    lines += [
        "",
        f"Times are per operation: the median over rounds of each round's {stat}. "
        f"**ratio** = head/base (Hodges-Lehmann); **interval**: its distribution-free "
        f"(Moses) interval, each side at {p.alpha:g} / (2 x benchmarks x {p.looks} looks), "
        f"so the chance of any false verdict in this gate stays below {p.alpha:g}. "
        f"Rounds continue (looks at {p.min_rounds}, then every {p.look_every}, up to "
        f"{p.max_rounds} per side, within the budget) until each verdict settles: "
        f"**regression** = interval above 1 and ratio ≥ {p.margin:.3f}; **improvement** the "
        f"mirror image; **unchanged** = interval inside ({1 / p.threshold:.3f}, "
        f"{p.threshold:g}); otherwise **inconclusive**: the noise was too high to tell a "
        f"{(p.threshold - 1) * 100:.0f}% change in the rounds run. Inconclusive exits 0 "
        f"(3 with --fail-on-inconclusive). The p-value (one-sided Mann-Whitney U on the "
        f"per-round values, Holm-adjusted) is for reference.",
    ]
    for note in s.notes:
        lines += ["", f"> {note}"]
    if s.instructions is not None:
        lines += instructions_markdown(s.instructions)
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


def instructions_markdown(section: InstrSection) -> list[str]:
    """The second table: callgrind counts per operation, base vs head, and where they moved."""
    lines = ["", "### Instructions (callgrind, deterministic)", ""]
    if section.skipped:
        return [*lines, f"{_ICONS['skipped']}: {section.skipped}"]
    pct = section.threshold * 100
    if section.injected:
        lines += [f"> ⚠️ test-only extra instructions injected into head: {section.injected}", ""]
    lines += [
        "| workload | n | base | head | ratio | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in section.comparisons:
        lines.append(
            f"| `{c.name}` | {c.n} | {fmt_count(c.base)} | {fmt_count(c.head)} | "
            f"{'-' if math.isnan(c.ratio) else f'{c.ratio:.4f}'} | {_ICONS[c.verdict]}"
            + (f" ({c.note})" if c.note else "")
            + (
                f" (injected: {c.injected_iterations} loop iterations/op = "
                f"+{c.injected_per_op / c.base * 100:.2f}%)"
                if c.injected_iterations
                else ""
            )
            + " |"
        )
    lines += [
        "",
        f"Instructions per operation under valgrind's callgrind (`(I(2n) - I(n)) / n`, ASLR off, "
        f"fixed environment; valgrind {section.valgrind or '?'}), {section.seconds:.0f} s for "
        f"both sides. A count repeats to within a fraction of a percent, so there is no "
        f"significance test: **regression** = head/base > {1 + section.threshold:g}, "
        f"**improvement** < {1 - section.threshold:g} (threshold {pct:g}%), else **unchanged**. "
        "Interpreter-level C functions are what callgrind sees, not Python functions.",
    ]
    python = [c for c in section.comparisons if c.python_top or c.python_note]
    if python:
        lines += [
            "",
            "**Where in the Python code** (bytecodes executed per operation by each "
            "`module:qualname`, head minus base; inclusive = with its callees; counted natively "
            "under the same fixed conditions, `tristore-bench attribute`):",
            "",
        ]
        for c in python:
            lines += [f"**`{c.name}`** ({_ICONS[c.verdict]}, x{c.ratio:.4f})", ""]
            if c.python_note:
                lines += [c.python_note, ""]
                continue
            lines += [
                "| Python function | Δ inclusive / op | Δ self / op |",
                "|---|---:|---:|",
            ]
            lines += [
                f"| `{name}` | {fmt_delta(incl)} | {fmt_delta(own)} |"
                for name, incl, own in c.python_top
            ]
            lines.append("")
    moved = [c for c in section.comparisons if c.top]
    if moved:
        lines += [
            "",
            "<details><summary>Where the instructions went in C (callgrind's top functions by "
            "per-operation self-instruction change, head minus base)</summary>",
            "",
        ]
        for c in moved:
            lines += [f"**`{c.name}`** ({_ICONS[c.verdict]}, x{c.ratio:.4f})", ""]
            lines += ["| function | Δ per op |", "|---|---:|"]
            lines += [f"| `{name}` | {fmt_delta(delta)} |" for name, delta in c.top]
            lines.append("")
        lines.append("</details>")
    return lines
