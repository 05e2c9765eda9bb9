#!/usr/bin/env bash
# Concurrency hold-out: main, then half a millisecond more under the SQLite lane per coordinated
# commit, then two docs-only commits that carry it (a ratio series needs three commits after a step).
set -euo pipefail
rm -rf /tmp/concholdout/repo
git clone -q /work/main /tmp/concholdout/repo
cd /tmp/concholdout/repo
git checkout -q -b holdout
python3 - <<'PY'
p = "src/tristore/coordinator/transaction.py"
s = open(p).read()
old = "        await self._release_lane()\n        if strict is not None and abandoned:"
assert old in s
s = s.replace(old, "        await asyncio.sleep(0.0005)  # hold-out: longer under the lane\n" + old, 1)
if "\nimport asyncio\n" not in s:
    s = s.replace("from __future__ import annotations\n", "from __future__ import annotations\n\nimport asyncio\n", 1)
open(p, "w").write(s)
PY
git commit -q -am "hold-out: half a millisecond more under the SQLite lane per coordinated commit"
echo "x" >> docs/index.md && git commit -q -am "hold-out: docs only (1)"
echo "y" >> docs/index.md && git commit -q -am "hold-out: docs only (2)"
git log --oneline -4
