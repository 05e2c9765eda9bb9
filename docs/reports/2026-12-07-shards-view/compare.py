"""Serial against merged, value by value, for the commits of a hash file and one count version.

    python compare.py SERIAL_RESULTS MERGED_RESULTS COMMITS_FILE VERSION [NOISE_JSON]

Reads asv's result files only (results/<machine>/<commit[:8]>-<env>.json). Prints one row per
(benchmark, commit), then per benchmark: how many commits agree to the instruction and the largest
relative difference, beside the workload's recorded repeat spread. Exit 0 when every value is equal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MACHINE = "tristore-callgrind"


def values(results: Path, commits: list[str], version: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for path in sorted((results / MACHINE).glob("*.json")):
        if path.name == "machine.json":
            continue
        data = json.loads(path.read_text())
        if data["commit_hash"] not in commits:
            continue
        cols = data["result_columns"]
        at, ver = cols.index("result"), cols.index("version")
        for name, row in data["results"].items():
            if name.startswith("instructions.") and row[ver] == version:
                out[(name, data["commit_hash"])] = row[at][0]
    return out


def main() -> int:
    serial_dir, merged_dir, hashfile, version = sys.argv[1:5]
    noise = {}
    if len(sys.argv) > 5:
        noise = {
            w["benchmark"]: w["spread"]
            for w in json.loads(Path(sys.argv[5]).read_text())["workloads"].values()
        }
    commits = Path(hashfile).read_text().split()
    serial = values(Path(serial_dir), commits, version)
    merged = values(Path(merged_dir), commits, version)
    names = sorted({n for n, _ in serial | merged})
    differ = 0
    print(f"{'benchmark':<24} {'commit':<9} {'serial':>18} {'merged':>18} {'merged/serial-1':>16}")
    for name in names:
        short = name.split(".")[1]
        for commit in commits:
            a, b = serial.get((name, commit)), merged.get((name, commit))
            rel = "" if a is None or b is None else f"{(b - a) / a:+.5%}"
            differ += a != b
            print(f"{short:<24} {commit[:8]:<9} {a!s:>18} {b!s:>18} {rel:>16}")
    print()
    print(f"{'benchmark':<24} {'repeat spread':>13} {'equal':>7} {'largest difference':>19}")
    for name in names:
        keys = [(name, c) for c in commits if (name, c) in serial and (name, c) in merged]
        equal = sum(serial[k] == merged[k] for k in keys)
        worst = max((abs(merged[k] - serial[k]) / serial[k] for k in keys), default=0.0)
        spread = noise.get(name.rsplit(".", 1)[0])
        spread_s = "-" if spread is None else f"{spread:.3%}"
        print(f"{name.split('.')[1]:<24} {spread_s:>13} {equal:>3}/{len(keys):<3} {worst:>19.4%}")
    total = len(serial.keys() | merged.keys())
    print(f"\n{total} values: {total - differ} equal, {differ} different")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
