"""The edges a user of `netjobs` hits (issue 8, points 6 and 12-15): real
processes, real agents, real pipes."""

import ast
import base64
import errno
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import netjobs, write_config

from netjobs_core.client import _describe_os_error
from netjobs_core.local_agents import start_agent
from netjobs_core.wire.address import Address

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[1]
ISO_WITH_OFFSET = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d"


def _token(directory: Path) -> Path:
    path = directory / "token"
    path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return _token(tmp_path_factory.mktemp("token"))


@pytest.fixture(scope="module")
def agents(token_file):
    started = [start_agent(token_file) for _ in range(2)]
    yield started
    for agent in started:
        agent.stop()


def _argv(*args) -> list[str]:
    return [sys.executable, "-m", "netjobs_core.cli", *map(str, args)]


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# -- point 6: what reaches a terminal is escaped, the files keep the bytes ----------


def test_control_characters_are_escaped_on_the_terminal_not_in_the_files(
    tmp_path, agents, token_file
):
    cfg = write_config(tmp_path, agents, "t:\n{a0}: \"printf '\\033[2J\\007\\233'\"\nend\n")
    out = tmp_path / "r.json"
    result = netjobs("-v", "-l", "--json", out, "--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    assert "stdout: \\x1b[2J\\x07\\x9b" in result.stdout
    for stream in (result.stdout, result.stderr):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", stream)
    command = json.loads(out.read_text())["tests"][0]["hosts"][0]["commands"][0]
    assert base64.b64decode(command["stdout_base64"]) == b"\x1b[2J\x07\x9b"
    (log,) = tmp_path.glob("run.cfg_t_*.log")
    assert b"| \\x1b[2J\\x07\\x9b\n" in log.read_bytes()  # as the terminal shows it


def test_the_log_shows_output_escaped_as_the_terminal_does(tmp_path, agents, token_file):
    """NUL, ESC, CR and invalid UTF-8 in an output: the -l log's lines are the terminal
    report's (escaped, tab kept), the output files keep the bytes."""
    cfg = write_config(
        tmp_path,
        agents,
        "t:\n{a0}: \"printf 'bin\\377\\000\\001zz\\tT\\n'\"\n"
        "{a1}: \"printf '\\033[31mred\\033[0m\\r\\nCR\\rX\\n'\"\nend\n",
    )
    out = tmp_path / "r.json"
    result = netjobs("-v", "-l", "--json", out, "--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    (log,) = tmp_path.glob("run.cfg_t_*.log")
    data = log.read_bytes()
    assert not re.search(b"[\x00-\x08\x0b-\x1f\x7f]", data)  # only tab and newline
    logged = data.decode("utf-8")
    for line in ("bin\\xff\\x00\\x01zz\tT", "\\x1b[31mred\\x1b[0m\\x0d", "CR\\x0dX"):
        assert f"  | {line}\n" in logged
        assert f"stdout: {line}\n" in result.stdout  # the same line on the terminal
    hosts = json.loads(out.read_text())["tests"][0]["hosts"]
    outputs = {base64.b64decode(h["commands"][0].get("stdout_base64", "")) for h in hosts}
    assert b"bin\xff\x00\x01zz\tT\n" in outputs  # the results keep the exact bytes


def test_live_table_shows_peer_text_as_written():
    from rich.console import Console

    from netjobs_core.events import TestStarted
    from netjobs_core.report import LiveTable
    from netjobs_core.results import HostResult, HostState, TestResult

    test = TestResult("t\x1b[2J", None)
    test.hosts.append(HostResult(Address("10.0.0.1"), HostState.FAILED, error="[bold]x\x1b[2J"))
    table = LiveTable()
    table._test = test
    console = Console(record=True, width=200, force_terminal=True, color_system=None)
    console.print(table._render())
    shown = console.export_text()
    assert "[bold]x\\x1b[2J" in shown and "t\\x1b[2J" in shown
    table.observe(TestStarted(test))  # a real Live starts and stops without error
    table.close()


# -- point 12: output paths checked before anything runs; a late failure is an exit --


@pytest.mark.parametrize(
    ("target", "words"),
    [("missing/r.json", "does not exist"), (".", "it is a directory")],
)
def test_unwritable_json_refused_before_anything_runs(tmp_path, agents, token_file, target, words):
    marker = tmp_path / "ran"
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "touch ' + str(marker) + '"\nend\n')
    result = netjobs("--json", tmp_path / target, "--token-file", token_file, cfg)
    assert result.returncode == 2
    assert "cannot write the --json file" in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr and not marker.exists()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ("--json", "r.out", "--csv", "./r.out"),
            "the --json file and the --csv file are the same",
        ),
        (("--json", "run.cfg"), "the --json file run.cfg is the config file"),
        (("--csv", "link.cfg"), "the --csv file link.cfg is the config file"),
    ],
)
def test_result_files_that_would_replace_each_other_or_the_config_are_refused(
    tmp_path, agents, token_file, flags, words
):
    """`--json r.out --csv r.out` kept only the CSV; `--json run.cfg` replaced the config
    with the results: both were found after the run, with the exit status 0."""
    marker = tmp_path / "ran"
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "touch ' + str(marker) + '"\nend\n')
    config_text = cfg.read_text()
    (tmp_path / "link.cfg").symlink_to(cfg)
    result = netjobs(*flags, "--token-file", token_file, "run.cfg", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"netjobs: {words}")
    assert "Traceback" not in result.stderr and not marker.exists()
    assert cfg.read_text() == config_text and not (tmp_path / "r.out").exists()


def test_a_long_label_still_gets_its_log(tmp_path, agents, token_file):
    """A label may be of any length; with -l its log's name was longer than a file
    name may be (255 bytes): 'NOT SAVED: the log of test ...: File name too long', exit 1."""
    label = "fio-randread-4k-qd32-" * 12  # 252 characters
    cfg = write_config(tmp_path, agents, label + ':\n{a0}: "echo hi"\nend\n')
    result = netjobs("-l", "--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    assert "NOT SAVED" not in result.stderr and "Traceback" not in result.stderr
    (log,) = tmp_path.glob("run.cfg_fio-randread-4k-qd32-*.log")
    assert len(log.name) == 255 and "  | hi\n" in log.read_text()


def test_unwritable_directory_is_refused(tmp_path):
    from netjobs_core.session import UsageError, check_writable

    with pytest.raises(UsageError, match="is not writable"):
        check_writable("/proc/netjobs.log", "the -l logs")  # not even root writes there
    with pytest.raises(UsageError, match="is not a directory"):
        (tmp_path / "file").write_text("")
        check_writable(tmp_path / "file" / "r.json", "the --json file")
    check_writable(tmp_path / "fine.json", "the --json file")


def test_results_not_saved_at_the_end_exit_non_zero_and_say_what(tmp_path, agents, token_file):
    outdir, cfgdir = tmp_path / "out", tmp_path / "cfg"
    outdir.mkdir()
    cfgdir.mkdir()
    cfg = write_config(cfgdir, agents, f't:\n{{a0}}: "rm -rf {outdir} {cfgdir}; echo gone"\nend\n')
    result = netjobs("-l", "--json", outdir / "r.json", "--token-file", token_file, cfg)
    assert result.returncode == 1
    assert "test 't': PASSED" in result.stdout and "stdout: gone" in result.stdout
    not_saved = next(line for line in result.stderr.splitlines() if "NOT SAVED" in line)
    assert "the log of test 't'" in not_saved and str(outdir / "r.json") in not_saved
    assert "Traceback" not in result.stderr


# -- point 13: a closed standard output stops the printing, not the run ------------


def test_closed_stdout_stops_printing_not_the_run(tmp_path, agents, token_file):
    closed = tmp_path / "closed"
    cfg = write_config(
        tmp_path,
        agents,
        'first:\n{a0}: "echo one"\nend\n'
        f'second:\n{{a0}}: "while [ ! -e {closed} ]; do sleep 0.02; done; echo two"\n'
        "-timeout: 30s\nend\n"
        'third:\n{a1}: "echo three"\nend\n',
    )
    out = tmp_path / "r.json"
    controller = subprocess.Popen(
        _argv("-l", "--json", out, "--token-file", token_file, cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert controller.stdout.readline().startswith("test 'first': PASSED")
        controller.stdout.close()  # `| head -1`
        closed.touch()
        _, stderr = controller.communicate(timeout=60)
    finally:
        controller.kill()
        controller.wait()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert controller.returncode == 0, stderr
    tests = json.loads(out.read_text())["tests"]
    assert [(t["label"], t["status"]) for t in tests] == [
        ("first", "passed"),
        ("second", "passed"),
        ("third", "passed"),
    ]
    assert len(list(tmp_path.glob("run.cfg_*.log"))) == 3


# -- point 14 and the signal's name: a busy agent is not ready ---------------------


def test_busy_agent_is_not_ready_and_sigterm_is_named(tmp_path, agents, token_file):
    marker = tmp_path / "begun"
    cfg = write_config(
        tmp_path, agents, 'long:\n{a0}: "touch ' + str(marker) + '; sleep 60"\nend\n'
    )
    out = tmp_path / "r.json"
    controller = subprocess.Popen(
        _argv("--json", out, "--token-file", token_file, cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(marker)
        check = netjobs("check", "--token-file", token_file, cfg)
        controller.send_signal(signal.SIGTERM)
        stdout, stderr = controller.communicate(timeout=30)
    finally:
        controller.kill()
        controller.wait()
    assert check.returncode == 1, check.stdout + check.stderr
    assert "BUSY" in check.stdout and "busy with test 'long' for 127.0.0.1:" in check.stdout
    assert "0 of 1 agents ready" in check.stdout
    assert controller.returncode == 1
    assert "stopping on SIGTERM" in stderr and "Ctrl-C" not in stderr + stdout
    test = json.loads(out.read_text())["tests"][0]
    assert test["status"] == "aborted" and test["reason"] == "stopped by SIGTERM"


# -- point 15: messages ------------------------------------------------------------


def test_refused_host_says_so_with_its_address(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n-minhosts: 1\n{a0}: "true"\n127.0.0.1:1: "x"\nend\n')
    result = netjobs("--token-file", token_file, cfg)
    # The line names the host; its error does not again (the JSON's error does).
    assert "  127.0.0.1:1 (1 host)  error (connection refused (is the agent" in result.stdout
    assert "Connect call failed" not in result.stdout


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (OSError(errno.EHOSTUNREACH, "Connect call failed ('10.0.0.9', 7)"), "no route to host"),
        (OSError(errno.ENETUNREACH, "Connect call failed ('10.0.0.9', 7)"), "network unreachable"),
        (OSError(errno.ETIMEDOUT, "Connect call failed ('10.0.0.9', 7)"), "timed out"),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 7), "
                "[Errno 111] Connect call failed ('127.0.0.1', 7)"
            ),
            "connection refused",
        ),
    ],
)
def test_connect_errors_are_worded_with_the_address(exc, words):
    text = _describe_os_error(exc, Address("10.0.0.9", 7))
    assert words in text and "10.0.0.9:7" in text and "Connect call failed" not in text


def test_a_token_copy_saved_by_notepad_still_matches(tmp_path, agents, token_file):
    """Notepad saves UTF-8 with a byte order mark and CRLF: the controller sent the mark
    as part of the token, and every agent refused it ('does not hold our token')."""
    copy = tmp_path / "token"
    copy.write_bytes(b"\xef\xbb\xbf" + token_file.read_bytes().strip() + b"\r\n")
    copy.chmod(0o600)
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "echo hi"\nend\n')
    result = netjobs("--token-file", copy, cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test 't': PASSED" in result.stdout and "Traceback" not in result.stderr


def test_wrong_token_on_each_host_says_so_and_the_others_say_why(tmp_path, agents, token_file):
    other = _token(tmp_path)
    strangers = [start_agent(other) for _ in range(2)]
    try:
        cfg = tmp_path / "token.cfg"
        cfg.write_text(
            f't:\n127.0.0.1:{agents[0].port}: "true"\n'
            + "".join(f'127.0.0.1:{a.port}: "true"\n' for a in strangers)
            + "end\n"
        )
        out = tmp_path / "r.json"
        result = netjobs("--json", out, "--token-file", token_file, cfg)
    finally:
        for agent in strangers:
            agent.stop()
    assert result.returncode == 1
    good, *bad = json.loads(out.read_text())["tests"][0]["hosts"]
    assert [h["error"] for h in bad] == [
        "authentication failed: the agent does not hold our token (an agent reads "
        "its token file when it starts: restart it after copying a token there)"
    ] * 2
    assert good["error"].startswith("test aborted: quorum lost because 127.0.0.1:")
    assert "authentication failed" in good["error"]


def test_minhosts_zero_is_one_rule(tmp_path, agents, token_file):
    cfg = write_config(
        tmp_path,
        agents,
        'failing:\n-minhosts: 0\n{a0}: "exit 3"\nend\n'
        'unreachable:\n-minhosts: 0\n127.0.0.1:1: "true"\nend\n',
    )
    out = tmp_path / "r.json"
    netjobs("--json", out, "--token-file", token_file, cfg)
    tests = json.loads(out.read_text())["tests"]
    assert [t["status"] for t in tests] == ["passed", "passed"]
    assert all(t["reason"].startswith("0 of 1 host succeeded (-minhosts 0)") for t in tests)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
def test_connect_timeout_must_be_positive_and_finite(tmp_path, value):
    cfg = tmp_path / "c.cfg"
    cfg.write_text('t:\nlocalhost: "true"\nend\n')
    for args in ([f"--connect-timeout={value}", cfg], ["check", f"--connect-timeout={value}", cfg]):
        result = netjobs(*args)
        assert result.returncode == 2 and "--connect-timeout" in result.stderr
        assert "Traceback" not in result.stderr


def test_json_dash_is_standard_output(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "echo hi"\nend\n')
    # In tmp_path, where a file named '-' would show; PYTHONPATH: this checkout's code.
    result = netjobs(
        "--json", "-", "--token-file", token_file, cfg, cwd=tmp_path, env={"PYTHONPATH": str(REPO)}
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tests"][0]["status"] == "passed"
    assert "test 't': PASSED" in result.stderr and not (tmp_path / "-").exists()


def test_timestamps_carry_their_offset(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "true"\nend\n')
    result = netjobs("-v", "-l", "--token-file", token_file, cfg, env={"TZ": "Asia/Kolkata"})
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if "[t]" in line]
    assert progress and all(re.match(ISO_WITH_OFFSET + r" \[t\] ", line) for line in progress)
    assert "+05:30 [t]" in progress[0]
    (log,) = tmp_path.glob("run.cfg_t_*.log")
    assert re.search(r"# started " + ISO_WITH_OFFSET, log.read_text())
    assert "+05:30" in log.read_text()


@pytest.mark.parametrize(("flag", "shown"), [("--help", "usage: netjobs-gui"), ("--version", "3.")])
def test_gui_help_and_version_without_qt(flag, shown):
    # A platform plugin that does not exist: starting Qt would abort.
    result = subprocess.run(
        [sys.executable, "-m", "netjobs_gui", flag],
        capture_output=True,
        text=True,
        timeout=30,
        env={"QT_QPA_PLATFORM": "nonexistent", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout


# -- the Python version, checked before anything newer is imported -----------------


def test_too_old_python_is_named():
    from netjobs_core.wire.python_version import MIN_PYTHON, python_too_old

    message = python_too_old((3, 9, 2, "final", 0))
    assert message and "needs Python 3.11 or newer; this is Python 3.9.2" in message
    assert python_too_old((*MIN_PYTHON, 0)) is None and python_too_old() is None


@pytest.mark.parametrize(
    ("module", "prog"),
    [("agent", "netjobs-agent"), ("netjobs_core.cli", "netjobs"), ("netjobs_gui", "netjobs-gui")],
)
def test_entry_points_check_the_version_first(module, prog):
    fake = (
        "import sys, runpy; sys.version_info = (3, 8, 10, 'final', 0); "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", fake], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert result.returncode == 2
    assert result.stderr == f"{prog}: needs Python 3.11 or newer; this is Python 3.8.10 " + (
        f"({sys.executable})\n"
    )


@pytest.mark.parametrize(
    "path",
    [
        "agent/__init__.py",
        "agent/__main__.py",
        "netjobs_core/__init__.py",
        "netjobs_core/cli.py",
        "netjobs_core/wire/__init__.py",
        "netjobs_core/wire/python_version.py",
        "netjobs_gui/__init__.py",
        "netjobs_gui/__main__.py",
    ],
)
def test_what_runs_before_the_check_compiles_on_old_pythons(path):
    ast.parse((REPO / path).read_text(), path, feature_version=(3, 7))


# `netjobs` leaves without the interpreter's teardown once main has returned: its exit
# status, what it printed and its exit handlers are all still there; with another
# thread alive it exits as Python does, after that thread.
_COMMAND = """
import atexit, sys, threading, time
from netjobs_core import cli
atexit.register(print, "exit handler ran")
def main():
    print("printed by main", end="")  # no newline: still buffered when main returns
    if sys.argv[1] == "thread":
        threading.Thread(target=lambda: (time.sleep(0.2), print(" thread done"))).start()
    return 3
cli.main = main
cli.command()
"""


@pytest.mark.parametrize("way", ["alone", "thread"])
def test_the_command_exits_with_its_status_output_and_exit_handlers(way: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, way], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    thread = " thread done\n" if way == "thread" else ""
    assert done.stdout == f"printed by main{thread}exit handler ran\n"
