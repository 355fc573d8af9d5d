"""The run history (netjobs_core.history) and `netjobs history` / `netjobs show`."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from netjobs_core import text
from netjobs_core.history import SCHEMA_VERSION, History, HistoryError, record_run
from netjobs_core.results import ConcurrentWindow, RunResult, TestResult, TestStatus
from netjobs_core.results_json import write_json


def a_run(tmp_path, run_id="20261201-101010-abcd", started=1.8e9) -> RunResult:
    folder = tmp_path / run_id
    folder.mkdir()
    run = RunResult("/cfg/fio.cfg", run_id=run_id, results_dir=str(folder), started_at=started)
    for k in (1, 2):
        run.tests.append(
            TestResult(
                "fio",
                None,
                status=TestStatus.PASSED,
                start_spread_ms=0.2 * k,
                start_spread_uncertainty_ms=0.05,
                concurrent_window=ConcurrentWindow(started, started + 58.7, 58.7, 0.979),
                repetition=k,
            )
        )
    write_json(run, folder / "results.json")
    return run


def test_round_trip_newest_first(tmp_path):
    path = tmp_path / "h.sqlite3"
    older = a_run(tmp_path, "20261201-101010-aaaa", 1.8e9)
    newer = a_run(tmp_path, "20261201-111111-bbbb", 1.8e9 + 3600)
    newer.tests[1].status, newer.tests[1].concurrent_window = TestStatus.FAILED, None
    assert record_run(older, 't:\nh: "fio"\nend\n', path) is None
    assert record_run(newer, None, path) is None
    with History(path) as history:
        records = history.recent()
        assert [r.run_id for r in records] == [newer.run_id, older.run_id]
        old = history.find("20261201-1010")  # a unique prefix
        assert history.find("last").run_id == newer.run_id
        with pytest.raises(HistoryError, match="several runs"):
            history.find("20261201-1")
        with pytest.raises(HistoryError, match="no run 'nope'"):
            history.find("nope")
    assert old.config_path == "/cfg/fio.cfg" and old.config_text == 't:\nh: "fio"\nend\n'
    assert old.summary == "2 tests passed" and old.passed and old.results_kept
    assert [(t.label, t.repetition, t.status, t.start_spread_ms) for t in old.tests] == [
        ("fio", 1, "passed", 0.2),
        ("fio", 2, "passed", 0.4),
    ]
    assert (old.tests[0].window_s, old.tests[0].window_fraction) == (58.7, 0.979)
    assert records[0].tests[1].window_s is None and records[0].summary == "1 passed, 1 failed"
    assert text.test_record_line(old.tests[0]) == (
        "test 'fio' (repetition 1): passed, start spread 0.200 ms ± 0.050 ms, "
        "together 58.700 s (97.9 % of the longest command)"
    )
    # Recording a run again replaces it.
    assert record_run(older, None, path) is None
    with History(path) as history:
        assert len(history.recent()) == 2 and len(history.find(older.run_id).tests) == 2


def test_a_deleted_results_folder_shows_as_such(tmp_path):
    path = tmp_path / "h.sqlite3"
    run = a_run(tmp_path)
    record_run(run, None, path)
    shutil.rmtree(run.results_dir)
    with History(path) as history:
        (record,) = history.recent()
    assert not record.results_kept
    assert text.history_line(record).endswith(f"(results deleted: {run.results_dir})")


def test_schema_version_and_migration_of_an_empty_database(tmp_path):
    path = tmp_path / "h.sqlite3"
    sqlite3.connect(path).close()  # version 0: no tables yet
    with History(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    message = record_run(a_run(tmp_path), None, path)
    assert message is not None and "newer NetJobs" in message


def test_a_corrupt_database_is_one_clear_line(tmp_path):
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is no database, only bytes\n" * 200)
    message = record_run(a_run(tmp_path), None, path)
    assert message is not None and "\n" not in message
    assert f"the run history {path} is damaged" in message and "move it away" in message
    assert message.endswith("this run is not in the history")
    with pytest.raises(HistoryError, match="damaged"):
        History(path)


def test_a_locked_database_is_one_clear_line_and_waits_only_its_timeout(tmp_path):
    path = tmp_path / "h.sqlite3"
    with History(path):
        pass
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        began = time.monotonic()
        message = record_run(a_run(tmp_path), None, path, timeout=0.2)
        waited = time.monotonic() - began
    finally:
        holder.close()
    assert message is not None and "is locked by another program" in message
    assert 0.15 < waited < 5
    assert record_run(a_run(tmp_path, "20261201-121212-cccc"), None, path) is None


# -- the command line, on real agents -------------------------------------------


def netjobs(*args, data, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "XDG_DATA_HOME": str(data)},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.posix
@pytest.mark.timeout(120)
def test_history_and_show_of_real_runs(tmp_path, agents, token_file):
    data = tmp_path / "data"
    cfg = tmp_path / "run.cfg"
    body = "".join(f'127.0.0.1:{a.port}: "echo same; sleep 0.2"\n' for a in agents)
    cfg.write_text(f"t:\n{body}end\n")
    run = netjobs("--token-file", token_file, cfg, data=data)
    assert run.returncode == 0, run.stderr
    ports = sorted(a.port for a in agents)
    assert "(3 hosts): OK (exit 0)" in run.stdout and run.stdout.count("stdout: same") == 1
    assert "all 3 hosts ran together for" in run.stdout

    listed = netjobs("history", data=data)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    run_id = line.split()[0]
    assert line.endswith(f"1 test passed  {cfg}")
    folder = data / "netjobs" / "runs" / run_id
    assert (folder / "results.json").is_file()

    shown = netjobs("show", run_id[:-1], data=data)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith(f"run {run_id} of {cfg}")
    assert run.stdout.strip() in shown.stdout  # the report, as the run printed it
    unfolded = netjobs("show", run_id, "--no-fold", data=data)
    assert unfolded.stdout.count("stdout: same") == 3
    assert all(f"127.0.0.1:{p}  done" in unfolded.stdout for p in ports)
    as_json = netjobs("show", "last", "--json", data=data)
    assert json.loads(as_json.stdout)["run_id"] == run_id

    with sqlite3.connect(data / "netjobs" / "history.sqlite3") as db:
        (text_kept,) = db.execute("SELECT config_text FROM runs").fetchone()
    assert text_kept == cfg.read_text()

    # Opting out, then a damaged store: the runs run and say so in one line.
    assert netjobs("--no-history", "--token-file", token_file, cfg, data=data).returncode == 0
    assert len(netjobs("history", data=data).stdout.splitlines()) == 1
    (data / "netjobs" / "history.sqlite3").write_bytes(b"garbage" * 1000)
    damaged = netjobs("--token-file", token_file, cfg, data=data)
    assert damaged.returncode == 0 and "test 't': PASSED" in damaged.stdout
    (warning,) = [ln for ln in damaged.stderr.splitlines() if "run history" in ln]
    assert warning.startswith("netjobs: warning: the run history") and "damaged" in warning
    listed = netjobs("history", data=data)
    assert listed.returncode == 2 and "damaged" in listed.stderr
    assert "Traceback" not in listed.stderr + damaged.stderr


@pytest.mark.posix
@pytest.mark.timeout(120)
def test_show_of_a_run_whose_folder_was_deleted(tmp_path, agents, token_file):
    data = tmp_path / "data"
    cfg = tmp_path / "run.cfg"
    cfg.write_text(f't:\n127.0.0.1:{agents[0].port}: "true"\nend\n')
    assert netjobs("--token-file", token_file, cfg, data=data).returncode == 0
    shutil.rmtree(next((data / "netjobs" / "runs").iterdir()))
    listed = netjobs("history", data=data)
    assert listed.returncode == 0 and "(results deleted: " in listed.stdout
    shown = netjobs("show", "last", data=data)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert "its results were deleted" in shown.stderr
    assert shown.stdout.startswith("test 't': passed")
