"""The JSON Schema (draft 2020-12) of the results document `netjobs-results/2`, as
this NetJobs writes it (results_json.py): what `netjobs schema` prints, what the test
suite checks every document it makes against, what docs/results.md explains.

Every object lists its keys and allows no others: a key added to the document must
be added here, and the tests say so.
"""

from __future__ import annotations

from typing import Any

from netjobs_core.results import CommandStatus, HostState, StartMode, TestStatus
from netjobs_core.results_json import JSON_FORMAT
from netjobs_core.wire.sealing import Credential

__all__ = ["SCHEMA", "SCHEMA_ID"]

SCHEMA_ID = "urn:netjobs:results-2"

Json = dict[str, Any]

_NUMBER: Json = {"type": "number"}
_NUMBER_OR_NULL: Json = {"type": ["number", "null"]}
_EPOCH: Json = {"type": ["number", "null"], "description": "seconds since 1970 (controller)"}
_STRING: Json = {"type": "string"}
_SHA256: Json = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _object(required: dict[str, Json], optional: dict[str, Json] | None = None) -> Json:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def _enum(values: list[str]) -> Json:
    return {"type": "string", "enum": values}


def _stream(name: str) -> tuple[dict[str, Json], dict[str, Json]]:
    """An output's keys: size and sha256 always; inline text, or the file's path."""
    return (
        {f"{name}_bytes": {"type": "integer", "minimum": 0}, f"{name}_sha256": _SHA256},
        {
            name: {"type": "string", "description": "inline, up to --inline-limit bytes"},
            f"{name}_base64": {"type": "string", "description": "the exact bytes, not UTF-8"},
            f"{name}_file": {
                "type": "string",
                "description": "its file, relative to the document (absolute without one)",
            },
            f"{name}_error": {"type": "string", "description": "why its file is missing"},
        },
    )


_stdout, _stdout_optional = _stream("stdout")
_stderr, _stderr_optional = _stream("stderr")

_METRIC_VALUES: Json = {
    "type": "object",
    "propertyNames": {"pattern": "^[A-Za-z0-9_.]+$"},
    "additionalProperties": _NUMBER,
    "description": "metric name -> value; a metric that did not match is absent",
}

_COMMAND = _object(
    {
        "command": _STRING,
        "line": {"type": "integer", "minimum": 0},
        "status": _enum([s.value for s in CommandStatus]),
        "exit_code": {"type": ["integer", "null"]},
        **_stdout,
        **_stderr,
        "started_at": _EPOCH,
        "duration_s": _NUMBER_OR_NULL,
        "message": _STRING,
        "timeout": _NUMBER_OR_NULL,
        "lost_at": _EPOCH,
        "collected": {
            "type": "array",
            "items": _object(
                {
                    "pattern": _STRING,
                    "path": _STRING,
                    "bytes": {"type": "integer", "minimum": 0},
                    "sha256": _SHA256,
                }
            ),
        },
        "warnings": {"type": "array", "items": _STRING},
        "not_saved": {
            "type": "array",
            "items": _STRING,
            "description": "collected files received but not written on the controller",
        },
        "gaps": {
            "type": "array",
            "items": _object(
                {
                    "stream": _enum(["stdout", "stderr"]),
                    "offset": {"type": "integer", "minimum": 0},
                    "bytes": {"type": "integer", "minimum": 0},
                }
            ),
            "description": "output bytes the agent could not deliver (missing from the file)",
        },
        "release_late_ms": _NUMBER_OR_NULL,
        "exec_offset_ms": _NUMBER_OR_NULL,
        "metrics": _METRIC_VALUES,
    },
    {**_stdout_optional, **_stderr_optional},
)

_HOST = _object(
    {
        "target": _STRING,
        "host": _STRING,
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "status": _enum([s.value for s in HostState]),
        "error": _STRING,
        "agent_version": _STRING,
        "hostname": _STRING,
        "rtt_ms": _NUMBER_OR_NULL,
        "clock_offset_ms": _NUMBER_OR_NULL,
        "clock_uncertainty_ms": _NUMBER_OR_NULL,
        "wall_clock_offset_ms": _NUMBER_OR_NULL,
        "start_offset_ms": _NUMBER_OR_NULL,
        "gated": {"type": ["boolean", "null"]},
        "commands": {"type": "array", "items": _COMMAND},
        "credential": _enum(["", *(c.value for c in Credential)]),
        "exec_error": _STRING,
        "interruptions": {
            "type": "array",
            "items": _object(
                {
                    "at": _NUMBER,
                    "cause": _STRING,
                    "duration_s": _NUMBER_OR_NULL,
                    "resumed": {"type": "boolean"},
                }
            ),
        },
        "interruptions_folded": {"type": "integer", "minimum": 0},
    },
    {"scheme": _enum(["ssh"]), "user": _STRING},
)

_METRIC_SUMMARY = _object(
    {
        "sum": _NUMBER,
        "min": _NUMBER,
        "median": _NUMBER,
        "max": _NUMBER,
        "hosts": {"type": "integer", "minimum": 1},
    },
    {"hosts_failed": {"type": "integer", "minimum": 0}},
)

_TEST = _object(
    {
        "label": _STRING,
        "minhosts": {"oneOf": [{"const": "all"}, {"type": "integer", "minimum": 0}]},
        "start_mode": _enum([m.value for m in StartMode]),
        "status": _enum([s.value for s in TestStatus]),
        "reason": _STRING,
        "started_at": _EPOCH,
        "scheduled_start": _EPOCH,
        "duration_s": _NUMBER_OR_NULL,
        "start_spread_ms": _NUMBER_OR_NULL,
        "start_spread_uncertainty_ms": _NUMBER_OR_NULL,
        "exec_spread_ms": _NUMBER_OR_NULL,
        "exec_spread_uncertainty_ms": _NUMBER_OR_NULL,
        "lead_ms": _NUMBER_OR_NULL,
        "lead_set_by": {
            "oneOf": [
                {"type": "null"},
                _object(
                    {
                        "host": _STRING,
                        "figure": _enum(["rtt", "transit"]),
                        "figure_ms": _NUMBER,
                        "others_ms": _NUMBER,
                    }
                ),
            ]
        },
        "late_threshold_ms": _NUMBER,
        "concurrent_window": {
            "oneOf": [
                {"type": "null"},
                _object(
                    {
                        "start": _NUMBER,
                        "end": _NUMBER,
                        "seconds": _NUMBER,
                        "fraction": _NUMBER,
                        "at_least": {"type": "boolean"},
                    }
                ),
            ]
        },
        "repetition": {"type": ["integer", "null"], "minimum": 1},
        "hosts": {"type": "array", "items": _HOST},
        "metrics": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9_.]+$"},
            "additionalProperties": _METRIC_SUMMARY,
            "description": "metric name -> its summary over the hosts that had it",
        },
    }
)

SCHEMA: Json = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "NetJobs results",
    "description": "A NetJobs run: results.json in its folder, --json, the GUI's Save",
    **_object(
        {
            "format": {"const": JSON_FORMAT},
            "netjobs_version": _STRING,
            "passed": {"type": "boolean"},
            "config": _STRING,
            "run_id": _STRING,
            "results_dir": _STRING,
            "started_at": _EPOCH,
            "tests": {"type": "array", "items": _TEST},
        }
    ),
}
