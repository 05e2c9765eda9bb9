#!/bin/bash
# rec.sh: the committed record, all six workloads x6 at HEAD of a clean clone of main
# (/tmp/settle-rec), under two busy loops, into that clone's tools/bench/count-noise.json.
set -u
OUT=/tmp/settle-runs; LABEL=record-loaded
cd /tmp/settle-rec
LOADPIDS=()
for i in 1 2; do nice -n 0 python3 -c 'while True: pass' & LOADPIDS+=($!); done
echo "load pids ${LOADPIDS[*]}" > $OUT/$LABEL.loadpids
( while true; do echo "$(date +%T) $(cat /proc/loadavg)"; sleep 20; done ) > $OUT/$LABEL.load & SAMPLER=$!
cleanup() { kill $SAMPLER 2>/dev/null; for p in "${LOADPIDS[@]}"; do kill $p 2>/dev/null; done; }
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) clean clone of main at $(git rev-parse --short HEAD), two busy loops, cwd=$PWD" > $OUT/$LABEL.log
echo "# tristore-bench count-noise --repeat 6" >> $OUT/$LABEL.log
START=$(date +%s)
PYTHONPATH=/tmp/settle-rec/tools/bench/src /work/main/.venv/bin/tristore-bench count-noise --repeat 6 >> $OUT/$LABEL.log 2>&1
RC=$?
echo "# exit $RC after $(( $(date +%s) - START )) s, $(date -u +%FT%TZ)" >> $OUT/$LABEL.log
exit $RC
