"""Does CALLGRIND_TOGGLE_COLLECT leave out only the calling thread's instructions?

Counted region: MODE=plain   -> main loops A times;
                MODE=hidden  -> main loops A times, then, collection off, loops B more times;
                MODE=thread  -> as hidden, while a worker thread loops C times (must stay counted).
                MODE=worker  -> the worker loops C times, main only waits (collection on).
Run under: valgrind --tool=callgrind --instr-atstart=no python toggle_check.py MODE
"""

import sys
import threading

from tristore_bench import workloads as w

A, B, C = 200_000, 400_000, 300_000
items = (None,) * max(A, B, C)


def loop(n: int) -> None:
    for _ in items[:n]:
        pass


mode = sys.argv[1]
worker = threading.Thread(target=loop, args=(C,))
go = threading.Event()
w._client_request(w.CALLGRIND_START_INSTRUMENTATION)
if mode in ("thread", "worker"):
    worker.start()
if mode != "worker":
    loop(A)
if mode in ("hidden", "thread"):
    w._client_request(w.CALLGRIND_TOGGLE_COLLECT)
    loop(B)
    if mode == "thread":
        worker.join()
    w._client_request(w.CALLGRIND_TOGGLE_COLLECT)
if mode == "worker":
    worker.join()
w._client_request(w.CALLGRIND_STOP_INSTRUMENTATION)
print("done", mode)
