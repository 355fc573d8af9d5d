"""The main window: binds the editor, hosts, run and results pages to the controller."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QTabWidget,
    QToolBar,
    QWidget,
)

from netjobs_core import __version__
from netjobs_core.check import HostCheck
from netjobs_core.config import Plan
from netjobs_core.demo import demo_config
from netjobs_core.local_agents import AgentStartError
from netjobs_core.nodesets import NO_GROUPS, GroupsError
from netjobs_core.rerun import failed_hosts_plan
from netjobs_core.results import HostState, RunResult, TestResult, TestStatus
from netjobs_core.results_json import ResultsFileError, load_json
from netjobs_core.run_flags import make_run_folder, option_values, run_values
from netjobs_core.run_options import RunOptions
from netjobs_core.session import UsageError, plan_addresses, save_results
from netjobs_core.text import plan_summary, run_summary, size
from netjobs_core.wire.tokens import Token, default_token_path
from netjobs_gui import prompts
from netjobs_gui.columns import SessionEntry
from netjobs_gui.compare_view import CompareDialog
from netjobs_gui.controller import Controller
from netjobs_gui.demo_agents import DemoAgents
from netjobs_gui.editor import EditorPanel
from netjobs_gui.hosts import HostsPanel
from netjobs_gui.layout_memory import restore_layout, save_layout
from netjobs_gui.notify import Notifier
from netjobs_gui.options_form import OptionsError, RunOptionsDialog, changed_words, stored_values
from netjobs_gui.results_view import ResultsView, default_json_path
from netjobs_gui.run_view import RunView, TextDialog
from netjobs_gui.settings import Settings, SettingsDialog

CLOSE_GRACE_MS = 15_000  # after Stop on close: how long the agents get to confirm the kills
# A visible focus mark on every pane: where Tab and the shortcuts have put the keyboard.
FOCUS_STYLE = """
QTableView:focus, QPlainTextEdit:focus, QAbstractScrollArea:focus { border: 2px solid #2563eb; }
"""
NO_TOKEN = (
    "NetJobs needs the agents' token to reach them: {reason}.\n\n"
    "Choose the agents' token file in Settings (File ▸ Settings…, Ctrl+,), or try "
    "NetJobs on this machine first with Run ▸ Start Local Demo Agents."
)
NONE_FOUND = (
    "no token file is chosen in Settings, NETJOBS_TOKEN is not set and there is none at {path}"
)
CONFIG_FILTER = "NetJobs configs (*.netjobs *.txt *.conf *.cfg);;All files (*)"
RESULTS_FILTER = "NetJobs results (*.json);;All files (*)"


class MainWindow(QMainWindow):
    CONFIG_TAB, HOSTS_TAB, RUN_TAB, RESULTS_TAB = range(4)

    def __init__(self, settings: Settings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings if settings is not None else Settings()
        self.controller = Controller(self)
        self.errors: list[tuple[str, str]] = []  # every error shown (tests read it)
        self._closing_after_run = False
        self._close_timer: QTimer | None = None
        self._run_source = ""
        self._run_began = time.monotonic()
        self.notifier = Notifier(self)  # a long run's end, when the window is not in front
        self.dialogs: list[QWidget] = []  # non-modal dialogs kept alive
        self.demo: DemoAgents | None = None  # local demo agents this window started

        self.editor = EditorPanel()
        self.hosts = HostsPanel()
        self.run_view = RunView()
        self.results = ResultsView()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.editor, "Config")
        self.tabs.addTab(self.hosts, "Hosts")
        self.tabs.addTab(self.run_view, "Run")
        self.tabs.addTab(self.results, "Results")
        self.setCentralWidget(self.tabs)
        self.setAcceptDrops(True)
        self.setStyleSheet(FOCUS_STYLE)

        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self.state_label = QLabel("Idle")
        self.statusBar().addPermanentWidget(self.state_label)

        # Bindings
        self.editor.path_changed.connect(self._update_title)
        self.editor.modified_changed.connect(self._update_title)
        self.editor.plan_changed.connect(self._plan_changed)
        self.editor.validated.connect(self._validated)
        self.editor.file_dropped.connect(self.open_path)
        self.hosts.check_requested.connect(self.check_hosts)
        self.hosts.manual_hosts_changed.connect(self._manual_hosts_changed)
        self.hosts.error.connect(self.show_error)
        self.run_view.stop_requested.connect(self.stop)
        self.results.save_requested.connect(self._save_log_dialog)
        self.results.open_requested.connect(self.open_results_dialog)
        self.results.history.open_requested.connect(self.open_results)
        self.controller.error.connect(self.show_error)
        self.controller.token_missing.connect(self._token_missing)
        self.controller.check_result.connect(self.hosts.model.set_check)
        self.controller.busy_changed.connect(self._busy_changed)
        self.controller.check_started.connect(self.hosts.model.set_checking)
        self.controller.check_finished.connect(self._check_finished)
        self.controller.test_started.connect(self._test_started)
        self.controller.progress.connect(self._progress)
        self.controller.test_finished.connect(self._test_finished)
        self.controller.run_finished.connect(self._run_finished)

        self.hosts.set_manual_targets(self.settings.manual_hosts, self.settings.default_port)
        self.editor.default_port = self.settings.default_port
        self._load_groups()
        self.editor.new_document("")
        self._update_recent_menu()
        self._busy_changed(False)
        self.resize(1280, 800)
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        restore_layout(self, self.settings.store)  # splitters and page, as they were left

    # ------------------------------------------------------------------ actions and menus
    def _action(
        self,
        label: str,
        slot: Callable[[], object],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        tip: str = "",
    ) -> QAction:
        action = QAction(label, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _make_actions(self) -> None:
        keys = QKeySequence.StandardKey
        self.new_action = self._action(
            "&New", self.new_document, keys.New, "New config from a template"
        )
        self.open_action = self._action("&Open…", self.open_dialog, keys.Open, "Open a config file")
        self.save_action = self._action("&Save", self.save, keys.Save, "Save the config")
        self.save_as_action = self._action("Save &As…", self.save_as, keys.SaveAs)
        self.open_results_action = self._action(
            "Open &Results…",
            self.open_results_dialog,
            "Ctrl+Shift+O",
            "Show a saved JSON results file",
        )
        self.save_log_action = self._action(
            "Save &Log…",
            self.save_log,
            "Ctrl+L",
            "Write the selected run's .log files and JSON document",
        )
        self.settings_action = self._action("Se&ttings…", self.edit_settings)
        # Preferences is no key on Linux desktops: Ctrl+, there (and everywhere) too.
        self.settings_action.setShortcuts(
            list(dict.fromkeys([QKeySequence(keys.Preferences), QKeySequence("Ctrl+,")]))
        )
        self.quit_action = self._action("&Quit", self.close, keys.Quit)
        self.check_action = self._action(
            "&Check Hosts", self.check_hosts, "Ctrl+K", "Reach, authenticate and measure every host"
        )
        self.run_action = self._action(
            "&Run All", self.run_all, "F5", "Run every test of the config"
        )
        self.run_selected_action = self._action(
            "Run &Selected Test",
            self.run_selected,
            "Shift+F5",
            "Run the test selected on the Run page",
        )
        # No window-wide Esc: Esc typed in the editor must never abort a run. Esc stops
        # from the Run page's tables, timeline and output only (RunView.stop_requested).
        self.stop_action = self._action(
            "S&top",
            self.stop,
            None,
            "Abort the run: the agents kill their jobs (Esc on the Run page)",
        )
        self.demo_action = self._action(
            "Start Local &Demo Agents",
            self.start_demo_agents,
            None,
            "Start three agents on this machine with a fresh token and open the demo config",
        )
        self.run_options_action = self._action(
            "Run &Options…",
            self.edit_run_options,
            "Ctrl+Shift+R",
            "Repeat, start mode, results folder and the other flags of a run",
        )
        self.rerun_failed_action = self._action(
            "Re-run &Failed Hosts",
            self.rerun_failed,
            "Ctrl+Shift+F5",
            "Run again, on the hosts that failed in the last run only, the tests they failed",
        )
        self.compare_action = self._action(
            "&Compare Results…",
            self.compare_results,
            "Ctrl+Shift+C",
            "Two results of a test side by side: spread, window, per-host differences",
        )
        self.dry_run_action = self._action(
            "&Dry Run", self.dry_run, "Ctrl+D", "Show what a run would do, without connecting"
        )
        self.about_action = self._action("&About NetJobs", self.about)
        self.tab_actions = [
            self._action(name, functools.partial(self.show_page, i), f"Ctrl+{i + 1}")
            for i, name in enumerate(("&Config", "&Hosts", "&Run", "R&esults"))
        ]
        self.find_action = self._action(
            "&Find…", self.find_text, keys.Find, "Find text in the config or in the selected output"
        )
        self.filter_action = self._action(
            "F&ilter…", self.focus_filter, "Ctrl+Shift+F", "Filter the table of this page"
        )
        self.next_pane_action = self._action(
            "&Next Pane", lambda: self.cycle_pane(1), "F6", "Move the keyboard to the next pane"
        )
        self.previous_pane_action = self._action(
            "&Previous Pane", lambda: self.cycle_pane(-1), "Shift+F6"
        )

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.new_action, self.open_action])
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addActions([self.save_action, self.save_as_action])
        file_menu.addSeparator()
        file_menu.addActions([self.open_results_action, self.save_log_action])
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        edit_menu = bar.addMenu("&Edit")
        editor = self.editor.editor
        for text, slot, key in (
            ("&Undo", editor.undo, QKeySequence.StandardKey.Undo),
            ("&Redo", editor.redo, QKeySequence.StandardKey.Redo),
            ("Cu&t", editor.cut, QKeySequence.StandardKey.Cut),
            ("&Copy", editor.copy, QKeySequence.StandardKey.Copy),
            ("&Paste", editor.paste, QKeySequence.StandardKey.Paste),
        ):
            action = self._action(text, slot)
            action.setShortcut(key)
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            edit_menu.addAction(action)
        edit_menu.addSeparator()
        edit_menu.addActions([self.find_action, self.filter_action])
        edit_menu.addAction(self._action("Go to &Error", self._go_to_error, "Ctrl+E"))

        run_menu = bar.addMenu("&Run")
        run_menu.addActions([self.check_action])
        run_menu.addSeparator()
        run_menu.addActions([self.run_action, self.run_selected_action, self.stop_action])
        run_menu.addActions([self.rerun_failed_action, self.compare_action])
        run_menu.addSeparator()
        run_menu.addActions([self.run_options_action, self.dry_run_action])
        run_menu.addAction(self.demo_action)

        view_menu = bar.addMenu("&View")
        view_menu.addActions(self.tab_actions)
        view_menu.addSeparator()
        view_menu.addActions([self.next_pane_action, self.previous_pane_action])

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _make_toolbar(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(16, 16))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addActions([self.new_action, self.open_action, self.save_action])
        toolbar.addSeparator()
        toolbar.addActions([self.check_action, self.run_action, self.run_selected_action])
        toolbar.addAction(self.stop_action)
        toolbar.addSeparator()
        toolbar.addActions([self.dry_run_action, self.save_log_action])
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
        self.toolbar = toolbar

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files
        for number, path in enumerate(recent, start=1):
            action = self.recent_menu.addAction(f"&{number} {path}")
            action.triggered.connect(lambda _checked=False, p=path: self.open_path(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear List", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def _clear_recent(self) -> None:
        self.settings.clear_recent_files()
        self._update_recent_menu()

    # ------------------------------------------------------------------ messages
    def show_error(self, title: str, text: str) -> None:
        """Errors go to the status bar and a (non-modal) message box."""
        self.errors.append((title, text))
        self.statusBar().showMessage(f"{title}: {text}", 15_000)
        prompts.show_error(self, title, text)

    def show_status(self, text: str, timeout_ms: int = 8000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def _token_missing(self, reason: str) -> None:
        """The GUI's words for a missing token: where to set it, with a button to go there."""
        if reason.startswith("no token: "):  # the CLI's words name its options: not here
            reason = NONE_FOUND.format(path=default_token_path())
        message = NO_TOKEN.format(reason=reason)
        self.errors.append(("No token", message))
        self.statusBar().showMessage("No token: choose the agents' token file in Settings", 15_000)
        prompts.show_no_token(self, message, self.edit_settings)

    def _update_title(self, *_args: object) -> None:
        if self.editor.is_empty:  # the editor says "No config open": so does the title
            self.setWindowTitle("NetJobs")
            self.setWindowModified(False)
            return
        name = self.editor.display_name
        self.setWindowTitle(f"{name}[*] — NetJobs")
        self.setWindowModified(self.editor.modified)

    # ------------------------------------------------------------------ keyboard
    def panes(self) -> list[QWidget]:
        """The current page's panes, in the order F6 visits them."""
        page = self.tabs.currentIndex()
        if page == self.CONFIG_TAB:
            return [self.editor.editor]
        if page == self.HOSTS_TAB:
            return [self.hosts.table, self.hosts.filter.text, self.hosts.add_edit]
        detail = self.run_view.detail if page == self.RUN_TAB else self.results.detail
        first = self.run_view.tests if page == self.RUN_TAB else self.results.table
        return [first, detail.filter.text, detail.table, detail.output.stdout.view, detail.timeline]

    def focus_pane(self, pane: QWidget) -> None:
        for detail in (self.run_view.detail, self.results.detail):
            if pane is detail.timeline:
                detail.tabs.setCurrentIndex(detail.TIMELINE_TAB)
            elif pane in (detail.output.stdout.view, detail.output.stderr.view):
                detail.tabs.setCurrentIndex(detail.OUTPUT_TAB)
        pane.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def cycle_pane(self, step: int) -> None:
        panes = self.panes()
        focus = QApplication.focusWidget()
        at = next(
            (
                i
                for i, p in enumerate(panes)
                if focus is not None and (p is focus or p.isAncestorOf(focus))
            ),
            -1,
        )
        self.focus_pane(panes[(at + step) % len(panes)] if at >= 0 else panes[0])

    def show_page(self, index: int) -> None:
        """Ctrl+1..4: the page, with the keyboard in its first pane."""
        self.tabs.setCurrentIndex(index)
        self.focus_pane(self.panes()[0])

    def find_text(self) -> None:
        """Ctrl+F: find in the config editor, or in the output of the page's selected command."""
        page = self.tabs.currentIndex()
        if page == self.CONFIG_TAB:
            self.editor.open_find()
        elif page in (self.RUN_TAB, self.RESULTS_TAB):
            detail = self.run_view.detail if page == self.RUN_TAB else self.results.detail
            detail.tabs.setCurrentIndex(detail.OUTPUT_TAB)
            detail.output.open_find()

    def focus_filter(self) -> None:
        page = self.tabs.currentIndex()
        if page == self.HOSTS_TAB:
            self.hosts.filter.text.setFocus(Qt.FocusReason.ShortcutFocusReason)
        elif page in (self.RUN_TAB, self.RESULTS_TAB):
            detail = self.run_view.detail if page == self.RUN_TAB else self.results.detail
            detail.filter.text.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _validated(self, error: object) -> None:
        if error is not None:
            self.show_status(f"Config error: {error}", 0)
        else:
            self.statusBar().clearMessage()

    def _go_to_error(self) -> None:
        self.tabs.setCurrentIndex(self.CONFIG_TAB)
        self.editor.go_to_error()

    # ------------------------------------------------------------------ files
    def new_document(self) -> None:
        if self.editor.maybe_save():
            self.editor.new_document()
            self.tabs.setCurrentIndex(self.CONFIG_TAB)

    def open_dialog(self) -> None:
        if not self.editor.maybe_save():
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Open config", self.settings.last_directory, CONFIG_FILTER
        )
        if path:
            self.open_path(path, ask=False)

    def open_path(self, path: str, ask: bool = True) -> bool:
        if ask and not self.editor.maybe_save():
            return False
        try:
            self.editor.open_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.show_error("Cannot open the config", f"{path}: {reason}")
            return False
        self.settings.add_recent_file(self.editor.path)
        self.settings.last_directory = os.path.dirname(self.editor.path)
        self._update_recent_menu()
        self.tabs.setCurrentIndex(self.CONFIG_TAB)
        if self.editor.error is None:
            self.show_status(f"Opened {self.editor.path}")
        return True

    def save(self) -> bool:
        saved = self.editor.save() if self.editor.path else self.save_as()
        if saved:
            self._after_save()
        return saved

    def save_as(self) -> bool:
        saved = self.editor.save_as(self.settings.last_directory)
        if saved:
            self._after_save()
        return saved

    def _after_save(self) -> None:
        self.settings.add_recent_file(self.editor.path)
        self.settings.last_directory = os.path.dirname(self.editor.path)
        self._update_recent_menu()
        self.show_status(f"Saved {self.editor.path}")

    # drag and drop anywhere in the window
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                event.acceptProposedAction()
                path = url.toLocalFile()
                if path.lower().endswith(".json"):
                    self.open_results(path)
                else:
                    self.open_path(path)
                return

    # ------------------------------------------------------------------ plan and hosts
    def current_plan(self) -> Plan | None:
        """The editor's plan (with the default-port setting applied), or None."""
        return self.editor.plan

    def _plan_changed(self, plan: Plan | None) -> None:
        if plan is not None:
            self.hosts.set_config_hosts(plan_addresses(plan))
        elif self.editor.is_empty:
            self.hosts.set_config_hosts([])
        self.run_view.set_plan(plan)
        self._busy_changed(self.controller.busy)

    def _manual_hosts_changed(self, targets: list[str]) -> None:
        self.settings.manual_hosts = targets

    def check_hosts(self) -> None:
        self.tabs.setCurrentIndex(self.HOSTS_TAB)
        self.controller.check_hosts(
            self.hosts.model.addresses(),
            self.settings.token_file,
            self.settings.connect_timeout,
            self.settings.ssh_options(),
        )

    def _check_finished(self, checks: list[HostCheck]) -> None:
        self.hosts.model.set_checks(checks)  # each came already; a host removed meanwhile not
        self.hosts.model.clear_checking()
        if checks:
            self.show_status(f"Host check done: {self.hosts.model.summary()}")

    # ------------------------------------------------------------------ runs
    def run_all(self) -> None:
        self.start_run(None)

    def run_selected(self) -> None:
        label = self.run_view.selected_label
        if label is None:
            self.show_error("Run selected test", "Select a test on the Run page first.")
            return
        self.start_run([label])

    def rerun_failed(self) -> bool:
        """Run again only the failed hosts of the last run, in the tests they failed."""
        run, plan = self.run_view.run, self.current_plan()
        again = failed_hosts_plan(plan, run) if run is not None and plan is not None else None
        if again is None:
            self.show_status("No host failed in the last run of this config: nothing to re-run")
            return False
        return self.start_run(None, again)

    def compare_results(self) -> None:
        entries = self.results.model.entries
        if len(entries) < 2:
            self.show_error("Compare results", "Run a test twice, or open results, first.")
            return
        dialog = CompareDialog(entries, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialogs.append(dialog)
        dialog.finished.connect(lambda _r: self.dialogs.remove(dialog))
        dialog.show()

    def start_run(self, labels: Sequence[str] | None, plan: Plan | None = None) -> bool:
        """Run `labels` of the editor's config (None: every test), or `plan`."""
        if self.controller.running:
            return False
        self.editor.validate_now()
        plan = plan or self.current_plan()
        if plan is None:
            error = self.editor.error
            self.show_error("Cannot run", str(error) if error else "There is no config to run.")
            self._go_to_error()
            return False
        addresses = plan_addresses(plan)
        demo = self.demo
        if demo is not None and set(addresses) <= demo.addresses:
            token: Token | None = demo.token  # the demo agents' own, fresh token
        else:
            token = self.controller.load_token(self.settings.token_file, addresses)
        if token is None:
            return False
        try:  # the Run Options and Settings, as the command line's flags
            values = stored_values(self.settings.store)
            folder = make_run_folder(values["results"])
        except OptionsError as exc:
            self.show_error("Cannot run", str(exc))
            return False
        except UsageError as exc:
            self.show_error("Cannot start the run", f"{exc}. Nothing was run.")
            return False
        options = RunOptions(token=token, run_folder=folder, **option_values(values))
        ssh = self.settings.ssh_options()
        if self.controller.start_run(plan, options, labels, ssh, run_values(values)) is None:
            return False
        assert self.controller.result is not None
        self._run_source = "run " + time.strftime("%H:%M:%S")
        self._run_began = time.monotonic()
        self.run_view.begin_run(plan, labels, self.controller.result)
        self.tabs.setCurrentIndex(self.RUN_TAB)
        changed = changed_words(values)
        self.show_status("Run started" + (f" ({', '.join(changed)})" if changed else ""), 8000)
        return True

    def stop(self) -> None:
        """Stop the run: after a question once any command has started (Esc, the toolbar
        or the menu alike); at once while nothing has started yet."""
        run = self.controller.result
        if run is None:
            return
        started = any(  # the start sent to a host, or a command that ran
            host.state is HostState.RUNNING or any(c.started_at is not None for c in host.commands)
            for test in run.tests
            for host in test.hosts
        )
        if started and not prompts.ask_stop_now(self, self.controller.running_s):
            return
        if self.controller.stop("stopped by user"):
            self.show_status("Stopping: the agents are killing their jobs…", 0)
            self.run_view.status.setText("Stopping: the agents are killing their jobs…")

    def _test_started(self, test: TestResult) -> None:
        self.run_view.on_test_started(test)

    def _progress(self) -> None:
        self.run_view.refresh()
        if self.controller.running:
            self.state_label.setText(f"Running · {size(self.controller.output_bytes)} output")

    def _test_finished(self, test: TestResult) -> None:
        run = self.controller.result
        if run is not None:
            self.results.add_run(run, self._run_source, select=False)
        self.run_view.refresh()

    def _run_finished(self, run: RunResult) -> None:
        self.results.history.reload()  # the controller recorded it
        summary = f"Run finished: {run_summary(run)}."
        self.run_view.end_run(run, summary)
        if run.tests:
            self.results.add_run(run, self._run_source, select=False)
            entries = self.results.model.entries
            # The last test that ran, not one listed as not run after a stop.
            ran = [
                row
                for row, entry in enumerate(entries)
                if entry.run is run and entry.test.status is not TestStatus.PENDING
            ]
            self.results.select_row(ran[-1] if ran else len(entries) - 1)
        self.show_status(summary, 15_000)
        self.notifier.run_ended("NetJobs run finished", summary, time.monotonic() - self._run_began)
        if self._closing_after_run:
            QTimer.singleShot(0, self.close)

    def _busy_changed(self, _busy: bool) -> None:
        running = self.controller.running
        has_plan = self.editor.plan is not None
        self.run_action.setEnabled(not running and has_plan)
        self.run_selected_action.setEnabled(not running and has_plan)
        self.stop_action.setEnabled(running)
        self.check_action.setEnabled(not self.controller.checking)
        self.dry_run_action.setEnabled(has_plan)
        self.hosts.set_busy(self.controller.checking)
        if running:
            self.state_label.setText("Running")
        elif self.controller.checking:
            self.state_label.setText("Checking hosts…")
        else:
            self.state_label.setText("Idle")

    def dry_run(self) -> None:
        self.editor.validate_now()
        plan = self.current_plan()
        if plan is None:
            self.show_error(
                "Dry run", str(self.editor.error) if self.editor.error else "No config."
            )
            return
        dialog = TextDialog("Dry run — what a run would do", "\n".join(plan_summary(plan)), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialogs.append(dialog)
        dialog.finished.connect(lambda _r: self.dialogs.remove(dialog))
        dialog.show()

    # ------------------------------------------------------------------ results
    def open_results_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open results", self.settings.last_directory, RESULTS_FILTER
        )
        if path:
            self.open_results(path)

    def open_results(self, path: str) -> RunResult | None:
        try:
            run = load_json(path)
        except ResultsFileError as exc:
            self.show_error("Cannot open the results", str(exc))
            return None
        origin = os.path.realpath(path)
        added = self.results.add_run(run, Path(path).name, origin=origin)
        self.tabs.setCurrentIndex(self.RESULTS_TAB)
        self.results.sources.setCurrentIndex(self.results.SESSION_TAB)
        if added:
            self.show_status(f"Opened results {path}")
        else:
            self.show_status(f"{path} is listed already: selected it")
        return run

    def save_log(self) -> None:
        entry = self.results.current_entry
        if entry is None:
            self.show_error("Save log", "No results yet: run a test or open a results file.")
            return
        self._save_log_dialog(entry)

    def _save_log_dialog(self, entry: SessionEntry) -> None:
        start = default_json_path(entry.run, self.settings.last_directory)
        path, _ = QFileDialog.getSaveFileName(
            self, "Save results (JSON) and logs", start, RESULTS_FILTER
        )
        if path:
            self.save_logs(entry.run, path)

    def save_logs(self, run: RunResult, json_path: str) -> list[Path]:
        try:
            paths = save_results(run, json_path)
        except OSError as exc:
            self.show_error(
                "Cannot save the log", f"{exc.filename or json_path}: {exc.strerror or exc}"
            )
            return []
        self.results.mark_saved(run, paths)
        self.settings.last_directory = os.fspath(Path(json_path).parent)
        names = ", ".join(p.name for p in paths)
        self.show_status(f"Saved {len(paths)} files in {Path(json_path).parent}: {names}", 30_000)
        return paths

    # ------------------------------------------------------------------ demo agents
    def start_demo_agents(self) -> bool:
        """Three agents on 127.0.0.1 with a fresh token (as `netjobs demo`), and the demo
        config in the editor: F5 runs it. They stop with the window."""
        if self.demo is not None:
            self.show_status("The demo agents are running already")
        else:
            try:
                self.demo = DemoAgents.start()
            except (AgentStartError, UsageError, OSError) as exc:
                self.show_error("Cannot start the demo agents", str(exc))
                return False
        if not self.open_path(os.fspath(demo_config())):
            return False
        ports = ", ".join(str(a.port) for a in sorted(self.demo.addresses, key=str))
        self.show_status(f"Demo agents listening on 127.0.0.1 ports {ports}: F5 runs the demo", 0)
        return True

    def stop_demo_agents(self) -> None:
        if self.demo is not None:
            self.demo.stop()
            self.demo = None

    # ------------------------------------------------------------------ settings, about
    def edit_settings(self) -> None:
        plan = self.current_plan()
        addresses = plan_addresses(plan) if plan is not None else []
        hosts = dict.fromkeys(a.host for a in addresses if not a.over_ssh)
        dialog = SettingsDialog(self.settings, self, list(hosts))
        if dialog.exec():
            self.hosts.set_manual_targets(self.settings.manual_hosts, self.settings.default_port)
            self.editor.default_port = self.settings.default_port
            self._load_groups()
            self.editor.validate_now()
            self.show_status("Settings saved")

    def edit_run_options(self) -> None:
        dialog = RunOptionsDialog(self.settings.store, self)
        if dialog.exec():
            self.show_status("Run options saved")

    def _load_groups(self) -> None:
        """The groups file of the settings, for the editor's validation and the runs."""
        try:
            self.editor.groups = self.settings.groups()
        except GroupsError as exc:
            self.editor.groups = NO_GROUPS
            self.show_error("Cannot use the groups file", f"{exc} (set another in Settings)")

    def about(self) -> None:
        QMessageBox.about(
            self,
            "About NetJobs",
            f"<b>NetJobs {__version__}</b><p>Starts the same benchmark command on many "
            "machines at the same measured instant.</p>",
        )

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:
        if self.controller.running:
            event.ignore()
            if self._closing_after_run:
                return  # already stopping; the window closes when the run has ended
            if not prompts.ask_stop_run(self):
                return
            if not self.editor.maybe_save():
                return
            self._closing_after_run = True
            self.controller.stop("the controller window was closed")
            self.run_view.status.setText("Stopping the run before closing…")
            self.show_status("Stopping the run before closing…", 0)
            self._close_timer = QTimer(self)
            self._close_timer.setSingleShot(True)
            self._close_timer.timeout.connect(self.controller.cancel_all)
            self._close_timer.start(CLOSE_GRACE_MS)
            return
        if not self._closing_after_run and not self.editor.maybe_save():
            event.ignore()
            return
        if self._close_timer is not None:
            self._close_timer.stop()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        save_layout(self, self.settings.store)
        self.settings.sync()
        self.controller.cancel_all()  # a host check still in flight
        self.stop_demo_agents()
        for dialog in list(self.dialogs):
            dialog.close()
        event.accept()
