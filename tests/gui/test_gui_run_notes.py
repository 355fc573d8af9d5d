"""Notes on a past run on the History page, kept in the run history (issue 23)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication

from netjobs_core.history import History, record_run
from netjobs_core.results import RunResult, TestResult, TestStatus
from netjobs_gui.history_view import HistoryPanel


def _record(path: Path, run_id: str, started: float) -> None:
    run = RunResult("/cfg/a.cfg", run_id=run_id, results_dir="", started_at=started)
    run.tests.append(TestResult("t", None, status=TestStatus.PASSED))
    assert record_run(run, None, path) is None


def test_a_note_typed_on_the_history_page_is_kept(qapp: QApplication, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    _record(path, "20261201-101010-aaaa", 1.8e9)
    _record(path, "20261201-111111-bbbb", 1.8e9 + 60)
    panel = HistoryPanel(path)
    note = panel.run_note
    assert note.record is not None and note.record.run_id == "20261201-111111-bbbb"
    assert note.edit.text() == "" and not note.keep.isEnabled()
    note.edit.setText("  BIOS update on node07 ")
    assert note.keep.isEnabled()
    note.keep.click()
    with History(path) as history:
        assert history.find("20261201-1111").note == "BIOS update on node07"
    # Reloaded, still selected, the note shown; the other run has none.
    assert panel.current_record is not None and panel.current_record.note == (
        "BIOS update on node07"
    )
    assert note.edit.text() == "BIOS update on node07" and not note.keep.isEnabled()


def test_a_note_that_cannot_be_kept_is_said(qapp: QApplication, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    _record(path, "20261201-101010-aaaa", 1.8e9)
    panel = HistoryPanel(path)
    with History(path) as history:  # deleted meanwhile by another program
        history._db.execute("DELETE FROM runs")
    panel.run_note.edit.setText("x")
    assert not panel.run_note.save()
    assert panel.note.text().startswith("Cannot keep the note: no run '20261201-101010-aaaa'")
