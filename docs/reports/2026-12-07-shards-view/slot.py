import sys, os
from pathlib import Path
sys.path.insert(0, "/work/main/tools/bench/src")
from tristore_bench import instructions as ins
slot = int(sys.argv[1]); w = sys.argv[2]
held = []
orig = ins.scratch_root
def pick():
    # take slot `slot` (or the next free from it): hold the lower ones meanwhile
    while True:
        r = orig()
        if int(r.name[4:]) >= slot:
            return r
        held.append(r)
ins.scratch_root = pick
try:
    for i in range(2):
        c = ins.measure(w)
        print(w, "slot", slot, c.per_op, c.small.instructions, c.large.instructions, flush=True)
finally:
    for h in held: h.rmdir()
