#!/usr/bin/env bash
# Alternating builds of tristore load cross_database_coordination, one at a time.
# base = c334bb6 (a git worktree at /tmp/base, put first on PYTHONPATH), head = the working tree.
set -u
out=${OUT:-/work/main/docs/reports/2026-12-07-coordinator}
dur=${DUR:-60}
rounds=${ROUNDS:-2}
cd /tmp
for r in $(seq 1 "$rounds"); do
  for build in base head; do
    if [ "$build" = base ]; then pp=/tmp/base/src; else pp=/work/main/src; fi
    PYTHONPATH=$pp /work/main/.venv/bin/tristore load cross_database_coordination \
      --duration "$dur" --no-progress --json "$out/load-$build-$r.json" > "$out/load-$build-$r.txt" 2>&1
    echo "$build $r rc=$?"
  done
done
