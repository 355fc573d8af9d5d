"""Metrics as a user gets them: `netjobs` against real agents, real fio and iperf3
where installed; the report, the -l log, --json, --csv and `netjobs show --csv`."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest
from agent_harness import free_port
from schema_check import RESULTS_SCHEMA

pytestmark = [pytest.mark.timeout(120), pytest.mark.posix]


def netjobs(*args, timeout=90, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "netjobs_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def write_config(tmp_path, agents, body):
    path = tmp_path / "m.cfg"
    path.write_text(body.format(**{f"a{i}": f"127.0.0.1:{a.port}" for i, a in enumerate(agents)}))
    return path


def test_a_metric_over_hosts_and_repetitions_in_every_result(tmp_path, agents, token_file):
    config = write_config(
        tmp_path,
        agents,
        "rate:\n"
        "-metric: copy_Bps = copied ([0-9.]+ ?[KMG]?i?B)/s\n"
        '{a0}: "echo copied 100 MiB/s; echo copied 512MiB/s"\n'
        '{a1}: "echo copied 480 MiB/s"\n'
        '{a2}: "echo crashed"\n'
        "end\n",
    )
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    result = netjobs(
        "-l", "--repeat", "2", "--json", out, "--csv", table, "--token-file", token_file, config
    )
    assert result.returncode == 0, result.stderr
    line = (
        "copy_Bps: 992 MiB/s in all over 2 hosts (min 480 MiB/s, median 496 MiB/s, max 512 MiB/s)"
    )
    assert result.stdout.count(f"  {line}\n") == 2  # each repetition's report
    assert (
        "  copy_Bps over 2 repetitions: median 992 MiB/s in all, from 992 MiB/s to 992 MiB/s"
        in result.stdout
    )
    logs = sorted(tmp_path.glob("m.cfg_rate_*.log"))
    assert len(logs) == 2 and all(log.read_text().endswith(line + "\n") for log in logs)
    document = json.loads(out.read_text())
    RESULTS_SCHEMA.validate(document)
    first = document["tests"][0]
    assert first["metrics"]["copy_Bps"] == {
        "sum": 992 * 2**20,
        "min": 480 * 2**20,
        "median": 496 * 2**20,
        "max": 512 * 2**20,
        "hosts": 2,
        "hosts_failed": 0,
    }
    # The host whose output did not match has no value: absent, never zero.
    assert [h["commands"][0]["metrics"] for h in first["hosts"]] == [
        {"copy_Bps": 512 * 2**20},
        {"copy_Bps": 480 * 2**20},
        {},
    ]
    rows = list(csv.reader(io.StringIO(table.read_text())))
    assert rows[0] == [
        "run", "test", "repetition", "test_status", "host", "command_index", "status",
        "exit_code", "start_offset_ms", "release_late_ms", "exec_offset_ms", "elapsed_s",
        "copy_Bps",
    ]  # fmt: skip
    assert len(rows) == 1 + 2 * 3
    run_id = document["run_id"]
    assert [row[:8] for row in rows[1:4]] == [
        [run_id, "rate", "1", "passed", f"127.0.0.1:{agents[i].port}", "0", "ok", "0"]
        for i in range(3)
    ]
    assert [row[12] for row in rows[1:]] == [str(512 * 2**20), str(480 * 2**20), ""] * 2
    assert float(rows[1][11]) >= 0 and rows[1][8] != ""
    shown = netjobs("show", run_id, "--csv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == table.read_text()


def test_each_csv_row_gives_its_own_commands_start_figures(tmp_path, agents, token_file):
    """A host with two commands: each row its command's release and exec offsets and how
    late its agent released it, as the JSON has them, not the host's first release."""
    config = write_config(
        tmp_path,
        agents,
        't:\n{a0}: "/bin/true"\n{a0}: "/bin/sleep 0.1"\n{a1}: "/bin/true"\nend\n',
    )
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    result = netjobs("--json", out, "--csv", table, "--token-file", token_file, config)
    assert result.returncode == 0, result.stderr
    test = json.loads(out.read_text())["tests"][0]
    commands = [c for h in test["hosts"] for c in h["commands"]]
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert len(rows) == len(commands) == 3
    offsets = set()
    for row, command in zip(rows, commands, strict=True):
        offset = (command["started_at"] - test["scheduled_start"]) * 1000
        assert float(row["start_offset_ms"]) == pytest.approx(offset, abs=1e-3)  # epoch floats
        assert float(row["release_late_ms"]) == command["release_late_ms"]
        exec_offset = command["exec_offset_ms"]
        assert row["exec_offset_ms"] == ("" if exec_offset is None else repr(exec_offset))
        offsets.add(row["start_offset_ms"])
    first = test["hosts"][0]["start_offset_ms"]
    assert min(float(r["start_offset_ms"]) for r in rows[:2]) == first  # exactly the host's
    assert len(offsets) == 3  # no command given another's release


def test_csv_dash_is_standard_output_as_json_dash_is(tmp_path, agents, token_file):
    """`--csv -` prints the CSV on standard output and the report on standard error, as
    `--json -` does (it wrote a file named '-' in the current folder, stdout the report)."""
    config = write_config(
        tmp_path, agents, 't:\n-metric: n = n=([0-9]+)\n{a0}: "echo n=4"\n{a1}: "exit 3"\nend\n'
    )
    result = netjobs("--csv", "-", "--token-file", token_file, config, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert not (tmp_path / "-").exists()
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    # Each row says its command's status and its test's verdict: the ok command's test
    # failed, which a filter on `status` alone would not tell.
    assert [(r["test_status"], r["status"], r["exit_code"], r["n"]) for r in rows] == [
        ("failed", "ok", "0", "4"),
        ("failed", "failed", "3", ""),
    ]
    assert "test 't': FAILED" in result.stderr and "CSV written" not in result.stderr
    both = netjobs("--json", "-", "--csv", "-", "--token-file", token_file, config, cwd=tmp_path)
    assert both.returncode == 2 and both.stdout == ""
    assert "--json - and --csv - cannot both take standard output" in both.stderr


def test_a_value_from_a_command_that_failed_counts_and_is_said(tmp_path, agents, token_file):
    """A command that printed its figure and then failed (a partial run): its value is
    in the test's sum, and the report and the JSON say how many such hosts there were."""
    config = write_config(
        tmp_path,
        agents,
        't:\n-metric: n = n=([0-9]+)\n{a0}: "echo n=4"\n{a1}: "echo n=3; exit 1"\nend\n',
    )
    out = tmp_path / "r.json"
    result = netjobs("--json", out, "--token-file", token_file, config)
    assert result.returncode == 1, result.stderr
    document = json.loads(out.read_text())
    RESULTS_SCHEMA.validate(document)
    assert document["tests"][0]["metrics"]["n"] == {
        "sum": 7, "min": 3, "median": 3.5, "max": 4, "hosts": 2, "hosts_failed": 1,
    }  # fmt: skip
    assert "n: 7 in all over 2 hosts, 1 of them not ok (min 3" in result.stdout, result.stdout


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_real_fio_json_on_two_hosts_is_summed(tmp_path, agents, token_file):
    job = (
        "fio --name=j --filename={work}/$NETJOBS_INDEX.dat --size=2M --rw=randrw --bs=4k "
        "--ioengine=psync --runtime=1 --time_based --output-format=json"
    )
    command = job.format(work=tmp_path)
    config = write_config(
        tmp_path, agents, f'fio:\n{{a0}}: "{command}"\n{{a1}}: "{command}"\nend\n'
    )
    out = tmp_path / "r.json"
    result = netjobs("--json", out, "--token-file", token_file, config)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    RESULTS_SCHEMA.validate(document)
    metrics = document["tests"][0]["metrics"]
    assert set(metrics) == {
        "read_bw", "read_iops", "read_clat_p99_ns", "write_bw", "write_iops", "write_clat_p99_ns"
    }  # fmt: skip
    per_host = [h["commands"][0]["metrics"]["read_bw"] for h in document["tests"][0]["hosts"]]
    assert metrics["read_bw"]["hosts"] == 2 and metrics["read_bw"]["sum"] == sum(per_host)
    assert "  read_bw: " in result.stdout and " in all over 2 hosts (min " in result.stdout


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_real_fio_with_a_percentile_list_without_99_keeps_its_rates(tmp_path, agents, token_file):
    """`--percentile_list=50:95` is a fio document without a 99th: no p99 metric, the
    rates and IOPS all the same (once the whole document, a warning and no figure)."""
    command = (
        f"fio --name=j --filename={tmp_path}/p.dat --size=2M --rw=randread --bs=4k "
        "--ioengine=psync --runtime=1 --percentile_list=50:95 --output-format=json"
    )
    config = write_config(tmp_path, agents, f'fio:\n{{a0}}: "{command}"\nend\n')
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    result = netjobs("--json", out, "--csv", table, "--token-file", token_file, config)
    assert result.returncode == 0, result.stderr
    command_result = json.loads(out.read_text())["tests"][0]["hosts"][0]["commands"][0]
    assert command_result["warnings"] == []
    assert set(command_result["metrics"]) == {"read_bw", "read_iops"}
    (row,) = csv.DictReader(io.StringIO(table.read_text()))
    assert float(row["read_bw"]) == command_result["metrics"]["read_bw"] > 0


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed")
def test_real_iperf3_json_on_loopback(tmp_path, agents, token_file):
    port = free_port()
    config = write_config(
        tmp_path,
        agents,
        "iperf:\n"
        f'{{a0}}: "iperf3 -s -1 -p {port}"\n'
        "-timeout: 20s\n"
        f'{{a1}}: "sleep 0.5; iperf3 -c 127.0.0.1 -p {port} -t 1 -J"\n'
        "-timeout: 20s\n"
        "end\n",
    )
    out = tmp_path / "r.json"
    result = netjobs("--json", out, "--token-file", token_file, config)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    RESULTS_SCHEMA.validate(document)
    server, client = (h["commands"][0] for h in document["tests"][0]["hosts"])
    assert server["metrics"] == {}  # its text output is no document
    assert client["metrics"]["sent_bps"] > 0 and client["metrics"]["received_bps"] > 0
    assert "  received_bps: " in result.stdout and "bit/s in all over 1 host " in result.stdout
