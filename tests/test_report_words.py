"""What the report, the -l log and `netjobs show` say of a run, as a user reads them:
real agents, real `netjobs`, real configs."""

import json
import re

import pytest
from test_cli import netjobs, write_config

pytestmark = [pytest.mark.timeout(90), pytest.mark.posix]


def test_a_sequential_start_counts_offsets_from_the_first_release(tmp_path, agents, token_file):
    """No common start in a sequential start: the hosts' offsets are from the first
    release, and the report says so, folded or not."""
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "true"\n{a1}: "true"\nend\n')
    for verbose in ([], ["-v"]):
        result = netjobs(*verbose, "--start-mode", "sequential", "--token-file", token_file, cfg)
        assert result.returncode == 0, result.stderr
        assert "from the common start" not in result.stdout
        assert re.search(r"started \+0\.000 ms.* from the first release", result.stdout)
    scheduled = netjobs("-v", "--token-file", token_file, cfg)
    assert scheduled.returncode == 0, scheduled.stderr
    assert "from the common start" in scheduled.stdout
    assert "from the first release" not in scheduled.stdout


def test_a_command_killed_for_the_abort_does_not_repeat_its_reason(tmp_path, agents, token_file):
    """docs/cli.md: the test's abort reason, said in its head, is not said again on the
    line of a command killed for it."""
    cfg = write_config(
        tmp_path,
        agents,
        't:\n-minhosts: all\n{a0}: "sleep 10"\n{a1}: "sleep 10"\n-timeout: 0.5\nend\n',
    )
    result = netjobs("--token-file", token_file, cfg)
    assert result.returncode == 1, result.stderr
    head, *rest = result.stdout.splitlines()
    assert head.startswith("test 't': ABORTED (quorum lost because ")
    (killed,) = (line for line in rest if ": KILLED (" in line)
    assert killed.endswith(", test aborted: sleep 10")
    assert "quorum lost" not in "\n".join(rest)


def test_the_log_gives_the_start_lines_the_report_gives(tmp_path, agents, token_file):
    """-l: the releases, when the commands began, the lead, the late hosts and how long
    all ran together, in the log's head as on the terminal."""
    cfg = write_config(tmp_path, agents, 't:\n{a0}: "/bin/true"\n{a1}: "/bin/true"\nend\n')
    result = netjobs("-l", "--late-ms", "0.000001", "--token-file", token_file, cfg)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "test 't': PASSED"
    start = lines[1:4]
    assert start[0].startswith("  released within ") and ", lead " in start[0]
    assert "commands began within " in start[0] or "was not measured" in start[0]
    assert start[1].startswith("  late releases (more than 0.000 ms, --late-ms): 127.0.0.1:")
    assert start[2].startswith("  all 2 hosts ran together for ")
    (log,) = tmp_path.glob("run.cfg_t_*.log")
    head = [line for line in log.read_text().splitlines() if line.startswith("# ")]
    assert [f"# {line.strip()}" for line in start] == head[3:6]
    assert head[2].startswith("# start mode scheduled, common start 20")


def test_an_unreachable_host_is_named_once_on_its_lines(tmp_path, agents, token_file):
    """`HOST  error (connection refused (is the agent ...?))`: the report's, the live
    lines' and the log's lines name the host once; the JSON's error keeps the address."""
    from agent_harness import free_port

    down = f"127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path, agents, f't:\n{{a0}}: "true"\n{down}: "true"\nend\n')
    out = tmp_path / "r.json"
    for flags in ([], ["-v"]):
        result = netjobs(*flags, "-l", "--json", out, "--token-file", token_file, cfg)
        assert result.returncode == 1, result.stderr
        said = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if "connection refused" in line
        ]
        assert said and [line for line in said if line.count(down) > 1] == []
        quorum = f"quorum lost because {down}: connection refused (is the agent running"
        assert any(quorum in line for line in said)
    assert f"  {down}  error (connection refused (is the agent running" in result.stdout
    (host,) = (h for h in json.loads(out.read_text())["tests"][0]["hosts"] if h["target"] == down)
    assert host["error"].startswith(f"connection refused by {down} (is the agent running")
    for log in tmp_path.glob("run.cfg_t_*.log"):
        lines = [line for line in log.read_text().splitlines() if "connection refused" in line]
        assert lines and all(line.count(down) <= 1 for line in lines), lines
