"""What the window remembers between sessions (QSettings), and the Settings dialog.

Tests (and anyone wanting a portable profile) set NETJOBS_GUI_SETTINGS_DIR, or
call `use_settings_dir()`, so the settings go to an INI file in that folder
instead of the user's real settings.

The settings file is its owner's only: 0600 in a 0700 folder. Qt writes it whole
(QSaveFile: a temporary file renamed over the old one, which keeps the old file's
mode), so a full disk or a crash leaves the previous settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from netjobs_core import credentials
from netjobs_core.atomic import FILE_MODE, keep_private, make_private_dirs
from netjobs_core.nodesets import NO_GROUPS, Groups, GroupsError, load_groups
from netjobs_core.results import HostState
from netjobs_core.vocabulary import color
from netjobs_core.wire.address import DEFAULT_PORT
from netjobs_core.wire.tokens import TokenError, default_token_path, load_token

if TYPE_CHECKING:
    from netjobs_core.ssh import SshOptions

ORGANIZATION = "NetJobs"
APPLICATION = "NetJobs"
SETTINGS_DIR_ENV = "NETJOBS_GUI_SETTINGS_DIR"
MAX_RECENT = 8


def use_settings_dir(path: str | os.PathLike[str]) -> None:
    """Keep every QSettings made from now on in INI files under `path`."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, os.fspath(path))


def apply_settings_env() -> None:
    """Honour NETJOBS_GUI_SETTINGS_DIR, if set."""
    folder = os.environ.get(SETTINGS_DIR_ENV)
    if folder:
        use_settings_dir(folder)


def keep_settings_private(store: QSettings) -> None:
    """Make `store`'s file 0600 and its folder 0700 (an empty file now if there is
    none yet: Qt keeps that mode whenever it replaces the file). The registry (Windows)
    and the macOS preferences are left to the system. Never raises: Qt reports what it
    cannot write (QSettings.status())."""
    native = store.format() == QSettings.Format.NativeFormat
    if native and sys.platform in ("win32", "darwin"):
        return
    path = Path(store.fileName())
    try:
        make_private_dirs(path.parent)
        keep_private(path.parent)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            keep_private(path)
    except OSError:
        pass


def _as_list(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if str(item)]
    return []


class Settings:
    """Typed access to the persisted settings."""

    def __init__(self, store: QSettings | None = None) -> None:
        if store is None:
            # QSettings(org, app) would ignore setDefaultFormat(); name the format explicitly.
            store = QSettings(
                QSettings.defaultFormat(), QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
            )
        keep_settings_private(store)
        self.store = store

    # ---- run settings
    @property
    def token_file(self) -> str:
        """The token file; "" = the core's default lookup (NETJOBS_TOKEN, then the user file)."""
        return str(self.store.value("run/token_file", "") or "")

    @token_file.setter
    def token_file(self, value: str) -> None:
        self.store.setValue("run/token_file", value)

    @property
    def groups_file(self) -> str:
        """The `name: nodeset` groups file that `@name` targets use; "" = none."""
        return str(self.store.value("run/groups_file", "") or "")

    @groups_file.setter
    def groups_file(self, value: str) -> None:
        self.store.setValue("run/groups_file", value)

    def groups(self) -> Groups:
        """The groups file read (NO_GROUPS when none is set); raises GroupsError."""
        path = self.groups_file
        return load_groups(Path(path).expanduser()) if path else NO_GROUPS

    @property
    def default_port(self) -> int:
        try:
            port = int(str(self.store.value("run/default_port", DEFAULT_PORT)))
        except (TypeError, ValueError):
            return DEFAULT_PORT
        return port if 1 <= port <= 65535 else DEFAULT_PORT

    @default_port.setter
    def default_port(self, value: int) -> None:
        self.store.setValue("run/default_port", int(value))

    @property
    def connect_timeout(self) -> float:
        try:
            seconds = float(str(self.store.value("run/connect_timeout", 5.0)))
        except (TypeError, ValueError):
            return 5.0
        return seconds if seconds > 0 else 5.0

    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None:
        self.store.setValue("run/connect_timeout", float(value))

    @property
    def stop_on_failure(self) -> bool:
        value = self.store.value("run/stop_on_failure", False)
        return value in (True, "true", "1", 1)

    @stop_on_failure.setter
    def stop_on_failure(self, value: bool) -> None:
        self.store.setValue("run/stop_on_failure", bool(value))

    # ---- SSH targets (where ~/.ssh/config does not say)
    @property
    def ssh_user(self) -> str:
        return str(self.store.value("ssh/user", "") or "")

    @ssh_user.setter
    def ssh_user(self, value: str) -> None:
        self.store.setValue("ssh/user", value)

    @property
    def ssh_key_file(self) -> str:
        return str(self.store.value("ssh/key_file", "") or "")

    @ssh_key_file.setter
    def ssh_key_file(self, value: str) -> None:
        self.store.setValue("ssh/key_file", value)

    @property
    def ssh_accept_new(self) -> bool:
        return self.store.value("ssh/accept_new", False) in (True, "true", "1", 1)

    @ssh_accept_new.setter
    def ssh_accept_new(self, value: bool) -> None:
        self.store.setValue("ssh/accept_new", bool(value))

    def ssh_options(self) -> SshOptions:
        from netjobs_core.ssh import SshOptions  # asyncssh: imported when a run needs it

        return SshOptions(
            accept_new=self.ssh_accept_new,
            username=self.ssh_user or None,
            client_keys=[self.ssh_key_file] if self.ssh_key_file else None,
        )

    # ---- lists
    @property
    def recent_files(self) -> list[str]:
        return _as_list(self.store.value("files/recent"))[:MAX_RECENT]

    def add_recent_file(self, path: str) -> list[str]:
        path = os.path.abspath(path)
        files = [path] + [name for name in self.recent_files if name != path]
        self.store.setValue("files/recent", files[:MAX_RECENT])
        return files[:MAX_RECENT]

    def clear_recent_files(self) -> None:
        self.store.setValue("files/recent", [])

    @property
    def manual_hosts(self) -> list[str]:
        return _as_list(self.store.value("hosts/manual"))

    @manual_hosts.setter
    def manual_hosts(self, targets: list[str]) -> None:
        self.store.setValue("hosts/manual", list(targets))

    @property
    def last_directory(self) -> str:
        return str(self.store.value("files/last_directory", "") or str(Path.home()))

    @last_directory.setter
    def last_directory(self, value: str) -> None:
        self.store.setValue("files/last_directory", value)

    # ---- window
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.store.value("window/geometry")
        state = self.store.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)

    def sync(self) -> None:
        self.store.sync()


class SettingsDialog(QDialog):
    """Token file (its kind, and agent files for the open config's hosts), default
    port, connect timeout, SSH user and key."""

    def __init__(
        self, settings: Settings, parent: QWidget | None = None, hosts: Sequence[str] = ()
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("NetJobs settings")
        self.settings = settings
        self.hosts = list(hosts)  # the open config's host parts (its TCP targets)

        self.token_edit = QLineEdit(settings.token_file)
        self.token_edit.setPlaceholderText(f"default: $NETJOBS_TOKEN, then {default_token_path()}")
        self.token_edit.setMinimumWidth(360)
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(browse)

        self.groups_edit = QLineEdit(settings.groups_file)
        self.groups_edit.setPlaceholderText("none: targets may not use @name groups")
        self.groups_edit.setToolTip("Lines 'name: nodeset' (web: node[01-08]); a config's @web")
        groups_browse = QPushButton("Bro&wse…")
        groups_browse.clicked.connect(self._browse_groups)
        groups_row = QHBoxLayout()
        groups_row.addWidget(self.groups_edit, 1)
        groups_row.addWidget(groups_browse)
        self.groups_error = QLabel()
        self.groups_error.setStyleSheet(f"color: {color(HostState.FAILED)};")
        self.groups_error.setWordWrap(True)
        self.groups_error.hide()
        self.groups_edit.textChanged.connect(lambda _text: self.groups_error.hide())

        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(settings.default_port)
        self.port_spin.setToolTip("Port used for hosts written without ':PORT'")

        self.timeout_spin = QDoubleSpinBox()
        self.timeout_spin.setRange(0.1, 600.0)
        self.timeout_spin.setDecimals(1)
        self.timeout_spin.setSuffix(" s")
        self.timeout_spin.setValue(settings.connect_timeout)

        self.stop_check = QCheckBox("Sto&p the run after a test that did not pass")
        self.stop_check.setChecked(settings.stop_on_failure)

        self.token_error = QLabel()
        self.token_error.setStyleSheet(f"color: {color(HostState.FAILED)};")
        self.token_error.setWordWrap(True)
        self.token_error.hide()
        self.token_edit.textChanged.connect(lambda _text: self.token_error.hide())
        self.ssh_user_edit = QLineEdit(settings.ssh_user)
        self.ssh_user_edit.setPlaceholderText("as ~/.ssh/config says, else your login name")
        self.ssh_key_edit = QLineEdit(settings.ssh_key_file)
        self.ssh_key_edit.setPlaceholderText("ssh-agent, ~/.ssh/config, then ~/.ssh/id_*")
        self.ssh_accept_check = QCheckBox(
            "Accept the key of a &new SSH host (a changed key is always refused)"
        )
        self.ssh_accept_check.setChecked(settings.ssh_accept_new)

        self.token_kind = QLabel()
        self.token_kind.setTextFormat(Qt.TextFormat.PlainText)  # paths, host names: as they are
        self.token_kind.setWordWrap(True)
        self.token_edit.textChanged.connect(lambda _text: self._show_token_kind())
        self._show_token_kind()
        count = len(self.hosts)
        self.issue_button = QPushButton(
            f"&Issue agent files for the config's {count} host{'s' if count != 1 else ''}…"
        )
        self.issue_button.setEnabled(bool(self.hosts))
        self.issue_button.setToolTip(
            "Write HOST.token for each host of the open config into a folder: each agent's "
            "own credential, derived from the controller's token (netjobs token issue)"
        )
        self.issue_button.clicked.connect(self._ask_issue)
        self.issue_result = QLabel()
        self.issue_result.setTextFormat(Qt.TextFormat.PlainText)
        self.issue_result.setWordWrap(True)
        self.issue_result.hide()

        form = QFormLayout(self)
        token_label = QLabel("&Token file:")
        token_label.setBuddy(self.token_edit)
        form.addRow(token_label, token_row)
        form.addRow("", self.token_error)
        form.addRow("", self.token_kind)
        form.addRow("", self.issue_button)
        form.addRow("", self.issue_result)
        groups_label = QLabel("&Groups file:")
        groups_label.setBuddy(self.groups_edit)
        form.addRow(groups_label, groups_row)
        form.addRow("", self.groups_error)
        port_label = QLabel("Default agent p&ort:")
        port_label.setBuddy(self.port_spin)
        form.addRow(port_label, self.port_spin)
        timeout_label = QLabel("Connect t&imeout:")
        timeout_label.setBuddy(self.timeout_spin)
        form.addRow(timeout_label, self.timeout_spin)
        form.addRow("", self.stop_check)
        for text, edit in (
            ("SSH &user:", self.ssh_user_edit),
            ("SSH &key file:", self.ssh_key_edit),
        ):
            label = QLabel(text)
            label.setBuddy(edit)
            form.addRow(label, edit)
        form.addRow("", self.ssh_accept_check)
        form.addRow("", QLabel("<small>For ssh://host targets.</small>"))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("&OK")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("&Cancel")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.buttons = buttons

    def _browse(self) -> None:
        start = self.token_edit.text() or str(default_token_path().parent)
        path, _ = QFileDialog.getOpenFileName(self, "Token file", start)
        if path:
            self.token_edit.setText(path)

    def _token_path(self) -> str | None:
        return self.token_edit.text().strip() or None

    def _show_token_kind(self) -> None:
        """Which kind of token the typed file (or the default sources) holds."""
        try:
            token = load_token(self._token_path())
        except TokenError as exc:
            text = f"No usable token: {exc}. Issuing agent files creates one."
        else:
            if token.host is not None:
                text = (
                    f"The agent credential of {token.host}: a controller cannot use it; "
                    "choose the controller's token."
                )
            else:
                text = (
                    f"The controller's token ({token.source}): agents hold a copy of it (a "
                    "shared token) or their own credential issued from it. Never sent over "
                    "the network."
                )
        self.token_kind.setText(text)

    def _ask_issue(self) -> None:
        start = self.settings.last_directory or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Folder for the agent files", start)
        if folder:
            self.issue_agent_files(Path(folder))

    def issue_agent_files(self, folder: Path) -> list[Path]:
        """Write the agent files of the config's hosts into FOLDER; says how it went."""
        try:
            found = credentials.controller_token(self._token_path())
            written = credentials.issue(found.token, self.hosts, folder)
        except credentials.CredentialError as exc:
            message, written = str(exc), []
        except OSError as exc:
            message, written = f"cannot write the agent files in {folder}: {exc}", []
        else:
            created = (
                f"Created the controller's token: {found.token.source}. " if found.created else ""
            )
            message = (
                f"{created}Wrote {len(written)} agent files in {folder} "
                f"({', '.join(p.name for p in written)}): give each agent its own, "
                "netjobs-agent --token-file HOST.token"
            )
            self._show_token_kind()
        self.issue_result.setText(message)
        self.issue_result.show()
        return written

    def _browse_groups(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Groups file", self.groups_edit.text())
        if path:
            self.groups_edit.setText(path)

    def apply(self) -> None:
        """Write the dialog's values to the settings."""
        self.settings.token_file = self.token_edit.text().strip()
        self.settings.groups_file = self.groups_edit.text().strip()
        self.settings.default_port = self.port_spin.value()
        self.settings.connect_timeout = self.timeout_spin.value()
        self.settings.stop_on_failure = self.stop_check.isChecked()
        self.settings.ssh_user = self.ssh_user_edit.text().strip()
        self.settings.ssh_key_file = self.ssh_key_edit.text().strip()
        self.settings.ssh_accept_new = self.ssh_accept_check.isChecked()
        self.settings.sync()

    def token_problem(self) -> str:
        """Why the token path typed cannot be used ("" if it can, or if left empty)."""
        typed = self.token_edit.text().strip()
        if not typed:
            return ""
        path = Path(typed).expanduser()
        if not path.exists():
            return f"{path} does not exist: choose the agents' token file."
        if not path.is_file():
            return f"{path} is not a file: choose the agents' token file."
        return ""

    def groups_problem(self) -> str:
        """Why the groups file typed cannot be used ("" if it can, or if left empty)."""
        typed = self.groups_edit.text().strip()
        if not typed:
            return ""
        try:
            load_groups(Path(typed).expanduser())
        except GroupsError as exc:
            return str(exc)
        return ""

    def accept(self) -> None:
        problem = self.token_problem()
        if problem:  # refused: the dialog stays open, saying why
            self.token_error.setText(problem)
            self.token_error.show()
            self.token_edit.setFocus()
            self.token_edit.selectAll()
            return
        problem = self.groups_problem()
        if problem:
            self.groups_error.setText(problem)
            self.groups_error.show()
            self.groups_edit.setFocus()
            return
        self.apply()
        super().accept()
