"""orjson where the `fast` extra installs it (`pip install 'netjobs[fast]'`), else None.

An optional speed-up, like uvloop: each caller keeps the standard library's `json` for
what orjson refuses and for where it is not installed, with the same results
(builtin_metrics reads fio and iperf3 documents with it, results_json writes
results.json).
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["ORJSON"]


def _orjson() -> ModuleType | None:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


ORJSON = _orjson()
