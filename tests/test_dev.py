"""dev.py, the two commands of a newcomer's first minutes, without installing anything:
apt-get and pip are recorded, not run."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

import dev  # the repository root is on sys.path (tests/conftest.py)


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """What dev.py would run; every Debian package missing, as root on Debian."""
    ran: list[list[str]] = []
    monkeypatch.setattr(dev, "run", lambda *argv, **kw: ran.append(list(map(str, argv))))
    monkeypatch.setattr(dev, "missing_debs", lambda names: list(names))
    monkeypatch.setattr(dev.os, "geteuid", lambda: 0)
    return ran


def test_test_installs_what_the_whole_suite_needs_and_waits_for_the_dpkg_lock(
    monkeypatch: pytest.MonkeyPatch, commands: list[list[str]]
) -> None:
    monkeypatch.setattr(dev, "ensure_venv", lambda extras: None)
    monkeypatch.setattr(
        dev.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0)
    )
    assert dev.main(["test"]) == 0
    update, install = commands
    for apt in (update, install):
        assert apt[:3] == ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    for name in ("iproute2", "openssh-server", "faketime", "libegl1"):
        assert name in install


def test_demo_runs_no_apt_get_and_names_the_window_libraries(
    monkeypatch: pytest.MonkeyPatch, commands: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dev, "ensure_venv", lambda extras: None)
    real_run = subprocess.run
    monkeypatch.setattr(
        dev.subprocess,
        "run",
        lambda argv, **kw: (
            real_run(argv, **kw) if "--print-debs" in argv else subprocess.CompletedProcess(argv, 0)
        ),
    )
    assert dev.main(["demo"]) == 0
    assert commands == []  # no apt-get
    said = capsys.readouterr().out
    assert "for a netjobs-gui window: sudo apt-get install" in said
    assert "libxcb-cursor0" in said and "libegl1" in said


def test_a_venv_without_pip_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / ".venv"
    venv.EnvBuilder(with_pip=False).create(folder)  # as a failed first run leaves it
    monkeypatch.setattr(dev, "VENV", folder)
    monkeypatch.setattr(dev, "PYTHON", folder / "bin" / "python")
    assert dev.venv_problem() == "it has no pip (made without python3-venv?)"


def test_a_venv_that_cannot_be_made_names_python3_venv_and_leaves_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / ".venv"
    monkeypatch.setattr(dev, "VENV", folder)
    monkeypatch.setattr(dev, "PYTHON", folder / "bin" / "python")

    def no_ensurepip(self: venv.EnvBuilder, env_dir: str) -> None:
        Path(env_dir).mkdir()
        raise subprocess.CalledProcessError(1, ["python", "-m", "ensurepip"])

    monkeypatch.setattr(venv.EnvBuilder, "create", no_ensurepip)
    with pytest.raises(SystemExit, match="python3-venv"):
        dev.ensure_venv("test")
    assert not folder.exists()  # a rerun starts afresh
