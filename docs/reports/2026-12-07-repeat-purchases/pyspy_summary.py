"""Samples per thread and the functions with the most own samples, from py-spy's raw output.

    python pyspy_summary.py py-spy-head.raw.gz
"""
import collections
import gzip
import sys

threads, own = collections.Counter(), collections.Counter()
with gzip.open(sys.argv[1], "rt") as f:
    for line in f:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        threads[frames[0]] += int(n)
        own[(frames[0].split(": ")[-1], frames[-1])] += int(n)
for name, n in threads.most_common():
    print(f"{n:6d}  {name}")
print()
for (thread, frame), n in own.most_common(20):
    print(f"{n:6d}  {thread:<36} {frame}")
