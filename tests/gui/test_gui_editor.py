"""Editor: highlighting, live validation marks, files and the unsaved-changes prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from netjobs_core.config import parse_config
from netjobs_core.wire.address import Address
from netjobs_gui.editor import TEMPLATE, ConfigHighlighter, EditorPanel
from netjobs_gui.settings import Settings, SettingsDialog

GOOD = """\
# two tests
t1:
-generaltimeout: 5m
-minhosts: all
alpha: "echo hi"  # trailing comment
-timeout: 30s
[::1]:17000: "date"
end
"""


def spans_by_kind(highlighter: ConfigHighlighter, line: str) -> dict[str, str]:
    return {kind: line[start : start + length] for start, length, kind in highlighter.spans(line)}


def test_highlighter_spans(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = EditorPanel()
    qtbot.addWidget(panel)
    h = panel.highlighter
    assert spans_by_kind(h, "# a comment") == {"comment": "# a comment"}
    assert spans_by_kind(h, "t1:") == {"label": "t1"}
    assert spans_by_kind(h, "  End ") == {"keyword": "End"}
    assert spans_by_kind(h, "-generaltimeout: 5m") == {"option": "-generaltimeout", "value": "5m"}
    assert spans_by_kind(h, "-minhosts : all") == {"option": "-minhosts", "value": "all"}
    assert spans_by_kind(h, 'alpha: "echo hi"  # note') == {
        "target": "alpha",
        "command": '"echo hi"',
        "comment": "# note",
    }
    assert spans_by_kind(h, '[::1]:17000: "date +%s"') == {
        "target": "[::1]:17000",
        "command": '"date +%s"',
    }
    assert spans_by_kind(h, "garbage here") == {}


def test_highlighter_formats_applied_to_the_document(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.new_document(GOOD)
    document = panel.editor.document()

    def color_at(line: int, column: int) -> str | None:
        block = document.findBlockByNumber(line - 1)
        for fmt in block.layout().formats():
            if fmt.start <= column < fmt.start + fmt.length:
                return fmt.format.foreground().color().name()
        return None

    colors = ConfigHighlighter.COLORS
    assert color_at(1, 0) == colors["comment"]
    assert color_at(2, 0) == colors["label"]
    assert color_at(3, 1) == colors["option"]
    assert color_at(3, 17) == colors["value"]
    assert color_at(5, 0) == colors["target"]
    assert color_at(5, 8) == colors["command"]
    assert color_at(8, 0) == colors["keyword"]


def test_validation_marks_the_error_line_with_the_message(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.new_document(GOOD)
    assert panel.error is None and panel.plan is not None
    assert "valid: 1 test, 2 commands on 2 hosts" in panel.status.text()

    # Typing: validation waits for a pause (debounced), then marks line 6.
    panel.editor.setPlainText(GOOD.replace("-timeout: 30s", "-timeout: 30x"))
    assert panel.error is None  # not yet: debounced
    qtbot.waitUntil(lambda: panel.error is not None, timeout=3000)
    assert panel.error.line == 6
    assert "bad duration '30x'" in panel.error.message
    assert panel.editor.error_line == 6
    selections = panel.editor.extraSelections()
    assert selections and {s.cursor.blockNumber() for s in selections} == {5}
    assert "line 6" in panel.status.text() and "bad duration" in panel.status.text()
    assert panel.plan is None

    # Go to error puts the cursor on that line.
    panel.go_to_error()
    assert panel.editor.textCursor().blockNumber() == 5

    # Fixing it clears the mark.
    panel.editor.setPlainText(GOOD)
    qtbot.waitUntil(lambda: panel.error is None, timeout=3000)
    assert panel.editor.error_line is None and panel.editor.extraSelections() == []


def test_validation_reports_a_missing_end(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.new_document('t1:\nalpha: "x"\n\nt2:\nbeta: "y"\nend\n')
    assert panel.error is not None and panel.error.line == 4
    assert "expected 'end'" in panel.error.message


def test_empty_document_is_not_an_error(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.new_document("")
    assert panel.error is None and panel.plan is None and panel.is_empty
    panel.new_document()
    assert panel.text == TEMPLATE and panel.plan is not None and not panel.modified


def test_open_edit_save_and_crlf(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plan.cfg"
    path.write_bytes(GOOD.replace("\n", "\r\n").encode())
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.open_file(path)
    assert panel.path == str(path) and not panel.modified and panel.plan is not None
    panel.editor.appendPlainText("# more")
    assert panel.modified
    panel.save_to(path)
    assert not panel.modified
    data = path.read_bytes()
    assert data.endswith(b"# more\r\n") and b"\r\n" in data and b"\r\r" not in data
    assert parse_config(data.decode()).tests[0].label == "t1"

    with pytest.raises(OSError):
        panel.open_file(tmp_path / "missing.cfg")
    assert panel.path == str(path)  # unchanged


def test_unsaved_prompt(qtbot, tmp_path: Path, answers) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plan.cfg"
    path.write_text(GOOD)
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.open_file(path)
    assert panel.maybe_save() and answers.unsaved == []  # nothing to save: no question

    panel.editor.appendPlainText("# edited")
    answers.unsaved_answer = "cancel"
    assert not panel.maybe_save()
    assert answers.unsaved == ["plan.cfg"]
    assert path.read_text() == GOOD

    answers.unsaved_answer = "discard"
    assert panel.maybe_save()
    assert path.read_text() == GOOD

    answers.unsaved_answer = "save"
    assert panel.maybe_save()
    assert path.read_text().endswith("# edited\n") and not panel.modified


def test_window_new_open_recent_and_drop(window, answers, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    first = tmp_path / "first.cfg"
    first.write_text(GOOD)
    second = tmp_path / "second.cfg"
    second.write_text('t9:\nbeta: "true"\nend\n')

    assert window.open_path(str(first))
    assert window.windowTitle() == "first.cfg[*] — NetJobs"
    assert [r.address for r in window.hosts.model.rows] == [Address("alpha"), Address("::1", 17000)]
    assert window.run_view.tests_model.labels == ["t1"]
    assert window.run_action.isEnabled()

    # Modified: opening another file asks; cancel keeps the document.
    window.editor.editor.appendPlainText("# edited")
    assert window.isWindowModified()
    answers.unsaved_answer = "cancel"
    assert not window.open_path(str(second))
    assert window.editor.path == str(first)

    # Dropping a file opens it (after the question, answered "discard").
    answers.unsaved_answer = "discard"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(second))])
    event = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert window.editor.path == str(second)
    assert answers.unsaved == ["first.cfg", "first.cfg"]
    assert window.run_view.tests_model.labels == ["t9"]

    # Recent files, newest first, persisted.
    assert Settings().recent_files == [str(second), str(first)]
    assert [a.text() for a in window.recent_menu.actions()][:2] == [f"&1 {second}", f"&2 {first}"]

    # New from the template.
    window.new_document()
    assert window.editor.path == "" and "hello:" in window.editor.text

    # A missing file is reported in the window.
    assert not window.open_path(str(tmp_path / "nope.cfg"))
    assert answers.errors[-1][0] == "Cannot open the config"
    assert "nope.cfg" in window.statusBar().currentMessage()


def test_closing_with_unsaved_changes_asks(window, answers) -> None:  # type: ignore[no-untyped-def]
    window.editor.new_document()
    window.editor.editor.appendPlainText("# edited")
    answers.unsaved_answer = "cancel"
    assert not window.close()
    assert window.isVisible() and answers.unsaved == ["untitled.netjobs"]
    answers.unsaved_answer = "discard"
    assert window.close()


def test_default_port_setting_applies_to_targets_without_a_port(qtbot) -> None:
    panel = EditorPanel()
    qtbot.addWidget(panel)
    panel.default_port = 17000
    panel.new_document('t:\nalpha: "a"\nbeta:16192: "b"\n[::1]: "c"\n[::2]:9: "d"\nend\n')
    plan = panel.validate_now()
    assert plan is not None
    assert [c.address for c in plan.tests[0].commands] == [
        Address("alpha", 17000),
        Address("beta", 16192),
        Address("::1", 17000),
        Address("::2", 9),
    ]


def test_settings_dialog_and_persistence(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    (tmp_path / "token").write_text("x" * 40)  # a path that does not exist is refused
    dialog.token_edit.setText(str(tmp_path / "token"))
    dialog.port_spin.setValue(17001)
    dialog.timeout_spin.setValue(2.5)
    dialog.stop_check.setChecked(True)
    dialog.accept()
    again = Settings()
    assert again.token_file == str(tmp_path / "token")
    assert again.default_port == 17001
    assert again.connect_timeout == 2.5
    assert again.stop_on_failure is True
    assert Path(again.store.fileName()).is_relative_to(tmp_path)


def test_manual_hosts_and_geometry_are_remembered(qtbot, settings, answers) -> None:  # type: ignore[no-untyped-def]
    from netjobs_gui.main_window import MainWindow

    first = MainWindow(settings)
    qtbot.addWidget(first)
    first.show()
    assert first.hosts.add_target("gamma:17000")
    assert first.hosts.add_target("[fd00::5]")
    assert not first.hosts.add_target("bad host")
    assert answers.errors[-1][0] == "Add host"
    first.resize(760, 560)
    first.close()

    second = MainWindow(Settings())
    qtbot.addWidget(second)
    assert [row.target for row in second.hosts.model.rows] == ["gamma:17000", "[fd00::5]:16192"]
    assert (second.size().width(), second.size().height()) == (760, 560)
    second.hosts.table.selectRow(0)
    second.hosts.remove_selected()
    assert Settings().manual_hosts == ["[fd00::5]:16192"]
    second.close()


def test_standard_shortcuts(window) -> None:  # type: ignore[no-untyped-def]
    shortcuts = {
        action.text().replace("&", ""): action.shortcut().toString()
        for action in (
            window.open_action,
            window.save_action,
            window.new_action,
            window.run_action,
            window.run_selected_action,
            window.stop_action,
            window.check_action,
        )
    }
    assert shortcuts == {
        "Open…": "Ctrl+O",
        "Save": "Ctrl+S",
        "New": "Ctrl+N",
        "Run All": "F5",
        "Run Selected Test": "Shift+F5",
        "Stop": "",  # never Esc for the whole window: Esc in the editor must not stop a run
        "Check Hosts": "Ctrl+K",
    }
    # Nothing to run or stop in an empty window.
    assert not window.run_action.isEnabled() and not window.stop_action.isEnabled()
