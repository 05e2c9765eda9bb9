"""Python-level attribution of a count: which ``module:qualname`` moved, and by how much.

Callgrind's per-function table names the interpreter's C functions (``_PyEval_EvalFrameDefault``,
``_PyObject_Free``), not the Python code that a change touched. CPython 3.11 has no perf
trampoline that would put Python frames into callgrind's table, so this counts in Python itself:
each count workload (:mod:`tristore_bench.workloads`) runs natively in a child process, with the
controls of the instruction counts (``PYTHONHASHSEED=0``, the fixed environment and paths, the
settled event loop, the same fixture, the same library), and a ``sys.settrace`` /
``threading.settrace`` hook with ``f_trace_opcodes`` counts the **bytecode instructions** each
Python function executes inside the workload's counted region (the workload's own callgrind
toggles switch the hook's counting on and off instead):

* **self**: the bytecodes executed in the function's own frames;
* **inclusive**: the bytecodes executed from entering one of its frames to leaving it, callees
  included (a coroutine's frame is entered on every resumption, so the time it is suspended is
  not charged to it; recursion is charged once, to the outermost frame).

As for the counts, a workload runs at N and 2N operations and the table is their difference per
operation, so set-up and the fixed cost of the region cancel. Bytecodes are not machine
instructions (a bytecode that calls into SQLite costs far more than one that loads a local), so
this is the second view beside callgrind's C table: it names *where in the Python code* a step
came from, while the count's total says how much. ``tristore-bench attribute W --repeat 3`` shows
whether it repeats: for the pool, SQLite-write, Redis-pipeline and Kuzu point-read workloads
every table is identical (the settled loop's waiting is left out, as callgrind leaves it out:
``CALLGRIND_TOGGLE_COLLECT`` pauses the calling thread's counting); in the coordinated
transaction and the order flow, whose graph batches depend on when Kuzu's worker thread answers,
the event loop's functions and a few coordinator functions move by a fraction of a percent. A
step worth flagging (1% of the count) is far above all of these.

``tristore-bench attribute WORKLOAD --base REF [--head REF]`` prints the functions whose
inclusive and self bytecodes per operation moved most between two libraries.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import click

from tristore_bench import child_view

TOP_K = 8
RUN_TIMEOUT_S = 900.0


# -- the hook (runs in the child) ---------------------------------------------------------------


class _ThreadState:
    """One thread's frame stack and bytecode counter; its bound ``local`` is the frame tracer."""

    __slots__ = ("collect", "counter", "inclusive", "key", "owner", "self_ops", "stack")

    def __init__(self, owner: Tracer) -> None:
        self.owner = owner
        self.collect = True  # off while this thread waits for the others (the settled loop)
        self.counter = 0
        self.stack: list[tuple[CodeType, int]] = []
        self.self_ops = owner.self_ops
        self.inclusive = owner.inclusive
        self.key = owner.key

    def local(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if event == "opcode":
            if self.owner.active and self.collect:
                self.counter += 1
                code = frame.f_code
                self.self_ops[code] = self.self_ops.get(code, 0) + 1
        elif event == "return" and self.stack:
            code, start = self.stack.pop()
            spent = self.counter - start
            # Recursion: only the outermost active frame of a code object is charged.
            if spent and not any(c is code for c, _ in self.stack):
                self.inclusive[code] = self.inclusive.get(code, 0) + spent
        return self.local


class Tracer:
    """Counts bytecodes per code object while ``active`` (switched by the workload's toggles)."""

    def __init__(self) -> None:
        self.active = False
        self.self_ops: dict[CodeType, int] = {}
        self.inclusive: dict[CodeType, int] = {}
        self._names: dict[CodeType, str] = {}
        self._states: dict[int, _ThreadState] = {}
        self._lock = threading.Lock()

    def key(self, code: CodeType, frame: FrameType) -> str:
        name = self._names.get(code)
        if name is None:
            module = frame.f_globals.get("__name__", "?")
            name = self._names[code] = f"{module}:{code.co_qualname}"
        return name

    def _state(self) -> _ThreadState:
        ident = threading.get_ident()
        state = self._states.get(ident)
        if state is None:
            with self._lock:
                state = self._states[ident] = _ThreadState(self)
        return state

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        state = self._state()
        self.key(frame.f_code, frame)
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        state.stack.append((frame.f_code, state.counter))
        return state.local

    def toggle(self, request: int) -> int:
        from tristore_bench import workloads

        if request == workloads.CALLGRIND_START_INSTRUMENTATION:
            self.active = True
        elif request == workloads.CALLGRIND_STOP_INSTRUMENTATION:
            self.active = False
        elif request == workloads.CALLGRIND_TOGGLE_COLLECT:
            # As callgrind's: this thread only, so the settled loop's waiting (how many polls
            # a busy machine takes) stays out of the table while the other threads' work counts.
            state = self._state()
            state.collect = not state.collect
        return 0

    def table(self) -> dict[str, dict[str, int]]:
        """``{"self": {key: n}, "inclusive": {key: n}}``, code objects of one name merged."""
        out: dict[str, dict[str, int]] = {"self": {}, "inclusive": {}}
        for kind, counts in (("self", self.self_ops), ("inclusive", self.inclusive)):
            for code, n in counts.items():
                name = self._names.get(code, f"?:{code.co_qualname}")
                out[kind][name] = out[kind].get(name, 0) + n
        return out


def _child(workload: str, n: int, outfile: str) -> int:
    from tristore_bench import workloads

    tracer = Tracer()
    # The workload's region toggles drive the hook instead of callgrind.
    workloads._client_request = tracer.toggle  # type: ignore[assignment]
    threading.settrace(tracer.global_trace)
    sys.settrace(tracer.global_trace)
    try:
        code = workloads.main([workload, str(n)])
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
    Path(outfile).write_text(json.dumps({"n": n, **tracer.table()}, sort_keys=True))
    return code


# -- running (the parent) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Bytecodes per operation of every Python function of one workload on one library."""

    workload: str
    n: int
    self_ops: dict[str, float] = field(repr=False)
    inclusive: dict[str, float] = field(repr=False)


def _per_op(small: Mapping[str, int], large: Mapping[str, int], n: int) -> dict[str, float]:
    keys = {*small, *large}
    return {k: (large.get(k, 0) - small.get(k, 0)) / n for k in sorted(keys)}


def _run_child(
    workload: str, n: int, run_dir: Path, fixture: Path | None, view: child_view.View
) -> dict[str, Any]:
    from tristore_bench import instructions

    outfile = run_dir / "profile.json"
    extra = {"TRISTORE_BENCH_FIXTURE": str(fixture)} if fixture else {}
    env = instructions.child_environment(run_dir, view, extra)
    argv = [view.python, "-m", "tristore_bench.attribution", "child"]
    done = subprocess.run(
        [*argv, workload, str(n), str(outfile)],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    marker = f"tristore-bench workload {workload} ran {n} operations"
    if done.returncode != 0 or marker not in done.stdout or not outfile.exists():
        raise RuntimeError(
            f"attribution of {workload} (n={n}) failed (exit {done.returncode}):\n"
            f"{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        )
    data: dict[str, Any] = json.loads(outfile.read_text())
    return data


def profile(workload: str, n: int | None = None, *, library: Path | None = None) -> Profile:
    """Bytecodes per operation by function: ``n`` and ``2n`` operations, one after the other."""
    from tristore_bench import instructions
    from tristore_bench.workloads import WORKLOADS

    n = n or WORKLOADS[workload].default_n
    root = instructions.scratch_root()
    try:
        fixture = instructions.prepare_fixture(workload, root, library)
        view = instructions.children_view(root, library)
        runs = []
        for label, size in (("a", n), ("b", 2 * n)):
            run_dir = root / label
            run_dir.mkdir()
            runs.append(_run_child(workload, size, run_dir, fixture, view))
        small, large = runs
        return Profile(
            workload,
            n,
            _per_op(small["self"], large["self"], n),
            _per_op(small["inclusive"], large["inclusive"], n),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Moved:
    """One Python function whose bytecodes per operation moved between two libraries."""

    function: str  # module:qualname
    inclusive: float  # head minus base, per operation
    self_ops: float

    def as_dict(self) -> dict[str, Any]:
        return {"function": self.function, "inclusive": self.inclusive, "self": self.self_ops}


PROJECT_PREFIX = "tristore."  # the library's modules (not tristore_bench, the harness)


def is_project(function: str) -> bool:
    return function.startswith(PROJECT_PREFIX)


def moved(base: Profile, head: Profile, k: int = TOP_K) -> list[Moved]:
    """The ``k`` functions whose bytecodes per operation moved most, the library's first.

    The library's functions (``tristore.*``) lead, by inclusive change: the entry point a change
    sits under first (``SQLiteStore.execute``), then the callees that carry it. The others
    (asyncio, the standard library, the harness) follow by self change: every frame up to the
    event loop moves in the inclusive column, so only their own work says anything. Either
    direction; ties by name, so the order is the same every run; functions that did not move
    are left out.
    """
    names = {*base.inclusive, *head.inclusive, *base.self_ops, *head.self_ops}
    rows = [
        Moved(
            name,
            head.inclusive.get(name, 0.0) - base.inclusive.get(name, 0.0),
            head.self_ops.get(name, 0.0) - base.self_ops.get(name, 0.0),
        )
        for name in names
    ]
    rows = [r for r in rows if r.inclusive or r.self_ops]

    def rank(r: Moved) -> tuple[int, float, float, str]:
        if is_project(r.function):
            return (0, -abs(r.inclusive), -abs(r.self_ops), r.function)
        return (1, -abs(r.self_ops), -abs(r.inclusive), r.function)

    rows.sort(key=rank)
    return rows[:k]


def repeat_spread(profiles: Sequence[Profile]) -> list[tuple[str, float, float]]:
    """(function, lowest, highest) self bytecodes per op of the functions whose repeats differ.

    Ordered by how far apart, then by name. What varies, where anything does, is the event
    loop's polling (how many polls found a reply already there), not the library's code.
    """
    names = sorted({name for p in profiles for name in p.self_ops})
    varying = []
    for name in names:
        values = [p.self_ops.get(name, 0.0) for p in profiles]
        if min(values) != max(values):
            varying.append((name, min(values), max(values)))
    varying.sort(key=lambda row: (-(row[2] - row[1]), row[0]))
    return varying


def markdown_table(rows: Sequence[Moved]) -> list[str]:
    """The rows as a Markdown table (the gate report's and the site's)."""
    lines = [
        "| Python function (module:qualname) | Δ inclusive / op | Δ self / op |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{r.function}` | {r.inclusive:+,.1f} | {r.self_ops:+,.1f} |" for r in rows]
    return lines


@click.command("attribute")
@click.argument("workload")
@click.option("--base", "base_ref", metavar="REF", help="Base commit (its src/, git archive).")
@click.option("--head", "head_ref", metavar="REF", help="Head commit (default: the working tree).")
@click.option("--n", "n", type=click.IntRange(1, 100_000), default=None, help="Smaller batch.")
@click.option(
    "--repeat",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Profile head this many times and report whether every table repeats exactly.",
)
@click.option("--top", "k", type=click.IntRange(1, 100), default=TOP_K, show_default=True)
def command(
    workload: str, base_ref: str | None, head_ref: str | None, n: int | None, repeat: int, k: int
) -> None:
    """Bytecodes per operation by Python function (module:qualname), or base vs head."""
    import contextlib

    from tristore_bench.gate.run import GateError, checkout_src, describe, repo_root
    from tristore_bench.workloads import WORKLOADS

    if workload not in WORKLOADS:
        raise click.BadParameter(f"expected one of {', '.join(WORKLOADS)}", param_hint="WORKLOAD")
    try:
        root = repo_root()
        with contextlib.ExitStack() as stack:

            def source(ref: str | None) -> tuple[Path, str]:
                if ref is None:
                    return root / "src", "working tree"
                return stack.enter_context(checkout_src(ref, root)), describe(ref, root)

            head_src, head_desc = source(head_ref)
            heads = [profile(workload, n, library=head_src) for _ in range(repeat)]
            if repeat > 1:
                total = sum(heads[0].self_ops.values())
                varying = repeat_spread(heads)
                summary = (
                    "every table identical"
                    if not varying
                    else f"{len(varying)} function(s) vary: "
                    + ", ".join(f"{name} (self {lo:g}..{hi:g})" for name, lo, hi in varying[:4])
                )
                click.echo(
                    f"{workload} at {head_desc}: {repeat} profiles, {total:,.1f} bytecodes/op; "
                    + summary
                )
            if base_ref is None:
                rows = sorted(heads[0].inclusive.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
                click.echo(f"{'inclusive/op':>14} {'self/op':>10}  function ({head_desc})")
                for name, value in rows:
                    own = heads[0].self_ops.get(name, 0.0)
                    click.echo(f"{value:>14,.1f} {own:>10,.1f}  {name}")
                return
            base_src, base_desc = source(base_ref)
            base = profile(workload, n, library=base_src)
            click.echo(f"{workload}: {base_desc} -> {head_desc}, bytecodes per operation")
            click.echo("\n".join(markdown_table(moved(base, heads[0], k))))
    except (GateError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 4 and args[0] == "child":
        return _child(args[1], int(args[2]), args[3])
    print("usage: python -m tristore_bench.attribution child WORKLOAD N OUTFILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
