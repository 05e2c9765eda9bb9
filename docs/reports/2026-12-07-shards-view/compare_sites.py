"""Compare two published asv sites (html dirs of ``tristore-bench site``): graphs and regressions.

    python compare_sites.py HTML_A HTML_B

Per published graph: the same commits (asv revisions), and the largest relative difference of a
value; per series summary, the same last step (asv's ``change_rev``). Then asv's regressions.json
(what the Regressions page and ``tristore-bench regressions`` read: the same jumps,
at the same commits; their values are printed) and index.json's lists.
Exit 0 when the steps, regressions and lists are equal and every graph has the same commits
(values may differ; their largest difference is printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def graphs(html: Path) -> dict[str, list[Any]]:
    root = html / "graphs"
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("*.json")}


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def main() -> int:
    a_dir, b_dir = Path(sys.argv[1]), Path(sys.argv[2])
    a, b = graphs(a_dir), graphs(b_dir)
    ok = a.keys() == b.keys()
    print(f"graph files: {len(a)} and {len(b)}, same paths: {a.keys() == b.keys()}")
    print(f"{'graph':<60} {'points':>6} {'same commits':>12} {'max rel diff':>13}")
    for path in sorted(a.keys() & b.keys()):
        pa, pb = a[path], b[path]
        if pa and isinstance(pa[0], dict):  # a series summary: its last step (change_rev)
            steps_a = [(s["name"], s["last_rev"], s["change_rev"]) for s in pa]
            steps_b = [(s["name"], s["last_rev"], s["change_rev"]) for s in pb]
            ok &= steps_a == steps_b
            for name, last, change in steps_a:
                short = name.removeprefix("instructions.").removesuffix(".track_instructions")
                print(f"  summary {short}: last commit {last}, last step at {change}")
            print(f"  ... same last steps in both: {steps_a == steps_b}")
            continue
        same = [p[0] for p in pa] == [p[0] for p in pb]
        ok &= same
        diff = 0.0
        for (_, va), (_, vb) in zip(pa, pb, strict=False):
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va:
                diff = max(diff, abs(vb - va) / abs(va))
            elif canon(va) != canon(vb):
                diff = float("inf")
        where = "summary/" if path.startswith("summary/") else ""
        name = where + path.rsplit("/", 1)[-1].removesuffix(".json")
        print(f"{name:<60} {len(pa):>6} {same!s:>12} {diff:>13.5%}")
    # A regression: [name, graph, params, idx, last value, best value, jumps]; each jump is
    # [last good revision, first bad revision, value before, value after].
    ra = json.loads((a_dir / "regressions.json").read_text())["regressions"]
    rb = json.loads((b_dir / "regressions.json").read_text())["regressions"]

    def where(regs: list[Any]) -> list[Any]:
        return [(r[0], r[1], canon(r[2]), r[3], [j[:2] for j in r[6]]) for r in regs]

    same_regressions = where(ra) == where(rb)
    ok &= same_regressions
    print(
        f"regressions.json: {len(ra)} and {len(rb)} series flagged, same jumps: {same_regressions}"
    )
    for x, y in zip(ra, rb, strict=False):
        for ja, jb in zip(x[6], y[6], strict=False):
            print(f"  {x[0]} {ja[0]}..{ja[1]}: {ja[2]} -> {ja[3]} | {jb[2]} -> {jb[3]}")
    ia, ib = (
        json.loads((a_dir / "index.json").read_text()),
        json.loads((b_dir / "index.json").read_text()),
    )
    for key in ("benchmarks", "revision_to_hash", "params", "machines"):
        equal = canon(ia.get(key)) == canon(ib.get(key))
        ok &= equal
        print(f"index.json {key}: equal {equal}")
    lists = [sorted(canon(x) for x in i.get("graph_param_list", [])) for i in (ia, ib)]
    ok &= lists[0] == lists[1]
    print(f"index.json graph_param_list (as a set): equal {lists[0] == lists[1]}")
    print("site structure and regressions agree" if ok else "SITES DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
