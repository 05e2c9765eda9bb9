#!/usr/bin/env bash
# Base (c334bb6) and head in strict ordering, alternated, one at a time.
set -u
out=/work/main/docs/reports/2026-12-07-coordinator
cd /tmp
for r in 1; do
  PYTHONPATH=/tmp/base/src /work/main/.venv/bin/tristore load cross_database_coordination \
    --duration 60 --no-progress --json "$out/strict-base-$r.json" > "$out/strict-base-$r.txt" 2>&1; echo "base $r rc=$?"
  TRISTORE_COORDINATOR_ORDERING=strict PYTHONPATH=/work/main/src /work/main/.venv/bin/tristore load cross_database_coordination \
    --duration 60 --no-progress --json "$out/strict-head-$r.json" > "$out/strict-head-$r.txt" 2>&1; echo "head $r rc=$?"
done
