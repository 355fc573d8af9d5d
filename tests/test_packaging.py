"""The wheel, installed into a fresh virtual environment, runs the demo and the agent;
dev.py rebuilds a .venv that another Python made.

Built from a copy of the sources (a build in the checkout would reuse build/lib, where a
file of an older layout can linger), installed without the checkout anywhere on
sys.path. pip uses this machine's configured index and wheel folders, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

from netjobs_core import __version__

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dev

REPO = Path(__file__).resolve().parent.parent
SOURCES = (
    "pyproject.toml",
    "README.md",
    "agent",
    "netjobs_core",
    "netjobs_gui",
    "resources",
    "share",
)
BIN = "Scripts" if os.name == "nt" else "bin"
BUDGET_S = 60  # build, install and both runs; measured about 15 s here


def _run(argv: list[str | os.PathLike[str]], timeout: float = 120, **kwargs):
    done = subprocess.run(
        [os.fspath(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv bin folder, seconds it took to build and install)."""
    tmp = tmp_path_factory.mktemp("packaging")
    started = time.monotonic()
    src = tmp / "src"
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(source, src / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", tmp / "dist", src])
    # Issue 21: every install printed ~90 lines about netjobs_resources.examples and
    # .icons "absent from the `packages` configuration".
    assert "absent from the" not in built.stdout + built.stderr
    (wheel,) = (tmp / "dist").glob("netjobs-*.whl")
    # No pip inside: this Python's pip installs into it (--python), which saves ensurepip.
    venv.EnvBuilder(with_pip=False).create(tmp / "venv")
    python = tmp / "venv" / BIN / ("python.exe" if os.name == "nt" else "python")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel])
    return wheel, tmp / "venv" / BIN, time.monotonic() - started


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONNOUSERSITE": "1"}


def test_the_wheel_installs_only_netjobs_names(installed):
    wheel, _bin, _seconds = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {
        "netjobs_agent",
        "netjobs_core",
        "netjobs_gui",
        "netjobs_resources",
        f"netjobs-{__version__}.dist-info",
        f"netjobs-{__version__}.data",  # the man page and the shell completions
    }
    data = f"netjobs-{__version__}.data/data/share/"
    for installed_file in (
        "man/man1/netjobs.1",
        "bash-completion/completions/netjobs",
        "zsh/site-functions/_netjobs",
    ):
        assert data + installed_file in names
    for data in ("examples/demo.cfg", "examples/demo-windows.cfg", "icons/netjobs.svg"):
        assert f"netjobs_resources/{data}" in names
    assert "netjobs_core/wire/connection.py" in names


def test_the_installed_demo_and_agent_run(installed, tmp_path):
    _wheel, bin_dir, seconds = installed
    started = time.monotonic()
    exe = ".exe" if os.name == "nt" else ""
    # Away from the checkout, so nothing resolves through it.
    kwargs = {"cwd": tmp_path, "env": _clean_env()}
    agent = _run([bin_dir / f"netjobs-agent{exe}", "--version"], **kwargs)
    assert agent.stdout.strip() == f"netjobs-agent {__version__}"
    as_module = _run([bin_dir / "python", "-m", "netjobs_agent", "--version"], **kwargs)
    assert as_module.stdout == agent.stdout
    demo = _run([bin_dir / f"netjobs{exe}", "demo", "--json", tmp_path / "r.json"], **kwargs)
    assert "agents stopped" in demo.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["passed"] is True
    # Each command's effective timeout reaches the document (the demo: -generaltimeout 10s).
    first = results["tests"][0]["hosts"][0]["commands"]
    assert first and {command["timeout"] for command in first} == {10.0}
    where = _run(
        [
            bin_dir / "python",
            "-c",
            "import importlib.resources as r, netjobs_core, netjobs_resources; "
            "print(netjobs_core.__file__); "
            "print((r.files(netjobs_resources) / 'icons' / 'netjobs.svg').is_file())",
        ],
        **kwargs,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(bin_dir.parent) and where[1] == "True"
    no_agent = subprocess.run(
        [bin_dir / "python", "-c", "import agent"], capture_output=True, timeout=60, **kwargs
    )
    assert no_agent.returncode != 0  # no top-level `agent` package installed
    total = seconds + time.monotonic() - started
    print(f"wheel test: built and installed in {seconds:.1f} s, {total:.1f} s in all")
    assert total < BUDGET_S


# -- dev.py: a .venv belongs to the Python that made it ------------------------------

CFG_311 = """\
home = /usr/bin
include-system-site-packages = false
version = 3.11.7
executable = {exe}
command = /usr/bin/python3 -m venv /src/.venv
"""


def _cfg(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyvenv.cfg"
    path.write_text(text)
    return path


def test_a_venv_of_the_running_python_is_kept(tmp_path):
    cfg = _cfg(tmp_path, CFG_311.format(exe=sys.executable))
    assert dev.stale_venv_reason(cfg, (3, 11)) is None


@pytest.mark.parametrize(
    ("text", "running", "reason"),
    [
        (CFG_311, (3, 12), "made by Python 3.11.7, this is Python 3.12"),
        (CFG_311.replace("3.11.7", "3.10.2"), (3, 11), "made by Python 3.10.2"),
        ("home = /usr/bin\n", (3, 11), "made by Python (unknown)"),
        (CFG_311.replace("version", "version_info"), (3, 13), "made by Python 3.11.7"),
    ],
)
def test_a_venv_of_another_python_is_stale(tmp_path, text, running, reason):
    cfg = _cfg(tmp_path, text.format(exe=sys.executable))
    assert reason in dev.stale_venv_reason(cfg, running)


def test_a_venv_whose_python_is_gone_is_stale(tmp_path):
    gone = tmp_path / "old" / "python3.11"
    cfg = _cfg(tmp_path, CFG_311.format(exe=gone))
    assert dev.stale_venv_reason(cfg, (3, 11)) == f"its Python {gone} no longer exists"


def test_a_venv_without_pyvenv_cfg_is_stale(tmp_path):
    assert "is missing" in dev.stale_venv_reason(tmp_path / "pyvenv.cfg")


def test_a_real_venv_of_this_python_is_kept_and_seen_stale_by_another(tmp_path):
    venv.EnvBuilder(with_pip=False).create(tmp_path / "v")
    cfg = tmp_path / "v" / "pyvenv.cfg"
    assert dev.stale_venv_reason(cfg) is None
    assert "this is Python 3.99" in dev.stale_venv_reason(cfg, (3, 99))
