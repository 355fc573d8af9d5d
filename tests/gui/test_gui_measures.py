"""What the core measures, as the window shows it: the concurrent window, folded
outputs, large spooled outputs, collected files, node sets and groups, the history."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QUrl

from netjobs_core.outputs import Output
from netjobs_core.results import Collected, CommandStatus
from netjobs_core.window import window_of
from netjobs_gui import widgets
from netjobs_gui.columns import folded_lines, output_groups
from netjobs_gui.run_view import TAIL_BYTES, TestDetail
from netjobs_gui.timeline import (
    HEADER,
    LEGEND,
    ROW_HEIGHT,
    TimelineWidget,
    layout,
    timeline_data,
    window_band,
)
from tests.gui.test_gui_views import T0, make_test


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[QUrl]:
    """What the window asked the desktop to open (nothing is launched)."""
    urls: list[QUrl] = []

    def record(url: QUrl) -> bool:
        urls.append(url)
        return True

    monkeypatch.setattr(widgets, "open_url", record)
    return urls


def windowed(hosts: int = 3) -> Any:
    test = make_test(hosts=hosts)
    test.concurrent_window = window_of(test)
    return test


# --------------------------------------------------------------------------- the concurrent window


def test_the_window_band_is_where_every_command_ran() -> None:
    test = windowed()
    data = timeline_data(test)
    # Releases at 0, 0.01, 0.02 ms; the shortest command ran 1 s.
    assert data.window_ms == pytest.approx((0.02, 1000.0), abs=1e-3)  # float epochs
    geometry = layout(data, 1200, 90.0)
    left, right = window_band(data, geometry.run)
    assert left == pytest.approx(geometry.run.x(0.02))
    assert right == pytest.approx(geometry.run.x(1000.0))
    # Clipped to the strip, never narrower than 2 px; none without a window.
    data.window_ms = (-5000.0, 1e9)
    assert window_band(data, geometry.run) == (geometry.run.left, geometry.run.right)
    data.window_ms = (10.0, 10.0)
    band = window_band(data, geometry.run)
    assert band is not None and band[1] - band[0] == 2.0
    test.concurrent_window = None
    assert window_band(timeline_data(test), geometry.run) is None


def test_the_window_is_shaded_on_the_timeline_and_said_in_the_summary(qtbot: Any) -> None:
    widget = TimelineWidget()
    qtbot.addWidget(widget)
    widget.resize(1100, 300)
    widget.show()
    test = windowed()
    widget.set_test(test)
    image = widget.viewport().grab().toImage()
    data = widget.data
    assert data is not None
    geometry = layout(data, widget.viewport().width(), 90.0, widget.run_span_ms, 3)
    left, right = window_band(data, geometry.run)
    # The band's tint, blended on the base colour, inside the band and not right of it.
    y = HEADER + 3 * ROW_HEIGHT - 2  # below the bars of the last row, inside the rows
    inside = image.pixelColor(int((left + right) / 2), y)
    outside = image.pixelColor(int(right) + 30, y)
    assert inside.green() > inside.red() and inside != outside
    assert "green band: all running together" in LEGEND[1]

    detail = TestDetail()
    qtbot.addWidget(detail)
    detail.set_test(test)
    # The last release at +0.02 ms, the first end at 1 s; the longest ran 1.2 s.
    assert "all 3 hosts ran together for 1.000 s (83.3 % of the longest command)" in (
        detail.summary.text()
    )
    detail.set_test(make_test(hosts=2))
    assert "the 2 hosts never all ran together" in detail.summary.text()
