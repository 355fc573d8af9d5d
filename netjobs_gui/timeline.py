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
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from netjobs_core.results import CommandStatus, TestResult
from netjobs_gui.models import (
    STATE_COLORS,
    command_state,
    common_start,
    fmt_ms,
    fmt_seconds,
    fmt_spread,
)


@dataclass
class TimelineRow:
    host: str
    command: str
    state: str
    start_ms: float | None  # release minus common start; None = never started
    end_ms: float | None  # None = never started
    running: bool  # still running: end_ms is "now"
    end_known: bool  # False: finished, but the agent reported no end (killed, lost)
    exit_code: int | None
    uncertainty_ms: float | None  # the host's clock uncertainty

    @property
    def duration_ms(self) -> float | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return self.end_ms - self.start_ms


@dataclass
class TimelineData:
    label: str
    status: str
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
        status=test.status.value,
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
                    host=host.target,
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


def _tick_label_ms(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:+.{decimals}f}" if value else "0"


def _tick_label_s(value_ms: float, step_ms: float) -> str:
    seconds = value_ms / 1000.0
    step = step_ms / 1000.0
    if step >= 60 and abs(seconds) >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}"
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{seconds:.{decimals}f}s"


class TimelineWidget(QWidget):
    ROW_HEIGHT = 24
    HEADER = 58
    FOOTER = 46
    LABEL_WIDTH = 300  # at most
    START_WIDTH = 240  # at most
    GAP = 26
    NOTE_WIDTH = 120  # room after the longest bar for "12.345 s  exit 0"
    MARGIN = 10

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
        return QSize(900, self.HEADER + max(rows, 1) * self.ROW_HEIGHT + self.FOOTER)

    # ---- geometry helpers
    def _start_range(self) -> tuple[float, float]:
        """The start strip's range in ms: 0 and every release with its whisker, padded."""
        assert self.data is not None
        low = high = 0.0
        for row in self.data.rows:
            if row.start_ms is not None:
                margin = row.uncertainty_ms or 0.0
                low = min(low, row.start_ms - margin)
                high = max(high, row.start_ms + margin)
        span = max(high - low, 0.1)
        pad = span * 0.12
        low, high = low - pad, high + pad
        return low, high

    def _run_range(self) -> tuple[float, float]:
        assert self.data is not None
        low = min(0.0, self.data.first_start_ms or 0.0)
        high = max(self.data.end_ms, low + 1.0)
        return low, high + (high - low) * 0.02

    def row_at(self, y: float) -> TimelineRow | None:
        if self.data is None:
            return None
        index = int((y - self.HEADER) // self.ROW_HEIGHT)
        if y < self.HEADER or not 0 <= index < len(self.data.rows):
            return None
        return self.data.rows[index]

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            row = self.row_at(event.pos().y())  # type: ignore[attr-defined]
            if row is None:
                QToolTip.hideText()
            else:
                lines = [f"{row.host}: {row.command}", f"state: {row.state}"]
                if row.start_ms is not None:
                    lines.append(f"start offset: {fmt_ms(row.start_ms, 3, signed=True)}")
                    if row.uncertainty_ms is not None:
                        lines[-1] += f" ± {row.uncertainty_ms:.3f} ms (clock)"
                if row.duration_ms is not None:
                    lines.append(f"ran: {fmt_seconds(row.duration_ms / 1000)}")
                if row.exit_code is not None:
                    lines.append(f"exit code: {row.exit_code}")
                QToolTip.showText(event.globalPos(), "\n".join(lines), self)  # type: ignore[attr-defined]
            return True
        return super().event(event)

    # ---- painting
    def _axis(  # type: ignore[no-untyped-def]
        self, painter: QPainter, span, step: float, to_x, strip, rows, label_of, grid, muted
    ) -> None:
        """Grid lines and tick labels; labels stay inside the strip and never overlap."""
        metrics = QFontMetrics(painter.font())
        (low, high), (left, right), (top, bottom) = span, strip, rows
        first = math.ceil(low / step - 1e-9)
        last_label_end = -math.inf
        for k in range(first, first + 1000):
            value = k * step
            if value > high + step * 1e-6:
                break
            x = to_x(value)
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(x, top - 6), QPointF(x, bottom))
            label = label_of(value, step)
            width = metrics.horizontalAdvance(label)
            start = min(max(x - width / 2, left), right - width)
            if start < last_label_end + 6:
                continue
            painter.setPen(muted)
            painter.drawText(QPointF(start, top - 8), label)
            last_label_end = start + width

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        text = palette.color(QPalette.ColorRole.Text)
        muted = QColor(text)
        muted.setAlpha(140)
        grid = QColor(text)
        grid.setAlpha(35)
        font = QFont(self.font())
        metrics = QFontMetrics(font)

        if self.data is None or not self.data.rows:
            painter.setPen(muted)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No test selected")
            painter.end()
            return
        data = self.data
        left = self.MARGIN
        label_width = int(min(self.LABEL_WIDTH, max(170, self.width() * 0.26)))
        start_width = int(min(self.START_WIDTH, max(150, self.width() * 0.24)))
        label_right = left + label_width
        start_left = label_right + self.GAP
        start_right = start_left + start_width
        run_left = start_right + self.GAP
        run_right = max(run_left + 100, self.width() - self.MARGIN - self.NOTE_WIDTH)
        top = self.HEADER
        bottom = top + len(data.rows) * self.ROW_HEIGHT

        # Title line
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text)
        title = f"{data.label} — {data.status}"
        painter.drawText(QPointF(left, 16), title)
        painter.setFont(font)
        summary = f"start spread {fmt_spread_text(data)}"
        if data.common_start is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(data.common_start))
            fraction = f"{data.common_start % 1:.3f}"[1:]
            kind = "scheduled start" if data.scheduled else "first start"
            summary += f"   ·   {kind} {stamp}{fraction}"
        painter.setPen(muted)
        painter.drawText(
            QPointF(left + QFontMetrics(bold).horizontalAdvance(title) + 16, 16), summary
        )

        # Strip headings
        painter.setPen(muted)
        painter.drawText(QPointF(left, top - 24), "host / command")
        painter.drawText(QPointF(start_left, top - 24), "start offset (ms)")
        painter.drawText(QPointF(run_left, top - 24), "run (from the common start)")

        # Row backgrounds
        for i in range(len(data.rows)):
            if i % 2:
                shade = QColor(text)
                shade.setAlpha(12)
                painter.fillRect(
                    QRectF(
                        left, top + i * self.ROW_HEIGHT, self.width() - 2 * left, self.ROW_HEIGHT
                    ),
                    shade,
                )

        # ---- start strip
        s_low, s_high = self._start_range()

        def sx(value: float) -> float:
            return start_left + (value - s_low) / (s_high - s_low) * (start_right - start_left)

        step = nice_step(s_high - s_low, max(3, int((start_right - start_left) / 35)))
        self._axis(
            painter,
            (s_low, s_high),
            step,
            sx,
            (start_left, start_right),
            (top, bottom),
            _tick_label_ms,
            grid,
            muted,
        )
        first, last = data.first_start_ms, data.last_start_ms
        if first is not None and last is not None:
            band = QColor("#2563eb")
            band.setAlpha(40)
            x1, x2 = sx(first), sx(last)
            painter.fillRect(QRectF(x1, top, max(2.0, x2 - x1), bottom - top), band)
        common_pen = QPen(QColor("#dc2626"), 1.5, Qt.PenStyle.DashLine)
        painter.setPen(common_pen)
        painter.drawLine(QPointF(sx(0.0), top - 4), QPointF(sx(0.0), bottom))

        # ---- run strip
        r_low, r_high = self._run_range()

        def rx(value: float) -> float:
            return run_left + (value - r_low) / (r_high - r_low) * (run_right - run_left)

        step = nice_step(r_high - r_low, max(2, int((run_right - run_left) / 45)))
        self._axis(
            painter,
            (r_low, r_high),
            step,
            rx,
            (run_left, run_right),
            (top, bottom),
            _tick_label_s,
            grid,
            muted,
        )
        painter.setPen(common_pen)
        painter.drawLine(QPointF(rx(0.0), top - 4), QPointF(rx(0.0), bottom))

        # ---- rows
        bold_metrics = QFontMetrics(bold)
        # +2: horizontalAdvance() rounds down, and elidedText() elides at the exact width.
        widest = max(bold_metrics.horizontalAdvance(row.host) for row in data.rows) + 2
        host_room = min(widest, max(60, label_width - 50))
        for i, row in enumerate(data.rows):
            y = top + i * self.ROW_HEIGHT
            middle = y + self.ROW_HEIGHT / 2
            baseline = middle + metrics.ascent() / 2 - 1
            color = QColor(STATE_COLORS.get(row.state, "#6b7280"))
            # label
            painter.setPen(text)
            painter.setFont(bold)
            host_text = QFontMetrics(bold).elidedText(
                row.host, Qt.TextElideMode.ElideMiddle, host_room
            )
            painter.drawText(QPointF(left, baseline), host_text)
            painter.setFont(font)
            painter.setPen(muted)
            room = label_width - host_room - 8
            painter.drawText(
                QPointF(left + host_room + 8, baseline),
                metrics.elidedText(row.command, Qt.TextElideMode.ElideRight, max(10, room)),
            )
            if row.start_ms is None:
                painter.setPen(muted)
                painter.drawText(QPointF(start_left + 4, baseline), row.state)
                painter.drawText(QPointF(run_left + 4, baseline), row.state)
                continue
            # start dot with clock-uncertainty whisker
            x = sx(row.start_ms)
            if row.uncertainty_ms:
                w1, w2 = (
                    sx(row.start_ms - row.uncertainty_ms),
                    sx(row.start_ms + row.uncertainty_ms),
                )
                painter.setPen(QPen(color, 1.2))
                painter.drawLine(QPointF(w1, middle), QPointF(w2, middle))
                painter.drawLine(QPointF(w1, middle - 4), QPointF(w1, middle + 4))
                painter.drawLine(QPointF(w2, middle - 4), QPointF(w2, middle + 4))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawEllipse(QPointF(x, middle), 4.0, 4.0)
            # run bar
            end = row.end_ms if row.end_ms is not None else row.start_ms
            x1, x2 = rx(row.start_ms), rx(end)
            bar = QRectF(x1, y + 5, max(3.0, x2 - x1), self.ROW_HEIGHT - 10)
            fill = QColor(color)
            if row.running or not row.end_known:
                fill.setAlpha(110)
            painter.setBrush(fill)
            painter.drawRoundedRect(bar, 3, 3)
            if not row.end_known:
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.setPen(QPen(color, 1, Qt.PenStyle.DotLine))
                painter.drawRoundedRect(bar, 3, 3)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            # duration / exit after the bar
            duration = row.duration_ms
            note = fmt_seconds(duration / 1000.0) if duration is not None else ""
            if row.running:
                note += " …"
            elif not row.end_known:
                note = f"{row.state} (end unknown)"
            elif row.exit_code is not None:
                note += f"  exit {row.exit_code}"
            elif row.state != "done":
                note += f"  {row.state}"
            painter.setPen(text)
            painter.drawText(QPointF(bar.right() + 6, baseline), note)

        # Legend
        painter.setPen(muted)
        painter.drawText(
            QPointF(left, bottom + 19),
            "red dashed line: the common start   ·   blue band: the measured start spread   ·   "
            "whisker: ± the host's clock uncertainty",
        )
        painter.drawText(
            QPointF(left, bottom + 37),
            "bars: from each command's start to its end, coloured by state "
            "(faded: still running, or end not reported)",
        )
        painter.end()


def fmt_spread_text(data: TimelineData) -> str:
    if data.spread_ms is None:
        return "—"
    text = fmt_ms(data.spread_ms, 3)
    if data.spread_uncertainty_ms:
        text += f" ± {data.spread_uncertainty_ms:.3f} ms"
    return text


__all__ = [
    "TimelineData",
    "TimelineRow",
    "TimelineWidget",
    "fmt_spread",
    "nice_step",
    "timeline_data",
]
