#!/usr/bin/env bash
# Cache-sync lag at the specification's rates, full duration, builds alternated one at a time:
# prev = $PREV, head = $HEAD_SRC (each a `git archive` of src/ put first on PYTHONPATH).
set -u
out=${OUT:-/tmp/sync-ab}
dur=${DUR:-240}
rounds=${ROUNDS:-2}
builds=${BUILDS:-prev head}
mkdir -p "$out"
cd /tmp
for r in $(seq 1 "$rounds"); do
  for build in $builds; do
    case $build in prev) pp=$PREV ;; head) pp=$HEAD_SRC ;; esac
    PYTHONPATH=$pp /work/main/.venv/bin/tristore load cache_synchronization \
      --duration "$dur" --json "$out/sync-$build-$r.json" > "$out/sync-$build-$r.txt" \
      2> "$out/sync-$build-$r.progress"
    echo "$build $r rc=$? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
