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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QEvent, QLineF, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
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
from netjobs_core.results import CommandStatus, HostResult, HostState, TestResult, TestStatus
from netjobs_core.vocabulary import Status
from netjobs_gui.widgets import Inks, begin_painting

LATE_SHOWN = 5  # the latest hosts named under the strip
MAX_BINS = 60
MARGIN = 8
HISTOGRAM_H = 80
STRIP_H = 14
PANEL_GAP = 16  # between the releases' histogram and the exec instants' one
MIN_CELL, MAX_CELL = 5, 28

# A host's cell shows its worst command's problem, else where the host stands.
_PROBLEMS = (
    CommandStatus.ERROR,
    CommandStatus.LOST,
    CommandStatus.FAILED,
    CommandStatus.TIMEOUT,
    CommandStatus.KILLED,
)

_PROBLEM_SET = frozenset(_PROBLEMS)


def _key(status: Status) -> tuple[type, Status]:
    """A status as a key: a host's FAILED (`error`) and a command's (`failed`) are
    equal StrEnum values, and different things."""
    return type(status), status


def host_status(host: HostResult) -> Status:
    """What a host's cell shows: the first of its commands' problems (error, lost,
    failed, timed out, killed), as the table's State column words that command; else
    an error of the host itself; else its state."""
    if len(host.commands) == 1:  # most hosts: no set to build (1000 hosts a tick)
        status = host.commands[0].status
        if status in _PROBLEM_SET:
            return status
        if host.state is HostState.FAILED:
            return HostState.FAILED
        if host.state is HostState.RUNNING and status.finished:
            return CommandStatus.OK
        return host.state
    statuses = {c.status for c in host.commands}
    for problem in _PROBLEMS:
        if problem in statuses:
            return problem
    if host.state is HostState.FAILED:
        return HostState.FAILED
    if host.state is HostState.RUNNING and all(c.status.finished for c in host.commands):
        return CommandStatus.OK
    return host.state


def tally(statuses: Iterable[Status]) -> list[tuple[Status, int]]:
    """Each word shown with its count, in order of first appearance: a host's error
    and a command's (both `error`), or a host and a command timed out, are one."""
    first: dict[str, Status] = {}
    counts: Counter[str] = Counter()
    for status in statuses:
        said = vocabulary.word(status)
        first.setdefault(said, status)
        counts[said] += 1
    return [(first[said], n) for said, n in counts.items()]


def hosts_tally(hosts: Iterable[HostResult]) -> str:
    """`33 done, 3 failed, 2 errors`: the hosts as their cells show them (host_status),
    so a host done whose command failed is not counted done."""
    return ", ".join(vocabulary.counted(s, n) for s, n in tally(map(host_status, hosts)))


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
    late: list[int] = field(default_factory=list)  # the hosts named: late ones, else latest
    # host index -> when its (last) command began, ms from the common start (issue 19)
    exec_offsets: dict[int, float] = field(default_factory=dict)
    late_ms: dict[int, float] = field(default_factory=dict)  # hosts released late (--late-ms)
    late_threshold_ms: float = 1.0
    began: str = ""  # text.began(): "released within ...; commands began within ..."
    ended: bool = False  # the test is over (passed, failed, aborted): no more releases

    @classmethod
    def of(cls, test: TestResult) -> OverviewData:
        offsets = {
            i: h.start_offset_ms for i, h in enumerate(test.hosts) if h.start_offset_ms is not None
        }
        exec_offsets: dict[int, float] = {}
        for i, host in enumerate(test.hosts):
            began = [c.exec_offset_ms for c in host.commands if c.exec_offset_ms is not None]
            if began:
                exec_offsets[i] = max(began)
        where = {id(h): i for i, h in enumerate(test.hosts)}
        late_ms = {where[id(host)]: ms for host, ms in test.late_hosts()}
        if late_ms:
            late = sorted(late_ms, key=lambda i: (-late_ms[i], i))
        else:
            late = sorted(offsets, key=lambda i: (-offsets[i], i))[:LATE_SHOWN]
        return cls(
            test.label,
            [h.target for h in test.hosts],
            [host_status(h) for h in test.hosts],
            offsets,
            test.start_spread_ms,
            late,
            exec_offsets,
            late_ms,
            test.late_threshold_ms,
            text.began(test) if test.start_spread_ms is not None else "",
            test.status not in (TestStatus.PENDING, TestStatus.RUNNING),
        )

    def none_released(self) -> str:
        """What an empty histogram says: a test that is over will release no host."""
        return "no host was released" if self.ended else "no host released yet"

    def tally(self) -> list[tuple[Status, int]]:
        return tally(self.statuses)

    def legend(self) -> list[str]:
        """`36 errors`, `2 done`: the tally as the heading and the legend say it."""
        return [vocabulary.counted(status, n) for status, n in self.tally()]

    def heading(self) -> str:
        counts = ", ".join(self.legend())
        return f"{text.count(len(self.names), 'host')}: {counts}" if self.names else "no hosts"

    def offsets_heading(self) -> str:
        """`Start offsets from the common start (99 of 100 released): released within
        ...; commands began within ...` (text.began, as the report says it)."""
        released = len(self.offsets)
        what = f"Start offsets from the common start ({released} of {len(self.names)} released)"
        return f"{what}: {self.began}" if self.began else what

    def panels(self) -> list[tuple[str, dict[int, float]]]:
        """The offset histograms shown: the releases, and when the commands began
        (exec instants) once any was measured."""
        shown = [("released (agent's release instant)", self.offsets)]
        if self.exec_offsets:
            measured = f"{len(self.exec_offsets)} of {len(self.names)}"
            shown.append((f"began (the command's exec instant, {measured})", self.exec_offsets))
        return shown

    def named_heading(self) -> str:
        return text.late_heading(self.late_threshold_ms) if self.late_ms else "Latest:"

    def late_text(self) -> list[tuple[int, str]]:
        """The hosts named under the histograms, each with its lateness (late releases)
        or its start offset (the latest, when none was late)."""
        said = self.late_ms or self.offsets
        return [(i, f"{self.names[i]} {text.ms(said[i], signed=True)}") for i in self.late]

    def tooltip(self, host: int) -> str:
        said = f"{self.names[host]}: {vocabulary.word(self.statuses[host])}"
        offset = self.offsets.get(host)
        if offset is not None:
            said += f", started {text.ms(offset, signed=True)}"
        if host in self.exec_offsets:
            said += f", began {text.ms(self.exec_offsets[host], signed=True)}"
        if host in self.late_ms:
            said += f", released {text.ms(self.late_ms[host])} late"
        return said


def axis_rects(panel: Panel, line: int) -> tuple[QRectF, QRectF]:
    """Where a histogram's axis ends are written: under its strip, at its left and right
    ends, never over its bars (the line there is free: the named hosts come after)."""
    top = panel.strip.bottom() + 2
    half = panel.bars.width() / 2
    return (
        QRectF(panel.bars.left(), top, half, line),
        QRectF(panel.bars.left() + half, top, panel.bars.width() - half, line),
    )


def _outline(rect: QRect) -> list[QLineF]:
    """A rectangle's sides as lines (drawRect() costs ms here, on a widget)."""
    left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
    return [
        QLineF(left, top, right, top),
        QLineF(right, top, right, bottom),
        QLineF(right, bottom, left, bottom),
        QLineF(left, bottom, left, top),
    ]


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


@dataclass(frozen=True)
class Panel:
    """One offsets histogram as laid out: its caption, bars, strip and axis."""

    caption: str
    offsets: dict[int, float]
    found: Histogram | None
    bars: QRect
    strip: QRect

    def x_of(self, offset: float) -> float:
        assert self.found is not None
        found, area = self.found, self.bars
        return area.left() + (offset - found.lo) / (found.hi - found.lo) * area.width()


@dataclass(frozen=True)
class Layout:
    """Where everything goes for one OverviewData at one size: painting and clicks
    share it, and it is computed once per change (1000 cells and ticks a tick)."""

    line: int
    panels: list[Panel]
    named_top: int  # the line naming the late (or latest) hosts
    grid: QRect
    cell: int
    columns: int
    cells: list[QRect]  # each host's cell, in the test's order


class OverviewWidget(QWidget):
    host_clicked = Signal(int)  # a host's index in the test

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.test: TestResult | None = None
        self.data: OverviewData | None = None
        self.selected: int | None = None
        self._late_rects: list[tuple[QRect, int]] = []
        self.drawn: list[str] = []  # the words of the last paint
        self._layout: tuple[tuple[int, int, int], Layout] | None = None
        self._cells: tuple[tuple[int, int, int, int], list[QRect]] | None = None
        self._stale = False
        self.setMouseTracking(False)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # it fills all it paints
        # The headings, the histograms, the named hosts and a few rows of cells: never
        # a grid pushed out of sight (the page gives the rest to the table).
        line = self.fontMetrics().height() + 4
        self.setMinimumHeight(2 * MARGIN + 6 * line + HISTOGRAM_H + STRIP_H + 6 + 4 * MIN_CELL)

    def sizeHint(self) -> QSize:
        return QSize(800, 420)

    # ---- content
    def set_test(self, test: TestResult | None) -> None:
        self.test = test
        self.selected = None
        self.data = None
        self.refresh()

    def set_selected(self, host: int | None) -> None:
        if host != self.selected:
            self.selected = host
            self.update()

    def refresh(self) -> None:
        """Recompute from the (live) test; while hidden, only once shown again; an
        unchanged picture is not painted again."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        data = OverviewData.of(self.test) if self.test is not None else None
        if data != self.data or data is None:
            self.data = data
            self.update()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    # ---- geometry: shared by painting and clicking
    def layout_now(self) -> Layout | None:
        data = self.data
        if data is None:
            return None
        key = (id(data), self.width(), self.height())
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, self._compute_layout(data))
        return self._layout[1]

    def _compute_layout(self, data: OverviewData) -> Layout:
        line = self.fontMetrics().height() + 4
        shown = data.panels()
        width = self.width() - 2 * MARGIN
        each = (width - PANEL_GAP * (len(shown) - 1)) // len(shown)
        top = MARGIN + 3 * line
        panels = []
        for k, (caption, offsets) in enumerate(shown):
            bars = QRect(MARGIN + k * (each + PANEL_GAP), top, each, HISTOGRAM_H)
            strip = QRect(bars.left(), bars.bottom() + 2, each, STRIP_H)
            bins = max(1, min(MAX_BINS, each // 6))
            panels.append(Panel(caption, offsets, histogram(offsets, bins), bars, strip))
        below = top + HISTOGRAM_H + 2 + STRIP_H + 4
        grid_top = below + 3 * line
        grid = QRect(MARGIN, grid_top, width, self.height() - grid_top - MARGIN)
        cell, columns = grid_cell(len(data.names), grid.width(), grid.height())
        key = (len(data.names), grid.width(), grid.top(), grid.height())
        if self._cells is None or self._cells[0] != key:  # the same while the size is
            gap = 1 if cell < 10 else 2
            cells = [
                QRect(grid.left() + c * cell, grid.top() + r * cell, cell - gap, cell - gap)
                for r, c in (divmod(i, columns) for i in range(len(data.names)))
            ]
            self._cells = (key, cells)
        return Layout(line, panels, below + line, grid, cell, columns, self._cells[1])

    def _grid_rect(self) -> QRect:
        found = self.layout_now()
        return QRect() if found is None else found.grid

    def host_at(self, x: float, y: float) -> int | None:
        """The host drawn at (x, y): a cell, a tick, a bar (its earliest host), a name."""
        data, found = self.data, self.layout_now()
        if data is None or found is None or not data.names:
            return None
        point = QPoint(int(x), int(y))
        for rect, host in self._late_rects:
            if rect.contains(point):
                return host
        grid = found.grid
        if grid.contains(point):
            cell, columns = found.cell, found.columns
            index = int((y - grid.top()) // cell) * columns + int((x - grid.left()) // cell)
            inside = (x - grid.left()) < columns * cell
            return index if inside and 0 <= index < len(data.names) else None
        for panel in found.panels:
            bins, offsets = panel.found, panel.offsets
            if bins is None:
                continue
            if panel.strip.contains(point):
                return min(offsets, key=lambda i: abs(panel.x_of(offsets[i]) - x))
            if panel.bars.contains(point):
                share = (x - panel.bars.left()) / panel.bars.width()
                offset = bins.lo + share * (bins.hi - bins.lo)
                members = bins.members[bins.bin_of(offset)]
                return min(members, key=lambda i: offsets[i]) if members else None
        return None

    # ---- painting
    def paintEvent(self, event: QPaintEvent) -> None:
        painter, inks = begin_painting(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)  # pixels, and faster
        data, found = self.data, self.layout_now()
        self._late_rects, self.drawn = [], []
        metrics = self.fontMetrics()
        line = metrics.height() + 4
        if data is None or found is None:
            painter.setPen(inks.muted)
            self._draw_text(painter, MARGIN, MARGIN + line, "No test selected, or not run yet.")
            painter.end()
            return
        # Heading: the counts, each with its colour.
        x = MARGIN
        painter.setPen(inks.text)
        heading = f"{data.label}: {text.count(len(data.names), 'host')}"
        self._draw_text(painter, x, MARGIN + line - 4, heading)
        x += metrics.horizontalAdvance(heading) + 12
        for (status, _), label in zip(data.tally(), data.legend(), strict=True):
            painter.fillRect(QRectF(x, MARGIN + 3, 10, 10), QColor(vocabulary.color(status)))
            self._draw_text(painter, x + 14, MARGIN + line - 4, label)
            x += 14 + metrics.horizontalAdvance(label) + 12
        painter.setPen(inks.muted)
        width = self.width() - 2 * MARGIN
        # The summary line above the tabs says it whole; here it may be elided.
        said = metrics.elidedText(data.offsets_heading(), Qt.TextElideMode.ElideRight, width)
        self._draw_text(painter, MARGIN, MARGIN + 2 * line - 4, said)
        for panel in found.panels:
            self._paint_panel(painter, inks, data, panel, line)
        self._paint_named(painter, inks, data, found)
        painter.setPen(inks.muted)
        caption = "Hosts, in the test's order (click one to select it"
        caption += "; a dot: released late):" if data.late_ms else "):"
        self._draw_text(painter, MARGIN, found.named_top + 2 * line - 4, caption)
        self._paint_grid(painter, inks, data, found)
        painter.end()

    def _paint_panel(
        self, painter: QPainter, inks: Inks, data: OverviewData, panel: Panel, line: int
    ) -> None:
        bars, strip = panel.bars, panel.strip
        painter.setPen(inks.muted)
        caption = self.fontMetrics().elidedText(
            panel.caption, Qt.TextElideMode.ElideRight, bars.width()
        )
        self._draw_text(painter, bars.left(), bars.top() - 6, caption)
        painter.setPen(inks.grid)
        painter.drawLines(_outline(bars))
        found = panel.found
        if found is None:
            painter.setPen(inks.muted)
            self._draw_text(painter, bars, Qt.AlignmentFlag.AlignCenter, data.none_released())
            return
        tallest = max(len(m) for m in found.members) or 1
        step = bars.width() / len(found.members)
        colors: dict[tuple[type, Status], QColor] = {}
        for k, members in enumerate(found.members):
            # Stacked by status, problems at the bottom: a bar never hides a failed host.
            bottom = float(bars.bottom())
            by_status = Counter(_key(data.statuses[i]) for i in members)
            for key, n in sorted(by_status.items(), key=lambda p: p[0][1] not in _PROBLEMS):
                h = (bars.height() - 4) * n / tallest
                if key not in colors:
                    colors[key] = QColor(vocabulary.color(key[1]))
                    colors[key].setAlpha(200)
                left = bars.left() + k * step + 1
                painter.fillRect(QRectF(left, bottom - h, max(1.0, step - 2), h), colors[key])
                bottom -= h
        # The common start, and the axis' ends.
        zero = panel.x_of(0.0)
        painter.setPen(QPen(inks.text, 1, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(zero, bars.top()), QPointF(zero, strip.bottom()))
        painter.setPen(inks.muted)
        low, high = axis_rects(panel, line)
        self._draw_text(painter, low, Qt.AlignmentFlag.AlignLeft, text.ms(found.lo, signed=True))
        self._draw_text(painter, high, Qt.AlignmentFlag.AlignRight, text.ms(found.hi, signed=True))
        # One tick per host, drawn once per pixel column and colour (1000 hosts).
        painter.fillRect(strip, inks.grid)
        scale = bars.width() / (found.hi - found.lo)
        columns: dict[tuple[type, Status], set[int]] = {}
        late: set[int] = set()
        for host, offset in panel.offsets.items():
            x = int(bars.left() + (offset - found.lo) * scale)
            columns.setdefault(_key(data.statuses[host]), set()).add(x)
            if host in data.late_ms:
                late.add(x)
        for (_, status), xs in columns.items():
            painter.setPen(QColor(vocabulary.color(status)))
            painter.drawLines([QLineF(x, strip.top() + 2, x, strip.bottom() - 2) for x in xs])
        if late and panel.offsets is data.offsets:  # late releases: full-height marks
            painter.setPen(QPen(inks.text, 2))
            painter.drawLines([QLineF(x, strip.top(), x, strip.bottom()) for x in late])
        if self.selected is not None and self.selected in panel.offsets:
            at = panel.x_of(panel.offsets[self.selected])
            painter.setPen(QPen(inks.text, 2))
            painter.drawLine(QPointF(at, bars.top()), QPointF(at, strip.bottom()))

    def _paint_named(
        self, painter: QPainter, inks: Inks, data: OverviewData, found: Layout
    ) -> None:
        """The late hosts (else the latest), each clickable."""
        if not data.late:
            return
        metrics, line, top = self.fontMetrics(), found.line, found.named_top
        heading = data.named_heading()
        painter.setPen(inks.muted)
        self._draw_text(painter, MARGIN, top + line - 4, heading)
        x = MARGIN + metrics.horizontalAdvance(heading) + 8
        painter.setPen(QColor(vocabulary.BLUE))
        named = data.late_text()
        # Room kept for "and N more" unless the last name fits.
        more = metrics.horizontalAdvance(f"and {len(named)} more")
        for k, (host, words) in enumerate(named):
            advance = metrics.horizontalAdvance(words)
            room = self.width() - MARGIN - (0 if k == len(named) - 1 else more + 14)
            if x + advance > room:
                painter.setPen(inks.muted)
                self._draw_text(painter, x, top + line - 4, f"and {len(named) - k} more")
                break
            self._draw_text(painter, x, top + line - 4, words)
            self._late_rects.append((QRect(x, top + 2, advance, line), host))
            x += advance + 14

    def _paint_grid(self, painter: QPainter, inks: Inks, data: OverviewData, found: Layout) -> None:
        by_color: dict[tuple[type, Status], list[QRect]] = {}
        for rect, status in zip(found.cells, data.statuses, strict=True):
            by_color.setdefault(_key(status), []).append(rect)
        painter.setPen(Qt.PenStyle.NoPen)
        for (_, status), rects in by_color.items():
            painter.setBrush(QColor(vocabulary.color(status)))
            painter.drawRects(rects)
        if data.late_ms:  # a dot in each late host's cell
            painter.setBrush(inks.text)
            dot = max(2, (found.cell - 1) // 2)
            painter.drawRects(
                [
                    QRect(r.center().x() - dot // 2, r.center().y() - dot // 2, dot, dot)
                    for r in (found.cells[i] for i in data.late_ms)
                ]
            )
        if self.selected is not None and self.selected < len(found.cells):
            rect = found.cells[self.selected]
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(inks.text, 2))
            painter.drawRect(rect.adjusted(-1, -1, 1, 1))

    def _draw_text(self, painter: QPainter, *args: Any) -> None:
        """drawText(), and what it said kept in `drawn` (the tests read the picture)."""
        painter.drawText(*args)
        self.drawn.append(args[-1])

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
