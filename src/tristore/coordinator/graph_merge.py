"""Statement batching: adjacent graph ops of one shape become one ``UNWIND`` statement.

Kuzu pays a fixed set-up per statement (zeroed vectors and buffers) that dwarfs a small write's
own work, so the applier runs ``UNWIND $rows AS r <statement with $p read as r.p>`` once for a run
of ops with the same text instead of the statement once per op.

That is only correct where the merged statement has the effect of running the ops one after
the other, in order. Kuzu evaluates an UNWIND's rows as one pipeline: a row does not see a
property another row of the same statement wrote (``SET p.n = p.n + 1`` twice on one node adds
one, not two), and Kuzu 0.11.3 attaches edges created after a ``MERGE`` that created its node in
an earlier row to the wrong nodes (tests/integration/test_graph_merge.py). So a statement is
merged only if its rows cannot observe each other:

- its clauses are ``MATCH`` and ``CREATE`` only (no ``MERGE``, ``SET``, ``DELETE``, ``REMOVE``,
  ``WITH``, ``WHERE``, ``RETURN``, ``UNWIND``, ``CALL``...);
- ``MATCH`` patterns are nodes only (a relationship a row creates cannot change what another
  row matches), and every ``MATCH`` node has a label;
- no label is both matched and created by the statement;
- the runs' parameter rows have one type signature (Kuzu types an UNWIND list as a whole).

Anything else runs statement by statement, as written. The equivalence is tested against
one-at-a-time application on random op sequences (tests/integration/test_graph_merge.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from tristore.coordinator.ops import GraphOp, param_signature

ROWS = "tristore_rows"
ROW = "tristore_row"

# String literals and backquoted names, which may contain anything; parameters outside them.
LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`", re.DOTALL)
PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_FORBIDDEN = re.compile(
    r"\b(DELETE|DETACH|REMOVE|WITH|WHERE|RETURN|UNWIND|CALL|OPTIONAL|LOAD|COPY|UNION|FOREACH|"
    r"ORDER|LIMIT|SKIP|YIELD|USE|SET|MERGE)\b"
)
_CLAUSE = re.compile(r"\b(MATCH|CREATE)\b")
_REL = re.compile(r"-\[|\]-|->|<-|--")
_NODE = re.compile(r"\(\s*([A-Za-z_][A-Za-z0-9_]*)?\s*(?::\s*([A-Za-z_][A-Za-z0-9_]*))?")


@functools.lru_cache(maxsize=1024)
def mergeable(cypher: str) -> bool:
    """Whether rows of ``cypher`` merged into one UNWIND cannot observe each other (see above)."""
    if "//" in cypher or "/*" in cypher:
        return False
    text = LITERAL.sub("''", cypher).upper()
    if "$" not in text:
        return False  # nothing varies between the ops: the runs are rare and gain nothing
    if _FORBIDDEN.search(text):
        return False
    parts = _CLAUSE.split(text)
    if parts[0].strip():
        return False  # something before the first clause
    matched: set[str] = set()
    written: set[str] = set()
    for keyword, pattern in zip(parts[1::2], parts[2::2], strict=True):
        nodes = _NODE.findall(pattern)
        if keyword == "CREATE":
            written.update(label for _, label in nodes if label)
            continue
        if _REL.search(pattern) or any(not label for _, label in nodes):
            return False
        matched.update(label for _, label in nodes)
    return not matched & written


@functools.lru_cache(maxsize=1024)
def unwound(cypher: str) -> str:
    """``cypher`` over ``$tristore_rows``: each ``$p`` outside literals read as ``row.p``."""
    out: list[str] = []
    last = 0
    for literal in LITERAL.finditer(cypher):
        out.append(PARAM.sub(rf"{ROW}.\1", cypher[last : literal.start()]))
        out.append(literal.group(0))
        last = literal.end()
    out.append(PARAM.sub(rf"{ROW}.\1", cypher[last:]))
    return f"UNWIND ${ROWS} AS {ROW} " + "".join(out)


def plan(ops: Sequence[GraphOp]) -> list[tuple[str, dict[str, Any]]]:
    """The statements that apply ``ops`` in order, adjacent mergeable ones merged."""
    statements: list[tuple[str, dict[str, Any]]] = []
    i, n = 0, len(ops)
    while i < n:
        cypher, params = ops[i]
        j = i + 1
        if j < n and ops[j][0] == cypher and mergeable(cypher):
            signature = param_signature(params)
            while j < n and ops[j][0] == cypher and param_signature(ops[j][1]) == signature:
                j += 1
        if j - i > 1:
            statements.append((unwound(cypher), {ROWS: [p for _, p in ops[i:j]]}))
        else:
            statements.append((cypher, params))
        i = j
    return statements
