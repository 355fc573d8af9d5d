#!/usr/bin/env python3
"""Build the NetJobs one-file executables with PyInstaller, on Linux or Windows.

    python build_scripts/build.py               # dist/netjobs-agent, dist/netjobs, dist/netjobs-gui
    python build_scripts/build.py --only agent  # or cli, gui; --only may be repeated

On Windows the same files get .exe. The build needs PyInstaller and PySide6: when the
running Python lacks them, the script uses .venv (creating it and installing
`.[gui,build]` if needed; --no-install forbids that). Work files go to build/pyinstaller,
a summary (build time and size per executable) to build/netjobs-build.json.

After building, each executable's archive is checked for modules it must not carry
(the agent: rich, platformdirs, Qt...); on Linux the agent must stay within 12 MB and
the GUI within 60 MB. Any failure exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from freeze_settings import (
    MB,
    ROOT,
    STDLIB_EXCLUDES,
    TARGETS,
    Target,
    exe_name,
    stage_packages,
    staged_packages_dir,
    use_strip,
)

from dev import QT_DEBS  # what Qt needs to start at all (offscreen too), one list

DIST = ROOT / "dist"
WORK = ROOT / "build" / "pyinstaller"
REPORT = ROOT / "build" / "netjobs-build.json"
VENV = ROOT / ".venv"

# Shared libraries the Qt xcb platform plugin (libqxcb.so and libQt6XcbQpa) links
# against, and the Debian/Ubuntu package of each. They are not part of the PySide6 wheel:
# PyInstaller bundles them from the build machine, so a build machine without them
# yields a GUI that cannot open a window where they are missing (offscreen still works).
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
# Everything a Debian 12 / Ubuntu 22.04 build machine installs before the GUI build
# (`python3 build_scripts/build.py --print-debs`).
GUI_BUILD_DEBS = tuple(sorted({*QT_DEBS, *XCB_PACKAGES.values()}))


class BuildError(Exception):
    pass


# -- the PyInstaller command line ---------------------------------------------------------


def pyinstaller_args(
    target: Target,
    platform: str = sys.platform,
    root: Path = ROOT,
    dist: Path = DIST,
    work: Path = WORK,
    log_level: str = "WARN",
) -> list[str]:
    """Arguments after `python -m PyInstaller` for one target on one platform."""
    common = [
        "--noconfirm",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        "--log-level",
        log_level,
    ]
    if target.spec is not None:
        # Everything else (strip, console, filters) is decided inside the spec.
        return [str(target.spec), *common]
    args = [
        str(target.script),
        "--name",
        target.name,
        "--onefile",
        "--console" if target.console else "--windowed",
        "--specpath",
        str(work / "spec"),
        "--paths",
        str(staged_packages_dir(work, target.name)),
        "--paths",
        str(root),
        "--noupx",
        *common,
    ]
    if use_strip(platform):
        args.append("--strip")
    for module in (*STDLIB_EXCLUDES, *target.forbidden, *target.excludes):
        args += ["--exclude-module", module]
    for source, dest in target.datas:
        # ':' separates source and destination on every platform since PyInstaller 6.
        args += ["--add-data", f"{root / source}:{dest}"]
    return args


# -- checks ---------------------------------------------------------------------------------

_WARN_LINE = re.compile(r"^(missing|excluded) module named '?([\w.]+)'? - imported by (.*)$")


def forbidden_imports(warn_text: str, forbidden: tuple[str, ...]) -> dict[str, str]:
    """From PyInstaller's warn-<name>.txt: forbidden modules that something still imports.

    Returns {module: importers}. Excluded modules are listed there with who imports them;
    an import from the standard library (e.g. a `try: import rich` nowhere) would also
    show up, so only importers from the project count.
    """
    found: dict[str, str] = {}
    for line in warn_text.splitlines():
        match = _WARN_LINE.match(line.strip())
        if not match:
            continue
        module, importers = match.group(2), match.group(3)
        top = module.split(".")[0]
        if top not in forbidden:
            continue
        ours = [
            part.strip()
            for part in importers.split(",")
            if part.strip().split(" ")[0].split(".")[0]
            in ("netjobs_agent", "netjobs_core", "netjobs_gui", "__main__")
        ]
        if ours:
            found[module] = ", ".join(ours)
    return found


def bundled_forbidden(contents: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """Names inside the built archive that belong to a forbidden top-level package."""
    bad = set()
    for name in contents:
        top = name.replace("\\", "/").split("/")[0].split(".")[0]
        if top in forbidden:
            bad.add(top)
    return sorted(bad)


def archive_contents(executable: Path) -> list[str]:
    from PyInstaller.archive.readers import pkg_archive_contents

    return pkg_archive_contents(str(executable), recursive=True)


def missing_xcb_libraries(platform: str = sys.platform) -> list[str] | None:
    """Shared libraries the Qt xcb plugin needs and this machine lacks (None: can't tell)."""
    if platform != "linux" or not shutil.which("ldd"):
        return None
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = (
        Path(next(iter(spec.submodule_search_locations)))
        / "Qt"
        / "plugins"
        / "platforms"
        / "libqxcb.so"
    )
    if not plugin.is_file():
        return None
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    return parse_ldd_missing(out)


def parse_ldd_missing(ldd_output: str) -> list[str]:
    return sorted(
        {line.split("=>")[0].strip() for line in ldd_output.splitlines() if "not found" in line}
    )


def xcb_note(missing: list[str]) -> str:
    packages = sorted(
        {XCB_PACKAGES.get(name, f"(the package providing {name})") for name in missing}
    )
    return (
        "NOTE: this machine lacks libraries the Qt xcb platform plugin needs: "
        f"{', '.join(missing)}.\n"
        "      PyInstaller bundles them from the build machine, so dist/netjobs-gui built here\n"
        "      cannot open a window on a desktop that lacks them (it still runs offscreen).\n"
        f"      Install them first: apt-get install -y --no-install-recommends {' '.join(packages)}"
    )


# -- the Python that builds ---------------------------------------------------------------


def venv_python(root: Path = ROOT) -> Path:
    return root / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_build_modules(python: str | os.PathLike[str], need_qt: bool) -> bool:
    modules = ["PyInstaller", *(["PySide6", "qasync"] if need_qt else [])]
    code = (
        "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None "
        f"for m in {modules!r}))"
    )
    return subprocess.run([os.fspath(python), "-c", code], capture_output=True).returncode == 0


REEXEC_ENV = "NETJOBS_BUILD_IN_VENV"  # set when this script re-runs itself under .venv


def ensure_build_python(need_qt: bool, install: bool) -> Path | None:
    """None if this Python can build; else the .venv Python to re-run this script with."""
    if has_build_modules(sys.executable, need_qt):
        return None
    if os.environ.get(REEXEC_ENV):
        raise BuildError(
            f"{sys.executable} still lacks the build requirements after "
            "installing them: see pip's output above"
        )
    python = venv_python()
    # Not Path.resolve() on the interpreters: a venv's python is a symlink to the base one.
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if python.exists() and not in_venv and has_build_modules(python, need_qt):
        return python
    what = "PyInstaller" + (", PySide6 and qasync" if need_qt else "")
    if not install:
        raise BuildError(f"{what} not found: run  {python} -m pip install -e .[gui,build]")
    if not python.exists():
        print(f"build: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(f"build: installing .[gui,build] into {VENV} (needs {what})", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", ".[gui,build]"], cwd=ROOT, check=True
    )
    return python


# -- building ----------------------------------------------------------------------------


def build_target(target: Target, log_level: str, clean: bool = False) -> dict:
    exe = DIST / exe_name(target.name, sys.platform)
    if exe.exists():
        exe.unlink()
    if target.spec is None:  # a spec stages them itself
        stage_packages(staged_packages_dir(WORK, target.name))
    argv = [
        sys.executable,
        "-m",
        "PyInstaller",
        *pyinstaller_args(target, log_level=log_level),
        *(["--clean"] if clean else []),
    ]
    print(f"\nbuild: {target.name} ({target.entry})", flush=True)
    print("+ " + " ".join(argv), flush=True)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT)
    seconds = time.monotonic() - started
    if done.returncode != 0 or not exe.is_file():
        raise BuildError(f"PyInstaller failed for {target.name} (exit {done.returncode})")
    problems = []
    warn_file = WORK / target.name / f"warn-{target.name}.txt"
    if target.forbidden and warn_file.is_file():
        for module, importers in forbidden_imports(
            warn_file.read_text(encoding="utf-8", errors="replace"), target.forbidden
        ).items():
            problems.append(
                f"{target.name} must not use {module}, but it is imported by "
                f"{importers} (see {warn_file})"
            )
    if target.forbidden:
        bad = bundled_forbidden(archive_contents(exe), target.forbidden)
        if bad:
            problems.append(f"{target.name} bundles {', '.join(bad)}")
    size = exe.stat().st_size
    limit = target.linux_size_limit if sys.platform == "linux" else None
    if limit is not None and size > limit:
        problems.append(f"{exe.name} is {size / MB:.1f} MB, over its {limit / MB:.0f} MB limit")
    print(f"build: {exe.relative_to(ROOT)} {size / MB:.1f} MB in {seconds:.1f} s", flush=True)
    return {
        "name": target.name,
        "path": str(exe.relative_to(ROOT)),
        "size_bytes": size,
        "build_seconds": round(seconds, 1),
        "problems": problems,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py", description="Build the NetJobs one-file executables into dist/."
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(TARGETS),
        metavar="TARGET",
        help="build only this one: agent, cli or gui (repeatable)",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="empty PyInstaller's cache and build/pyinstaller first "
        "(a cold build, as on a fresh CI machine)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never create .venv or pip install the build requirements",
    )
    parser.add_argument("--verbose", action="store_true", help="PyInstaller's full log")
    parser.add_argument(
        "--print-debs",
        action="store_true",
        help="print the Debian/Ubuntu packages the Linux GUI build needs "
        "installed, and exit (needs no virtual environment)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_debs:
        print(" ".join(GUI_BUILD_DEBS))
        return 0
    keys = [key for key in TARGETS if key in (args.only or TARGETS)]
    try:
        other = ensure_build_python("gui" in keys, install=not args.no_install)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    if other is not None:
        print(f"build: using {other}", flush=True)
        return subprocess.run(
            [str(other), str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)],
            env={**os.environ, REEXEC_ENV: "1"},
        ).returncode

    note = None
    if "gui" in keys:
        missing = missing_xcb_libraries()
        if missing:
            note = xcb_note(missing)
            print(note, flush=True)
    if args.clean:
        shutil.rmtree(WORK, ignore_errors=True)
    DIST.mkdir(exist_ok=True)
    started = time.monotonic()
    results = []
    try:
        for key in keys:
            results.append(
                build_target(TARGETS[key], "INFO" if args.verbose else "WARN", clean=args.clean)
            )
    except BuildError as exc:
        print(f"build: FAILED: {exc}", file=sys.stderr)
        return 1
    total = time.monotonic() - started

    print(
        f"\nbuild: {len(results)} executables in {total:.1f} s ({sys.platform}, "
        f"Python {sys.version.split()[0]})"
    )
    for result in results:
        print(
            f"  {result['path']:<24} {result['size_bytes'] / MB:6.1f} MB "
            f"{result['build_seconds']:6.1f} s"
        )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {"platform": sys.platform, "total_seconds": round(total, 1), "executables": results},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    if note:
        print(note)
    problems = [problem for result in results for problem in result["problems"]]
    for problem in problems:
        print(f"build: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
