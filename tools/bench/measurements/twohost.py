"""Count workloads of the checked-out commit with that commit's own tools (two-host check).

Run from a worktree of the commit to count, with its tools first on the path:
    PYTHONPATH=$WORKTREE/tools/bench/src .venv/bin/python tools/bench/measurements/twohost.py \
        WORKLOAD...
The library is a ``git archive`` snapshot of the worktree's ``src``; see
``two-hosts-instructions.txt`` for the comparison it was made for.
"""

from __future__ import annotations

import platform
import sys

from stability import pinned_library  # this folder, as scripts run from it see it

from tristore_bench import instructions


def main(names: list[str]) -> None:
    commit, library = pinned_library()
    print("host os:", platform.platform(), "valgrind", instructions.valgrind_version())
    print("library and tools: commit", commit)
    for name in names:
        r = instructions.measure(name, library=library)
        print(
            f"{name}: n={r.n} per_op={r.per_op:.1f} I(n)={r.small.instructions} "
            f"I(2n)={r.large.instructions} wall={r.small.seconds:.1f}s/{r.large.seconds:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
