"""Native probe: waits per settle and the cost of one look at the peers."""
import collections, sys, time
from tristore_bench import workloads

hist = collections.Counter()
cost = []
orig_still = workloads._still
def still(select, sleep, look, ready):
    calls = [0]
    def s(x):
        calls[0] += 1
        sleep(x)
    def timed():
        t = time.perf_counter(); r = look(); cost.append((time.perf_counter() - t, len(r))); return r
    r = orig_still(select, s, timed, ready)
    hist[(calls[0], bool(r))] += 1
    return r
workloads._still = still
t = time.monotonic()
rc = workloads.main(sys.argv[1:])
print("seconds", round(time.monotonic() - t, 2), "settles", sum(hist.values()), "waits", sum(k[0]*v for k, v in hist.items()))
print("(waits, ready) -> settles:", sorted(hist.items()))
cost.sort()
print("look: median %.0f us, tasks %s" % (cost[len(cost)//2][0]*1e6, collections.Counter(n for _, n in cost)))
sys.exit(rc)
