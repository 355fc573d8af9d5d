"""build_scripts/ and the deployment files, checked without building anything.

The real PyInstaller builds and their smoke test are too slow for the suite: .ci/run
runs `python build_scripts/build.py` and `python build_scripts/smoke.py` after it.
"""

from __future__ import annotations

import ast
import configparser
import copy
import keyword
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from script_modules import BUILD_SCRIPTS, load_script

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    return load_script(BUILD_SCRIPTS / f"{name}.py", f"netjobs_build_{name}")


fs = _load("freeze_settings")
build = _load("build")
smoke = _load("smoke")


def _is_module_name(name: str) -> bool:
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in name.split("."))


# -- what goes into the executables ------------------------------------------------------


def test_excluded_module_lists_are_well_formed():
    for names in (
        fs.STDLIB_EXCLUDES,
        fs.AGENT_FORBIDDEN,
        fs.CLI_FORBIDDEN,
        fs.QT_MODULES_EXCLUDED,
        fs.gui_excludes(),
        *(t.excludes for t in fs.TARGETS.values() if t.excludes),
    ):
        assert names, "an empty list"
        assert len(set(names)) == len(names), f"duplicates in {names}"
        for name in names:
            assert _is_module_name(name), name
    assert all(name.startswith("Qt") for name in fs.QT_MODULES_EXCLUDED)
    assert not set(fs.QT_MODULES_EXCLUDED) & set(fs.QT_MODULES_USED)
    assert {"rich", "platformdirs", "PySide6"} <= set(fs.AGENT_FORBIDDEN)
    assert "rich" not in fs.CLI_FORBIDDEN  # the CLI's tables need it


def test_the_gui_uses_no_qt_module_the_spec_leaves_out():
    used = set()
    for path in (REPO / "netjobs_gui").rglob("*.py"):
        used |= set(re.findall(r"\bPySide6\.(Qt\w+)", path.read_text(encoding="utf-8")))
        used |= {
            m
            for line in re.findall(
                r"from PySide6 import ([^\n(]+)", path.read_text(encoding="utf-8")
            )
            for m in re.findall(r"Qt\w+", line)
        }
    assert used, "netjobs_gui imports no PySide6 module?"
    missing = used - set(fs.QT_MODULES_USED)
    assert not missing, (
        f"netjobs_gui uses {sorted(missing)}: add them to QT_MODULES_USED "
        "and remove them from QT_MODULES_EXCLUDED in build_scripts/"
        "freeze_settings.py"
    )


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", False),
        ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", True),
        ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", False),
        ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", True),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
        ("PySide6/Qt/plugins/tls/libqopensslbackend.so", False),
        ("PySide6/Qt/plugins/sqldrivers/libqsqlite.so", False),
        ("PySide6/Qt/translations/qtbase_de.qm", False),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
        ("PySide6/Qt/lib/libQt6Core.so.6", True),
        ("PySide6/Qt/lib/libQt6XcbQpa.so.6", True),
        ("PySide6/Qt/lib/libQt6Quick.so.6", False),
        ("PySide6/Qt/lib/libQt6Pdf.so.6", False),
        ("PySide6/QtWidgets.abi3.so", True),
        ("libpython3.11.so.1.0", True),
        ("resources/examples/demo.cfg", True),
        # Windows wheel layout, with either separator
        ("PySide6\\plugins\\platforms\\qwindows.dll", True),
        ("PySide6/plugins/platforms/qdirect2d.dll", False),
        ("PySide6/plugins/styles/qmodernwindowsstyle.dll", True),
        ("PySide6/plugins/imageformats/qico.dll", True),
        ("PySide6/translations/qt_fr.qm", False),
        ("PySide6/Qt6Gui.dll", True),
        ("PySide6/Qt6Qml.dll", False),
        ("PySide6/opengl32sw.dll", False),
        ("python311.dll", True),
    ],
)
def test_qt_filter(dest, kept):
    assert fs.keep_qt_file(dest) is kept


def test_qt_lib_module_names():
    assert fs.qt_lib_module("PySide6/Qt/lib/libQt6Widgets.so.6") == "Widgets"
    assert fs.qt_lib_module("PySide6/Qt6Core.dll") == "Core"
    assert fs.qt_lib_module("PySide6/Qt/lib/libicudata.so.73") is None
    assert fs.QT_LIBS_DROPPED.isdisjoint({"Core", "Gui", "Widgets", "DBus", "XcbQpa", "Svg"})


def _entry(dest, typecode="BINARY"):
    return (dest, "/src/" + dest, typecode)


def test_prune_restores_what_a_kept_binary_needs_and_drops_orphans():
    widgets = _entry("PySide6/QtWidgets.abi3.so", "EXTENSION")
    core = _entry("PySide6/Qt/lib/libQt6Core.so.6")
    network = _entry("PySide6/Qt/lib/libQt6Network.so.6")  # dropped by name...
    xcb = _entry("PySide6/Qt/plugins/platforms/libqxcb.so")
    gtk_theme = _entry("PySide6/Qt/plugins/platformthemes/libqgtk3.so")
    gtk = _entry("libgtk-3.so.0")  # only the dropped GTK theme needs it
    glib = _entry("libglib-2.0.so.0")  # needed by the GTK stack and by Qt Core
    unrelated = _entry("libffi.so.8")  # collected for some other reason: stays
    graph = {
        widgets[0]: ["libQt6Core.so.6", "libQt6Network.so.6"],  # ...but still needed
        core[0]: ["libglib-2.0.so.0", "libc.so.6"],
        network[0]: ["libQt6Core.so.6"],
        xcb[0]: ["libQt6Core.so.6"],
        gtk_theme[0]: ["libgtk-3.so.0", "libQt6Core.so.6"],
        gtk[0]: ["libglib-2.0.so.0"],
        glib[0]: [],
        unrelated[0]: [],
    }
    kept, dropped = fs.split_toc([widgets, core, network, xcb, gtk_theme, gtk, glib, unrelated])
    assert network in dropped and gtk_theme in dropped

    kept, dropped = fs.prune_binaries(kept, dropped, lambda entry: graph[entry[0]])

    assert {e[0] for e in kept} == {widgets[0], core[0], network[0], xcb[0], glib[0], unrelated[0]}
    assert {e[0] for e in dropped} == {gtk_theme[0], gtk[0]}


def test_prune_keeps_every_library_when_it_cannot_read_dependencies():
    widgets = _entry("PySide6/QtWidgets.abi3.so", "EXTENSION")
    quick = _entry("PySide6/Qt/lib/libQt6Quick.so.6")
    plugin = _entry("PySide6/Qt/plugins/platforms/libqwayland.so")
    kept, dropped = fs.split_toc([widgets, quick, plugin])
    kept, dropped = fs.prune_binaries(kept, dropped, lambda entry: None)
    assert quick in kept  # restored: can't prove nothing needs it
    assert dropped == [plugin]  # plugins stay out


def test_gui_spec_is_valid_python_and_uses_the_shared_rules():
    source = fs.GUI_SPEC.read_text(encoding="utf-8")
    tree = ast.parse(source)
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert {"Analysis", "PYZ", "EXE"} <= called
    assert "COLLECT" not in called  # one-file
    for needle in (
        "fs.gui_excludes()",
        "fs.split_toc(a.binaries)",
        "fs.split_toc(a.datas)",
        "fs.prune_binaries",
        "fs.use_strip(sys.platform)",
        "console=TARGET.console",
        "pyi_rth_netjobs_stdio.py",
        "fs.stage_packages(",
        "TARGET.datas",
    ):
        assert needle in source, needle


# -- the build command line ---------------------------------------------------------------


def _args_after(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_agent_arguments_on_linux(tmp_path):
    args = build.pyinstaller_args(
        fs.TARGETS["agent"], "linux", REPO, tmp_path / "d", tmp_path / "w"
    )
    assert args[0] == str(BUILD_SCRIPTS / "entry" / "launch_agent.py")
    assert _args_after(args, "--name") == ["netjobs-agent"]
    assert {"--onefile", "--console", "--strip", "--noupx", "--noconfirm"} <= set(args)
    excluded = set(_args_after(args, "--exclude-module"))
    assert {
        "tkinter",
        "unittest",
        "pydoc",
        "rich",
        "platformdirs",
        "PySide6",
        "netjobs_gui",
    } <= excluded
    assert _args_after(args, "--distpath") == [str(tmp_path / "d")]
    assert _args_after(args, "--paths") == [
        str(tmp_path / "w" / "netjobs-agent" / "packages"),
        str(REPO),
    ]
    assert "--add-data" not in args


def test_no_strip_on_windows(tmp_path):
    for key in ("agent", "cli"):
        args = build.pyinstaller_args(fs.TARGETS[key], "win32", REPO, tmp_path, tmp_path)
        assert "--strip" not in args
        assert "--console" in args
    assert fs.use_strip("linux") and not fs.use_strip("win32")
    assert fs.exe_name("netjobs", "win32") == "netjobs.exe"
    assert fs.exe_name("netjobs", "linux") == "netjobs"


def test_cli_bundles_the_demo_config(tmp_path):
    args = build.pyinstaller_args(fs.TARGETS["cli"], "linux", REPO, tmp_path, tmp_path)
    assert _args_after(args, "--name") == ["netjobs"]
    datas = [data.rsplit(":", 1) for data in _args_after(args, "--add-data")]
    # ':' separates source and destination on every platform since PyInstaller 6.
    assert [Path(source).name for source, _ in datas] == ["demo.cfg", "demo-windows.cfg"]
    for source, dest in datas:
        assert Path(source).parent == REPO / "resources" / "examples"
        assert Path(source).is_file()
        assert dest == "netjobs_resources/examples"  # as in the wheel: importlib.resources
    excluded = set(_args_after(args, "--exclude-module"))
    assert "PySide6" in excluded and "rich" not in excluded


def test_the_bundled_resources_are_the_wheel_s_package_data():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert fs.package_dirs(REPO) == {"netjobs_agent": "agent", "netjobs_resources": "resources"}
    assert tool["setuptools"]["package-dir"][fs.RESOURCES_PACKAGE] == fs.RESOURCES.as_posix()
    # Each data folder is a package of its own (no setuptools warning): its patterns,
    # as paths inside resources/.
    shipped = [
        f"{package.removeprefix(fs.RESOURCES_PACKAGE + '.').replace('.', '/')}/{pattern}"
        for package, patterns in tool["setuptools"]["package-data"].items()
        if package.startswith(fs.RESOURCES_PACKAGE + ".")
        for pattern in patterns
    ]
    for target in fs.TARGETS.values():
        for source, dest in target.datas:
            inside = Path(source).relative_to(fs.RESOURCES)
            assert any(inside.match(pattern) for pattern in shipped), source
            assert dest == f"{fs.RESOURCES_PACKAGE}/{inside.parent.as_posix()}"
    assert fs.TARGETS["gui"].datas == ((fs.ICON_SVG.as_posix(), "netjobs_resources/icons"),)


def test_staged_packages_carry_the_installed_names(tmp_path):
    staged = fs.stage_packages(tmp_path / "packages", REPO)
    assert sorted(p.name for p in staged.iterdir()) == ["netjobs_agent", "netjobs_resources"]
    assert (staged / "netjobs_agent" / "__main__.py").read_bytes() == (
        REPO / "agent" / "__main__.py"
    ).read_bytes()
    assert (staged / "netjobs_resources" / "examples" / "demo.cfg").is_file()
    assert not list(staged.rglob("__pycache__"))
    fs.stage_packages(tmp_path / "packages", REPO)  # again: replaces, never nests


def test_gui_is_built_from_its_spec(tmp_path):
    args = build.pyinstaller_args(fs.TARGETS["gui"], "linux", REPO, tmp_path, tmp_path)
    assert args[0] == str(BUILD_SCRIPTS / "netjobs-gui.spec")
    assert "--onefile" not in args and "--strip" not in args  # both decided in the spec
    assert not fs.TARGETS["gui"].console


def test_targets_match_the_project_entry_points():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    entry_points = {**project["scripts"], **project["gui-scripts"]}
    for target in fs.TARGETS.values():
        assert entry_points[target.name] == target.entry
        module, func = target.entry.split(":")
        tree = ast.parse(target.script.read_text(encoding="utf-8"))
        imports = [
            (n.module, [a.name for a in n.names])
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
        ]
        assert (module, [func]) in imports, f"{target.script.name} must run {target.entry}"
        # Named so that the script's folder, first on sys.path, shadows no package.
        assert target.script.stem not in ("netjobs_agent", "netjobs_core", "netjobs_gui", "netjobs")
    assert fs.TARGETS["agent"].linux_size_limit == 12_000_000
    assert fs.TARGETS["gui"].linux_size_limit == 60_000_000


WARN_TXT = """\
missing module named _winapi - imported by encodings (delayed, optional), subprocess (conditional)
excluded module named rich - imported by netjobs_core.report (top-level)
missing module named 'rich.console' - imported by netjobs_core.report (top-level)
excluded module named PySide6 - imported by qasync (conditional, optional)
missing module named platformdirs - imported by netjobs_agent.server (delayed)
excluded module named tkinter - imported by pydoc (delayed)
"""


def test_forbidden_imports_from_the_warn_file():
    found = build.forbidden_imports(WARN_TXT, fs.AGENT_FORBIDDEN)
    assert found == {
        "rich": "netjobs_core.report (top-level)",
        "rich.console": "netjobs_core.report (top-level)",
        "platformdirs": "netjobs_agent.server (delayed)",
    }  # PySide6 is only imported by qasync, tkinter is not forbidden
    assert build.forbidden_imports("", fs.AGENT_FORBIDDEN) == {}


def test_bundled_forbidden_names():
    contents = [
        "PYZ.pyz",
        "agent.server",
        "netjobs_core.wire.tokens",
        "rich.console",
        "PySide6/Qt/lib/libQt6Core.so.6",
        "libpython3.11.so.1.0",
    ]
    assert build.bundled_forbidden(contents, fs.AGENT_FORBIDDEN) == ["PySide6", "rich"]
    assert build.bundled_forbidden(contents[:3], fs.AGENT_FORBIDDEN) == []


def test_missing_xcb_libraries_note():
    ldd = (
        "\tlibxcb-icccm.so.4 => not found\n\tlibQt6Gui.so.6 => /x/libQt6Gui.so.6 (0x1)\n"
        "\tlibxcb-keysyms.so.1 => not found\n\tlibxcb-icccm.so.4 => not found\n"
    )
    missing = build.parse_ldd_missing(ldd)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    note = build.xcb_note(missing)
    assert "apt-get install" in note and "libxcb-icccm4 libxcb-keysyms1" in note
    assert "libxcb-cursor0" in build.GUI_BUILD_DEBS and "libegl1" in build.GUI_BUILD_DEBS


def test_print_debs_needs_no_virtual_environment():
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPTS / "build.py"), "--print-debs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == list(build.GUI_BUILD_DEBS)


def test_build_options():
    args = build.parse_args(["--only", "agent", "--only", "gui"])
    assert args.only == ["agent", "gui"]
    with pytest.raises(SystemExit):
        build.parse_args(["--only", "everything"])


def test_windowed_stdio_runtime_hook():
    hook = fs.RTHOOK_DIR / "pyi_rth_netjobs_stdio.py"
    code = (
        "import sys; sys.stdout = None; sys.stderr = None; "
        f"exec(compile(open({str(hook)!r}).read(), 'hook', 'exec')); "
        "print('to nowhere'); sys.stderr.write('nor here'); "
        "import logging; logging.warning('or here')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- the smoke test's checks --------------------------------------------------------------

PORTS = (40001, 40002, 40003)


def _command(status="ok", exit_code=0, stdout="", duration=0.01):
    return {
        "command": "x",
        "status": status,
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": "",
        "duration_s": duration,
    }


def _host(port, *commands, status="done"):
    return {
        "target": f"127.0.0.1:{port}",
        "status": status,
        "error": "",
        "agent_version": "3.0.0",
        "rtt_ms": 0.2,
        "clock_offset_ms": 0.01,
        "clock_uncertainty_ms": 0.1,
        "commands": list(commands),
    }


def _good_run():
    p1, p2, p3 = PORTS
    return {
        "format": "netjobs-results/2",
        "passed": False,
        "tests": [
            {
                "label": "together",
                "status": "passed",
                "start_spread_ms": 0.4,
                "start_spread_uncertainty_ms": 0.2,
                "hosts": [
                    _host(p1, _command(stdout="smoke one\n")),
                    _host(p2, _command(stdout="smoke two\r\n")),
                    _host(p3, _command(stdout="smoke three\n")),
                ],
            },
            {
                "label": "exit-code",
                "status": "failed",
                "start_spread_ms": 0.3,
                "start_spread_uncertainty_ms": 0.2,
                "hosts": [
                    _host(p1, _command(stdout="fine\n")),
                    _host(p2, _command(status="failed", exit_code=3)),
                ],
            },
            {
                "label": "timeout",
                "status": "passed",
                "start_spread_ms": 0.3,
                "start_spread_uncertainty_ms": 0.2,
                "hosts": [
                    _host(p1, _command(stdout="quick\n")),
                    _host(
                        p3,
                        _command(status="timeout", exit_code=None, duration=1.02),
                        status="timeout",
                    ),
                ],
            },
        ],
    }


def test_smoke_accepts_the_expected_results():
    assert smoke.check_run_results(_good_run(), PORTS, "3.0.0") == []


def _broken(change):
    doc = copy.deepcopy(_good_run())
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.update(format="something else"), "format"),
        (lambda d: d.update(passed=True), "passed"),
        (lambda d: d["tests"].pop(), "tests are"),
        (lambda d: d["tests"][0].update(status="failed"), "'together' is 'failed'"),
        (lambda d: d["tests"][0].update(start_spread_ms=None), "start_spread_ms"),
        (lambda d: d["tests"][0].update(start_spread_ms=True), "start_spread_ms"),
        (lambda d: d["tests"][0].pop("start_spread_uncertainty_ms"), "uncertainty"),
        (lambda d: d["tests"][0]["hosts"][1]["commands"][0].update(stdout="smoke 2\n"), "stdout"),
        (lambda d: d["tests"][0]["hosts"][2]["commands"][0].update(status="error"), "command"),
        (lambda d: d["tests"][0]["hosts"][0].update(clock_offset_ms=None), "clock_offset_ms"),
        (lambda d: d["tests"][0]["hosts"][0].update(agent_version="2.0"), "agent_version"),
        (lambda d: d["tests"][0]["hosts"].pop(), "no host"),
        (lambda d: d["tests"][1]["hosts"][1]["commands"][0].update(exit_code=1), "with 3"),
        (lambda d: d["tests"][2]["hosts"][1]["commands"][0].update(status="ok"), "'timeout'"),
        (lambda d: d["tests"][2]["hosts"][1]["commands"][0].update(duration_s=30.0), "about 1 s"),
    ],
)
def test_smoke_rejects_a_bad_results_document(change, complaint):
    problems = smoke.check_run_results(_broken(change), PORTS, "3.0.0")
    assert problems
    assert any(complaint in problem for problem in problems), problems


def test_smoke_rejects_what_is_not_a_results_document():
    assert smoke.check_run_results([], PORTS)
    assert smoke.check_run_results({"format": "netjobs-results/1"}, PORTS)


def _demo(status="passed"):
    def host(n):
        return _host(16200 + n, _command(stdout=f"agent {n} started at 1.5 on box\n"))

    return {
        "format": "netjobs-results/2",
        "passed": status == "passed",
        "tests": [
            {
                "label": label,
                "status": status,
                "start_spread_ms": 0.5,
                "start_spread_uncertainty_ms": 0.1,
                "hosts": [host(1), host(2), host(3)],
            }
            for label in smoke.DEMO_TESTS
        ],
    }


def test_smoke_demo_checks():
    assert smoke.check_demo_results(_demo(), windows=False) == []
    assert any(
        "expected 'passed'" in p for p in smoke.check_demo_results(_demo("failed"), windows=False)
    )
    # Windows runs demo-windows.cfg: a failed test is a failure there too.
    assert any(
        "expected 'passed'" in p for p in smoke.check_demo_results(_demo("failed"), windows=True)
    )
    unreached = _demo()
    unreached["tests"][0]["hosts"][0]["agent_version"] = ""
    assert any("not reached" in p for p in smoke.check_demo_results(unreached, windows=True))
    no_stamp = _demo()
    no_stamp["tests"][0]["hosts"][1]["commands"][0]["stdout"] = ""
    assert any("agent 2 started" in p for p in smoke.check_demo_results(no_stamp, windows=False))


@pytest.mark.parametrize("windows", [False, True])
def test_smoke_config_is_a_valid_plan(windows):
    from netjobs_core.config import parse_config

    plan = parse_config(smoke.smoke_config(PORTS, windows=windows), "smoke.cfg")
    assert [test.label for test in plan.tests] == ["together", "exit-code", "timeout"]
    assert {a.port for test in plan.tests for a in test.addresses} == set(PORTS)


def test_demo_config_is_bundled_where_the_demo_looks():
    from netjobs_core import demo

    assert demo.demo_config() == REPO / fs.DEMO_CFG
    assert smoke.DEMO_PORTS == (16201, 16202, 16203)
    for cfg in (fs.DEMO_CFG, fs.DEMO_CFG_WINDOWS):
        text = (REPO / cfg).read_text(encoding="utf-8")
        for label in smoke.DEMO_TESTS:
            assert re.search(rf"^{re.escape(label)}:", text, re.MULTILINE), label


def test_smoke_options():
    args = smoke.parse_args(["--only", "cli", "--only", "agent"])
    assert args.only == ["cli", "agent"] and args.dist == smoke.DIST


# -- deployment files ---------------------------------------------------------------------


def test_systemd_unit():
    path = REPO / "resources" / "systemd" / "netjobs-agent.service"
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # keys are case-sensitive
    unit.read_string(path.read_text(encoding="utf-8"))
    service = unit["Service"]
    exec_start = service["ExecStart"].split()
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/netjobs-agent")
    assert "--token-file" in exec_start
    assert exec_start[exec_start.index("--token-file") + 1].startswith("/")
    assert service["User"] not in ("", "root", "0")
    assert service["Restart"] in ("on-failure", "always")
    assert "network-online.target" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_windows_setup_script():
    script = (REPO / "resources" / "windows" / "install-agent.ps1").read_text(encoding="utf-8")
    assert script.startswith("#Requires -RunAsAdministrator")
    for needle in (
        "New-NetFirewallRule",
        "-Direction Inbound",
        "-Protocol TCP",
        "-LocalPort $Port",
        "[int] $Port = 16192",
        "Register-ScheduledTask",
        "New-ScheduledTaskTrigger -AtStartup",
        "New-ScheduledTaskTrigger -AtLogOn",
        "--token-file",
        "-Priority 5",
        "Unregister-ScheduledTask",
    ):
        assert needle in script, needle
    # Balanced braces and parentheses: a cheap guard against a broken edit.
    for open_, close in ("{}", "()"):
        assert script.count(open_) == script.count(close), open_ + close
    assert (REPO / "resources" / "windows" / "README.md").is_file()


def test_workflow_builds_tests_and_uploads_on_both_systems():
    text = (REPO / ".github" / "workflows" / "build.yml").read_text(encoding="utf-8")
    for needle in (
        "ubuntu-22.04",
        "windows-latest",
        "actions/checkout@v4",
        "actions/setup-python@v5",
        'python-version: "3.11"',
        "actions/upload-artifact@v4",
        "python dev.py test",
        "python build_scripts/build.py --print-debs",
        "python build_scripts/build.py\n",
        "python build_scripts/smoke.py",
        "if-no-files-found: error",
    ):
        assert needle in text, needle
    assert "\t" not in text  # YAML forbids tabs for indentation
    # The suite, then the build, then the smoke test of what was built.
    assert (
        text.index("python dev.py test")
        < text.index("python build_scripts/build.py\n")
        < text.index("python build_scripts/smoke.py")
    )


def test_docs_page_exists():
    text = (REPO / "docs" / "executables.md").read_text(encoding="utf-8")
    for needle in ("chmod +x", "netjobs-agent.service", "install-agent.ps1", "16192", "not run"):
        assert needle in text, needle
