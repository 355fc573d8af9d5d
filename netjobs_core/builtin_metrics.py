"""The metrics NetJobs reads with no config: fio's and iperf3's JSON documents.

A command's stdout or a collected file is one of them when its beginning says so:
fio's `--output-format=json` (or `json+`) has `"fio version"` near its start, iperf3's
`-J` a `"start"` object whose `"version"` is `iperf ...`. Text before the document
(a warning fio printed) and after it (`--output-format=json,normal`) is skipped.

- fio: `read_bw`, `write_bw` (bytes/s, summed over its jobs from `bw_bytes`),
  `read_iops`, `write_iops` (summed), `read_clat_p99_ns`, `write_clat_p99_ns` (the
  largest over its jobs of `clat_ns.percentile["99.000000"]`, absent when fio printed
  no 99th: `--clat_percentiles=0`, a `--percentile_list` without it). A direction in
  which no job did any I/O gives no metric.
- iperf3: `sent_bps` and `received_bps` (bits/s, `end.sum_sent` / `end.sum_received`).

A document that is cut off, or of a version that spells these otherwise, is a
`DocumentError`: its caller makes it a warning naming the host.

Where the `fast` extra is installed (`pip install 'netjobs[fast]'`), msgspec reads a fio
document's figures straight into typed fields, skipping the rest (fio_fields.py: 15 µs
for a 14 KB document against 66 µs for orjson, 200 µs for `json`); what it cannot be
sure of, and every iperf3 document, orjson parses whole; the standard library's `json`
reads what orjson refuses (text after the document, bytes that are not UTF-8) and
everything where neither is installed. The results are the same whichever reads
(tests/test_metrics_early.py).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from netjobs_core import fast_json

__all__ = [
    "LARGEST_NOT_SUM",
    "MAX_DOCUMENT_BYTES",
    "SNIFF_BYTES",
    "DocumentError",
    "adds_up",
    "combine",
    "read_document",
]

SNIFF_BYTES = 64 * 1024  # how much of an output's beginning says what it is
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # a larger document is a warning, never loaded

_P99 = "99.000000"  # fio's name of its 99th percentile
_FIO_RE = re.compile(rb'"fio version"\s*:')
_IPERF3_RE = re.compile(rb'\{\s*"start"\s*:\s*\{.*?"version"\s*:\s*"iperf', re.DOTALL)


_A = {"fio": "a fio", "iperf3": "an iperf3"}


def _first_fio_fields(data: memoryview) -> dict[str, float] | None:
    """fio_fields.read_fio, imported at the first fio document rather than at every
    start of the controller (msgspec and its structs: ~7 ms, before a run's first
    packet); where msgspec is not installed, None: the general reader's way."""
    global FIO_FIELDS
    FIO_FIELDS = fast_json.fio_fields_reader() or _not_sure
    return FIO_FIELDS(data)


def _not_sure(data: memoryview) -> None:
    return None


ORJSON = fast_json.ORJSON  # module attributes: the tests and bench/ turn them off
FIO_FIELDS: Callable[[memoryview], dict[str, float] | None] | None = _first_fio_fields


class DocumentError(Exception):
    """A document NetJobs recognised but cannot read; the text says what and why."""


def _sniff(data: bytes) -> tuple[str, int] | None:
    """What the first SNIFF_BYTES of `data` say it is (`fio`, `iperf3`), and where its
    document begins; None for neither. Searched in place: no copy of the head."""
    marker = _FIO_RE.search(data, 0, SNIFF_BYTES)
    if marker is not None:
        return "fio", data.rfind(b"{", 0, marker.start())
    if _IPERF3_RE.search(data, 0, SNIFF_BYTES) is not None:
        return "iperf3", data.find(b"{")
    return None


def kind_of(head: bytes) -> str | None:
    """`fio`, `iperf3`, or None: what the first SNIFF_BYTES of an output are."""
    sniffed = _sniff(head)
    return None if sniffed is None else sniffed[0]


def read_document(data: bytes) -> dict[str, float] | None:
    """The metrics of the fio or iperf3 document `data` holds; None when it holds
    neither; DocumentError when it is one of them, but damaged."""
    sniffed = _sniff(data)
    if sniffed is None:
        return None
    kind, start = sniffed
    if kind == "fio" and FIO_FIELDS is not None:
        found = FIO_FIELDS(memoryview(data)[start:])
        if found is not None:
            return found
    try:
        document = _parse(memoryview(data)[start:])
    except ValueError as exc:
        raise DocumentError(f"{_A[kind]} JSON document cut off or damaged ({exc})") from None
    try:
        return _READERS[kind](document)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        version = _version(kind, document)
        raise DocumentError(
            f"{_A[kind]} JSON document{version} this NetJobs cannot read "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _parse(data: memoryview) -> Any:
    """The JSON document `data` begins with; ValueError (the standard library's words)."""
    if ORJSON is not None:
        try:
            return ORJSON.loads(data)
        except ORJSON.JSONDecodeError:
            pass  # text after the document, or not UTF-8: the standard library reads it
    document, _ = json.JSONDecoder().raw_decode(bytes(data).decode("utf-8", "replace"))
    return document


def _version(kind: str, document: Any) -> str:
    try:
        found = document["fio version"] if kind == "fio" else document["start"]["version"]
    except (KeyError, TypeError):
        return ""
    return f" of {found}" if isinstance(found, str) else ""


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)  # an integer of 400 digits does not fit
    except OverflowError:
        raise ValueError("a number out of a float's range") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number")
    return number


def _fio(document: Any) -> dict[str, float]:
    jobs = document["jobs"]
    if not isinstance(jobs, list):
        raise TypeError("'jobs' is not a list")
    found: dict[str, float] = {}
    for direction in ("read", "write"):
        worked = [job[direction] for job in jobs if _number(job[direction]["io_bytes"]) > 0]
        if not worked:
            continue  # this direction did no I/O: no metric, rather than a zero
        found[f"{direction}_bw"] = sum(_number(side["bw_bytes"]) for side in worked)
        found[f"{direction}_iops"] = sum(_number(side["iops"]) for side in worked)
        p99 = [  # none where fio printed no 99th (a --percentile_list without it)
            _number(side["clat_ns"]["percentile"][_P99])
            for side in worked
            if _P99 in side.get("clat_ns", {}).get("percentile", {})
        ]
        if p99:
            found[f"{direction}_clat_p99_ns"] = max(p99)
    return found


def _iperf3(document: Any) -> dict[str, float]:
    if document.get("error"):
        raise DocumentError(f"iperf3 reported an error: {document['error']}")
    end = document["end"]
    return {
        "sent_bps": _number(end["sum_sent"]["bits_per_second"]),
        "received_bps": _number(end["sum_received"]["bits_per_second"]),
    }


_READERS: Mapping[str, Callable[[Any], dict[str, float]]] = {"fio": _fio, "iperf3": _iperf3}

# A latency percentile's values do not add up: over a command's documents, a host's
# commands and a fleet's hosts its figure is the largest (no sum of p99s means anything).
LARGEST_NOT_SUM = frozenset({"read_clat_p99_ns", "write_clat_p99_ns"})


def adds_up(name: str) -> bool:
    """Whether the metric NAME's values add up (rates, counts, every config metric) or
    its largest is the figure (a latency percentile)."""
    return name not in LARGEST_NOT_SUM


def combine(name: str, values: list[float]) -> float:
    """One command's value of a built-in metric found in several of its documents (its
    stdout and collected files): rates and counts add up, a percentile is the largest."""
    return sum(values) if adds_up(name) else max(values)
