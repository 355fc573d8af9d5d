"""The JSON results document (results.json, --json, the GUI's Save/Open): `netjobs-results/2`.

The codec is driven by the dataclass fields of netjobs_core.results: a field is
written under its own name, enums as their value, lists of results recursively.
What the format spells differently is said once, in `_SPECIAL`. On reading, a key
that is absent takes the field's default, so a document from before a field was added
still loads (adding a key keeps the format name; renaming one breaks
tests/data/results-v1.json).

Command outputs (`outputs.Output`) are spelled per stream: `stdout_bytes` and
`stdout_sha256` always; the content inline (`stdout`, plus `stdout_base64` when it
is not UTF-8) up to the inline limit, else `stdout_file`, the path of its file
relative to the JSON file (absolute in a document without a file: `--json -`);
`stdout_error` when its file could not be written. That is what /2 adds to /1;
a /1 document (inline content only) still loads. Each command's and each test's
`metrics` (netjobs_core.metrics) are keys added within /2. The JSON Schema of the
document is results_schema.py's (`netjobs schema`); docs/results.md is its reference.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netjobs_core import __version__, fast_json
from netjobs_core.outputs import Output, OutputFileError
from netjobs_core.results import HostResult, HostState, MetricSummary, RunResult, TestResult
from netjobs_core.wire.address import Address

JSON_FORMAT = "netjobs-results/2"
READ_FORMATS = frozenset({"netjobs-results/1", JSON_FORMAT})
INLINE_LIMIT = 1024**2  # outputs up to this many bytes are written inline

Json = dict[str, Any]

ORJSON = fast_json.ORJSON  # a module attribute: the tests and bench/ turn it off


class ResultsFileError(Exception):
    pass


@dataclass(frozen=True)
class _Special:
    """How one field is spelled in the document: value -> keys, and back."""

    keys: tuple[str, ...]  # what it reads: the field is absent when none of them is there
    encode: Callable[[Any], Json]
    decode: Callable[[Json], Any]


def _renamed(key: str) -> _Special:
    return _Special((key,), lambda value: {key: value}, lambda item: item[key])


def _address_keys(address: Address) -> Json:
    # "target" as the config writes it, for readers; "host" and "port" are read back.
    keys: Json = {"target": address.short, "host": address.host, "port": address.port}
    if address.scheme:  # SSH targets only: older readers see host and port as before
        keys |= {"scheme": address.scheme, "user": address.user}
    return keys


def _address_value(item: Json) -> Address:
    return Address(item["host"], item["port"], item.get("scheme", ""), item.get("user", ""))


_SPECIAL: dict[tuple[type[Any], str], _Special] = {
    (RunResult, "config_path"): _renamed("config"),
    (TestResult, "minhosts"): _Special(
        ("minhosts",),
        lambda value: {"minhosts": "all" if value is None else value},
        lambda item: None if item.get("minhosts", "all") == "all" else item["minhosts"],
    ),
    (HostResult, "address"): _Special(("host", "port"), _address_keys, _address_value),
    (TestResult, "metrics"): _Special(
        ("metrics",),
        lambda value: {"metrics": {name: dataclasses.asdict(s) for name, s in value.items()}},
        lambda item: {name: MetricSummary(**s) for name, s in item["metrics"].items()},
    ),
    (HostResult, "state"): _Special(
        ("status",), lambda value: {"status": value.value}, lambda item: HostState(item["status"])
    ),
}


@dataclass(frozen=True)
class _Place:
    """Where the document is (output paths are relative to it) and what stays inline."""

    directory: Path | None  # None: no file (standard output); paths are absolute
    inline_limit: int = INLINE_LIMIT
    # The float fields found holding NaN or an infinity, which only `json` writes as
    # they are (orjson would write null).
    not_finite: list[str] = dataclasses.field(default_factory=list)


def _relative(path: Path, place: _Place) -> str:
    """A file's path as the document writes it: relative to the document's folder."""
    path = path.absolute()
    if place.directory is not None:
        path = Path(os.path.relpath(path, place.directory.absolute()))
    return path.as_posix()


def _resolved(text: str, place: _Place) -> Path:
    """A path read from a document: relative to the document's folder."""
    path = Path(text)
    return path if place.directory is None else place.directory / path


def _output_keys(name: str, output: Output, place: _Place) -> Json:
    keys: Json = {f"{name}_bytes": output.size, f"{name}_sha256": output.sha256}
    if output.size <= place.inline_limit:
        try:
            data = output.read_bytes()
        except OutputFileError as exc:
            keys[f"{name}_error"] = str(exc)
        else:
            keys[name] = data.decode("utf-8", "backslashreplace")
            if not data.isascii():
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    # The text above escapes what is not UTF-8; keep the exact bytes too.
                    keys[f"{name}_base64"] = base64.b64encode(data).decode("ascii")
            return keys
    if output.path is not None:
        keys[f"{name}_file"] = _relative(output.path, place)
    if output.error:
        keys[f"{name}_error"] = output.error
    return keys


def _output_value(item: Json, name: str, place: _Place) -> Output:
    sha256 = item.get(f"{name}_sha256")
    if name not in item:  # referenced, or lost
        where = item.get(f"{name}_file")
        path = None if where is None else _resolved(str(where), place)
        return Output.from_file(
            path, int(item[f"{name}_bytes"]), str(sha256), str(item.get(f"{name}_error", ""))
        )
    encoded = item.get(f"{name}_base64")
    if encoded is not None:
        data = base64.b64decode(encoded, validate=True)
    else:
        data = str(item[name]).encode("utf-8")
    output = Output.from_bytes(data)
    if sha256 is not None and output.sha256 != sha256:
        raise ValueError(f"{name} does not match its {name}_sha256")
    return output


def _item_type(kind: Any) -> type[Any] | None:
    """The dataclass X of a `list[X]` field, else None."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return item
    return None


def _optional_item(kind: Any) -> type[Any] | None:
    """The dataclass X of an `X | None` field, else None."""
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


_KINDS: dict[type[Any], dict[str, Any]] = {}
_FLOATS: dict[type[Any], frozenset[str]] = {}


def _kinds(cls: type[Any]) -> dict[str, Any]:
    """The field types (results.py's annotations are strings until resolved), once."""
    kinds = _KINDS.get(cls)
    if kinds is None:
        kinds = _KINDS[cls] = typing.get_type_hints(cls)
    return kinds


def _floats(cls: type[Any]) -> frozenset[str]:
    """The fields of `cls` that may hold a float (`float`, `float | None`, a dict of
    floats or of MetricSummary), once."""
    floats = _FLOATS.get(cls)
    if floats is None:
        floats = _FLOATS[cls] = frozenset(
            name
            for name, kind in _kinds(cls).items()
            if kind is float
            or float in typing.get_args(kind)
            or MetricSummary in typing.get_args(kind)
        )
    return floats


def _finite(value: Any) -> bool:
    """Whether a float field's value holds no NaN nor infinity (None: none)."""
    if value is None:
        return True
    if isinstance(value, dict):
        # Summed in C (a command's metrics: floats); an overflow to infinity only
        # costs the fast path.
        try:
            value = sum(value.values())
        except TypeError:  # a test's: MetricSummary
            value = sum(s.sum + s.min + s.median + s.max for s in value.values())
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


@dataclasses.dataclass(frozen=True)
class _Field:
    """What _encode needs of one field, worked out once per class."""

    name: str
    may_be_float: bool
    special: _Special | None
    list_of: type[Any] | None  # the dataclass X of a list[X] field


_FIELDS: dict[type[Any], tuple[_Field, ...]] = {}
_PLAIN = frozenset({str, int, float, bool, dict, type(None)})


def _fields(cls: type[Any]) -> tuple[_Field, ...]:
    found = _FIELDS.get(cls)
    if found is None:
        kinds, floats = _kinds(cls), _floats(cls)
        found = _FIELDS[cls] = tuple(
            _Field(f.name, f.name in floats, _SPECIAL.get((cls, f.name)), _item_type(kinds[f.name]))
            for f in dataclasses.fields(cls)
        )
    return found


def _encode(obj: Any, place: _Place) -> Json:
    out: Json = {}
    for f in _fields(type(obj)):
        value = getattr(obj, f.name)
        if f.may_be_float and not _finite(value):
            place.not_finite.append(f"{type(obj).__name__}.{f.name}")
        if f.special is not None:
            out.update(f.special.encode(value))
        elif f.list_of is not None:
            out[f.name] = [_encode(child, place) for child in value]
        elif type(value) in _PLAIN:
            out[f.name] = value  # the common case first (an enum is a str, not plain)
        elif isinstance(value, Output):
            out.update(_output_keys(f.name, value, place))
        elif dataclasses.is_dataclass(value):
            out[f.name] = _encode(value, place)
        elif isinstance(value, Path):
            out[f.name] = _relative(value, place)
        elif isinstance(value, enum.Enum):
            out[f.name] = value.value
        else:
            out[f.name] = value
    return out


def _decode(cls: type[Any], item: Json, place: _Place) -> Any:
    if not isinstance(item, dict):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(item).__name__}")
    kinds = _kinds(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = kinds[f.name]
        special = _SPECIAL.get((cls, f.name))
        keys = special.keys if special else (f.name,)
        if kind is Output:
            keys = (f.name, f"{f.name}_bytes")
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if has_default and not any(key in item for key in keys):
            continue  # written before the field existed
        if special is not None:
            values[f.name] = special.decode(item)
        elif kind is Output:
            values[f.name] = _output_value(item, f.name, place)
        elif (child := _item_type(kind)) is not None:
            values[f.name] = [_decode(child, c, place) for c in item[f.name]]
        elif (child := _optional_item(kind)) is not None:
            values[f.name] = None if item[f.name] is None else _decode(child, item[f.name], place)
        elif kind is Path:
            values[f.name] = _resolved(item[f.name], place)
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            values[f.name] = kind(item[f.name])
        else:
            values[f.name] = item[f.name]
    return cls(**values)


def run_to_json(
    run: RunResult, directory: Path | None = None, inline_limit: int = INLINE_LIMIT
) -> Json:
    """The document of `run`, to be written in `directory` (None: paths absolute)."""
    return _document(run, _Place(directory, inline_limit))


def _document(run: RunResult, place: _Place) -> Json:
    return {
        "format": JSON_FORMAT,
        "netjobs_version": __version__,
        "passed": run.passed,
        **_encode(run, place),
    }


def run_from_json(document: Any, directory: Path | None = None) -> RunResult:
    """A run from its document, read from `directory` (output paths are relative to it)."""
    if not isinstance(document, dict) or document.get("format") not in READ_FORMATS:
        raise ResultsFileError("not a NetJobs results file")
    return _decode(RunResult, document, _Place(directory))


def json_bytes(
    run: RunResult, directory: Path | None = None, inline_limit: int = INLINE_LIMIT
) -> bytes:
    """The document, indented by 2, in UTF-8. orjson writes it where it is installed
    (about 8 times faster: the standard library has no C encoder for an indented
    document); `json` where it is not, and for what orjson would write otherwise (NaN
    and infinities, integers over 64 bits). Both read back (json.loads) the same."""
    place = _Place(directory, inline_limit)
    document = _document(run, place)
    if ORJSON is not None and not place.not_finite:
        try:
            return ORJSON.dumps(document, option=ORJSON.OPT_INDENT_2) + b"\n"
        except ORJSON.JSONEncodeError:
            pass  # an integer over 64 bits: json writes it
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def json_text(
    run: RunResult, directory: Path | None = None, inline_limit: int = INLINE_LIMIT
) -> str:
    return json_bytes(run, directory, inline_limit).decode("utf-8")


def write_json(
    run: RunResult, path: str | os.PathLike[str], inline_limit: int = INLINE_LIMIT
) -> None:
    """Write the document at `path`, its output paths relative to it: all or nothing
    (atomic.write_atomic, mode 0600). Raises OSError with the old document intact."""
    from netjobs_core.atomic import write_atomic

    path = Path(path)
    write_atomic(path, json_bytes(run, path.parent, inline_limit))


def read_document(path: str | os.PathLike[str]) -> str:
    """The text of a results file; ResultsFileError when it cannot be read or is not
    UTF-8 (a damaged file, or another file in its place)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ResultsFileError(
            f"{path}: not a valid NetJobs results file (not UTF-8: byte "
            f"0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_json(path: str | os.PathLike[str], text: str | None = None) -> RunResult:
    """Read back what write_json wrote (or any earlier netjobs-results/1 document);
    `text`: the file's text, when the caller has read it already."""
    if text is None:
        text = read_document(path)
    try:
        document = json.loads(text)
        return run_from_json(document, Path(path).parent)
    except ResultsFileError as exc:
        raise ResultsFileError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsFileError(f"{path}: not a valid NetJobs results file ({exc})") from None
