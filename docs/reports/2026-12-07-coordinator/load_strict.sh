#!/usr/bin/env bash
# Base (c334bb6) and head in strict ordering, alternated, one at a time. OUT, ROUNDS and HEAD_SRC
# (a `git archive` of src/ put first on PYTHONPATH) default to what this report ran.
set -u
out=${OUT:-/work/main/docs/reports/2026-12-07-coordinator}
head=${HEAD_SRC:-/work/main/src}
mkdir -p "$out"
cd /tmp
for r in $(seq 1 "${ROUNDS:-1}"); do
  PYTHONPATH=/tmp/base/src /work/main/.venv/bin/tristore load cross_database_coordination \
    --duration 60 --no-progress --json "$out/strict-base-$r.json" > "$out/strict-base-$r.txt" 2>&1; echo "base $r rc=$?"
  TRISTORE_COORDINATOR_ORDERING=strict PYTHONPATH=$head /work/main/.venv/bin/tristore load cross_database_coordination \
    --duration 60 --no-progress --json "$out/strict-head-$r.json" > "$out/strict-head-$r.txt" 2>&1; echo "head $r rc=$?"
done
