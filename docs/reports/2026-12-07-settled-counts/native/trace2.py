"""Native probe: the polls of the last operations, as the settled loop saw them.

Each line: whether the loop could block (timeout), how many waits the settling took, and what
was ready then (fds, bytes). Run: PYTHONHASHSEED=0 python trace2.py WORKLOAD N
"""
import sys
import time

from tristore_bench import workloads

log = []
original = workloads._settle


def settle(select, timeout, sleep=time.sleep, activity=None):
    waits = [0]

    def counted(seconds):
        waits[0] += 1
        sleep(seconds)

    ready = original(select, timeout, counted, activity)
    may_block = "may block" if timeout != 0 else "may not block"
    log.append(f"{may_block:<14} waits={waits[0]} ready_fds={len(ready)} bytes={sum(b for _, _, b in ready)}")
    return ready


workloads._settle = settle
code = workloads.main(sys.argv[1:])
print("\n".join(log[-40:]))
sys.exit(code)
