#!/usr/bin/env python3
"""Set-up and everyday commands, from a bare Python 3.11 with pip.

    python3 dev.py demo    # a real synchronized run on three local agents (installs the GUI too)
    python3 dev.py test    # the whole test suite (what CI runs)

Both create .venv/ on first use and install the project into it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# What Qt needs to run at all (offscreen too) on Debian/Ubuntu; build_scripts/build.py adds
# the xcb libraries a real window needs.
QT_DEBS = [
    "libegl1",
    "libgl1",
    "libxkbcommon0",
    "libfontconfig1",
    "libdbus-1-3",
    "libglib2.0-0",
    "fonts-dejavu-core",
]
SUITE_TIMEOUT_S = 25 * 60


def run(*argv: str | os.PathLike[str], **kwargs) -> None:
    print("+", " ".join(map(str, argv)), flush=True)
    subprocess.run(list(map(str, argv)), check=True, **kwargs)


def stale_venv_reason(
    pyvenv_cfg: Path, running: tuple[int, int] = sys.version_info[:2]
) -> str | None:
    """Why the venv described by PYVENV_CFG cannot serve the RUNNING Python; None if it can.

    A venv belongs to the Python that made it: its site-packages hold that version's
    compiled wheels, and its interpreter is that Python's (a link to it, or a copy).
    """
    try:
        text = pyvenv_cfg.read_text(encoding="utf-8")
    except OSError:
        return f"{pyvenv_cfg} is missing"
    keys = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            keys[key.strip()] = value.strip()
    version = keys.get("version_info", keys.get("version", ""))
    made_by = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    want = ".".join(map(str, running))
    if made_by != running:
        return f"it was made by Python {version or '(unknown)'}, this is Python {want}"
    executable = keys.get("executable")
    if executable and not Path(executable).exists():
        return f"its Python {executable} no longer exists"
    return None


def ensure_venv(extras: str) -> None:
    reason = stale_venv_reason(VENV / "pyvenv.cfg") if VENV.exists() else "it does not exist"
    if reason or not PYTHON.exists():
        if VENV.exists():
            print(f"dev.py: rebuilding {VENV}: {reason or 'it has no Python'}", flush=True)
        # clear=True also drops the install stamps, so the project is installed again.
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    inputs = (ROOT / "pyproject.toml").stat().st_mtime
    if stamp.exists() and stamp.stat().st_mtime >= inputs:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    target = f".[{extras}]" if extras else "."
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", target, cwd=ROOT)
    stamp.touch()


def ensure_qt_libraries() -> None:
    if sys.platform != "linux" or not shutil.which("dpkg-query"):
        return
    missing = [
        name
        for name in QT_DEBS
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True
        ).stdout.strip()
        != "install ok installed"
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        print(f"Qt needs these Debian packages: sudo apt-get install {' '.join(missing)}")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-q", env=env)
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    try:
        if command == "demo":
            # With the GUI extra: after the demo, .venv/bin/netjobs-gui works too.
            ensure_qt_libraries()
            ensure_venv("gui")
            return subprocess.run([BIN / "netjobs", "demo", *argv[1:]]).returncode
        if command == "test":
            ensure_qt_libraries()
            ensure_venv("test")
            env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
            try:
                return subprocess.run(
                    [PYTHON, "-m", "pytest", *argv[1:]], cwd=ROOT, env=env, timeout=SUITE_TIMEOUT_S
                ).returncode
            except subprocess.TimeoutExpired:
                print(f"the test suite ran past {SUITE_TIMEOUT_S} s and was stopped")
                return 1
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: {exc}")
        return 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
