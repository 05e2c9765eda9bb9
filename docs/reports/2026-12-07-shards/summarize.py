"""Per benchmark: how many of the 12 commits agree to the instruction, and the largest relative
difference, for each pair of runs; beside each workload's repeat spread in count-noise.json.

    python summarize.py /tmp/shard-runs /work/main/tools/bench/count-noise.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MACHINE = "tristore-callgrind"
PAIRS = [("serial-2", "merged"), ("serial", "merged"), ("serial", "serial-2")]


def values(results: Path) -> dict[tuple[str, str], float]:
    out = {}
    for path in (results / MACHINE).glob("*-env-*.json"):
        data = json.loads(path.read_text())
        for name, row in data["results"].items():
            out[(name, data["commit_hash"])] = row[0][0]
    return out


def main() -> None:
    runs, noise_file = Path(sys.argv[1]), Path(sys.argv[2])
    noise = {
        w["benchmark"]: w["spread"]
        for w in json.loads(noise_file.read_text())["workloads"].values()
    }
    sets = {name: values(runs / name) for pair in PAIRS for name in pair}
    names = sorted({n for n, _ in sets["merged"]})
    header = f"{'benchmark':<24} {'repeat spread':>13}"
    for a, b in PAIRS:
        header += f" | {a + ' vs ' + b:>27}"
    print(header)
    for name in names:
        short = name.split(".")[1]
        line = f"{short:<24} {noise[name.rsplit('.', 1)[0]]:>13.3%}"
        for a, b in PAIRS:
            keys = [k for k in sets[a] if k[0] == name]
            equal = sum(sets[a][k] == sets[b][k] for k in keys)
            worst = max(abs(sets[b][k] - sets[a][k]) / sets[a][k] for k in keys)
            line += f" | {equal:>2}/{len(keys)} equal, max {worst:>8.4%}"
        print(line)


if __name__ == "__main__":
    main()
