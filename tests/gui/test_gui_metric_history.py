"""The Results page over a real history made by real runs (local agents, the CLI): a
metric's sum plotted over runs beside the start spread, chosen among the metrics the
history kept; and a run exported as CSV is the very document `netjobs show RUN --csv`
prints (issue 21)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QFileDialog

from netjobs_core.history import History
from netjobs_gui.columns import metric_names, metric_series
from netjobs_gui.history_view import HistoryPanel
from netjobs_gui.results_view import ResultsView
from netjobs_gui.spread_plot import LINE_COLOR
from netjobs_gui.widgets import select_row

pytestmark = [pytest.mark.timeout(180), pytest.mark.posix]

FIO = Path(__file__).parent.parent / "data" / "metrics" / "fio-randrw.json"
MiB = 2**20


def netjobs(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture(scope="module")
def three_runs(agents: Any, token_file: Path, tmp_path_factory: Any) -> tuple[Path, list[str]]:
    """Three runs of one config (its path the same, its rates changed between runs):
    2 hosts each printing a copy rate, a third a fio document; the run ids, oldest first."""
    config = tmp_path_factory.mktemp("metric-history") / "rates.cfg"
    run_ids = []
    for k in range(3):
        a0, a1, a2 = (f"127.0.0.1:{a.port}" for a in agents)
        config.write_text(
            "rates:\n"
            "-metric: copy_Bps = copied ([0-9.]+ ?MiB)/s\n"
            f'{a0}: "echo copied {100 * (k + 1)} MiB/s"\n'
            f'{a1}: "echo copied {50 * (k + 1)} MiB/s"\n'
            f'{a2}: "cat {FIO}"\n'
            "end\n"
        )
        result = netjobs("--token-file", token_file, config)
        assert result.returncode == 0, result.stdout + result.stderr
        with History() as history:
            run_ids.append(history.recent(1)[0].run_id)
    return config, run_ids


def _records(config: Path) -> list[Any]:
    with History() as history:
        return [r for r in history.recent(500) if r.config_path == str(config)]


def test_the_series_of_a_metric_over_runs_comes_from_the_history(three_runs: Any) -> None:
    config, run_ids = three_runs
    records = _records(config)
    names = metric_names(records, str(config), "rates")
    assert names[0] == "copy_Bps" and "read_bw" in names  # config's, then fio's
    points = metric_series(records, str(config), "rates", "copy_Bps")
    assert [p.run_id for p in points] == run_ids  # oldest first
    assert [p.value for p in points] == [150 * MiB, 300 * MiB, 450 * MiB]
    assert [p.hosts for p in points] == [2, 2, 2]
    assert all(p.started_at is not None for p in points)
    fio = metric_series(records, str(config), "rates", "read_bw")
    assert len({p.value for p in fio}) == 1 and fio[0].hosts == 1  # the same document
    # A metric this test never had: every run a gap, never a zero.
    assert [p.value for p in metric_series(records, str(config), "rates", "nope")] == [None] * 3


def test_the_results_page_plots_the_chosen_metric_beside_the_spread(
    qapp: QApplication, three_runs: Any, tmp_path: Path
) -> None:
    config, run_ids = three_runs
    panel = HistoryPanel()
    panel.resize(1280, 640)
    panel.show()
    rows = [r.run_id for r in panel.model.records]
    select_row(panel.table, rows.index(run_ids[-1]))
    qapp.processEvents()
    assert panel.test_choice.currentText() == "rates"
    choice = panel.metric_choice
    names = [choice.itemText(i) for i in range(choice.count())]
    assert names == metric_names(_records(config), str(config), "rates")
    assert choice.currentText() == "copy_Bps" and choice.isEnabled()
    plot = panel.metric_plot
    assert [p.value for p in plot.points] == [150 * MiB, 300 * MiB, 450 * MiB]
    assert plot.title == "'rates': copy_Bps in all (summed over hosts) over 3 runs"
    # Ticked in MiB/s (2^20: the largest is 450 MiB/s), so its ticks read round.
    assert plot.unit == MiB and plot.tick_text(200.0, 100.0) == "200 MiB/s"
    first, last = plot.dates  # the x axis is dated: the oldest run's start, the newest's
    assert first and last and first <= last
    assert [p.run_id for p in panel.plot.points] == run_ids  # the spread, beside it

    choice.setCurrentIndex(names.index("read_bw"))  # another metric: its own series
    qapp.processEvents()
    assert plot.name == "read_bw" and len(plot.points) == 3
    assert plot.tick_text(1.0, 1.0).endswith("/s")  # in the metric's unit

    choice.setCurrentIndex(0)
    qapp.processEvents()
    for drawn in (panel.plot, plot):  # both plots paint their runs' line and dots
        assert _line_pixels(drawn) > 50, drawn.title
    image = panel.grab()
    assert not image.isNull() and image.width() >= 1000
    shot = tmp_path / "metric-history.png"
    assert image.save(str(shot))
    if os.environ.get("NETJOBS_SHOT_DIR"):  # to look at it: NETJOBS_SHOT_DIR=/tmp
        shutil.copy(shot, Path(os.environ["NETJOBS_SHOT_DIR"]) / shot.name)


def _line_pixels(widget: Any) -> int:
    image = widget.grab().toImage()
    line = QColor(LINE_COLOR).rgb()
    return sum(
        image.pixel(x, y) == line for x in range(0, image.width(), 2) for y in range(image.height())
    )


def _save_to(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )


def test_export_run_as_csv_writes_what_show_csv_prints(
    qapp: QApplication, three_runs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config, run_ids = three_runs
    run_id = run_ids[1]
    shown = netjobs("show", run_id, "--csv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].endswith(
        ",copy_Bps,read_bw,read_iops,read_clat_p99_ns,write_bw,write_iops,write_clat_p99_ns"
    )

    # From the History tab: the selected past run.
    panel = HistoryPanel()
    select_row(panel.table, [r.run_id for r in panel.model.records].index(run_id))
    assert panel.export_button.isEnabled()
    from_history = tmp_path / "history.csv"
    _save_to(monkeypatch, from_history)
    panel.export_run()
    assert from_history.read_text(encoding="utf-8") == shown.stdout

    # From this session's list: the same run, opened.
    view = ResultsView()
    with History() as history:
        record = history.find(run_id)
    from netjobs_core.results_json import load_json

    view.add_run(load_json(record.json_path), "opened")
    assert view.export_button.isEnabled()
    from_session = tmp_path / "session.csv"
    _save_to(monkeypatch, from_session)
    view.export_run()
    assert from_session.read_bytes() == shown.stdout.encode("utf-8")
