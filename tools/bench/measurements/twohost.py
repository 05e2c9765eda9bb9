# Run from a worktree of the commit to count (see two-hosts-instructions.txt).
"""Count workloads of commit 1c9db77 with that commit's own tools, on this VM (two-host check)."""

import sys, subprocess, tempfile, platform
from pathlib import Path
from tristore_bench import instructions

commit = subprocess.run(
    ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
).stdout.strip()
pinned = Path(tempfile.mkdtemp(prefix="tsb-lib-"))
archive = subprocess.run(["git", "archive", commit, "src"], capture_output=True, check=True)
subprocess.run(["tar", "-x", "-C", str(pinned)], input=archive.stdout, check=True)
print("host os:", platform.platform(), "valgrind", instructions.valgrind_version())
print("library and tools: commit", commit)
for name in sys.argv[1:]:
    r = instructions.measure(name, library=pinned / "src")
    print(
        f"{name}: n={r.n} per_op={r.per_op:.1f} I(n)={r.small.instructions} I(2n)={r.large.instructions} wall={r.small.seconds:.1f}s/{r.large.seconds:.1f}s",
        flush=True,
    )
