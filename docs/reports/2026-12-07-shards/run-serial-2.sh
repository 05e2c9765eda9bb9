#!/bin/bash
# The reference again: one plain asv run over the range, serially, into its own results dir, with
# its asv env in /tmp/shard-runs/env-1 (shard 1's env dir: the same path as shard 1 and the same
# length as shard 2's /tmp/shard-runs/env-2), since the env's path enters the counted process.
cd /tmp/shard-demo
export HOME=/tmp/shard-runs/home
start=$(date +%s)
echo "start $(date -u +%FT%TZ)"
/work/main/.venv/bin/asv run --config /tmp/shard-runs/asv.serial-2.json --machine tristore-callgrind \
  --bench '^instructions\.' --show-stderr --skip-existing-commits 0f1c38c..869c309
rc=$?
end=$(date +%s)
echo "end $(date -u +%FT%TZ) rc=$rc wall_s=$((end-start))"
