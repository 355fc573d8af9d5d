"""The config editor: highlighting, line numbers, live validation, files.

- `ConfigHighlighter` colours labels, options and their values, targets,
  quoted commands, `end` and comments.
- `CodeEditor` is a QPlainTextEdit with a line-number gutter that marks the
  parser's error line (tinted line, wavy underline, red gutter marker).
- `EditorPanel` owns the document: new/open/save/save as, the modified flag,
  the unsaved-changes prompt, and validation with `parse_config` (debounced).
"""

from __future__ import annotations

import os
import re
from html import escape
from pathlib import Path
from typing import ClassVar

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QFontDatabase,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from netjobs_core.config import ConfigError, Plan, config_problems
from netjobs_core.nodesets import NO_GROUPS, Groups, is_node_set
from netjobs_core.wire.address import DEFAULT_PORT
from netjobs_gui import prompts
from netjobs_gui.widgets import FindBar

VALIDATE_DELAY_MS = 350
UNTITLED = "untitled.netjobs"

TEMPLATE = """\
# NetJobs test plan. Each test is a block: a label, its options, its targets, 'end'.
# Tests run one after another, in file order. Lines starting with '#' are comments.

hello:
-generaltimeout: 1m
-minhosts: all
# TARGET: "COMMAND" (a target is host, host:port or [IPv6]:port)
localhost: "echo hello from $(hostname)"
-timeout: 30s
end
"""

PLACEHOLDER = """\
No config open.

  Ctrl+O     open a config file (or drop one on this window)
  Ctrl+N     start from a template
  F5         run every test   ·   Shift+F5 the selected one
  Ctrl+1..4  Config, Hosts, Run, Results   ·   F6 next pane   ·   Ctrl+F find

A config is a list of tests, run in file order:

  label:
  -generaltimeout: 5m
  -minhosts: all
  host-or-ip: "command to start on that host"
  -timeout: 30s
  end
"""


# --------------------------------------------------------------------------- highlighting


def _format(color: str, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(QColor(color))
    if bold:
        fmt.setFontWeight(QFont.Weight.Bold)
    if italic:
        fmt.setFontItalic(True)
    return fmt


class ConfigHighlighter(QSyntaxHighlighter):
    """Line-based: the format is line-oriented, so no multi-line state is needed."""

    COLORS: ClassVar[dict[str, str]] = {
        "label": "#9a3412",
        "keyword": "#7c3aed",
        "option": "#0f766e",
        "value": "#b45309",
        "target": "#1d4ed8",
        "range": "#db2777",  # a node set's brackets: node[01-32]
        "group": "#c2410c",  # @name, from the groups file
        "path": "#0369a1",  # a -collect pattern
        "command": "#15803d",
        "comment": "#6b7280",
        "bad": "#b91c1c",  # a range the parser refuses: node[3-1]
    }

    _COMMENT = re.compile(r"^\s*#.*$")
    _END = re.compile(r"^(\s*)(end)\s*$", re.IGNORECASE)
    _OPTION = re.compile(r"^(\s*)(-[A-Za-z][A-Za-z0-9_-]*)(\s*:?\s*)(.*?)\s*$")
    _TARGET = re.compile(r'^(\s*)([^"#]*?)(\s*:\s*)(".*)$')
    _LABEL = re.compile(r"^(\s*)([A-Za-z0-9_.][A-Za-z0-9_.-]*)(\s*:\s*)$")
    _RANGE = re.compile(r"\[[^\[\]]*\]")
    _GROUP = re.compile(r"@[A-Za-z0-9_.+-]*")
    _SPAN = re.compile(r"(\d+)(?:-(\d+))?(?:/\d+)?")

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.formats = {
            "label": _format(self.COLORS["label"], bold=True),
            "keyword": _format(self.COLORS["keyword"], bold=True),
            "option": _format(self.COLORS["option"], bold=True),
            "value": _format(self.COLORS["value"]),
            "target": _format(self.COLORS["target"], bold=True),
            "range": _format(self.COLORS["range"], bold=True),
            "group": _format(self.COLORS["group"], bold=True, italic=True),
            "path": _format(self.COLORS["path"], italic=True),
            "command": _format(self.COLORS["command"]),
            "comment": _format(self.COLORS["comment"], italic=True),
            "bad": _format(self.COLORS["bad"], bold=True),
        }
        self.formats["bad"].setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        self.formats["bad"].setUnderlineColor(QColor(self.COLORS["bad"]))

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, length, kind) for one line: what highlightBlock applies."""
        if self._COMMENT.match(text):
            return [(0, len(text), "comment")]
        if match := self._END.match(text):
            return [(match.start(2), len(match.group(2)), "keyword")]
        if match := self._OPTION.match(text):
            spans = [(match.start(2), len(match.group(2)), "option")]
            if match.group(4):
                kind = "path" if match.group(2).lower() == "-collect" else "value"
                spans.append((match.start(4), len(match.group(4)), kind))
            return spans
        if match := self._TARGET.match(text):
            spans = []
            if target := match.group(2):
                spans.append((match.start(2), len(target), "target"))
                spans += self._node_set_spans(target, match.start(2))
            command = match.group(4)
            last = command.rfind('"')
            if last > 0:
                spans.append((match.start(4), last + 1, "command"))
                rest = command[last + 1 :]
                hash_at = rest.find("#")
                if hash_at >= 0:
                    start = match.start(4) + last + 1 + hash_at
                    spans.append((start, len(text) - start, "comment"))
            else:
                spans.append((match.start(4), len(command), "command"))
            return spans
        if match := self._LABEL.match(text):
            return [(match.start(2), len(match.group(2)), "label")]
        return []

    def _node_set_spans(self, target: str, offset: int) -> list[tuple[int, int, str]]:
        """A node set's ranges and @groups inside its target (a later span overrides)."""
        if not is_node_set(target):
            return []
        found = [
            (m.start(), len(m.group()), "range" if self._valid_range(m.group()) else "bad")
            for m in self._RANGE.finditer(target)
        ]
        found += [(m.start(), len(m.group()), "group") for m in self._GROUP.finditer(target)]
        return [(offset + start, length, kind) for start, length, kind in found]

    @classmethod
    def _valid_range(cls, bracket: str) -> bool:
        """`[01-32,40]`: numbers and rising ranges only, as the parser takes them."""
        parts = bracket[1:-1].split(",")
        for part in parts:
            span = cls._SPAN.fullmatch(part.strip())
            if span is None or (span.group(2) and int(span.group(2)) < int(span.group(1))):
                return False
        return True

    def highlightBlock(self, text: str) -> None:
        for start, length, kind in self.spans(text):
            self.setFormat(start, length, self.formats[kind])


# --------------------------------------------------------------------------- editor widget


class _Gutter(QWidget):
    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QSize:
        return QSize(self.editor.gutter_width(), 0)

    def paintEvent(self, event: QPaintEvent) -> None:
        self.editor.paint_gutter(event)


class CodeEditor(QPlainTextEdit):
    """Plain-text editor with line numbers and one marked error line."""

    file_dropped = Signal(str)
    ERROR_BACKGROUND = QColor(254, 226, 226)
    ERROR_MARK = QColor(220, 38, 38)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(font.pointSizeF(), 10.0))
        self.setFont(font)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * 4)
        self.error_line: int | None = None  # 1-based: the first problem's line
        self.error_lines: set[int] = set()  # every problem's line
        self._gutter = _Gutter(self)
        self.blockCountChanged.connect(self._update_gutter_width)
        self.updateRequest.connect(self._update_gutter)
        self._update_gutter_width()

    # ---- gutter
    def gutter_width(self) -> int:
        digits = max(3, len(str(max(1, self.blockCount()))))
        return 14 + self.fontMetrics().horizontalAdvance("9") * digits + 8

    def _update_gutter_width(self) -> None:
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)

    def _update_gutter(self, rect: QRect, dy: int) -> None:
        if dy:
            self._gutter.scroll(0, dy)
        else:
            self._gutter.update(0, rect.y(), self._gutter.width(), rect.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        area = self.contentsRect()
        self._gutter.setGeometry(QRect(area.left(), area.top(), self.gutter_width(), area.height()))

    def paint_gutter(self, event: QPaintEvent) -> None:
        painter = QPainter(self._gutter)
        palette = self.palette()
        painter.fillRect(event.rect(), palette.color(palette.ColorRole.AlternateBase))
        block = self.firstVisibleBlock()
        number = block.blockNumber()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        bottom = top + round(self.blockBoundingRect(block).height())
        height = self.fontMetrics().height()
        muted = QColor(palette.color(palette.ColorRole.Text))
        muted.setAlpha(120)
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible() and bottom >= event.rect().top():
                line = number + 1
                if line in self.error_lines:
                    painter.setPen(Qt.PenStyle.NoPen)
                    painter.setBrush(self.ERROR_MARK)
                    painter.drawEllipse(4, top + (height - 8) // 2, 8, 8)
                    painter.setPen(self.ERROR_MARK)
                else:
                    painter.setPen(muted)
                painter.drawText(
                    0, top, self._gutter.width() - 6, height, Qt.AlignmentFlag.AlignRight, str(line)
                )
            block = block.next()
            top = bottom
            bottom = top + round(self.blockBoundingRect(block).height())
            number += 1
        painter.end()

    # ---- error mark
    def set_error(self, line: int | None) -> None:
        """Mark `line` (1-based) as the error line, or clear the mark with None."""
        self.set_errors([] if line is None else [line])

    def set_errors(self, lines: list[int]) -> None:
        """Mark every line of `lines` (1-based; the first is the error line)."""
        self.error_line = lines[0] if lines else None
        self.error_lines = set(lines)
        selections: list[QTextEdit.ExtraSelection] = []
        for line in dict.fromkeys(lines):
            block = self.document().findBlockByNumber(max(0, line - 1))
            if block.isValid():
                whole = QTextEdit.ExtraSelection()
                whole.format.setBackground(self.ERROR_BACKGROUND)
                whole.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
                whole.cursor = QTextCursor(block)
                selections.append(whole)
                if block.length() > 1:
                    wave = QTextEdit.ExtraSelection()
                    wave.format.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
                    wave.format.setUnderlineColor(self.ERROR_MARK)
                    cursor = QTextCursor(block)
                    cursor.movePosition(
                        QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor
                    )
                    wave.cursor = cursor
                    selections.append(wave)
        self.setExtraSelections(selections)
        self._gutter.update()

    def go_to_line(self, line: int) -> None:
        block = self.document().findBlockByNumber(max(0, line - 1))
        if block.isValid():
            self.setTextCursor(QTextCursor(block))
            self.centerCursor()
            self.setFocus()

    # ---- drops of files
    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> str | None:
        mime = event.mimeData()
        if mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    return url.toLocalFile()
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_file(event):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self._dropped_file(event):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_file(event)
        if path:
            event.acceptProposedAction()
            self.file_dropped.emit(path)
        else:
            super().dropEvent(event)


# --------------------------------------------------------------------------- the default port


# --------------------------------------------------------------------------- the document


class EditorPanel(QWidget):
    """The editor plus its validation line; owns the file and the modified flag."""

    plan_changed = Signal(object)  # Plan | None (None: the text does not parse)
    validated = Signal(object)  # ConfigError | None
    path_changed = Signal(str)  # "" for an untitled document
    modified_changed = Signal(bool)
    file_dropped = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = CodeEditor()
        self.editor.setPlaceholderText(PLACEHOLDER)
        self.highlighter = ConfigHighlighter(self.editor.document())
        self.status = QLabel()
        self.status.setObjectName("validationStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.status.linkActivated.connect(lambda _link: self.go_to_error())
        self.status.setContentsMargins(6, 4, 6, 4)
        # Every problem of the file, as the CLI words them; a click goes to its line.
        self.problems_list = QListWidget()
        self.problems_list.setObjectName("configProblems")
        self.problems_list.itemActivated.connect(self._go_to_problem)
        self.problems_list.itemClicked.connect(self._go_to_problem)
        self.problems_list.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.find_bar = FindBar()
        layout.addWidget(self.editor, 1)
        layout.addWidget(self.find_bar)
        layout.addWidget(self.status)
        layout.addWidget(self.problems_list)

        self.path: str = ""
        self.plan: Plan | None = None
        self.default_port = DEFAULT_PORT  # for targets written without a port
        self.groups: Groups = NO_GROUPS  # the @name groups targets may use (Settings)
        self.error: ConfigError | None = None  # the first of `problems`
        self.problems: list[ConfigError] = []
        self.newline = "\n"
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(VALIDATE_DELAY_MS)
        self._timer.timeout.connect(self.validate_now)
        self.editor.textChanged.connect(self._timer.start)
        self.editor.document().modificationChanged.connect(self.modified_changed)
        self.editor.file_dropped.connect(self.file_dropped)
        self._show_status()

    # ---- state
    @property
    def text(self) -> str:
        return self.editor.toPlainText()

    @property
    def modified(self) -> bool:
        return self.editor.document().isModified()

    @property
    def display_name(self) -> str:
        return Path(self.path).name if self.path else UNTITLED

    @property
    def is_empty(self) -> bool:
        return not self.path and not self.text.strip()

    def _set_text(self, text: str, path: str) -> None:
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.path = path
        self.editor.setPlainText(
            text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        )
        self.editor.document().setModified(False)
        self.path_changed.emit(path)
        self.validate_now()

    # ---- files
    def new_document(self, text: str = TEMPLATE) -> None:
        """Replace the document by an untitled one (callers ask about unsaved changes first)."""
        self._set_text(text, "")

    def open_file(self, path: str | os.PathLike[str]) -> None:
        """Load `path`; raises OSError or UnicodeDecodeError (the document is unchanged then)."""
        path = os.path.abspath(os.fspath(path))
        data = Path(path).read_bytes()
        self._set_text(data.decode("utf-8"), path)

    def save_to(self, path: str | os.PathLike[str]) -> None:
        """Write the document to `path` (raises OSError) and make it the document's path."""
        path = os.path.abspath(os.fspath(path))
        text = self.text
        if not text.endswith("\n"):
            text += "\n"
        with open(path, "w", encoding="utf-8", newline="") as file:
            file.write(text.replace("\n", self.newline))
        self.editor.document().setModified(False)
        if path != self.path:
            self.path = path
            self.path_changed.emit(path)
        self.validate_now()

    def save(self) -> bool:
        """Save to the current path, or ask for one; False if cancelled or failed."""
        if not self.path:
            return self.save_as()
        try:
            self.save_to(self.path)
        except OSError as exc:
            prompts.show_error(self, "Cannot save", f"{self.path}: {exc.strerror or exc}")
            return False
        return True

    def save_as(self, start_dir: str = "") -> bool:
        start = self.path or os.path.join(start_dir or str(Path.home()), UNTITLED)
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save config as",
            start,
            "NetJobs configs (*.netjobs *.txt *.conf *.cfg);;All files (*)",
        )
        if not path:
            return False
        try:
            self.save_to(path)
        except OSError as exc:
            prompts.show_error(self, "Cannot save", f"{path}: {exc.strerror or exc}")
            return False
        return True

    def maybe_save(self) -> bool:
        """Before the document goes away: True to go on (saved or discarded), False to cancel."""
        if not self.modified:
            return True
        answer = prompts.ask_unsaved(self, self.display_name)
        if answer == "save":
            return self.save()
        return answer == "discard"

    # ---- validation
    def validate_now(self) -> Plan | None:
        self._timer.stop()
        if not self.text.strip():
            self.plan, self.error = None, None  # nothing typed yet: nothing to complain about
            self.problems = []
            self.editor.set_error(None)
            self._show_status()
            self.validated.emit(None)
            self.plan_changed.emit(None)
            return None
        self.plan, self.problems = config_problems(
            self.text, self.path or UNTITLED, self.default_port, self.groups
        )
        self.error = self.problems[0] if self.problems else None
        self.editor.set_errors([problem.line for problem in self.problems])
        self._show_status()
        self.validated.emit(self.error)
        self.plan_changed.emit(self.plan)
        return self.plan

    def _show_status(self) -> None:
        self._show_problems()
        if self.error is not None:
            more = len(self.problems) - 1
            also = f" (and {more} more below)" if more else ""
            self.status.setText(
                f'<span style="color:#b91c1c">⚠ <a href="#error" style="color:#b91c1c">'
                f"line {self.error.line}</a>: {escape(self.error.message)}{also}</span>"
            )
            self.status.setToolTip(str(self.error))
        elif self.plan is not None:
            tests = len(self.plan.tests)
            commands = sum(len(t.commands) for t in self.plan.tests)
            hosts = len({a for t in self.plan.tests for a in t.addresses})
            self.status.setText(
                f'<span style="color:#15803d">✔ valid: {tests} test{"s" if tests != 1 else ""}, '
                f"{commands} command{'s' if commands != 1 else ''} on "
                f"{hosts} host{'s' if hosts != 1 else ''}</span>"
            )
            self.status.setToolTip("")
        else:
            self.status.setText(
                '<span style="color:#6b7280">Empty. File ▸ New starts from a template; '
                "File ▸ Open or drop a config file here.</span>"
            )

    def _show_problems(self) -> None:
        self.problems_list.clear()
        if len(self.problems) < 2:  # one problem: the line above says it whole
            self.problems_list.hide()
            return
        for problem in self.problems:
            item = QListWidgetItem(f"line {problem.line}: {problem.message}")
            item.setData(Qt.ItemDataRole.UserRole, problem.line)
            item.setForeground(self.editor.ERROR_MARK)
            self.problems_list.addItem(item)
        rows = min(6, len(self.problems))
        frame = 2 * self.problems_list.frameWidth() + 2
        self.problems_list.setFixedHeight(rows * self.problems_list.sizeHintForRow(0) + frame)
        self.problems_list.show()

    def _go_to_problem(self, item: QListWidgetItem) -> None:
        self.editor.go_to_line(item.data(Qt.ItemDataRole.UserRole))

    def open_find(self) -> None:
        self.find_bar.open_on(self.editor)

    def go_to_error(self) -> None:
        if self.error is not None:
            self.editor.go_to_line(self.error.line)
