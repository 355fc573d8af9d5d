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
from netjobs_core.results import (
    CommandResult,
    CommandStatus,
    ConcurrentWindow,
    HostResult,
    MetricSummary,
    RunResult,
    TestResult,
    TestStatus,
)
from netjobs_core.results_json import write_json
from netjobs_core.wire.address import Address


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
    # One test run twice is one test of two repetitions, not "2 tests" (issue 21).
    assert text.record_summary(old) == "1 test passed (2 repetitions)"
    assert old.passed and old.results_kept
    assert [(t.label, t.repetition, t.status, t.start_spread_ms) for t in old.tests] == [
        ("fio", 1, "passed", 0.2),
        ("fio", 2, "passed", 0.4),
    ]
    assert (old.tests[0].window_s, old.tests[0].window_fraction) == (58.7, 0.979)
    assert records[0].tests[1].window_s is None
    assert text.record_summary(records[0]) == "1 test, 2 repetitions: 1 passed, 1 failed"
    assert text.test_record_line(old.tests[0]) == (
        "test 'fio' (repetition 1): passed, start spread 0.200 ms ± 0.050 ms, "
        "together 58.700 s (97.9 % of the longest command)"
    )
    # Recording a run again replaces it.
    assert record_run(older, None, path) is None
    with History(path) as history:
        assert len(history.recent()) == 2 and len(history.find(older.run_id).tests) == 2


@pytest.mark.posix
def test_the_history_and_its_journal_are_owner_only(tmp_path):
    """It holds every config run: 0600 from its creation, whatever the umask; SQLite's
    journal beside it too; one an older NetJobs left 0644 is made 0600."""
    path = tmp_path / "h.sqlite3"
    old_umask = os.umask(0o022)
    try:
        assert record_run(a_run(tmp_path, "20261201-101010-aaaa", 1.8e9), None, path) is None
        assert path.stat().st_mode & 0o777 == 0o600
        with sqlite3.connect(path, isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE runs SET note = 'x'")
            journal = tmp_path / "h.sqlite3-journal"
            assert journal.stat().st_mode & 0o777 == 0o600  # while it is written
            db.execute("ROLLBACK")
        db.close()
        path.chmod(0o644)
        with History(path) as history:
            assert history.find("last").run_id == "20261201-101010-aaaa"
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)


def test_a_deleted_results_folder_shows_as_such(tmp_path):
    path = tmp_path / "h.sqlite3"
    run = a_run(tmp_path)
    record_run(run, None, path)
    shutil.rmtree(run.results_dir)
    with History(path) as history:
        (record,) = history.recent()
    assert not record.results_kept
    assert text.history_line(record).endswith(f"(results deleted: {run.results_dir})")


def test_it_keeps_facts_and_reads_as_the_run_did(tmp_path):
    path = tmp_path / "h.sqlite3"
    run = a_run(tmp_path)
    statuses = [CommandStatus.TIMEOUT, CommandStatus.OK, CommandStatus.FAILED]
    for test, extra in zip(run.tests, (statuses, [CommandStatus.TIMEOUT]), strict=True):
        host = HostResult(Address("10.0.0.1"))
        host.commands = [CommandResult("fio", status=status) for status in extra]
        test.hosts.append(host)
    assert text.run_summary(run) == (
        "1 test passed (2 repetitions; commands: 2 timed out, 1 failed)"
    )
    assert record_run(run, None, path) is None
    with History(path) as history:
        (record,) = history.recent()
    assert record.problems == ((CommandStatus.TIMEOUT, 2), (CommandStatus.FAILED, 1))
    assert [t.status for t in record.tests] == [TestStatus.PASSED, TestStatus.PASSED]
    assert text.record_summary(record) == text.run_summary(run)
    for test in run.tests:  # not repeated: each test counts
        test.repetition = None
    assert text.run_summary(run) == "2 tests passed (commands: 2 timed out, 1 failed)"
    with sqlite3.connect(path) as db:  # no words stored: no column holds the sentence
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
        assert "summary" not in columns
        assert db.execute("SELECT status, commands FROM problems").fetchall() == [
            ("timeout", 2),
            ("failed", 1),
        ]


# Schema 1 as NetJobs wrote it before the run history kept facts: the run's summary
# in words (text.run_summary when it ended), with rows as that version recorded them.
SCHEMA_1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    started_at REAL,
    config_path TEXT NOT NULL,
    config_text TEXT,
    results_dir TEXT NOT NULL,
    summary TEXT NOT NULL,
    passed INTEGER NOT NULL
);
CREATE INDEX runs_by_start ON runs (started_at);
CREATE TABLE tests (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    label TEXT NOT NULL,
    repetition INTEGER,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    start_spread_ms REAL,
    start_spread_uncertainty_ms REAL,
    window_start REAL,
    window_end REAL,
    window_s REAL,
    window_fraction REAL,
    PRIMARY KEY (run_id, position)
);
INSERT INTO runs VALUES ('r1', 1.8e9, '/cfg/a.cfg', 'x', '/gone/r1', '1 test passed', 1);
INSERT INTO tests VALUES ('r1', 0, 'a', NULL, 'passed', '', 0.2, 0.05, 1.8e9, 1.8e9 + 5, 5, 0.5);
INSERT INTO runs VALUES ('r2', 1.8e9 + 60, '/cfg/a.cfg', NULL, '/gone/r2',
    '2 tests passed (commands: 1 failed, 2 timed out, 1 error)', 1);
INSERT INTO tests VALUES ('r2', 0, 'a', 1, 'passed', '', 0.3, 0.05, NULL, NULL, NULL, NULL);
INSERT INTO tests VALUES ('r2', 1, 'a', 2, 'passed', '', 0.4, 0.05, NULL, NULL, NULL, NULL);
INSERT INTO runs VALUES ('r3', 1.8e9 + 120, '', NULL, '/gone/r3', '1 aborted, 1 not run', 0);
INSERT INTO tests VALUES ('r3', 0, 'a', NULL, 'aborted', 'quorum lost', NULL, NULL,
    NULL, NULL, NULL, NULL);
INSERT INTO tests VALUES ('r3', 1, 'b', NULL, 'pending', '', NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO runs VALUES ('r4', 1.8e9 + 180, '/cfg/b.cfg', NULL, '', 'no test ran', 0);
PRAGMA user_version = 1;
"""


def test_a_schema_1_history_opens_and_its_runs_read_as_before(tmp_path):
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
    with sqlite3.connect(path) as db:
        said = dict(db.execute("SELECT run_id, summary FROM runs"))
    with History(path) as history:
        records = {record.run_id: record for record in history.recent()}
        # A second program opening it finds it migrated.
        with History(path) as again:
            assert [r.run_id for r in again.recent()] == ["r4", "r3", "r2", "r1"]
    # As before, but r2's one test repeated twice reads as one test (issue 21).
    said["r2"] = "1 test passed (2 repetitions; commands: 1 failed, 2 timed out, 1 error)"
    assert {run_id: text.record_summary(r) for run_id, r in records.items()} == said
    assert records["r2"].problems == (
        (CommandStatus.FAILED, 1),
        (CommandStatus.TIMEOUT, 2),
        (CommandStatus.ERROR, 1),
    )
    assert text.history_line(records["r3"]) == (
        f"r3  {text.timestamp(1.8e9 + 120, 'seconds')}  1 aborted, 1 not run  untitled"
        "  (results deleted: /gone/r3)"
    )
    assert text.test_record_line(records["r1"].tests[0]) == (
        "test 'a': passed, start spread 0.200 ms ± 0.050 ms, "
        "together 5.000 s (50.0 % of the longest command)"
    )
    assert [text.test_record_line(test) for test in records["r3"].tests] == [
        "test 'a': aborted (quorum lost)",
        "test 'b': not run",  # the word the outcome uses, not the JSON's 'pending'
    ]
    assert records["r1"].config_text == "x" and records["r2"].passed and not records["r3"].passed
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master")].count(
            "runs_by_start"
        ) == 1
    # New runs are recorded beside the old ones; deleting one still takes its rows along.
    assert record_run(a_run(tmp_path), None, path) is None
    with History(path) as history:
        assert len(history.recent()) == 5
        history.record(RunResult("", run_id="r2", results_dir=""), None)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM tests WHERE run_id = 'r2'").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM problems WHERE run_id = 'r2'").fetchone() == (0,)


def test_a_status_it_does_not_know_is_a_damaged_history(tmp_path):
    path = tmp_path / "h.sqlite3"
    record_run(a_run(tmp_path), None, path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tests SET status = 'exploded'")
    with History(path) as history, pytest.raises(HistoryError, match="is damaged"):
        history.recent()


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
    assert (data / "netjobs" / "history.sqlite3").stat().st_mode & 0o777 == 0o600
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
    for form in ("--json", "--csv"):  # a document or nothing on stdout; the words on stderr
        shown = netjobs("show", "last", form, data=data)
        assert shown.returncode == 1 and shown.stdout == ""
        assert "its results were deleted" in shown.stderr and "test 't': passed" in shown.stderr


def test_a_tests_metric_sums_are_kept_and_a_schema_3_history_gains_them(tmp_path):
    path = tmp_path / "h.sqlite3"
    earlier = a_run(tmp_path, "20261201-090909-cccc", 1.8e9 - 60)
    assert record_run(earlier, None, path) is None
    with sqlite3.connect(path) as db:  # as NetJobs with schema 3 left it
        db.execute("DROP TABLE test_metrics")
        db.execute("ALTER TABLE runs DROP COLUMN note")
        db.execute("PRAGMA user_version = 3")
    db.close()
    run = a_run(tmp_path)
    run.tests[0].metrics = {
        "read_bw": MetricSummary(2.07e9, 5e8, 5.2e8, 5.4e8, 4),
        "read_iops": MetricSummary(1e5, 2e4, 2.5e4, 3e4, 4),
    }
    assert record_run(run, None, path) is None
    with History(path) as history:
        first, second = history.find(run.run_id).tests
        assert first.metrics == (("read_bw", 2.07e9, 4), ("read_iops", 1e5, 4))
        assert second.metrics == ()
        assert history.find(earlier.run_id).tests[0].metrics == ()  # kept across the migration
    assert text.test_record_line(first).endswith(
        "read_bw 1.93 GiB/s in all over 4 hosts, read_iops 100 k in all over 4 hosts"
    )
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    db.close()


# -- notes on a run (schema 5) ------------------------------------------------------


def test_a_note_is_kept_with_its_run_and_survives_its_end(tmp_path):
    path = tmp_path / "h.sqlite3"
    run = a_run(tmp_path)
    record_run(run, None, path, ended=False)  # as it starts
    with History(path) as history:
        history.set_note(run.run_id, "new firmware on node07")
        with pytest.raises(HistoryError, match="no run 'nope'"):
            history.set_note("nope", "x")
    assert record_run(run, None, path) is None  # as it ends: recorded again, whole
    with History(path) as history:
        (record,) = history.recent()
    assert record.note == "new firmware on node07" and record.ended
    assert text.history_line(record).endswith("  note: new firmware on node07")


def test_a_schema_4_history_gets_notes(tmp_path):
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
    with History(path):  # today's schema
        pass
    with sqlite3.connect(path) as db:  # back to schema 4, as a NetJobs before notes left it
        rebuilt = [
            "CREATE TABLE r4 AS SELECT run_id, started_at, config_path, config_text, "
            "results_dir, passed, ended FROM runs",
            "DROP TABLE runs",
            "ALTER TABLE r4 RENAME TO runs",
            "PRAGMA user_version = 4",
        ]
        for statement in rebuilt:
            db.execute(statement)
    with History(path) as history:
        assert [r.note for r in history.recent()] == ["", "", "", ""]
        history.set_note("r2", "kept")
        assert history.find("r2").note == "kept"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5


def test_netjobs_note_keeps_and_shows_a_note(tmp_path):
    data = tmp_path / "data"
    (data / "netjobs").mkdir(parents=True)
    run = a_run(tmp_path)
    assert record_run(run, None, data / "netjobs" / "history.sqlite3") is None
    assert netjobs("note", "last", data=data).stdout == "no note\n"
    kept = netjobs("note", "20261201", "switch \x1b[31m replaced", data=data)
    assert kept.stdout == f"run {run.run_id}: note kept\n"
    assert netjobs("note", "last", data=data).stdout == "switch \\x1b[31m replaced\n"
    listed = netjobs("history", data=data).stdout
    assert listed.rstrip().endswith("note: switch \\x1b[31m replaced")
    missing = netjobs("note", "1999", "x", data=data)
    assert missing.returncode == 2 and "no run '1999'" in missing.stderr


def test_a_history_a_development_build_migrated_in_another_order_still_opens(tmp_path):
    """A build that numbered its migrations otherwise (notes as schema 4) left a history
    whose next migrations find their column or table already there: not an error."""
    path = tmp_path / "h.sqlite3"
    earlier = a_run(tmp_path, "20261201-090909-cccc", 1.8e9 - 60)
    assert record_run(earlier, None, path) is None
    with sqlite3.connect(path) as db:  # schema 4 by that build: `note` there, no metrics
        db.execute("DROP TABLE test_metrics")
        db.execute("PRAGMA user_version = 3")
    db.close()
    run = a_run(tmp_path)
    assert record_run(run, None, path) is None
    with History(path) as history:
        assert {r.run_id for r in history.recent()} == {earlier.run_id, run.run_id}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


@pytest.mark.posix
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (b"\xff\xfe\x00{", "not UTF-8: byte 0xff at offset 0"),
        (b'{"format": "netjobs-results/2", "tests": [', "Expecting value"),
    ],
)
def test_show_of_a_damaged_results_file_says_which_file_and_what(
    tmp_path, agents, token_file, damage, words
):
    """A results.json with bytes that are not UTF-8 (a disk error, another file copied in
    its place) printed a UnicodeDecodeError traceback from `netjobs show`."""
    data = tmp_path / "data"
    cfg = tmp_path / "run.cfg"
    cfg.write_text(f't:\n127.0.0.1:{agents[0].port}: "true"\nend\n')
    assert netjobs("--token-file", token_file, cfg, data=data).returncode == 0
    (folder,) = (data / "netjobs" / "runs").iterdir()
    (folder / "results.json").write_bytes(damage)
    for form in ((), ("--json",), ("--csv",)):
        shown = netjobs("show", "last", *form, data=data)
        assert shown.returncode == 1 and shown.stdout == ""
        (line,) = shown.stderr.splitlines()
        assert line.startswith(f"netjobs: run {folder.name}: {folder / 'results.json'}: ")
        assert "not a valid NetJobs results file" in line and words in line
