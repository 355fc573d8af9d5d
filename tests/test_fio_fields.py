"""fio_fields.read_fio (msgspec) gives what the general reader gives, or leaves the
document to it: over recorded fio documents with the fields the metrics read changed,
dropped or given the wrong type."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netjobs_core import builtin_metrics

fio_fields = pytest.importorskip("netjobs_core.fio_fields", reason="msgspec is not installed")

DATA = Path(__file__).parent / "data" / "metrics"
DOCUMENTS = {
    name: json.loads((DATA / f"{name}.json").read_text())
    for name in (
        "fio-randrw",
        "fio-read-jsonplus",
        "fio-write-nopercentiles",
        "fio-randread-percentile-list",
    )
}

DROP = "<drop>"  # the field is taken out (a string: deepcopy keeps it the same)
VALUES = st.one_of(  # a field dropped or null as often as any other value
    st.just(DROP),
    st.just(None),
    st.sampled_from(
        [True, False, 0, -1, 0.0, -0.0, 1.5, 1e308, 10**30, 2**64, 10**400, "12", [], {}, [1]]
    ),
)


def _paths(document: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Where the metrics read: jobs, each job's sides, their numbers and percentiles."""
    paths: list[tuple[Any, ...]] = [("jobs",)]
    for j in range(len(document["jobs"])):
        paths.append(("jobs", j))
        for side in ("read", "write", "trim"):
            here = ("jobs", j, side)
            paths.append(here)
            for name in ("io_bytes", "bw_bytes", "iops", "clat_ns"):
                paths.append((*here, name))
            paths.append((*here, "clat_ns", "percentile"))
            paths.append((*here, "clat_ns", "percentile", "99.000000"))
    return paths


def _changed(document: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set (or drop) the value at PATH where every step but the last exists."""
    where = document
    for step in path[:-1]:
        try:
            where = where[step]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if isinstance(where, dict) or (isinstance(where, list) and isinstance(last, int)):
        if value is DROP:
            if isinstance(where, dict):
                where.pop(last, None)
            elif last < len(where):
                del where[last]
        elif isinstance(where, dict) or last < len(where):
            where[last] = value


def _general(data: bytes) -> object:
    """What the reader without msgspec gives: the metrics, or the error's words."""
    saved = builtin_metrics.FIO_FIELDS
    builtin_metrics.FIO_FIELDS = None
    try:
        return builtin_metrics.read_document(data)
    except builtin_metrics.DocumentError as exc:
        return str(exc)
    finally:
        builtin_metrics.FIO_FIELDS = saved


def _fast(data: bytes) -> dict[str, float] | None:
    start = data.find(b"{")
    return fio_fields.read_fio(memoryview(data)[start:])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    document = copy.deepcopy(DOCUMENTS[name])
    paths = _paths(document)
    for _ in range(draw(st.integers(1, 3))):
        _changed(document, draw(st.sampled_from(paths)), copy.deepcopy(draw(VALUES)))
    return json.dumps(document).encode()


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_the_typed_reader_agrees_with_the_general_one_or_leaves_it_the_document(data):
    general = _general(data)
    fast = _fast(data)
    if isinstance(general, str):  # an error: the typed reader must not have read figures
        assert fast is None, general
    elif fast is not None:
        assert fast == general
        assert [type(v) for v in fast.values()] == [float] * len(fast)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("jobs", 0, "read", "clat_ns", "percentile", "99.000000"), DROP),
        (("jobs", 0, "read", "clat_ns", "percentile"), None),
        (("jobs", 0, "read", "clat_ns", "percentile"), {}),
        (("jobs", 1, "write", "clat_ns"), None),
        (("jobs", 1, "write", "clat_ns"), ["percentile"]),
        (("jobs", 0, "read", "bw_bytes"), True),
        (("jobs", 0, "read", "iops"), "12"),
        (("jobs", 0, "write", "io_bytes"), DROP),
        (("jobs", 1, "read"), DROP),
        (("jobs",), {}),
        (("jobs", 0, "read", "bw_bytes"), 10**30),
        (("jobs", 0, "read", "clat_ns"), DROP),
    ],
)
def test_each_field_the_metrics_read_changed(path, value):
    document = copy.deepcopy(DOCUMENTS["fio-randrw"])
    _changed(document, path, value)
    data = json.dumps(document).encode()
    general, fast = _general(data), _fast(data)
    if isinstance(general, str):  # an error: the general reader says it, as before
        assert fast is None, general
        with pytest.raises(builtin_metrics.DocumentError, match="fio"):
            builtin_metrics.read_document(data)
    else:
        assert fast in (None, general)
        assert builtin_metrics.read_document(data) == general


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_recorded_documents_are_read_by_the_typed_reader_alone(name):
    """Real fio documents never fall back to the whole parse (the speed is real)."""
    data = (DATA / f"{name}.json").read_bytes()
    fast = _fast(data)
    assert fast is not None and fast == _general(data)
    assert set(fast) >= {"read_bw", "read_iops"} or set(fast) >= {"write_bw", "write_iops"}


@pytest.mark.parametrize(
    "tail",
    [b"\nfio-3.33\nj: (groupid=0, jobs=1): err= 0\n", b"}", b"   \n"],
    ids=["normal output after", "a stray brace", "blank space"],
)
def test_text_after_the_document_is_left_to_the_general_reader(tail):
    data = (DATA / "fio-randrw.json").read_bytes().rstrip() + tail
    if tail.strip():
        assert _fast(data) is None
    assert builtin_metrics.read_document(data) == _general(data)
