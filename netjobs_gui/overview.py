"""The overview of one test that fits 100 to 1000 hosts on one screen: the hosts' start
offsets from the common start as a histogram over a strip of one tick per host (the
latest hosts named), and every host's state as a compact grid. A click on a tick, a
bar, a named late host or a cell selects that host (`host_clicked`).

`OverviewData` is the picture's content, computed from a TestResult without widgets
(tests read it); `OverviewWidget` paints it and finds what a click hit.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QHelpEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QShowEvent,
)
from PySide6.QtWidgets import QToolTip, QWidget

from netjobs_core import text, vocabulary
from netjobs_core.results import CommandStatus, HostResult, HostState, TestResult
from netjobs_core.vocabulary import Status
from netjobs_gui.widgets import Inks, begin_painting

LATE_SHOWN = 5  # the latest hosts named under the strip
MAX_BINS = 60
MARGIN = 8
HISTOGRAM_H = 80
STRIP_H = 14
MIN_CELL, MAX_CELL = 5, 28

# A host's cell shows its worst command's problem, else where the host stands.
_PROBLEMS = (
    CommandStatus.ERROR,
    CommandStatus.LOST,
    CommandStatus.FAILED,
    CommandStatus.TIMEOUT,
    CommandStatus.KILLED,
)


def _key(status: Status) -> tuple[type, Status]:
    """A status as a key: a host's FAILED (`error`) and a command's (`failed`) are
    equal StrEnum values, and different things."""
    return type(status), status


def host_status(host: HostResult) -> Status:
    """What a host's cell shows: an error of the host itself; else the first of its
    commands' problems (error, lost, failed, timed out, killed); else its state."""
    if host.state is HostState.FAILED:
        return HostState.FAILED
    statuses = {c.status for c in host.commands}
    for problem in _PROBLEMS:
        if problem in statuses:
            return problem
    if host.state is HostState.RUNNING and all(c.status.finished for c in host.commands):
        return CommandStatus.OK
    return host.state


@dataclass(frozen=True)
class Histogram:
    """Start offsets in ms binned over [lo, hi]; `members[k]`: the hosts of bin k."""

    lo: float
    hi: float
    members: tuple[tuple[int, ...], ...]

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / len(self.members)

    def bin_of(self, offset: float) -> int:
        k = int((offset - self.lo) / self.width) if self.hi > self.lo else 0
        return min(max(k, 0), len(self.members) - 1)


def histogram(offsets: dict[int, float], bins: int) -> Histogram | None:
    """Bins over the offsets and the common start (0), None with no offset."""
    if not offsets:
        return None
    lo = min(0.0, *offsets.values())
    hi = max(0.0, *offsets.values())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.001, hi + 0.001
    bins = max(1, bins)
    members: list[list[int]] = [[] for _ in range(bins)]
    width = (hi - lo) / bins
    for host, offset in offsets.items():
        members[min(int((offset - lo) / width), bins - 1)].append(host)
    return Histogram(lo, hi, tuple(tuple(m) for m in members))


@dataclass
class OverviewData:
    label: str
    names: list[str]  # each host's target, in the test's order
    statuses: list[Status]  # each host's cell
    offsets: dict[int, float]  # host index -> its start offset in ms (released hosts)
    spread_ms: float | None
    late: list[int] = field(default_factory=list)  # the latest hosts, latest first

    @classmethod
    def of(cls, test: TestResult) -> OverviewData:
        offsets = {
            i: h.start_offset_ms for i, h in enumerate(test.hosts) if h.start_offset_ms is not None
        }
        late = sorted(offsets, key=lambda i: (-offsets[i], i))[:LATE_SHOWN]
        return cls(
            test.label,
            [h.target for h in test.hosts],
            [host_status(h) for h in test.hosts],
            offsets,
            test.start_spread_ms,
            late,
        )

    def tally(self) -> list[tuple[Status, int]]:
        """Each status shown with its count, in order of first appearance."""
        return [(status, n) for (_, status), n in Counter(map(_key, self.statuses)).items()]

    def heading(self) -> str:
        counts = ", ".join(f"{n} {vocabulary.word(s)}" for s, n in self.tally())
        return f"{text.count(len(self.names), 'host')}: {counts}" if self.names else "no hosts"

    def offsets_heading(self) -> str:
        released = len(self.offsets)
        what = f"Start offsets from the common start ({released} of {len(self.names)} released"
        if self.spread_ms is not None:
            what += f", spread {text.ms(self.spread_ms)}"
        return what + ")"

    def late_text(self) -> list[tuple[int, str]]:
        return [(i, f"{self.names[i]} {text.ms(self.offsets[i], signed=True)}") for i in self.late]

    def tooltip(self, host: int) -> str:
        offset = self.offsets.get(host)
        started = f", started {text.ms(offset, signed=True)}" if offset is not None else ""
        return f"{self.names[host]}: {vocabulary.word(self.statuses[host])}{started}"


def grid_cell(count: int, width: int, height: int) -> tuple[int, int]:
    """(cell size, columns) that fit `count` cells in width x height, within
    MIN_CELL..MAX_CELL (at the smallest, rows may overflow and scroll out of sight)."""
    if count <= 0 or width <= 0:
        return MAX_CELL, 1
    cell = int(math.sqrt(max(1, width * max(height, 1)) / count))
    cell = min(MAX_CELL, max(MIN_CELL, cell))
    while cell > MIN_CELL and math.ceil(count / max(1, width // cell)) * cell > height:
        cell -= 1
    return cell, max(1, width // cell)


class OverviewWidget(QWidget):
    host_clicked = Signal(int)  # a host's index in the test

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.test: TestResult | None = None
        self.data: OverviewData | None = None
        self.selected: int | None = None
        self._late_rects: list[tuple[QRect, int]] = []
        self._stale = False
        self.setMouseTracking(False)
        self.setMinimumHeight(HISTOGRAM_H + STRIP_H + 120)

    def sizeHint(self) -> QSize:
        return QSize(800, 420)

    # ---- content
    def set_test(self, test: TestResult | None) -> None:
        self.test = test
        self.selected = None
        self.refresh()

    def set_selected(self, host: int | None) -> None:
        if host != self.selected:
            self.selected = host
            self.update()

    def refresh(self) -> None:
        """Recompute from the (live) test; while hidden, only once shown again."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        self.data = OverviewData.of(self.test) if self.test is not None else None
        self.update()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    # ---- geometry: shared by painting and clicking
    def _line_h(self) -> int:
        return self.fontMetrics().height() + 4

    def _histogram_rect(self) -> QRect:
        top = MARGIN + self._line_h() * 2
        return QRect(MARGIN, top, self.width() - 2 * MARGIN, HISTOGRAM_H)

    def _strip_rect(self) -> QRect:
        bars = self._histogram_rect()
        return QRect(bars.left(), bars.bottom() + 2, bars.width(), STRIP_H)

    def _grid_rect(self) -> QRect:
        strip = self._strip_rect()
        top = strip.bottom() + 4 + self._line_h() * 2 + self._line_h()
        return QRect(MARGIN, top, self.width() - 2 * MARGIN, self.height() - top - MARGIN)

    def _bins(self) -> int:
        return max(1, min(MAX_BINS, self._histogram_rect().width() // 6))

    def _x_of(self, offset: float, found: Histogram) -> float:
        area = self._histogram_rect()
        return area.left() + (offset - found.lo) / (found.hi - found.lo) * area.width()

    def host_at(self, x: float, y: float) -> int | None:
        """The host drawn at (x, y): a cell, a tick, a bar (its earliest host), a name."""
        data = self.data
        if data is None or not data.names:
            return None
        for rect, host in self._late_rects:
            if rect.contains(int(x), int(y)):
                return host
        grid = self._grid_rect()
        if grid.contains(int(x), int(y)):
            cell, columns = grid_cell(len(data.names), grid.width(), grid.height())
            index = int((y - grid.top()) // cell) * columns + int((x - grid.left()) // cell)
            inside = (x - grid.left()) < columns * cell
            return index if inside and 0 <= index < len(data.names) else None
        found = histogram(data.offsets, self._bins())
        if found is None:
            return None
        strip, bars = self._strip_rect(), self._histogram_rect()
        if strip.contains(int(x), int(y)):
            return min(data.offsets, key=lambda i: abs(self._x_of(data.offsets[i], found) - x))
        if bars.contains(int(x), int(y)):
            offset = found.lo + (x - bars.left()) / bars.width() * (found.hi - found.lo)
            members = found.members[found.bin_of(offset)]
            return min(members, key=lambda i: data.offsets[i]) if members else None
        return None

    # ---- painting
    def paintEvent(self, event: QPaintEvent) -> None:
        painter, inks = begin_painting(self)
        data = self.data
        line = self._line_h()
        self._late_rects = []
        if data is None:
            painter.setPen(inks.muted)
            painter.drawText(MARGIN, MARGIN + line, "No test selected, or not run yet.")
            painter.end()
            return
        # Heading: the counts, each with its colour.
        x = MARGIN
        painter.setPen(inks.text)
        heading = f"{data.label}: {text.count(len(data.names), 'host')}"
        painter.drawText(x, MARGIN + line - 4, heading)
        x += self.fontMetrics().horizontalAdvance(heading) + 12
        for status, n in data.tally():
            painter.fillRect(QRectF(x, MARGIN + 3, 10, 10), QColor(vocabulary.color(status)))
            label = f"{n} {vocabulary.word(status)}"
            painter.drawText(x + 14, MARGIN + line - 4, label)
            x += 14 + self.fontMetrics().horizontalAdvance(label) + 12
        painter.setPen(inks.muted)
        painter.drawText(MARGIN, MARGIN + 2 * line - 4, data.offsets_heading())

        bars, strip = self._histogram_rect(), self._strip_rect()
        found = histogram(data.offsets, self._bins())
        painter.setPen(inks.grid)
        painter.drawRect(bars)
        if found is not None:
            self._paint_histogram(painter, inks, data, found)
        else:
            painter.setPen(inks.muted)
            painter.drawText(bars, Qt.AlignmentFlag.AlignCenter, "no host released yet")
        below = strip.bottom() + 4 + line
        # The latest hosts, each clickable.
        x = MARGIN
        painter.setPen(inks.muted)
        if data.late:
            painter.drawText(x, below - 4 + line, "Latest:")
            x += self.fontMetrics().horizontalAdvance("Latest:") + 8
        painter.setPen(QColor(vocabulary.BLUE))
        for host, words in data.late_text():
            advance = self.fontMetrics().horizontalAdvance(words)
            if x + advance > self.width() - MARGIN:
                break
            painter.drawText(x, below - 4 + line, words)
            self._late_rects.append((QRect(x, below + 2, advance, line), host))
            x += advance + 14
        painter.setPen(inks.muted)
        painter.drawText(
            MARGIN, below - 4 + 2 * line, "Hosts, in the test's order (click one to select it):"
        )
        self._paint_grid(painter, inks, data)
        painter.end()

    def _paint_histogram(
        self, painter: QPainter, inks: Inks, data: OverviewData, found: Histogram
    ) -> None:
        bars, strip = self._histogram_rect(), self._strip_rect()
        tallest = max(len(m) for m in found.members) or 1
        step = bars.width() / len(found.members)
        for k, members in enumerate(found.members):
            # Stacked by status, problems at the bottom: a bar never hides a failed host.
            bottom = float(bars.bottom())
            by_status = Counter(_key(data.statuses[i]) for i in members)
            for (_, status), n in sorted(by_status.items(), key=lambda p: p[0][1] not in _PROBLEMS):
                h = (bars.height() - 4) * n / tallest
                color = QColor(vocabulary.color(status))
                color.setAlpha(200)
                left = bars.left() + k * step + 1
                painter.fillRect(QRectF(left, bottom - h, max(1.0, step - 2), h), color)
                bottom -= h
        # The common start, and the axis' ends.
        zero = self._x_of(0.0, found)
        painter.setPen(QPen(inks.text, 1, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(zero, bars.top()), QPointF(zero, strip.bottom()))
        painter.setPen(inks.muted)
        painter.drawText(
            QRectF(bars.left() + 2, bars.top() + 2, bars.width() / 2, 16),
            text.ms(found.lo, signed=True),
        )
        painter.drawText(
            QRectF(bars.center().x() - 100, bars.top() + 2, bars.width() / 2 + 98, 16),
            Qt.AlignmentFlag.AlignRight,
            text.ms(found.hi, signed=True),
        )
        # One tick per released host.
        painter.fillRect(strip, inks.grid)
        for host, offset in data.offsets.items():
            x = self._x_of(offset, found)
            painter.setPen(QColor(vocabulary.color(data.statuses[host])))
            painter.drawLine(QPointF(x, strip.top() + 2), QPointF(x, strip.bottom() - 2))
        if self.selected is not None and self.selected in data.offsets:
            x = self._x_of(data.offsets[self.selected], found)
            painter.setPen(QPen(inks.text, 2))
            painter.drawLine(QPointF(x, bars.top()), QPointF(x, strip.bottom()))

    def _paint_grid(self, painter: QPainter, inks: Inks, data: OverviewData) -> None:
        grid = self._grid_rect()
        cell, columns = grid_cell(len(data.names), grid.width(), grid.height())
        colors = {_key(s): QColor(vocabulary.color(s)) for s in data.statuses}
        gap = 1 if cell < 10 else 2
        for i, status in enumerate(data.statuses):
            row, column = divmod(i, columns)
            rect = QRect(
                grid.left() + column * cell, grid.top() + row * cell, cell - gap, cell - gap
            )
            painter.fillRect(rect, colors[_key(status)])
        if self.selected is not None and self.selected < len(data.statuses):
            row, column = divmod(self.selected, columns)
            painter.setPen(QPen(inks.text, 2))
            painter.drawRect(
                QRect(grid.left() + column * cell - 1, grid.top() + row * cell - 1, cell, cell)
            )

    # ---- input
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            host = self.host_at(event.position().x(), event.position().y())
            if host is not None:
                self.set_selected(host)
                self.host_clicked.emit(host)
                return
        super().mousePressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            host = self.host_at(event.pos().x(), event.pos().y())
            if host is not None and self.data is not None:
                QToolTip.showText(event.globalPos(), self.data.tooltip(host), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)
