"""Any table as CSV, and many rows copied at once (issue 23's feature list)."""

from __future__ import annotations

import csv
from pathlib import Path

from PySide6.QtWidgets import QApplication
from test_gui_overview import fleet  # tests/gui

from netjobs_gui import table_export
from netjobs_gui.run_view import TestDetail


def _detail(qapp: QApplication) -> TestDetail:
    detail = TestDetail()
    detail.resize(1280, 700)
    detail.show()
    detail.set_test(fleet(100))
    qapp.processEvents()
    return detail


def test_export_writes_the_shown_rows_in_the_order_shown(
    qapp: QApplication, tmp_path: Path
) -> None:
    detail = _detail(qapp)
    detail.filter.problems.setChecked(True)  # what the person sees is what is exported
    path = tmp_path / "problems.csv"
    assert table_export.export_csv(detail.table, path) == 3
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    assert rows[0][:4] == ["Host", "Command", "State", "Start offset"]
    assert [(r[0], r[2]) for r in rows[1:]] == [
        ("node0003:16192", "failed"),
        ("node0005:16192", "error"),
        ("node0007:16192", "timed out"),
    ]
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # written whole, its owner's


def test_copy_selected_or_every_shown_row(qapp: QApplication) -> None:
    detail = _detail(qapp)
    detail.select_row(42)
    assert table_export.copy_rows(detail.table) == 1
    lines = QApplication.clipboard().text().splitlines()
    assert lines[0].startswith("Host\tCommand\tState") and lines[1].startswith(
        "node0042:16192\tbench\tok\t"
    )
    assert table_export.copy_rows(detail.table, only_selected=False) == 100
    assert len(QApplication.clipboard().text().splitlines()) == 101


def test_ctrl_c_on_a_table_copies_its_rows(qapp: QApplication, qtbot) -> None:  # type: ignore[no-untyped-def]
    detail = _detail(qapp)
    detail.select_row(9)
    detail.table.setFocus()
    (copy,) = [a for a in detail.table.actions() if a.text() == "&Copy Selected Rows"]
    copy.trigger()
    assert (
        QApplication.clipboard().text().splitlines()[1].startswith("node0009:16192\tbench\trunning")
    )


def test_a_cell_with_a_comma_quote_or_line_end_stays_one_cell() -> None:
    cells = [["Host", "Message"], ["h", 'said "no", then\nleft']]
    assert list(csv.reader(table_export.as_csv(cells).splitlines(keepends=True))) == cells
    assert table_export.as_tabs(cells).splitlines()[1] == 'h\tsaid "no", then left'
