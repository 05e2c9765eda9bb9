"""Per-op self instructions by C function: run A vs run B (each: DIR with WORKLOAD-N and -2N files)."""
import sys
from pathlib import Path

from tristore_bench.instructions import parse_functions


def per_op(d: Path) -> tuple[dict[str, float], int]:
    files = sorted(d.glob("*.callgrind"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    n = int(files[0].stem.rsplit("-", 1)[1])
    small, large = (parse_functions(f.read_text(errors="replace")) for f in files)
    return {k: (large.get(k, 0) - small.get(k, 0)) / n for k in {*small, *large}}, n


a, _ = per_op(Path(sys.argv[1]))
b, _ = per_op(Path(sys.argv[2]))
diff = {k: b.get(k, 0) - a.get(k, 0) for k in {*a, *b}}
print(f"total A {sum(a.values()):,.1f}  B {sum(b.values()):,.1f}  B-A {sum(diff.values()):+,.1f}")
for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:25]:
    print(f"{v:+12.1f}  {k}")
