"""Host names folded into a node set, as `clush -b` and `dshbak -c` show them:
`node[01-04,07]`, `127.0.0.1:[16201-16232]` (ClusterShell's NodeSet does the folding).

A name NodeSet cannot take as one node (`[::1]:16200`, anything with its operators
`,!&^*@[]` or spaces) is listed as written after the folded part, so the result
always names exactly the hosts given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ClusterShell.NodeSet import NodeSet, NodeSetException

__all__ = ["fold_names"]

_PLAIN = re.compile(r"[A-Za-z0-9._:+-]+")  # one node to NodeSet, nothing it would parse


def fold_names(names: Iterable[str]) -> str:
    """`names` as one short node set text (each name once)."""
    names = list(dict.fromkeys(names))
    plain = [n for n in names if _PLAIN.fullmatch(n)]
    rest = [n for n in names if not _PLAIN.fullmatch(n)]
    parts = []
    if plain:
        try:
            folded = str(NodeSet.fromlist(plain))
            # Trust the folding only when it reads back as exactly these names.
            exact = sorted(NodeSet(folded)) == sorted(plain)
        except NodeSetException:
            exact = False
        parts.extend([folded] if exact else plain)
    parts.extend(rest)
    return ",".join(parts)
