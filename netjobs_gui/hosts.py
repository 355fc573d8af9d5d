"""The Hosts panel: the open config's hosts plus hand-added ones, and their check."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from netjobs_core import text
from netjobs_core.results import HostState
from netjobs_core.vocabulary import color
from netjobs_core.wire.address import DEFAULT_PORT, Address
from netjobs_gui.columns import HOST_FIT, HOST_FIT_NO_ERROR
from netjobs_gui.models import HostsModel
from netjobs_gui.widgets import FilterBar, FitColumns, make_table, never_widen, source_row


class HostsPanel(QWidget):
    check_requested = Signal()
    manual_hosts_changed = Signal(list)  # list[str]: explicit targets
    error = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = HostsModel(self)
        self.default_port = 0
        self._config: list[Address] = []
        self._manual: list[Address] = []

        self.check_button = QPushButton("Chec&k hosts")
        self.check_button.setToolTip(
            "Connect to every host, authenticate, measure round trip and clock offset "
            "(runs nothing)"
        )
        self.check_button.clicked.connect(self.check_requested)
        self.add_edit = QLineEdit()
        self.add_edit.setPlaceholderText("host, host:port or [IPv6]:port")
        self.add_edit.setMinimumWidth(170)
        self.add_edit.setMaximumWidth(260)
        self.add_edit.returnPressed.connect(self.add_from_edit)
        add_button = QPushButton("A&dd host")
        add_button.clicked.connect(self.add_from_edit)
        self.remove_button = QPushButton("Re&move")
        self.remove_button.setToolTip("Remove the selected hand-added hosts")
        self.remove_button.clicked.connect(self.remove_selected)
        self.summary = QLabel()
        never_widen(self.summary)
        self.config_set = QLabel()  # the config's hosts as one node set, with their count
        self.config_set.setTextFormat(Qt.TextFormat.PlainText)
        self.config_set.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        never_widen(self.config_set)

        bar = QHBoxLayout()
        bar.addWidget(self.check_button)
        bar.addSpacing(16)
        bar.addWidget(self.add_edit)
        bar.addWidget(add_button)
        bar.addWidget(self.remove_button)
        bar.addSpacing(16)
        bar.addWidget(self.summary, 1)

        self.table = make_table(self.model, single=False)
        self.columns = FitColumns(self.table, HOST_FIT)
        self.filter = FilterBar(self.table, "by host, name or error")
        self.filter.problems.setToolTip("Show only hosts unreachable, refused, busy or in error")
        self.table.selectionModel().currentRowChanged.connect(self._show_details)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hint = QLabel(
            "The open config's hosts, and hosts added by hand (remembered between sessions). "
            "Check hosts connects, authenticates and measures each one; it runs nothing."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #6b7280;")

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.config_set)
        layout.addWidget(self.filter)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addWidget(hint)
        self.model.modelReset.connect(self._update_summary)
        self.model.dataChanged.connect(self._update_summary)
        self._update_summary()

    # ---- content
    def set_config_hosts(self, addresses: Sequence[Address]) -> None:
        self._config = list(dict.fromkeys(addresses))
        members = text.members([a.short for a in self._config]) if self._config else ""
        self.config_set.setToolTip(members)
        self._show_config_set()
        self._rebuild()

    def _show_config_set(self) -> None:
        """The node set cut in its middle to the label's width: its count stays in sight."""
        members = self.config_set.toolTip()
        if not members:
            self.config_set.setText("")
            return
        line = f"The config's hosts: {members}"
        width = max(200, self.config_set.width())
        metrics = self.config_set.fontMetrics()
        self.config_set.setText(metrics.elidedText(line, Qt.TextElideMode.ElideMiddle, width))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._show_config_set()

    def set_manual_targets(self, targets: Sequence[str], default_port: int) -> None:
        self.default_port = default_port
        manual = []
        for target in targets:
            try:
                manual.append(Address.parse(target, default_port))
            except ValueError:
                continue  # a stale or hand-edited setting: skip it
        self._manual = list(dict.fromkeys(manual))
        self._rebuild()

    @property
    def manual_targets(self) -> list[str]:
        # Stored with the port, so a later change of the default port changes nothing.
        return [str(address) for address in self._manual]

    def _rebuild(self) -> None:
        self.model.set_hosts(self._config, self._manual)

    def add_target(self, target: str) -> bool:
        try:
            address = Address.parse(target, self.default_port or DEFAULT_PORT)
        except ValueError as exc:
            self.error.emit("Add host", str(exc))
            return False
        if address not in self._manual:
            self._manual.append(address)
            self._rebuild()
            self.manual_hosts_changed.emit(self.manual_targets)
        return True

    def add_from_edit(self) -> None:
        if self.add_edit.text().strip() and self.add_target(self.add_edit.text()):
            self.add_edit.clear()

    def remove_selected(self) -> None:
        selected = self.table.selectionModel().selectedRows()
        rows = {row for index in selected if (row := source_row(self.table, index)) is not None}
        doomed = {self.model.rows[row].address for row in rows if self.model.rows[row].manual}
        if doomed:
            self._manual = [address for address in self._manual if address not in doomed]
            self._rebuild()
            self.manual_hosts_changed.emit(self.manual_targets)

    # ---- checks
    def set_busy(self, checking: bool) -> None:
        self.check_button.setEnabled(not checking)
        self.check_button.setText("Checking…" if checking else "Chec&k hosts")

    def _show_details(self, current: QModelIndex, _previous: QModelIndex | None = None) -> None:
        """The selected host in full: its error, or what the agent said about itself."""
        number = source_row(self.table, current)
        if number is None or number >= len(self.model.rows):
            self.details.clear()
            return
        row = self.model.rows[number]
        check = row.check
        host = f"<b>{escape(row.target)}</b>"
        if check is None:
            line = f"{host}: not checked yet."
        elif check.error:
            red = color(HostState.FAILED)
            line = f'{host}: <span style="color:{red}">{escape(text.printable(check.error))}</span>'
        else:
            # What the agent says of itself, escaped as everywhere (text.printable).
            agent, name, platform = map(
                text.printable, (check.agent_version, check.hostname, check.platform)
            )
            priority = text.release_priority(check.realtime)
            busy = (
                text.busy_with(check.busy_with, check.busy_for, check.kept_s)
                if check.busy
                else "idle"
            )
            line = (
                f"{host}: agent {escape(agent)} on {escape(name)} "
                f"({escape(platform)}), {escape(busy)}"
                + (f", {escape(priority)}" if priority else "")
            )
        self.details.setText(line)

    def _update_summary(self) -> None:
        errors = any(row.check is not None and row.check.error for row in self.model.rows)
        fits = list(HOST_FIT if errors else HOST_FIT_NO_ERROR)
        if fits != self.columns.fits:
            self.columns.fits = fits
            self.columns.apply()
        self.summary.setText(self.model.summary())
        self._show_details(self.table.selectionModel().currentIndex())
        self.summary.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
