"""One run, five views, one truth: real runs of `netjobs` on real agents, their live
report, `-l` logs, --json, --csv, `history` and `show` (tests/view_check.py) agreeing
on every fact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_harness import agent_env
from schema_check import RESULTS_SCHEMA
from view_check import disagreements

pytestmark = [pytest.mark.posix, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "netjobs_core.cli", *args]
    env = agent_env({"PYTHONPATH": str(REPO)})
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def _start(tmp_path: Path, token_file: Path, *flags: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "netjobs_core.cli", "--token-file", str(token_file), "-l"]
    argv += ["--json", "out.json", "--csv", "out.csv", "--results", "runs", *flags, "t.cfg"]
    env = agent_env({"PYTHONPATH": str(REPO)})
    return subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _views_of(tmp_path: Path, console: str) -> list[str]:
    document = json.loads((tmp_path / "out.json").read_text())
    RESULTS_SCHEMA.validate(document)
    run_id = document["run_id"]
    history = _cli("history", "-n", "50", cwd=tmp_path).stdout.splitlines()
    return disagreements(
        console,
        sorted(tmp_path.glob("t.cfg_*.log")),
        document,
        (tmp_path / "out.csv").read_text(),
        _cli("show", run_id, cwd=tmp_path).stdout,
        _cli("show", run_id, "--json", cwd=tmp_path).stdout,
        _cli("show", run_id, "--csv", cwd=tmp_path).stdout,
        next(line for line in history if line.startswith(run_id)),
    )


def test_a_repeat_stopped_by_a_failure_reads_the_same_everywhere(agents, token_file, tmp_path):
    # Repetition 2 fails (its second command), repetition 3 and the next test are NOT
    # RUN; a metric one failed host matched, one host did not; a -collect that
    # matches nothing. Before: `show` said repetition 3's NOT RUN before the
    # repetitions' summary, the live report after it.
    a, b, c = (f"127.0.0.1:{agent.port}" for agent in agents)
    count = tmp_path / "count"
    (tmp_path / "t.cfg").write_text(
        "flaky:\n-metric: n = n=([0-9]+)\n"
        f"-collect: {tmp_path}/none-*.log\n"
        f'{a}: "echo n=1; sleep 0.2"\n'
        f'{b}: "echo x >> {count}; c=$(wc -l < {count}); echo n=$c; test $c -ne 2 || exit 3"\n'
        f'{c}: "echo no figure"\n'
        "end\n"
        f'after:\n{a}: "echo after"\nend\n'
    )
    run = _start(tmp_path, token_file, "--repeat", "3", "--stop-on-failure")
    console, _ = run.communicate(timeout=60)
    assert run.returncode == 1, console  # docs/cli.md: a test did not pass
    assert "test 'after' (repetition 3): NOT RUN" in console
    assert _views_of(tmp_path, console) == []


def test_a_host_lost_mid_test_reads_the_same_everywhere(start_agents, token_file, tmp_path):
    # Before: the -l log left out the connection loss the report lists under its host.
    # Beside it a command past its timeout.
    kept, lost, slow = start_agents(3)
    (tmp_path / "t.cfg").write_text(
        "edge:\n-minhosts: 1\n-metric: v = v=([0-9]+)\n"
        f'127.0.0.1:{kept.port}: "echo v=1; sleep 2"\n'
        f'127.0.0.1:{lost.port}: "echo v=2; sleep 10"\n'
        f'127.0.0.1:{slow.port}: "echo v=3; sleep 10"\n-timeout: 1s\n'
        "end\n"
    )
    run = _start(tmp_path, token_file)
    lost.wait_log("commands released", timeout=20)
    time.sleep(0.5)
    os.kill(lost.pid, 9)
    console, _ = run.communicate(timeout=60)
    assert run.returncode == 0, console  # -minhosts 1
    assert "LOST" in console and "gave up after" in console and "TIMED OUT" in console
    assert _views_of(tmp_path, console) == []
