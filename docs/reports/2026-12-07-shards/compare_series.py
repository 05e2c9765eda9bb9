"""Compare two asv results directories' series value by value: one row per (benchmark, commit).

    python compare_series.py SERIAL_DIR MERGED_DIR MACHINE

Reads asv's result files only. Exit 0 when both hold the same commits and benchmarks with equal
values (and benchmark versions), 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATES: dict[str, int] = {}  # commit -> its date (asv's "date"), to list commits in order


def series(results: Path, machine: str) -> dict[tuple[str, str], tuple[str, str]]:
    out = {}
    for path in sorted((results / machine).glob("*.json")):
        if path.name == "machine.json":
            continue
        data = json.loads(path.read_text())
        at = data["result_columns"].index("result")
        version = data["result_columns"].index("version")
        DATES[data["commit_hash"]] = data["date"]
        for name, row in data["results"].items():
            key = (name, data["commit_hash"])
            out[key] = (json.dumps(row[at]), row[version])
    return out


def main() -> int:
    serial_dir, merged_dir, machine = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    serial, merged = series(serial_dir, machine), series(merged_dir, machine)
    rows = sorted(serial.keys() | merged.keys(), key=lambda k: (k[0], DATES[k[1]], k[1]))
    differ = 0
    print(f"{'benchmark':<48} {'commit':<9} {'serial':>22} {'merged':>22}  equal")
    for name, commit in rows:
        a, b = serial.get((name, commit)), merged.get((name, commit))
        same = a == b
        differ += not same
        short = name.removeprefix("instructions.").removesuffix(".track_instructions")
        print(
            f"{short:<48} {commit[:8]:<9} {a[0] if a else '-':>22} {b[0] if b else '-':>22}  "
            f"{'yes' if same else 'NO'}"
        )
    commits = {c for _, c in rows}
    print(
        f"{len(rows)} values ({len({n for n, _ in rows})} benchmarks x {len(commits)} commits): "
        f"{len(rows) - differ} equal, {differ} different"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
