#!/bin/bash
# The committed count history (the clone's results/ at 869c309: benchmarks.json and
# tristore-callgrind/, 58 files) with the 12 new commits added two ways:
#   rec-<serial>: the serial run's files copied in (what asv run into that results dir writes:
#                 one new file per commit, benchmarks.json and machine.json rewritten);
#   rec-merged:   the two shards merged in by tristore-bench merge-results.
set -e
SERIAL=${1:-serial}
cd /tmp/shard-runs
rm -rf rec-$SERIAL rec-merged
for d in rec-$SERIAL rec-merged; do
  mkdir -p $d && cp /tmp/shard-demo/results/benchmarks.json $d/ && cp -r /tmp/shard-demo/results/tristore-callgrind $d/
done
cp $SERIAL/benchmarks.json rec-$SERIAL/
cp $SERIAL/tristore-callgrind/*.json rec-$SERIAL/tristore-callgrind/
echo '$ tristore-bench merge-results shard-1 shard-2 --into rec-merged'
/work/main/.venv/bin/tristore-bench merge-results shard-1 shard-2 --into rec-merged || {
  echo "exit $?"
  echo '$ tristore-bench merge-results shard-1 shard-2 --into rec-merged --replace-metadata'
  /work/main/.venv/bin/tristore-bench merge-results shard-1 shard-2 --into rec-merged --replace-metadata
}
