"""The JSON results document (--json, the GUI's Save/Open): `netjobs-results/1`.

The codec is driven by the dataclass fields of netjobs_core.results: a field is
written under its own name, enums as their value, lists of results recursively.
What the format spells differently is said once, in `_SPECIAL`. On reading, a key
that is absent takes the field's default, so a document from before a field was added
still loads (adding a key keeps the format name; renaming one breaks
tests/data/results-v1.json).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netjobs_core import __version__
from netjobs_core.results import HostResult, RunResult, TestResult
from netjobs_core.wire.address import Address

JSON_FORMAT = "netjobs-results/1"

Json = dict[str, Any]


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
    (HostResult, "state"): _renamed("status"),
}


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _bytes_keys(name: str, data: bytes) -> Json:
    keys: Json = {name: _text(data)}
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # The text above escapes what is not UTF-8; keep the exact bytes too.
        keys[f"{name}_base64"] = base64.b64encode(data).decode("ascii")
    return keys


def _bytes_value(item: Json, name: str) -> bytearray:
    encoded = item.get(f"{name}_base64")
    if encoded is not None:
        return bytearray(base64.b64decode(encoded, validate=True))
    return bytearray(str(item[name]).encode("utf-8"))


def _item_type(kind: Any) -> type[Any] | None:
    """The dataclass X of a `list[X]` field, else None."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return item
    return None


_KINDS: dict[type[Any], dict[str, Any]] = {}


def _kinds(cls: type[Any]) -> dict[str, Any]:
    """The field types (results.py's annotations are strings until resolved), once."""
    kinds = _KINDS.get(cls)
    if kinds is None:
        kinds = _KINDS[cls] = typing.get_type_hints(cls)
    return kinds


def _encode(obj: Any) -> Json:
    cls = type(obj)
    kinds = _kinds(cls)
    out: Json = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        special = _SPECIAL.get((cls, f.name))
        if special is not None:
            out.update(special.encode(value))
        elif isinstance(value, bytes | bytearray):
            out.update(_bytes_keys(f.name, bytes(value)))
        elif _item_type(kinds[f.name]) is not None:
            out[f.name] = [_encode(child) for child in value]
        elif isinstance(value, enum.Enum):
            out[f.name] = value.value
        else:
            out[f.name] = value
    return out


def _decode(cls: type[Any], item: Json) -> Any:
    if not isinstance(item, dict):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(item).__name__}")
    kinds = _kinds(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = kinds[f.name]
        special = _SPECIAL.get((cls, f.name))
        keys = special.keys if special else (f.name,)
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if has_default and not any(key in item for key in keys):
            continue  # written before the field existed
        if special is not None:
            values[f.name] = special.decode(item)
        elif kind is bytearray:
            values[f.name] = _bytes_value(item, f.name)
        elif (child := _item_type(kind)) is not None:
            values[f.name] = [_decode(child, c) for c in item[f.name]]
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            values[f.name] = kind(item[f.name])
        else:
            values[f.name] = item[f.name]
    return cls(**values)


def run_to_json(run: RunResult) -> Json:
    return {
        "format": JSON_FORMAT,
        "netjobs_version": __version__,
        "passed": run.passed,
        **_encode(run),
    }


def run_from_json(document: Any) -> RunResult:
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise ResultsFileError("not a NetJobs results file")
    return _decode(RunResult, document)


def json_text(run: RunResult) -> str:
    return json.dumps(run_to_json(run), indent=2) + "\n"


def write_json(run: RunResult, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json_text(run), encoding="utf-8")


def load_json(path: str | os.PathLike[str]) -> RunResult:
    """Read back what write_json wrote (or any earlier netjobs-results/1 document)."""
    try:
        return run_from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except ResultsFileError as exc:
        raise ResultsFileError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsFileError(f"{path}: not a valid NetJobs results file ({exc})") from None
