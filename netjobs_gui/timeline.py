"""The timeline of one test: who started when, and who ran long.

`timeline_data()` turns a TestResult into plain rows (no Qt); `TimelineWidget`
paints them. Each row has two parts:

- a *start* strip in milliseconds around the common start instant (the dashed
  line at 0): a dot at each command's measured release with a ± whisker for its
  host's clock uncertainty; the shaded band is the measured start spread;
- a *run* strip in seconds: a bar from the command's start to its end,
  coloured by its state, with its duration and exit code after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from netjobs_core import text
from netjobs_core.results import CommandStatus, TestResult, TestStatus
from netjobs_core.vocabulary import Status, color, exit_code_text, word
from netjobs_gui.models import NO_VALUE, command_state, common_start


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
    common_start: float | None  # epoch, controller clock
    scheduled: bool  # True: the common start was a scheduled instant
    spread_ms: float | None
    spread_uncertainty_ms: float | None
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
    data = TimelineData(
        label=test.label,
        status=test.status,
        common_start=start,
        scheduled=test.scheduled_start is not None,
        spread_ms=test.start_spread_ms,
        spread_uncertainty_ms=test.start_spread_uncertainty_ms,
    )
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


def tick_label_ms(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:+.{decimals}f}" if value else "0"


def tick_label_s(value_ms: float, step_ms: float) -> str:
    seconds = value_ms / 1000.0
    step = step_ms / 1000.0
    if step >= 60 and abs(seconds) >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}"
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{seconds:.{decimals}f}s"


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
LABEL_WIDTH = 300  # at most
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
    """The run strip's range in ms: from the common start (or the first release) to the end."""
    low = min(0.0, data.first_start_ms or 0.0)
    high = max(data.end_ms, low + 1.0)
    return low, high + (high - low) * 0.02


def layout(data: TimelineData, width: int, widest_host: float) -> Layout:
    """Columns, rows and both axes for `width` pixels; `widest_host` is the widest host label."""
    left = MARGIN
    label_width = int(min(LABEL_WIDTH, max(170, width * 0.26)))
    start_width = int(min(START_WIDTH, max(150, width * 0.24)))
    start_left = left + label_width + GAP
    start_right = start_left + start_width
    run_left = start_right + GAP
    run_right = max(run_left + 100, width - MARGIN - NOTE_WIDTH)
    s_low, s_high = start_range(data)
    r_low, r_high = run_range(data)
    return Layout(
        left=left,
        label_width=label_width,
        host_room=min(widest_host, max(60, label_width - 50)),
        top=HEADER,
        bottom=HEADER + len(data.rows) * ROW_HEIGHT,
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
    lines = [f"{row.host}: {row.command}", f"state: {row.word}"]
    if row.start_ms is not None:
        offset = text.ms_pm(row.start_ms, row.uncertainty_ms, signed=True)
        lines.append(f"start offset: {offset}" + (" (clock)" if row.uncertainty_ms else ""))
    if row.duration_ms is not None:
        lines.append(f"ran: {text.duration(row.duration_ms / 1000)}")
    if row.exit_code is not None:
        lines.append(f"exit code: {exit_code_text(row.exit_code)}")
    return "\n".join(lines)


def summary(data: TimelineData) -> str:
    """The title line after the label and status: the spread and the common start."""
    line = f"start spread {text.ms_pm(data.spread_ms, data.spread_uncertainty_ms, none=NO_VALUE)}"
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


class TimelineWidget(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data: TimelineData | None = None
        self._test: TestResult | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(640)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    # ---- content
    def set_test(self, test: TestResult | None) -> None:
        self._test = test
        self.refresh()

    def refresh(self) -> None:
        old_rows = len(self.data.rows) if self.data else -1
        self.data = timeline_data(self._test) if self._test is not None else None
        if (len(self.data.rows) if self.data else -1) != old_rows:
            self.updateGeometry()
            self.setFixedHeight(self.sizeHint().height())
        self.update()

    def sizeHint(self) -> QSize:
        rows = len(self.data.rows) if self.data else 0
        return QSize(900, HEADER + max(rows, 1) * ROW_HEIGHT + FOOTER)

    def row_at(self, y: float) -> TimelineRow | None:
        if self.data is None:
            return None
        index = int((y - HEADER) // ROW_HEIGHT)
        if y < HEADER or not 0 <= index < len(self.data.rows):
            return None
        return self.data.rows[index]

    def event(self, event: QEvent) -> bool:
        if isinstance(event, QHelpEvent) and event.type() == QEvent.Type.ToolTip:
            row = self.row_at(event.pos().y())
            if row is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(event.globalPos(), tooltip(row), self)
            return True
        return super().event(event)

    # ---- painting
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        ink = palette.color(QPalette.ColorRole.Text)
        muted, grid = QColor(ink), QColor(ink)
        muted.setAlpha(140)
        grid.setAlpha(35)
        bold = QFont(self.font())
        bold.setBold(True)
        pens = _Pens(ink, muted, grid, QFont(self.font()), bold)
        data = self.data
        if data is None or not data.rows:
            painter.setPen(muted)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No test selected")
            painter.end()
            return
        # +2: horizontalAdvance() rounds down, and elidedText() elides at the exact width.
        bold_metrics = QFontMetrics(bold)
        widest = max(bold_metrics.horizontalAdvance(row.host) for row in data.rows) + 2
        geometry = layout(data, self.width(), widest)
        self._paint_title(painter, pens, data)
        self._paint_backgrounds(painter, pens, data, geometry)
        self._paint_start_strip(painter, pens, data, geometry)
        self._paint_run_strip(painter, pens, geometry)
        for index, row in enumerate(data.rows):
            self._paint_row(painter, pens, geometry, index, row)
        self._paint_legend(painter, pens, geometry)
        painter.end()

    def _paint_title(self, painter: QPainter, pens: _Pens, data: TimelineData) -> None:
        painter.setFont(pens.bold)
        painter.setPen(pens.text)
        title = f"{data.label} — {word(data.status)}"
        painter.drawText(QPointF(MARGIN, 16), title)
        painter.setFont(pens.font)
        painter.setPen(pens.muted)
        title_width = QFontMetrics(pens.bold).horizontalAdvance(title)
        painter.drawText(QPointF(MARGIN + title_width + 16, 16), summary(data))

    def _paint_backgrounds(
        self, painter: QPainter, pens: _Pens, data: TimelineData, geometry: Layout
    ) -> None:
        """Strip headings, and every other row shaded."""
        top = geometry.top
        painter.setPen(pens.muted)
        painter.drawText(QPointF(geometry.left, top - 24), "host / command")
        painter.drawText(QPointF(geometry.start.left, top - 24), "start offset (ms)")
        painter.drawText(QPointF(geometry.run.left, top - 24), "run (from the common start)")
        shade = QColor(pens.text)
        shade.setAlpha(12)
        for i in range(1, len(data.rows), 2):
            painter.fillRect(
                QRectF(
                    geometry.left,
                    geometry.row_top(i),
                    self.width() - 2 * geometry.left,
                    geometry.row_height,
                ),
                shade,
            )

    def _paint_axis(
        self,
        painter: QPainter,
        pens: _Pens,
        axis: Axis,
        geometry: Layout,
        label_of: Callable[[float, float], str],
    ) -> None:
        """Grid lines and tick labels; labels stay inside the strip and never overlap."""
        metrics = QFontMetrics(painter.font())
        top, bottom = geometry.top, geometry.bottom
        last_label_end = -math.inf
        for value in axis.ticks():
            x = axis.x(value)
            painter.setPen(QPen(pens.grid, 1))
            painter.drawLine(QPointF(x, top - 6), QPointF(x, bottom))
            label = label_of(value, axis.step)
            width = metrics.horizontalAdvance(label)
            start = min(max(x - width / 2, axis.left), axis.right - width)
            if start < last_label_end + 6:
                continue
            painter.setPen(pens.muted)
            painter.drawText(QPointF(start, top - 8), label)
            last_label_end = start + width

    def _paint_common_start(self, painter: QPainter, axis: Axis, geometry: Layout) -> None:
        painter.setPen(QPen(QColor("#dc2626"), 1.5, Qt.PenStyle.DashLine))
        painter.drawLine(
            QPointF(axis.x(0.0), geometry.top - 4), QPointF(axis.x(0.0), geometry.bottom)
        )

    def _paint_start_strip(
        self, painter: QPainter, pens: _Pens, data: TimelineData, geometry: Layout
    ) -> None:
        """The start axis, the measured spread as a band, the common start as a line."""
        axis = geometry.start
        self._paint_axis(painter, pens, axis, geometry, tick_label_ms)
        first, last = data.first_start_ms, data.last_start_ms
        if first is not None and last is not None:
            band = QColor("#2563eb")
            band.setAlpha(40)
            x1, x2 = axis.x(first), axis.x(last)
            height = geometry.bottom - geometry.top
            painter.fillRect(QRectF(x1, geometry.top, max(2.0, x2 - x1), height), band)
        self._paint_common_start(painter, axis, geometry)

    def _paint_run_strip(self, painter: QPainter, pens: _Pens, geometry: Layout) -> None:
        self._paint_axis(painter, pens, geometry.run, geometry, tick_label_s)
        self._paint_common_start(painter, geometry.run, geometry)

    def _paint_row(
        self, painter: QPainter, pens: _Pens, geometry: Layout, index: int, row: TimelineRow
    ) -> None:
        """Label, start dot with its clock-uncertainty whisker, run bar, and the note after it."""
        metrics = QFontMetrics(pens.font)
        y = geometry.row_top(index)
        middle = y + geometry.row_height / 2
        baseline = middle + metrics.ascent() / 2 - 1
        state_color = QColor(color(row.state))
        # label
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
            metrics.elidedText(row.command, Qt.TextElideMode.ElideRight, max(10, room)),
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
        x1, x2 = run.x(row.start_ms), run.x(end)
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
        painter.setPen(pens.text)
        painter.drawText(QPointF(bar.right() + 6, baseline), bar_note(row))

    def _paint_legend(self, painter: QPainter, pens: _Pens, geometry: Layout) -> None:
        painter.setPen(pens.muted)
        painter.drawText(
            QPointF(geometry.left, geometry.bottom + 19),
            "red dashed line: the common start   ·   blue band: the measured start spread   ·   "
            "whisker: ± the host's clock uncertainty",
        )
        painter.drawText(
            QPointF(geometry.left, geometry.bottom + 37),
            "bars: from each command's start to its end, coloured by state "
            "(faded: still running, or end not reported)",
        )
