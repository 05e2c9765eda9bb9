#!/bin/bash
# The reference, and the project's new count history: one plain asv run over the 11 commits,
# serially, into the clone's results/ (the committed history), env under the clone's .asv/env.
# No --skip-existing-commits: the record holds these commits under the previous count version,
# which asv counts as existing and skips (serial-skip-existing.log: the first attempt ran 2 of 11).
cd /tmp/sv-clone
start=$(date +%s); echo "start $(date -u +%FT%TZ)"
/work/main/.venv/bin/asv run --config /tmp/sv/asv.serial.json --machine tristore-callgrind \
  --bench '^instructions\.' --show-stderr HASHFILE:/tmp/sv/commits.txt
rc=$?; end=$(date +%s); echo "end $(date -u +%FT%TZ) rc=$rc wall_s=$((end-start))"
