"""fio's figures read straight into typed fields, skipping the rest of its document.

Imported only where msgspec is installed (the `fast` extra; builtin_metrics falls back on
parsing the whole document). A fio document of 14 KB is ~500 numbers and ~100 objects,
of which the metrics need 10 numbers a job: orjson builds every object (66 µs here),
msgspec's typed decoder skips what no field names (15 µs). At 1000 hosts ending at once,
reading their documents as they end took 0.11 s of the controller's burst of ends with
orjson and takes 0.05 s with this (docs/performance.md).

`read_fio` gives exactly what builtin_metrics._fio gives for the same document, or None
when it cannot be sure (anything it does not expect: a missing field, a number that is
a bool or a string, text after the document): the caller then reads the document the
general way, which gives the figures or the error words as before. Its struct fields
ask for more than the general reader does (every side's `bw_bytes` and `iops`, worked
or not), never less, so a None costs time, never a different answer.
"""

# No `from __future__ import annotations`: msgspec reads these annotations as types.

import msgspec
from msgspec import UNSET, Struct, UnsetType, field

__all__ = ["read_fio"]


class _Percentiles(Struct):
    # Absent from a --percentile_list without 99: the other figures stand without it.
    p99: float | UnsetType = field(default=UNSET, name="99.000000")


class _Latency(Struct):
    percentile: _Percentiles | UnsetType = UNSET


class _Side(Struct):
    io_bytes: float
    bw_bytes: float
    iops: float
    clat_ns: _Latency | UnsetType = UNSET


class _Job(Struct):
    read: _Side
    write: _Side


class _Document(Struct):
    jobs: list[_Job]


_DECODE = msgspec.json.Decoder(_Document).decode


def read_fio(data: memoryview) -> dict[str, float] | None:
    """The metrics of the fio document `data` is (and nothing after it), as
    builtin_metrics._fio reads them; None when this reader cannot tell.

    msgspec refuses a number out of a float's range (`1e999`, `10**400`) and JSON has no
    NaN: every figure here is finite, as the general reader's `_number` requires."""
    try:
        jobs = _DECODE(data).jobs
    except msgspec.MsgspecError:
        return None
    found: dict[str, float] = {}
    for direction, sides in (("read", [j.read for j in jobs]), ("write", [j.write for j in jobs])):
        bw: float = 0  # as sum() adds: from 0, in the order of the jobs
        iops: float = 0
        p99: float | None = None
        worked = False
        for side in sides:
            if side.io_bytes <= 0:
                continue  # this job did no I/O this way
            worked = True
            bw += side.bw_bytes
            iops += side.iops
            latency = side.clat_ns
            if latency is not UNSET and latency.percentile is not UNSET:
                value = latency.percentile.p99
                if value is UNSET:
                    continue
                if p99 is None or value > p99:  # max(): the first of equal ones
                    p99 = value
        if not worked:
            continue  # this direction did no I/O: no metric, rather than a zero
        found[f"{direction}_bw"] = bw
        found[f"{direction}_iops"] = iops
        if p99 is not None:
            found[f"{direction}_clat_p99_ns"] = p99
    return found
