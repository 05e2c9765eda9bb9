#!/bin/bash
# The reference: one plain asv run over the range, serially, into its own results dir.
cd /tmp/shard-demo
export HOME=/tmp/shard-runs/home
start=$(date +%s)
echo "start $(date -u +%FT%TZ)"
/work/main/.venv/bin/asv run --config /tmp/shard-runs/asv.serial.json --machine tristore-callgrind \
  --bench '^instructions\.' --show-stderr --skip-existing-commits 0f1c38c..869c309
rc=$?
end=$(date +%s)
echo "end $(date -u +%FT%TZ) rc=$rc wall_s=$((end-start))"
