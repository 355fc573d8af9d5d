"""A shared library search remembered between runs, for the imports that make one.

asyncssh looks for liboqs at import (`ctypes.util.find_library`, for an optional key
exchange): on Linux that runs `ldconfig -p`, then gcc and ld, ~20 ms and as much CPU
in child processes at every `--ssh` start. Inside `remembered()`, each name's answer
comes from the controller's cache while what could change it is as it was: the
linker's cache (/etc/ld.so.cache, rewritten when a library is installed), the
library paths and their folders; otherwise the search is made and kept.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import sys
from collections.abc import Iterator

from netjobs_core.agent_zipapp import cache_dir
from netjobs_core.atomic import make_private_dirs, write_atomic

CACHE_NAME = "library-search.json"
_LINKER_CACHE = "/etc/ld.so.cache"


def _state() -> list[object]:
    """What the answers depend on: the platform, the linker's cache, the paths."""
    paths = [os.environ.get(name, "") for name in ("LD_LIBRARY_PATH", "LIBRARY_PATH")]
    folders = [f for p in paths for f in p.split(os.pathsep) if f]
    stamps: list[int | None] = []
    for path in [_LINKER_CACHE, *folders]:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return [sys.platform, *paths, *stamps]


@contextlib.contextmanager
def remembered() -> Iterator[None]:
    path = cache_dir() / CACHE_NAME
    state = _state()
    try:
        kept = json.loads(path.read_text())
        found = dict(kept["found"]) if kept.get("state") == state else {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        found = {}
    asked = dict(found)
    search = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if name not in found:
            found[name] = search(name)
        answer = found[name]
        return answer if isinstance(answer, str) else None

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = search
    if found != asked:
        with contextlib.suppress(OSError):  # a read-only cache: searched next time too
            make_private_dirs(path.parent)
            write_atomic(path, json.dumps({"state": state, "found": found}).encode())
