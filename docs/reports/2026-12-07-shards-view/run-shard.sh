#!/bin/bash
# One shard of the same commits, as a runner of the nightly matrix would run it: its own results
# dir and its own env dir, of a different length for each shard and from the serial run's
# (/tmp/sv-clone/.asv/env): the counted child's view makes the env's path irrelevant.
K=$1; ENV=$2
cd /tmp/sv-clone
start=$(date +%s); echo "start $(date -u +%FT%TZ)"
/work/main/.venv/bin/tristore-bench history HASHFILE:/tmp/sv/commits.txt --shards 2 --shard "$K" \
  --machine tristore-callgrind --bench '^instructions\.' \
  --results-dir /tmp/sv/shard-$K --env-dir "$ENV" --asv-config /tmp/sv/asv.merged.json
rc=$?; end=$(date +%s); echo "end $(date -u +%FT%TZ) rc=$rc wall_s=$((end-start))"
