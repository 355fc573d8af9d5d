"""What an agent says reaches a person escaped (issue 18, point 11): bidirectional
controls as C0/C1 in everything shown, the agent's words about itself escaped in the
-l log, while the output files keep the exact bytes. Real agents, real `netjobs`."""

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from agent_harness import start_agent

from netjobs_core import text

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]

REPO = Path(__file__).resolve().parents[1]

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# What a terminal or a viewer acts on: C0 but tab and newline, DEL, C1, bidi controls.
SHOWN_RAW = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI}\u2028\u2029]")
# A compromised agent's words about itself: a title (OSC 0), the clipboard (OSC 52),
# a carriage return and a newline that would forge a log line, a right-to-left override.
HOSTNAME = "evil\x1b]0;owned\x07\r# host 10.0.0.9: done\n\u202etxt.exe"
VERSION = "2.0\x1b]52;c;ZXZpbA==\x07\u2066"
# The command's output: every bidi control, in UTF-8, then a newline.
OUTPUT = ("name" + BIDI + "gnp.exe\n").encode()


def _octal(data: bytes) -> str:
    return "".join(f"\\{byte:03o}" for byte in data)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o600)
    return path


@pytest.fixture
def hostile_agent(tmp_path: Path, token_file: Path):
    """A real agent that calls itself HOSTNAME and reports VERSION (a compromised VM)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import socket
            import netjobs_core
            socket.gethostname = lambda: {HOSTNAME!r}
            netjobs_core.__version__ = {VERSION!r}
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    with start_agent(token_file, env=env) as agent:
        yield agent


def _netjobs(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),  # this tree's code, installed or not
    )


def test_printable_escapes_bidirectional_controls_as_c0_and_c1() -> None:
    shown = text.printable(f"a\u202eb\x1b[2J\x9b\t{BIDI}\u2028\u2029\nc é \u200b")
    assert not SHOWN_RAW.search(shown)
    assert shown.startswith("a\\u202eb\\x1b[2J\\x9b\t\\u061c\\u200e\\u200f\\u202a")
    assert shown.endswith("\\u2069\\u2028\\u2029\nc é \u200b")  # tab, newline, letters kept
    assert text.field("a\tb\nc\r\u202e") == "a\\x09b\\x0ac\\x0d\\u202e"


def test_bidi_output_is_escaped_on_the_terminal_and_kept_in_the_files(
    tmp_path, hostile_agent, token_file
):
    cfg = tmp_path / "run.cfg"
    cfg.write_text(f"t:\n127.0.0.1:{hostile_agent.port}: \"printf '{_octal(OUTPUT)}'\"\nend\n")
    runs = tmp_path / "runs"
    result = _netjobs(
        "-v", "-l", "--json", "r.json", "--results", runs, "--token-file", token_file, cfg,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert not SHOWN_RAW.search(stream), stream
    assert "stdout: name\\u061c\\u200e\\u200f\\u202a" in result.stdout
    assert "\\u2069gnp.exe" in result.stdout
    # The files keep the bytes: the command's own file, the JSON document.
    (whole,) = runs.rglob("cmd0.stdout")
    assert whole.read_bytes() == OUTPUT
    command = json.loads((tmp_path / "r.json").read_text())["tests"][0]["hosts"][0]["commands"][0]
    assert command["stdout"].encode() == OUTPUT  # valid UTF-8: JSON text, not escaped
    # The log: the agent's words about itself escaped, one line; the output escaped too,
    # as the terminal shows it.
    (log,) = tmp_path.glob("run.cfg_t_*.log")
    lines = log.read_text(encoding="utf-8").split("\n")
    (host_line,) = (line for line in lines if line.startswith("# host "))
    assert f"agent {text.field(VERSION)} on {text.field(HOSTNAME)}," in host_line
    assert not any(line.startswith("# host 10.0.0.9") for line in lines)  # no forged line
    for line in lines:
        assert not SHOWN_RAW.search(line), line
    assert f"  | {text.printable(OUTPUT.decode().rstrip())}" in lines


def test_check_shows_what_the_agent_says_of_itself_on_one_escaped_line(
    tmp_path, hostile_agent, token_file
):
    cfg = tmp_path / "run.cfg"
    cfg.write_text(f't:\n127.0.0.1:{hostile_agent.port}: "true"\nend\n')
    result = _netjobs("check", "--token-file", token_file, cfg, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not SHOWN_RAW.search(result.stdout + result.stderr)
    (line,) = [line for line in result.stdout.splitlines() if "agent " in line]
    assert f"agent {text.field(VERSION)} on {text.field(HOSTNAME)} (" in line
