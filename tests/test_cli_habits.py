"""What a run shows while it runs (a terminal, a pipe) and the pdsh/clush habits
(-S, -q, --rerun-failed): real `netjobs` processes against real agents."""

import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest
from test_cli import netjobs, write_config

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]


def on_a_terminal(args, timeout=60.0):
    """`netjobs ARGS` with its standard output and error on a pseudo-terminal (120
    columns): (exit status, everything it wrote, each frame it drew as it came)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data.decode("utf-8", "replace"))
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return code, "".join(chunks)


def progress_lines(screen):
    return re.findall(
        r"test 't': (\d+) running, (\d+) finished of (\d+), (\d+:\d\d) elapsed"
        r"(?:, timeout in (\d+:\d\d))?",
        screen,
    )


def seconds(clock):
    minutes, secs = clock.split(":")
    return int(minutes) * 60 + int(secs)


def test_a_terminal_shows_one_line_redrawn_in_place(tmp_path, agents, token_file):
    cfg = write_config(
        tmp_path, agents, 't:\n{a0}: "sleep 3"\n-timeout: 60s\n{a1}: "sleep 3"\nend\n'
    )
    code, screen = on_a_terminal(["--token-file", token_file, cfg])
    assert code == 0, screen
    seen = progress_lines(screen)
    # Redrawn at least once a second while the commands ran 3 s: every elapsed second.
    elapsed = {e for running, _, total, e, _ in seen if running == "2" and total == "2"}
    assert {"0:01", "0:02"} <= elapsed, screen
    # The next timeout counts down with them (the target with -timeout 60s).
    timeouts = [seconds(t) for r, _, _, _, t in seen if r == "2" and t]
    assert timeouts and timeouts[-1] < timeouts[0] <= 60 and timeouts[-1] >= 55
    # In place: the line is erased and drawn again (rich's Live), then the report.
    assert "\x1b[2K" in screen and "test 't': PASSED" in screen


def test_while_a_host_connects_the_line_says_so(tmp_path, agents, token_file):
    """A host that does not answer holds the start for its connect timeout (the others
    wait for it): the line says how many hosts are still connecting, not only 0 running."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; nothing ever speaks
        body = 't:\n-minhosts: 1\n{a0}: "true"\n127.0.0.1:%d: "true"\nend\n'
        cfg = write_config(tmp_path, agents, body % silent.getsockname()[1])
        code, screen = on_a_terminal(["--token-file", token_file, "--connect-timeout", "3", cfg])
    assert code == 0, screen
    waited = re.findall(
        r"0 running, 0 finished of 2, 1 host connecting, (\d+:\d\d) elapsed", screen
    )
    assert {"0:01", "0:02"} <= set(waited), screen


def test_verbose_on_a_terminal_has_elapsed_and_in_state_columns(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "sleep 2"\nend\n')
    code, screen = on_a_terminal(["-v", "--token-file", token_file, cfg])
    assert code == 0, screen
    assert "in state" in screen and "elapsed" in screen
    assert progress_lines(screen)  # the table's title
    assert re.search(r"running\s*│\s*0:0\d\s*│", screen), screen  # the state's own clock


def test_a_pipe_gets_a_line_as_each_test_starts_and_ends(tmp_path, agents, token_file):
    cfg = write_config(
        tmp_path, agents, 't:\n{a0}: "sleep 1"\n{a1}: "true"\nend\nu:\n{a0}: "true"\nend\n'
    )
    result = netjobs("--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "test '" in line]
    assert [line[line.index("test '") :] for line in lines] == [
        "test 't': starting 2 commands on 2 hosts",
        f"test 't': passed, 2 of 2 commands ran in {lines[1].rsplit(' ', 1)[1]}",
        "test 'u': starting 1 command on 1 host",
        f"test 'u': passed, 1 of 1 command ran in {lines[3].rsplit(' ', 1)[1]}",
    ]
    assert re.fullmatch(r"0:0[1-9]", lines[1].rsplit(" ", 1)[1])
    assert "\x1b" not in result.stderr and "\r" not in result.stderr  # nothing in place


def test_the_end_line_counts_the_commands_that_ran_not_those_that_ended(
    tmp_path, agents, token_file
):
    # Port 1: nothing listens there, so that host's command ends without ever running.
    cfg = write_config(
        tmp_path, agents, 't:\n-minhosts: 1\n{a0}: "true"\n127.0.0.1:1: "true"\nend\n'
    )
    result = netjobs("--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    ends = [line for line in result.stderr.splitlines() if "test 't': passed" in line]
    assert len(ends) == 1 and "passed, 1 of 2 commands ran in 0:0" in ends[0], result.stderr


def test_minus_S_exits_with_the_largest_exit_status(tmp_path, agents, token_file):
    cfg = write_config(
        tmp_path, agents, 't:\n{a0}: "exit 3"\n{a1}: "exit 7"\n{a2}: "kill -9 $$"\nend\n'
    )
    assert netjobs("--token-file", token_file, cfg).returncode == 1
    assert netjobs("-S", "--token-file", token_file, cfg).returncode == 137  # 128 + SIGKILL
    cfg.write_text(cfg.read_text().replace('"kill -9 $$"', '"true"'))
    assert netjobs("-S", "--token-file", token_file, cfg).returncode == 7
    ok = write_config(tmp_path, agents, 't:\n{a0}: "true"\nend\n', name="ok.cfg")
    assert netjobs("-S", "--token-file", token_file, ok).returncode == 0


def test_minus_q_prints_the_verdicts_only(tmp_path, agents, token_file):
    cfg = write_config(
        tmp_path,
        agents,
        't:\n{a0}: "echo hello"\n{a1}: "exit 4"\nend\nu:\n{a0}: "echo there"\nend\n',
    )
    result = netjobs("-q", "--repeat", "2", "--token-file", token_file, cfg)
    assert result.returncode == 1
    out = result.stdout.splitlines()
    verdict = "FAILED (1 of 2 hosts succeeded (-minhosts all); 1 command failed)"
    assert out[:2] == [f"test 't' (repetition 1): {verdict}", f"test 't' (repetition 2): {verdict}"]
    assert "hello" not in result.stdout and "127.0.0.1" not in result.stdout
    assert "test 'u' (repetition 2): PASSED" in out
    assert "test 't'" not in result.stderr  # no progress lines either
    both = netjobs("-q", "-v", "--token-file", token_file, cfg)
    assert both.returncode == 2 and "give one of them" in both.stderr


def test_minus_q_prints_the_metrics_under_each_verdict(tmp_path, agents, token_file):
    """-q is the verdict line and the metrics, nothing else (issue 21, point 8)."""
    cfg = write_config(
        tmp_path,
        agents,
        "t:\n-metric: rate_Bps = rate ([0-9.]+ MiB/s)\n"
        '{a0}: "echo rate 480 MiB/s"\n{a1}: "echo rate 512 MiB/s"\nend\n',
    )
    result = netjobs("-q", "--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "test 't': PASSED",
        "  rate_Bps: 992 MiB/s in all over 2 hosts "
        "(min 480 MiB/s, median 496 MiB/s, max 512 MiB/s)",
    ]
    assert "127.0.0.1" not in result.stdout  # no host lines, no outputs


def test_rerun_failed_runs_the_failed_hosts_again(tmp_path, agents, token_file):
    marks = tmp_path / "marks"
    marks.mkdir()
    cfg = write_config(
        tmp_path,
        agents,
        't:\n{a0}: "touch ' + str(marks) + '/a0-$$"\n'
        '{a1}: "touch ' + str(marks) + '/a1-$$; exit 5"\nend\n'
        'u:\n{a2}: "touch ' + str(marks) + '/a2-$$"\nend\n',
    )
    first = netjobs("--token-file", token_file, cfg)
    assert first.returncode == 1
    folder = re.search(r"results folder: (\S+)", first.stderr).group(1)
    run_id = json.loads((tmp_path / folder / "results.json").read_text())["run_id"]
    for ref in ("last", run_id[:-1], folder):  # the start of an id: unique in the suite
        before = {p.name.split("-")[0] for p in marks.iterdir()}
        again = netjobs("--rerun-failed", ref, "--token-file", token_file)
        assert again.returncode == 1, again.stderr
        assert f"again on the hosts that failed in it: 127.0.0.1:{agents[1].port}" in again.stderr
        assert "test 't': FAILED" in again.stdout and "test 'u'" not in again.stdout
        assert f"127.0.0.1:{agents[0].port}" not in again.stdout
        after = sorted(p.name.split("-")[0] for p in marks.iterdir())
        assert before == {"a0", "a1", "a2"} and after.count("a1") > 1
    assert after.count("a0") == after.count("a2") == 1  # never run again
    good = netjobs("--token-file", token_file, cfg.with_name("ok.cfg"))  # no such file
    assert good.returncode == 2 and "ok.cfg" in good.stderr
    ok = write_config(tmp_path, agents, 't:\n{a0}: "true"\nend\n', name="ok.cfg")
    assert netjobs("--token-file", token_file, ok).returncode == 0
    nothing = netjobs("--rerun-failed", "last", "--token-file", token_file)
    assert nothing.returncode == 0 and "nothing to run" in nothing.stdout
    unknown = netjobs("--rerun-failed", "nope", "--token-file", token_file)
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr


def test_rerun_failed_after_stop_on_failure_runs_the_repetition_that_failed(
    tmp_path, agents, token_file
):
    """--repeat 2 --stop-on-failure: repetition 1 fails, repetition 2 is not run (no
    hosts). The failed one is what --rerun-failed runs again, not nothing."""
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "true"\n{a1}: "exit 5"\nend\n')
    first = netjobs("--repeat", "2", "--stop-on-failure", "--token-file", token_file, cfg)
    assert first.returncode == 1
    assert "test 't' (repetition 2): NOT RUN" in first.stdout
    again = netjobs("--rerun-failed", "last", "--token-file", token_file)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"again on the hosts that failed in it: 127.0.0.1:{agents[1].port}" in again.stderr
    assert "test 't': FAILED" in again.stdout
    assert f"127.0.0.1:{agents[0].port}" not in again.stdout


def test_demo_picks_free_ports_when_the_old_ones_are_taken():
    import socket

    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 16201))  # the port demo.cfg names
        taken.listen()
    except OSError:
        pass  # another program holds it: as good
    try:
        result = netjobs("demo", timeout=90)
    finally:
        taken.close()
    assert result.returncode == 0, result.stdout + result.stderr
    ports = re.search(r"ports (\d+), (\d+), (\d+)", result.stderr).groups()
    assert "16201" not in ports and "test 'start-together': PASSED" in result.stdout
    assert f"127.0.0.1:{ports[0]}" in result.stdout
