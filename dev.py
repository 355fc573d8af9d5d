#!/usr/bin/env python3
"""Set-up and everyday commands, from a bare Python 3.11 with pip.

    python3 dev.py demo    # a real synchronized run on three local agents (installs the GUI too)
    python3 dev.py test    # the whole test suite (what CI runs)

Both create .venv/ on first use and install the project into it (Debian/Ubuntu need
python3-venv for that: `test` installs it as root, `demo` says so). Only `test` runs
apt-get, as root: the libraries Qt needs offscreen, iproute2 and openssh-server (the
network-namespace and SSH tests) and faketime; `demo` names the packages a real
netjobs-gui window needs when some are missing.
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
# What the whole suite needs besides Qt: network namespaces (iproute2's `ip`), real SSH
# hosts in them (sshd) and an agent whose clock is not its kernel's (faketime).
TEST_DEBS = ["iproute2", "openssh-server", "faketime", "fio", "iperf3"]
VENV_DEB = "python3-venv"  # ensurepip on Debian/Ubuntu; without it no venv has pip
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=300"]  # wait for another apt/dpkg to finish
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


def venv_problem() -> str | None:
    """Why .venv/ cannot be used as it is (made by another Python, half made: no pip);
    None when it can."""
    if not VENV.exists():
        return "it does not exist"
    reason = stale_venv_reason(VENV / "pyvenv.cfg")
    if reason:
        return reason
    if not PYTHON.exists():
        return "it has no Python"
    pip = subprocess.run([PYTHON, "-m", "pip", "--version"], capture_output=True)
    return None if pip.returncode == 0 else "it has no pip (made without python3-venv?)"


def ensure_venv(extras: str) -> None:
    reason = venv_problem()
    if reason:
        if VENV.exists():
            print(f"dev.py: rebuilding {VENV}: {reason}", flush=True)
        try:
            # clear=True also drops the install stamps, so the project is installed again.
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (subprocess.CalledProcessError, OSError) as exc:
            shutil.rmtree(VENV, ignore_errors=True)  # a half-made one would look valid
            raise SystemExit(
                f"dev.py: cannot make {VENV} ({exc}): Python's venv needs ensurepip, on "
                f"Debian/Ubuntu the package {VENV_DEB}: sudo apt-get install {VENV_DEB}"
            ) from None
    stamp = VENV / f".installed-{extras or 'base'}"
    inputs = (ROOT / "pyproject.toml").stat().st_mtime
    if stamp.exists() and stamp.stat().st_mtime >= inputs:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    target = f".[{extras}]" if extras else "."
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", target, cwd=ROOT)
    stamp.touch()


def missing_debs(names: list[str]) -> list[str]:
    """Of these Debian packages, those not installed ([] off Debian/Ubuntu)."""
    if sys.platform != "linux" or not shutil.which("dpkg-query"):
        return []
    return [
        name
        for name in names
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True
        ).stdout.strip()
        != "install ok installed"
    ]


def install_debs(names: list[str]) -> None:
    """apt-get install what is missing of NAMES, as root (waiting for another apt or
    dpkg to let go of its lock); otherwise say the command."""
    missing = missing_debs(names)
    if not missing:
        return
    if os.geteuid() != 0:
        print(f"dev.py: the tests need these packages: sudo apt-get install {' '.join(missing)}")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", *APT_LOCK_WAIT, "update", "-q", env=env)
    run(
        "apt-get",
        *APT_LOCK_WAIT,
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        *missing,
        env=env,
    )


def gui_window_debs() -> list[str]:
    """What a real netjobs-gui window needs: Qt's libraries and the xcb ones (the list
    build_scripts/build.py bundles)."""
    listed = subprocess.run(
        [sys.executable, ROOT / "build_scripts" / "build.py", "--print-debs"],
        capture_output=True,
        text=True,
    )
    return listed.stdout.split() if listed.returncode == 0 else QT_DEBS


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    try:
        if command == "demo":
            # With the GUI extra: after the demo, .venv/bin/netjobs-gui works too. No
            # apt-get: the demo itself needs no system package.
            ensure_venv("gui")
            code = subprocess.run([BIN / "netjobs", "demo", *argv[1:]]).returncode
            if missing := missing_debs(gui_window_debs()):
                print(
                    "dev.py: for a netjobs-gui window: sudo apt-get install "
                    f"--no-install-recommends {' '.join(missing)}"
                )
            return code
        if command == "test":
            install_debs([*QT_DEBS, *TEST_DEBS, *([VENV_DEB] if venv_problem() else [])])
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
