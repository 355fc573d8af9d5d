"""Small plots of one test over its runs (the run history, --repeat): its start spread
(`SpreadPlot`) and a metric's sum over hosts (`MetricPlot`).

`plot_layout()` places everything from the values and the widget's size alone
(no Qt, tested on its own); `RunsPlot` paints it with QPainter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

from netjobs_core import text
from netjobs_gui.columns import MetricPoint, SpreadPoint
from netjobs_gui.timeline import nice_step
from netjobs_gui.widgets import begin_painting

LEFT, RIGHT, TOP, BOTTOM = 64, 14, 28, 24
TICK_GAP = 20  # pixels at least between two y ticks: their labels never touch
LINE_COLOR = "#2563eb"


@dataclass(frozen=True)
class PlotLayout:
    left: float
    right: float
    top: float
    bottom: float
    y_max: float  # ms at the top of the plot (0 at the bottom)
    step: float  # ms between two ticks
    points: tuple[tuple[float, float] | None, ...]  # None: that run measured no spread

    def y(self, value_ms: float) -> float:
        return self.bottom - value_ms / self.y_max * (self.bottom - self.top)

    def ticks(self) -> list[float]:
        return [k * self.step for k in range(round(self.y_max / self.step) + 1)]


def plot_layout(
    values: Sequence[float | None], width: int, height: int, left: int = LEFT
) -> PlotLayout:
    """The runs evenly spaced left to right (oldest first), the values from 0 up to
    a whole number of ticks above the largest; `left`: room for the tick labels."""
    left, right, top, bottom = (
        left,
        max(left + 20, width - RIGHT),
        TOP,
        max(TOP + 20, height - BOTTOM),
    )
    known = [v for v in values if v is not None]
    largest = max(known, default=0.0)
    intervals = max(1, min(4, int((bottom - top) // TICK_GAP)))  # fewer on a short plot
    step = nice_step(largest if largest > 0 else 1.0, intervals)
    y_max = max(step, math.ceil(largest / step - 1e-9) * step)
    geometry = PlotLayout(left, right, top, bottom, y_max, step, ())
    count = len(values)
    points = []
    for index, value in enumerate(values):
        x = (left + right) / 2 if count == 1 else left + index * (right - left) / (count - 1)
        points.append(None if value is None else (x, geometry.y(value)))
    return PlotLayout(left, right, top, bottom, y_max, step, tuple(points))


def plot_title(label: str, points: Sequence[SpreadPoint]) -> str:
    runs = text.count(len(points), "run")
    if len(points) < 2:
        return f"{label!r}: {runs} so far, nothing to compare yet"
    return f"{label!r}: start spread over {runs}"


P = TypeVar("P", SpreadPoint, MetricPoint)


def metric_title(label: str, name: str, points: Sequence[MetricPoint]) -> str:
    runs = text.count(len(points), "run")
    if not name:
        return f"{label!r}: no metric kept in the history"
    if len(points) < 2:
        return f"{label!r}: {name} in all, {runs} so far"
    return f"{label!r}: {name} in all (summed over hosts) over {runs}"


class RunsPlot(QWidget, Generic[P]):
    """A value of one test over its runs: a dot per run, joined by a line; the y axis
    from 0, the x axis dated (the oldest run's and the newest's start)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = ""
        self.points: list[P] = []
        self.setMinimumSize(260, 90)

    def values(self) -> list[float | None]:
        raise NotImplementedError

    def tick_text(self, value: float, step: float) -> str:
        raise NotImplementedError

    @property
    def title(self) -> str:
        raise NotImplementedError

    @property
    def plotted(self) -> bool:
        """Whether axes are drawn (else the title alone says why there is nothing)."""
        return True

    def sizeHint(self) -> QSize:
        return QSize(480, 260)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter, inks = begin_painting(self)
        muted, grid = inks.muted, inks.grid
        painter.setPen(inks.text)
        metrics = painter.fontMetrics()
        title = metrics.elidedText(self.title, Qt.TextElideMode.ElideRight, self.width() - 16)
        painter.drawText(QPointF(8, 17), title)
        if not self.plotted:  # no empty axis without a unit
            painter.end()
            return
        values = self.values()
        geometry = plot_layout(values, self.width(), self.height())
        labels = [self.tick_text(v, geometry.step) for v in geometry.ticks()]
        widest = max((metrics.horizontalAdvance(label) for label in labels), default=0)
        if widest + 10 > geometry.left:  # room for every tick label
            geometry = plot_layout(values, self.width(), self.height(), widest + 10)
        for value in geometry.ticks():
            y = geometry.y(value)
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(geometry.left, y), QPointF(geometry.right, y))
            painter.setPen(muted)
            painter.drawText(
                QRectF(0, y - 9, geometry.left - 6, 18),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                self.tick_text(value, geometry.step),
            )
        dots = [p for p in geometry.points if p is not None]
        line = QColor(LINE_COLOR)
        painter.setPen(QPen(line, 1.5))
        for (x1, y1), (x2, y2) in itertools.pairwise(dots):
            painter.drawLine(QPointF(x1, y1), QPointF(x2, y2))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(line)
        for x, y in dots:
            painter.drawEllipse(QPointF(x, y), 3.5, 3.5)
        painter.setPen(muted)
        first, last = self.dates
        if first:  # the x axis is dated: the oldest run's day and time, the newest's
            baseline = self.height() - 6
            painter.drawText(QPointF(geometry.left, baseline), first)
            width = metrics.horizontalAdvance(last)
            painter.drawText(QPointF(geometry.right - width, baseline), last)
        painter.end()

    @property
    def dates(self) -> tuple[str, str]:
        """When the oldest and the newest run plotted started ("" when unknown)."""
        known = [p.started_at for p in self.points if p.started_at is not None]
        if not known:
            return "", ""
        return text.date_time(min(known)), text.date_time(max(known))


class SpreadPlot(RunsPlot[SpreadPoint]):
    """The start spread of one test over its runs."""

    def set_series(self, label: str, points: Sequence[SpreadPoint]) -> None:
        self.label, self.points = label, list(points)
        self.update()

    def values(self) -> list[float | None]:
        return [p.spread_ms for p in self.points]

    def tick_text(self, value: float, step: float) -> str:
        return text.tick(value, step)

    @property
    def title(self) -> str:
        return plot_title(self.label, self.points) if self.label else "Select a past run"


class MetricPlot(RunsPlot[MetricPoint]):
    """A metric's sum over hosts (what the history keeps) of one test over its runs."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = ""

    def set_series(self, label: str, name: str, points: Sequence[MetricPoint]) -> None:
        self.label, self.name, self.points = label, name, list(points)
        self.update()

    @property
    def unit(self) -> float:
        """What the axis is ticked in (text.metric_axis_unit): 2^30 for GiB/s..."""
        largest = max((p.value for p in self.points if p.value is not None), default=0.0)
        return text.metric_axis_unit(self.name, largest)

    def values(self) -> list[float | None]:
        unit = self.unit
        return [None if p.value is None else p.value / unit for p in self.points]

    def tick_text(self, value: float, step: float) -> str:
        return "0" if value == 0 else text.metric_value(self.name, value * self.unit)

    @property
    def plotted(self) -> bool:
        return bool(self.name and self.points)

    @property
    def title(self) -> str:
        if not self.label:
            return "Select a past run"
        return metric_title(self.label, self.name, self.points)
