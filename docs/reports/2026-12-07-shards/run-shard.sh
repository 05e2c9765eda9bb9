#!/bin/bash
# One shard of the range, as a runner of the nightly matrix would run it: its own results dir and
# its own asv env dir (two shards run side by side here); the record it completes is
# /tmp/shard-runs/merged (asv.merged.json's results_dir), empty before the merge.
K=$1
cd /tmp/shard-demo
export HOME=/tmp/shard-runs/home
start=$(date +%s)
echo "start $(date -u +%FT%TZ)"
/work/main/.venv/bin/tristore-bench history 0f1c38c..869c309 --shards 2 --shard "$K" \
  --machine tristore-callgrind --bench '^instructions\.' \
  --results-dir /tmp/shard-runs/shard-$K --env-dir /tmp/shard-runs/env-$K \
  --asv-config /tmp/shard-runs/asv.merged.json
rc=$?
end=$(date +%s)
echo "end $(date -u +%FT%TZ) rc=$rc wall_s=$((end-start))"
