"""What goes into each NetJobs executable: shared by build.py and netjobs-gui.spec.

Standard library only, and no PyInstaller import at module level, so the unit tests
(tests/test_build_scripts.py) can check these rules without building anything.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPTS = ROOT / "build_scripts"
ENTRY_DIR = BUILD_SCRIPTS / "entry"
RTHOOK_DIR = BUILD_SCRIPTS / "rthooks"
GUI_SPEC = BUILD_SCRIPTS / "netjobs-gui.spec"
# The resources/ folder is installed as the package netjobs_resources (pyproject.toml's
# package-dir); the programs read it with importlib.resources, in a bundle too.
RESOURCES = Path("resources")
RESOURCES_PACKAGE = "netjobs_resources"
DEMO_CFG = RESOURCES / "examples" / "demo.cfg"
DEMO_CFG_WINDOWS = DEMO_CFG.with_name("demo-windows.cfg")
ICON_SVG = RESOURCES / "icons" / "netjobs.svg"

MB = 1_000_000

# Standard-library parts none of the executables use. Excluding them keeps them out
# even when some other stdlib module mentions them (pydoc from a help(), ...).
STDLIB_EXCLUDES = (
    "tkinter",
    "_tkinter",
    "turtle",
    "turtledemo",
    "idlelib",
    "unittest",
    "doctest",
    "pydoc",
    "pydoc_data",
    "lib2to3",
    "ensurepip",
    "venv",
    "distutils",
    "setuptools",
    "pkg_resources",
    "pip",
    "test",
    "xmlrpc",
)

# Qt bindings: qasync probes for every binding it knows; only PySide6 is ever used.
OTHER_QT_BINDINGS = ("PyQt5", "PyQt6", "PySide2", "sip")
QT_PACKAGES = ("PySide6", "shiboken6", "qasync", *OTHER_QT_BINDINGS)

# The agent is standard library only (plus netjobs_core's stdlib-only modules).
# These must not be imported by anything the agent imports: build.py excludes them
# and fails the build if the agent's code still imports one of them.
# sqlite3 is the controller's run history; the agent keeps none.
AGENT_FORBIDDEN = (
    "rich",
    "platformdirs",
    "ClusterShell",
    "asyncssh",
    "cryptography",
    "sqlite3",
    "_sqlite3",
    "netjobs_gui",
    *QT_PACKAGES,
)
# The command line needs rich, never Qt.
CLI_FORBIDDEN = ("netjobs_gui", *QT_PACKAGES)

# PySide6 modules the GUI uses (netjobs_gui imports QtCore, QtGui and QtWidgets).
QT_MODULES_USED = ("QtCore", "QtGui", "QtWidgets")
# Every other PySide6 module, excluded so that no hook collects its libraries.
QT_MODULES_EXCLUDED = (
    "Qt3DAnimation",
    "Qt3DCore",
    "Qt3DExtras",
    "Qt3DInput",
    "Qt3DLogic",
    "Qt3DRender",
    "QtAxContainer",
    "QtBluetooth",
    "QtCharts",
    "QtConcurrent",
    "QtDBus",
    "QtDataVisualization",
    "QtDesigner",
    "QtGraphs",
    "QtGraphsWidgets",
    "QtHelp",
    "QtHttpServer",
    "QtLocation",
    "QtMultimedia",
    "QtMultimediaWidgets",
    "QtNetwork",
    "QtNetworkAuth",
    "QtNfc",
    "QtOpenGL",
    "QtOpenGLWidgets",
    "QtPdf",
    "QtPdfWidgets",
    "QtPositioning",
    "QtPrintSupport",
    "QtQml",
    "QtQuick",
    "QtQuick3D",
    "QtQuickControls2",
    "QtQuickTest",
    "QtQuickWidgets",
    "QtRemoteObjects",
    "QtScxml",
    "QtSensors",
    "QtSerialBus",
    "QtSerialPort",
    "QtSpatialAudio",
    "QtSql",
    "QtStateMachine",
    "QtSvg",
    "QtSvgWidgets",
    "QtTest",
    "QtTextToSpeech",
    "QtUiTools",
    "QtWebChannel",
    "QtWebEngineCore",
    "QtWebEngineQuick",
    "QtWebEngineWidgets",
    "QtWebSockets",
    "QtWebView",
    "QtXml",
)

# Qt plugins kept in the GUI, per plugin directory, by file stem (no "lib" prefix, no
# extension). A plugin directory not listed here is left out entirely.
QT_PLUGINS_KEPT: dict[str, frozenset[str]] = {
    # xcb: X11 and XWayland; offscreen/minimal: CI and scripted checks; windows: Windows.
    # wayland is left out (it brings its own client library): Qt falls back to xcb.
    "platforms": frozenset({"qxcb", "qoffscreen", "qminimal", "qwindows", "qcocoa"}),
    # The GTK theme plugin would bundle the whole GTK stack; the portal one is small.
    "platformthemes": frozenset({"qxdgdesktopportal"}),
    # Dead keys and input methods; the virtual keyboard plugin needs QML and Quick.
    "platforminputcontexts": frozenset(
        {
            "composeplatforminputcontextplugin",
            "ibusplatforminputcontextplugin",
        }
    ),
    "xcbglintegrations": frozenset({"qxcb-glx-integration", "qxcb-egl-integration"}),
    "iconengines": frozenset({"qsvgicon"}),  # the window icon is an SVG
    "imageformats": frozenset({"qsvg", "qico", "qgif", "qjpeg"}),
    # Windows: the native look (Qt 6.7+ modern style; older name kept for older Qt).
    "styles": frozenset({"qmodernwindowsstyle", "qwindowsvistastyle"}),
}

# Qt libraries only reached through left-out modules and plugins. The spec verifies
# (where it can read binary dependencies) that nothing kept needs one of them.
QT_LIBS_DROPPED = frozenset(
    {
        "Qml",
        "QmlMeta",
        "QmlModels",
        "QmlWorkerScript",
        "Quick",
        "QuickControls2",
        "QuickTemplates2",
        "QuickWidgets",
        "VirtualKeyboard",
        "VirtualKeyboardQml",
        "Pdf",
        "PdfQuick",
        "Network",
        "OpenGL",
        "WaylandClient",
        "WaylandEglClientHwIntegration",
        "WlShellIntegration",
        "EglFSDeviceIntegration",
        "EglFsKmsSupport",
        "EglFsKmsGbmSupport",
        "Sql",
        "PrintSupport",
    }
)

# Windows: the software OpenGL fallback (~20 MB); a widgets application never needs it.
WINDOWS_FILES_DROPPED = frozenset({"opengl32sw.dll"})

_PLUGIN = re.compile(r"(?:^|/)plugins/([^/]+)/([^/]+)$")
_TRANSLATION = re.compile(r"(?:^|/)PySide6/(?:Qt/)?translations/[^/]+$")
_QT_LIB = re.compile(r"^(?:lib)?Qt6([A-Za-z0-9]+?)(?:\.so(?:\.[0-9]+)*|\.dll|\.dylib)$")


def _posix(dest: str) -> str:
    return str(PurePosixPath(dest.replace("\\", "/")))


def _stem(filename: str) -> str:
    name = filename.lower()
    name = re.sub(r"(\.so(\.[0-9]+)*|\.dll|\.dylib)$", "", name)
    return name.removeprefix("lib")


def is_pyside_file(dest: str) -> bool:
    return _posix(dest).split("/", 1)[0] == "PySide6"


def qt_lib_module(dest: str) -> str | None:
    """'PySide6/Qt/lib/libQt6Widgets.so.6' -> 'Widgets'; None for anything else."""
    match = _QT_LIB.match(PurePosixPath(_posix(dest)).name)
    return match.group(1) if match else None


def keep_qt_file(dest: str) -> bool:
    """Whether a collected file (its path inside the bundle) stays in the GUI."""
    path = _posix(dest)
    if not is_pyside_file(path):
        return True
    if _TRANSLATION.search(path):
        return False  # the GUI is English only
    plugin = _PLUGIN.search(path)
    if plugin:
        kept = QT_PLUGINS_KEPT.get(plugin.group(1))
        return kept is not None and _stem(plugin.group(2)) in kept
    name = PurePosixPath(path).name
    if name.lower() in WINDOWS_FILES_DROPPED:
        return False
    module = qt_lib_module(name)
    return module is None or module not in QT_LIBS_DROPPED


def split_toc(entries, keep=keep_qt_file):
    """Split PyInstaller TOC entries (dest, src, typecode) into (kept, dropped)."""
    kept, dropped = [], []
    for entry in entries:
        (kept if keep(entry[0]) else dropped).append(entry)
    return kept, dropped


def _base(entry) -> str:
    return PurePosixPath(_posix(entry[0])).name.lower()


def is_plain_library(entry) -> bool:
    """A shared library collected as a dependency: not an extension module, not a Qt plugin,
    not the Python library itself."""
    dest = _posix(entry[0])
    return (
        entry[2] == "BINARY"
        and not _PLUGIN.search(dest)
        and not _base(entry).startswith(("libpython", "python3"))
    )


def prune_binaries(kept, dropped, imports_of):
    """Make the binary filter safe and complete, given each binary's link-time imports.

    imports_of(entry) returns the names of the libraries a binary links against (None if
    it cannot tell). Then:
      - a dropped library that something kept still needs is put back;
      - a kept library that only dropped binaries needed is left out too (the GTK, Wayland
        or Kerberos stacks that left-out plugins brought along).
    When some binary's imports cannot be read, every dropped library is put back (plugins
    and translations stay out) and nothing more is left out.
    Returns (kept, dropped).
    """
    by_name = {_base(entry): entry for entry in (*kept, *dropped)}

    def closure(roots) -> tuple[set[str], bool]:
        """Names reachable from roots, and whether every binary on the way was readable."""
        seen: set[str] = set()
        readable = True
        todo = list(roots)
        while todo:
            entry = todo.pop()
            names = imports_of(entry)
            if names is None:
                readable = False
                continue
            for name in names:
                base = PurePosixPath(_posix(name)).name.lower()
                if base in by_name and base not in seen:
                    seen.add(base)
                    todo.append(by_name[base])
        return seen, readable

    # An unreadable dropped binary only hides orphans: keeping them is safe.
    reached_from_dropped, _ = closure(dropped)
    candidates = {
        _base(entry)
        for entry in kept
        if is_plain_library(entry) and _base(entry) in reached_from_dropped
    }
    needed, readable = closure([entry for entry in kept if _base(entry) not in candidates])
    if not readable:
        restored = [entry for entry in dropped if is_plain_library(entry)]
        return [*kept, *restored], [entry for entry in dropped if entry not in restored]
    restored = [entry for entry in dropped if _base(entry) in needed]
    orphans = [entry for entry in kept if _base(entry) in candidates and _base(entry) not in needed]
    new_kept = [entry for entry in kept if entry not in orphans] + restored
    new_dropped = [entry for entry in dropped if entry not in restored] + orphans
    return new_kept, new_dropped


def gui_excludes() -> list[str]:
    return [
        *STDLIB_EXCLUDES,
        *OTHER_QT_BINDINGS,
        *(f"PySide6.{name}" for name in QT_MODULES_EXCLUDED),
    ]


def package_dirs(root: Path = ROOT) -> dict[str, str]:
    """pyproject.toml's package-dir: installed name -> source folder (agent/, resources/)."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return project["tool"]["setuptools"]["package-dir"]


def staged_packages_dir(work: Path, name: str) -> Path:
    """Where one executable's build finds the renamed packages (PyInstaller's own work
    folder for it is work/name)."""
    return work / name / "packages"


def stage_packages(into: Path, root: Path = ROOT) -> Path:
    """Copy each renamed source folder under its installed name into `into`, for --paths.

    PyInstaller finds modules by folder name on its search path; it does not see the
    package-dir mapping, which only an installed (or editable) wheel applies.
    """
    shutil.rmtree(into, ignore_errors=True)
    for name, folder in package_dirs(root).items():
        shutil.copytree(root / folder, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def resource_datas(*files: Path) -> tuple[tuple[str, str], ...]:
    """PyInstaller datas that put files of resources/ where importlib.resources finds them
    in the bundle: under the package's name, as in an installed wheel."""
    return tuple(
        (file.as_posix(), (RESOURCES_PACKAGE / file.parent.relative_to(RESOURCES)).as_posix())
        for file in files
    )


@dataclass(frozen=True)
class Target:
    key: str  # what --only takes
    name: str  # executable name, without .exe
    entry: str  # the project entry point it freezes
    script: Path
    console: bool
    forbidden: tuple[str, ...] = ()  # excluded, and the build fails if our code imports one
    excludes: tuple[str, ...] = ()  # excluded: optional parts of dependencies left out
    datas: tuple[tuple[str, str], ...] = ()  # (source relative to ROOT, dest dir in bundle)
    spec: Path | None = None
    linux_size_limit: int | None = None  # bytes


TARGETS: dict[str, Target] = {
    "agent": Target(
        key="agent",
        name="netjobs-agent",
        entry="netjobs_agent.__main__:main",
        script=ENTRY_DIR / "launch_agent.py",
        console=True,
        forbidden=AGENT_FORBIDDEN,
        linux_size_limit=12 * MB,
    ),
    "cli": Target(
        key="cli",
        name="netjobs",
        entry="netjobs_core.cli:command",
        script=ENTRY_DIR / "launch_cli.py",
        console=True,
        forbidden=CLI_FORBIDDEN,
        # rich's Syntax/Traceback (pygments) and Markdown (markdown_it): never used, ~2 MB.
        excludes=("pygments", "markdown_it"),
        datas=resource_datas(DEMO_CFG, DEMO_CFG_WINDOWS),
    ),
    "gui": Target(
        key="gui",
        name="netjobs-gui",
        entry="netjobs_gui.__main__:main",
        script=ENTRY_DIR / "launch_gui.py",
        console=False,
        spec=GUI_SPEC,
        datas=resource_datas(ICON_SVG),
        linux_size_limit=60 * MB,
    ),
}


def exe_name(name: str, platform: str) -> str:
    return name + ".exe" if platform == "win32" else name


def use_strip(platform: str) -> bool:
    """--strip: a large win on Linux (this libpython carries debug info); not for Windows."""
    return platform not in ("win32", "cygwin")
