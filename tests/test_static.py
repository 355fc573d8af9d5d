"""The type checker and the linter, as part of the test command (what CI runs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=280)


def test_mypy_is_clean():
    # Configured in pyproject.toml: netjobs_core, agent and netjobs_gui at mypy's defaults,
    # netjobs_core.wire and agent as --strict has them.
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    shutil.which("ruff", path=str(Path(sys.executable).parent)) is None,
    reason="ruff is not installed next to this Python",
)
def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff is not None
    lint = run(ruff, "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatted = run(ruff, "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_the_linters_are_pinned_to_the_versions_installed(tool):
    # A new release may flag what this one passes: the test extra names one version,
    # and this suite runs that one (dev.py reinstalls when pyproject.toml changes).
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    pins = [req for req in extra if re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0] == tool]
    assert pins == [f"{tool}=={metadata.version(tool)}"]
