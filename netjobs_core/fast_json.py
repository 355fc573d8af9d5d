"""orjson and msgspec where the `fast` extra installs them (`pip install 'netjobs[fast]'`),
else None.

Optional speed-ups, like uvloop: each caller keeps the standard library's `json` for
what they refuse and for where they are not installed, with the same results
(builtin_metrics reads fio and iperf3 documents with orjson and fio's figures with
msgspec, results_json writes results.json with orjson).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

__all__ = ["ORJSON", "fio_fields_reader"]


def _orjson() -> ModuleType | None:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


ORJSON = _orjson()


def fio_fields_reader() -> Callable[[memoryview], dict[str, float] | None] | None:
    """fio_fields.read_fio where msgspec is installed, else None."""
    try:
        from netjobs_core import fio_fields
    except ImportError:
        return None
    return fio_fields.read_fio
