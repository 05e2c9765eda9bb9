import sys
from pathlib import Path
from tristore_bench.instructions import parse_functions
a = parse_functions(Path(sys.argv[1]).read_text(errors="replace"))
b = parse_functions(Path(sys.argv[2]).read_text(errors="replace"))
d = {k: b.get(k,0)-a.get(k,0) for k in set(a)|set(b)}
for k,v in sorted(d.items(), key=lambda kv:-abs(kv[1]))[:25]:
    if v: print(f"{v:10d} {k}")
