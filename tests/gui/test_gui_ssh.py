"""SSH targets in the GUI: the host list takes them, Settings gives user and key."""

from __future__ import annotations

from pathlib import Path

from netjobs_core.wire.address import Address
from netjobs_gui.settings import Settings, SettingsDialog


def test_ssh_user_and_key_are_settings(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert Settings().ssh_options().username is None  # ~/.ssh/config decides by default
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.ssh_user_edit.setText(" bench ")
    dialog.ssh_key_edit.setText(str(tmp_path / "id_ed25519"))
    dialog.ssh_accept_check.setChecked(True)
    dialog.accept()
    options = Settings().ssh_options()
    assert options.username == "bench"
    assert options.client_keys == [str(tmp_path / "id_ed25519")]
    assert options.accept_new is True


def test_the_host_list_takes_ssh_targets(qtbot, settings, answers) -> None:  # type: ignore[no-untyped-def]
    from netjobs_gui.main_window import MainWindow

    window = MainWindow(settings)
    qtbot.addWidget(window)
    assert window.hosts.add_target("ssh://bench@node01")
    assert window.hosts.add_target("ssh://[fd00::5]:2222")
    assert [row.address for row in window.hosts.model.rows] == [
        Address("node01", 0, "ssh", "bench"),
        Address("fd00::5", 2222, "ssh"),
    ]
    assert [row.target for row in window.hosts.model.rows] == [
        "ssh://bench@node01",
        "ssh://[fd00::5]:2222",
    ]
