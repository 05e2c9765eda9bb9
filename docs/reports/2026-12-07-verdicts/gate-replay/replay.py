"""Replay recorded calibration gates under another round schedule (max_rounds)."""
import json, sys, glob, statistics
from dataclasses import replace
sys.path.insert(0, "/work/main/tools/bench/src")
from tristore_bench.gate.stats import Policy, measure, judge, freeze, settled

def replay(run, policy):
    comps = run["comparisons"]
    series = {c["name"]: (c["base_rounds_s"], c["head_rounds_s"]) for c in comps}
    n_max = max(len(b) for b, h in series.values())
    frozen = {}
    used = None
    for n in range(policy.min_rounds, min(policy.max_rounds, n_max) + 1):
        if not policy.is_look(n):
            continue
        measured = [measure(name, b[:n], h[:n]) for name, (b, h) in series.items()]
        out = freeze(judge(measured, policy, final=False), frozen)
        used = n
        if settled(out):
            break
    if not settled(out):
        measured = [measure(name, b[:used], h[:used]) for name, (b, h) in series.items()]
        out = freeze(judge(measured, policy, final=True), frozen)
    return used, {c.name: c.verdict for c in out}

for path in sys.argv[1:]:
    state = json.load(open(path))
    pol0 = Policy(**state["summary"]["policy"])
    inject = state["summary"].get("inject_percent", 0); target = state["summary"].get("target", "")
    per_round_s = statistics.median(r["seconds"] / (2 * max(len(c["base_rounds_s"]) for c in r["comparisons"])) for r in state["runs"])
    for maxr in (20, 16, 12):
        pol = replace(pol0, max_rounds=maxr)
        tally = {}
        rounds = []
        for run in state["runs"]:
            used, verdicts = replay(run, pol)
            rounds.append(used)
            for name, v in verdicts.items():
                tally.setdefault(name, {}).setdefault(v, 0)
                tally[name][v] += 1
        false = sum(v for name, t in tally.items() for k, v in t.items() if k in ("regression", "improvement") and (not inject or name != "test_" + target))
        line = f"{path.split('/')[-1]} max_rounds={maxr}: runs={len(state['runs'])} median rounds/side={statistics.median(rounds)} wall~{statistics.median(rounds)*2*per_round_s:.0f}s false={false}"
        if inject:
            t = tally.get("test_" + target, {})
            line += f" target {target}+{inject:g}%: {t}"
        else:
            line += " inconclusive=" + str({n.replace('test_',''): t.get('inconclusive', 0) for n, t in tally.items()})
        print(line)
