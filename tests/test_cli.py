"""The `netjobs` command as a user runs it: real processes, real agents."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from agent_harness import wait_gone_sync
from schema_check import RESULTS_SCHEMA

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]


def netjobs(*args, cwd=None, stdin=subprocess.DEVNULL, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=stdin,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write_config(tmp_path, agents, body, name="run.cfg"):
    path = tmp_path / name
    path.write_text(body.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)}))
    return path


def test_simulate_prints_the_plan_and_contacts_nobody(tmp_path):
    cfg = tmp_path / "sim.cfg"
    cfg.write_text(
        't1:\n-generaltimeout: 5m\n-minhosts: 1\nhost-a: "fio x"\n-timeout: 2h\n'
        '[::1]:16200: "echo #1"\nend\n'
    )
    result = netjobs("-s", cfg)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "test 't1'" in out and "-minhosts 1" in out
    assert "host-a: 'fio x'  timeout 7200s" in out
    assert "[::1]:16200: 'echo #1'  timeout 300s" in out
    assert "nothing was contacted" in out


@pytest.mark.parametrize("flags", [["-s"], []])
def test_config_error_names_file_and_line(tmp_path, flags):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text('t:\nhost: "x"\n-minhosts: 1\nend\n')
    result = netjobs(*flags, cfg)
    assert result.returncode == 2
    assert f"{cfg}:3:" in result.stderr and "-minhosts" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_with_closed_stdin():
    result = netjobs()
    assert result.returncode == 2
    assert "standard input is closed" in result.stderr


def test_config_path_asked_on_stdin(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "echo asked"\nend\n')
    result = subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", "--token-file", str(token_file)],
        input=f"{cfg}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Path to the NetJobs config file" in result.stderr
    assert "stdout: asked" in result.stdout


@pytest.mark.parametrize("flags", [["-vl"], ["-v", "-l"]])
def test_verbose_and_logs(tmp_path, agents, token_file, flags):
    cfg = write_config(
        tmp_path,
        agents,
        'first:\n{a0}: "echo hello; echo oops >&2"\n{a1}: "exit 4"\nend\n'
        "second:\n{a1}: \"printf 'a\\nb\\n'\"\nend\n",
    )
    result = netjobs(*flags, "--token-file", token_file, cfg)
    assert result.returncode == 1  # 'first' failed
    assert "[first] 127.0.0.1" in result.stderr and "ready (rtt" in result.stderr
    assert "test 'first': FAILED" in result.stdout and "test 'second': PASSED" in result.stdout
    logs = sorted(tmp_path.glob("run.cfg_*.log"))
    assert [
        re.match(r"run\.cfg_(\w+)_\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d+\.log$", p.name).group(1)
        for p in logs
    ] == ["first", "second"]
    first = next(p for p in logs if "_first_" in p.name).read_text()
    assert f"127.0.0.1:{agents[0].port}\techo hello; echo oops >&2\tOK (exit 0)" in first
    assert "  | hello" in first and "  | oops" in first
    assert f"127.0.0.1:{agents[1].port}\texit 4\tFAILED (exit 4)" in first
    assert "\n# released within " in first  # the report's start lines
    secret = token_file.read_text().strip()
    assert all(secret not in text for text in (result.stdout, result.stderr, first))


def test_json_document(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "printf \'\\377ok\'"\n{a1}: "true"\nend\n')
    out = tmp_path / "results.json"
    result = netjobs("--json", out, "--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    RESULTS_SCHEMA.validate(document)
    test = document["tests"][0]
    assert test["status"] == "passed" and test["start_spread_ms"] >= 0
    assert test["start_spread_uncertainty_ms"] >= 0
    host = test["hosts"][0]
    for key in ("target", "status", "rtt_ms", "clock_offset_ms", "start_offset_ms", "commands"):
        assert key in host
    command = host["commands"][0]
    assert command["stdout"] == "\\xffok" and command["stdout_base64"] == "/29r"
    assert command["started_at"] > 1.7e9 and command["duration_s"] >= 0
    assert command["exit_code"] == 0 and command["status"] == "ok"
    assert token_file.read_text().strip() not in out.read_text() + result.stdout + result.stderr


def test_no_token_is_a_clear_error(tmp_path):
    cfg = tmp_path / "c.cfg"
    cfg.write_text('t:\nlocalhost: "true"\nend\n')
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "NETJOBS_TOKEN": ""}
    result = netjobs(cfg, env=env)
    assert result.returncode == 2 and "no token" in result.stderr


def test_check_reports_each_agent(tmp_path, agents, token_file):
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "true"\n{a1}: "true"\n127.0.0.1:1: "x"\nend\n')
    result = netjobs("check", "--token-file", token_file, cfg)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert sum(" OK " in line and "rtt" in line and "wall clock" in line for line in lines) == 2
    (refused,) = [line for line in lines if "127.0.0.1:1 " in line]
    assert "FAILED  connection refused (is the agent running" in refused  # named once
    assert "2 of 3 agents ready" in result.stdout


def test_controller_killed_mid_run_agent_kills_its_jobs(tmp_path, agents, token_file):
    pid_file = tmp_path / "pid"
    cfg = write_config(
        tmp_path, agents, 't:\n{a0}: "echo $$ > ' + str(pid_file) + '; exec sleep 60"\nend\n'
    )
    controller = subprocess.Popen(
        [sys.executable, "-m", "netjobs_core.cli", "--token-file", str(token_file), str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        job = int(pid_file.read_text())
        controller.send_signal(signal.SIGKILL)
        controller.wait()
        # the agent's grace is 2 s
        assert not wait_gone_sync([job], timeout=10), "the agent left the job running"
    finally:
        controller.kill()
        controller.wait()


def test_ctrl_c_stops_cleanly_and_keeps_results(tmp_path, agents, token_file):
    marker = tmp_path / "begun"
    cfg = write_config(
        tmp_path, agents, 't:\n{a0}: "echo begun; touch ' + str(marker) + '; sleep 60"\nend\n'
    )
    out = tmp_path / "r.json"
    controller = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netjobs_core.cli",
            "--token-file",
            str(token_file),
            "--json",
            str(out),
            "-l",
            str(cfg),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        # "begun" was written before the marker: it may still be on its way, but the
        # agent sends a killed command's output before its exit, which the stop awaits.
        controller.send_signal(signal.SIGINT)
        stdout, _ = controller.communicate(timeout=30)
    finally:
        controller.kill()
    assert controller.returncode == 1
    assert "stopped by user" in stdout and "stdout: begun" in stdout
    test = json.loads(out.read_text())["tests"][0]
    assert test["status"] == "aborted" and test["hosts"][0]["commands"][0]["status"] == "killed"
    assert len(list(tmp_path.glob("run.cfg_t_*.log"))) == 1


def test_demo_runs_for_real():
    result = subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test 'start-together': PASSED" in result.stdout
    assert "released within" in result.stdout
    assert "agents stopped" in result.stderr


@pytest.mark.parametrize(
    ("flags", "statuses"),
    [
        ([], ["passed", "failed", "passed"]),
        (["--stop-on-failure"], ["passed", "failed", "pending"]),
    ],
)
def test_tests_run_in_file_order_and_stop_on_failure(tmp_path, agents, token_file, flags, statuses):
    cfg = write_config(
        tmp_path, agents, 'a:\n{a0}: "true"\nend\nb:\n{a0}: "false"\nend\nc:\n{a1}: "true"\nend\n'
    )
    out = tmp_path / "r.json"
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}  # a history of this run alone
    result = netjobs(*flags, "--json", out, "--token-file", token_file, cfg, env=data)
    assert result.returncode == 1
    tests = json.loads(out.read_text())["tests"]
    assert [t["label"] for t in tests] == ["a", "b", "c"]
    assert [t["status"] for t in tests] == statuses
    if flags:  # the test not reached is in the report, the JSON and the history, with why
        assert tests[2]["reason"] == "test 'b' failed, --stop-on-failure" and not tests[2]["hosts"]
        assert "test 'c': NOT RUN (test 'b' failed, --stop-on-failure)" in result.stdout
        assert "  1 passed, 1 failed, 1 not run  " in netjobs("history", env=data).stdout
