#!/bin/bash
# run.sh VARIANT LABEL LOAD BENCH REPEAT [--file PATH]: one count-noise run of a variant's
# counting code (/tmp/settle-VARIANT/tools/bench/src) on library commit $LIB, optionally under
# two busy loops (LOAD=1), with the load average sampled every 20 s.
set -u
VARIANT=$1; LABEL=$2; LOAD=$3; BENCH=$4; REPEAT=$5; shift 5
LIB=cf48b6dc1fb6
OUT=/tmp/settle-runs
cd /tmp/settle-$VARIANT
LOADPIDS=()
if [ "$LOAD" = 1 ]; then
  for i in 1 2; do nice -n 0 python3 -c 'while True: pass' & LOADPIDS+=($!); done
  echo "load pids ${LOADPIDS[*]}" > $OUT/$LABEL.loadpids
fi
( while true; do echo "$(date +%T) $(cat /proc/loadavg)"; sleep 20; done ) > $OUT/$LABEL.load & SAMPLER=$!
cleanup() { kill $SAMPLER 2>/dev/null; for p in "${LOADPIDS[@]}"; do kill $p 2>/dev/null; done; }
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) variant=$VARIANT load=$LOAD cwd=$PWD PYTHONPATH=/tmp/settle-$VARIANT/tools/bench/src" > $OUT/$LABEL.log
echo "# tristore-bench count-noise --repeat $REPEAT --bench '$BENCH' --commit $LIB $*" >> $OUT/$LABEL.log
START=$(date +%s)
PYTHONPATH=/tmp/settle-$VARIANT/tools/bench/src /work/main/.venv/bin/tristore-bench count-noise \
  --repeat "$REPEAT" --bench "$BENCH" --commit $LIB "$@" >> $OUT/$LABEL.log 2>&1
RC=$?
echo "# exit $RC after $(( $(date +%s) - START )) s, $(date -u +%FT%TZ)" >> $OUT/$LABEL.log
exit $RC
