"""Which hold-out commits the published regressions data names (regressions.json + index.json)."""
import json
import sys
from pathlib import Path

html = Path(sys.argv[1])
commits = [line.strip() for line in open(sys.argv[2]) if line.strip()]
docs_only = {1, 3, 5, 7}
label = {c: i for i, c in enumerate(commits)}
rev_to_hash = json.loads((html / "index.json").read_text())["revision_to_hash"]
named: dict[int, list[str]] = {}
for name, _graph, _params, _idx, _latest, _best, jumps in json.loads(
    (html / "regressions.json").read_text()
)["regressions"]:
    for rev_a, rev_b, _before, _after in jumps:
        for rev in (rev_a, rev_b):
            if rev is not None and rev_to_hash[str(rev)] in label:
                named.setdefault(label[rev_to_hash[str(rev)]], []).append(
                    f"{name} ({'first bad' if rev == rev_b else 'last good'})"
                )
for i, c in enumerate(commits):
    kind = "docs-only" if i in docs_only else ("base" if i == 0 else "slowdown")
    print(f"H{i} {c[:8]} {kind:9}: {'; '.join(named.get(i, [])) or 'not named'}")
bad = [i for i in docs_only if any("first bad" in s for s in named.get(i, []))]
print("docs-only commits flagged as first bad:", bad or "none")
