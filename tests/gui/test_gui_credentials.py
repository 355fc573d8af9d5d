"""Settings: the kind of token in use, and agent files for the open config's hosts
(issue 22, point 7)."""

from __future__ import annotations

from pathlib import Path

from netjobs_core.wire import tokens
from netjobs_gui.settings import SettingsDialog


def test_settings_say_the_kind_and_issue_agent_files(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(settings, hosts=["127.0.0.2", "node07"])
    qtbot.addWidget(dialog)
    controller = tmp_path / "controller.token"
    dialog.token_edit.setText(str(controller))
    assert "No usable token" in dialog.token_kind.text()
    assert dialog.issue_button.isEnabled() and "2 hosts" in dialog.issue_button.text()

    written = dialog.issue_agent_files(tmp_path / "agents")
    assert [p.name for p in written] == ["127.0.0.2.token", "node07.token"]
    assert [tokens.load_token(p).host for p in written] == ["127.0.0.2", "node07"]
    assert "Created the controller's token" in dialog.issue_result.text()
    assert "Wrote 2 agent files" in dialog.issue_result.text()
    assert "The controller's token" in dialog.token_kind.text()  # it exists now

    dialog.token_edit.setText(str(written[1]))
    assert "The agent credential of node07: a controller cannot use it" in dialog.token_kind.text()
    assert dialog.issue_agent_files(tmp_path / "more") == []
    assert "not the controller's token" in dialog.issue_result.text()


def test_settings_get_the_open_configs_tcp_hosts(qtbot, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from netjobs_gui import main_window

    seen: list[list[str]] = []

    class Recording(SettingsDialog):
        def exec(self) -> int:
            seen.append(self.hosts)
            return 0

    monkeypatch.setattr(main_window, "SettingsDialog", Recording)
    window = main_window.MainWindow(settings)
    qtbot.addWidget(window)
    window.editor.editor.setPlainText(
        't:\nnode[01-02]: "date"\nnode01:17000: "date"\nssh://db1: "date"\nend\n'
    )
    window.editor.validate_now()
    window.edit_settings()
    assert seen == [["node01", "node02"]]
