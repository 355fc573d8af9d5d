"""The published JSON Schema of the results document (`netjobs schema`): valid draft
2020-12, true of what NetJobs writes, and strict enough to catch what it does not."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from schema_check import RESULTS_SCHEMA

from netjobs_core.outputs import Output
from netjobs_core.results import (
    Collected,
    CommandResult,
    CommandStatus,
    ConcurrentWindow,
    HostResult,
    HostState,
    Interruption,
    MetricSummary,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import json_text
from netjobs_core.results_schema import SCHEMA
from netjobs_core.wire.address import Address


def full_run(tmp_path: Path) -> RunResult:
    """A run with every kind of value the document has: SSH and plain hosts, an
    output inline, one not UTF-8, one referenced by its file, collected files,
    interruptions, metrics, a window, a repetition."""
    big = Output(tmp_path / "cmd0.stdout", keep=8)
    big.append(b"x" * 100)
    big.close()
    command = CommandResult(
        "fio job.fio",
        line=3,
        status=CommandStatus.OK,
        exit_code=0,
        stdout=big,
        stderr=Output.from_bytes(b"\xffnot utf-8"),
        started_at=1.7e9,
        duration_s=1.5,
        timeout=30.0,
        collected=[Collected("/tmp/*.json", tmp_path / "f.json", 10, "a" * 64)],
        warnings=["-collect '/x': no file matched"],
        metrics={"read_bw": 1.5e9, "read_clat_p99_ns": 127488},
    )
    lost = CommandResult("sleep 9", status=CommandStatus.LOST, lost_at=1.7e9, message="lost")
    ssh_host = HostResult(
        Address("node1", 22, "ssh", "bench"),
        state=HostState.DONE,
        rtt_ms=0.1,
        clock_offset_ms=-0.2,
        clock_uncertainty_ms=0.05,
        wall_clock_offset_ms=1.0,
        start_offset_ms=0.3,
        gated=True,
        commands=[command],
        interruptions=[Interruption(1.7e9, "reset", 0.5, resumed=True)],
    )
    failed = HostResult(Address("10.0.0.2", 16200), HostState.FAILED, "refused", commands=[lost])
    test = TestResult(
        "fio",
        minhosts=1,
        status=TestStatus.PASSED,
        started_at=1.7e9,
        scheduled_start=1.7e9,
        duration_s=2.0,
        start_spread_ms=0.3,
        start_spread_uncertainty_ms=0.1,
        concurrent_window=ConcurrentWindow(1.7e9, 1.7e9 + 1, 1.0, 0.9),
        repetition=2,
        hosts=[ssh_host, failed],
        metrics={"read_bw": MetricSummary(1.5e9, 1.5e9, 1.5e9, 1.5e9, 1)},
    )
    pending = TestResult("later", None)
    return RunResult("c.cfg", "20261204-1", str(tmp_path), 1.7e9, [test, pending])


def document(tmp_path: Path) -> dict[str, Any]:
    return json.loads(json_text(full_run(tmp_path), tmp_path, inline_limit=50))


def test_the_schema_is_draft_2020_12_and_netjobs_schema_prints_it():
    Draft202012Validator.check_schema(SCHEMA)
    printed = subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(printed) == SCHEMA
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_key_netjobs_writes_is_valid(tmp_path):
    found = document(tmp_path)
    RESULTS_SCHEMA.validate(found)
    command = found["tests"][0]["hosts"][0]["commands"][0]
    # The document exercises each spelling of an output.
    assert {"stdout_file", "stderr", "stderr_base64"} <= set(command)
    assert found["tests"][0]["hosts"][0]["scheme"] == "ssh"


def _mutations() -> list[tuple[str, Any]]:
    def unset(*path: Any) -> Any:
        def change(doc: dict[str, Any]) -> None:
            *parents, last = path
            target = doc
            for key in parents:
                target = target[key]
            del target[last]

        return change

    def put(value: Any, *path: Any) -> Any:
        def change(doc: dict[str, Any]) -> None:
            *parents, last = path
            target = doc
            for key in parents:
                target = target[key]
            target[last] = value

        return change

    command = ("tests", 0, "hosts", 0, "commands", 0)
    return [
        ("another format", put("netjobs-results/9", "format")),
        ("no tests", unset("tests")),
        ("an unknown top-level key", put(1, "surprise")),
        ("passed as text", put("yes", "passed")),
        ("an unknown test status", put("great", "tests", 0, "status")),
        ("minhosts some", put("some", "tests", 0, "minhosts")),
        ("repetition 0", put(0, "tests", 0, "repetition")),
        ("a host without a port", unset("tests", 0, "hosts", 0, "port")),
        ("port 70000", put(70000, "tests", 0, "hosts", 0, "port")),
        ("an unknown host state", put("asleep", "tests", 0, "hosts", 0, "status")),
        ("a command without status", unset(*command, "status")),
        ("exit code 0.5", put(0.5, *command, "exit_code")),
        ("a short sha256", put("abc", *command, "stdout_sha256")),
        ("negative bytes", put(-1, *command, "stdout_bytes")),
        ("a metric as text", put({"read_bw": "fast"}, *command, "metrics")),
        ("a metric with a bad name", put({"read bw": 1}, *command, "metrics")),
        ("a summary without hosts", unset("tests", 0, "metrics", "read_bw", "hosts")),
        ("a summary of 0 hosts", put(0, "tests", 0, "metrics", "read_bw", "hosts")),
        ("a window without seconds", unset("tests", 0, "concurrent_window", "seconds")),
        ("a collected file without path", unset(*command, "collected", 0, "path")),
    ]


@pytest.mark.parametrize(("what", "change"), _mutations(), ids=[m[0] for m in _mutations()])
def test_the_schema_refuses_what_netjobs_never_writes(tmp_path, what, change):
    broken = copy.deepcopy(document(tmp_path))
    change(broken)
    assert not RESULTS_SCHEMA.is_valid(broken), what


def test_orjson_writes_what_json_writes(tmp_path, monkeypatch):
    """results.json written by orjson (the `fast` extra) reads back (json.loads) as the
    standard library's; a value orjson would write otherwise (NaN, infinity, an integer
    over 64 bits) makes the whole document json's, NaN and all."""
    from netjobs_core import results_json

    if results_json.ORJSON is None:
        pytest.skip("orjson is not installed (pip install 'netjobs[fast]')")
    run = full_run(tmp_path)
    command = run.tests[0].hosts[0].commands[0]
    command.stderr = Output.from_bytes('é ✓ \x00 "q" \\ \U0001f600'.encode())
    command.metrics |= {"tiny": 1e-300, "huge": 1e16, "third": 1 / 3, "neg": -0.0}

    def both() -> tuple[bytes, bytes]:
        fast = results_json.json_bytes(run, tmp_path, inline_limit=50)
        monkeypatch.setattr(results_json, "ORJSON", None)
        slow = results_json.json_bytes(run, tmp_path, inline_limit=50)
        monkeypatch.undo()
        return fast, slow

    fast, slow = both()
    assert json.loads(fast) == json.loads(slow)
    assert fast.startswith(b'{\n  "format": "netjobs-results/2",\n')  # indented by 2
    assert "é ✓".encode() in fast and b"\\u00e9 \\u2713" in slow  # UTF-8 / escaped

    for name, value, spelled in (
        ("inf", float("inf"), b"Infinity"),
        ("nan", float("nan"), b"NaN"),
    ):
        command.metrics[name] = value
        fast, slow = both()
        assert fast == slow and spelled in fast, name
        del command.metrics[name]
    run.tests[0].late_threshold_ms = float("inf")  # a float field outside the metrics
    fast, slow = both()
    assert fast == slow and b'"late_threshold_ms": Infinity' in fast
    run.tests[0].late_threshold_ms = 1.0
    command.collected[0].bytes = 2**70
    fast, slow = both()
    assert fast == slow and str(2**70).encode() in fast


def _schema_words(node: Any, keys: set[str], values: set[str]) -> None:
    """Every key of every object of the schema, and every value of its enums."""
    if isinstance(node, dict):
        keys.update(node.get("properties", {}))
        values.update(value for value in node.get("enum", ()) if value)
        for child in node.values():
            _schema_words(child, keys, values)
    elif isinstance(node, list):
        for child in node:
            _schema_words(child, keys, values)


def test_every_key_and_status_of_the_document_is_in_its_field_reference() -> None:
    """docs/results.md (the reference `netjobs schema --help` points to) names each key
    the document can have, and each value of its enums, in backquotes in its JSON part."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    reference = doc[doc.index("## The JSON document") :]
    named = {
        word
        for quoted in re.findall(r"`([^`\n]+)`", reference)
        for word in re.split(r"[\s,/\"{}]+", quoted)
    }
    keys: set[str] = set()
    values: set[str] = set()
    _schema_words(SCHEMA, keys, values)
    assert {"exec_spread_ms", "credential", "gaps", "unsaved"} <= keys | values  # it walks
    assert sorted(keys - named) == []
    assert sorted(values - named) == []
