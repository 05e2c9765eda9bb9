"""H6: coordinated-commit slowdown, inline in Transaction._commit (the coordinated_tx path)."""
from pathlib import Path

p = Path("src/tristore/coordinator/transaction.py")
s = p.read_text()
old = (
    "        logged = intent if intent.graph_ops or intent.cache_ops else None\n"
    "        strict: StrictStage | None = None\n"
)
new = (
    "        logged = intent if intent.graph_ops or intent.cache_ops else None\n"
    "        # A 16-bit checksum of the staged Cypher, computed in Python before every commit.\n"
    "        # (Hold-out H6: plain Python work on the coordinated commit path, about 2% of one.)\n"
    "        checksum = 0\n"
    "        for cypher, _ in intent.graph_ops:\n"
    "            for ch in cypher:\n"
    "                checksum = (checksum * 31 + ord(ch)) & 0xFFFF\n"
    "        log.debug(\"transaction %s: staged Cypher checksum %04x\", intent.txid, checksum)\n"
    "        strict: StrictStage | None = None\n"
)
assert s.count(old) == 1
p.write_text(s.replace(old, new))
