"""The run history: every run, one row in a SQLite database in the user's data
directory (`<data dir>/history.sqlite3`), with its config's text, each test's
verdict, start spread, concurrent window and metric sums, its commands' problems by status, and
where its results folder is. It keeps facts (netjobs_core.records), never words:
netjobs_core.text makes those when a record is shown.

A run is recorded twice: when it starts (not `ended`: a run killed before its end,
by kill -9 or a power cut, stays so, and reads as interrupted) and again, whole, when
it ends.

The database is a convenience, never a reason for a run not to run: every
problem with it (damaged, locked by another program, a newer schema, a full disk)
is a HistoryError whose text is one line for the user. The schema is versioned
by SQLite's `user_version`; `_MIGRATIONS[k]` takes version k to k + 1, each in
one transaction.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from netjobs_core.metrics import fleet_figure
from netjobs_core.records import RunRecord, TestRecord
from netjobs_core.results import CommandStatus, RunResult, TestStatus
from netjobs_core.run_folder import data_dir

__all__ = ["SCHEMA_VERSION", "History", "HistoryError", "default_path", "record_run"]

BUSY_TIMEOUT_S = 2.0  # how long a run waits for another program's lock before giving up
CONFIG_TEXT_LIMIT = 1 << 20  # a config bigger than this is recorded by its path only

Migration = Callable[[sqlite3.Connection], None]


def _script(sql: str) -> Migration:
    def run(db: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)

    return run


# The words schema 1 stored for the commands that did not succeed (its `summary` was
# text.run_summary: `2 tests passed (commands: 1 failed, 2 timed out)`), as they were.
_SCHEMA_1_PROBLEMS = re.compile(r" \(commands: (.*)\)$")
_SCHEMA_1_WORDS = {
    "failed": CommandStatus.FAILED,
    "timed out": CommandStatus.TIMEOUT,
    "killed": CommandStatus.KILLED,
    "error": CommandStatus.ERROR,
    "lost": CommandStatus.LOST,
}


def _schema_1_problems(summary: str) -> list[tuple[CommandStatus, int]]:
    """The problem counts a schema-1 summary wrote in words (its other words, the
    tests' statuses, are in its tests' rows)."""
    found = _SCHEMA_1_PROBLEMS.search(summary)
    pairs = [part.partition(" ") for part in found.group(1).split(", ")] if found else []
    return [
        (_SCHEMA_1_WORDS[word], int(n))
        for n, _, word in pairs
        if n.isdigit() and word in _SCHEMA_1_WORDS
    ]


def _new_column(table: str, column: str, declaration: str) -> Migration:
    """Add COLUMN to TABLE, unless a database already has it (a development build that
    numbered its migrations otherwise: adding it twice would lock the history out)."""

    def run(db: sqlite3.Connection) -> None:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    return run


def _facts_not_words(db: sqlite3.Connection) -> None:
    """Schema 2: a run's problems as counts by status (table `problems`) instead of its
    summary in words (column `runs.summary`, dropped). Rebuilt the portable way (SQLite
    before 3.35 has no DROP COLUMN), with foreign keys off (see History._migrate)."""
    summaries = db.execute("SELECT run_id, summary FROM runs").fetchall()
    _script(
        """
        CREATE TABLE new_runs (
            run_id TEXT PRIMARY KEY,
            started_at REAL,
            config_path TEXT NOT NULL,
            config_text TEXT,
            results_dir TEXT NOT NULL,
            passed INTEGER NOT NULL
        );
        INSERT INTO new_runs
            SELECT run_id, started_at, config_path, config_text, results_dir, passed FROM runs;
        DROP TABLE runs;
        ALTER TABLE new_runs RENAME TO runs;
        CREATE INDEX runs_by_start ON runs (started_at);
        CREATE TABLE problems (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            status TEXT NOT NULL,
            commands INTEGER NOT NULL,
            PRIMARY KEY (run_id, status)
        );
        """
    )(db)
    for run_id, summary in summaries:
        for status, n in _schema_1_problems(summary):
            db.execute("INSERT INTO problems VALUES (?, ?, ?)", (run_id, status.value, n))


_MIGRATIONS: tuple[Migration, ...] = (
    _script(
        """
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
        """
    ),
    _facts_not_words,
    # Schema 3: runs are recorded as they start; `ended` is 0 until they end (the runs
    # recorded before were all recorded at their end).
    _new_column("runs", "ended", "INTEGER NOT NULL DEFAULT 1"),
    # Schema 4: each test's metric sums (netjobs_core.metrics), over how many hosts; since
    # 2026-12-05 a latency percentile's row holds its largest (metrics.fleet_figure).
    _script(
        """
        CREATE TABLE IF NOT EXISTS test_metrics (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            sum REAL NOT NULL,
            hosts INTEGER NOT NULL,
            PRIMARY KEY (run_id, position, name)
        );
        """
    ),
    # Schema 5: a person's note on a run (`netjobs note`, the History page).
    _new_column("runs", "note", "TEXT NOT NULL DEFAULT ''"),
)
SCHEMA_VERSION = len(_MIGRATIONS)


# What sqlite3 raises for a mistake in this module's SQL, never for a database's state.
_BUGS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.NotSupportedError,
    sqlite3.DataError,
)


class HistoryError(Exception):
    """The run history cannot be used; the text says why, in one line."""


def default_path() -> Path:
    return data_dir() / "history.sqlite3"


def _damaged(path: Path, why: str) -> HistoryError:
    return HistoryError(
        f"the run history {path} is damaged ({why}): move it away and NetJobs starts a new one"
    )


def _problem(exc: sqlite3.Error | OSError, path: Path) -> HistoryError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return HistoryError(f"cannot use the run history {path}: {exc.strerror or exc}")
    if "locked" in message or "busy" in message:
        return HistoryError(f"the run history {path} is locked by another program ({message})")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return _damaged(path, message)
    return HistoryError(f"cannot use the run history {path}: {message}")


def _owner_only(path: Path) -> None:
    """The history holds every config run (their text, hosts, notes): owner-only, 0600,
    from its creation (SQLite would make it 0644 under umask 022). SQLite gives its
    -journal and -wal files the database's mode. One left readable by an older NetJobs
    is made owner-only too."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if os.name == "posix" and os.fstat(fd).st_mode & 0o077:
            try:
                os.fchmod(fd, 0o600)
            except PermissionError:  # not ours: SQLite says what it can do with it
                pass
    finally:
        os.close(fd)


class History:
    """An open run history; a context manager. Every method raises HistoryError."""

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _owner_only(self.path)
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except _BUGS:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _problem(exc, self.path) from None
        try:
            with self._errors():
                self._migrate()
                self._db.execute("PRAGMA foreign_keys = ON")
        except HistoryError:
            self._db.close()
            raise

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _BUGS:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _problem(exc, self.path) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls some failures back itself
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the run history {self.path} is of a newer NetJobs (schema {version}, this "
                f"one knows {SCHEMA_VERSION})"
            )
        # Off while tables are rebuilt (a no-op inside a transaction): dropping a table
        # would otherwise delete the rows that refer to it.
        self._db.execute("PRAGMA foreign_keys = OFF")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction() as db:
                # Checked again inside the lock: another program may have migrated it.
                if db.execute("PRAGMA user_version").fetchone()[0] >= target:
                    continue
                _MIGRATIONS[target - 1](db)
                db.execute(f"PRAGMA user_version = {target}")

    def record(self, run: RunResult, config_text: str | None, ended: bool = True) -> None:
        """Record `run` (again: a run id recorded before is replaced); not `ended`: as it
        starts."""
        started = run.started_at if run.started_at is not None else time.time()
        with self._transaction() as db:
            kept = db.execute("SELECT note FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
            db.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            db.execute(
                f"INSERT INTO runs ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    started,
                    os.path.abspath(run.config_path) if run.config_path else "",
                    config_text,
                    os.path.abspath(run.results_dir) if run.results_dir else "",
                    int(run.passed and bool(run.tests)),
                    int(ended),
                    kept[0] if kept else "",  # a note written while it ran stays
                ),
            )
            db.executemany(
                "INSERT INTO problems VALUES (?, ?, ?)",
                [(run.run_id, status.value, n) for status, n in run.problems().items()],
            )
            for position, test in enumerate(run.tests):
                window = test.concurrent_window
                db.execute(
                    "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        position,
                        test.label,
                        test.repetition,
                        test.status.value,
                        test.reason,
                        test.start_spread_ms,
                        test.start_spread_uncertainty_ms,
                        window.start if window else None,
                        window.end if window else None,
                        window.seconds if window else None,
                        window.fraction if window else None,
                    ),
                )
                db.executemany(
                    "INSERT INTO test_metrics VALUES (?, ?, ?, ?, ?)",
                    [
                        (run.run_id, position, name, fleet_figure(name, summary), summary.hosts)
                        for name, summary in test.metrics.items()
                    ],
                )

    def _record(self, row: tuple[object, ...]) -> RunRecord:
        run_id, started, config_path, config_text, results_dir, passed, ended, note = row
        tests = self._db.execute(
            "SELECT position, label, repetition, status, reason, start_spread_ms, "
            "start_spread_uncertainty_ms, window_s, window_fraction FROM tests "
            "WHERE run_id = ? ORDER BY position",
            (run_id,),
        ).fetchall()
        problems = self._db.execute(
            "SELECT status, commands FROM problems WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()
        metrics: dict[int, list[tuple[str, float, int]]] = {}
        for position, name, total, hosts in self._db.execute(
            "SELECT position, name, sum, hosts FROM test_metrics WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        ):
            metrics.setdefault(position, []).append((name, total, hosts))
        try:
            return RunRecord(
                str(run_id),
                started,  # type: ignore[arg-type]
                str(config_path),
                config_text,  # type: ignore[arg-type]
                str(results_dir),
                bool(passed),
                tuple(
                    TestRecord(
                        label,
                        repetition,
                        TestStatus(status),
                        reason,
                        spread,
                        spread_uncertainty,
                        window_s,
                        window_fraction,
                        tuple(metrics.get(position, ())),
                    )
                    for (
                        position,
                        label,
                        repetition,
                        status,
                        reason,
                        spread,
                        spread_uncertainty,
                        window_s,
                        window_fraction,
                    ) in tests
                ),
                tuple((CommandStatus(status), int(n)) for status, n in problems),
                bool(ended),
                str(note),
            )
        except ValueError as exc:  # a status this NetJobs does not know
            raise _damaged(self.path, f"run {run_id}: {exc}") from None

    _COLUMNS = "run_id, started_at, config_path, config_text, results_dir, passed, ended, note"

    def set_note(self, run_id: str, note: str) -> None:
        """Keep `note` (a person's words, "" to remove it) with run `run_id`."""
        with self._transaction() as db:
            found = db.execute("UPDATE runs SET note = ? WHERE run_id = ?", (note, run_id))
            if found.rowcount == 0:
                raise HistoryError(f"no run {run_id!r} in the run history (see 'netjobs history')")

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """The last `limit` runs, newest first."""
        with self._errors():
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [self._record(row) for row in rows]

    def find(self, ref: str) -> RunRecord:
        """The run whose id is `ref`, or the one run whose id starts with it
        (`last`: the newest); HistoryError when none or several match."""
        with self._errors():
            if ref == "last":
                rows = self._db.execute(
                    f"SELECT {self._COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC "
                    "LIMIT 1"
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {self._COLUMNS} FROM runs WHERE run_id = ?", (ref,)
                ).fetchall()
                if not rows:
                    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    rows = self._db.execute(
                        f"SELECT {self._COLUMNS} FROM runs WHERE run_id LIKE ? ESCAPE '\\' "
                        "ORDER BY started_at DESC LIMIT 6",
                        (escaped + "%",),
                    ).fetchall()
            if not rows:
                raise HistoryError(f"no run {ref!r} in the run history (see 'netjobs history')")
            if len(rows) > 1:
                ids = ", ".join(str(row[0]) for row in rows[:5])
                raise HistoryError(f"{ref!r} names several runs ({ids}...): give more of the id")
            return self._record(rows[0])


def record_run(
    run: RunResult,
    config_text: str | None,
    path: str | os.PathLike[str] | None = None,
    timeout: float = BUSY_TIMEOUT_S,
    *,
    ended: bool = True,
) -> str | None:
    """Record `run` (not `ended`: as it starts); the problem in one line when it could
    not be, else None. Never raises for the database's sake: a run's results matter more
    than its line in the history."""
    try:
        with History(path, timeout) as history:
            history.record(run, config_text, ended)
    except HistoryError as exc:
        return f"{exc}; this run is not in the history"
    return None
