#!/usr/bin/env bash
# Alternating builds of a load scenario (default cross_database_coordination), one at a time, each
# with its progress lines (one per second) kept for the per-10 s windows.
# base = c334bb6 (the issue's reference), prev = $PREV (default ee9a0c2's src, before the
# repeat-purchase change; the edge runs used PREV=/tmp/prev2/src, a7c7eb2's),
# head = $HEAD_SRC (default the working tree, /work/main/src); each a `git archive` of src/ put
# first on PYTHONPATH. SCENARIO and PREFIX (of the output files, default "load") choose another
# scenario, e.g. SCENARIO=cache_synchronization PREFIX=sync DUR=240 BUILDS="prev head".
set -u
out=${OUT:-/tmp/l26/ab}
dur=${DUR:-60}
rounds=${ROUNDS:-2}
builds=${BUILDS:-base prev head}
scenario=${SCENARIO:-cross_database_coordination}
prefix=${PREFIX:-load}
mkdir -p "$out"
cd /tmp
for r in $(seq 1 "$rounds"); do
  for build in $builds; do
    case $build in base) pp=/tmp/base/src ;; prev) pp=${PREV:-/tmp/prev/src} ;; head) pp=${HEAD_SRC:-/work/main/src} ;; esac
    PYTHONPATH=$pp /work/main/.venv/bin/tristore load "$scenario" \
      --duration "$dur" --json "$out/$prefix-$build-$r.json" > "$out/$prefix-$build-$r.txt" \
      2> "$out/$prefix-$build-$r.progress"
    echo "$build $r rc=$? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
