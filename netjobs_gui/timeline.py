"""The timeline of one test: who started when, and who ran long.

`timeline_data()` turns a TestResult into plain rows (no Qt); `TimelineWidget`
paints them. Each row has two parts:

- a *start* strip in milliseconds around the common start instant (the dashed
  line at 0): a dot at each command's measured release with a ± whisker for its
  host's clock uncertainty; the shaded band is the measured start spread;
- a *run* strip in seconds: a bar from the command's start to its end,
  coloured by its state, with its duration and exit code after it; the green
  band is the concurrent window, when every command was running at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import QAbstractScrollArea, QFrame, QToolTip, QWidget

from netjobs_core import text
from netjobs_core.results import CommandStatus, TestResult, TestStatus
from netjobs_core.vocabulary import Status, color, exit_code_text, word
from netjobs_gui.columns import NO_VALUE, command_state, common_start
from netjobs_gui.widgets import begin_painting


@dataclass
class TimelineRow:
    host: str
    command: str
    state: Status
    start_ms: float | None  # release minus common start; None = never started
    end_ms: float | None  # None = never started
    running: bool  # still running: end_ms is "now"
    end_known: bool  # False: finished, but the agent reported no end (killed, lost)
    exit_code: int | None
    uncertainty_ms: float | None  # the host's clock uncertainty
    timeout_ms: float | None = None  # the command's limit, from its start

    @property
    def word(self) -> str:
        return word(self.state)

    @property
    def duration_ms(self) -> float | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return self.end_ms - self.start_ms


@dataclass
class TimelineData:
    label: str
    status: TestStatus
    status_text: str  # `passed with 1 failed`: text.status_text()
    common_start: float | None  # epoch, controller clock
    scheduled: bool  # True: the common start was a scheduled instant
    spread_ms: float | None
    spread_uncertainty_ms: float | None
    # `released within ...; commands began within ...` (text.began); "": no release yet
    began: str = ""
    now_ms: float | None = None  # while the test runs: now, from the common start
    window_ms: tuple[float, float] | None = None  # every command running, from the common start
    rows: list[TimelineRow] = field(default_factory=list)

    @property
    def starts(self) -> list[float]:
        return [row.start_ms for row in self.rows if row.start_ms is not None]

    @property
    def first_start_ms(self) -> float | None:
        return min(self.starts, default=None)

    @property
    def last_start_ms(self) -> float | None:
        return max(self.starts, default=None)

    @property
    def end_ms(self) -> float:
        return max((row.end_ms for row in self.rows if row.end_ms is not None), default=0.0)


def timeline_data(test: TestResult, now: float | None = None) -> TimelineData:
    now = time.time() if now is None else now
    start = common_start(test)
    test_end = None
    if test.started_at is not None and test.duration_s is not None:
        test_end = test.started_at + test.duration_s
    running = test.status is TestStatus.RUNNING
    data = TimelineData(
        now_ms=(now - start) * 1000.0 if running and start is not None else None,
        label=test.label,
        status=test.status,
        status_text=text.status_text(test),
        common_start=start,
        scheduled=test.scheduled_start is not None,
        spread_ms=test.start_spread_ms,
        spread_uncertainty_ms=test.start_spread_uncertainty_ms,
        began=text.began(test) if test.start_spread_ms is not None else "",
    )
    found = test.concurrent_window
    if found is not None and start is not None:
        data.window_ms = ((found.start - start) * 1000.0, (found.end - start) * 1000.0)
    for host in test.hosts:
        for command in host.commands:
            start_ms = end_ms = None
            running = command.status is CommandStatus.RUNNING
            end_known = True
            if command.started_at is not None and start is not None:
                start_ms = (command.started_at - start) * 1000.0
                if command.duration_s is not None:
                    end_ms = start_ms + command.duration_s * 1000.0
                elif running:
                    end_ms = max(start_ms, (now - start) * 1000.0)
                else:
                    end_known = False
                    end_ms = max(start_ms, ((test_end or now) - start) * 1000.0)
            data.rows.append(
                TimelineRow(
                    host=str(host.address),
                    command=command.command,
                    state=command_state(host, command),
                    start_ms=start_ms,
                    end_ms=end_ms,
                    running=running,
                    end_known=end_known,
                    exit_code=command.exit_code,
                    uncertainty_ms=host.clock_uncertainty_ms,
                    timeout_ms=None if command.timeout is None else command.timeout * 1000.0,
                )
            )
    return data


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1/2/5 x 10^n step giving about `ticks` intervals over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


# The run axis grows through these (x 10^n ms), so a live test's bars move, not the axis.
EXTENT_STEPS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5)
MIN_EXTENT_MS = 10.0


def extent_step(needed_ms: float) -> float:
    """The smallest of EXTENT_STEPS x 10^n ms that holds `needed_ms`."""
    needed = max(needed_ms, MIN_EXTENT_MS)
    power = 10 ** math.floor(math.log10(needed))
    for factor in (*EXTENT_STEPS, 10.0):
        if needed <= factor * power * (1 + 1e-9):
            return factor * power
    return 10 * power


def extend(previous_ms: float | None, needed_ms: float) -> float:
    """The run axis' end: it never shrinks and grows only in steps."""
    step = extent_step(needed_ms)
    return step if previous_ms is None else max(previous_ms, step)


@dataclass(frozen=True)
class Axis:
    """One strip's value range (ms) mapped onto its pixels, and its tick step."""

    low: float
    high: float
    left: float
    right: float
    step: float

    def x(self, value: float) -> float:
        return self.left + (value - self.low) / (self.high - self.low) * (self.right - self.left)

    def ticks(self) -> list[float]:
        first = math.ceil(self.low / self.step - 1e-9)
        values = []
        for k in range(first, first + 1000):
            value = k * self.step
            if value > self.high + self.step * 1e-6:
                break
            values.append(value)
        return values


@dataclass(frozen=True)
class Layout:
    """Where everything goes, from the data and the widget's width alone (no Qt)."""

    left: float
    label_width: int
    host_room: float  # of label_width, for the host (the rest is the command)
    top: float
    bottom: float
    row_height: int
    start: Axis
    run: Axis

    def row_top(self, index: int) -> float:
        return self.top + index * self.row_height


ROW_HEIGHT = 24
HEADER = 58
FOOTER = 46
LABEL_WIDTH = 340  # at most
START_WIDTH = 240  # at most
GAP = 26
NOTE_WIDTH = 170  # room after the longest bar for "12.345 s  exit -15 (SIGTERM)"
MARGIN = 10


def start_range(data: TimelineData) -> tuple[float, float]:
    """The start strip's range in ms: 0 and every release with its whisker, padded."""
    low = high = 0.0
    for row in data.rows:
        if row.start_ms is not None:
            margin = row.uncertainty_ms or 0.0
            low = min(low, row.start_ms - margin)
            high = max(high, row.start_ms + margin)
    pad = max(high - low, 0.1) * 0.12
    return low - pad, high + pad


def run_range(data: TimelineData) -> tuple[float, float]:
    """What the run strip must hold (ms): from the common start (or the first release)
    to the last end, or to now while the test runs."""
    low = min(0.0, data.first_start_ms or 0.0)
    high = max(data.end_ms, data.now_ms or 0.0, low + 1.0)
    return low, high


def layout(
    data: TimelineData,
    width: int,
    widest_host: float,
    run_span_ms: float | None = None,
    rows: int | None = None,
) -> Layout:
    """Columns, rows and both axes for `width` pixels; `widest_host` is the widest host
    label; `run_span_ms` the run axis' span (`extend()`ed by the widget, so that it stays
    put while a test runs), else `extend(None, ...)` of the data; `rows` how many rows
    are shown (the filter), else all."""
    left = MARGIN
    label_width = int(min(LABEL_WIDTH, max(170, width * 0.26)))
    start_width = int(min(START_WIDTH, max(150, width * 0.24)))
    start_left = left + label_width + GAP
    start_right = start_left + start_width
    run_left = start_right + GAP
    run_right = max(run_left + 100, width - MARGIN - NOTE_WIDTH)
    s_low, s_high = start_range(data)
    r_low, r_needed = run_range(data)
    r_high = r_low + (extend(None, r_needed - r_low) if run_span_ms is None else run_span_ms)
    return Layout(
        left=left,
        label_width=label_width,
        # The host gets at most 60%: enough of the command stays to tell rows apart.
        host_room=min(widest_host, max(60, label_width * 0.6)),
        top=HEADER,
        bottom=HEADER + (len(data.rows) if rows is None else rows) * ROW_HEIGHT,
        row_height=ROW_HEIGHT,
        start=Axis(
            s_low,
            s_high,
            start_left,
            start_right,
            nice_step(s_high - s_low, max(3, int(start_width / 35))),
        ),
        run=Axis(
            r_low,
            r_high,
            run_left,
            run_right,
            nice_step(r_high - r_low, max(2, int((run_right - run_left) / 45))),
        ),
    )


def window_band(data: TimelineData, run: Axis) -> tuple[float, float] | None:
    """The concurrent window's pixels (left, right) on the run strip, clipped to it and
    at least 2 px wide; None when there is no window."""
    if data.window_ms is None:
        return None
    low, high = data.window_ms
    left = run.x(max(low, run.low))
    right = run.x(min(high, run.high))
    if right < left:
        return None
    return left, max(right, left + 2.0)


def bar_note(row: TimelineRow) -> str:
    """What follows a run bar: its duration, and how it ended unless it simply succeeded."""
    duration = row.duration_ms
    note = text.duration(duration / 1000.0) if duration is not None else ""
    if row.running:
        return note + " …"
    if not row.end_known:
        return f"{row.word} (end unknown)"
    if row.exit_code is not None:
        return note + f"  exit {exit_code_text(row.exit_code)}"
    if row.state is not CommandStatus.OK:
        return note + f"  {row.word}"
    return note


def tooltip(row: TimelineRow) -> str:
    """The row in full: the command is never cut here."""
    lines = [row.host, f"command: {row.command}", f"state: {row.word}"]
    if row.start_ms is not None:
        offset = text.ms_pm(row.start_ms, row.uncertainty_ms, signed=True)
        lines.append(f"start offset: {offset}" + (" (clock)" if row.uncertainty_ms else ""))
    if row.duration_ms is not None:
        lines.append(f"ran: {text.duration(row.duration_ms / 1000)}")
    if row.exit_code is not None:
        lines.append(f"exit code: {exit_code_text(row.exit_code)}")
    if row.timeout_ms is not None:
        lines.append(f"timeout: {text.timeout(row.timeout_ms / 1000)}")
    return "\n".join(lines)


def summary(data: TimelineData) -> str:
    """The title line after the label and status: the spread and the common start."""
    line = data.began or f"start spread {text.ms_pm(None, None, none=NO_VALUE)}"
    if data.common_start is not None:
        kind = "scheduled start" if data.scheduled else "first start"
        line += f"   ·   {kind} {text.time_of_day(data.common_start)}"
    return line


@dataclass
class _Pens:
    text: QColor
    muted: QColor
    grid: QColor
    font: QFont
    bold: QFont


NOW_COLOR = "#0f766e"
WINDOW_COLOR = "#16a34a"
LEGEND = (
    "red dashes: the common start  ·  blue band: the start spread  ·  "
    "whisker: ± the host's clock uncertainty  ·  green line: now",
    "bar: a command's run, coloured by state (faded: running, or end unknown)  ·  "
    "red bracket: its timeout  ·  green band: all running together",
)
TIMEOUT_COLOR = "#b91c1c"
SELECTED_COLOR = "#2563eb"


class TimelineWidget(QAbstractScrollArea):
    """The timeline of one test. The title and both axes stay at the top and the
    legend at the bottom while the rows scroll between them. Clicking a row emits
    `row_clicked` with its index in `data.rows` (the commands table's model row)."""

    row_clicked = Signal(int)
    row_activated = Signal(int)  # double click, Enter

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._data: TimelineData | None = None
        self._order: list[int] | None = None  # the rows shown, in this order (None: all)
        # Out of sight, a refresh tick costs nothing: the data and the order (set by a
        # callable, as a sorted table's order changes) are computed when next read.
        self._data_stale = False
        self._order_of: Callable[[], list[int] | None] | None = None
        self._order_pending = False
        self.selected: int | None = None
        self.run_span_ms: float | None = None  # grows in steps; reset for another test
        self._test: TestResult | None = None
        self.title_shown: tuple[str, str] = ("", "")  # the last paint's title and summary
        self.setMinimumWidth(360)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.viewport().setMouseTracking(False)
        self.verticalScrollBar().setSingleStep(ROW_HEIGHT)

    # ---- content
    def set_test(self, test: TestResult | None) -> None:
        if test is not self._test:
            self.run_span_ms = None
            self.selected = None
            self.verticalScrollBar().setValue(0)
        self._test = test
        self.refresh()

    @property
    def data(self) -> TimelineData | None:
        if self._data_stale:
            self._compute()
        return self._data

    @property
    def order(self) -> list[int] | None:
        if self._order_of is not None:
            self._order, self._order_of = self._order_of(), None
        return self._order

    def set_order(self, order: list[int] | Callable[[], list[int] | None] | None) -> None:
        """The rows shown, in this order (None: all), or what says it once needed."""
        if callable(order):
            self._order_of = order
        else:
            self._order, self._order_of = order, None
        if self.isVisible() and not self._order_pending:
            # A sorted table moves rows many times a tick: the order is read once,
            # when the loop is next idle.
            self._order_pending = True
            QTimer.singleShot(0, self._apply_order)

    def _apply_order(self) -> None:
        self._order_pending = False
        self._update_scroll()
        self.viewport().update()

    def set_selected(self, row: int | None) -> None:
        self.selected = row
        shown = self.shown_rows()
        if row in shown:
            self.ensure_visible(shown.index(row))
        self.viewport().update()

    def refresh(self) -> None:
        self._data_stale = True
        if self.isVisible():
            self._compute()
            self._update_scroll()
            self.viewport().update()

    def _compute(self) -> None:
        self._data_stale = False
        self._data = timeline_data(self._test) if self._test is not None else None
        if self._data is not None:
            low, needed = run_range(self._data)
            self.run_span_ms = extend(self.run_span_ms, needed - low)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._update_scroll()
        self._selected_in_sight()

    def shown_rows(self) -> list[int]:
        if self.data is None:
            return []
        count = len(self.data.rows)
        if self.order is None:
            return list(range(count))
        return [row for row in self.order if row < count]

    # ---- geometry: content y (rows from HEADER down) vs viewport y
    @property
    def rows_height(self) -> int:
        """The viewport's band between the sticky header and the legend."""
        return max(ROW_HEIGHT, self.viewport().height() - HEADER - FOOTER)

    def _update_scroll(self) -> None:
        content = len(self.shown_rows()) * ROW_HEIGHT
        bar = self.verticalScrollBar()
        bar.setPageStep(self.rows_height)
        bar.setRange(0, max(0, content - self.rows_height))

    def sizeHint(self) -> QSize:
        rows = len(self.shown_rows())
        return QSize(900, HEADER + max(rows, 1) * ROW_HEIGHT + FOOTER)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._update_scroll()
        self._selected_in_sight()

    def _selected_in_sight(self) -> None:
        """The selected row scrolled into sight once the rows have their height (it was
        selected while the timeline was hidden, or the pane shrank under it)."""
        shown = self.shown_rows()
        if self.selected is not None and self.selected in shown:
            self.ensure_visible(shown.index(self.selected))

    def ensure_visible(self, position: int) -> None:
        bar = self.verticalScrollBar()
        top, bottom = position * ROW_HEIGHT, (position + 1) * ROW_HEIGHT
        if top < bar.value():
            bar.setValue(top)
        elif bottom > bar.value() + self.rows_height:
            bar.setValue(bottom - self.rows_height)

    def row_at(self, y: float) -> int | None:
        """The `data.rows` index under viewport `y`, None in the header, legend or past the end."""
        if y < HEADER or y >= HEADER + self.rows_height:
            return None
        position = int((y - HEADER + self.verticalScrollBar().value()) // ROW_HEIGHT)
        shown = self.shown_rows()
        return shown[position] if 0 <= position < len(shown) else None

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        self.viewport().update()  # the header stays: repaint, never scroll pixels

    # ---- events
    def viewportEvent(self, event: QEvent) -> bool:
        if isinstance(event, QHelpEvent) and event.type() == QEvent.Type.ToolTip:
            row = self.row_at(event.pos().y())
            if row is None or self.data is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(event.globalPos(), tooltip(self.data.rows[row]), self)
            return True
        return super().viewportEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        row = self.row_at(event.position().y())
        if row is not None and event.button() == Qt.MouseButton.LeftButton:
            self.set_selected(row)
            self.row_clicked.emit(row)
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        row = self.row_at(event.position().y())
        if row is not None:
            self.row_activated.emit(row)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Up/Down walk the rows (and the table follows); Enter shows the output."""
        shown = self.shown_rows()
        key = event.key()
        if shown and key in (Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End):
            at = shown.index(self.selected) if self.selected in shown else -1
            at = {
                Qt.Key.Key_Up: max(0, at - 1),
                Qt.Key.Key_Down: min(len(shown) - 1, at + 1),
                Qt.Key.Key_Home: 0,
                Qt.Key.Key_End: len(shown) - 1,
            }[Qt.Key(key)]
            self.set_selected(shown[at])
            self.row_clicked.emit(shown[at])
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.selected is not None:
            self.row_activated.emit(self.selected)
            return
        super().keyPressEvent(event)

    # ---- painting
    def paintEvent(self, event: QPaintEvent) -> None:
        viewport = self.viewport()
        painter, inks = begin_painting(self, viewport)
        bold = QFont(self.font())
        bold.setBold(True)
        pens = _Pens(inks.text, inks.muted, inks.grid, QFont(self.font()), bold)
        data = self.data
        shown = self.shown_rows()
        if data is None or not data.rows:
            painter.setPen(inks.muted)
            painter.drawText(viewport.rect(), Qt.AlignmentFlag.AlignCenter, "No test selected")
            painter.end()
            return
        # +2: horizontalAdvance() rounds down, and elidedText() elides at the exact width.
        bold_metrics = QFontMetrics(bold)
        widest = max(bold_metrics.horizontalAdvance(row.host) for row in data.rows) + 2
        geometry = layout(data, viewport.width(), widest, self.run_span_ms, len(shown))
        scroll = self.verticalScrollBar().value()
        band_bottom = HEADER + self.rows_height
        self._paint_title(painter, pens, data)
        self._paint_headings(painter, pens, geometry)
        # The rows scroll under the header: clip to their band, shift by the scroll.
        painter.save()
        painter.setClipRect(QRectF(0, HEADER, viewport.width(), self.rows_height))
        painter.translate(0, -scroll)
        visible = range(
            max(0, scroll // ROW_HEIGHT),
            min(len(shown), (scroll + self.rows_height) // ROW_HEIGHT + 1),
        )
        self._paint_shading(painter, geometry, pens, visible, shown)
        grid_bottom = max(geometry.bottom, HEADER + scroll + self.rows_height)
        self._paint_strips(painter, pens, data, geometry, HEADER + scroll, grid_bottom)
        for position in visible:
            self._paint_row(painter, pens, geometry, position, data.rows[shown[position]])
        painter.restore()
        self._paint_ticks(painter, pens, geometry)
        self._paint_legend(painter, pens, geometry, min(band_bottom, geometry.bottom))
        painter.end()

    def _paint_title(self, painter: QPainter, pens: _Pens, data: TimelineData) -> None:
        painter.setFont(pens.bold)
        painter.setPen(pens.text)
        title = f"{data.label} — {data.status_text}"
        painter.drawText(QPointF(MARGIN, 16), title)
        painter.setFont(pens.font)
        painter.setPen(pens.muted)
        left = MARGIN + QFontMetrics(pens.bold).horizontalAdvance(title) + 16
        # Cut at its end to the width, with an ellipsis (the summary line says it whole).
        room = self.viewport().width() - left - MARGIN
        said = QFontMetrics(pens.font).elidedText(summary(data), Qt.TextElideMode.ElideRight, room)
        self.title_shown = (title, said)
        painter.drawText(QPointF(left, 16), said)

    def _paint_headings(self, painter: QPainter, pens: _Pens, geometry: Layout) -> None:
        top = geometry.top
        painter.setPen(pens.muted)
        painter.drawText(QPointF(geometry.left, top - 24), "host / command")
        painter.drawText(QPointF(geometry.start.left, top - 24), "start offset (ms)")
        painter.drawText(QPointF(geometry.run.left, top - 24), "run (from the common start)")

    def _paint_shading(
        self,
        painter: QPainter,
        geometry: Layout,
        pens: _Pens,
        visible: range,
        shown: list[int],
    ) -> None:
        """Every other row shaded; the selected one marked."""
        shade = QColor(pens.text)
        shade.setAlpha(12)
        chosen = QColor(SELECTED_COLOR)
        chosen.setAlpha(45)
        width = self.viewport().width() - 2 * geometry.left
        for position in visible:
            rect = QRectF(geometry.left, geometry.row_top(position), width, geometry.row_height)
            if shown[position] == self.selected:
                painter.fillRect(rect, chosen)
            elif position % 2:
                painter.fillRect(rect, shade)

    def _paint_grid(
        self, painter: QPainter, pens: _Pens, axis: Axis, top: float, bottom: float
    ) -> None:
        painter.setPen(QPen(pens.grid, 1))
        for value in axis.ticks():
            x = axis.x(value)
            painter.drawLine(QPointF(x, top), QPointF(x, bottom))

    def _paint_ticks(self, painter: QPainter, pens: _Pens, geometry: Layout) -> None:
        """Tick labels in the sticky header; they stay inside their strip, never overlap."""
        metrics = QFontMetrics(painter.font())
        for axis, signed, unit in ((geometry.start, True, False), (geometry.run, False, True)):
            last_label_end = -math.inf
            for value in axis.ticks():
                x = axis.x(value)
                painter.setPen(QPen(pens.grid, 1))
                painter.drawLine(QPointF(x, geometry.top - 6), QPointF(x, geometry.top))
                label = text.tick(value, axis.step, signed=signed, unit=unit)
                width = metrics.horizontalAdvance(label)
                start = min(max(x - width / 2, axis.left), axis.right - width)
                if start < last_label_end + 6:
                    continue
                painter.setPen(pens.muted)
                painter.drawText(QPointF(start, geometry.top - 8), label)
                last_label_end = start + width

    def _paint_strips(
        self,
        painter: QPainter,
        pens: _Pens,
        data: TimelineData,
        geometry: Layout,
        top: float,
        bottom: float,
    ) -> None:
        """Grids; the measured spread as a band; the common start; now."""
        start, run = geometry.start, geometry.run
        rows_bottom = min(bottom, geometry.bottom)
        self._paint_grid(painter, pens, start, top, rows_bottom)
        self._paint_grid(painter, pens, run, top, rows_bottom)
        first, last = data.first_start_ms, data.last_start_ms
        if first is not None and last is not None:
            band = QColor("#2563eb")
            band.setAlpha(40)
            x1, x2 = start.x(first), start.x(last)
            painter.fillRect(QRectF(x1, top, max(2.0, x2 - x1), rows_bottom - top), band)
        band_x = window_band(data, run)
        if band_x is not None:
            together = QColor(WINDOW_COLOR)
            together.setAlpha(60)
            left, right = band_x
            painter.fillRect(QRectF(left, top, right - left, rows_bottom - top), together)
        painter.setPen(QPen(QColor("#dc2626"), 1.5, Qt.PenStyle.DashLine))
        for axis in (start, run):
            painter.drawLine(QPointF(axis.x(0.0), top), QPointF(axis.x(0.0), rows_bottom))
        if data.now_ms is not None and run.low <= data.now_ms <= run.high:
            x = run.x(data.now_ms)
            painter.setPen(QPen(QColor(NOW_COLOR), 2))  # 2 px: one whole pixel wherever it falls
            painter.drawLine(QPointF(x, top), QPointF(x, rows_bottom))

    def _paint_row(
        self, painter: QPainter, pens: _Pens, geometry: Layout, position: int, row: TimelineRow
    ) -> None:
        """Label, start dot with its clock-uncertainty whisker, run bar, timeout, note."""
        metrics = QFontMetrics(pens.font)
        y = geometry.row_top(position)
        middle = y + geometry.row_height / 2
        baseline = middle + metrics.ascent() / 2 - 1
        state_color = QColor(color(row.state))
        # label: the host, then as much of the command as fits, cut in its middle
        painter.setPen(pens.text)
        painter.setFont(pens.bold)
        host_room = geometry.host_room
        host_text = QFontMetrics(pens.bold).elidedText(
            row.host, Qt.TextElideMode.ElideMiddle, int(host_room)
        )
        painter.drawText(QPointF(geometry.left, baseline), host_text)
        painter.setFont(pens.font)
        painter.setPen(pens.muted)
        room = int(geometry.label_width - host_room - 8)
        painter.drawText(
            QPointF(geometry.left + host_room + 8, baseline),
            metrics.elidedText(row.command, Qt.TextElideMode.ElideMiddle, max(40, room)),
        )
        start, run = geometry.start, geometry.run
        if row.start_ms is None:
            painter.drawText(QPointF(start.left + 4, baseline), row.word)
            painter.drawText(QPointF(run.left + 4, baseline), row.word)
            return
        # start dot with clock-uncertainty whisker
        if row.uncertainty_ms:
            w1 = start.x(row.start_ms - row.uncertainty_ms)
            w2 = start.x(row.start_ms + row.uncertainty_ms)
            painter.setPen(QPen(state_color, 1.2))
            painter.drawLine(QPointF(w1, middle), QPointF(w2, middle))
            painter.drawLine(QPointF(w1, middle - 4), QPointF(w1, middle + 4))
            painter.drawLine(QPointF(w2, middle - 4), QPointF(w2, middle + 4))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(state_color)
        painter.drawEllipse(QPointF(start.x(row.start_ms), middle), 4.0, 4.0)
        # run bar
        end = row.end_ms if row.end_ms is not None else row.start_ms
        x1, x2 = run.x(row.start_ms), run.x(min(end, run.high))
        bar = QRectF(x1, y + 5, max(3.0, x2 - x1), geometry.row_height - 10)
        fill = QColor(state_color)
        if row.running or not row.end_known:
            fill.setAlpha(110)
        painter.setBrush(fill)
        painter.drawRoundedRect(bar, 3, 3)
        if not row.end_known:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(state_color, 1, Qt.PenStyle.DotLine))
            painter.drawRoundedRect(bar, 3, 3)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        # the command's timeout: a bracket where it would be killed
        if row.timeout_ms is not None:
            limit = row.start_ms + row.timeout_ms
            if run.low <= limit <= run.high:
                x = run.x(limit)
                painter.setPen(QPen(QColor(TIMEOUT_COLOR), 2))
                painter.drawLine(QPointF(x, y + 3), QPointF(x, y + geometry.row_height - 3))
                painter.drawLine(QPointF(x - 4, y + 3), QPointF(x, y + 3))
                painter.drawLine(
                    QPointF(x - 4, y + geometry.row_height - 3),
                    QPointF(x, y + geometry.row_height - 3),
                )
        painter.setPen(pens.text)
        painter.drawText(QPointF(bar.right() + 6, baseline), bar_note(row))

    def _paint_legend(self, painter: QPainter, pens: _Pens, geometry: Layout, top: float) -> None:
        painter.setPen(pens.muted)
        for number, line in enumerate(LEGEND):
            painter.drawText(QPointF(geometry.left, top + 19 + 18 * number), line)
